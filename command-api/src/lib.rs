//! Tally HTTP API.
