//! The heads part of the contract: heads ride with their stream's events,
//! are judged by their tags, never run ahead of their streams, and a
//! refused head writes nothing.

use ledger_core::id::{StreamId, StreamVersion, TenantId};
use tokio::task::JoinSet;

use super::{
    append_ok, assert_stream_len, credit, expect_invalid, idempotency, key, key_record, request,
    stream_append, unique_tenant, v, vendor,
};
use crate::{
    AppendError, AppendRequest, EventStore, HEAD_BYTES_MAX, HeadWrite, StoredHead, StreamAppend,
};

/// Tasks racing for each head in [`concurrent_heads`].
pub const HEAD_RACERS: usize = 8;
/// Heads raced for in [`concurrent_heads`].
pub const HEAD_RACE_ROUNDS: u64 = 4;

/// A head with bytes that say which write stored it.
fn head(stream: StreamId, expected_etag: u64, version: u64, mark: &str) -> HeadWrite {
    HeadWrite {
        stream,
        expected_etag,
        version: v(version),
        bytes: format!("head of {stream} at {version}: {mark}").into_bytes(),
    }
}

fn with_heads(
    tenant: TenantId,
    streams: Vec<StreamAppend>,
    heads: Vec<HeadWrite>,
) -> AppendRequest {
    AppendRequest {
        heads,
        ..request(tenant, streams, None)
    }
}

async fn heads_of<S: EventStore>(
    store: &S,
    tenant: TenantId,
    streams: &[StreamId],
) -> Vec<Option<StoredHead>> {
    store
        .load_heads(tenant, streams)
        .await
        .unwrap_or_else(|e| panic!("loading heads failed: {e:?}"))
}

fn stored(write: &HeadWrite) -> StoredHead {
    StoredHead {
        version: write.version,
        etag: write.expected_etag + 1,
        bytes: write.bytes.clone(),
    }
}

