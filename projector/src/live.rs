//! The in-process projector: follows the log in commit order.
//!
//! One task reads the log from the last folded position, applies each page
//! to the in-memory [`ReadModels`] under one write lock, publishes the new
//! position, and waits for the next commit. Every
//! [`CHECKPOINT_INTERVAL`] (or [`CHECKPOINT_RECORDS_MAX`] records) it saves
//! a snapshot of the models with the position it reflects, so a restart
//! folds only what was committed after the last checkpoint. Because the
//! snapshot and its position are saved together and `apply` is idempotent,
//! a crash between two checkpoints neither loses nor double-counts a record.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ledger_core::codec;
use ledger_core::envelope::Envelope;
use ledger_core::projection::{Outcome, ReadModels};
use ledger_store::read_side::ReadSide;
use ledger_store::{
    Checkpoint, CheckpointStore, EventStore, Position, READ_PAGE_RECORDS_MAX, StoreError,
};
use tokio::sync::watch;

/// The checkpoint's name in the read-model store.
pub const CHECKPOINT_NAME: &str = "read_models";
/// Longest time between checkpoints while records keep arriving. A
/// snapshot costs CPU in proportion to the whole state (about 1 µs per
/// event folded so far), so checkpoints are rare; a crash costs at most
/// this much refolding.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);
/// Most records folded between checkpoints.
pub const CHECKPOINT_RECORDS_MAX: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record at position {position} does not decode: {reason}")]
    Undecodable { position: Position, reason: String },
    #[error("record at position {position} skips a version of its stream")]
    Gap { position: Position },
    #[error("the checkpoint does not decode: {0}")]
    Checkpoint(String),
}

/// The projector task's handle: the read side, and the task itself.
pub struct LiveProjector {
    pub read_side: ReadSide,
    pub task: tokio::task::JoinHandle<Result<(), ProjectorError>>,
    stop: watch::Sender<bool>,
}

impl LiveProjector {
    /// Restores the last checkpoint (if any) and starts following the log.
    ///
    /// # Errors
    /// The store's, or a checkpoint that does not decode.
    pub async fn start<S, R>(store: S, checkpoints: R) -> Result<LiveProjector, ProjectorError>
    where
        S: EventStore + Clone,
        R: CheckpointStore + Clone,
    {
        let (models, position) = match checkpoints.load_checkpoint(CHECKPOINT_NAME).await? {
            Some(c) => (
                ReadModels::from_snapshot(&c.state)
                    .map_err(|e| ProjectorError::Checkpoint(e.to_string()))?,
                c.position,
            ),
            None => (ReadModels::default(), Position::ZERO),
        };
        tracing::info!(%position, "read models restored");
        let models = Arc::new(RwLock::new(models));
        let (position_tx, position_rx) = watch::channel(position);
        let (stop, stop_rx) = watch::channel(false);
        let follower = Follower {
            store,
            checkpoints,
            models: models.clone(),
            position: position_tx,
            checkpointed: position,
            checkpointed_at: Instant::now(),
        };
        Ok(LiveProjector {
            read_side: ReadSide::new(models, position_rx),
            task: tokio::spawn(follower.run(stop_rx)),
            stop,
        })
    }

    /// Stops following after the current page and saves a final checkpoint.
    ///
    /// # Errors
    /// Whatever stopped the task.
    pub async fn shutdown(self) -> Result<(), ProjectorError> {
        let _ = self.stop.send(true);
        self.task.await.expect("projector task panicked")
    }
}

struct Follower<S, R> {
    store: S,
    checkpoints: R,
    models: Arc<RwLock<ReadModels>>,
    position: watch::Sender<Position>,
    checkpointed: Position,
    checkpointed_at: Instant,
}

impl<S: EventStore, R: CheckpointStore> Follower<S, R> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        let mut commits = self.store.follow();
        loop {
            let folded = self.fold_page().await?;
            if self.checkpoint_due() {
                self.checkpoint().await?;
            }
            if folded == 0 {
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = stop.changed() => break,
                    () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
                }
            } else if *stop.borrow() {
                break;
            }
        }
        self.checkpoint().await
    }

    /// Folds the next page of the log; returns how many records it held.
    async fn fold_page(&mut self) -> Result<usize, ProjectorError> {
        let after = *self.position.borrow();
        let page = self.store.read_log(after, READ_PAGE_RECORDS_MAX).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(0);
        };
        let envelopes = page
            .iter()
            .map(|r| {
                codec::decode(&r.bytes)
                    .map(|e| (r.position, e))
                    .map_err(|e| ProjectorError::Undecodable {
                        position: r.position,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<(Position, Envelope)>, _>>()?;
        {
            let mut models = self.models.write().expect("read models lock poisoned");
            for (position, envelope) in &envelopes {
                if let Outcome::Gap { .. } = models.apply(envelope) {
                    // The log is in commit order and a stream's versions
                    // commit in order: a gap means the log lost a record.
                    return Err(ProjectorError::Gap {
                        position: *position,
                    });
                }
            }
        }
        self.position.send_replace(last);
        Ok(page.len())
    }

    fn checkpoint_due(&self) -> bool {
        let pending = self.position.borrow().0 - self.checkpointed.0;
        pending >= CHECKPOINT_RECORDS_MAX
            || (pending > 0 && self.checkpointed_at.elapsed() >= CHECKPOINT_INTERVAL)
    }

    async fn checkpoint(&mut self) -> Result<(), ProjectorError> {
        let position = *self.position.borrow();
        if position == self.checkpointed {
            return Ok(());
        }
        let models = self.models.clone();
        let started = Instant::now();
        let state = tokio::task::spawn_blocking(move || {
            models
                .read()
                .expect("read models lock poisoned")
                .to_snapshot()
        })
        .await
        .map_err(|e| {
            ProjectorError::Checkpoint(format!("the snapshot task did not finish: {e}"))
        })?;
        let bytes = state.len();
        self.checkpoints
            .save_checkpoint(CHECKPOINT_NAME, Checkpoint { position, state })
            .await?;
        tracing::info!(
            %position,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read models checkpointed"
        );
        self.checkpointed = position;
        self.checkpointed_at = Instant::now();
        Ok(())
    }
}
