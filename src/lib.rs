//! The `tally` binary's library: the workload simulator shared by the CLI
//! and the benchmarks. The binary itself (`src/main.rs`) is glue.

pub mod sim;
