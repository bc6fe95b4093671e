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
pub(crate) mod bytes;
pub mod credit;
pub mod dashboard;
mod gate;
pub mod orders;
pub mod snapshot;

use crate::envelope::Envelope;
use crate::id::StreamKind;

pub use activity::ActivityLog;
pub use credit::CreditBalances;
pub use dashboard::VendorDailyTotals;
pub use gate::{Discard, Outcome, Sink, StreamGate, admit};
pub use orders::OrderViews;
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SnapshotError, VIEW_FORMAT_VERSION};

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
