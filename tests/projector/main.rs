//! The stream projector under every delivery the transports allow.
//!
//! `properties`: for any simulated log and any schedule of DynamoDB Streams
//! or Kinesis deliveries through Lambda's event source mapping (shards,
//! per-item order only, duplicates, partial failures and redelivery,
//! bisection, concurrent shards, crashes between writes), the read-model
//! table converges to the fold of the log from scratch, through consistent
//! cuts only. `faults`: the same faults one at a time, deterministically.
//! `transport` simulates the delivery; `oracle` knows what the table must
//! hold; `history` makes the logs. `follow`: the same core following the
//! embedded log into the SQLite read-model table, stopped and resumed.

mod faults;
mod follow;
mod history;
mod oracle;
mod properties;
mod transport;
