//! The conformance suite: the EventStore, CommitLog and CheckpointStore contracts, as tests any adapter runs.
//!
//! Each check is an async function over the port alone, so every adapter
//! runs the very same code. A check panics, saying which rule broke, when
//! the store under test breaks one.
//!
//! Checks may share a store, even concurrently ([`run_all`] does): each
//! writes under tenants of its own, minted fresh on every run, and proves
//! "nothing was written" by reading back its own streams and keys (and, on
//! a [`CommitLog`], the log's records of its own tenants), never by
//! comparing the log head. That also lets them run against a long-lived
//! database.
//!
//! Wire an adapter up with [`conformance_tests!`](crate::conformance_tests),
//! one test per check, and a store with a commit log also with
//! [`commit_log_conformance_tests!`](crate::commit_log_conformance_tests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledger_core::codec::{self, Sealed};
use ledger_core::event::{CreditAccountSuspended, Event, TenantConfigured, VendorRegistered};
use ledger_core::id::{CommandId, EventId, StreamId, StreamKind, StreamVersion, TenantId, UserId};
use ledger_core::text::{Name, Reason};
use ledger_core::{Actor, CommissionRate, Currency, Hash, Header, Role, TimeZone, Timestamp};
use tokio::task::JoinSet;

mod heads;
pub use heads::{
    HEAD_RACE_ROUNDS, HEAD_RACERS, concurrent_heads, heads_alone, heads_ride_with_events,
    invalid_heads, stale_heads_write_nothing, tenants_listed,
};

use crate::{
    APPEND_EVENTS_MAX, APPEND_STREAMS_MAX, AppendError, AppendRequest, Checkpoint, CheckpointStore,
    CommitLog, EventStore, IDEMPOTENCY_RESPONSE_BYTES_MAX, IdempotencyKey, IdempotencyRecord,
    IdempotencyWrite, LogRecord, Position, READ_PAGE_RECORDS_MAX, StreamAppend, read_stream_all,
};

/// Tasks racing for each version in [`concurrent_appends`].
pub const RACERS: usize = 16;
/// Versions raced for in [`concurrent_appends`].
pub const RACE_ROUNDS: u64 = 6;
/// Tasks appending with retries in [`retrying_appends`].
pub const RETRYING_WRITERS: usize = 8;
/// Appends each retrying writer makes.
pub const RETRYING_APPENDS: usize = 4;
/// Tasks racing for one idempotency key in [`concurrent_idempotency`].
pub const KEY_RACERS: usize = 16;
/// Appends in [`read_after_write`].
pub const READ_AFTER_WRITE_APPENDS: u64 = 20;
/// Records in the stream of [`large_stream`]: more than two pages.
pub const LARGE_STREAM_RECORDS: usize = 2 * READ_PAGE_RECORDS_MAX + 17;
/// Streams written in [`many_streams`].
pub const MANY_STREAMS: usize = 2_000;
/// Tenants those streams are spread over (each uses the same stream ids).
pub const MANY_STREAMS_TENANTS: usize = 4;
/// Appends in flight at once in [`many_streams`].
pub const MANY_STREAMS_CONCURRENCY: usize = 32;
/// Appends per writer task in [`follow_reaches_head`].
pub const FOLLOW_APPENDS: u64 = 20;
/// How long a committed position may take to reach `follow` and `head`.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(10);
/// A checkpoint state size well past any single page or row inline limit.
pub const LARGE_CHECKPOINT_BYTES: usize = 1024 * 1024;
/// Longest check name kept in a minted tenant id (the rest is uniqueness).
const TENANT_PREFIX_LEN_MAX: usize = 12;
/// The 48 bits of clock and process id in a minted tenant id: with the
/// prefix, two dashes and a counter in hex, the id stays within 36 bytes.
const TENANT_SALT_MASK: u64 = (1 << 48) - 1;

/// Every check, concurrently, on one store: the checks must not disturb
/// one another, and the store must keep every rule under mixed load.
pub async fn run_all<S>(store: &S)
where
    S: EventStore + CheckpointStore + Clone,
{
    tokio::join!(
        version_conflict(store),
        multi_stream_atomicity(store),
        multi_stream_commit(store),
        idempotent_replay(store),
        key_reused(store),
        keys_per_tenant(store),
        remembered_rejection(store),
        rejection_replayed(store),
        concurrent_appends(store),
        retrying_appends(store),
        concurrent_idempotency(store),
        read_after_write(store),
        stream_ordering(store),
        large_stream(store),
        many_streams(store),
        invalid_requests(store),
        heads_ride_with_events(store),
        stale_heads_write_nothing(store),
        heads_alone(store),
        concurrent_heads(store),
        invalid_heads(store),
        tenants_listed(store),
        invalid_keyed_requests(store),
        requests_at_the_limits(store),
        checkpoints(store),
        checkpoint_names(store),
    );
}

/// Every check of the commit log, concurrently, on one store (beside
/// [`run_all`]'s, which a store with a log also runs).
pub async fn run_all_log<S>(store: &S)
where
    S: CommitLog + Clone,
{
    tokio::join!(
        ordering(store),
        log_paging(store),
        log_read_after_write(store),
        log_page_cap(store),
        follow_reaches_head(store),
    );
}

/// One `#[tokio::test]` per conformance check. `$fresh` is an async fn
/// returning `(store, guard)`: a new store, and whatever must live as long
/// as it (a temporary directory, say).
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            version_conflict,
            multi_stream_atomicity,
            multi_stream_commit,
            idempotent_replay,
            key_reused,
            keys_per_tenant,
            remembered_rejection,
            rejection_replayed,
            concurrent_appends,
            retrying_appends,
            concurrent_idempotency,
            read_after_write,
            stream_ordering,
            large_stream,
            many_streams,
            invalid_requests,
            invalid_keyed_requests,
            requests_at_the_limits,
            checkpoints,
            checkpoint_names,
            heads_ride_with_events,
            stale_heads_write_nothing,
            heads_alone,
            concurrent_heads,
            invalid_heads,
        );
    };
    (@each $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $fresh().await;
                $crate::conformance::$check(&store).await;
            }
        )*
    };
}

/// One `#[tokio::test]` per check of the [`CommitLog`] contract, as
/// [`conformance_tests!`](crate::conformance_tests) makes them.
#[macro_export]
macro_rules! commit_log_conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            ordering,
            log_paging,
            log_read_after_write,
            log_page_cap,
            follow_reaches_head,
        );
    };
}

/// An append at a stale or future version fails naming the stream, and
/// writes nothing.
pub async fn version_conflict<S: EventStore>(store: &S) {
    let check = "version_conflict";
    let tenant = unique_tenant("conflict");
    let stream = vendor("a");
    let first = stream_append(tenant, stream, StreamVersion::NONE, 2);
    append_ok(store, request(tenant, vec![first], None), check).await;

    let key = key("conflict-stale");
    let stale = stream_append(tenant, stream, StreamVersion::NONE, 1);
    let result = store
        .append(request(tenant, vec![stale], Some(idempotency(&key, 1))))
        .await;
    expect_conflict(result, stream, StreamVersion::NONE, v(2), check);

    let ahead = stream_append(tenant, stream, v(5), 1);
    let result = store
        .append(request(tenant, vec![ahead], Some(idempotency(&key, 2))))
        .await;
    expect_conflict(result, stream, v(5), v(2), check);

    assert_wrote_nothing(store, check, tenant, &[(stream, 2)], Some(&key)).await;

    let next = stream_append(tenant, stream, v(2), 1);
    append_ok(
        store,
        request(tenant, vec![next], Some(idempotency(&key, 3))),
        check,
    )
    .await;
    assert_stream_len(store, check, tenant, stream, 3).await;
}

