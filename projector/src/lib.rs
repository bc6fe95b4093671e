//! The projector: feeds the ledger-core folds from the event log.
//!
//! The folds themselves (`ReadModels::apply`, idempotent by stream and
//! version) live in ledger-core; this crate moves records into them.
//!
//! - [`live`] is the in-process projector of the embedded server: it follows
//!   the store's commit log into in-memory read models with a durable
//!   checkpoint.
//! - [`handler`] is the stream projector: batches of change records, as
//!   DynamoDB Streams and Kinesis deliver them (at least once, ordered per
//!   item only, redelivered after partial failures), folded into per-key
//!   read models with exactly-once effect. [`record`] reads the records,
//!   [`plan`] is its pure core, [`table`] the read-model table it writes
//!   ([`dynamo`] on DynamoDB).
//! - [`lambda`] adapts the handler to Lambda's event and response types.

pub mod dynamo;
pub mod handler;
pub mod kinesalite;
pub mod kinesis;
pub mod lambda;
pub mod live;
pub mod plan;
pub mod record;
pub mod runner;
pub mod table;

pub use handler::{Projector, Report};
