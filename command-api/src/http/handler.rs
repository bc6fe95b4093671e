//! What read and write handlers share beyond their extractors: the role
//! check, the clock, the log position a response carries, the wait for
//! one, and the answer to a store that failed.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger_core::envelope::Role;
use ledger_core::time::Timestamp;
use ledger_store::views::ViewTable;
use ledger_store::{EventStore, Position};
use serde_json::Value;

use super::app::App;
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

/// Longest a read waits for `min_position` to be projected.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(5);

/// How often a read waiting for `min_position` asks the table again.
const READ_POLL: Duration = Duration::from_millis(5);

/// Waits until the read models reflect the event at `min_position` (its
/// activity entry is stored, which the projectors write last), at most
/// [`READ_WAIT_MAX`]; answers the position the read reflects at least.
pub(crate) async fn visible<S: EventStore>(
    app: &App<S>,
    min_position: Option<u64>,
) -> Result<u64, Problem> {
    let Some(p) = min_position.filter(|p| *p > 0) else {
        return Ok(app.projected());
    };
    let deadline = tokio::time::Instant::now() + READ_WAIT_MAX;
    let mut event = None;
    loop {
        if event.is_none() {
            let records = app
                .store()
                .read_log(Position(p - 1), 1)
                .await
                .map_err(unavailable)?;
            event = records
                .into_iter()
                .find(|r| r.position == Position(p))
                .map(|r| (r.tenant_id, r.stream, r.version));
        }
        if let Some((tenant_id, stream, version)) = event
            && app
                .views
                .seen(tenant_id, &[(stream, version)])
                .await
                .map_err(unavailable)?
        {
            return Ok(p.max(app.projected()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_yet_visible",
                format!("position {p} is not projected yet; retry shortly"),
            ));
        }
        tokio::time::sleep(READ_POLL).await;
    }
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
