//! Tally's storage ports and adapters.
//!
//! Four ports: [`EventStore`], the append-only streams of sealed event
//! records and their heads; [`CommitLog`], the whole log in one commit
//! order, which only a store that has such an order offers (SQLite; a
//! DynamoDB table has none); [`CheckpointStore`], where projections persist
//! their state and the log position they have folded up to; and
//! [`views::ViewTable`], the read-model table the stream projector writes
//! views and sums into. Only this crate knows how events and read models
//! sit in a database; everything above it speaks in streams, versions,
//! positions and bytes.
//!
//! Adapters: [`sqlite::SqliteStore`], the embedded default, of the first
//! three, and [`dynamodb::DynamoStore`], the cloud's, of `EventStore` and
//! `CheckpointStore` (both pass [`conformance`]); [`views::MemoryTable`], [`sqlite::SqliteViews`] and
//! [`dynamodb::views::DynamoTable`] of the third (all pass
//! [`views::conformance`]). [`AnyStore`] is whichever event store a process
//! runs on, and [`views::AnyTable`] whichever read-model table it reads.

mod any;
pub mod conformance;
pub mod dynamodb;
pub mod sqlite;
#[cfg(feature = "tamper")]
pub mod tamper;
pub mod views;

pub use any::{AnyStore, Pages, SCAN_SEGMENTS};

use std::fmt;
use std::future::Future;

use ledger_core::codec::Sealed;
use ledger_core::id::{StreamId, StreamVersion, TenantId};

/// Most events one append may write: DynamoDB's `TransactWriteItems` holds
/// 100 actions, and besides its events an append may need one per stream
/// (a check that the stream is at its expected version) and one for the
/// idempotency record. So every append the port accepts fits one
/// transaction on every adapter.
pub const APPEND_EVENTS_MAX: usize = 100 - APPEND_STREAMS_MAX - 1;
/// Most streams one append may write.
pub const APPEND_STREAMS_MAX: usize = 8;
/// Most records one `read_stream` or `read_log` page returns.
pub const READ_PAGE_RECORDS_MAX: usize = 1_000;
/// The highest stream version any adapter stores (SQLite's signed integers).
pub const VERSION_MAX: u64 = i64::MAX as u64;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;
/// Largest stored idempotent response, in bytes.
pub const IDEMPOTENCY_RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Largest stored stream head, in bytes: ledger-core's heads stay far below
/// (an order's head holds its refunds, at most a hundred), and with it the
/// largest append still fits one DynamoDB transaction (4 MB).
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most actions one append may take on DynamoDB (`TransactWriteItems`).
pub const APPEND_ACTIONS_MAX: usize = 100;

/// A commit position in the whole log: 1 for the first record ever appended,
/// strictly increasing in commit order. `Position::ZERO` is "before the first".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

impl Position {
    pub const ZERO: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's idempotency key: 1 to [`IDEMPOTENCY_KEY_LEN_MAX`] printable
/// ASCII characters, scoped by tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// When the key is empty, too long, or holds anything but printable ASCII.
    pub fn parse(text: &str) -> Result<Self, InvalidIdempotencyKey> {
        let ok = !text.is_empty()
            && text.len() <= IDEMPOTENCY_KEY_LEN_MAX
            && text.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an idempotency key is 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters without spaces"
)]
pub struct InvalidIdempotencyKey;

/// A stored event record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub version: StreamVersion,
    /// The ledger-core codec's bytes, exactly as appended.
    pub bytes: Vec<u8>,
}

/// A record at its place in a [`CommitLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub position: Position,
    pub record: Record,
}

/// Events for one stream, to be written at `expected + 1`, `expected + 2`, ...
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: StreamId,
    /// The stream's version the command decided against
    /// (`StreamVersion::NONE` for a new stream).
    pub expected: StreamVersion,
    /// Sealed for this tenant and stream, with consecutive versions from
    /// `expected + 1`.
    pub events: Vec<Sealed>,
}

/// What a command remembers under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyWrite {
    pub key: IdempotencyKey,
    /// A digest of the request, to tell a replay from a different request.
    pub request_hash: [u8; 32],
    /// The response to give any replay: opaque to the store.
    pub response: Vec<u8>,
}

/// An idempotency record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: IdempotencyKey,
    pub request_hash: [u8; 32],
    pub response: Vec<u8>,
}

