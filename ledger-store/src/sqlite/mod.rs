//! The embedded adapter: SQLite in WAL mode, one writer thread with group commit.
//!
//! Every write goes through one OS thread that owns the only write
//! connection. It takes whatever appends are queued, checks and writes them
//! all in one transaction, and pays one fsync for the lot: under load the
//! cost of durability is shared by the whole batch instead of paid per
//! command. Because that thread is the only writer, it can keep each
//! stream's version in memory and check expected versions without a query.
//!
//! Reads run on a small pool of read-only connections on tokio's blocking
//! threads; WAL lets them proceed while the writer commits. Checkpoints
//! live in a database file of their own ([`checkpoint_path`]), so that a
//! projection's large state never holds the log's write lock.
//!
//! One `SqliteStore` (and its clones) should own a database file. Another
//! writer is tolerated — the writer notices foreign commits through
//! `PRAGMA data_version` and reloads what it caches — but `head` and `follow`
//! only see this store's own commits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ledger_core::id::{StreamId, StreamVersion, TenantId};
use rusqlite::config::DbConfig;
use rusqlite::{CachedStatement, Connection, OpenFlags, OptionalExtension, params};
use rustc_hash::FxHashMap;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, CommitLog, EventStore, IdempotencyKey,
    IdempotencyRecord, IdempotencyWrite, LogRecord, Position, READ_PAGE_RECORDS_MAX, Record,
    StoreError, StoredHead, check_shape,
};

/// The schema this code writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;
/// Most appends one group commit takes. Bounds
/// the transaction, and so the latency of the batch's first request, when
/// the queue is deep.
pub const GROUP_COMMIT_APPENDS_MAX: usize = 1_024;
/// Most streams whose version the writer keeps in memory. Every checkout
/// opens a new order stream, so the cache is emptied when it grows past this
/// rather than grow with the log; a stream missing from it costs one indexed
/// query.
pub const HEAD_CACHE_STREAMS_MAX: usize = 65_536;
/// Most read connections open at once, and so most reads running at once.
pub const READ_CONNECTIONS_MAX: usize = 8;
/// How long a connection waits on a lock held by another before failing.
/// Within one process only WAL checkpoints and a foreign writer can make it
/// wait.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before trying again to switch a new database to WAL
/// mode while another connection does the same.
const WAL_SWITCH_RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Prepared statements each connection keeps compiled: every statement this
/// adapter runs, with room to spare.
const STATEMENT_CACHE_CAPACITY: usize = 32;
/// The page size of a new database (SQLite's default, said out loud):
/// every page an append dirties is written whole to the WAL at commit, and
/// smaller pages measured slower (twice the frames, a system call each)
/// while larger ones write more bytes for the same few changed rows.
pub const PAGE_BYTES: u32 = 4096;
/// The writer's page cache, in KiB: enough for the pages appends keep
/// returning to (each active stream's last index page, the newest keys and
/// events, the interior pages above them). Four times as much measured no
/// faster, even with random keys.
pub const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Each reader's page cache, in KiB.
pub const READER_CACHE_KIB: u32 = 8 * 1024;
/// WAL pages after which a commit copies the WAL back into the database.
/// Larger than SQLite's 1,000 so that pages written again and again (the
/// log's tail, hot index pages) are copied once per checkpoint rather than
/// many times; the WAL stays within tens of MiB.
pub const WAL_CHECKPOINT_PAGES: u32 = 10_000;

const SCHEMA: &str = "
    CREATE TABLE events (
        position    INTEGER PRIMARY KEY,
        tenant_id   TEXT    NOT NULL,
        stream      TEXT    NOT NULL,
        version     INTEGER NOT NULL,
        event_type  INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        record      BLOB    NOT NULL,
        UNIQUE (tenant_id, stream, version)
    );
    CREATE TABLE idempotency (
        tenant_id    TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        request_hash BLOB    NOT NULL,
        response     BLOB    NOT NULL,
        position     INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, key)
    ) WITHOUT ROWID;
";

/// Stream heads (schema version 2): derived state, written in the same
/// transaction as their stream's events. A database of version 1 gains the
/// table empty; heads are rebuilt from their streams as commands need them.
const HEADS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS heads (
        tenant_id TEXT    NOT NULL,
        stream    TEXT    NOT NULL,
        version   INTEGER NOT NULL,
        etag      INTEGER NOT NULL,
        bytes     BLOB    NOT NULL,
        PRIMARY KEY (tenant_id, stream)
    ) WITHOUT ROWID;
";

/// Checkpoints live in a database file of their own, beside the log's:
/// a projection's state runs to tens of megabytes, and writing it inside
/// the log's database would hold the log's one write lock (and every
/// checkout queued behind it) for as long as the blob takes to write.
pub(super) const CHECKPOINT_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS checkpoints (
        projection TEXT    PRIMARY KEY,
        position   INTEGER NOT NULL,
        state      BLOB    NOT NULL
    );
";

pub mod views;

pub use views::{
    SqliteViews, generation_file, generation_path, live_generation, switch_generation, views_path,
};

/// The checkpoint database beside the log's database at `path`.
pub fn checkpoint_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push("-checkpoints");
    path.with_file_name(name)
}

const SQL_BEGIN: &str = "BEGIN IMMEDIATE";
const SQL_COMMIT: &str = "COMMIT";
const SQL_DATA_VERSION: &str = "PRAGMA data_version";
const SQL_LOG_HEAD: &str = "SELECT MAX(position) FROM events";
const SQL_STREAM_HEAD: &str =
    "SELECT MAX(version) FROM events WHERE tenant_id = ?1 AND stream = ?2";
