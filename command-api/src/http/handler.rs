//! What read and write handlers share beyond their extractors: the role
//! check, the clock, and the answer to a store that failed.

use axum::http::StatusCode;
use ledger_core::envelope::Role;
use ledger_core::time::Timestamp;

use super::problem::Problem;
use crate::auth::Principal;

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

/// A store or read-model table that failed: the caller may retry.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "store failure");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the store failed; retry",
    )
}
