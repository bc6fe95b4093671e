//! The DynamoDB adapter: the event table, and projection checkpoints in the
//! read-model table.
//!
//! Tables come from `schemas/dynamodb/` (see [`schema`]). In the event
//! table an event is one item, `pk = tenant|stream`, `v = version`, holding
//! the codec's bytes and the few attributes the stream's consumers filter
//! on (tenant, type, time, command id). A command's idempotency record is
//! an item of the same table, `pk = tenant|key|KEY`, `v = 0`, written in the
//! same `TransactWriteItems` as the command's events:
//!
//! - each event is a `Put` conditioned on `attribute_not_exists(pk)`: no
//!   version is ever written twice;
//! - each stream appended with its head (`v = 0`, the stream's decision
//!   state) puts the head conditioned on the tag and version it was read
//!   at: the stream is where the decision saw it, so no other check is
//!   needed; a stream appended at a version above zero without a stored
//!   head adds a `ConditionCheck` that the expected version's item exists:
//!   no gap;
//! - the idempotency record is a `Put` conditioned on `attribute_not_exists`,
//!   returning the stored record when it fails, so a racing or repeated key
//!   is answered from what the first request stored.
//!
//! A cancelled transaction's reasons say which action failed: the key (it
//! wins, as the port requires), a stream's version (`VersionConflict`
//! naming the stream), or a transient conflict or throttle (retried with
//! backoff and jitter a bounded number of times). The SDK's own retries
//! (standard mode, [`SDK_ATTEMPTS_MAX`] attempts, exponential backoff with
//! jitter) cover throttling and transient errors of every other call.
//!
//! A DynamoDB table has no commit order across items, so this adapter
//! offers no [`CommitLog`](crate::CommitLog): an append is acknowledged
//! once its transaction succeeded and never waits for the table's stream.
//! The stream's consumers (the stream projector) read it per item, gated by
//! each event's own stream version; audits and replays read the table by a
//! parallel Scan ([`DynamoStore::scan_events`]).

pub mod change;
pub mod item;
pub mod schema;
pub mod stream;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use ledger_core::id::{StreamId, StreamKind, StreamVersion, TenantId};
pub use schema::create_tables;

use crate::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, EventStore, HeadWrite, IdempotencyKey,
    IdempotencyRecord, IdempotencyWrite, Position, READ_PAGE_RECORDS_MAX, Record, StoreError,
    StoredHead, check_shape,
};
use item::{BYTES, PK, SORT, VERSION, binary, event_pk, number, parse_pk, string};
use schema::backend;

/// Most actions in one `TransactWriteItems`.
pub const TRANSACT_ACTIONS_MAX: usize = 100;
/// Largest `TransactWriteItems` in bytes (the service's 4 MB).
pub const TRANSACT_BYTES_MAX: usize = 4_000_000;
// Every append the port's shape rules accept fits one transaction: its
// events, a version check per stream and the idempotency record within the
// action limit, and its events (each at most EVENT_BYTES_MAX, which
// `check_shape` enforces) and response within the size limit. So the
// adapter needs no limit checks of its own.
const _: () = assert!(crate::APPEND_ACTIONS_MAX <= TRANSACT_ACTIONS_MAX);
const _: () = assert!(
    crate::APPEND_EVENTS_MAX * ledger_core::limits::EVENT_BYTES_MAX
        + crate::APPEND_STREAMS_MAX * crate::HEAD_BYTES_MAX
        + crate::IDEMPOTENCY_RESPONSE_BYTES_MAX
        < TRANSACT_BYTES_MAX
);

/// Largest checkpoint chunk: well inside the 400 KB item limit.
pub const CHECKPOINT_CHUNK_BYTES: usize = 300 * 1024;
/// Attempts the SDK makes at a call that failed transiently or was throttled.
pub const SDK_ATTEMPTS_MAX: u32 = 5;
/// Scan pages read ahead of their reader (each at most 1 MB).
pub const SCAN_PAGES_QUEUED: usize = 8;
/// Attempts at a transaction cancelled by a conflicting transaction or a
/// throttle.
pub const TRANSACT_ATTEMPTS_MAX: u32 = 5;
/// How long a superseded checkpoint generation stays readable (for loads
/// that started before the switch) before TTL removes it.
pub const CHECKPOINT_GRACE: Duration = Duration::from_secs(3600);

// Attribute names of the items other than events (see `item` for those).
const REQUEST_HASH: &str = "h";
const RESPONSE: &str = "r";
/// A head item's stream version.
const HEAD_VERSION: &str = "hv";
/// A head item's tag, moved by one at every write.
const HEAD_ETAG: &str = "e";
/// The sparse index of the event table that lists tenants: only the head
/// of a tenant's settings stream has its hash key, [`REGISTRY`].
pub const TENANTS_INDEX: &str = "tenants";
/// The `tenants` index's hash key, on tenant settings heads only.
pub const REGISTRY: &str = "registry";
/// The one value of [`REGISTRY`].
const TENANT_REGISTRY: &str = "tenant";
const POSITION: &str = "pos";
const GENERATION: &str = "gen";
const CHUNKS: &str = "n";
/// The TTL attribute of the read-model table.
pub const EXPIRES_AT: &str = "expires_at";

/// Where the tables are.
#[derive(Debug, Clone)]
pub struct DynamoConfig {
    /// A DynamoDB-compatible endpoint (DynamoDB Local); `None` for the
    /// service, with credentials and region from the environment.
    pub endpoint: Option<String>,
    /// Prepended to the names in `schemas/dynamodb/`.
    pub table_prefix: String,
}

