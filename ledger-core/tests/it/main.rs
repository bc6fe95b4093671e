//! ledger-core's integration tests, in one binary.

mod codec;
mod properties;
mod schema;
mod snapshot;
