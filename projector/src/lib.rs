//! The projector: feeds the ledger-core folds from the event log.
//!
//! The folds themselves (`ReadModels::apply`, idempotent by stream and
//! version) live in ledger-core; this crate moves records into them, and
//! reads and writes only through ledger-store's ports.
//!
//! - [`handler`]: the stream projector ([`StreamProjector`]): batches of
//!   change records, as DynamoDB Streams and Kinesis deliver them (at least
//!   once, ordered per item only, redelivered after partial failures),
//!   folded into per-key views and sums with exactly-once effect.
//!   [`record`] reads the records, [`plan`] is its pure core; it writes
//!   through `ledger_store::views::ViewTable`.
//! - [`follow`]: the stream projector on one machine
//!   ([`follow::ViewFollower`]), the embedded server's projector: the
//!   embedded log in commit order, a page per batch, into any read-model
//!   table (`SqliteViews` beside the log), with a checkpoint that is only
//!   a position.
//! - [`lambda`]: Lambda's event and response types for the stream
//!   projector, which its Lambda entries (the `tally-lambda` crate) and the
//!   local runners use.
//!
//! ## The stream projection protocol
//!
//! DynamoDB Streams orders records per item only (one item per event, so
//! two events of an order may arrive in either order, in different
//! shards), Kinesis also duplicates and reorders, and Lambda delivers at
//! least once and, after a partial failure, redelivers everything after
//! the first failed record. What makes the read models exact anyway:
//!
//! - *Views are gates.* An order view and a credit view hold the fold of
//!   their stream and the stream version it reflects. A batch loads the
//!   views of its streams (`ViewTable::load`, strongly consistent), drops
//!   events at or below the stored version (duplicates, acknowledged),
//!   folds the run of versions right after it, and writes the new view on
//!   the condition that the stored version is still the one it folded onto
//!   (or that there is none, for a new view). A failed condition means
//!   another handler moved the view: the table returns what is stored, and
//!   the stream is planned again on it, at most `CONFLICT_ROUNDS_MAX` times.
//! - *Gaps are redelivered.* An event after a missing version is not
//!   applied; its record is a batch item failure, so the transport brings
//!   it back after the missing one (which another shard, or the same one,
//!   will deliver).
//! - *Sums ride with their gates.* Dashboard sums (a vendor's totals per
//!   local day, its receivables per due date) only ever add. An order
//!   stream's additions go in the same atomic `Write` as its gated view,
//!   so they land exactly when the view's version passes the events: a
//!   redelivered event is a duplicate at the gate and adds nothing; a crash
//!   between two writes leaves whole streams done or not done. A batch
//!   folds all its events per day and due date, and packs views with their
//!   sums into writes of at most 100 items (`plan::pack`), so many sales of
//!   a vendor-day are one update.
//! - *Poison is parked.* A record that does not decode (or whose key and
//!   content disagree, or that its view cannot fold) is parked under its
//!   stream and version with the record id and the error
//!   (`ViewTable::park`), and acknowledged; later events of that stream
//!   are parked behind it, so they neither apply out of order nor block the
//!   shard. Other streams keep flowing. A gap whose stream is parked at or
//!   below it waits in the park instead of failing. Idempotency items and
//!   removals are acknowledged and ignored.
//! - *Activity comes last.* Once a batch's views and sums are written,
//!   every event of it that is projected (written, a duplicate, or of a
//!   stream without a view; not failed, not parked) gets its activity
//!   entry (`ViewTable::record_activity`, idempotent by stream and
//!   version). A stored entry therefore means "projected", which is what
//!   a read waiting for its writer's event asks (`ViewTable::seen`).
//! - *Statements are not copied.* A credit stream in version order is the
//!   statement (each event carries its balance after), so it is read from
//!   the event table.

pub mod follow;
pub mod handler;
pub mod lambda;
pub mod plan;
pub mod record;

pub use handler::{Report, StreamProjector};
