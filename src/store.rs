//! The store `tally serve` runs on: the embedded SQLite default, or DynamoDB.
//!
//! One enum rather than a generic server, so the HTTP stack, the command
//! service and the projector are built once; each call is one match away
//! from its adapter.

use ledger_core::id::{StreamId, StreamVersion, TenantId};
use ledger_store::dynamodb::DynamoStore;
use ledger_store::sqlite::SqliteStore;
use ledger_store::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, EventStore, IdempotencyKey,
    IdempotencyRecord, Position, Record, StoreError, StoredHead, read_log_all,
};

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore),
}

impl Store {
    /// Every event record the store holds, grouped by tenant and stream,
    /// each stream's in version order: the log read page by page on
    /// SQLite, a parallel Scan of the event table on DynamoDB. It holds
    /// them all in memory, so it is for tests and small stores.
    ///
    /// # Errors
    /// The store's.
    pub async fn all_records(&self) -> Result<Vec<Record>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let logged = read_log_all(s, Position::ZERO).await?;
                let mut records: Vec<Record> = logged.into_iter().map(|r| r.record).collect();
                records.sort_by_key(|r| (r.tenant_id, r.stream, r.version));
                Ok(records)
            }
            Store::Dynamo(s) => s.scan_events(SCAN_SEGMENTS).await,
        }
    }
}

/// Segments of a parallel Scan of the event table.
const SCAN_SEGMENTS: u32 = 4;

/// Runs `$call` on whichever adapter `$store` holds.
macro_rules! on_adapter {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            Store::Sqlite($s) => $call,
            Store::Dynamo($s) => $call,
        }
    };
}

impl EventStore for Store {
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
}

impl CheckpointStore for Store {
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
