//! The read-model table on SQLite: the [`ViewTable`] port in a database
//! file of its own beside the log's ([`views_path`]), so that projecting
//! never holds the log's write lock and a rebuild is deleting one file.
//!
//! Tables:
//!
//! | table | key | columns |
//! |---|---|---|
//! | `views` | `tenant_id`, `stream` | `version`, `bytes`; an order view's `vendor_id` and `occurred_at` (µs) |
//! | `sums` | `tenant_id`, `kind` (0 day, 1 due), `date`, `vendor_id` | `currency`, `amounts` (JSON: a day's totals, or a due amount; a due amount that comes to zero is deleted) |
//! | `parked` | `pk`, `version` | `record`, `error`, `behind` |
//!
//! Indexes answer the listings in key order: `views_tenant_time` and
//! `views_vendor_time` a tenant's (a vendor's) order views by time then
//! stream; the `views` key itself a tenant's credit views by employee
//! (`credit/` streams sort together); the `sums` key a tenant's days or dues
//! by date then vendor, and `sums_vendor` one vendor's by date.
//!
//! One connection, behind a mutex, does everything on tokio's blocking
//! threads: the projector is this table's one writer and every statement is
//! an indexed range, so there is nothing for a pool to overlap. A write is
//! one `BEGIN IMMEDIATE` transaction that checks every gate before it
//! changes a row, so a gate that does not hold writes nothing. The file is
//! derived state: `synchronous = NORMAL` may lose the last commits on power
//! loss, never half of one, and a projector that keeps its position in the
//! same transaction refolds what was lost.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::{
    EmployeeId, LocalDate, OrderId, StreamId, StreamKind, StreamVersion, TenantId, Timestamp,
    VendorId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use rust_decimal::Decimal;

use ledger_core::projection::activity::{ActivityEntry, ActivityFilter, ActivityQuery};

use crate::views::{
    Cost, DayRange, DayRow, DueRow, MemoryState, OrderIndex, OrderRow, Parked, QUERY_ROWS_MAX,
    StoredView, Sum, SumAdd, SumKey, TableError, ViewKey, ViewTable, Write, WriteError,
    activity_rank,
};
use crate::{Checkpoint, CheckpointStore, StoreError};

/// The schema this code writes, kept in `PRAGMA user_version`.
///
/// Version 2 added the activity entries. The file holds derived state
/// only, so a file of an older version is emptied and refolded from the
/// log (its follower's checkpoint is named after the version).
pub const VIEWS_SCHEMA_VERSION: i64 = 2;