/// A request touching several streams is all or nothing: one conflicting
/// stream keeps every stream and the idempotency record unwritten.
pub async fn multi_stream_atomicity<S: EventStore>(store: &S) {
    let check = "multi_stream_atomicity";
    let tenant = unique_tenant("atomic");
    let MultiStreamRefused {
        key,
        streams: [a, b, c],
    } = refuse_multi_stream(store, check, tenant).await;
    assert_wrote_nothing(store, check, tenant, &[(a, 1), (b, 0), (c, 0)], Some(&key)).await;
}

/// After its refused attempts, a multi-stream request at the right versions
/// commits under the same key: every event of every stream, and the
/// idempotency record.
pub async fn multi_stream_commit<S: EventStore>(store: &S) {
    let check = "multi_stream_commit";
    let tenant = unique_tenant("atomic-commit");
    let MultiStreamRefused {
        key,
        streams: [a, b, c],
    } = refuse_multi_stream(store, check, tenant).await;
    let appends = vec![
        stream_append(tenant, a, v(1), 2),
        stream_append(tenant, b, StreamVersion::NONE, 1),
        stream_append(tenant, c, StreamVersion::NONE, 3),
    ];
    let expected: Vec<Vec<u8>> = appends
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.bytes.clone()))
        .collect();
    append_ok(
        store,
        request(tenant, appends, Some(idempotency(&key, 3))),
        check,
    )
    .await;
    let mut written = Vec::new();
    for (stream, after) in [
        (a, v(1)),
        (b, StreamVersion::NONE),
        (c, StreamVersion::NONE),
    ] {
        let records = read_stream_all(store, tenant, stream, after)
            .await
            .expect("read_stream_all");
        written.extend(records.into_iter().map(|r| r.bytes));
    }
    assert_eq!(
        written, expected,
        "{check}: a multi-stream append must write all its events"
    );
    let record = stored_record(
        store,
        check,
        tenant,
        &key,
        "the idempotency record of a committed append is missing",
    )
    .await;
    assert_eq!(
        record.request_hash, [3; 32],
        "{check}: the idempotency record must be the committed request's"
    );
    for (stream, len) in [(a, 3), (b, 1), (c, 3)] {
        assert_stream_len(store, check, tenant, stream, len).await;
    }
}

/// Multi-stream appends refused for a conflict, each under `key`.
struct MultiStreamRefused {
    key: IdempotencyKey,
    /// `a` (one event), `b` and `c` (none).
    streams: [StreamId; 3],
}

/// Gives stream `a` one event, then has two multi-stream appends refused
/// for a conflict: one after a stream that would have been fine, one
/// between such streams.
async fn refuse_multi_stream<S: EventStore>(
    store: &S,
    check: &str,
    tenant: TenantId,
) -> MultiStreamRefused {
    let (a, b, c) = (vendor("a"), credit("b"), vendor("c"));
    append_ok(
        store,
        request(
            tenant,
            vec![stream_append(tenant, a, StreamVersion::NONE, 1)],
            None,
        ),
        check,
    )
    .await;
    let key = key("atomic");

    // The conflict comes after a stream that would have been fine.
    let result = store
        .append(request(
            tenant,
            vec![
                stream_append(tenant, b, StreamVersion::NONE, 2),
                stream_append(tenant, a, StreamVersion::NONE, 1),
            ],
            Some(idempotency(&key, 1)),
        ))
        .await;
    expect_conflict(result, a, StreamVersion::NONE, v(1), check);
    // And here, before and after streams that would have been fine.
    let result = store
        .append(request(
            tenant,
            vec![
                stream_append(tenant, a, v(1), 1),
                stream_append(tenant, b, v(3), 1),
                stream_append(tenant, c, StreamVersion::NONE, 1),
            ],
            Some(idempotency(&key, 2)),
        ))
        .await;
    expect_conflict(result, b, v(3), StreamVersion::NONE, check);
    MultiStreamRefused {
        key,
        streams: [a, b, c],
    }
}

/// A key already stored answers with its record, checked before versions,
/// so a replay still finds it after its streams moved on.
pub async fn idempotent_replay<S: EventStore>(store: &S) {
    let check = "idempotent_replay";
    let tenant = unique_tenant("replay");
    let StoredKey {
        original,
        stored,
        streams: [s1, s2],
        ..
    } = store_checkout_key(store, check, tenant).await;
    let replayed = (original.clone(), &[(s1, 1), (s2, 1)][..]);
    assert_answered_from_key(
        store,
        check,
        replayed,
        &stored,
        "a replay must get the stored record",
    )
    .await;

    // The streams move on; the replay must still find its record.
    append_ok(
        store,
        request(tenant, vec![stream_append(tenant, s1, v(1), 1)], None),
        check,
    )
    .await;
    let replayed = (original, &[(s1, 2), (s2, 1)][..]);
    assert_answered_from_key(
        store,
        check,
        replayed,
        &stored,
        "the key must be checked before versions",
    )
    .await;
}

/// A different request under a stored key gets the original's record, and
/// writes nothing.
pub async fn key_reused<S: EventStore>(store: &S) {
    let check = "key_reused";
    let tenant = unique_tenant("reused");
    let StoredKey {
        key,
        stored,
        streams: [s1, s2],
        ..
    } = store_checkout_key(store, check, tenant).await;
    let s3 = vendor("r3");
    let different = request(
        tenant,
        vec![stream_append(tenant, s3, StreamVersion::NONE, 1)],
        Some(IdempotencyWrite {
            key: key.clone(),
            request_hash: [8; 32],
            response: b"other".to_vec(),
        }),
    );
    let streams = [(s1, 1), (s2, 1), (s3, 0)];
    assert_answered_from_key(
        store,
        check,
        (different, &streams[..]),
        &stored,
        "a different request under a stored key must get the stored record",
    )
    .await;
}

/// Keys are scoped by tenant: the same key in another tenant is another key.
pub async fn keys_per_tenant<S: EventStore>(store: &S) {
    let check = "keys_per_tenant";
    let tenant = unique_tenant("per-tenant");
    let StoredKey {
        key,
        stored,
        streams: [s1, _],
        ..
    } = store_checkout_key(store, check, tenant).await;
    let other = unique_tenant("per-tenant-other");
    append_ok(
        store,
        request(
            other,
            vec![stream_append(other, s1, StreamVersion::NONE, 1)],
            Some(IdempotencyWrite {
                key: key.clone(),
                request_hash: [9; 32],
                response: b"theirs".to_vec(),
            }),
        ),
        check,
    )
    .await;
    let theirs = stored_record(
        store,
        check,
        other,
        &key,
        "a key stored for another tenant is not found",
    )
    .await;
    assert_eq!(
        (theirs.request_hash, theirs.response.as_slice()),
        ([9; 32], &b"theirs"[..]),
        "{check}: keys are scoped by tenant"
    );
    assert_eq!(
        key_record(store, tenant, &key).await,
        Some(stored),
        "{check}: another tenant's key must not touch this tenant's record"
    );
}