const SQL_INSERT_EVENT: &str = "INSERT INTO events \
     (position, tenant_id, stream, version, event_type, recorded_at, record) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SQL_INSERT_KEY: &str = "INSERT INTO idempotency \
     (tenant_id, key, request_hash, response, position) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT DO NOTHING";
const SQL_SELECT_KEY: &str = "SELECT request_hash, response FROM idempotency \
     WHERE tenant_id = ?1 AND key = ?2";
const SQL_SAVE_CHECKPOINT: &str = "INSERT INTO checkpoints (projection, position, state) \
     VALUES (?1, ?2, ?3) \
     ON CONFLICT (projection) DO UPDATE SET position = excluded.position, state = excluded.state \
     WHERE excluded.position >= checkpoints.position";
const SQL_LOAD_CHECKPOINT: &str = "SELECT position, state FROM checkpoints WHERE projection = ?1";
const SQL_READ_STREAM: &str = "SELECT version, record FROM events \
     WHERE tenant_id = ?1 AND stream = ?2 AND version > ?3 ORDER BY version LIMIT ?4";
const SQL_HEAD_ETAG: &str = "SELECT etag, version FROM heads WHERE tenant_id = ?1 AND stream = ?2";
const SQL_UPSERT_HEAD: &str = "INSERT INTO heads (tenant_id, stream, version, etag, bytes) \
     VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (tenant_id, stream) DO UPDATE SET \
     version = excluded.version, etag = excluded.etag, bytes = excluded.bytes";
const SQL_NEXT_TENANT: &str = "SELECT MIN(tenant_id) FROM heads WHERE tenant_id > ?1";
const SQL_HAS_HEAD: &str = "SELECT 1 FROM heads WHERE tenant_id = ?1 AND stream = ?2";
const SQL_READ_LOG: &str = "SELECT position, tenant_id, stream, version, record FROM events \
     WHERE position > ?1 ORDER BY position LIMIT ?2";

/// The embedded event and read-model store. Cheap to clone: clones share
/// one writer thread and one read pool, which stop when the last clone is
/// dropped; that drop waits for the writer to finish the batch in hand, so
/// the file is released when it returns.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// What the writer has done since the store opened, to watch group commit
/// at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Append requests those transactions answered (accepted or refused).
    pub appends: u64,
}

struct Inner {
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    head_loads: Option<mpsc::Sender<HeadLoad>>,
    head_reader: Option<JoinHandle<()>>,
    head: Arc<watch::Sender<Position>>,
    stats: Arc<Stats>,
    readers: Readers,
    checkpoints: Arc<Mutex<Connection>>,
}

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    appends: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers close first so that the writer's connection is the last
        // one: SQLite checkpoints the WAL into the database when its last
        // connection closes. Closing the channel is the writer's signal to
        // stop; joining it means the file is released when drop returns.
        self.readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        drop(self.head_loads.take());
        if let Some(reader) = self.head_reader.take() {
            let _ = reader.join();
        }
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if need be) the database at `path` and brings its
    /// schema to [`SCHEMA_VERSION`].
    ///
    /// Blocks while it opens and migrates: call it at startup.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened, is not a
    /// database, or was written by a newer schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = open_writer(path)?;
        let last = log_head(&conn).map_err(backend)?;
        let head = Arc::new(watch::Sender::new(Position(last)));
        let stats = Arc::new(Stats::default());
        let writer = Writer::new(conn, last, Arc::clone(&head), Arc::clone(&stats))?;

        let readers = Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::with_capacity(READ_CONNECTIONS_MAX)),
            permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
        };
        // Open one reader now, so a path readers cannot use fails here
        // rather than on the first read.
        let first = open_reader(&readers.path)?;
        readers.put(first);
        let checkpoints = Arc::new(Mutex::new(open_checkpoints(&checkpoint_path(path))?));

        let head_conn = open_reader(&readers.path)?;
        let (head_loads, loads) = mpsc::channel();
        let head_reader = std::thread::Builder::new()
            .name("ledger-store-heads".into())
            .spawn(move || read_heads(&head_conn, &loads))
            .map_err(|e| StoreError::backend("starting the head reader thread", e))?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ledger-store-writer".into())
            .spawn(move || writer.run(&queue))
            .map_err(|e| StoreError::backend("starting the writer thread", e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                jobs: Some(jobs),
                writer: Some(thread),
                head_loads: Some(head_loads),
                head_reader: Some(head_reader),
                head,
                stats,
                readers,
                checkpoints,
            }),
        })
    }

    /// A connection of its own to the log's database, for
    /// [`crate::tamper`].
    #[cfg(feature = "tamper")]
    pub(crate) fn tamper_connection(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.inner.readers.path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        Ok(conn)
    }

    /// Counts of the writer's work since the store opened.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.inner.stats.commits.load(Ordering::Relaxed),
            appends: self.inner.stats.appends.load(Ordering::Relaxed),
        }
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.inner
            .jobs
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// Runs `read` on a pooled read-only connection, off the async threads.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match inner.readers.take() {
                Some(conn) => conn,
                None => open_reader(&inner.readers.path)?,
            };
            let result = read(&conn);
            inner.readers.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::backend("reading", e))?
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.readers.path)
            .field("head", &*self.inner.head.borrow())
            .finish_non_exhaustive()
    }
}

impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<(), AppendError> {
        // The shape rules need nothing but the request, so they are checked
        // here, on the caller's task, keeping the writer's path short.
        check_shape(&request)?;
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Append { request, reply })?;
        let (result, request) = answer.await.map_err(|_| StoreError::Closed)?;
        // The request comes back to be freed here, off the writer's thread.
        drop(request);
        result.map(drop)
    }

    async fn idempotency(
        &self,
        tenant_id: TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.clone();
        self.read(move |conn| select_key(conn, tenant_id, key).map_err(backend))
            .await?
            .transpose()
    }

    async fn read_stream(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        after: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(READ_PAGE_RECORDS_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Past i64::MAX nothing can follow, and the comparison stays true.
        let after = i64::try_from(after.get()).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(SQL_READ_STREAM).map_err(backend)?;
            let mut rows = statement
                .query(params![
                    tenant_id.as_str(),
                    stream.to_string(),
                    after,
                    to_sql_int(limit)
                ])
                .map_err(backend)?;
            let mut out = Vec::with_capacity(limit);
            while let Some(row) = rows.next().map_err(backend)? {
                out.push(Record {
                    tenant_id,
                    stream,
                    version: StreamVersion::new(to_u64(row.get(0).map_err(backend)?, "version")?),
                    bytes: row.get(1).map_err(backend)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn load_heads(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<Option<StoredHead>>, StoreError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let load = HeadLoad {
            tenant_id,
            streams: streams.to_vec(),
            reply,
        };
        self.inner
            .head_loads
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(load)
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn tenants(
        &self,
        after: Option<TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantId>, StoreError> {
        let limit = limit.min(READ_PAGE_RECORDS_MAX);
        // A seek per tenant on the heads' primary key (tenant, stream),
        // rather than a walk over every head of every tenant.
        self.read(move |conn| {
            let mut next = conn.prepare_cached(SQL_NEXT_TENANT).map_err(backend)?;
            let mut has_head = conn.prepare_cached(SQL_HAS_HEAD).map_err(backend)?;
            let mut cursor = after.map(|t| t.as_str().to_owned()).unwrap_or_default();
            let mut out = Vec::new();
            while out.len() < limit {
                let found: Option<String> = next
                    .query_row(params![cursor], |row| row.get(0))
                    .map_err(backend)?;
                let Some(text) = found else { break };
                let tenant_id = TenantId::parse(&text)
                    .map_err(|e| StoreError::backend("a tenant id in the heads", e))?;
                if has_head
                    .exists(params![text, StreamId::tenant(tenant_id).to_string()])
                    .map_err(backend)?
                {
                    out.push(tenant_id);
                }
                cursor = text;
            }
            Ok(out)
        })
        .await
    }
}

impl CommitLog for SqliteStore {
    async fn read_log(&self, after: Position, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        let limit = limit.min(READ_PAGE_RECORDS_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = i64::try_from(after.0).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(SQL_READ_LOG).map_err(backend)?;
            let mut rows = statement
                .query(params![after, to_sql_int(limit)])
                .map_err(backend)?;
            let mut out = Vec::with_capacity(limit);
            while let Some(row) = rows.next().map_err(backend)? {
                let tenant: &str = row
                    .get_ref(1)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(backend)?;
                let tenant_id = TenantId::parse(tenant)
                    .map_err(|e| StoreError::Corrupt(format!("tenant id {tenant:?}: {e}")))?;
                let stream: &str = row
                    .get_ref(2)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(backend)?;
                let stream = StreamId::parse(stream)
                    .map_err(|e| StoreError::Corrupt(format!("stream {stream:?}: {e}")))?;
                out.push(LogRecord {
                    position: Position(to_u64(row.get(0).map_err(backend)?, "position")?),
                    record: Record {
                        tenant_id,
                        stream,
                        version: StreamVersion::new(to_u64(
                            row.get(3).map_err(backend)?,
                            "version",
                        )?),
                        bytes: row.get(4).map_err(backend)?,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    fn head(&self) -> Position {
        *self.inner.head.borrow()
    }

    fn follow(&self) -> watch::Receiver<Position> {
        self.inner.head.subscribe()
    }
}

impl CheckpointStore for SqliteStore {
    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        let projection = projection.to_owned();
        self.with_checkpoints(move |conn| load_checkpoint_in(conn, &projection))
            .await
    }

    async fn save_checkpoint(
        &self,
        projection: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        let projection = projection.to_owned();
        // One statement replaces the row: atomic, and durable once it
        // returns (the checkpoint database syncs like the log's).
        self.with_checkpoints(move |conn| save_checkpoint_in(conn, &projection, &checkpoint))
            .await
    }
}

/// A checkpoint from the `checkpoints` table of `conn`'s database.
pub(super) fn load_checkpoint_in(
    conn: &Connection,
    projection: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let found = conn
        .prepare_cached(SQL_LOAD_CHECKPOINT)
        .map_err(backend)?
        .query_row([projection], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()
        .map_err(backend)?;
    found
        .map(|(position, state)| {
            Ok(Checkpoint {
                position: Position(to_u64(position, "checkpoint position")?),
                state,
            })
        })
        .transpose()
}

/// Replaces a checkpoint in the `checkpoints` table of `conn`'s database,
/// in one statement.
pub(super) fn save_checkpoint_in(
    conn: &Connection,
    projection: &str,
    checkpoint: &Checkpoint,
) -> Result<(), StoreError> {
    let Ok(position) = i64::try_from(checkpoint.position.0) else {
        return Err(StoreError::backend(
            "saving a checkpoint",
            format!(
                "position {} is beyond what SQLite stores",
                checkpoint.position
            ),
        ));
    };
    conn.prepare_cached(SQL_SAVE_CHECKPOINT)
        .map_err(backend)?
        .execute(params![projection, position, &checkpoint.state])
        .map_err(backend)?;
    Ok(())
}

impl SqliteStore {
    /// Runs `work` on the checkpoint database's connection, off the async
    /// threads.
    async fn with_checkpoints<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let checkpoints = Arc::clone(&self.inner.checkpoints);
        tokio::task::spawn_blocking(move || {
            work(&checkpoints.lock().unwrap_or_else(|e| e.into_inner()))
        })
        .await
        .map_err(|e| StoreError::backend("saving a checkpoint", e))?
    }
}

/// The port's shape rules: everything that can be checked on the request
/// alone.
/// An append's answer (the position of its last event, or the head so far
/// for an append without events), and the request handed back so that the
/// caller, not the writer, pays for freeing it.
type AppendReply = (Result<Position, AppendError>, AppendRequest);

enum Job {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<AppendReply>,
    },
}

/// A job's answer, held until its batch commits.
enum Outcome {
    Append(Result<Position, AppendError>),
}

/// The writer thread: the write connection and what it knows of the
/// database. Only ever touched by that thread.
struct Writer {
    conn: Connection,
    state: State,
}

struct State {
    /// Stream versions as of the open transaction. May lack any stream;
    /// never wrong about one it holds, because only this thread writes.
    /// Between batches it holds only committed versions: a batch writes its
    /// versions here as it goes, and a batch that fails to commit empties
    /// it. Fx hashing, as in ledger-core's aggregates: it is probed several
    /// times per append, and it is bounded and emptied when full.
    heads: FxHashMap<(TenantId, StreamId), StreamVersion>,
    /// Stored heads' tags and versions as of the open transaction, kept
    /// like `heads` (a stream without a stored head is not cached).
    tags: FxHashMap<(TenantId, StreamId), (u64, StreamVersion)>,
    /// The last committed position.
    head: u64,
    /// The next position to hand out within the current batch.
    next: u64,
    /// `PRAGMA data_version` as of this connection's last look; a change
    /// means another connection committed and the caches are stale.
    data_version: i64,
    /// Whether `heads` and `head` are known to match the database.
    fresh: bool,
    stream_text: String,
    publish: Arc<watch::Sender<Position>>,
    stats: Arc<Stats>,
}

/// The statements of the append path, taken from the cache once per batch
/// rather than once per use.
struct Statements<'conn> {
    stream_head: CachedStatement<'conn>,
    insert_key: CachedStatement<'conn>,
    insert_event: CachedStatement<'conn>,
    head_etag: CachedStatement<'conn>,
    upsert_head: CachedStatement<'conn>,
}

impl Writer {
    fn new(
        conn: Connection,
        head: u64,
        publish: Arc<watch::Sender<Position>>,
        stats: Arc<Stats>,
    ) -> Result<Writer, StoreError> {
        let data_version = conn
            .query_row(SQL_DATA_VERSION, [], |row| row.get(0))
            .map_err(backend)?;
        Ok(Writer {
            conn,
            state: State {
                heads: FxHashMap::default(),
                tags: FxHashMap::default(),
                head,
                next: head + 1,
                data_version,
                fresh: true,
                stream_text: String::new(),
                publish,
                stats,
            },
        })
    }

    fn run(mut self, queue: &mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(GROUP_COMMIT_APPENDS_MAX);
        let mut outcomes = Vec::with_capacity(GROUP_COMMIT_APPENDS_MAX);
        // Blocks until there is work; ends when every sender is gone.
        while let Ok(first) = queue.recv() {
            batch.push(first);
            while batch.len() < GROUP_COMMIT_APPENDS_MAX {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch, &mut outcomes);
        }
    }

    /// Writes a batch in one transaction and answers every job in it.
    fn commit_batch(&mut self, batch: &mut Vec<Job>, outcomes: &mut Vec<Outcome>) {
        outcomes.clear();
        let written = self.write_batch(batch, outcomes);
        let state = &mut self.state;
        match written {
            Ok(()) => {
                state.head = state.next - 1;
                state.stats.commits.fetch_add(1, Ordering::Relaxed);
                let appends = batch
                    .iter()
                    .filter(|job| matches!(job, Job::Append { .. }))
                    .count();
                state
                    .stats
                    .appends
                    .fetch_add(appends as u64, Ordering::Relaxed);
                // Published before anyone is answered, so a caller holding
                // its answer never sees an older head.
                let head = Position(state.head);
                state.publish.send_if_modified(|current| {
                    let moved = *current != head;
                    *current = head;
                    moved
                });
                for (job, outcome) in batch.drain(..).zip(outcomes.drain(..)) {
                    answer(job, outcome);
                }
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                // Whatever the batch saw may have been rolled back, and the
                // caches may have taken in its writes: start over from the
                // database.
                state.heads.clear();
                state.tags.clear();
                state.fresh = false;
                state.next = state.head + 1;
                let message = e.to_string();
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                for job in batch.drain(..) {
                    let error = StoreError::backend("group commit", message.clone());
                    let Job::Append { request, reply } = job;
                    let _ = reply.send((Err(AppendError::Store(error)), request));
                }
                outcomes.clear();
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job], outcomes: &mut Vec<Outcome>) -> rusqlite::Result<()> {
        let Writer { conn, state } = self;
        conn.prepare_cached(SQL_BEGIN)?.execute([])?;
        let data_version: i64 = conn
            .prepare_cached(SQL_DATA_VERSION)?
            .query_row([], |row| row.get(0))?;
        if data_version != state.data_version || !state.fresh {
            state.heads.clear();
            state.tags.clear();
            state.head = log_head(conn)?;
            state.next = state.head + 1;
            state.data_version = data_version;
            state.fresh = true;
        }
        if state.heads.len() + state.tags.len() > HEAD_CACHE_STREAMS_MAX {
            state.heads.clear();
            state.tags.clear();
        }
        let mut statements = Statements {
            stream_head: conn.prepare_cached(SQL_STREAM_HEAD)?,
            insert_key: conn.prepare_cached(SQL_INSERT_KEY)?,
            insert_event: conn.prepare_cached(SQL_INSERT_EVENT)?,
            head_etag: conn.prepare_cached(SQL_HEAD_ETAG)?,
            upsert_head: conn.prepare_cached(SQL_UPSERT_HEAD)?,
        };
        for job in batch {
            let Job::Append { request, .. } = job;
            let outcome = Outcome::Append(state.stage_append(conn, &mut statements, request)?);
            outcomes.push(outcome);
        }
        drop(statements);
        conn.prepare_cached(SQL_COMMIT)?.execute([])?;
        Ok(())
    }
}

impl State {
    /// Checks one append against the state so far (the database plus this
    /// batch) and, if it passes, writes it into the open transaction. A
    /// refused append writes nothing; the outer error fails the batch.
    fn stage_append(
        &mut self,
        conn: &Connection,
        statements: &mut Statements<'_>,
        request: &AppendRequest,
    ) -> rusqlite::Result<Result<Position, AppendError>> {
        let tenant = request.tenant_id;
        // The key is checked before versions (a replay whose streams moved on
        // must find its record), but the common case is a new key whose
        // versions hold: then one insert both checks and stores it.
        let conflict = match self.version_conflict(&mut statements.stream_head, request)? {
            Some(conflict) => Some(conflict),
            None => self.head_conflict(statements, request)?,
        };
        if let Some(conflict) = conflict {
            if let Some(idempotency) = &request.idempotency
                && let Some(record) = select_key(conn, tenant, idempotency.key.clone())?
            {
                return Ok(Err(key_exists(record)));
            }
            return Ok(Err(conflict));
        }

        let first = self.next;
        let events = request.event_count() as u64;
        let position = if events == 0 {
            first - 1
        } else {
            first + events - 1
        };
        if let Some(idempotency) = &request.idempotency {
            let statement = &mut statements.insert_key;
            if let Some(refused) = insert_key(conn, statement, tenant, idempotency, position)? {
                return Ok(Err(refused));
            }
        }
        self.next = self.insert_events(&mut statements.insert_event, request, first)?;
        self.write_heads(&mut statements.upsert_head, request)?;
        Ok(Ok(Position(position)))
    }

    /// The conflict of the first stream whose head is not the version the
    /// request expects, if any.
    fn version_conflict(
        &mut self,
        stream_head: &mut CachedStatement<'_>,
        request: &AppendRequest,
    ) -> rusqlite::Result<Option<AppendError>> {
        for append in &request.streams {
            let actual = self.stream_head(stream_head, request.tenant_id, append.stream)?;
            if actual != append.expected {
                return Ok(Some(AppendError::VersionConflict {
                    stream: append.stream,
                    expected: append.expected,
                    actual,
                }));
            }
        }
        Ok(None)
    }

    /// The conflict of the first head whose stored tag is not the one the
    /// request expects, or that would run ahead of its stream, if any.
    fn head_conflict(
        &mut self,
        statements: &mut Statements<'_>,
        request: &AppendRequest,
    ) -> rusqlite::Result<Option<AppendError>> {
        let tenant = request.tenant_id;
        for head in &request.heads {
            let stored = self.stored_tag(&mut statements.head_etag, tenant, head.stream)?;
            let actual = stored.map_or(0, |(etag, _)| etag);
            let appended = request.streams.iter().find(|s| s.stream == head.stream);
            let misplaced = match appended {
                // The stored head must be the one the append extends.
                Some(append) => stored.is_some_and(|(_, v)| v != append.expected),
                // A head alone must not run ahead of its stream.
                None => {
                    self.stream_head(&mut statements.stream_head, tenant, head.stream)?
                        < head.version
                }
            };
            if actual != head.expected_etag || misplaced {
                return Ok(Some(AppendError::HeadConflict {
                    stream: head.stream,
                    expected: head.expected_etag,
                    actual,
                }));
            }
        }
        Ok(None)
    }

    /// A stream's stored head tag and version as of the transaction so far.
    fn stored_tag(
        &mut self,
        statement: &mut CachedStatement<'_>,
        tenant: TenantId,
        stream: StreamId,
    ) -> rusqlite::Result<Option<(u64, StreamVersion)>> {
        if let Some(&tag) = self.tags.get(&(tenant, stream)) {
            return Ok(Some(tag));
        }
        write_stream_text(&mut self.stream_text, stream);
        let stored: Option<(i64, i64)> = statement
            .query_row(params![tenant.as_str(), self.stream_text.as_str()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        // Negative values are never written; read one as "none stored"
        // and let the next write's condition fail.
        let tag = stored.map(|(e, v)| {
            (
                u64::try_from(e).unwrap_or(0),
                StreamVersion::new(u64::try_from(v).unwrap_or(0)),
            )
        });
        if let Some(tag) = tag {
            self.tags.insert((tenant, stream), tag);
        }
        Ok(tag)
    }

    /// Stores the request's heads, each with its next tag.
    fn write_heads(
        &mut self,
        upsert_head: &mut CachedStatement<'_>,
        request: &AppendRequest,
    ) -> rusqlite::Result<()> {
        for head in &request.heads {
            write_stream_text(&mut self.stream_text, head.stream);
            upsert_head.execute(params![
                request.tenant_id.as_str(),
                self.stream_text.as_str(),
                to_sql_int(head.version.get()),
                to_sql_int(head.expected_etag + 1),
                &head.bytes,
            ])?;
            self.tags.insert(
                (request.tenant_id, head.stream),
                (head.expected_etag + 1, head.version),
            );
        }
        Ok(())
    }

    /// Writes the request's events at the positions from `first` on and
    /// moves its streams' cached heads; answers the next free position.
    fn insert_events(
        &mut self,
        insert_event: &mut CachedStatement<'_>,
        request: &AppendRequest,
        first: u64,
    ) -> rusqlite::Result<u64> {
        let tenant = request.tenant_id;
        let mut next = first;
        for append in &request.streams {
            write_stream_text(&mut self.stream_text, append.stream);
            for sealed in &append.events {
                let header = &sealed.envelope.header;
                insert_event.execute(params![
                    to_sql_int(next),
                    tenant.as_str(),
                    self.stream_text.as_str(),
                    to_sql_int(header.version.get()),
                    sealed.envelope.event.event_type().tag(),
                    header.recorded_at.as_micros(),
                    &sealed.bytes,
                ])?;
                next += 1;
            }
            let version = append
                .events
                .last()
                .map_or(append.expected, |e| e.envelope.version());
            self.heads.insert((tenant, append.stream), version);
        }
        Ok(next)
    }

    /// A stream's version as of the transaction so far.
    fn stream_head(
        &mut self,
        statement: &mut CachedStatement<'_>,
        tenant: TenantId,
        stream: StreamId,
    ) -> rusqlite::Result<StreamVersion> {
        let key = (tenant, stream);
        if let Some(&version) = self.heads.get(&key) {
            return Ok(version);
        }
        write_stream_text(&mut self.stream_text, stream);
        let max: Option<i64> = statement
            .query_row(params![tenant.as_str(), self.stream_text.as_str()], |row| {
                row.get(0)
            })?;
        // Negative versions are never written; read one as "no events" and
        // let the unique index refuse any clash.
        let version = StreamVersion::new(max.map_or(0, |v| u64::try_from(v).unwrap_or(0)));
        // A new stream (every checkout's order) enters the cache when it is
        // written; caching its absence would only churn the cache.
        if version != StreamVersion::NONE {
            self.heads.insert(key, version);
        }
        Ok(version)
    }
}

/// A command's head load, queued for the head reader.
struct HeadLoad {
    tenant_id: TenantId,
    streams: Vec<StreamId>,
    reply: oneshot::Sender<Result<Vec<Option<StoredHead>>, StoreError>>,
}

/// Most head loads one read transaction of the head reader answers.
pub const HEAD_LOADS_PER_READ_MAX: usize = 256;

/// The head reader thread: answers every queued load in one read
/// transaction, as the writer commits every queued append in one. A read
/// transaction of a connection begins by dropping its page cache if the
/// database changed since its last one, which under constant appends is
/// every time: per load, that and the hand-offs to and from a blocking
/// thread measured costlier than the lookups themselves. Every load in a
/// batch was queued before the transaction's snapshot, so it sees every
/// append acknowledged before it was asked.
fn read_heads(conn: &Connection, queue: &mpsc::Receiver<HeadLoad>) {
    let mut batch = Vec::with_capacity(HEAD_LOADS_PER_READ_MAX);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < HEAD_LOADS_PER_READ_MAX {
            match queue.try_recv() {
                Ok(load) => batch.push(load),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN").map_err(|e| e.to_string());
        for load in batch.drain(..) {
            let result = match &began {
                Ok(()) => select_heads(conn, load.tenant_id, &load.streams),
                Err(e) => Err(StoreError::backend("loading heads", e.clone())),
            };
            let _ = load.reply.send(result);
        }
        if began.is_ok() {
            let _ = conn.execute_batch("COMMIT");
        }
    }
}

/// The stored heads of `streams`, in order.
fn select_heads(
    conn: &Connection,
    tenant_id: TenantId,
    streams: &[StreamId],
) -> Result<Vec<Option<StoredHead>>, StoreError> {
    let mut out = vec![None; streams.len()];
    // One statement per chunk (one in practice: a command touches
    // a handful of streams); a chunk's statement stays cached.
    for (chunk_at, chunk) in streams.chunks(HEADS_PER_STATEMENT).enumerate() {
        let texts: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let mut statement = conn
            .prepare_cached(&select_heads_sql(chunk.len()))
            .map_err(backend)?;
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() + 1);
        let tenant = tenant_id.as_str();
        values.push(&tenant);
        values.extend(texts.iter().map(|t| t as &dyn rusqlite::ToSql));
        let mut rows = statement.query(values.as_slice()).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let stream: String = row.get(0).map_err(backend)?;
            let head = StoredHead {
                version: StreamVersion::new(to_u64(row.get(1).map_err(backend)?, "head version")?),
                etag: to_u64(row.get(2).map_err(backend)?, "head tag")?,
                bytes: row.get(3).map_err(backend)?,
            };
            for (i, text) in texts.iter().enumerate() {
                if *text == stream {
                    out[chunk_at * HEADS_PER_STATEMENT + i] = Some(head.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Streams whose heads one statement reads.
const HEADS_PER_STATEMENT: usize = 16;

/// The statement reading the heads of `n` streams of one tenant.
fn select_heads_sql(n: usize) -> String {
    let mut sql = String::from(
        "SELECT stream, version, etag, bytes FROM heads WHERE tenant_id = ?1 AND stream IN (",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("?{}", i + 2));
    }
    sql.push(')');
    sql
}

/// A stream's stored text, into a buffer reused so that the append path
/// does not allocate for it.
pub(crate) fn write_stream_text(buffer: &mut String, stream: StreamId) {
    use std::fmt::Write as _;
    buffer.clear();
    write!(buffer, "{stream}").expect("writing to a String cannot fail");
}

/// Stores an append's idempotency record at `position`. If the key is
/// stored already, nothing is written and the answer is the error the
/// append gets instead: `KeyExists` with the stored record.
fn insert_key(
    conn: &Connection,
    insert_key: &mut CachedStatement<'_>,
    tenant: TenantId,
    idempotency: &IdempotencyWrite,
    position: u64,
) -> rusqlite::Result<Option<AppendError>> {
    let inserted = insert_key.execute(params![
        tenant.as_str(),
        idempotency.key.as_str(),
        &idempotency.request_hash[..],
        &idempotency.response,
        to_sql_int(position),
    ])?;
    if inserted != 0 {
        return Ok(None);
    }
    let record = select_key(conn, tenant, idempotency.key.clone())?;
    Ok(Some(match record {
        Some(record) => key_exists(record),
        None => AppendError::Store(StoreError::Corrupt(
            "an idempotency insert conflicted with no stored key".into(),
        )),
    }))
}

fn answer(job: Job, outcome: Outcome) {
    // A caller that stopped waiting is no reason to fail the others.
    let (Job::Append { request, reply }, Outcome::Append(result)) = (job, outcome);
    let _ = reply.send((result, request));
}

fn key_exists(record: Result<IdempotencyRecord, StoreError>) -> AppendError {
    match record {
        Ok(record) => AppendError::KeyExists(Box::new(record)),
        Err(e) => AppendError::Store(e),
    }
}

/// The stored record under a key: the outer error is SQLite's, the inner
/// one a row that does not hold a valid record.
fn select_key(
    conn: &Connection,
    tenant: TenantId,
    key: IdempotencyKey,
) -> rusqlite::Result<Option<Result<IdempotencyRecord, StoreError>>> {
    let row = conn
        .prepare_cached(SQL_SELECT_KEY)?
        .query_row(params![tenant.as_str(), key.as_str()], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    Ok(row.map(|(hash, response)| {
        let request_hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
            StoreError::Corrupt(format!(
                "request hash of key {} is not 32 bytes",
                key.as_str()
            ))
        })?;
        Ok(IdempotencyRecord {
            key,
            request_hash,
            response,
        })
    }))
}

fn log_head(conn: &Connection) -> rusqlite::Result<u64> {
    let max: Option<i64> = conn
        .prepare_cached(SQL_LOG_HEAD)?
        .query_row([], |row| row.get(0))?;
    Ok(max.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = schema_version(conn).map_err(backend)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    // Under the write lock, and looked at again: another process may have
    // created the schema while this one waited for the lock.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
    let migrated = match schema_version(conn).map_err(backend)? {
        0 => conn
            .execute_batch(&format!(
                "{SCHEMA} {HEADS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(backend),
        1 => conn
            .execute_batch(&format!(
                "{HEADS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(backend),
        SCHEMA_VERSION => Ok(()),
        newer => Err(StoreError::backend(
            "opening the database",
            format!("it has schema version {newer}; this build knows up to {SCHEMA_VERSION}"),
        )),
    };
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT").map_err(backend),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Bounds the connections (and blocking threads) reads hold at once.
    permits: Arc<Semaphore>,
}

impl Readers {
    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    tune(&conn)?;
    // Only a new, empty database takes a page size.
    conn.pragma_update(None, "page_size", PAGE_BYTES)
        .map_err(backend)?;
    enter_wal(&conn)?;
    // An acknowledged append must survive a process kill and a power loss.
    // In WAL mode, NORMAL syncs only at checkpoints, so a power loss could
    // take back commits already acknowledged; FULL fsyncs the WAL at every
    // commit, and group commit is what makes that affordable.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -i64::from(WRITER_CACHE_KIB))
        .map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
        .map_err(backend)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Switches the database to WAL mode, which sticks to the file. The switch
/// needs the database to itself and, when another connection is switching
/// it at the same moment, fails at once rather than waiting on the busy
/// handler: so it is retried for as long as a lock would be waited for.
fn enter_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::backend(
                    "opening the database",
                    format!("it would not enter WAL mode (it is in {mode} mode)"),
                ));
            }
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(WAL_SWITCH_RETRY_PAUSE);
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

fn open_checkpoints(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    tune(&conn)?;
    enter_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.execute_batch(CHECKPOINT_SCHEMA).map_err(backend)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -i64::from(READER_CACHE_KIB))
        .map_err(backend)?;
    tune(&conn)?;
    Ok(conn)
}

/// What every connection needs: a lock timeout, a statement cache, and
/// plans that do not depend on bound values.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Otherwise SQLite may recompile a statement whose plan could depend
    // on a bound value each time that value changes: measured, the stream
    // head query was recompiled on every append, a fifth of the writer's
    // time. The query planner stability guarantee pins the plan, and these
    // statements have only one sensible plan anyway.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(backend)?;
    Ok(())
}

fn backend(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::backend("SQLite", e),
    }
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// SQLite integers are i64; positions, versions and limits never come near
/// its end.
fn to_sql_int<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    //! The writer's batches, driven directly: which requests share a group
    //! commit is otherwise up to timing.

    use super::*;
    use crate::IdempotencyWrite;
    use crate::conformance::{stream_append, unique_tenant};

    fn writer(dir: &tempfile::TempDir) -> Writer {
        let conn = open_writer(&dir.path().join("writer.db")).expect("open");
        let head = log_head(&conn).expect("head");
        let publish = Arc::new(watch::Sender::new(Position(head)));
        Writer::new(conn, head, publish, Arc::default()).expect("writer")
    }

    fn append(
        tenant: TenantId,
        streams: &[(&str, u64)],
        key: Option<&str>,
    ) -> (Job, oneshot::Receiver<AppendReply>) {
        let request = AppendRequest {
            heads: Vec::new(),
            tenant_id: tenant,
            streams: streams
                .iter()
                .map(|&(stream, expected)| {
                    let stream = StreamId::parse(stream).expect("stream id");
                    stream_append(tenant, stream, StreamVersion::new(expected), 1)
                })
                .collect(),
            idempotency: key.map(|key| IdempotencyWrite {
                key: IdempotencyKey::parse(key).expect("key"),
                request_hash: [5; 32],
                response: b"answer".to_vec(),
            }),
        };
        let (reply, answer) = oneshot::channel();
        (Job::Append { request, reply }, answer)
    }

    fn run(writer: &mut Writer, jobs: Vec<Job>) {
        let mut batch = jobs;
        writer.commit_batch(&mut batch, &mut Vec::new());
        assert!(batch.is_empty(), "every job is answered");
    }

    fn answer(mut answer: oneshot::Receiver<AppendReply>) -> Result<Position, AppendError> {
        answer.try_recv().expect("answered").0
    }

    #[test]
    fn refused_requests_leave_the_rest_of_their_batch_alone() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let mut writer = writer(&dir);
        let tenant = unique_tenant("unit-batch");
        let (first, first_answer) = append(tenant, &[("vendor/a", 0)], Some("k1"));
        let (stale, stale_answer) = append(tenant, &[("credit/b", 0), ("vendor/a", 0)], None);
        let (replay, replay_answer) = append(tenant, &[("credit/b", 0)], Some("k1"));
        let (follows, follows_answer) = append(tenant, &[("vendor/a", 1), ("credit/b", 0)], None);
        let (remembered, remembered_answer) = append(tenant, &[], Some("k2"));
        run(&mut writer, vec![first, stale, replay, follows, remembered]);

        assert_eq!(answer(first_answer).expect("first"), Position(1));
        assert!(matches!(
            answer(stale_answer),
            Err(AppendError::VersionConflict { stream, .. }) if stream.to_string() == "vendor/a"
        ));
        match answer(replay_answer) {
            Err(AppendError::KeyExists(record)) => assert_eq!(record.response, b"answer"),
            other => panic!("a key stored earlier in the batch must replay: {other:?}"),
        }
        assert_eq!(
            answer(follows_answer).expect("an append on a version written earlier in the batch"),
            Position(3)
        );
        assert_eq!(
            answer(remembered_answer).expect("remembered"),
            Position(3),
            "an events-free append sits at the head so far in its batch"
        );
        assert_eq!(writer.state.stats.commits.load(Ordering::Relaxed), 1);
        assert_eq!(writer.state.stats.appends.load(Ordering::Relaxed), 5);
        assert_eq!(*writer.state.publish.borrow(), Position(3));
        let stored: i64 = writer
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))
            .expect("count");
        assert_eq!(stored, 3, "refused requests wrote nothing");
    }

    #[test]
    fn a_failed_commit_fails_its_whole_batch_and_forgets_its_caches() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let mut writer = writer(&dir);
        let tenant = unique_tenant("unit-fail");
        let (seed, seed_answer) = append(tenant, &[("vendor/a", 0)], None);
        run(&mut writer, vec![seed]);
        answer(seed_answer).expect("seed");
        // A disk failure stand-in: one stream's insert aborts.
        writer
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER boom BEFORE INSERT ON events \
                 WHEN NEW.stream = 'vendor/boom' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
            )
            .expect("trigger");

        let (good, good_answer) = append(tenant, &[("vendor/a", 1)], Some("k"));
        let (bad, bad_answer) = append(tenant, &[("vendor/boom", 0)], None);
        let (later, later_answer) = append(tenant, &[("credit/c", 0)], None);
        run(&mut writer, vec![good, bad, later]);
        for result in [
            answer(good_answer),
            answer(bad_answer),
            answer(later_answer),
        ] {
            assert!(
                matches!(result, Err(AppendError::Store(StoreError::Backend { .. }))),
                "every request of a failed batch fails: {result:?}"
            );
        }
        assert!(writer.state.heads.is_empty());
        assert_eq!(*writer.state.publish.borrow(), Position(1));

        // Nothing of the failed batch stuck: the same appends go through at
        // the same versions and positions.
        let (good, good_answer) = append(tenant, &[("vendor/a", 1)], Some("k"));
        let (later, later_answer) = append(tenant, &[("credit/c", 0)], None);
        run(&mut writer, vec![good, later]);
        assert_eq!(answer(good_answer).expect("retry"), Position(2));
        assert_eq!(answer(later_answer).expect("retry"), Position(3));
    }

    #[test]
    fn the_head_cache_is_bounded() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let mut writer = writer(&dir);
        let tenant = unique_tenant("unit-cache");
        let filler = StreamId::parse("vendor/filler").expect("stream id");
        for n in 0..=HEAD_CACHE_STREAMS_MAX {
            writer.state.heads.insert(
                (TenantId::new(&format!("t{n}")), filler),
                StreamVersion::new(1),
            );
        }
        let (job, answered) = append(tenant, &[("vendor/a", 0)], None);
        run(&mut writer, vec![job]);
        answer(answered).expect("append");
        assert!(
            writer.state.heads.len() <= 1,
            "an oversized cache is emptied"
        );
    }
}