fn expect_head_conflict(
    result: Result<(), AppendError>,
    stream: StreamId,
    expected: u64,
    actual: u64,
    check: &str,
) {
    match result {
        Err(AppendError::HeadConflict {
            stream: named,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (named, e, a),
            (stream, expected, actual),
            "{check}: a head conflict must name the stream, the tag expected and the tag stored"
        ),
        other => panic!("{check}: expected a head conflict on {stream}, got {other:?}"),
    }
}

/// Heads written with their streams' events load back in the order asked,
/// each with its next tag; a stream whose head was never written loads as
/// `None`, and so does the same stream of another tenant.
pub async fn heads_ride_with_events<S: EventStore>(store: &S) {
    let check = "heads_ride_with_events";
    let tenant = unique_tenant("heads");
    let other = unique_tenant("heads-other");
    let (a, b, never) = (vendor("a"), credit("b"), credit("never"));
    let first = [head(a, 0, 2, "first"), head(b, 0, 1, "first")];
    let appended = with_heads(
        tenant,
        vec![
            stream_append(tenant, a, StreamVersion::NONE, 2),
            stream_append(tenant, b, StreamVersion::NONE, 1),
        ],
        first.to_vec(),
    );
    append_ok(store, appended, check).await;
    assert_eq!(
        heads_of(store, tenant, &[b, never, a]).await,
        vec![Some(stored(&first[1])), None, Some(stored(&first[0]))],
        "{check}: heads must load as written, in the order asked"
    );
    assert_eq!(
        heads_of(store, other, &[a, b]).await,
        vec![None, None],
        "{check}: a head must not be seen by another tenant"
    );

    let next = head(a, 1, 3, "second");
    let appended = with_heads(
        tenant,
        vec![stream_append(tenant, a, v(2), 1)],
        vec![next.clone()],
    );
    append_ok(store, appended, check).await;
    assert_eq!(
        heads_of(store, tenant, &[a]).await,
        vec![Some(stored(&next))],
        "{check}: a head written again must take the next tag"
    );
    assert_stream_len(store, check, tenant, a, 3).await;
}

/// A head whose stored tag moved, or that is stored where the request
/// expects none, is refused naming the stream and both tags: none of the
/// request (events, other heads, its key) is written.
pub async fn stale_heads_write_nothing<S: EventStore>(store: &S) {
    let check = "stale_heads_write_nothing";
    let tenant = unique_tenant("stale-head");
    let (a, b) = (vendor("a"), credit("b"));
    let first = head(a, 0, 1, "first");
    let appended = with_heads(
        tenant,
        vec![stream_append(tenant, a, StreamVersion::NONE, 1)],
        vec![first],
    );
    append_ok(store, appended, check).await;
    let moved = head(a, 1, 2, "moved");
    let appended = with_heads(
        tenant,
        vec![stream_append(tenant, a, v(1), 1)],
        vec![moved.clone()],
    );
    append_ok(store, appended, check).await;

    let key = key("stale-head");
    for (case, expected_etag) in [
        ("a stale tag", 1),
        ("no head expected", 0),
        ("a future tag", 9),
    ] {
        let mut stale = with_heads(
            tenant,
            vec![
                stream_append(tenant, b, StreamVersion::NONE, 1),
                stream_append(tenant, a, v(2), 1),
            ],
            vec![head(b, 0, 1, case), head(a, expected_etag, 3, case)],
        );
        stale.idempotency = Some(idempotency(&key, 1));
        expect_head_conflict(store.append(stale).await, a, expected_etag, 2, check);
    }
    assert_stream_len(store, check, tenant, a, 2).await;
    assert_stream_len(store, check, tenant, b, 0).await;
    assert_eq!(
        heads_of(store, tenant, &[a, b]).await,
        vec![Some(stored(&moved)), None],
        "{check}: a refused request must leave every head as it was"
    );
    assert!(
        key_record(store, tenant, &key).await.is_none(),
        "{check}: a refused request stored its idempotency key"
    );
}

/// A head may be written without events of its stream (a head rebuilt from
/// its stream), at any version the stream has reached, never beyond; and
/// the head stored for a stream appended to must be at the version the
/// append expects.
pub async fn heads_alone<S: EventStore>(store: &S) {
    let check = "heads_alone";
    let tenant = unique_tenant("head-alone");
    let (a, fresh) = (vendor("a"), credit("fresh"));
    append_ok(
        store,
        request(
            tenant,
            vec![stream_append(tenant, a, StreamVersion::NONE, 2)],
            None,
        ),
        check,
    )
    .await;

    let ahead = head(a, 0, 3, "ahead");
    expect_head_conflict(
        store.append(with_heads(tenant, vec![], vec![ahead])).await,
        a,
        0,
        0,
        check,
    );
    assert_eq!(
        heads_of(store, tenant, &[a]).await,
        vec![None],
        "{check}: a head ahead of its stream was stored"
    );

    let behind = head(a, 0, 1, "behind");
    append_ok(
        store,
        with_heads(tenant, vec![], vec![behind.clone()]),
        check,
    )
    .await;
    let empty = head(fresh, 0, 0, "empty");
    append_ok(
        store,
        with_heads(tenant, vec![], vec![empty.clone()]),
        check,
    )
    .await;
    assert_eq!(
        heads_of(store, tenant, &[a, fresh]).await,
        vec![Some(stored(&behind)), Some(stored(&empty))],
        "{check}: heads written alone must be stored"
    );
    assert_stream_len(store, check, tenant, a, 2).await;

    // The stored head is at 1, the stream at 2: extending the stream with
    // that head would decide on a state the stream has left.
    let misplaced = with_heads(
        tenant,
        vec![stream_append(tenant, a, v(2), 1)],
        vec![head(a, 1, 3, "misplaced")],
    );
    match store.append(misplaced).await {
        Err(AppendError::HeadConflict { stream, .. }) => {
            assert_eq!(stream, a, "{check}: the conflict must name the stream");
        }
        other => panic!(
            "{check}: a head stored behind the expected version must conflict, got {other:?}"
        ),
    }
    assert_stream_len(store, check, tenant, a, 2).await;

    let repaired = head(a, 1, 2, "repaired");
    append_ok(store, with_heads(tenant, vec![], vec![repaired]), check).await;
    let next = head(a, 2, 3, "next");
    let appended = with_heads(
        tenant,
        vec![stream_append(tenant, a, v(2), 1)],
        vec![next.clone()],
    );
    append_ok(store, appended, check).await;
    assert_eq!(
        heads_of(store, tenant, &[a]).await,
        vec![Some(stored(&next))],
        "{check}: the head after repair"
    );
}

/// Racers that read the same head and append with it: exactly one wins
/// each round, the others are refused, and the stream holds one event per
/// round with the winner's head.
pub async fn concurrent_heads<S: EventStore + Clone>(store: &S) {
    let check = "concurrent_heads";
    let tenant = unique_tenant("race-head");
    let stream = credit("raced");
    for round in 0..HEAD_RACE_ROUNDS {
        let mut racers = JoinSet::new();
        for racer in 0..HEAD_RACERS {
            let store = store.clone();
            racers.spawn(async move {
                let mark = format!("round {round} racer {racer}");
                let write = head(stream, round, round + 1, &mark);
                let appended = with_heads(
                    tenant,
                    vec![stream_append(tenant, stream, v(round), 1)],
                    vec![write.clone()],
                );
                (store.append(appended).await, write)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = racers.join_next().await {
            match joined.expect("a racing task panicked") {
                (Ok(_), write) => winners.push(write),
                (
                    Err(AppendError::HeadConflict { .. } | AppendError::VersionConflict { .. }),
                    _,
                ) => {}
                (Err(e), _) => panic!("{check}: a racer failed: {e:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{check}: round {round} must have exactly one winner"
        );
        assert_eq!(
            heads_of(store, tenant, &[stream]).await,
            vec![Some(stored(&winners[0]))],
            "{check}: the stored head must be the winner's"
        );
    }
    assert_stream_len(store, check, tenant, stream, HEAD_RACE_ROUNDS as usize).await;
}

/// Heads breaking the shape rules are refused as `Invalid` and write
/// nothing.
pub async fn invalid_heads<S: EventStore>(store: &S) {
    let check = "invalid_heads";
    let tenant = unique_tenant("invalid-head");
    let (a, b) = (vendor("a"), credit("b"));
    let append = || vec![stream_append(tenant, a, StreamVersion::NONE, 1)];
    let mut oversized = head(a, 0, 1, "big");
    oversized.bytes = vec![7; HEAD_BYTES_MAX + 1];
    let cases = [
        (
            "a head twice",
            with_heads(
                tenant,
                append(),
                vec![head(a, 0, 1, "x"), head(a, 0, 1, "y")],
            ),
        ),
        (
            "a head at another version than its stream's new one",
            with_heads(tenant, append(), vec![head(a, 0, 2, "x")]),
        ),
        (
            "a head past the bound",
            with_heads(tenant, append(), vec![oversized]),
        ),
        ("nothing at all", with_heads(tenant, vec![], vec![])),
    ];
    for (case, invalid) in cases {
        expect_invalid(store.append(invalid).await, check, case);
    }
    assert_stream_len(store, check, tenant, a, 0).await;
    assert_eq!(
        heads_of(store, tenant, &[a, b]).await,
        vec![None, None],
        "{check}: an invalid request stored a head"
    );
}

/// Every tenant whose settings stream has a head is listed once, paging
/// with the last tenant of each page; a tenant with heads on other streams
/// only is not. Other checks' tenants may be listed too.
pub async fn tenants_listed<S: EventStore>(store: &S) {
    let check = "tenants_listed";
    let listed: Vec<TenantId> = (0..3)
        .map(|i| unique_tenant(&format!("tenants-{i}")))
        .collect();
    for &tenant in &listed {
        let settings = StreamId::tenant(tenant);
        let appended = with_heads(
            tenant,
            vec![stream_append(tenant, settings, StreamVersion::NONE, 1)],
            vec![head(settings, 0, 1, "settings")],
        );
        append_ok(store, appended, check).await;
    }
    let unlisted = unique_tenant("tenants-none");
    let appended = with_heads(
        unlisted,
        vec![stream_append(unlisted, vendor("a"), StreamVersion::NONE, 1)],
        vec![head(vendor("a"), 0, 1, "vendor only")],
    );
    append_ok(store, appended, check).await;

    let mut seen: Vec<TenantId> = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .tenants(after, 2)
            .await
            .unwrap_or_else(|e| panic!("{check}: listing tenants failed: {e:?}"));
        assert!(page.len() <= 2, "{check}: a page must hold at most `limit`");
        let Some(&last) = page.last() else { break };
        seen.extend(page);
        after = Some(last);
    }
    for tenant in &listed {
        let times = seen.iter().filter(|t| *t == tenant).count();
        assert_eq!(times, 1, "{check}: {tenant} must be listed exactly once");
    }
    assert!(
        !seen.contains(&unlisted),
        "{check}: a tenant without a settings head must not be listed"
    );
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seen.len(),
        "{check}: no tenant may be listed twice"
    );
}