/// A stream head as stored: ledger-core's `StreamHead` bytes, folded up to
/// `version`, and the tag the next write of the head must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    pub version: StreamVersion,
    /// Moves by one at every write of the head (the first write stores 1).
    pub etag: u64,
    pub bytes: Vec<u8>,
}

/// A stream head to write with an append: it replaces the stored head only
/// if that one still has `expected_etag` (0: no head is stored), and is
/// stored with `expected_etag + 1`. A head is derived state, so a request
/// may carry one for a stream it appends to (at the stream's new version)
/// or alone (a head rebuilt from its stream, or the tenant's head marking
/// that amounts were recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadWrite {
    pub stream: StreamId,
    pub expected_etag: u64,
    pub version: StreamVersion,
    pub bytes: Vec<u8>,
}

/// One command's write: events on one or more streams, their heads and its
/// idempotency record, all or nothing.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub tenant_id: TenantId,
    pub streams: Vec<StreamAppend>,
    pub heads: Vec<HeadWrite>,
    pub idempotency: Option<IdempotencyWrite>,
}

impl AppendRequest {
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A stream was not at the expected version.
    #[error("stream {stream} is at version {actual}, not {expected}")]
    VersionConflict {
        stream: StreamId,
        expected: StreamVersion,
        actual: StreamVersion,
    },
    /// A stream's stored head is not the one the request expects (another
    /// command wrote it since it was read), or a head written alone would
    /// run ahead of its stream. Nothing was written.
    #[error("the head of stream {stream} has tag {actual}, not {expected}")]
    HeadConflict {
        stream: StreamId,
        expected: u64,
        actual: u64,
    },
    /// The idempotency key is already stored (possibly by a concurrent
    /// request); here is what it holds.
    #[error("idempotency key {} is already recorded", .0.key.as_str())]
    KeyExists(Box<IdempotencyRecord>),
    /// The request breaks the port's shape rules (a programmer error in the
    /// caller, reported instead of written).
    #[error("invalid append: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Any error of a backend, kept whole so its chain reaches the logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An operating error of the underlying store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or refused: a database error, the service out of
    /// reach or throttled past the retries, a task that died. `context`
    /// says what the store was doing.
    #[error("{context}: {}", error_chain(.source.as_ref()))]
    Backend {
        context: String,
        #[source]
        source: BoxError,
    },
    /// What is stored is not what this store writes.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// A backend failure while doing `context`.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// An error and its sources, one after another: what the SDKs' own
/// `DisplayErrorContext` prints, for any error.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let more = e.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = e.source();
    }
    text
}

