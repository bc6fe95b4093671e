//! Local stand-ins for the AWS services Tally's cloud shape relies on, for
//! tests and the local server only. Production crates do not link this
//! one; a deployment has the real services instead.
//!
//! - [`mapping`]: Lambda's event source mapping on a stream (shards,
//!   lineage, batches, partial-batch retries), the core both runners share.
//! - [`streams`]: the mapping on a table's DynamoDB Stream.
//! - [`kinesis`]: the mapping on a Kinesis stream.
//! - [`shim`]: Kinesis Data Streams for DynamoDB, played by copying a
//!   table's stream into a Kinesis stream with the duplicates and reordering
//!   the service is allowed.
//! - [`emulator`]: starts DynamoDB Local, kinesalite and cognito-local.
//! - [`cognito`]: a user pool on cognito-local, its users and their tokens.

pub mod cognito;
pub mod emulator;
pub mod kinesis;
pub mod mapping;
pub mod shim;
pub mod streams;
