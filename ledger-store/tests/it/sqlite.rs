//! The SQLite adapter: the conformance suite, then what only this adapter
//! promises (durability across a restart, group commit, gap-free positions).

use ledger_core::id::{StreamId, StreamVersion, TenantId};
use ledger_store::conformance::{stream_append, unique_tenant};
use ledger_store::sqlite::{SCHEMA_VERSION, SqliteStore};
use ledger_store::{
    AppendError, AppendRequest, Checkpoint, CheckpointStore, CommitLog, EventStore, IdempotencyKey,
    IdempotencyWrite, Position, READ_PAGE_RECORDS_MAX, StoreError, read_stream_all,
};
use tempfile::TempDir;
use tokio::task::JoinSet;

const DB_FILE: &str = "tally.db";
/// Appends in flight at once in the group-commit test: enough that the
/// writer finds a queue behind every fsync.
const CONCURRENT_APPENDS: usize = 400;

async fn fresh_store() -> (SqliteStore, TempDir) {
    let dir = TempDir::new().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join(DB_FILE)).expect("open a new store");
    (store, dir)
}

ledger_store::conformance_tests!(fresh_store);
ledger_store::commit_log_conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_checks_share_one_store() {
    let (store, _dir) = fresh_store().await;
    tokio::join!(
        ledger_store::conformance::run_all(&store),
        ledger_store::conformance::run_all_log(&store),
    );
}

fn v(version: u64) -> StreamVersion {
    StreamVersion::new(version)
}

fn stream(text: &str) -> StreamId {
    StreamId::parse(text).expect("test stream ids are valid")
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("test keys are valid")
}

fn single(
    tenant: TenantId,
    stream: StreamId,
    expected: StreamVersion,
    count: usize,
    key: Option<&IdempotencyKey>,
) -> AppendRequest {
    AppendRequest {
        heads: Vec::new(),
        tenant_id: tenant,
        streams: vec![stream_append(tenant, stream, expected, count)],
        idempotency: key.map(|key| IdempotencyWrite {
            key: key.clone(),
            request_hash: [1; 32],
            response: b"ok".to_vec(),
        }),
    }
}

#[tokio::test]
async fn reopening_keeps_everything_and_reloads_heads() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    let tenant = unique_tenant("reopen");
    let (a, b) = (stream("vendor/a"), stream("credit/b"));
    let checkpoint = Checkpoint {
        position: Position(3),
        state: b"folded".to_vec(),
    };
    let (head, records, record) = {
        let store = SqliteStore::open(&path).expect("open");
        store
            .append(single(tenant, a, v(0), 2, Some(&key("k1"))))
            .await
            .expect("append");
        store
            .append(single(tenant, b, v(0), 1, None))
            .await
            .expect("append");
        store
            .save_checkpoint("balances", checkpoint.clone())
            .await
            .expect("save checkpoint");
        let records = store.read_log(Position::ZERO, 100).await.expect("read_log");
        let record = store
            .idempotency(tenant, &key("k1"))
            .await
            .expect("read key");
        (store.head(), records, record)
    };
    assert_eq!(head, Position(3));

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.head(), head, "the head is reloaded");
    assert_eq!(*store.follow().borrow(), head, "follow starts at the head");
    assert_eq!(
        store.read_log(Position::ZERO, 100).await.expect("read_log"),
        records
    );
    assert_eq!(
        store
            .idempotency(tenant, &key("k1"))
            .await
            .expect("read key"),
        record
    );
    assert_eq!(
        store.load_checkpoint("balances").await.expect("load"),
        Some(checkpoint)
    );

    let stale = store.append(single(tenant, a, v(1), 1, None)).await;
    assert!(
        matches!(stale, Err(AppendError::VersionConflict { actual, .. }) if actual == v(2)),
        "a stale version after reopening must conflict: {stale:?}"
    );
    let replay = store
        .append(single(tenant, b, v(1), 1, Some(&key("k1"))))
        .await;
    assert!(
        matches!(replay, Err(AppendError::KeyExists(_))),
        "a key stored before reopening must replay: {replay:?}"
    );
    store
        .append(single(tenant, a, v(2), 1, None))
        .await
        .expect("an append at the reloaded head succeeds");
    assert_eq!(
        store.head(),
        Position(4),
        "positions continue after the head"
    );
}