impl DynamoConfig {
    /// The event table's and the read-model table's names.
    pub fn table_names(&self) -> (String, String) {
        (
            format!("{}events", self.table_prefix),
            format!("{}read-models", self.table_prefix),
        )
    }
}

/// The DynamoDB `EventStore` and `CheckpointStore`. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Client,
    events: String,
    read_models: String,
    capacity: Capacity,
}

/// Write capacity the store has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CapacityTotals {
    /// Event-table transactions sent (each attempt).
    pub transactions: u64,
    /// Appends: events, version checks and idempotency records.
    pub appends: Wcu,
    /// Projection checkpoints: chunks, heads, and superseded chunks marked
    /// for TTL.
    pub checkpoints: Wcu,
}

/// Write capacity, two ways: DynamoDB Local's figure is not the service's
/// bill (it reports 2 WCU for a transaction of any number of small items),
/// so the formula's figure stands beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wcu {
    /// What the endpoint reported (`ReturnConsumedCapacity=TOTAL`).
    pub reported: f64,
    /// AWS's formula over the items written: one WCU per started KB of an
    /// item (of the larger of old and new for an update), doubled inside a
    /// transaction; condition checks count like writes of the item they
    /// name.
    pub computed: f64,
}

#[derive(Default)]
struct Capacity {
    transactions: AtomicU64,
    appends: Meter,
    checkpoints: Meter,
}

/// A [`Wcu`] being counted, in thousandths of a WCU.
#[derive(Default)]
struct Meter {
    reported_milli: AtomicU64,
    computed_milli: AtomicU64,
}

impl Meter {
    fn add(&self, consumed: Option<&[aws_sdk_dynamodb::types::ConsumedCapacity]>, computed: u64) {
        let reported: f64 = consumed
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        self.reported_milli
            .fetch_add((reported * 1000.0) as u64, Ordering::Relaxed);
        self.computed_milli
            .fetch_add(computed * 1000, Ordering::Relaxed);
    }

    fn totals(&self) -> Wcu {
        let wcu = |milli: &AtomicU64| milli.load(Ordering::Relaxed) as f64 / 1000.0;
        Wcu {
            reported: wcu(&self.reported_milli),
            computed: wcu(&self.computed_milli),
        }
    }
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("events", &self.inner.events)
            .field("read_models", &self.inner.read_models)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// Connects to existing tables: one `DescribeTable`, nothing read.
    ///
    /// # Errors
    /// When the event table cannot be reached.
    pub async fn connect(config: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        let (db, _) = clients(config).await;
        Self::connect_with(config, db).await
    }

    /// Creates the tables (when missing), then connects.
    ///
    /// # Errors
    /// As [`create_tables`] and [`DynamoStore::connect`].
    pub async fn create_and_connect(config: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        let (db, _) = clients(config).await;
        create_tables(&db, &config.table_prefix).await?;
        Self::connect_with(config, db).await
    }

    async fn connect_with(config: &DynamoConfig, db: Client) -> Result<DynamoStore, StoreError> {
        let (events, read_models) = config.table_names();
        db.describe_table()
            .table_name(&events)
            .send()
            .await
            .map_err(|e| backend("DescribeTable", e))?;
        Ok(DynamoStore {
            inner: Arc::new(Inner {
                db,
                events,
                read_models,
                capacity: Capacity::default(),
            }),
        })
    }

    /// The write capacity used so far.
    pub fn capacity(&self) -> CapacityTotals {
        let capacity = &self.inner.capacity;
        CapacityTotals {
            transactions: capacity.transactions.load(Ordering::Relaxed),
            appends: capacity.appends.totals(),
            checkpoints: capacity.checkpoints.totals(),
        }
    }

    /// Every event of the table, by a parallel Scan of `segments` segments:
    /// for tests and small tables (it holds them all). Records come grouped
    /// by tenant and stream, each stream's in version order.
    ///
    /// # Errors
    /// The service's, or an item that is not an event record.
    pub async fn scan_events(&self, segments: u32) -> Result<Vec<Record>, StoreError> {
        let mut pages = self.scan_event_pages(segments, SCAN_PAGES_QUEUED);
        let mut records = Vec::new();
        while let Some(page) = pages.recv().await {
            records.extend(page?);
        }
        records.sort_unstable_by_key(|r| (r.tenant_id, r.stream, r.version));
        Ok(records)
    }

