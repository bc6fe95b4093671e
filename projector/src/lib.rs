//! The projector: feeds the ledger-core folds from the event log.
//!
//! The folds themselves (`ReadModels::apply`, idempotent by stream and
//! version) live in ledger-core; this crate moves records from a store's
//! log into them and keeps a durable checkpoint so a restart resumes where
//! it left off. [`live`] is the in-process projector of the embedded server.

pub mod live;
