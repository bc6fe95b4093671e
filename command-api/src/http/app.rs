//! The state every handler shares: the command service, the read side and
//! the token verifier.

use std::sync::Arc;

use axum::extract::State;
use ledger_store::EventStore;
use ledger_store::read_side::ReadSide;

use crate::auth::Verifier;
use crate::service::CommandService;

/// Everything a handler needs.
pub struct App<S> {
    pub service: CommandService<S>,
    pub read_side: ReadSide,
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
}