    /// Every event of the table, page by page, by a parallel Scan of
    /// `segments` segments, with at most `queued` pages read ahead of the
    /// receiver (so memory stays bounded whatever the table's size).
    ///
    /// Segments split the table by partition key, so all of a stream's
    /// items are in one segment, and a Scan returns a partition's items in
    /// sort-key order: each stream arrives in version order, streams
    /// interleaved. (DynamoDB documents the split, and returns items in
    /// storage order; a reader that checks versions, as the audit does,
    /// would report any other order as a gap, never pass it.)
    ///
    /// The receiver ends after the last page, or after the first error.
    pub fn scan_event_pages(
        &self,
        segments: u32,
        queued: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<Record>, StoreError>> {
        let segments = segments.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel(queued.max(1));
        for segment in 0..segments {
            let (store, tx) = (self.clone(), tx.clone());
            tokio::spawn(async move {
                if let Err(e) = store.scan_segment(segment, segments, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
        }
        rx
    }

    /// Puts an item into the event table unconditionally, for
    /// [`crate::tamper`].
    #[cfg(feature = "tamper")]
    pub(crate) async fn tamper_put(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<(), StoreError> {
        self.inner
            .db
            .put_item()
            .table_name(&self.inner.events)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    /// Deletes an item of the event table, for [`crate::tamper`].
    #[cfg(feature = "tamper")]
    pub(crate) async fn tamper_delete(
        &self,
        pk: &str,
        version: StreamVersion,
    ) -> Result<(), StoreError> {
        self.inner
            .db
            .delete_item()
            .table_name(&self.inner.events)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(VERSION, AttributeValue::N(version.to_string()))
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(())
    }

    /// One segment of a parallel Scan of `segments` (see
    /// [`DynamoStore::scan_event_pages`]), page by page: its streams each
    /// in version order.
    pub fn scan_segment_pages(
        &self,
        segment: u32,
        segments: u32,
        queued: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<Record>, StoreError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(queued.max(1));
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.scan_segment(segment, segments.max(1), &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    /// Approximate number of items in the event table (DynamoDB refreshes
    /// it about every six hours), for progress reports.
    ///
    /// # Errors
    /// The service's.
    pub async fn approximate_items(&self) -> Result<u64, StoreError> {
        let table = self
            .inner
            .db
            .describe_table()
            .table_name(&self.inner.events)
            .send()
            .await
            .map_err(|e| backend("DescribeTable", e))?;
        Ok(table
            .table()
            .and_then(|t| t.item_count())
            .map_or(0, |n| n.max(0) as u64))
    }

    async fn scan_segment(
        &self,
        segment: u32,
        segments: u32,
        tx: &tokio::sync::mpsc::Sender<Result<Vec<Record>, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .inner
                .db
                .scan()
                .table_name(&self.inner.events)
                .segment(segment as i32)
                .total_segments(segments as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Scan", e))?;
            let mut records = Vec::with_capacity(page.items().len());
            for item in page.items() {
                if let Some(event) = item::read_event(item)? {
                    records.push(Record {
                        tenant_id: event.tenant_id,
                        stream: event.stream,
                        version: event.version,
                        bytes: event.bytes.to_vec(),
                    });
                }
            }
            if tx.send(Ok(records)).await.is_err() {
                // The reader stopped listening.
                return Ok(());
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    async fn transact(
        &self,
        request: &AppendRequest,
        kinds: &[Action],
        actions: Vec<TransactWriteItem>,
        computed_wcu: u64,
    ) -> Result<(), AppendError> {
        let capacity = &self.inner.capacity;
        let mut attempt = 0;
        loop {
            attempt += 1;
            capacity.transactions.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .inner
                .db
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let error = match sent {
                Ok(done) => {
                    capacity
                        .appends
                        .add(done.consumed_capacity.as_deref(), computed_wcu);
                    return Ok(());
                }
                Err(e) => {
                    // A cancelled transaction is billed as if it had run.
                    capacity.appends.add(None, computed_wcu);
                    e
                }
            };
            let Some(cancelled) = error.as_service_error().and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                _ => None,
            }) else {
                return Err(backend("TransactWriteItems", error).into());
            };
            let reasons = cancelled.cancellation_reasons();
            match self.cancelled(request, kinds, reasons).await? {
                Some(refusal) => return Err(refusal),
                None if attempt < TRANSACT_ATTEMPTS_MAX => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                None => {
                    return Err(StoreError::backend(
                        "appending",
                        format!(
                            "TransactWriteItems cancelled {attempt} times by conflicts or \
                             throttling: {:?}",
                            reasons.iter().map(|r| r.code()).collect::<Vec<_>>()
                        ),
                    )
                    .into());
                }
            }
        }
    }

    /// What a cancelled append means: a refusal, or `None` to try again.
    async fn cancelled(
        &self,
        request: &AppendRequest,
        kinds: &[Action],
        reasons: &[aws_sdk_dynamodb::types::CancellationReason],
    ) -> Result<Option<AppendError>, AppendError> {
        let codes: Vec<Option<&str>> = reasons.iter().map(|r| r.code()).collect();
        match classify(kinds, &codes) {
            Cancellation::KeyExists => {
                let stored = reasons[0].item().ok_or_else(|| {
                    StoreError::Corrupt("a refused key came back without its record".to_owned())
                })?;
                let record = idempotency_record(stored)?;
                Ok(Some(AppendError::KeyExists(Box::new(record))))
            }
            Cancellation::HeadConflict(index, at) => {
                let head = &request.heads[index];
                let stored = reasons.get(at).and_then(|r| r.item());
                let actual = match stored {
                    Some(item) => number(item, HEAD_ETAG).map_err(StoreError::from)?,
                    None => self.head_etag(request.tenant_id, head.stream).await?,
                };
                Ok(Some(AppendError::HeadConflict {
                    stream: head.stream,
                    expected: head.expected_etag,
                    actual,
                }))
            }
            Cancellation::Conflict(index) => {
                let append = &request.streams[index];
                let actual = self.last_version(request.tenant_id, append.stream).await?;
                Ok(Some(AppendError::VersionConflict {
                    stream: append.stream,
                    expected: append.expected,
                    actual,
                }))
            }
            Cancellation::Transient => Ok(None),
            Cancellation::Failed => Err(StoreError::backend(
                "appending",
                format!(
                    "TransactWriteItems cancelled: {:?}",
                    reasons
                        .iter()
                        .map(|r| (r.code(), r.message()))
                        .collect::<Vec<_>>()
                ),
            )
            .into()),
        }
    }

    /// The stored tag of a stream's head, 0 when it has none.
    async fn head_etag(&self, tenant_id: TenantId, stream: StreamId) -> Result<u64, StoreError> {
        let got = self
            .inner
            .db
            .get_item()
            .table_name(&self.inner.events)
            .key(PK, AttributeValue::S(event_pk(tenant_id, stream)))
            .key(VERSION, AttributeValue::N("0".to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        match got.item {
            Some(item) => Ok(number(&item, HEAD_ETAG)?),
            None => Ok(0),
        }
    }

    async fn last_version(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
    ) -> Result<StreamVersion, StoreError> {
        let found = self
            .inner
            .db
            .query()
            .table_name(&self.inner.events)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(event_pk(tenant_id, stream)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        match found.items().first() {
            Some(item) => Ok(StreamVersion::new(number(item, VERSION)?)),
            None => Ok(StreamVersion::NONE),
        }
    }

    /// The transaction's actions and its WCU by the formula.
    fn actions(&self, request: &AppendRequest) -> Result<Actions, AppendError> {
        let mut out = Actions {
            actions: Vec::with_capacity(crate::append_actions(request)),
            kinds: Vec::with_capacity(crate::append_actions(request)),
            wcu: 0,
        };
        if let Some(idempotency) = &request.idempotency {
            let item = idempotency_item(request, idempotency);
            let wcu = transact_wcu(item_size(&item));
            // The stored record comes back when the key exists.
            out.push(Action::Key, put_new(&self.inner.events, item, true)?, wcu);
        }
        for (n, append) in request.streams.iter().enumerate() {
            let pk = event_pk(request.tenant_id, append.stream);
            let head = request.heads.iter().position(|h| h.stream == append.stream);
            if let Some(h) = head {
                let (put, wcu) = self.head_put(&pk, &request.heads[h], Some(append.expected))?;
                out.push(Action::Head(h), put, wcu);
            }
            // A stored head at the expected version proves the stream is
            // there; without one, a check of the expected version's item.
            let proven = head.is_some_and(|h| request.heads[h].expected_etag > 0);
            if append.expected.get() > 0 && !proven {
                let (check, wcu) = self.version_check(&pk, append.expected)?;
                out.push(Action::Stream(n), check, wcu);
            }
            for sealed in &append.events {
                let item = item::event_item(request.tenant_id, &pk, sealed);
                let wcu = transact_wcu(item_size(&item));
                out.push(
                    Action::Stream(n),
                    put_new(&self.inner.events, item, false)?,
                    wcu,
                );
            }
        }
        for (h, write) in request.heads.iter().enumerate() {
            if request.streams.iter().any(|s| s.stream == write.stream) {
                continue;
            }
            let pk = event_pk(request.tenant_id, write.stream);
            let (put, wcu) = self.head_put(&pk, write, None)?;
            out.push(Action::Head(h), put, wcu);
            if write.version.get() > 0 {
                let (check, wcu) = self.version_check(&pk, write.version)?;
                out.push(Action::Head(h), check, wcu);
            }
        }
        debug_assert_eq!(out.actions.len(), crate::append_actions(request));
        Ok(out)
    }

    /// A head's `Put`, conditioned on the stored head's tag (and, for a
    /// stream appended at `expected`, on its version), handing back the
    /// stored head when refused; and its WCU by the formula.
    fn head_put(
        &self,
        pk: &str,
        head: &HeadWrite,
        expected: Option<StreamVersion>,
    ) -> Result<(TransactWriteItem, u64), StoreError> {
        let mut item = HashMap::from([
            (PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (VERSION.to_owned(), AttributeValue::N("0".to_owned())),
            (
                HEAD_VERSION.to_owned(),
                AttributeValue::N(head.version.to_string()),
            ),
            (
                HEAD_ETAG.to_owned(),
                AttributeValue::N((head.expected_etag + 1).to_string()),
            ),
            (
                BYTES.to_owned(),
                AttributeValue::B(Blob::new(head.bytes.clone())),
            ),
        ]);
        if head.stream.kind() == StreamKind::Tenant {
            // Lists the tenant in the sparse `tenants` index.
            item.insert(
                REGISTRY.to_owned(),
                AttributeValue::S(TENANT_REGISTRY.to_owned()),
            );
        }
        let wcu = transact_wcu(item_size(&item));
        let mut put = Put::builder()
            .table_name(&self.inner.events)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        put = if head.expected_etag == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put = put
                .expression_attribute_names("#e", HEAD_ETAG)
                .expression_attribute_values(
                    ":e",
                    AttributeValue::N(head.expected_etag.to_string()),
                );
            match expected {
                Some(version) => put
                    .condition_expression("#e = :e AND #hv = :hv")
                    .expression_attribute_names("#hv", HEAD_VERSION)
                    .expression_attribute_values(":hv", AttributeValue::N(version.to_string())),
                None => put.condition_expression("#e = :e"),
            }
        };
        let put = put
            .build()
            .map_err(|e| StoreError::backend("building a head's Put", e))?;
        Ok((TransactWriteItem::builder().put(put).build(), wcu))
    }

    /// The stored heads of `streams`, by consistent `BatchGetItem`s of at
    /// most [`BATCH_GET_KEYS_MAX`] keys (one for any command), following
    /// unprocessed keys with backoff.
    async fn batch_heads(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<Option<StoredHead>>, StoreError> {
        let mut out = vec![None; streams.len()];
        for chunk in streams.chunks(BATCH_GET_KEYS_MAX) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|stream| {
                    HashMap::from([
                        (
                            PK.to_owned(),
                            AttributeValue::S(event_pk(tenant_id, *stream)),
                        ),
                        (VERSION.to_owned(), AttributeValue::N("0".to_owned())),
                    ])
                })
                .collect();
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::backend("building a BatchGetItem", e))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                attempt += 1;
                let got = self
                    .inner
                    .db
                    .batch_get_item()
                    .request_items(&self.inner.events, request)
                    .send()
                    .await
                    .map_err(|e| backend("BatchGetItem", e))?;
                for item in got
                    .responses()
                    .and_then(|r| r.get(&self.inner.events))
                    .into_iter()
                    .flatten()
                {
                    let (_, stream) = item::parse_pk(string(item, PK)?)
                        .map_err(|e| StoreError::Corrupt(format!("head item: {e}")))?;
                    let head = StoredHead {
                        version: StreamVersion::new(number(item, HEAD_VERSION)?),
                        etag: number(item, HEAD_ETAG)?,
                        bytes: binary(item, BYTES)?.to_vec(),
                    };
                    for (i, s) in streams.iter().enumerate() {
                        if *s == stream {
                            out[i] = Some(head.clone());
                        }
                    }
                }
                pending = got
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.inner.events))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    if attempt >= TRANSACT_ATTEMPTS_MAX {
                        return Err(StoreError::backend(
                            "loading heads",
                            format!("BatchGetItem left keys unprocessed {attempt} times"),
                        ));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(out)
    }

    /// A `ConditionCheck` that the stream `pk` holds its `expected`
    /// version, and its WCU by the formula.
    fn version_check(
        &self,
        pk: &str,
        expected: StreamVersion,
    ) -> Result<(TransactWriteItem, u64), StoreError> {
        let key = HashMap::from([
            (PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (VERSION.to_owned(), AttributeValue::N(expected.to_string())),
        ]);
        let wcu = transact_wcu(item_size(&key));
        let check = ConditionCheck::builder()
            .table_name(&self.inner.events)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| StoreError::backend("building a ConditionCheck", e))?;
        Ok((
            TransactWriteItem::builder().condition_check(check).build(),
            wcu,
        ))
    }

    async fn load_head(&self, projection: &str) -> Result<Option<(u64, String, u64)>, StoreError> {
        let got = self
            .inner
            .db
            .get_item()
            .table_name(&self.inner.read_models)
            .key(PK, AttributeValue::S(checkpoint_pk(projection)))
            .key(SORT, AttributeValue::S("head".to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        let Some(item) = got.item else {
            return Ok(None);
        };
        Ok(Some((
            number(&item, POSITION)?,
            string(&item, GENERATION)?.to_owned(),
            number(&item, CHUNKS)?,
        )))
    }

    async fn load_chunks(
        &self,
        projection: &str,
        generation: &str,
        chunks: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut state = Vec::new();
        let mut seen = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .inner
                .db
                .query()
                .table_name(&self.inner.read_models)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    AttributeValue::S(chunk_pk(projection, generation)),
                )
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in page.items() {
                state.extend_from_slice(binary(item, BYTES)?);
                seen += 1;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        // A generation removed under us (a newer save won and TTL ran) reads
        // short; the caller starts again from the head.
        Ok((seen == chunks).then_some(state))
    }
}

/// What one action of an append's transaction is for, so that its
/// cancellation reason can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The idempotency record.
    Key,
    /// An event of, or the version check of, the request's stream `n`.
    Stream(usize),
    /// The head `n` of the request, or the check that its stream reached
    /// its version.
    Head(usize),
}

/// Most keys of one `BatchGetItem` (the service's limit).
pub const BATCH_GET_KEYS_MAX: usize = 100;

/// What a cancelled transaction's reasons say.
#[derive(Debug, PartialEq, Eq)]
enum Cancellation {
    /// The idempotency record exists.
    KeyExists,
    /// The request's head at this index is not stored as it expects (or
    /// would run ahead of its stream); the second index is the action's,
    /// whose reason may carry the stored head.
    HeadConflict(usize, usize),
    /// The stream at this index of the request is not at its expected
    /// version (an event's version exists, or the expected one does not).
    Conflict(usize),
    /// Only conflicts with other transactions or throttling: try again.
    Transient,
    /// Anything else (a validation error, an item too large).
    Failed,
}

/// Reads the reasons, one per action, against what each action is for
/// (`kinds`, as [`DynamoStore::actions`] built them). A failed key wins, as
/// the port requires; then the first action that failed its condition.
fn classify(kinds: &[Action], codes: &[Option<&str>]) -> Cancellation {
    let failed = |i: usize| codes.get(i).copied().flatten() == Some("ConditionalCheckFailed");
    if kinds
        .iter()
        .enumerate()
        .any(|(i, k)| *k == Action::Key && failed(i))
    {
        return Cancellation::KeyExists;
    }
    let first = kinds.iter().enumerate().find(|(i, _)| failed(*i));
    match first {
        Some((at, Action::Head(n))) => return Cancellation::HeadConflict(*n, at),
        Some((_, Action::Stream(n))) => return Cancellation::Conflict(*n),
        _ => {}
    }
    let transient = codes.iter().flatten().all(|code| {
        matches!(
            *code,
            "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    });
    if transient {
        Cancellation::Transient
    } else {
        Cancellation::Failed
    }
}

/// A stored idempotency item as the port's record.
fn idempotency_record(
    item: &HashMap<String, AttributeValue>,
) -> Result<IdempotencyRecord, StoreError> {
    let pk = string(item, PK)?;
    let key = pk
        .split_once("|key|")
        .and_then(|(_, key)| IdempotencyKey::parse(key).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("idempotency item {pk}")))?;
    let request_hash: [u8; 32] = binary(item, REQUEST_HASH)?
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("idempotency item {pk}: hash")))?;
    Ok(IdempotencyRecord {
        key,
        request_hash,
        response: binary(item, RESPONSE)?.to_vec(),
    })
}

/// A request's idempotency item: the key, the request's hash and the
/// response. (Items written before appends stopped naming log positions
/// also hold where their append ended; nothing reads that any more.)
fn idempotency_item(
    request: &AppendRequest,
    idempotency: &IdempotencyWrite,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            PK.to_owned(),
            AttributeValue::S(key_pk(request.tenant_id, &idempotency.key)),
        ),
        (VERSION.to_owned(), AttributeValue::N("0".to_owned())),
        (
            REQUEST_HASH.to_owned(),
            AttributeValue::B(Blob::new(idempotency.request_hash.to_vec())),
        ),
        (
            RESPONSE.to_owned(),
            AttributeValue::B(Blob::new(idempotency.response.clone())),
        ),
    ])
}

/// A transaction's `Put` of an item that must not exist yet; with
/// `return_old`, a refusal hands back the stored item.
fn put_new(
    table: &str,
    item: HashMap<String, AttributeValue>,
    return_old: bool,
) -> Result<TransactWriteItem, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)");
    if return_old {
        put = put
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    }
    let put = put
        .build()
        .map_err(|e| StoreError::backend("building a Put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

struct Actions {
    actions: Vec<TransactWriteItem>,
    kinds: Vec<Action>,
    wcu: u64,
}

impl Actions {
    fn push(&mut self, kind: Action, action: TransactWriteItem, wcu: u64) {
        self.kinds.push(kind);
        self.actions.push(action);
        self.wcu += wcu;
    }
}

/// The one SDK configuration of every AWS client of the workspace (DynamoDB,
/// its Streams, Kinesis), with the store's retry policy: for `endpoint` (an
/// emulator) with test credentials in `us-east-1`, or for the service with
/// credentials and region from the environment when `endpoint` is `None`.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
        RetryConfig::standard()
            .with_max_attempts(SDK_ATTEMPTS_MAX)
            .with_initial_backoff(Duration::from_millis(25)),
    );
    if let Some(endpoint) = endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .test_credentials()
            .region(aws_config::Region::new("us-east-1"));
    }
    loader.load().await
}

/// SDK clients for DynamoDB and its Streams, configured by [`sdk_config`].
/// Every DynamoDB operation they start is counted in [`requests_sent`].
pub async fn clients(config: &DynamoConfig) -> (Client, aws_sdk_dynamodbstreams::Client) {
    let sdk = sdk_config(config.endpoint.as_deref()).await;
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(CountRequests)
        .build();
    (
        Client::from_conf(dynamodb),
        aws_sdk_dynamodbstreams::Client::new(&sdk),
    )
}

/// DynamoDB operations started by this process's clients (each counted
/// once, whatever its retries): what a Lambda entry reports as the store
/// calls an invocation, or its cold start, made.
static REQUESTS_SENT: AtomicU64 = AtomicU64::new(0);

/// DynamoDB operations this process has started so far.
pub fn requests_sent() -> u64 {
    REQUESTS_SENT.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct CountRequests;

impl aws_sdk_dynamodb::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_execution(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        REQUESTS_SENT.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl EventStore for DynamoStore {
    async fn append(&self, request: AppendRequest) -> Result<(), AppendError> {
        check_shape(&request)?;
        let Actions {
            actions,
            kinds,
            wcu,
        } = self.actions(&request)?;
        self.transact(&request, &kinds, actions, wcu).await
    }

    async fn idempotency(
        &self,
        tenant_id: TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let got = self
            .inner
            .db
            .get_item()
            .table_name(&self.inner.events)
            .key(PK, AttributeValue::S(key_pk(tenant_id, key)))
            .key(VERSION, AttributeValue::N("0".to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        match got.item {
            Some(item) => Ok(Some(idempotency_record(&item)?)),
            None => Ok(None),
        }
    }

    async fn read_stream(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(READ_PAGE_RECORDS_MAX);
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        // Query pages stop at 1 MB whatever the limit: follow
        // LastEvaluatedKey until the limit or the stream's end.
        while records.len() < limit {
            let page = self
                .inner
                .db
                .query()
                .table_name(&self.inner.events)
                .key_condition_expression("pk = :pk AND v > :after")
                .expression_attribute_values(":pk", AttributeValue::S(event_pk(tenant_id, stream)))
                .expression_attribute_values(":after", AttributeValue::N(after.to_string()))
                .consistent_read(true)
                .limit((limit - records.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in page.items() {
                let version = StreamVersion::new(number(item, VERSION)?);
                records.push(Record {
                    tenant_id,
                    stream,
                    version,
                    bytes: binary(item, BYTES)?.to_vec(),
                });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(records)
    }

    async fn load_heads(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<Option<StoredHead>>, StoreError> {
        self.batch_heads(tenant_id, streams).await
    }

    async fn tenants(
        &self,
        after: Option<TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantId>, StoreError> {
        let limit = limit.min(crate::READ_PAGE_RECORDS_MAX);
        let mut out = Vec::new();
        let mut start = after.map(|t| {
            HashMap::from([
                (
                    PK.to_owned(),
                    AttributeValue::S(event_pk(t, StreamId::tenant(t))),
                ),
                (VERSION.to_owned(), AttributeValue::N("0".to_owned())),
                (
                    REGISTRY.to_owned(),
                    AttributeValue::S(TENANT_REGISTRY.to_owned()),
                ),
            ])
        });
        while out.len() < limit {
            let page = self
                .inner
                .db
                .query()
                .table_name(&self.inner.events)
                .index_name(TENANTS_INDEX)
                .key_condition_expression("#r = :r")
                .expression_attribute_names("#r", REGISTRY)
                .expression_attribute_values(":r", AttributeValue::S(TENANT_REGISTRY.to_owned()))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in page.items() {
                let (tenant_id, _) = parse_pk(string(item, PK)?)?;
                out.push(tenant_id);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(out)
    }
}

impl CheckpointStore for DynamoStore {
    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        // A save that lands between reading the head and its chunks leaves
        // the old chunks readable for CHECKPOINT_GRACE, so one retry is
        // only for a load slower than that.
        for _ in 0..2 {
            let Some((position, generation, chunks)) = self.load_head(projection).await? else {
                return Ok(None);
            };
            if let Some(state) = self.load_chunks(projection, &generation, chunks).await? {
                return Ok(Some(Checkpoint {
                    position: Position(position),
                    state,
                }));
            }
        }
        Err(StoreError::Corrupt(format!(
            "checkpoint {projection}: its chunks are missing"
        )))
    }

    /// Writes the state's chunks under a new generation, then switches the
    /// head to it with a write gated on position (a stale projector never
    /// moves a checkpoint back), then marks the old generation for TTL.
    async fn save_checkpoint(
        &self,
        projection: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        let generation = new_generation();
        let chunks: Vec<&[u8]> = checkpoint.state.chunks(CHECKPOINT_CHUNK_BYTES).collect();
        self.put_chunks(projection, &generation, &chunks).await?;
        let superseded = self
            .switch_head(projection, checkpoint.position, generation, chunks.len())
            .await?;
        if let Some((generation, chunks)) = superseded {
            self.expire_chunks(projection, &generation, chunks).await?;
        }
        Ok(())
    }
}

/// The key of a checkpoint chunk: its generation's partition, sk its number.
fn chunk_key(projection: &str, generation: &str, n: usize) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            PK.to_owned(),
            AttributeValue::S(chunk_pk(projection, generation)),
        ),
        (SORT.to_owned(), AttributeValue::S(format!("{n:08}"))),
    ])
}

/// A checkpoint's head: its position, and the generation and number of
/// its chunks.
fn head_item(
    projection: &str,
    position: Position,
    generation: &str,
    chunks: usize,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(checkpoint_pk(projection))),
        (SORT.to_owned(), AttributeValue::S("head".to_owned())),
        (POSITION.to_owned(), AttributeValue::N(position.to_string())),
        (
            GENERATION.to_owned(),
            AttributeValue::S(generation.to_owned()),
        ),
        (CHUNKS.to_owned(), AttributeValue::N(chunks.to_string())),
    ])
}

impl DynamoStore {
    /// Writes a checkpoint's chunks under `generation`.
    async fn put_chunks(
        &self,
        projection: &str,
        generation: &str,
        chunks: &[&[u8]],
    ) -> Result<(), StoreError> {
        let meter = &self.inner.capacity.checkpoints;
        for (n, chunk) in chunks.iter().enumerate() {
            let mut item = chunk_key(projection, generation, n);
            item.insert(
                BYTES.to_owned(),
                AttributeValue::B(Blob::new(chunk.to_vec())),
            );
            let wcu = write_wcu(item_size(&item));
            let put = self
                .inner
                .db
                .put_item()
                .table_name(&self.inner.read_models)
                .set_item(Some(item))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| backend("PutItem", e))?;
            meter.add(put.consumed_capacity.as_slice().into(), wcu);
        }
        Ok(())
    }

    /// Switches the head to `generation` (of `chunks` chunks) with a write
    /// gated on `position`. Returns the generation (and its chunks) that is
    /// superseded now: the head's old one, or this one if a newer
    /// checkpoint is stored.
    async fn switch_head(
        &self,
        projection: &str,
        position: Position,
        generation: String,
        chunks: usize,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let meter = &self.inner.capacity.checkpoints;
        let head = head_item(projection, position, &generation, chunks);
        let head_wcu = write_wcu(item_size(&head));
        let switched = self
            .inner
            .db
            .put_item()
            .table_name(&self.inner.read_models)
            .set_item(Some(head))
            .condition_expression("attribute_not_exists(pk) OR #pos <= :pos")
            .expression_attribute_names("#pos", POSITION)
            .expression_attribute_values(":pos", AttributeValue::N(position.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            // The head this one replaced, read in the same write: a separate
            // read could name a generation another save had already replaced.
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match switched {
            Ok(put) => {
                meter.add(put.consumed_capacity.as_slice().into(), head_wcu);
                match put.attributes {
                    Some(old) => Ok(Some((
                        string(&old, GENERATION)?.to_owned(),
                        number(&old, CHUNKS)?,
                    ))),
                    None => Ok(None),
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // A newer checkpoint is stored: this one is the stale one.
                meter.add(None, head_wcu);
                Ok(Some((generation, chunks as u64)))
            }
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    /// Marks a superseded checkpoint generation for TTL, leaving it
    /// readable for [`CHECKPOINT_GRACE`] to loads that started before the
    /// switch. An update is billed on the larger of the old and new item:
    /// about the chunk's size, as a delete would be.
    async fn expire_chunks(
        &self,
        projection: &str,
        generation: &str,
        chunks: u64,
    ) -> Result<(), StoreError> {
        let expires = std::time::SystemTime::now() + CHECKPOINT_GRACE;
        let expires = expires
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for n in 0..chunks {
            let updated = self
                .inner
                .db
                .update_item()
                .table_name(&self.inner.read_models)
                .key(PK, AttributeValue::S(chunk_pk(projection, generation)))
                .key(SORT, AttributeValue::S(format!("{n:08}")))
                .update_expression("SET #e = :e")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#e", EXPIRES_AT)
                .expression_attribute_values(":e", AttributeValue::N(expires.to_string()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            match updated {
                Ok(done) => {
                    let wcu = done
                        .attributes()
                        .map_or(1, |item| write_wcu(item_size(item)));
                    self.inner
                        .capacity
                        .checkpoints
                        .add(done.consumed_capacity.as_slice().into(), wcu);
                }
                // Already gone (TTL ran): nothing to mark.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(backend("UpdateItem", e)),
            }
        }
        Ok(())
    }
}

fn key_pk(tenant_id: TenantId, key: &IdempotencyKey) -> String {
    format!("{tenant_id}|key|{}", key.as_str())
}

fn checkpoint_pk(projection: &str) -> String {
    format!("checkpoint|{projection}")
}

fn chunk_pk(projection: &str, generation: &str) -> String {
    format!("checkpoint|{projection}|{generation}")
}

/// A generation id no other save uses: time and a process-wide counter.
fn new_generation() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    format!(
        "{micros:x}-{:x}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                    _ => 1,
                }
        })
        .sum()
}

/// WCU of one item written outside a transaction: one per started KB.
pub fn write_wcu(item_bytes: usize) -> u64 {
    item_bytes.div_ceil(1024).max(1) as u64
}

/// WCU of one item written inside a transaction: two per started KB.
pub fn transact_wcu(item_bytes: usize) -> u64 {
    2 * write_wcu(item_bytes)
}

/// Backoff before attempt `attempt + 1`: exponential from 20 ms, capped at
/// 1 s, with full jitter.
pub fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let cap = Duration::from_millis(20 << attempt.min(6)).min(Duration::from_secs(1));
    let random = RandomState::new().hash_one(attempt);
    cap.mul_f64((random % 1000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit_checkout() -> AppendRequest {
        use crate::conformance::stream_append;
        let tenant = TenantId::parse("t").unwrap();
        let vendor = StreamId::parse("vendor/V1").unwrap();
        let credit = StreamId::parse("credit/E1").unwrap();
        AppendRequest {
            heads: Vec::new(),
            tenant_id: tenant,
            // A new stream (no version check) and one at version 4 (a check).
            streams: vec![
                stream_append(tenant, vendor, StreamVersion::NONE, 1),
                stream_append(tenant, credit, StreamVersion::new(4), 1),
            ],
            idempotency: Some(crate::IdempotencyWrite {
                key: IdempotencyKey::parse("k").unwrap(),
                request_hash: [0; 32],
                response: Vec::new(),
            }),
        }
    }

    #[test]
    fn cancellation_reasons_map_to_the_port_s_errors() {
        let request = credit_checkout();
        let kinds = [
            Action::Key,
            Action::Stream(0),
            Action::Stream(1),
            Action::Stream(1),
        ];
        assert_eq!(crate::append_actions(&request), kinds.len());
        let ok = Some("None");
        let cond = Some("ConditionalCheckFailed");
        // Actions: key, vendor event, credit check, credit event.
        let cases = [
            ([cond, ok, ok, ok], Cancellation::KeyExists),
            ([cond, cond, cond, ok], Cancellation::KeyExists),
            ([ok, cond, ok, ok], Cancellation::Conflict(0)),
            ([ok, ok, cond, ok], Cancellation::Conflict(1)),
            ([ok, ok, ok, cond], Cancellation::Conflict(1)),
            (
                [ok, Some("TransactionConflict"), ok, ok],
                Cancellation::Transient,
            ),
            (
                [Some("ThrottlingError"), ok, None, ok],
                Cancellation::Transient,
            ),
            ([ok, Some("ValidationError"), ok, ok], Cancellation::Failed),
            (
                [ok, Some("TransactionConflict"), cond, ok],
                Cancellation::Conflict(1),
            ),
        ];
        for (codes, expected) in cases {
            assert_eq!(classify(&kinds, &codes), expected, "{codes:?}");
        }
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        for attempt in 1..=TRANSACT_ATTEMPTS_MAX + 10 {
            let cap = Duration::from_millis(20 << attempt.min(6)).min(Duration::from_secs(1));
            let waits: Vec<Duration> = (0..50).map(|_| backoff(attempt)).collect();
            assert!(
                waits.iter().all(|w| *w <= cap),
                "attempt {attempt}: {waits:?}"
            );
            assert!(
                waits.iter().any(|w| *w != waits[0]),
                "attempt {attempt}: no jitter in {waits:?}"
            );
        }
    }

    #[test]
    fn wcu_follows_the_formula() {
        assert_eq!(transact_wcu(1), 2);
        assert_eq!(transact_wcu(1024), 2);
        assert_eq!(transact_wcu(1025), 4);
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("abc".to_owned())),
            ("v".to_owned(), AttributeValue::N("12345".to_owned())),
        ]);
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4);
    }
}