#[tokio::test]
async fn head_is_current_when_append_returns_and_positions_have_no_gaps() {
    let (store, _dir) = fresh_store().await;
    let tenant = unique_tenant("gapless");
    let (a, b) = (stream("vendor/a"), stream("credit/b"));
    let mut expected = 0;
    for n in 0..10 {
        let request = AppendRequest {
            heads: Vec::new(),
            tenant_id: tenant,
            streams: vec![
                stream_append(tenant, a, v(n), 1),
                stream_append(tenant, b, v(2 * n), 2),
            ],
            idempotency: None,
        };
        store.append(request).await.expect("append");
        expected += 3;
        assert_eq!(store.head(), Position(expected), "head lags the reply");
        // A refused append on the side moves nothing.
        let refused = store.append(single(tenant, a, v(0), 1, None)).await;
        assert!(matches!(refused, Err(AppendError::VersionConflict { .. })));
    }
    let positions: Vec<u64> = store
        .read_log(Position::ZERO, READ_PAGE_RECORDS_MAX)
        .await
        .expect("read_log")
        .iter()
        .map(|r| r.position.0)
        .collect();
    assert_eq!(positions, (1..=expected).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_appends_do_not_fail_their_group_commit() {
    let (store, _dir) = fresh_store().await;
    let tenant = unique_tenant("batch");
    let contested = stream("vendor/contested");
    let taken = key("taken");
    store
        .append(single(tenant, contested, v(0), 1, Some(&taken)))
        .await
        .expect("seed");
    let before = store.stats();

    let mut tasks = JoinSet::new();
    for n in 0..CONCURRENT_APPENDS {
        let store = store.clone();
        let taken = taken.clone();
        tasks.spawn(async move {
            let own = stream(&format!("credit/c{n}"));
            let request = match n % 4 {
                // A stale version: conflicts.
                0 => single(tenant, contested, v(0), 1, Some(&key(&format!("k{n}")))),
                // A stored key: replays.
                1 => single(tenant, own, v(0), 1, Some(&taken)),
                _ => single(tenant, own, v(0), 2, Some(&key(&format!("k{n}")))),
            };
            (n, own, store.append(request).await)
        });
    }
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, own, result) = joined.expect("task");
        match (n % 4, result) {
            (0, Err(AppendError::VersionConflict { stream, .. })) => assert_eq!(stream, contested),
            (1, Err(AppendError::KeyExists(record))) => assert_eq!(record.key, taken),
            (2 | 3, Ok(_)) => {
                accepted += 1;
                let records = read_stream_all(&store, tenant, own, v(0))
                    .await
                    .expect("read");
                assert_eq!(records.len(), 2, "an accepted append is whole");
            }
            (kind, result) => panic!("append {n} (kind {kind}) got {result:?}"),
        }
    }
    assert_eq!(accepted, CONCURRENT_APPENDS / 2);
    let after = store.stats();
    let commits = after.commits - before.commits;
    let appends = after.appends - before.appends;
    assert_eq!(appends, CONCURRENT_APPENDS as u64);
    assert!(
        commits < appends,
        "{appends} concurrent appends took {commits} commits: no group commit happened"
    );
    let contested_records = read_stream_all(&store, tenant, contested, v(0))
        .await
        .expect("read");
    assert_eq!(contested_records.len(), 1, "every stale append was refused");
}