/// A checkout on two streams stored under a key, and its record as read
/// back.
struct StoredKey {
    key: IdempotencyKey,
    original: AppendRequest,
    stored: IdempotencyRecord,
    streams: [StreamId; 2],
}

/// Appends a checkout on two new streams under a new key, and checks that
/// the key's record is what was written.
async fn store_checkout_key<S: EventStore>(store: &S, check: &str, tenant: TenantId) -> StoredKey {
    let (s1, s2) = (vendor("r1"), credit("r2"));
    let key = key("checkout-1");
    let write = IdempotencyWrite {
        key: key.clone(),
        request_hash: [7; 32],
        response: b"{\"order\":\"r1\",\"status\":\"recorded\"}".to_vec(),
    };
    let original = request(
        tenant,
        vec![
            stream_append(tenant, s1, StreamVersion::NONE, 1),
            stream_append(tenant, s2, StreamVersion::NONE, 1),
        ],
        Some(write.clone()),
    );
    append_ok(store, original.clone(), check).await;
    let stored = stored_record(store, check, tenant, &key, "the stored key is not found").await;
    assert_eq!(
        stored,
        IdempotencyRecord {
            key: key.clone(),
            request_hash: write.request_hash,
            response: write.response,
        },
        "{check}: the stored record must be what was written"
    );
    StoredKey {
        key,
        original,
        stored,
        streams: [s1, s2],
    }
}

/// An append with no events, only an idempotency record (how a rejected
/// command is remembered), stores the record and no event, even on the
/// stream its command named.
pub async fn remembered_rejection<S: EventStore>(store: &S) {
    let check = "remembered_rejection";
    let tenant = unique_tenant("rejection");
    remember_rejection(store, check, tenant).await;
    assert_stream_len(store, check, tenant, credit("e1"), 0).await;
}

/// A remembered rejection replays like any other record, even for a retry
/// that would now succeed.
pub async fn rejection_replayed<S: EventStore>(store: &S) {
    let check = "rejection_replayed";
    let tenant = unique_tenant("rejection-replay");
    let stream = credit("e1");
    let Remembered { key, stored } = remember_rejection(store, check, tenant).await;
    let replay = expect_key_exists(
        store
            .append(AppendRequest {
                heads: Vec::new(),
                tenant_id: tenant,
                streams: Vec::new(),
                idempotency: Some(IdempotencyWrite {
                    key: key.clone(),
                    request_hash: [3; 32],
                    response: b"again".to_vec(),
                }),
            })
            .await,
        check,
    );
    assert_eq!(
        replay, stored,
        "{check}: a replay must get the stored record"
    );
    // A retry that would now succeed is still answered with the rejection.
    let replay = expect_key_exists(
        store
            .append(request(
                tenant,
                vec![stream_append(tenant, stream, StreamVersion::NONE, 1)],
                Some(idempotency(&key, 4)),
            ))
            .await,
        check,
    );
    assert_eq!(
        replay, stored,
        "{check}: a replay must get the stored record"
    );
    assert_wrote_nothing(store, check, tenant, &[(stream, 0)], None).await;
}

/// A rejection remembered under a key.
struct Remembered {
    key: IdempotencyKey,
    stored: IdempotencyRecord,
}

/// Remembers a rejection (an events-free append), and checks that the key's
/// record is what was written.
async fn remember_rejection<S: EventStore>(store: &S, check: &str, tenant: TenantId) -> Remembered {
    let key = key("rejected-1");
    let write = IdempotencyWrite {
        key: key.clone(),
        request_hash: [3; 32],
        response: b"{\"rejected\":\"insufficient_credit\"}".to_vec(),
    };
    append_ok(
        store,
        AppendRequest {
            heads: Vec::new(),
            tenant_id: tenant,
            streams: Vec::new(),
            idempotency: Some(write.clone()),
        },
        check,
    )
    .await;
    let stored = stored_record(
        store,
        check,
        tenant,
        &key,
        "the remembered rejection is not stored",
    )
    .await;
    assert_eq!(
        stored,
        IdempotencyRecord {
            key: key.clone(),
            request_hash: write.request_hash,
            response: write.response,
        },
        "{check}: the stored record must be what was written"
    );
    Remembered { key, stored }
}

/// Many tasks race for the same version of one stream: exactly one wins
/// each version, the others conflict, and the stream ends contiguous.
pub async fn concurrent_appends<S: EventStore + Clone>(store: &S) {
    let check = "concurrent_appends";
    let tenant = unique_tenant("race");
    let stream = vendor("race");
    for round in 0..RACE_ROUNDS {
        race_for_version(store, check, tenant, stream, v(round)).await;
    }
}

