//! The `tally` binary's library: the workload simulator shared by the CLI
//! and the benchmarks, the server wiring and the store it runs on, and the load generator. The
//! binary itself (`src/main.rs`) is glue.

pub mod load;
pub mod server;
pub mod sim;
pub mod store;
