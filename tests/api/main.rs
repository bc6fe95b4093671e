//! The HTTP API, tested from the outside: a real server (a store, the
//! command service, the live projector, axum on a loopback port) and a real
//! HTTP client.
//!
//! Every test that starts a server runs on both stores, as
//! `<module>::sqlite::<test>` (SQLite on disk in a temporary directory) and
//! `<module>::dynamodb::<test>` (tables of its own on DynamoDB Local, the
//! official emulator, started once per run by `scripts/dynamodb-local` and
//! installed on first use; a missing Java or npm fails the run, nothing is
//! skipped). A test is written once, taking the store as a parameter, and
//! listed in its file's `on_both_stores!`.
//!
//! - `flows`: every endpoint's happy path, reads after writes pinned with
//!   the writes' consistency tokens so they never race the projector.
//! - `access`: the role table, vendor and employee scoping, tenant isolation.
//! - `errors`: the error catalogue, idempotency, and that a refused request
//!   writes nothing.
//! - `openapi`: the served document equals the committed
//!   `schemas/openapi.json`, and every documented route exists.
//!
//! Regenerate `schemas/openapi.json` with
//! `TALLY_BLESS=1 cargo test --test api openapi`.

mod access;
mod errors;
mod flows;
mod harness;
mod openapi;
