//! The `tally` package's library: the server wiring and the store it runs
//! on, which the binary (`src/main.rs`, glue only) and the integration
//! tests and benchmarks under `tests/` and `benches/` start. The simulator
//! is the `tally-sim` crate and the load generator the `tally-load` crate.

pub mod server;
pub mod store;
