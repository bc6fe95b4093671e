//! Tally's HTTP API: an axum `Router` over the command service and the read
//! models. The same Router serves locally (`axum::serve`) and, later, on
//! Lambda.

pub mod auth;
pub mod http;
pub mod schedule;
pub mod service;
