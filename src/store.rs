//! The store `tally serve` runs on: the embedded SQLite default, or DynamoDB.
//!
//! One enum rather than a generic server, so the HTTP stack, the command
//! service and the projector are built once; each call is one match away
//! from its adapter.

use ledger_core::id::{StreamId, StreamVersion, TenantId};
use ledger_store::dynamodb::DynamoStore;
use ledger_store::sqlite::SqliteStore;
use ledger_store::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, Committed, EventStore, IdempotencyKey,
    IdempotencyRecord, Position, Record, StoreError, StoredHead,
};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore),
}

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
    async fn append(&self, request: AppendRequest) -> Result<Committed, AppendError> {
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

    async fn read_log(&self, after: Position, limit: usize) -> Result<Vec<Record>, StoreError> {
        on_adapter!(self, s => s.read_log(after, limit).await)
    }

    fn head(&self) -> Position {
        on_adapter!(self, s => s.head())
    }

    fn follow(&self) -> watch::Receiver<Position> {
        on_adapter!(self, s => s.follow())
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
