//! The `tally` package's library: the server wiring, which the binary
//! (`src/main.rs`, glue only) and the integration tests and benchmarks
//! under `tests/` and `benches/` start. The simulator is the `tally-sim`
//! crate, the load generator the `tally-load` crate and the audit and
//! replay tools the `tally-replay` crate.

pub mod seed;
pub mod server;
