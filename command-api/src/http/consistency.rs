//! Consistency tokens: read-your-writes without a global log position.
//!
//! A write that appended events answers with a token naming, for every
//! stream it wrote, the last version it wrote there. A read given the token
//! (`?consistency_token=`) waits, at most [`READ_WAIT_MAX`], until the read
//! models have projected each of those versions, then answers; past the
//! limit it is `503 not_yet_visible`. A projected version implies every
//! earlier one of its stream (the gates apply a stream in order) and the
//! projectors record an event's activity entry only once its views and sums
//! are written, so "seen" is asked of the read-model table itself
//! (`ViewTable::seen`), on any store and whatever the number of shards:
//! nothing here needs an order across streams.
//!
//! A token is sealed like a page cursor (see `cursor`): bound to the tenant,
//! opaque, and checked; one from another tenant, altered or truncated is a
//! `400 validation_failed` before any store is asked. It carries no
//! authority: at most it makes its holder's own read wait.

use std::time::Duration;

use axum::http::StatusCode;
use ledger_core::id::{StreamId, StreamVersion, TenantId};
use ledger_store::EventStore;
use ledger_store::views::ViewTable;
use serde::{Deserialize, Serialize};

use super::app::App;
use super::cursor;
use super::handler::unavailable;
use super::problem::Problem;

/// The header a write's token travels in.
pub const TOKEN_HEADER: &str = "tally-consistency-token";

/// Longest a read waits for a token's writes to be projected.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(5);

/// How often a waiting read asks the table again.
const READ_POLL: Duration = Duration::from_millis(5);

/// Most tokens one read may name (comma-separated): the writes a client
/// made before a listing it must see them in.
pub const TOKENS_MAX: usize = 16;

/// What the seal binds a token to beside the tenant: tokens are not cursors.
const PURPOSE: &str = "consistency";

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Wait (briefly) until the read models reflect the writes this token
    /// names: the Tally-Consistency-Token of the client's own write (or up
    /// to 16 of them, comma-separated).
    #[serde(default)]
    pub consistency_token: Option<String>,
}

/// The last version written on each stream, in the order first written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written(Vec<(StreamId, StreamVersion)>);

impl Written {
    /// Notes a version written on `stream`; the highest one counts.
    pub fn push(&mut self, stream: StreamId, version: StreamVersion) {
        match self.0.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, v)) => *v = (*v).max(version),
            None => self.0.push((stream, version)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token naming these writes of `tenant_id`.
    pub fn seal(&self, tenant_id: TenantId) -> String {
        let text: Vec<String> = self.0.iter().map(|(s, v)| format!("{s}@{v}")).collect();
        cursor::seal(tenant_id, PURPOSE, &text.join(" "))
    }

    /// The writes a token of `tenant_id` names.
    ///
    /// # Errors
    /// `400 validation_failed` for a token this tenant was not given.
    pub fn open(tenant_id: TenantId, token: &str) -> Result<Self, Problem> {
        let bad =
            || Problem::validation("bad consistency_token: not one a write of yours answered");
        let text = cursor::open(tenant_id, PURPOSE, token).map_err(|_| bad())?;
        let mut written = Written::default();
        for part in text.split(' ').filter(|p| !p.is_empty()) {
            let (stream, version) = part.rsplit_once('@').ok_or_else(bad)?;
            let stream = StreamId::parse(stream).map_err(|_| bad())?;
            let version: u64 = version.parse().map_err(|_| bad())?;
            written.push(stream, StreamVersion::new(version));
        }
        Ok(written)
    }
}

/// Waits until the read models reflect every write the tokens name (one, or
/// up to [`TOKENS_MAX`] separated by commas; none: no wait), at most
/// [`READ_WAIT_MAX`].
///
/// # Errors
/// `400 validation_failed` for a token the tenant was not given, `503
/// not_yet_visible` past the limit, `503 unavailable` when the table fails.
pub(crate) async fn visible<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
    token: Option<&str>,
) -> Result<(), Problem> {
    let Some(tokens) = token else {
        return Ok(());
    };
    let tokens: Vec<&str> = tokens.split(',').collect();
    if tokens.len() > TOKENS_MAX {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!("consistency_token names at most {TOKENS_MAX} tokens"),
        ));
    }
    let mut written = Written::default();
    for token in tokens {
        for (stream, version) in Written::open(tenant_id, token)?.0 {
            written.push(stream, version);
        }
    }
    if written.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + READ_WAIT_MAX;
    loop {
        if app
            .views
            .seen(tenant_id, &written.0)
            .await
            .map_err(unavailable)?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_yet_visible",
                "the writes this consistency_token names are not projected yet; retry shortly",
            ));
        }
        tokio::time::sleep(READ_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(text: &str) -> TenantId {
        TenantId::parse(text).unwrap()
    }

    #[test]
    fn a_token_opens_to_its_writes_for_its_tenant_only() {
        let t = tenant("a");
        let mut w = Written::default();
        w.push(StreamId::parse("order/O-1").unwrap(), StreamVersion::new(1));
        w.push(StreamId::parse("credit/E1").unwrap(), StreamVersion::new(7));
        w.push(StreamId::parse("order/O-1").unwrap(), StreamVersion::new(2));
        let token = w.seal(t);
        let opened = Written::open(t, &token).unwrap();
        assert_eq!(opened, w);
        assert_eq!(
            opened.0[0].1,
            StreamVersion::new(2),
            "the highest version counts"
        );
        assert!(Written::open(tenant("b"), &token).is_err());
        assert!(Written::open(t, &token[..token.len() - 1]).is_err());
        // A page cursor of the same text is no token.
        let text = "order/O-1@2 credit/E1@7";
        assert!(Written::open(t, &cursor::seal(t, "orders|", text)).is_err());
        assert_eq!(
            Written::open(t, &cursor::seal(t, PURPOSE, text)).unwrap(),
            w
        );
        assert!(Written::open(t, &cursor::seal(t, PURPOSE, "order/O-1")).is_err());
        assert!(Written::open(t, &cursor::seal(t, PURPOSE, "order/O-1@x")).is_err());
    }
}