#[tokio::test]
async fn a_foreign_writer_is_noticed_not_clobbered() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    let ours = SqliteStore::open(&path).expect("open");
    let theirs = SqliteStore::open(&path).expect("open again");
    let tenant = unique_tenant("foreign");
    let s = stream("vendor/shared");
    ours.append(single(tenant, s, v(0), 1, None))
        .await
        .expect("append");
    theirs
        .append(single(tenant, s, v(1), 1, None))
        .await
        .expect("append through the other store");
    let stale = ours.append(single(tenant, s, v(1), 1, None)).await;
    assert!(
        matches!(stale, Err(AppendError::VersionConflict { actual, .. }) if actual == v(2)),
        "the writer must see the other store's commit: {stale:?}"
    );
    ours.append(single(tenant, s, v(2), 1, None))
        .await
        .expect("append at the current version");
    let logged = ours.read_log(Position(2), 10).await.expect("read_log");
    assert_eq!(
        logged.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![Position(3)],
        "positions continue past the foreign commit"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    drop(SqliteStore::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump the schema version");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(e @ StoreError::Backend { .. }) => {
            assert!(e.to_string().contains("schema version"), "{e}")
        }
        other => panic!("expected the newer schema to be refused, got {other:?}"),
    }
}

/// A database of schema version 1 (before heads): what that version's
/// code created, written here as it was.
const SCHEMA_V1: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, stream TEXT NOT NULL,
        version INTEGER NOT NULL, event_type INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
        record BLOB NOT NULL, UNIQUE (tenant_id, stream, version)
    );
    CREATE TABLE idempotency (
        tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash BLOB NOT NULL,
        response BLOB NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (tenant_id, key)
    ) WITHOUT ROWID;
    PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_database_gains_heads_and_keeps_its_events() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    let tenant = unique_tenant("migrate");
    let a = stream("vendor/a");
    let appended = stream_append(tenant, a, v(0), 2);
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.execute_batch(SCHEMA_V1).expect("the version 1 schema");
        for (n, sealed) in appended.events.iter().enumerate() {
            conn.execute(
                "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    n as i64 + 1,
                    tenant.as_str(),
                    a.to_string(),
                    sealed.envelope.version().get() as i64,
                    sealed.envelope.event.event_type().tag(),
                    0_i64,
                    &sealed.bytes
                ],
            )
            .expect("a version 1 event");
        }
    }
    let store = SqliteStore::open(&path).expect("open a version 1 database");
    let records = read_stream_all(&store, tenant, a, v(0))
        .await
        .expect("read");
    assert_eq!(records.len(), 2, "the events written before heads remain");
    assert_eq!(
        store.load_heads(tenant, &[a]).await.expect("heads"),
        vec![None]
    );
    let head = ledger_store::HeadWrite {
        stream: a,
        expected_etag: 0,
        version: v(2),
        bytes: b"rebuilt".to_vec(),
    };
    store
        .append(AppendRequest {
            tenant_id: tenant,
            streams: Vec::new(),
            heads: vec![head],
            idempotency: None,
        })
        .await
        .map(|_| ())
        .unwrap_or_else(|e| panic!("a head rebuilt after the migration: {e:?}"));
    let heads = store.load_heads(tenant, &[a]).await.expect("heads");
    assert_eq!(heads[0].as_ref().map(|h| h.etag), Some(1));
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION, "the schema moved to this build's");
}

#[tokio::test]
async fn a_dropped_store_releases_its_file() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    let tenant = unique_tenant("drop");
    let store = SqliteStore::open(&path).expect("open");
    store
        .append(single(tenant, stream("vendor/a"), v(0), 1, None))
        .await
        .expect("append");
    drop(store);
    // The writer closed its connection on drop, checkpointing the WAL into
    // the database and removing it.
    assert!(
        !dir.path().join(format!("{DB_FILE}-wal")).exists(),
        "the write-ahead log outlived the store"
    );
}

#[test]
fn stores_opening_a_new_file_at_once_agree_on_its_schema() {
    const OPENERS: usize = 4;
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join(DB_FILE);
    let start = std::sync::Barrier::new(OPENERS);
    std::thread::scope(|scope| {
        let openers: Vec<_> = (0..OPENERS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    SqliteStore::open(&path).map(drop)
                })
            })
            .collect();
        for opener in openers {
            opener
                .join()
                .expect("opener")
                .expect("every concurrent open succeeds");
        }
    });
}
