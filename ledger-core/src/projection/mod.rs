//! Projections: pure folds of the log into what people read.
//!
//! Every projection has the same shape: `apply(&Envelope) -> Outcome`, which
//! is idempotent by (stream, version). Within a stream, events must arrive in
//! version order; across streams, any order gives the same state. A version
//! already applied is a [`Outcome::Duplicate`] and changes nothing; a version
//! past the next expected one is a [`Outcome::Gap`] and is not applied: the
//! caller redelivers it after the missing event. So a transport that
//! redelivers, duplicates or reorders cannot corrupt a projection.
//!
//! `apply_into` also emits the *changes* it made, one per read-model key
//! (a delta to add to a dashboard bucket, the new state of an order view, a
//! statement line to append), so a store can persist a fold incrementally
//! instead of rewriting whole states.

pub mod activity;
mod bytes;
pub mod credit;
pub mod dashboard;
pub mod orders;
pub mod snapshot;

use rustc_hash::FxHashMap;

use crate::envelope::Envelope;
use crate::id::{StreamId, StreamKind, StreamVersion, TenantId};

pub use activity::ActivityLog;
pub use credit::CreditBalances;
pub use dashboard::VendorDailyTotals;
pub use orders::OrderViews;
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SnapshotError, VIEW_FORMAT_VERSION};

/// What `apply` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The event was the next of its stream and is now reflected.
    Applied,
    /// The event was applied before; nothing changed.
    Duplicate,
    /// An earlier event of the stream is missing; nothing changed.
    Gap {
        expected: StreamVersion,
        got: StreamVersion,
    },
}

/// The gate rule, given the last version applied for the event's stream.
pub fn admit(last_applied: StreamVersion, got: StreamVersion) -> Outcome {
    let expected = last_applied.next();
    if got == expected {
        Outcome::Applied
    } else if got < expected {
        Outcome::Duplicate
    } else {
        Outcome::Gap { expected, got }
    }
}

/// Where a projection sends the changes it makes. Changes are built lazily,
/// so a fold that discards them pays nothing for them.
pub trait Sink<T> {
    fn emit(&mut self, make: impl FnOnce() -> T);
}

impl<T> Sink<T> for Vec<T> {
    fn emit(&mut self, make: impl FnOnce() -> T) {
        self.push(make());
    }
}

/// A sink that keeps nothing.
pub struct Discard;

impl<T> Sink<T> for Discard {
    fn emit(&mut self, _: impl FnOnce() -> T) {}
}

/// The last version applied, per stream, for projections whose keys gather
/// many streams (a dashboard bucket, the activity log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamGate {
    applied: FxHashMap<(TenantId, StreamId), StreamVersion>,
}

impl StreamGate {
    /// Admits the event if it is the next of its stream, and records it.
    pub fn admit(&mut self, envelope: &Envelope) -> Outcome {
        use std::collections::hash_map::Entry;
        let key = (envelope.tenant_id(), envelope.stream());
        let version = envelope.version();
        // A stream is recorded only once an event of it is applied: a gap
        // must leave no trace, or the gate's state (and its snapshot) would
        // depend on what was refused, and refused events would grow it.
        match self.applied.entry(key) {
            Entry::Occupied(mut last) => {
                let outcome = admit(*last.get(), version);
                if outcome == Outcome::Applied {
                    last.insert(version);
                }
                outcome
            }
            Entry::Vacant(slot) => {
                let outcome = admit(StreamVersion::NONE, version);
                if outcome == Outcome::Applied {
                    slot.insert(version);
                }
                outcome
            }
        }
    }
}

/// Every projection, fed together: the in-process read side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModels {
    pub dashboard: VendorDailyTotals,
    pub orders: OrderViews,
    pub credit: CreditBalances,
    pub activity: ActivityLog,
}

/// The changes one `apply` made, per projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub dashboard: Vec<dashboard::DashboardChange>,
    pub orders: Vec<orders::OrderChange>,
    pub credit: Vec<credit::CreditChange>,
    pub activity: Vec<activity::ActivityEntry>,
}

impl ReadModels {
    /// Applies one event to every projection.
    pub fn apply(&mut self, envelope: &Envelope) -> Outcome {
        // The activity log sees every stream, so its gate decides for all;
        // the others then fold without gating again (one lookup, not four).
        // Each `evolve` is given only its own stream kind: a stream's id is
        // only an order id or an employee id within its kind.
        let outcome = self.activity.apply(envelope);
        if outcome == Outcome::Applied {
            match envelope.stream().kind() {
                StreamKind::Order => {
                    self.dashboard.evolve(envelope, &mut Discard);
                    self.orders.evolve(envelope, &mut Discard);
                }
                StreamKind::Credit => self.credit.evolve(envelope, &mut Discard),
                StreamKind::Tenant | StreamKind::Vendor => {}
            }
        }
        outcome
    }

    /// Applies one event to every projection and collects their changes.
    pub fn apply_into(&mut self, envelope: &Envelope, changes: &mut Changes) -> Outcome {
        let outcome = self.activity.apply_into(envelope, &mut changes.activity);
        if outcome == Outcome::Applied {
            match envelope.stream().kind() {
                StreamKind::Order => {
                    self.dashboard.evolve(envelope, &mut changes.dashboard);
                    self.orders.evolve(envelope, &mut changes.orders);
                }
                StreamKind::Credit => self.credit.evolve(envelope, &mut changes.credit),
                StreamKind::Tenant | StreamKind::Vendor => {}
            }
        }
        outcome
    }
}
