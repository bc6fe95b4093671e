//! System tests: the real server, over HTTP, under concurrent load, and the
//! real binary killed mid-load and restarted on its data directory.

mod common;
mod concurrency;
mod durability;
