//! [`AnyStore`]: whichever event store a process runs on, the embedded
//! SQLite default or DynamoDB.
//!
//! One enum rather than generics, so the server, the command service, the
//! projector and the replay tools are built once; each call is one match
//! away from its adapter.

use tokio::sync::mpsc;

use ledger_core::id::{StreamId, StreamVersion, TenantId};

use crate::dynamodb::{DynamoStore, SCAN_PAGES_QUEUED};
use crate::sqlite::SqliteStore;
use crate::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, CommitLog, EventStore, IdempotencyKey,
    IdempotencyRecord, Position, READ_PAGE_RECORDS_MAX, Record, StoreError, StoredHead,
};

#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore),
}

/// Segments of a parallel Scan of the event table.
pub const SCAN_SEGMENTS: u32 = 4;

/// Pages of records, each stream's in version order (see [`AnyStore::pages`]).
pub type Pages = mpsc::Receiver<Result<Vec<Record>, StoreError>>;

impl AnyStore {
    /// Every event record the store holds, page by page, each stream's in
    /// version order, streams interleaved, with a few pages read ahead at
    /// most: the log in commit order up to its head when called on SQLite,
    /// a parallel Scan of the event table on DynamoDB. The receiver ends
    /// after the last page or the first error.
    pub fn pages(&self) -> Pages {
        match self {
            AnyStore::Sqlite(s) => {
                let (tx, rx) = mpsc::channel(SCAN_PAGES_QUEUED);
                let (store, head) = (s.clone(), s.head());
                tokio::spawn(async move {
                    let mut cursor = Position::ZERO;
                    while cursor < head {
                        let page = match store.read_log(cursor, READ_PAGE_RECORDS_MAX).await {
                            Ok(page) => page,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        let Some(last) = page.last() else { return };
                        cursor = last.position;
                        let records = page
                            .into_iter()
                            .take_while(|r| r.position <= head)
                            .map(|r| r.record)
                            .collect();
                        if tx.send(Ok(records)).await.is_err() {
                            return;
                        }
                    }
                });
                rx
            }
            AnyStore::Dynamo(s) => s.scan_event_pages(SCAN_SEGMENTS, SCAN_PAGES_QUEUED),
        }
    }

    /// About how many records [`AnyStore::pages`] will give, for progress
    /// reports: exact on SQLite, DynamoDB's item count (refreshed about
    /// every six hours, and counting heads and keys too) on DynamoDB.
    ///
    /// # Errors
    /// The store's.
    pub async fn records_estimate(&self) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => Ok(s.head().0),
            AnyStore::Dynamo(s) => s.approximate_items().await,
        }
    }

    /// Every event record the store holds, grouped by tenant and stream,
    /// each stream's in version order. It holds them all in memory, so it
    /// is for tests and small stores.
    ///
    /// # Errors
    /// The store's.
    pub async fn all_records(&self) -> Result<Vec<Record>, StoreError> {
        let mut pages = self.pages();
        let mut records = Vec::new();
        while let Some(page) = pages.recv().await {
            records.extend(page?);
        }
        records.sort_by_key(|r| (r.tenant_id, r.stream, r.version));
        Ok(records)
    }
}

/// Runs `$call` on whichever adapter `$store` holds.
macro_rules! on_adapter {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Dynamo($s) => $call,
        }
    };
}

impl EventStore for AnyStore {
    async fn append(&self, request: AppendRequest) -> Result<(), AppendError> {
        on_adapter!(self, s => s.append(request).await)
    }

    async fn idempotency(
        &self,
        tenant_id: TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        on_adapter!(self, s => s.idempotency(tenant_id, key).await)
    }

    async fn read_stream(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        on_adapter!(self, s => s.read_stream(tenant_id, stream, after, limit).await)
    }

    async fn load_heads(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<Option<StoredHead>>, StoreError> {
        on_adapter!(self, s => s.load_heads(tenant_id, streams).await)
    }

    async fn tenants(
        &self,
        after: Option<TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantId>, StoreError> {
        on_adapter!(self, s => s.tenants(after, limit).await)
    }
}

impl CheckpointStore for AnyStore {
    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        on_adapter!(self, s => s.load_checkpoint(projection).await)
    }

    async fn save_checkpoint(
        &self,
        projection: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        on_adapter!(self, s => s.save_checkpoint(projection, checkpoint).await)
    }
}