/// The event log.
///
/// The contract every adapter MUST keep (the [`conformance`] suite checks it):
///
/// - `append` MUST write all of a request's events and its idempotency
///   record, or nothing.
/// - `append` MUST fail with [`AppendError::VersionConflict`], naming the
///   stream, when any stream of the request is not at its `expected`
///   version; nothing of the request is written then.
/// - `append` MUST fail with [`AppendError::HeadConflict`], naming the
///   stream, when a head it writes is not stored with its `expected_etag`
///   (0: none stored), when the head stored for a stream it appends to is
///   not at the version the append expects, or when a head written without
///   events of its stream has a version its stream has not reached; nothing
///   is written then. (So a head never runs ahead of its stream, and a
///   stream appended with its head needs no other check of its version.)
///   Each head written is stored with `expected_etag + 1`. `load_heads`
///   MUST return every head as last written, `None` for a stream whose
///   head was never written.
/// - `append` MUST fail with [`AppendError::KeyExists`], carrying the stored
///   record, when the request's idempotency key is already stored for the
///   tenant, and MUST check that before versions, so a replay whose streams
///   have moved on still finds its record.
/// - `append` MUST reject (as [`AppendError::Invalid`]) a request whose events
///   do not carry the request's tenant and stream with consecutive versions
///   from `expected + 1`, whose event bytes are longer than ledger-core's
///   `EVENT_BYTES_MAX`, that holds a stream twice or a stream without
///   events, that has more than [`APPEND_EVENTS_MAX`] events or
///   [`APPEND_STREAMS_MAX`] streams (counting those it writes only a head
///   of), whose idempotent response is longer than
///   [`IDEMPOTENCY_RESPONSE_BYTES_MAX`], that writes a stream's head twice,
///   at a version other than its stream's new one, or longer than
///   [`HEAD_BYTES_MAX`], that needs more than [`APPEND_ACTIONS_MAX`]
///   actions, or that has neither events, heads nor an idempotency record.
///   These rules need only the request, so they are checked before
///   anything stored (`Invalid` wins over `KeyExists`).
/// - Once `append` returns `Ok`, the write MUST be durable and visible to
///   every read that starts afterwards (read-after-write). It MUST NOT
///   wait for anything but its own write: not for a change stream, a
///   follower or a projection (so nothing here asks for an order across
///   streams).
/// - `read_stream` MUST return at most `limit` (capped at
///   [`READ_PAGE_RECORDS_MAX`]) records; callers page with the last
///   record's version.
pub trait EventStore: Send + Sync + 'static {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<(), AppendError>> + Send;

    /// The idempotency record stored under `key` for `tenant_id`, if any.
    fn idempotency(
        &self,
        tenant_id: TenantId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// A stream's records with versions after `after`, in version order.
    fn read_stream(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send;

    /// The stored heads of `streams`, in order (`None` where none is
    /// stored), in one round trip and strongly consistent.
    fn load_heads(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> impl Future<Output = Result<Vec<Option<StoredHead>>, StoreError>> + Send;

    /// The tenants whose settings stream has a stored head, each once, in
    /// an order of the store's that does not change between calls: at most
    /// `limit` (capped at [`READ_PAGE_RECORDS_MAX`]) after `after`, the
    /// last tenant of the previous page. What a job that visits every
    /// tenant (the scheduled replenisher) pages through, without a scan of
    /// the log.
    fn tenants(
        &self,
        after: Option<TenantId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TenantId>, StoreError>> + Send;
}

/// The whole log in one commit order: what a store with a single writer
/// (SQLite) offers beside its streams, and the embedded projector follows.
/// DynamoDB keeps no order across items, so its adapter does not offer it;
/// its projectors read the table's change stream per item instead.
///
/// - Positions MUST be unique, strictly increasing in commit order, and
///   every committed record MUST get one; `read_log` MUST return records
///   in position order with no committed record skipped. Within one
///   append, events take positions in request order (streams as listed,
///   each stream's events by version). Positions need not be gap-free.
/// - `read_log` MUST return at most `limit` (capped at
///   [`READ_PAGE_RECORDS_MAX`]) records; callers page with the last
///   record's position.
/// - Once `append` returns `Ok`, `head` MUST be at or past the position of
///   its last event.
/// - `follow` MUST yield a receiver whose value reaches every committed
///   position, soon after the commit.
pub trait CommitLog: EventStore {
    /// The whole log's records with positions after `after`, in commit order.
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LogRecord>, StoreError>> + Send;

    /// The last committed position.
    fn head(&self) -> Position;

    /// A receiver of the last committed position, updated after each commit.
    fn follow(&self) -> tokio::sync::watch::Receiver<Position>;
}

/// The shape rules of [`EventStore::append`], which need only the request.
pub(crate) fn check_shape(request: &AppendRequest) -> Result<(), AppendError> {
    let invalid = |why| Err(AppendError::Invalid(why));
    if request.streams.is_empty() && request.heads.is_empty() && request.idempotency.is_none() {
        return invalid("an append needs events, heads or an idempotency record");
    }
    let heads_alone = request
        .heads
        .iter()
        .filter(|h| !request.streams.iter().any(|s| s.stream == h.stream))
        .count();
    if request.streams.len() + heads_alone > APPEND_STREAMS_MAX {
        return invalid("too many streams in one append");
    }
    check_heads(request)?;
    if append_actions(request) > APPEND_ACTIONS_MAX {
        return invalid("too many actions in one append");
    }
    if request.event_count() > APPEND_EVENTS_MAX {
        return invalid("too many events in one append");
    }
    if let Some(idempotency) = &request.idempotency
        && idempotency.response.len() > IDEMPOTENCY_RESPONSE_BYTES_MAX
    {
        return invalid("idempotent response too large");
    }
    for (i, append) in request.streams.iter().enumerate() {
        if request.streams[..i]
            .iter()
            .any(|s| s.stream == append.stream)
        {
            return invalid("a stream appears twice in one append");
        }
        if append.events.is_empty() {
            return invalid("a stream without events");
        }
        let mut version = append.expected;
        for sealed in &append.events {
            let next = version.get().saturating_add(1);
            if next > VERSION_MAX {
                return invalid("stream version out of range");
            }
            version = StreamVersion::new(next);
            let header = &sealed.envelope.header;
            if header.tenant_id != request.tenant_id {
                return invalid("an event sealed for another tenant");
            }
            if header.stream != append.stream {
                return invalid("an event sealed for another stream");
            }
            if header.version != version {
                return invalid("event versions must run consecutively from expected + 1");
            }
            if sealed.bytes.len() > ledger_core::limits::EVENT_BYTES_MAX {
                return invalid("an event's bytes are past the codec's bound");
            }
        }
    }
    Ok(())
}

/// The actions a request takes on DynamoDB: each event; per stream
/// appended, its head or a check of its version, and both for a stream at
/// a version above zero with no head stored yet; per head written alone,
/// the head and a check that its stream reached its version; the key.
pub fn append_actions(request: &AppendRequest) -> usize {
    let per_stream: usize = request
        .streams
        .iter()
        .map(|append| {
            let head = request.heads.iter().find(|h| h.stream == append.stream);
            let check = append.expected.get() > 0 && head.is_none_or(|h| h.expected_etag == 0);
            append.events.len() + usize::from(head.is_some()) + usize::from(check)
        })
        .sum();
    let alone = request
        .heads
        .iter()
        .filter(|h| !request.streams.iter().any(|s| s.stream == h.stream))
        .map(|h| 1 + usize::from(h.version.get() > 0))
        .sum::<usize>();
    per_stream + alone + usize::from(request.idempotency.is_some())
}

/// The shape rules of a request's heads.
fn check_heads(request: &AppendRequest) -> Result<(), AppendError> {
    let invalid = |why| Err(AppendError::Invalid(why));
    for (i, head) in request.heads.iter().enumerate() {
        if request.heads[..i].iter().any(|h| h.stream == head.stream) {
            return invalid("a stream's head appears twice in one append");
        }
        if head.bytes.len() > HEAD_BYTES_MAX {
            return invalid("a head's bytes are past the store's bound");
        }
        if head.expected_etag == u64::MAX || head.version.get() > VERSION_MAX {
            return invalid("a head's tag or version is out of range");
        }
        let appended = request.streams.iter().find(|s| s.stream == head.stream);
        if let Some(append) = appended {
            let new_version = append.expected.get() + append.events.len() as u64;
            if head.version.get() != new_version {
                return invalid("a head must be at its stream's new version");
            }
        }
    }
    Ok(())
}

/// Reads a whole stream after `after`, page by page.
///
/// # Errors
/// The store's.
pub async fn read_stream_all<S: EventStore>(
    store: &S,
    tenant_id: TenantId,
    stream: StreamId,
    after: StreamVersion,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .read_stream(tenant_id, stream, cursor, READ_PAGE_RECORDS_MAX)
            .await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        cursor = last.version;
        let full = page.len() == READ_PAGE_RECORDS_MAX;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Reads a whole commit log after `after`, page by page, in commit order.
///
/// # Errors
/// The store's.
pub async fn read_log_all<S: CommitLog>(
    store: &S,
    after: Position,
) -> Result<Vec<LogRecord>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = store.read_log(cursor, READ_PAGE_RECORDS_MAX).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        cursor = last.position;
        out.extend(page);
    }
}

/// A projection's persisted state and the log position it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every record up to and including this position is folded in.
    pub position: Position,
    /// The projection's own encoding of its state.
    pub state: Vec<u8>,
}

/// Where projections keep their state between runs.
///
/// - `save_checkpoint` MUST replace the named checkpoint atomically: a later
///   `load_checkpoint` sees the old one or the new one, never a mix.
/// - Once `save_checkpoint` returns, the checkpoint MUST be durable.
/// - `save_checkpoint` MUST NOT move a checkpoint back: a save at a lower
///   position than the stored one leaves the stored one (a stale projector,
///   say one that lost a race with its replacement, cannot undo newer work).
pub trait CheckpointStore: Send + Sync + 'static {
    fn load_checkpoint(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    fn save_checkpoint(
        &self,
        projection: &str,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