/// [`RACERS`] tasks append one event each at `expected`: one wins, and the
/// stream holds its event; every other is told the new version.
async fn race_for_version<S: EventStore + Clone>(
    store: &S,
    check: &str,
    tenant: TenantId,
    stream: StreamId,
    expected: StreamVersion,
) {
    let won = v(expected.get() + 1);
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let append = stream_append(tenant, stream, expected, 1);
        let bytes = append.events[0].bytes.clone();
        racers.spawn(async move {
            let result = store.append(request(tenant, vec![append], None)).await;
            (result, bytes)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (result, bytes) = joined.expect("a racing task panicked");
        match result {
            Ok(()) => winners.push(bytes),
            Err(AppendError::VersionConflict {
                stream: named,
                expected: at,
                actual,
            }) => {
                assert_eq!(
                    (named, at, actual),
                    (stream, expected, won),
                    "{check}: a losing racer must be told the stream and its new version"
                );
            }
            Err(other) => panic!("{check}: a racer failed with {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{check}: exactly one racer must win version {won}"
    );
    let bytes = winners.remove(0);
    let stored = store
        .read_stream(tenant, stream, expected, READ_PAGE_RECORDS_MAX)
        .await
        .expect("read_stream");
    assert_eq!(
        stored
            .iter()
            .map(|r| (r.version, &r.bytes))
            .collect::<Vec<_>>(),
        vec![(won, &bytes)],
        "{check}: the stream must hold the winner's event, and only it"
    );
}

/// Writers that retry on conflict: every append lands, whole and in one
/// piece, and the stream stays contiguous.
pub async fn retrying_appends<S: EventStore + Clone>(store: &S) {
    let check = "retrying_appends";
    let tenant = unique_tenant("retry");
    let stream = credit("race");
    let mut writers = JoinSet::new();
    for writer in 0..RETRYING_WRITERS {
        writers.spawn(retrying_writer(
            store.clone(),
            check,
            tenant,
            stream,
            writer,
        ));
    }
    let mut appends = Vec::new();
    while let Some(joined) = writers.join_next().await {
        appends.extend(joined.expect("a retrying writer panicked"));
    }
    let stored = read_stream_all(store, tenant, stream, StreamVersion::NONE)
        .await
        .expect("read_stream_all");
    let total: usize = appends.iter().map(Vec::len).sum();
    assert_eq!(
        stored.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=total as u64).map(v).collect::<Vec<_>>(),
        "{check}: the stream must be contiguous from version 1"
    );
    for append in &appends {
        let start = stored
            .iter()
            .position(|r| r.bytes == append[0])
            .unwrap_or_else(|| panic!("{check}: an acknowledged append is missing"));
        let landed: Vec<&Vec<u8>> = stored[start..]
            .iter()
            .take(append.len())
            .map(|r| &r.bytes)
            .collect();
        assert_eq!(
            landed,
            append.iter().collect::<Vec<_>>(),
            "{check}: an append's events must land together, in order"
        );
    }
}

/// [`RETRYING_APPENDS`] appends of one or two events, each retried at the
/// version a conflict names until it lands: the bytes of each, as
/// acknowledged.
async fn retrying_writer<S: EventStore>(
    store: S,
    check: &'static str,
    tenant: TenantId,
    stream: StreamId,
    writer: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut expected = StreamVersion::NONE;
    let mut written = Vec::new();
    for n in 0..RETRYING_APPENDS {
        let count = 1 + (writer + n) % 2;
        loop {
            let append = stream_append(tenant, stream, expected, count);
            let bytes: Vec<Vec<u8>> = append.events.iter().map(|e| e.bytes.clone()).collect();
            match store.append(request(tenant, vec![append], None)).await {
                Ok(_) => {
                    written.push(bytes);
                    expected = v(expected.get() + count as u64);
                    break;
                }
                Err(AppendError::VersionConflict { actual, .. }) => expected = actual,
                Err(other) => panic!("{check}: a retrying writer failed with {other:?}"),
            }
        }
    }
    written
}

/// Many tasks race to store one idempotency key (on different streams):
/// one wins, every other gets the winner's record, and only the winner's
/// events are written.
pub async fn concurrent_idempotency<S: EventStore + Clone>(store: &S) {
    let check = "concurrent_idempotency";
    let tenant = unique_tenant("keyrace");
    let key = key("contested");
    let mut racers = JoinSet::new();
    for racer in 0..KEY_RACERS {
        let store = store.clone();
        let key = key.clone();
        racers.spawn(async move {
            let stream = vendor(&format!("k{racer}"));
            let write = IdempotencyWrite {
                key,
                request_hash: [racer as u8; 32],
                response: format!("racer {racer}").into_bytes(),
            };
            let result = store
                .append(request(
                    tenant,
                    vec![stream_append(tenant, stream, StreamVersion::NONE, 1)],
                    Some(write),
                ))
                .await;
            (racer, stream, result)
        });
    }
    let mut winners = Vec::new();
    let mut answers = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (racer, stream, result) = joined.expect("a racing task panicked");
        match result {
            Ok(()) => winners.push((racer, stream)),
            Err(AppendError::KeyExists(record)) => answers.push((stream, *record)),
            Err(other) => panic!("{check}: a racer failed with {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{check}: exactly one racer must store the key"
    );
    let (winner, winning_stream) = winners[0];
    let stored = IdempotencyRecord {
        key: key.clone(),
        request_hash: [winner as u8; 32],
        response: format!("racer {winner}").into_bytes(),
    };
    assert_eq!(
        store
            .idempotency(tenant, &key)
            .await
            .expect("idempotency read"),
        Some(stored.clone()),
        "{check}: the stored record must be the winner's"
    );
    assert_stream_len(store, check, tenant, winning_stream, 1).await;
    for (stream, record) in answers {
        assert_eq!(
            record, stored,
            "{check}: a loser must get the winner's record"
        );
        assert_stream_len(store, check, tenant, stream, 0).await;
    }
}

/// Whatever an acknowledged append wrote is visible to the very next read.
pub async fn read_after_write<S: EventStore>(store: &S) {
    let check = "read_after_write";
    let tenant = unique_tenant("raw");
    let stream = vendor("raw");
    for n in 0..READ_AFTER_WRITE_APPENDS {
        let key = key(&format!("raw-{n}"));
        let append = stream_append(tenant, stream, v(n), 1);
        let bytes = append.events[0].bytes.clone();
        append_ok(
            store,
            request(tenant, vec![append], Some(idempotency(&key, 1))),
            check,
        )
        .await;
        let page = store
            .read_stream(tenant, stream, v(n), READ_PAGE_RECORDS_MAX)
            .await
            .expect("read_stream");
        assert_eq!(
            page.iter()
                .map(|r| (r.version, &r.bytes))
                .collect::<Vec<_>>(),
            vec![(v(n + 1), &bytes)],
            "{check}: read_stream must see the append just acknowledged"
        );
        let record = store
            .idempotency(tenant, &key)
            .await
            .expect("idempotency read");
        assert_eq!(
            record.map(|r| r.request_hash),
            Some([1; 32]),
            "{check}: the idempotency record must be visible at once"
        );
    }
}

/// Whatever an acknowledged append wrote is in the log at once, at or
/// below the head; an append without events adds no record.
pub async fn log_read_after_write<S: CommitLog>(store: &S) {
    let check = "log_read_after_write";
    let tenant = unique_tenant("log-raw");
    let stream = vendor("raw");
    for n in 0..READ_AFTER_WRITE_APPENDS {
        let before = store.head();
        let append = stream_append(tenant, stream, v(n), 1);
        let bytes = append.events[0].bytes.clone();
        append_ok(store, request(tenant, vec![append], None), check).await;
        let head = store.head();
        let logged = tenant_records_after(store, tenant, before).await;
        assert_eq!(
            logged
                .iter()
                .map(|r| (r.record.stream, r.record.version, &r.record.bytes))
                .collect::<Vec<_>>(),
            vec![(stream, v(n + 1), &bytes)],
            "{check}: read_log must see the append just acknowledged"
        );
        assert!(
            logged[0].position > before && logged[0].position <= head,
            "{check}: the record must sit after the head before the append \
             ({before}) and at or below the head after it ({head})"
        );
    }
    let before = store.head();
    let remembered = AppendRequest {
        heads: Vec::new(),
        tenant_id: tenant,
        streams: Vec::new(),
        idempotency: Some(idempotency(&key("log-rejected"), 1)),
    };
    append_ok(store, remembered, check).await;
    assert!(
        tenant_records_after(store, tenant, before).await.is_empty(),
        "{check}: an events-free append must add no record to the log"
    );
}

/// The log returns records in commit order, each append's events in
/// request order, at strictly increasing positions.
pub async fn ordering<S: CommitLog>(store: &S) {
    let check = "ordering";
    let tenant = unique_tenant("order");
    let before = store.head();
    let planned = append_plan(store, check, tenant).await;
    let logged = tenant_records_after(store, tenant, before).await;
    assert_eq!(
        logged
            .iter()
            .map(|r| (r.record.stream, r.record.version, r.record.bytes.clone()))
            .collect::<Vec<_>>(),
        planned.expected,
        "{check}: read_log must return every record in append order"
    );
    assert!(
        logged.windows(2).all(|w| w[0].position < w[1].position),
        "{check}: positions must strictly increase"
    );
}

/// Reading the log in small pages gives the same records as in one go.
pub async fn log_paging<S: CommitLog>(store: &S) {
    let check = "log_paging";
    let tenant = unique_tenant("log-paging");
    let before = store.head();
    append_plan(store, check, tenant).await;
    let logged = tenant_records_after(store, tenant, before).await;
    let mut paged = Vec::new();
    let mut cursor = before;
    let last = logged.last().expect("records were written").position;
    while cursor < last {
        let page = store.read_log(cursor, 3).await.expect("read_log");
        assert!(
            !page.is_empty() && page.len() <= 3,
            "{check}: read_log must return 1..=limit records while some follow"
        );
        assert!(
            page.iter().all(|r| r.position > cursor),
            "{check}: read_log must return only records after `after`"
        );
        cursor = page.last().expect("non-empty").position;
        paged.extend(page.into_iter().filter(|r| r.record.tenant_id == tenant));
    }
    assert_eq!(
        paged, logged,
        "{check}: paging read_log must give the same records"
    );
}

/// Streams return records in version order, paging by version.
pub async fn stream_ordering<S: EventStore>(store: &S) {
    let check = "stream_ordering";
    let tenant = unique_tenant("stream-order");
    let [a, b, c] = append_plan(store, check, tenant).await.streams;
    let all_a = store
        .read_stream(tenant, a, StreamVersion::NONE, READ_PAGE_RECORDS_MAX)
        .await
        .expect("read_stream");
    assert_eq!(
        all_a.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=7).map(v).collect::<Vec<_>>(),
        "{check}: read_stream must return versions in order"
    );
    let middle = store
        .read_stream(tenant, a, v(2), 2)
        .await
        .expect("read_stream");
    assert_eq!(
        middle,
        all_a[2..4].to_vec(),
        "{check}: read_stream must start after `after` and stop at `limit`"
    );
    for (stream, len) in [(a, 7), (b, 4), (c, 3)] {
        let past = store
            .read_stream(tenant, stream, v(len), READ_PAGE_RECORDS_MAX)
            .await
            .expect("read_stream");
        assert!(
            past.is_empty(),
            "{check}: read_stream after the last version must be empty"
        );
    }
}

/// What [`append_plan`] wrote.
struct Planned {
    /// `a` (7 events), `b` (4) and `c`, the tenant's own stream (3).
    streams: [StreamId; 3],
    /// Every event as appended: its stream, version and bytes.
    expected: Vec<(StreamId, StreamVersion, Vec<u8>)>,
}

/// Six appends over three streams, one to three streams and one to three
/// events at a time.
async fn append_plan<S: EventStore>(store: &S, check: &str, tenant: TenantId) -> Planned {
    let (a, b, c) = (vendor("a"), credit("b"), tenant_stream(tenant));
    let plan: [&[(StreamId, usize)]; 6] = [
        &[(a, 1)],
        &[(b, 2)],
        &[(a, 2), (b, 1)],
        &[(c, 1)],
        &[(b, 1), (a, 1), (c, 2)],
        &[(a, 3)],
    ];
    let mut versions: HashMap<StreamId, u64> = Default::default();
    let mut expected = Vec::new();
    for step in plan {
        let mut appends = Vec::new();
        for &(stream, count) in step {
            let at = versions.entry(stream).or_default();
            let append = stream_append(tenant, stream, v(*at), count);
            for sealed in &append.events {
                expected.push((stream, sealed.envelope.version(), sealed.bytes.clone()));
            }
            *at += count as u64;
            appends.push(append);
        }
        append_ok(store, request(tenant, appends, None), check).await;
    }
    Planned {
        streams: [a, b, c],
        expected,
    }
}

/// A stream longer than a page loads completely through `read_stream_all`,
/// bytes as sealed; every page is capped at [`READ_PAGE_RECORDS_MAX`].
pub async fn large_stream<S: EventStore>(store: &S) {
    let check = "large_stream";
    let tenant = unique_tenant("large");
    let stream = vendor("large");
    let mut sealed = Vec::with_capacity(LARGE_STREAM_RECORDS);
    while sealed.len() < LARGE_STREAM_RECORDS {
        let count = APPEND_EVENTS_MAX.min(LARGE_STREAM_RECORDS - sealed.len());
        let append = stream_append(tenant, stream, v(sealed.len() as u64), count);
        sealed.extend(append.events.iter().map(|e| e.bytes.clone()));
        append_ok(store, request(tenant, vec![append], None), check).await;
    }

    let page = store
        .read_stream(tenant, stream, StreamVersion::NONE, usize::MAX)
        .await
        .expect("read_stream");
    assert_eq!(
        page.len(),
        READ_PAGE_RECORDS_MAX,
        "{check}: read_stream must cap a page at READ_PAGE_RECORDS_MAX"
    );
    let all = read_stream_all(store, tenant, stream, StreamVersion::NONE)
        .await
        .expect("read_stream_all");
    assert_eq!(
        all.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=LARGE_STREAM_RECORDS as u64).map(v).collect::<Vec<_>>(),
        "{check}: read_stream_all must load every version in order"
    );
    assert!(
        all.iter().zip(&sealed).all(|(r, bytes)| r.bytes == *bytes),
        "{check}: stored bytes must be exactly the sealed bytes"
    );
    assert!(
        all.iter()
            .all(|r| r.tenant_id == tenant && r.stream == stream),
        "{check}: records must carry their tenant and stream"
    );
    let tail = read_stream_all(store, tenant, stream, v(READ_PAGE_RECORDS_MAX as u64))
        .await
        .expect("read_stream_all");
    assert_eq!(
        tail.len(),
        LARGE_STREAM_RECORDS - READ_PAGE_RECORDS_MAX,
        "{check}: read_stream_all must start after `after`"
    );
}

/// A page of the log is capped at [`READ_PAGE_RECORDS_MAX`] whatever the
/// limit asked.
pub async fn log_page_cap<S: CommitLog>(store: &S) {
    let check = "log_page_cap";
    let before = store.head();
    large_stream(store).await;
    let logged = store.read_log(before, usize::MAX).await.expect("read_log");
    assert_eq!(
        logged.len(),
        READ_PAGE_RECORDS_MAX,
        "{check}: read_log must cap a page at READ_PAGE_RECORDS_MAX"
    );
}

/// Thousands of streams over several tenants, the same stream ids in each
/// tenant: every stream holds its own event and nothing leaks across tenants.
pub async fn many_streams<S: EventStore + Clone>(store: &S) {
    let check = "many_streams";
    let tenants: Vec<TenantId> = (0..MANY_STREAMS_TENANTS)
        .map(|_| unique_tenant("many"))
        .collect();
    let per_tenant = MANY_STREAMS / MANY_STREAMS_TENANTS;
    let stream_of = |n: usize| {
        if n.is_multiple_of(2) {
            vendor(&format!("s{n}"))
        } else {
            credit(&format!("s{n}"))
        }
    };
    let mut expected = HashMap::new();
    let mut requests = Vec::new();
    for &tenant in &tenants {
        let streams: Vec<usize> = (0..per_tenant).collect();
        for chunk in streams.chunks(APPEND_STREAMS_MAX) {
            let appends: Vec<StreamAppend> = chunk
                .iter()
                .map(|&n| stream_append(tenant, stream_of(n), StreamVersion::NONE, 1))
                .collect();
            for append in &appends {
                expected.insert((tenant, append.stream), append.events[0].bytes.clone());
            }
            requests.push(request(tenant, appends, None));
        }
    }
    let mut in_flight = JoinSet::new();
    for request in requests {
        if in_flight.len() >= MANY_STREAMS_CONCURRENCY {
            let done = in_flight.join_next().await.expect("tasks in flight");
            expect_joined_ok(done, check);
        }
        let store = store.clone();
        in_flight.spawn(async move { store.append(request).await });
    }
    while let Some(done) = in_flight.join_next().await {
        expect_joined_ok(done, check);
    }

    for &tenant in &tenants {
        for n in 0..per_tenant {
            let stream = stream_of(n);
            let records = store
                .read_stream(tenant, stream, StreamVersion::NONE, READ_PAGE_RECORDS_MAX)
                .await
                .expect("read_stream");
            assert_eq!(
                records.iter().map(|r| &r.bytes).collect::<Vec<_>>(),
                vec![&expected[&(tenant, stream)]],
                "{check}: stream {stream} of {tenant} must hold exactly its own event"
            );
        }
    }
}

/// A receiver from `follow` reaches the last committed position soon after
/// the commit, and never goes backwards; `head` is there as soon as an
/// append is acknowledged.
pub async fn follow_reaches_head<S: CommitLog + Clone>(store: &S) {
    let check = "follow_reaches_head";
    let tenant = unique_tenant("follow");
    let mut follower = store.follow();
    let mut writers = JoinSet::new();
    for stream in [vendor("f1"), credit("f2")] {
        let store = store.clone();
        writers.spawn(async move {
            let mut last = Position::ZERO;
            for n in 0..FOLLOW_APPENDS {
                let append = stream_append(tenant, stream, v(n), 1);
                store
                    .append(request(tenant, vec![append], None))
                    .await
                    .unwrap_or_else(|e| panic!("{check}: append failed: {e:?}"));
                let head = store.head();
                assert!(head > last, "{check}: the head did not move past {last}");
                last = head;
            }
            last
        });
    }
    let mut target = Position::ZERO;
    while let Some(joined) = writers.join_next().await {
        target = target.max(joined.expect("a writer panicked"));
    }

    let mut seen = *follower.borrow_and_update();
    tokio::time::timeout(FOLLOW_WAIT, async {
        while seen < target {
            follower
                .changed()
                .await
                .unwrap_or_else(|_| panic!("{check}: follow's sender closed"));
            let now = *follower.borrow_and_update();
            assert!(
                now >= seen,
                "{check}: follow went back from {seen} to {now}"
            );
            seen = now;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{check}: follow stayed at {seen}, short of {target}"));

    let mut late = store.follow();
    tokio::time::timeout(FOLLOW_WAIT, late.wait_for(|p| *p >= target))
        .await
        .unwrap_or_else(|_| panic!("{check}: a new follower never reached {target}"))
        .unwrap_or_else(|_| panic!("{check}: follow's sender closed"));
    assert!(store.head() >= target, "{check}: the head went back");
}

/// Requests breaking the shape rules are refused as `Invalid` and write
/// nothing: no event, under no tenant, and no idempotency key.
pub async fn invalid_requests<S: EventStore>(store: &S) {
    let check = "invalid_requests";
    let tenant = unique_tenant("invalid");
    let other = unique_tenant("invalid-other");
    let (b, c) = (credit("b"), vendor("c"));
    let many = vendors(APPEND_STREAMS_MAX + 1);
    let mut cases = misaddressed_cases(tenant, other, b, c);
    cases.extend(out_of_bounds_cases(tenant, b, c, &many));
    for (n, (case, mut invalid)) in cases.into_iter().enumerate() {
        let key = key(&format!("invalid-{n}"));
        if !invalid.streams.is_empty() {
            invalid.idempotency = Some(idempotency(&key, 1));
        }
        expect_invalid(store.append(invalid).await, check, case);
        assert!(
            key_record(store, tenant, &key).await.is_none(),
            "{check}: an invalid request ({case}) stored its idempotency key"
        );
    }

    let mut untouched = vec![(b, 0), (c, 0)];
    untouched.extend(many.iter().map(|&s| (s, 0)));
    assert_wrote_nothing(store, check, tenant, &untouched, None).await;
    // The events sealed for the other tenant went nowhere either.
    assert_wrote_nothing(store, check, other, &untouched, None).await;
}

/// A request whose idempotency record is too large is refused as
/// `Invalid`; and shape comes first: a stored key does not turn an invalid
/// request into a replay. Neither writes anything.
pub async fn invalid_keyed_requests<S: EventStore>(store: &S) {
    let check = "invalid_keyed_requests";
    let tenant = unique_tenant("invalid-key");
    let (a, b) = (vendor("a"), credit("b"));
    let seed_key = key("seeded");
    append_ok(
        store,
        request(
            tenant,
            vec![stream_append(tenant, a, StreamVersion::NONE, 1)],
            Some(idempotency(&seed_key, 1)),
        ),
        check,
    )
    .await;
    let oversized = request(
        tenant,
        vec![stream_append(tenant, b, StreamVersion::NONE, 1)],
        Some(IdempotencyWrite {
            key: key("oversized"),
            request_hash: [1; 32],
            response: vec![b'x'; IDEMPOTENCY_RESPONSE_BYTES_MAX + 1],
        }),
    );
    expect_invalid(store.append(oversized).await, check, "response too large");
    let invalid_replay = request(
        tenant,
        vec![
            stream_append(tenant, b, StreamVersion::NONE, 1),
            stream_append(tenant, b, v(1), 1),
        ],
        Some(idempotency(&seed_key, 2)),
    );
    expect_invalid(
        store.append(invalid_replay).await,
        check,
        "a stream twice, under a stored key",
    );
    let untouched = [(a, 1), (b, 0)];
    let oversized_key = key("oversized");
    assert_wrote_nothing(store, check, tenant, &untouched, Some(&oversized_key)).await;
}

/// Right at the limits, requests pass: the most events on one stream with
/// the largest response, and the most streams.
pub async fn requests_at_the_limits<S: EventStore>(store: &S) {
    let check = "requests_at_the_limits";
    let tenant = unique_tenant("limits");
    let b = credit("b");
    let full = request(
        tenant,
        vec![stream_append(
            tenant,
            b,
            StreamVersion::NONE,
            APPEND_EVENTS_MAX,
        )],
        Some(IdempotencyWrite {
            key: key("at-the-limits"),
            request_hash: [2; 32],
            response: vec![b'x'; IDEMPOTENCY_RESPONSE_BYTES_MAX],
        }),
    );
    append_ok(store, full, check).await;
    let widest = request(
        tenant,
        vendors(APPEND_STREAMS_MAX)
            .into_iter()
            .map(|s| stream_append(tenant, s, StreamVersion::NONE, 1))
            .collect(),
        None,
    );
    append_ok(store, widest, check).await;
    assert_stream_len(store, check, tenant, b, APPEND_EVENTS_MAX).await;
}

/// Invalid requests whose events do not fit where they are sent: sealed
/// for another tenant or stream, or at versions that do not follow on.
fn misaddressed_cases(
    tenant: TenantId,
    other: TenantId,
    b: StreamId,
    c: StreamId,
) -> Vec<(&'static str, AppendRequest)> {
    let mut gap = stream_append(tenant, b, StreamVersion::NONE, 3);
    gap.events.remove(1);
    vec![
        (
            "events sealed for another tenant",
            request(
                tenant,
                vec![stream_append(other, b, StreamVersion::NONE, 1)],
                None,
            ),
        ),
        (
            "events sealed for another stream",
            request(
                tenant,
                vec![StreamAppend {
                    stream: b,
                    ..stream_append(tenant, c, StreamVersion::NONE, 1)
                }],
                None,
            ),
        ),
        (
            "versions not starting at expected + 1",
            request(
                tenant,
                vec![StreamAppend {
                    expected: StreamVersion::NONE,
                    ..stream_append(tenant, b, v(1), 1)
                }],
                None,
            ),
        ),
        ("versions with a gap", request(tenant, vec![gap], None)),
        (
            "a stream twice",
            request(
                tenant,
                vec![
                    stream_append(tenant, b, StreamVersion::NONE, 1),
                    stream_append(tenant, b, v(1), 1),
                ],
                None,
            ),
        ),
    ]
}

/// Invalid requests past the shape's bounds: empty, or with too many
/// events, too large an event, or too many streams (`many`).
fn out_of_bounds_cases(
    tenant: TenantId,
    b: StreamId,
    c: StreamId,
    many: &[StreamId],
) -> Vec<(&'static str, AppendRequest)> {
    let mut oversized_event = stream_append(tenant, b, StreamVersion::NONE, 1);
    oversized_event.events[0]
        .bytes
        .resize(ledger_core::limits::EVENT_BYTES_MAX + 1, 0);
    let half_and_one = APPEND_EVENTS_MAX / 2 + 1;
    vec![
        (
            "neither events nor an idempotency record",
            request(tenant, Vec::new(), None),
        ),
        (
            "a stream without events",
            request(
                tenant,
                vec![StreamAppend {
                    stream: b,
                    expected: StreamVersion::NONE,
                    events: Vec::new(),
                }],
                None,
            ),
        ),
        (
            "too many events on one stream",
            request(
                tenant,
                vec![stream_append(
                    tenant,
                    b,
                    StreamVersion::NONE,
                    APPEND_EVENTS_MAX + 1,
                )],
                None,
            ),
        ),
        (
            "too many events over two streams",
            request(
                tenant,
                vec![
                    stream_append(tenant, b, StreamVersion::NONE, half_and_one),
                    stream_append(tenant, c, StreamVersion::NONE, half_and_one),
                ],
                None,
            ),
        ),
        (
            "an event's bytes past the codec's bound",
            request(tenant, vec![oversized_event], None),
        ),
        (
            "too many streams",
            request(
                tenant,
                many.iter()
                    .map(|&s| stream_append(tenant, s, StreamVersion::NONE, 1))
                    .collect(),
                None,
            ),
        ),
    ]
}

/// A checkpoint saves and loads, a save replaces it whole, and a save at a
/// lower position never moves it back.
pub async fn checkpoints<S: CheckpointStore>(store: &S) {
    let check = "checkpoints";
    let name = format!("{}-balances", unique_tenant("checkpoint"));
    assert_eq!(
        load(store, check, &name).await,
        None,
        "{check}: a new name has no checkpoint"
    );
    let one = Checkpoint {
        position: Position(5),
        state: b"state at five".to_vec(),
    };
    save(store, check, &name, one.clone()).await;
    assert_eq!(
        load(store, check, &name).await,
        Some(one),
        "{check}: load must return what was saved"
    );
    let two = Checkpoint {
        position: Position(9),
        state: Vec::new(),
    };
    save(store, check, &name, two.clone()).await;
    assert_eq!(
        load(store, check, &name).await,
        Some(two.clone()),
        "{check}: a save must replace the checkpoint whole"
    );
    let stale = Checkpoint {
        position: Position(7),
        state: b"a stale projector's state".to_vec(),
    };
    save(store, check, &name, stale).await;
    assert_eq!(
        load(store, check, &name).await,
        Some(two),
        "{check}: a save at a lower position must not move the checkpoint back"
    );
}

/// Each name holds a checkpoint of its own, however large: saving one
/// leaves another as it was.
pub async fn checkpoint_names<S: CheckpointStore>(store: &S) {
    let check = "checkpoint_names";
    let tenant = unique_tenant("checkpoint-names");
    let first = format!("{tenant}-balances");
    let second = format!("{tenant}-orders");
    let saved = Checkpoint {
        position: Position(9),
        state: Vec::new(),
    };
    save(store, check, &first, saved.clone()).await;

    assert_eq!(
        load(store, check, &second).await,
        None,
        "{check}: names are independent"
    );
    let large = Checkpoint {
        position: Position(u64::from(u32::MAX) + 1),
        state: (0..LARGE_CHECKPOINT_BYTES)
            .map(|i| (i % 251) as u8)
            .collect(),
    };
    save(store, check, &second, large.clone()).await;
    assert_eq!(
        load(store, check, &second).await,
        Some(large),
        "{check}: a large state must come back byte for byte"
    );
    assert_eq!(
        load(store, check, &first).await,
        Some(saved),
        "{check}: saving one name must not touch another"
    );
}

// ---------------------------------------------------------------------------
// Fixtures.

/// A tenant id no other check, run, or process has used: the check's name
/// and a mix of the clock, the process and a counter.
pub fn unique_tenant(check: &str) -> TenantId {
    static MINTED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let salt = (nanos ^ (u64::from(std::process::id()) << 24)) & TENANT_SALT_MASK;
    let prefix = &check[..check.len().min(TENANT_PREFIX_LEN_MAX)];
    let n = MINTED.fetch_add(1, Ordering::Relaxed);
    TenantId::new(&format!("{prefix}-{salt:012x}-{n:x}"))
}

/// `count` events sealed for `tenant` and `stream` at the versions after
/// `expected`. Each call mints new event ids, so two calls never produce the
/// same bytes. Chain links are not the store's concern: each call starts
/// its chain at [`Hash::GENESIS`].
///
/// # Panics
/// For an `order` stream: its events carry money, which the store's fixtures
/// have no use for.
pub fn stream_append(
    tenant: TenantId,
    stream: StreamId,
    expected: StreamVersion,
    count: usize,
) -> StreamAppend {
    static MINTED: AtomicU64 = AtomicU64::new(1);
    let command_id = CommandId::from_u128(u128::from(MINTED.fetch_add(1, Ordering::Relaxed)));
    let mut prev_hash = Hash::GENESIS;
    let mut version = expected;
    let events = (0..count)
        .map(|_| {
            version = version.next();
            let header = Header {
                event_id: EventId::from_u128(u128::from(MINTED.fetch_add(1, Ordering::Relaxed))),
                tenant_id: tenant,
                stream,
                version,
                occurred_at: Timestamp::from_micros(FIXTURE_TIME_MICROS),
                recorded_at: Timestamp::from_micros(FIXTURE_TIME_MICROS),
                command_id,
                actor: Actor {
                    user_id: UserId::new("conformance"),
                    role: Role::Service,
                },
            };
            let sealed = codec::seal(header, fixture_event(stream.kind()), prev_hash)
                .expect("fixture events seal");
            prev_hash = sealed.envelope.hash;
            sealed
        })
        .collect::<Vec<Sealed>>();
    StreamAppend {
        stream,
        expected,
        events,
    }
}

/// 2026-01-01T00:00:00Z.
const FIXTURE_TIME_MICROS: i64 = 1_767_225_600_000_000;

fn fixture_event(kind: StreamKind) -> Event {
    match kind {
        StreamKind::Tenant => Event::TenantConfigured(TenantConfigured {
            currency: Currency::new("EUR"),
            time_zone: TimeZone::new("Europe/Paris"),
        }),
        StreamKind::Vendor => Event::VendorRegistered(VendorRegistered {
            name: Name::new("Conformance vendor"),
            commission_rate: CommissionRate::from_basis_points(1_000).expect("10 % is a rate"),
        }),
        StreamKind::Credit => Event::CreditAccountSuspended(CreditAccountSuspended {
            reason: Reason::new("conformance"),
        }),
        StreamKind::Order => panic!("the conformance fixtures write no order streams"),
    }
}

fn request(
    tenant: TenantId,
    streams: Vec<StreamAppend>,
    idempotency: Option<IdempotencyWrite>,
) -> AppendRequest {
    AppendRequest {
        heads: Vec::new(),
        tenant_id: tenant,
        streams,
        idempotency,
    }
}

fn idempotency(key: &IdempotencyKey, seed: u8) -> IdempotencyWrite {
    IdempotencyWrite {
        key: key.clone(),
        request_hash: [seed; 32],
        response: format!("response {seed}").into_bytes(),
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("fixture keys are valid")
}

fn v(version: u64) -> StreamVersion {
    StreamVersion::new(version)
}

fn vendor(id: &str) -> StreamId {
    StreamId::parse(&format!("vendor/{id}")).expect("fixture stream ids are valid")
}

/// `count` vendor streams, `vendor/m0` on.
fn vendors(count: usize) -> Vec<StreamId> {
    (0..count).map(|n| vendor(&format!("m{n}"))).collect()
}

fn credit(id: &str) -> StreamId {
    StreamId::parse(&format!("credit/{id}")).expect("fixture stream ids are valid")
}

fn tenant_stream(tenant: TenantId) -> StreamId {
    StreamId::tenant(tenant)
}

// ---------------------------------------------------------------------------
// Assertions. A panic inside an async fn reports the assertion's line, so
// every message names its check.

async fn append_ok<S: EventStore>(store: &S, request: AppendRequest, check: &str) {
    store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{check}: a valid append failed: {e:?}"))
}

fn expect_joined_ok(joined: Result<Result<(), AppendError>, tokio::task::JoinError>, check: &str) {
    match joined {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("{check}: a valid append failed: {e:?}"),
        Err(e) => panic!("{check}: an appending task failed: {e}"),
    }
}

fn expect_conflict(
    result: Result<(), AppendError>,
    stream: StreamId,
    expected: StreamVersion,
    actual: StreamVersion,
    check: &str,
) {
    match result {
        Err(AppendError::VersionConflict {
            stream: named,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (named, e, a),
            (stream, expected, actual),
            "{check}: the conflict must name the stream, its expected and its actual version"
        ),
        other => panic!(
            "{check}: expected a version conflict on {stream} \
             (expected {expected}, actual {actual}), got {other:?}"
        ),
    }
}

/// Appends `request` under a key already stored, as `stored`: the store
/// MUST answer with the stored record (`why` says which rule that is),
/// write nothing (`streams` keep their lengths) and leave the record as it
/// was.
async fn assert_answered_from_key<S: EventStore>(
    store: &S,
    check: &str,
    (request, streams): (AppendRequest, &[(StreamId, usize)]),
    stored: &IdempotencyRecord,
    why: &str,
) {
    let tenant = request.tenant_id;
    let key = request
        .idempotency
        .as_ref()
        .map(|i| i.key.clone())
        .expect("a keyed request");
    let replay = expect_key_exists(store.append(request).await, check);
    assert_eq!(&replay, stored, "{check}: {why}");
    assert_wrote_nothing(store, check, tenant, streams, None).await;
    assert_eq!(
        key_record(store, tenant, &key).await.as_ref(),
        Some(stored),
        "{check}: a replay must not change the stored record"
    );
}

fn expect_key_exists(result: Result<(), AppendError>, check: &str) -> IdempotencyRecord {
    match result {
        Err(AppendError::KeyExists(record)) => *record,
        other => panic!("{check}: expected KeyExists, got {other:?}"),
    }
}

fn expect_invalid(result: Result<(), AppendError>, check: &str, case: &str) {
    match result {
        Err(AppendError::Invalid(_)) => {}
        other => panic!("{check}: expected Invalid for {case}, got {other:?}"),
    }
}

async fn assert_stream_len<S: EventStore>(
    store: &S,
    check: &str,
    tenant: TenantId,
    stream: StreamId,
    len: usize,
) {
    let records = read_stream_all(store, tenant, stream, StreamVersion::NONE)
        .await
        .expect("read_stream_all");
    assert_eq!(
        records.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=len as u64).map(v).collect::<Vec<_>>(),
        "{check}: stream {stream} must hold versions 1..={len}"
    );
}

/// That a refused request left no trace: its streams (every stream it
/// named) hold what they held, and its key (if given) is absent.
async fn assert_wrote_nothing<S: EventStore>(
    store: &S,
    check: &str,
    tenant: TenantId,
    streams: &[(StreamId, usize)],
    absent_key: Option<&IdempotencyKey>,
) {
    for &(stream, len) in streams {
        assert_stream_len(store, check, tenant, stream, len).await;
    }
    if let Some(key) = absent_key {
        assert!(
            store
                .idempotency(tenant, key)
                .await
                .expect("idempotency read")
                .is_none(),
            "{check}: a refused append stored its idempotency key {}",
            key.as_str()
        );
    }
}

/// The tenant's records in the log after `after`, up to the head as of the
/// call.
async fn tenant_records_after<S: CommitLog>(
    store: &S,
    tenant: TenantId,
    after: Position,
) -> Vec<LogRecord> {
    let end = store.head();
    let mut out = Vec::new();
    let mut cursor = after;
    while cursor < end {
        let page = store
            .read_log(cursor, READ_PAGE_RECORDS_MAX)
            .await
            .expect("read_log");
        let Some(last) = page.last() else { break };
        assert!(
            last.position > cursor,
            "read_log returned a record at or before `after`"
        );
        cursor = last.position;
        out.extend(page.into_iter().filter(|r| r.record.tenant_id == tenant));
    }
    out
}

/// The key's record, if it is stored.
async fn key_record<S: EventStore>(
    store: &S,
    tenant: TenantId,
    key: &IdempotencyKey,
) -> Option<IdempotencyRecord> {
    store
        .idempotency(tenant, key)
        .await
        .expect("idempotency read")
}

/// The key's record, which must be stored (else the check fails saying
/// `missing`).
async fn stored_record<S: EventStore>(
    store: &S,
    check: &str,
    tenant: TenantId,
    key: &IdempotencyKey,
    missing: &str,
) -> IdempotencyRecord {
    key_record(store, tenant, key)
        .await
        .unwrap_or_else(|| panic!("{check}: {missing}"))
}

async fn load<S: CheckpointStore>(store: &S, check: &str, name: &str) -> Option<Checkpoint> {
    store
        .load_checkpoint(name)
        .await
        .unwrap_or_else(|e| panic!("{check}: load_checkpoint failed: {e}"))
}

async fn save<S: CheckpointStore>(store: &S, check: &str, name: &str, checkpoint: Checkpoint) {
    store
        .save_checkpoint(name, checkpoint)
        .await
        .unwrap_or_else(|e| panic!("{check}: save_checkpoint failed: {e}"));
}
