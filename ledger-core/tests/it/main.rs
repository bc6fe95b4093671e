//! ledger-core's integration tests, in one binary.

mod codec;
mod head;
mod properties;
mod schema;
mod snapshot;
