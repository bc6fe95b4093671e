//! The stream projector on one machine: follows the embedded store's log in
//! commit order into a read-model table, through the same
//! [`StreamProjector::handle`] the DynamoDB Streams and Kinesis handlers
//! call, so the embedded server and the cloud share one projection core
//! (gates, sums that ride with them, parking).
//!
//! Each page of the log is one batch, its records named by their
//! positions. A record the batch reports failed (the table failed or a
//! gate kept moving) is handed over again, with the rest of the page, after
//! a backoff; the log's order has no gaps to wait out. The position folded
//! to is saved as a checkpoint after each page. Saving it apart from the
//! page's writes is safe because the gates make a redelivered record a
//! duplicate: a crash between the two costs refolding one page, never a
//! sum counted twice. The checkpoint is a position, not a state: restoring
//! costs nothing, whatever the log's length.

use std::time::Duration;

use ledger_store::dynamodb::change::Change;
use ledger_store::views::ViewTable;
use ledger_store::{
    Checkpoint, CheckpointStore, CommitLog, Position, READ_PAGE_RECORDS_MAX, StoreError,
};
use tokio::sync::watch;

use crate::StreamProjector;
use crate::plan::pk_of;
use crate::record::ChangeRecord;

/// The checkpoint's name in the checkpoint store.
pub const VIEWS_CHECKPOINT_NAME: &str = "views";
/// How long a caught-up follower lets the log gather before it folds the
/// next page: what a read waiting on a consistency token may wait beyond
/// the fold itself.
pub const GATHER_PAUSE: Duration = Duration::from_millis(20);
/// Longest pause before a page whose records failed is handed over again.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Why the follower could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Follows a log into a read-model table.
pub struct ViewFollower<S, T, R> {
    store: S,
    projector: StreamProjector<T>,
    checkpoints: R,
    /// Records per page (and so per batch).
    page: usize,
    position: watch::Sender<Position>,
}

impl<S, T, R> ViewFollower<S, T, R>
where
    S: CommitLog,
    T: ViewTable,
    R: CheckpointStore,
{
    /// A follower that resumes after its last checkpoint.
    ///
    /// # Errors
    /// The checkpoint store's.
    pub async fn resume(
        store: S,
        table: T,
        checkpoints: R,
    ) -> Result<ViewFollower<S, T, R>, ProjectorError> {
        let position = checkpoints
            .load_checkpoint(VIEWS_CHECKPOINT_NAME)
            .await?
            .map_or(Position::ZERO, |c| c.position);
        tracing::info!(position = position.0, "read models restored");
        Ok(ViewFollower {
            store,
            projector: StreamProjector::new(table),
            checkpoints,
            page: READ_PAGE_RECORDS_MAX,
            position: watch::channel(position).0,
        })
    }

    /// Pages of at most `records` (at least one).
    pub fn with_page(mut self, records: usize) -> Self {
        self.page = records.clamp(1, READ_PAGE_RECORDS_MAX);
        self
    }

    /// The position folded to: every record at or below it is in the table.
    pub fn position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    pub fn table(&self) -> &T {
        self.projector.table()
    }

    /// Folds the next page and checkpoints it; returns how many records it
    /// held (0: the log's end).
    ///
    /// # Errors
    /// The store's or the checkpoint store's.
    pub async fn step(&mut self) -> Result<usize, ProjectorError> {
        let after = *self.position.borrow();
        let page = self.store.read_log(after, self.page).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(0);
        };
        let records: Vec<ChangeRecord> = page
            .iter()
            .map(|r| ChangeRecord {
                id: r.position.0.to_string(),
                written_at_ms: None,
                change: Change::Event {
                    pk: pk_of(r.record.tenant_id, r.record.stream),
                    version: r.record.version.get(),
                    bytes: r.record.bytes.clone(),
                },
            })
            .collect();
        let mut attempt = 0u32;
        loop {
            let report = self.projector.handle(records.clone()).await;
            if report.failed.is_empty() {
                break;
            }
            attempt += 1;
            tracing::warn!(
                failed = report.failed.len(),
                attempt,
                "records of a page failed to project; handing the page over again"
            );
            let pause = Duration::from_millis(10 << attempt.min(7)).min(RETRY_PAUSE_MAX);
            tokio::time::sleep(pause).await;
        }
        self.checkpoints
            .save_checkpoint(
                VIEWS_CHECKPOINT_NAME,
                Checkpoint {
                    position: last,
                    state: Vec::new(),
                },
            )
            .await?;
        self.position.send_replace(last);
        Ok(page.len())
    }

    /// Folds pages until the log's end; returns the records folded.
    ///
    /// # Errors
    /// As [`ViewFollower::step`].
    pub async fn catch_up(&mut self) -> Result<usize, ProjectorError> {
        let mut folded = 0;
        loop {
            match self.step().await? {
                0 => return Ok(folded),
                n => folded += n,
            }
        }
    }

    /// Follows the log until `stop` turns true. A page that fails to
    /// read or to checkpoint is tried again after [`RETRY_PAUSE_MAX`]:
    /// the follower outlives a store that is briefly unavailable.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut commits = self.store.follow();
        loop {
            if *stop.borrow() {
                return;
            }
            match self.step().await {
                Ok(0) => {
                    tokio::select! {
                        _ = commits.changed() => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(n) if n < self.page => {
                    // A short page: the follower has caught up. Let the
                    // next page gather for a moment rather than fold every
                    // few records on their own: a page's writes are one
                    // transaction, and pages dirtied once for many records
                    // cost far less than once for each few.
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER_PAUSE) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "following the log failed; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE_MAX) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}
