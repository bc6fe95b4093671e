//! What every fold shares: the gate rule that makes `apply` idempotent by
//! (stream, version), the per-stream gate of projections whose keys gather
//! many streams, and where a fold sends the changes it makes. It imports no
//! fold, so every fold can import it.

use rustc_hash::FxHashMap;

use crate::envelope::Envelope;
use crate::id::{StreamId, StreamVersion, TenantId};

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
    /// Read and written whole by `snapshot`.
    pub(super) applied: FxHashMap<(TenantId, StreamId), StreamVersion>,
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
