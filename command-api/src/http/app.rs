//! The state every handler shares: the command service, the read-model
//! table and the token verifier.

use std::sync::Arc;

use axum::extract::State;
use ledger_store::views::AnyTable;
use ledger_store::{EventStore, Position};
use tokio::sync::watch;

use crate::auth::Verifier;
use crate::service::CommandService;

/// Everything a handler needs.
pub struct App<S> {
    pub service: CommandService<S>,
    /// The read models queries answer from.
    pub views: AnyTable,
    /// How far a projector that follows the log in commit order has
    /// projected it (the embedded server's); `None` where no projector
    /// follows a commit order (DynamoDB's shards have none).
    pub projected: Option<watch::Receiver<Position>>,
    pub verifier: Arc<dyn Verifier>,
    /// Health of projectors the API does not read from but reports on
    /// (the stream projector writing the read-model table), as JSON.
    pub projections: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>>,
}

pub type AppState<S> = Arc<App<S>>;

/// A `State` alias for handlers.
pub(crate) type St<S> = State<AppState<S>>;

impl<S: EventStore> App<S> {
    pub fn store(&self) -> &S {
        self.service.store()
    }

    /// The log position the read models reflect at least (0 when no
    /// projector says).
    pub fn projected(&self) -> u64 {
        self.projected.as_ref().map_or(0, |p| p.borrow().0)
    }
}