/// The read-model connection's page cache. Every projected event touches a
/// view, its sums and an activity entry with three indexes, at places all
/// over the file: with SQLite's default 2 MiB cache the projector spent
/// about half its time copying pages in from the kernel. A bound, not a
/// size that grows with the log.
pub const VIEWS_CACHE_KIB: u32 = 64 * 1024;
/// WAL pages between checkpoints while a rebuild writes a generation
/// (400 MiB of WAL at most).
pub const BULK_CHECKPOINT_PAGES: u32 = 100_000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS views (
        tenant_id   TEXT    NOT NULL,
        stream      TEXT    NOT NULL,
        version     INTEGER NOT NULL,
        bytes       BLOB    NOT NULL,
        vendor_id   TEXT,
        occurred_at INTEGER,
        PRIMARY KEY (tenant_id, stream)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS views_tenant_time
        ON views (tenant_id, occurred_at, stream) WHERE occurred_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS views_vendor_time
        ON views (tenant_id, vendor_id, occurred_at, stream) WHERE occurred_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS sums (
        tenant_id TEXT    NOT NULL,
        kind      INTEGER NOT NULL,
        date      TEXT    NOT NULL,
        vendor_id TEXT    NOT NULL,
        currency  TEXT,
        amounts   TEXT    NOT NULL,
        PRIMARY KEY (tenant_id, kind, date, vendor_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sums_vendor ON sums (tenant_id, kind, vendor_id, date);
    CREATE TABLE IF NOT EXISTS parked (
        pk      TEXT    NOT NULL,
        version INTEGER NOT NULL,
        record  TEXT    NOT NULL,
        error   TEXT    NOT NULL,
        behind  INTEGER,
        PRIMARY KEY (pk, version)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS activity (
        tenant_id TEXT    NOT NULL,
        stream    TEXT    NOT NULL,
        version   INTEGER NOT NULL,
        rank      TEXT    NOT NULL,
        vendor_id TEXT,
        actor     TEXT    NOT NULL,
        bytes     BLOB    NOT NULL,
        PRIMARY KEY (tenant_id, stream, version)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS activity_all ON activity (tenant_id, rank);
    CREATE INDEX IF NOT EXISTS activity_vendor
        ON activity (tenant_id, vendor_id, rank) WHERE vendor_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS activity_actor ON activity (tenant_id, actor, rank);
";

/// What a file of an older version loses before it is refolded.
const DROP_OLD: &str = "
    DROP TABLE IF EXISTS views;
    DROP TABLE IF EXISTS sums;
    DROP TABLE IF EXISTS parked;
    DROP TABLE IF EXISTS activity;
    DROP TABLE IF EXISTS checkpoints;
";

const DAY: i64 = 0;
const DUE: i64 = 1;

const SQL_VIEW: &str = "SELECT version, bytes FROM views WHERE tenant_id = ?1 AND stream = ?2";
const SQL_UPSERT_VIEW: &str = "INSERT INTO views \
     (tenant_id, stream, version, bytes, vendor_id, occurred_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (tenant_id, stream) DO UPDATE SET version = excluded.version, \
     bytes = excluded.bytes, vendor_id = excluded.vendor_id, occurred_at = excluded.occurred_at";
const SQL_SUM: &str = "SELECT amounts FROM sums \
     WHERE tenant_id = ?1 AND kind = ?2 AND date = ?3 AND vendor_id = ?4";
const SQL_UPSERT_SUM: &str = "INSERT INTO sums \
     (tenant_id, kind, date, vendor_id, currency, amounts) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (tenant_id, kind, date, vendor_id) DO UPDATE SET \
     currency = COALESCE(excluded.currency, sums.currency), amounts = excluded.amounts";
const SQL_DELETE_SUM: &str = "DELETE FROM sums \
     WHERE tenant_id = ?1 AND kind = ?2 AND date = ?3 AND vendor_id = ?4";
const SQL_PARK: &str = "INSERT INTO parked (pk, version, record, error, behind) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pk, version) DO UPDATE SET \
     record = excluded.record, error = excluded.error, behind = excluded.behind";
const SQL_PARKED_FROM: &str = "SELECT MIN(version) FROM parked WHERE pk = ?1";
const SQL_PARKED: &str =
    "SELECT pk, version, record, error, behind FROM parked ORDER BY pk, version";
const SQL_UNPARK: &str = "DELETE FROM parked WHERE pk = ?1 AND version <= ?2";
/// A tenant's order views (one vendor's when `?2` is set) in
/// `[?3, ?4)`, below `(?5, ?6)`, newest first.
const SQL_ORDERS: &str = "SELECT stream, version, bytes, vendor_id, occurred_at FROM views \
     WHERE tenant_id = ?1 AND occurred_at IS NOT NULL AND (?2 IS NULL OR vendor_id = ?2) \
     AND occurred_at >= ?3 AND occurred_at < ?4 \
     AND (?5 IS NULL OR occurred_at < ?5 OR (occurred_at = ?5 AND stream < ?6)) \
     ORDER BY occurred_at DESC, stream DESC LIMIT ?7";
const SQL_SUMS: &str = "SELECT date, vendor_id, amounts FROM sums \
     WHERE tenant_id = ?1 AND kind = ?2 AND (?3 IS NULL OR vendor_id = ?3) \
     AND date >= ?4 AND date <= ?5 ORDER BY date, vendor_id";
const SQL_ACTIVITY_PUT: &str = "INSERT OR IGNORE INTO activity \
     (tenant_id, stream, version, rank, vendor_id, actor, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SQL_ACTIVITY_SEEN: &str =
    "SELECT 1 FROM activity WHERE tenant_id = ?1 AND stream = ?2 AND version = ?3";
/// A tenant's entries below rank `?2` (`'~'`: above every rank), newest
/// first; then one vendor's (`?3`), then one actor's (`?3`).
const SQL_ACTIVITY_ALL: &str = "SELECT bytes FROM activity \
     WHERE tenant_id = ?1 AND rank < ?2 ORDER BY rank DESC LIMIT ?4";
const SQL_ACTIVITY_VENDOR: &str = "SELECT bytes FROM activity \
     WHERE tenant_id = ?1 AND vendor_id = ?3 AND rank < ?2 ORDER BY rank DESC LIMIT ?4";
const SQL_ACTIVITY_ACTOR: &str = "SELECT bytes FROM activity \
     WHERE tenant_id = ?1 AND actor = ?3 AND rank < ?2 ORDER BY rank DESC LIMIT ?4";
/// `credit0` is the first text above every `credit/...` stream.
const SQL_CREDIT: &str = "SELECT stream, version, bytes FROM views \
     WHERE tenant_id = ?1 AND stream > ?2 AND stream < 'credit0' ORDER BY stream LIMIT ?3";

/// The read-model database beside the log's database at `path`.
pub fn views_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push("-views");
    path.with_file_name(name)
}

/// The read-model database of generation `generation` beside the log's
/// database at `database`: the first is [`views_path`], a rebuild's
/// `<log>-views-g<n>`.
pub fn generation_path(database: &Path, generation: u32) -> PathBuf {
    let first = views_path(database);
    if generation <= 1 {
        return first;
    }
    let mut name = first.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-g{generation}"));
    first.with_file_name(name)
}

/// The file naming the live generation of the read models beside the
/// log's database at `database`.
pub fn generation_file(database: &Path) -> PathBuf {
    let mut name = views_path(database)
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    name.push(".generation");
    database.with_file_name(name)
}

/// The live generation of the read models beside `database` (1 when no
/// rebuild ever switched one in).
///
/// # Errors
/// When the file exists but cannot be read or holds no generation.
pub fn live_generation(database: &Path) -> Result<u32, TableError> {
    let path = generation_file(database);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            TableError::Corrupt(format!("{}: {text:?} is not a generation", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(TableError::backend(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// Makes `generation` the live one, atomically and durably: the new name
/// is written beside the file, synced, renamed over it, and the directory
/// synced, so a reader sees the old generation or the new, never neither.
///
/// # Errors
/// The filesystem's.
pub fn switch_generation(database: &Path, generation: u32) -> Result<(), TableError> {
    use std::io::Write as _;
    let path = generation_file(database);
    let io = |e: std::io::Error| TableError::backend(format!("switching {}", path.display()), e);
    let mut next = path.clone().into_os_string();
    next.push(".next");
    let next = PathBuf::from(next);
    let mut file = std::fs::File::create(&next).map_err(io)?;
    writeln!(file, "{generation}").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&next, &path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// The read-model table in one SQLite file. Cheap to clone: clones share
/// the connection.
#[derive(Clone)]
pub struct SqliteViews {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteViews")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(context: &str) -> impl FnOnce(rusqlite::Error) -> TableError + '_ {
    move |e| TableError::backend(context, e)
}

impl SqliteViews {
    /// The file it is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For a generation nobody reads yet (a rebuild): checkpoints the WAL
    /// into the database only every [`BULK_CHECKPOINT_PAGES`] pages
    /// instead of SQLite's 1,000, so pages are copied once rather than
    /// again and again; `false` checkpoints what is left and restores the
    /// default.
    ///
    /// # Errors
    /// SQLite's.
    pub async fn bulk(&self, on: bool) -> Result<(), TableError> {
        self.with(move |conn| {
            let pages = if on { BULK_CHECKPOINT_PAGES } else { 1000 };
            conn.pragma_update(None, "wal_autocheckpoint", pages)
                .map_err(backend("setting the checkpoint interval"))?;
            if !on {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                    .map_err(backend("checkpointing"))?;
            }
            Ok(())
        })
        .await
    }

    /// Opens (creating if needed) the table at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened, or holds a newer schema.
    pub fn open(path: &Path) -> Result<SqliteViews, TableError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend("opening the read-model database"))?;
        conn.busy_timeout(super::BUSY_TIMEOUT)
            .map_err(backend("setting a busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend("entering WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend("setting synchronous"))?;
        conn.pragma_update(None, "cache_size", -i64::from(VIEWS_CACHE_KIB))
            .map_err(backend("sizing the page cache"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend("reading the schema version"))?;
        if version > VIEWS_SCHEMA_VERSION {
            return Err(TableError::Corrupt(format!(
                "{}: schema version {version}, newer than this build's {VIEWS_SCHEMA_VERSION}",
                path.display()
            )));
        }
        if (1..VIEWS_SCHEMA_VERSION).contains(&version) {
            conn.execute_batch(DROP_OLD)
                .map_err(backend("emptying an older read-model file"))?;
        }
        conn.execute_batch(SCHEMA)
            .map_err(backend("creating the read-model tables"))?;
        conn.execute_batch(super::CHECKPOINT_SCHEMA)
            .map_err(backend("creating the checkpoint table"))?;
        conn.pragma_update(None, "user_version", VIEWS_SCHEMA_VERSION)
            .map_err(backend("writing the schema version"))?;
        Ok(SqliteViews {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, TableError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, TableError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolls its transaction back when the
            // transaction drops, so the connection is whole.
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| TableError::backend("a read-model task", e))?
    }
}

/// Every parked record, by stream key then version.
fn read_parked(conn: &Connection) -> Result<Vec<Parked>, TableError> {
    let mut select = conn
        .prepare_cached(SQL_PARKED)
        .map_err(backend("preparing to read parked records"))?;
    let rows = select
        .query_map([], |r| {
            Ok(Parked {
                pk: r.get(0)?,
                version: r.get::<_, i64>(1)?.max(0) as u64,
                record: r.get(2)?,
                error: r.get(3)?,
                behind: r.get::<_, Option<i64>>(4)?.map(|b| b.max(0) as u64),
            })
        })
        .map_err(backend("reading parked records"))?;
    rows.map(|row| row.map_err(backend("reading a parked record")))
        .collect()
}

fn activity_entry(bytes: &[u8]) -> Result<ActivityEntry, TableError> {
    ActivityEntry::from_bytes(bytes)
        .map_err(|e| TableError::Corrupt(format!("an activity entry: {e}")))
}

fn stream_text(stream: StreamId) -> String {
    stream.to_string()
}

fn stored(version: i64, bytes: Vec<u8>) -> Result<StoredView, TableError> {
    let version = u64::try_from(version)
        .map_err(|_| TableError::Corrupt(format!("a view at version {version}")))?;
    Ok(StoredView {
        version: StreamVersion::new(version),
        bytes,
    })
}

fn parse<T, E: std::fmt::Display>(
    what: &str,
    text: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, TableError> {
    f(text).map_err(|e| TableError::Corrupt(format!("{what} {text:?}: {e}")))
}

fn date(text: &str) -> Result<LocalDate, TableError> {
    parse("date", text, |t| {
        chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map(LocalDate::new)
    })
}

fn sum_key(key: &SumKey) -> (TenantId, i64, LocalDate, VendorId) {
    match *key {
        SumKey::Day {
            tenant_id,
            vendor_id,
            date,
        } => (tenant_id, DAY, date, vendor_id),
        SumKey::Due {
            tenant_id,
            vendor_id,
            due_date,
        } => (tenant_id, DUE, due_date, vendor_id),
    }
}

fn sum_text(sum: &Sum) -> String {
    match sum {
        Sum::Day(totals) => serde_json::to_string(totals).expect("totals encode"),
        Sum::Due(amount) => serde_json::to_string(amount).expect("a decimal encodes"),
    }
}

fn sum_of(kind: i64, text: &str) -> Result<Sum, TableError> {
    match kind {
        DAY => parse("day totals", text, |t| serde_json::from_str::<DayTotals>(t)).map(Sum::Day),
        DUE => parse("due amount", text, |t| serde_json::from_str::<Decimal>(t)).map(Sum::Due),
        _ => Err(TableError::Corrupt(format!("a sum of kind {kind}"))),
    }
}

/// Checks every gate of `write`, then writes it all, in one transaction.
/// One write in one transaction.
fn write_all(conn: &mut Connection, write: &Write) -> Result<Result<(), WriteError>, TableError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend("beginning a write"))?;
    let outcome = write_in(&tx, write)?;
    if outcome.is_ok() {
        tx.commit().map_err(backend("committing a write"))?;
    }
    Ok(outcome)
}

/// Many writes in one transaction, each in a savepoint of its own: a
/// write whose gate does not hold (or that fails) rolls back alone, and
/// the rest commit together. If the commit fails, every write fails.
fn write_each(conn: &mut Connection, writes: &[Write]) -> Vec<Result<Cost, WriteError>> {
    let failed = |e: &TableError| TableError::backend("writing views and sums", e.to_string());
    let mut tx = match conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend("beginning a write"))
    {
        Ok(tx) => tx,
        Err(e) => return writes.iter().map(|_| Err(failed(&e).into())).collect(),
    };
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let outcome = match tx.savepoint().map_err(backend("opening a savepoint")) {
            Ok(sp) => match write_in(&sp, write) {
                Ok(Ok(())) => sp
                    .commit()
                    .map_err(backend("releasing a savepoint"))
                    .map_err(WriteError::from),
                Ok(Err(conflict)) => Err(conflict),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
        outcomes.push(outcome.map(|()| Cost::default()));
    }
    if let Err(e) = tx.commit().map_err(backend("committing writes")) {
        return writes.iter().map(|_| Err(failed(&e).into())).collect();
    }
    outcomes
}

/// The gates and then the views and sums of `write`, on a connection
/// inside a transaction; a gate that does not hold writes nothing.
fn write_in(tx: &Connection, write: &Write) -> Result<Result<(), WriteError>, TableError> {
    let mut conflicts = Vec::new();
    {
        let mut select = tx
            .prepare_cached(SQL_VIEW)
            .map_err(backend("preparing a gate"))?;
        for (i, w) in write.views.iter().enumerate() {
            let current = select
                .query_row(
                    params![w.key.tenant_id.as_str(), stream_text(w.key.stream)],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )
                .optional()
                .map_err(backend("reading a gate"))?
                .map(|(v, b)| stored(v, b))
                .transpose()?;
            let at = current.as_ref().map_or(StreamVersion::NONE, |s| s.version);
            if at != w.expect {
                conflicts.push((i, current));
            }
        }
    }
    if !conflicts.is_empty() {
        // Dropping the transaction rolls it back: nothing was written.
        return Ok(Err(WriteError::Conflict(conflicts)));
    }
    {
        let mut upsert = tx
            .prepare_cached(SQL_UPSERT_VIEW)
            .map_err(backend("preparing a view write"))?;
        for w in &write.views {
            upsert
                .execute(params![
                    w.key.tenant_id.as_str(),
                    stream_text(w.key.stream),
                    super::to_sql_int(w.view.version.get()),
                    w.view.bytes,
                    w.index.map(|i| i.vendor_id.to_string()),
                    w.index.map(|i| i.occurred_at.as_micros()),
                ])
                .map_err(backend("writing a view"))?;
        }
        let mut select = tx
            .prepare_cached(SQL_SUM)
            .map_err(backend("preparing a sum read"))?;
        let mut upsert = tx
            .prepare_cached(SQL_UPSERT_SUM)
            .map_err(backend("preparing a sum write"))?;
        let mut delete = tx
            .prepare_cached(SQL_DELETE_SUM)
            .map_err(backend("preparing a sum delete"))?;
        for SumAdd { key, add, currency } in &write.sums {
            let (tenant, kind, day, vendor) = sum_key(key);
            let key_params = params![tenant.as_str(), kind, day.to_string(), vendor.as_str()];
            let stored: Option<String> = select
                .query_row(key_params, |r| r.get(0))
                .optional()
                .map_err(backend("reading a sum"))?;
            let total = match stored {
                Some(text) => {
                    let mut total = sum_of(kind, &text)?;
                    total.add(add);
                    total
                }
                None => *add,
            };
            // A settled receivable is deleted, so listings read only what
            // is outstanding.
            if total.is_settled() {
                delete
                    .execute(key_params)
                    .map_err(backend("deleting a settled sum"))?;
                continue;
            }
            upsert
                .execute(params![
                    tenant.as_str(),
                    kind,
                    day.to_string(),
                    vendor.as_str(),
                    currency.map(|c| c.code().to_owned()),
                    sum_text(&total),
                ])
                .map_err(backend("writing a sum"))?;
        }
    }
    Ok(Ok(()))
}

fn order_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, Vec<u8>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_order_row(
    (stream, version, bytes, vendor, at): (String, i64, Vec<u8>, String, i64),
) -> Result<OrderRow, TableError> {
    let stream = parse("stream", &stream, StreamId::parse)?;
    if stream.kind() != StreamKind::Order {
        return Err(TableError::Corrupt(format!("an order row of {stream}")));
    }
    Ok(OrderRow {
        order_id: OrderId::from_text(stream.id()),
        index: OrderIndex {
            vendor_id: parse("vendor", &vendor, VendorId::parse)?,
            occurred_at: Timestamp::from_micros(at),
        },
        view: stored(version, bytes)?,
    })
}

/// The rows of one sums listing: `(date, vendor, amounts)`.
fn sums_of(
    conn: &Connection,
    tenant_id: TenantId,
    kind: i64,
    vendor_id: Option<VendorId>,
    from: &str,
    to: &str,
) -> Result<Vec<(LocalDate, VendorId, Sum)>, TableError> {
    let mut select = conn
        .prepare_cached(SQL_SUMS)
        .map_err(backend("preparing a sums listing"))?;
    let rows = select
        .query_map(
            params![
                tenant_id.as_str(),
                kind,
                vendor_id.map(|v| v.to_string()),
                from,
                to
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .map_err(backend("listing sums"))?;
    let mut out = Vec::new();
    for row in rows {
        let (day, vendor, amounts) = row.map_err(backend("reading a sum"))?;
        out.push((
            date(&day)?,
            parse("vendor", &vendor, VendorId::parse)?,
            sum_of(kind, &amounts)?,
        ));
    }
    Ok(out)
}

/// The file keeps its projector's checkpoint too, so the tables and the
/// position they reflect are lost or kept together (a file deleted or of
/// an older version is refolded from the log's start).
impl CheckpointStore for SqliteViews {
    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        let projection = projection.to_owned();
        self.with(move |conn| Ok(super::load_checkpoint_in(conn, &projection)))
            .await
            .map_err(|e| StoreError::backend("reading a read-model checkpoint", e))?
    }

    async fn save_checkpoint(
        &self,
        projection: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        let projection = projection.to_owned();
        self.with(move |conn| Ok(super::save_checkpoint_in(conn, &projection, &checkpoint)))
            .await
            .map_err(|e| StoreError::backend("saving a read-model checkpoint", e))?
    }
}

impl ViewTable for SqliteViews {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        let keys = keys.to_vec();
        self.with(move |conn| {
            let mut select = conn
                .prepare_cached(SQL_VIEW)
                .map_err(backend("preparing a view read"))?;
            keys.iter()
                .map(|k| {
                    select
                        .query_row(params![k.tenant_id.as_str(), stream_text(k.stream)], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })
                        .optional()
                        .map_err(backend("reading a view"))?
                        .map(|(v, b)| stored(v, b))
                        .transpose()
                })
                .collect()
        })
        .await
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        let pk = pk.to_owned();
        self.with(move |conn| {
            let lowest: Option<i64> = conn
                .query_row(SQL_PARKED_FROM, params![pk], |r| r.get(0))
                .map_err(backend("reading parked records"))?;
            Ok(lowest.and_then(|v| u64::try_from(v).ok()))
        })
        .await
    }

    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        self.with(|conn| read_parked(conn)).await
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        let pk = pk.to_owned();
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        self.with(move |conn| {
            conn.execute(SQL_UNPARK, params![pk, through])
                .map_err(backend("unparking records"))?;
            Ok(())
        })
        .await
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        let write = write.clone();
        self.with(move |conn| write_all(conn, &write)).await??;
        Ok(Cost::default())
    }

    /// One hop to the connection and one transaction for them all.
    async fn write_many(&self, writes: &[Write]) -> Vec<Result<Cost, WriteError>> {
        let owned = writes.to_vec();
        match self.with(move |conn| Ok(write_each(conn, &owned))).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let e = e.to_string();
                writes
                    .iter()
                    .map(|_| Err(TableError::backend("writing views and sums", e.clone()).into()))
                    .collect()
            }
        }
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        let parked = parked.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend("beginning a park"))?;
            {
                let mut insert = tx
                    .prepare_cached(SQL_PARK)
                    .map_err(backend("preparing a park"))?;
                for p in &parked {
                    insert
                        .execute(params![
                            p.pk,
                            super::to_sql_int(p.version),
                            p.record,
                            p.error,
                            p.behind.map(super::to_sql_int),
                        ])
                        .map_err(backend("parking"))?;
                }
            }
            tx.commit().map_err(backend("committing a park"))?;
            Ok(Cost::default())
        })
        .await
    }

    async fn orders(&self, query: &OrderListQuery) -> Result<Vec<OrderRow>, TableError> {
        let query = query.clone();
        self.with(move |conn| {
            let limit = query.limit.min(QUERY_ROWS_MAX);
            let mut select = conn
                .prepare_cached(SQL_ORDERS)
                .map_err(backend("preparing an order listing"))?;
            let rows = select
                .query_map(
                    params![
                        query.tenant_id.as_str(),
                        query.vendor_id.map(|v| v.to_string()),
                        query.from.as_micros(),
                        query.until.as_micros(),
                        query.cursor.map(|(at, _)| at.as_micros()),
                        query.cursor.map(|(_, id)| stream_text(StreamId::order(id))),
                        super::to_sql_int(limit),
                    ],
                    order_row,
                )
                .map_err(backend("listing orders"))?;
            rows.map(|r| to_order_row(r.map_err(backend("reading an order row"))?))
                .collect()
        })
        .await
    }

    async fn day_sums(&self, range: &DayRange) -> Result<Vec<DayRow>, TableError> {
        let range = *range;
        self.with(move |conn| {
            let rows = sums_of(
                conn,
                range.tenant_id,
                DAY,
                range.vendor_id,
                &range.from.to_string(),
                &range.to.to_string(),
            )?;
            rows.into_iter()
                .map(|(date, vendor_id, sum)| match sum {
                    Sum::Day(totals) => Ok(DayRow {
                        vendor_id,
                        date,
                        totals,
                    }),
                    Sum::Due(_) => Err(TableError::Corrupt("a due amount among days".into())),
                })
                .collect()
        })
        .await
    }

    async fn due_sums(
        &self,
        tenant_id: TenantId,
        vendor_id: Option<VendorId>,
    ) -> Result<Vec<DueRow>, TableError> {
        self.with(move |conn| {
            // Every date sorts between these two.
            let rows = sums_of(conn, tenant_id, DUE, vendor_id, "", "~")?;
            rows.into_iter()
                .filter(|(_, _, sum)| !sum.is_settled())
                .map(|(due_date, vendor_id, sum)| match sum {
                    Sum::Due(amount) => Ok(DueRow {
                        vendor_id,
                        due_date,
                        amount,
                    }),
                    Sum::Day(_) => Err(TableError::Corrupt("day totals among dues".into())),
                })
                .collect()
        })
        .await
    }

    async fn credit_views(
        &self,
        tenant_id: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(EmployeeId, StoredView)>, TableError> {
        self.with(move |conn| {
            let after = after.map_or_else(
                || "credit/".to_owned(),
                |a| stream_text(StreamId::credit(a)),
            );
            let mut select = conn
                .prepare_cached(SQL_CREDIT)
                .map_err(backend("preparing a credit listing"))?;
            let rows = select
                .query_map(
                    params![
                        tenant_id.as_str(),
                        after,
                        super::to_sql_int(limit.min(QUERY_ROWS_MAX))
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    },
                )
                .map_err(backend("listing credit views"))?;
            rows.map(|row| {
                let (stream, version, bytes) = row.map_err(backend("reading a credit view"))?;
                let stream = parse("stream", &stream, StreamId::parse)?;
                Ok((EmployeeId::from_text(stream.id()), stored(version, bytes)?))
            })
            .collect()
        })
        .await
    }

    async fn record_activity(&self, entries: &[ActivityEntry]) -> Result<Cost, TableError> {
        let entries = entries.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend("beginning an activity write"))?;
            {
                let mut insert = tx
                    .prepare_cached(SQL_ACTIVITY_PUT)
                    .map_err(backend("preparing an activity write"))?;
                for e in &entries {
                    insert
                        .execute(params![
                            e.tenant_id.as_str(),
                            stream_text(e.stream),
                            super::to_sql_int(e.version.get()),
                            activity_rank(e.recorded_at, e.stream, e.version),
                            e.vendor_id.map(|v| v.to_string()),
                            e.actor.user_id.as_str(),
                            e.to_bytes(),
                        ])
                        .map_err(backend("writing an activity entry"))?;
                }
            }
            tx.commit()
                .map_err(backend("committing activity entries"))?;
            Ok(Cost::default())
        })
        .await
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, TableError> {
        let query = *query;
        self.with(move |conn| {
            let (sql, filter) = match query.filter {
                ActivityFilter::All => (SQL_ACTIVITY_ALL, None),
                ActivityFilter::Vendor(v) => (SQL_ACTIVITY_VENDOR, Some(v.to_string())),
                ActivityFilter::Actor(a) => (SQL_ACTIVITY_ACTOR, Some(a.to_string())),
            };
            let below = query.cursor.map_or_else(
                || "~".to_owned(),
                |(at, stream, version)| activity_rank(at, stream, version),
            );
            let mut select = conn
                .prepare_cached(sql)
                .map_err(backend("preparing an activity listing"))?;
            let mut rows = select
                .query(params![
                    query.tenant_id.as_str(),
                    below,
                    filter,
                    super::to_sql_int(query.limit.min(QUERY_ROWS_MAX)),
                ])
                .map_err(backend("listing activity"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend("reading an activity row"))? {
                let bytes: Vec<u8> = row.get(0).map_err(backend("reading an activity row"))?;
                out.push(activity_entry(&bytes)?);
            }
            Ok(out)
        })
        .await
    }

    async fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> Result<bool, TableError> {
        let events = events.to_vec();
        self.with(move |conn| {
            let mut select = conn
                .prepare_cached(SQL_ACTIVITY_SEEN)
                .map_err(backend("preparing an activity read"))?;
            for (stream, version) in &events {
                let found = select
                    .exists(params![
                        tenant_id.as_str(),
                        stream_text(*stream),
                        super::to_sql_int(version.get())
                    ])
                    .map_err(backend("reading an activity entry"))?;
                if !found {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        self.with(|conn| {
            let mut state = MemoryState::default();
            let mut views = conn
                .prepare(
                    "SELECT tenant_id, stream, version, bytes, vendor_id, occurred_at FROM views",
                )
                .map_err(backend("preparing a scan"))?;
            let rows = views
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(backend("scanning views"))?;
            for row in rows {
                let (tenant, stream, version, bytes, vendor, at) =
                    row.map_err(backend("reading a view"))?;
                let key = ViewKey {
                    tenant_id: parse("tenant", &tenant, TenantId::parse)?,
                    stream: parse("stream", &stream, StreamId::parse)?,
                };
                if let (Some(vendor), Some(at)) = (vendor, at) {
                    let index = OrderIndex {
                        vendor_id: parse("vendor", &vendor, VendorId::parse)?,
                        occurred_at: Timestamp::from_micros(at),
                    };
                    state.indexes.insert(key, index);
                }
                state.views.insert(key, stored(version, bytes)?);
            }
            let mut sums = conn
                .prepare("SELECT tenant_id, kind, date, vendor_id, amounts FROM sums")
                .map_err(backend("preparing a scan"))?;
            let rows = sums
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(backend("scanning sums"))?;
            for row in rows {
                let (tenant, kind, day, vendor, amounts) = row.map_err(backend("reading a sum"))?;
                let tenant_id = parse("tenant", &tenant, TenantId::parse)?;
                let vendor_id = parse("vendor", &vendor, VendorId::parse)?;
                let day = date(&day)?;
                let key = match kind {
                    DAY => SumKey::Day {
                        tenant_id,
                        vendor_id,
                        date: day,
                    },
                    _ => SumKey::Due {
                        tenant_id,
                        vendor_id,
                        due_date: day,
                    },
                };
                state.sums.insert(key, sum_of(kind, &amounts)?);
            }
            for p in read_parked(conn)? {
                state.parked.insert((p.pk.clone(), p.version), p);
            }
            let mut activity = conn
                .prepare("SELECT bytes FROM activity")
                .map_err(backend("preparing a scan"))?;
            let rows = activity
                .query_map([], |r| r.get::<_, Vec<u8>>(0))
                .map_err(backend("scanning activity"))?;
            for row in rows {
                let e = activity_entry(&row.map_err(backend("reading an activity entry"))?)?;
                state.activity.insert((e.tenant_id, e.stream, e.version), e);
            }
            Ok(state)
        })
        .await
    }
}
