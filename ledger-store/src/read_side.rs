//! The read models as queries see them: the in-memory `ReadModels` a
//! projector folds into, with the log position they reflect. The command
//! API reads through [`ReadSide`] and never sees who keeps it up to date.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger_core::projection::ReadModels;
use tokio::sync::watch;

use crate::Position;

/// The read side as queries see it: the models and how far they reach.
#[derive(Clone)]
pub struct ReadSide {
    models: Arc<RwLock<ReadModels>>,
    position: watch::Receiver<Position>,
}

impl ReadSide {
    /// The read side of `models`, which reflect the log up to `position`.
    pub fn new(models: Arc<RwLock<ReadModels>>, position: watch::Receiver<Position>) -> ReadSide {
        ReadSide { models, position }
    }

    /// Runs `query` against the models as of [`ReadSide::position`] or later.
    pub fn read<T>(&self, query: impl FnOnce(&ReadModels) -> T) -> T {
        query(&self.models.read().expect("read models lock poisoned"))
    }

    /// The last log position folded into the models.
    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// Waits until the models reflect `position`, at most `timeout`.
    /// Returns whether they do.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let mut rx = self.position.clone();
        let reached = rx.wait_for(|p| *p >= position);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }
}
