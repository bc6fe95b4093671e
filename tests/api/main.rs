//! The HTTP API, tested from the outside: a real server (SQLite on disk in
//! a temporary directory, the command service, the live projector, axum on
//! a loopback port) and a real HTTP client.
//!
//! - `flows`: every endpoint's happy path, reads after writes pinned with
//!   `min_position` so they never race the projector.
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
