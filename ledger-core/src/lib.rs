//! Tally's pure domain: the rules of a multi-tenant point-of-sale ledger.
//!
//! - [`decider`] and one module per aggregate ([`tenant`], [`vendor`],
//!   [`credit`], [`sale`]) decide commands into [`event::Event`]s.
//! - [`envelope`] and [`codec`] turn events into hash-chained bytes and back.
//! - [`head`] keeps one stream's folded decision state at its version, as
//!   bytes, so a command handler loads a few heads instead of a whole log.
//! - [`posting`] maps every event to double-entry postings.
//! - [`projection`] folds events into read models, incrementally and idempotently.
//! - [`audit`] verifies a log: chains, versions, postings, invariants;
//!   [`digest`] takes the short value an auditor keeps to prove it later.
//!
//! Nothing here does IO: no clock, no randomness, no filesystem, no network.
//! Time, ids and the caller arrive inside commands.

pub mod audit;
pub mod codec;
pub mod credit;
pub mod decider;
pub mod digest;
pub mod envelope;
pub mod event;
pub mod head;
pub mod id;
pub mod limits;
pub mod memory;
pub mod money;
pub mod policy;
pub mod posting;
pub mod projection;
pub mod rejection;
pub mod rng;
pub mod sale;
pub mod schema;
pub mod tenant;
pub mod text;
pub mod time;
pub mod vendor;

#[cfg(test)]
mod testing;

pub use decider::Decider;
pub use envelope::{Actor, Envelope, Hash, Header, Role};
pub use event::{Event, EventType};
pub use id::{
    CommandId, EmployeeId, EventId, ItemCode, OrderId, RefundId, StreamId, StreamKind,
    StreamVersion, TenantId, UserId, VendorId,
};
pub use money::{CommissionRate, Currency, Money};
pub use rejection::Rejection;
pub use time::{Cadence, LocalDate, Period, TimeZone, Timestamp};
