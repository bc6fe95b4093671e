//! What read and write handlers share beyond their extractors: the role
//! check, the clock, and the log position a response carries.

use axum::response::{IntoResponse, Response};
use ledger_core::envelope::Role;
use ledger_core::time::Timestamp;
use serde_json::Value;

use super::problem::Problem;
use crate::auth::Principal;

/// The header carrying a write's log position (and a read's projected one).
pub const POSITION_HEADER: &str = "tally-position";

/// Refuses a caller holding none of `roles`.
pub(crate) fn require(principal: &Principal, roles: &[Role]) -> Result<(), Problem> {
    if roles.iter().any(|r| principal.has(*r)) {
        Ok(())
    } else {
        Err(Problem::forbidden())
    }
}

/// The wall clock, as the domain's time.
pub(crate) fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    Timestamp::from_micros(since.as_micros() as i64)
}

/// A JSON answer with the log position it reflects.
pub(crate) fn json_at(body: Value, position: u64) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(POSITION_HEADER, position.into());
    response
}
