//! System tests: the real server, over HTTP, under concurrent load, and the
//! real binary killed mid-load and restarted on its data directory, and
//! `tally load` end to end.

mod common;
mod concurrency;
mod cost;
mod durability;
mod instances;
mod load;
mod replay;
mod streams;
