//! The state every handler shares: the command service, the read-model
//! table and the token verifier.

use std::sync::Arc;

use axum::extract::State;
use ledger_store::EventStore;
use ledger_store::views::AnyTable;

use crate::auth::Verifier;
use crate::service::CommandService;

/// Everything a handler needs.
pub struct App<S> {
    pub service: CommandService<S>,
    /// The read models queries answer from.
    pub views: AnyTable,
    pub verifier: Arc<dyn Verifier>,
    /// Health of the projector writing the read models, as a JSON object
    /// whose fields `/healthz` shows: the embedded follower's log and
    /// projected positions, or the stream projector's report.
    pub projections: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

pub type AppState<S> = Arc<App<S>>;

/// A `State` alias for handlers.
pub(crate) type St<S> = State<AppState<S>>;

impl<S: EventStore> App<S> {
    pub fn store(&self) -> &S {
        self.service.store()
    }
}
