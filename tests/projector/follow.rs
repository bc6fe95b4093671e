//! The stream projector following the embedded store's log into the SQLite
//! read-model table: caught up, it equals the fold of the log from
//! scratch; stopped after any page and resumed from its checkpoint (a
//! process that died), it still does, with no sum counted twice; and a
//! table that fails for a while only delays it.

use ledger_core::codec;
use ledger_store::sqlite::{SqliteStore, SqliteViews, views_path};
use ledger_store::views::{MemoryTable, ViewTable};
use ledger_store::{AppendRequest, CommitLog, EventStore, StreamAppend};
use projector::follow::ViewFollower;

use crate::history::{Log, LogShape, generate};
use crate::oracle::assert_converged;

/// Two tenants' interleaved logs, appended one event per append.
async fn store_with(log: &Log, dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("ledger.db")).expect("the store opens");
    for logged in &log.events {
        let envelope = codec::decode(&logged.bytes).expect("valid records");
        store
            .append(AppendRequest {
                tenant_id: envelope.tenant_id(),
                streams: vec![StreamAppend {
                    stream: envelope.stream(),
                    expected: ledger_core::StreamVersion::new(logged.version - 1),
                    events: vec![codec::Sealed {
                        envelope,
                        bytes: logged.bytes.clone(),
                    }],
                }],
                heads: Vec::new(),
                idempotency: None,
            })
            .await
            .expect("the append lands");
    }
    store
}

fn shape(seed: u64) -> LogShape {
    LogShape {
        seed,
        tenants: 2,
        ..LogShape::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_caught_up_equals_a_fresh_fold() {
    let log = generate(&shape(3));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store_with(&log, dir.path()).await;
    let table = SqliteViews::open(&views_path(&dir.path().join("ledger.db"))).expect("views");
    let mut follower = ViewFollower::resume(store.clone(), table.clone(), store.clone())
        .await
        .expect("resume");
    let folded = follower.catch_up().await.expect("catch up");
    assert_eq!(folded, log.events.len());
    assert_eq!(follower.position().borrow().0, store.head().0);
    let state = table.scan().await.expect("scan");
    assert_converged(&state, &log.envelopes()).expect("the fresh fold");
    assert_eq!(follower.catch_up().await.expect("again"), 0, "nothing more");

    // A crash after a page's writes and before its checkpoint refolds the
    // page; at worst, a lost checkpoint refolds the whole log onto the
    // full table. Every record is then a duplicate at its gate.
    let lost = SqliteStore::open(&dir.path().join("lost-checkpoints")).expect("checkpoints");
    let mut again = ViewFollower::resume(store.clone(), table.clone(), lost)
        .await
        .expect("resume");
    assert_eq!(again.position().borrow().0, 0);
    assert_eq!(again.catch_up().await.expect("refold"), log.events.len());
    assert_eq!(
        table.scan().await.expect("scan"),
        state,
        "nothing counted twice"
    );
}

/// A follower stopped after `k` pages (its process died: nothing but the
/// table and the checkpoint survive) and resumed converges, for every `k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumed_after_any_page_converges() {
    let log = generate(&shape(5));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store_with(&log, dir.path()).await;
    let pages = log.events.len().div_ceil(7);
    for k in [0, 1, pages / 2, pages - 1] {
        let table = SqliteViews::open(&dir.path().join(format!("views-{k}"))).expect("views");
        let checkpoints =
            SqliteStore::open(&dir.path().join(format!("checkpoints-{k}"))).expect("checkpoints");
        let mut first = ViewFollower::resume(store.clone(), table.clone(), checkpoints.clone())
            .await
            .expect("resume")
            .with_page(7);
        for _ in 0..k {
            first.step().await.expect("a page");
        }
        let stopped_at = first.position().borrow().0;
        drop(first);
        let mut second = ViewFollower::resume(store.clone(), table.clone(), checkpoints)
            .await
            .expect("resume")
            .with_page(7);
        assert_eq!(
            second.position().borrow().0,
            stopped_at,
            "k={k}: resumed where the checkpoint says"
        );
        second.catch_up().await.expect("catch up");
        let state = table.scan().await.expect("scan");
        assert_converged(&state, &log.envelopes()).unwrap_or_else(|e| panic!("k={k}: {e}"));
    }
}

/// A table that fails every operation for a while: the follower keeps
/// handing the page over, and once the table recovers it converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_only_delays_the_follower() {
    let log = generate(&shape(9));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store_with(&log, dir.path()).await;
    let table = std::sync::Arc::new(MemoryTable::new());
    table.crash_after(3);
    let healer = {
        let table = table.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            table.recover();
        })
    };
    let mut follower = ViewFollower::resume(store.clone(), table.clone(), store.clone())
        .await
        .expect("resume")
        .with_page(11);
    follower.catch_up().await.expect("catch up");
    healer.await.expect("healer");
    assert_converged(&table.snapshot(), &log.envelopes()).expect("the fresh fold");
}

/// What the API will answer from the port equals what the in-memory fold
/// answers: every page of every order listing (tenant-wide and per
/// vendor), every credit account, and dashboards by day, week and month
/// assembled from the stored sums, for each tenant and vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_through_the_port_answer_what_the_fold_answers() {
    use ledger_core::projection::ReadModels;
    use ledger_core::projection::credit::CreditView;
    use ledger_core::projection::dashboard::{Dashboard, DashboardQuery, Granularity};
    use ledger_core::projection::orders::{OrderListQuery, OrderView};
    use ledger_core::{LocalDate, Timestamp};
    use ledger_store::views::DayRange;

    let log = generate(&LogShape {
        days: 5,
        ..shape(11)
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store_with(&log, dir.path()).await;
    let table = SqliteViews::open(&dir.path().join("views")).expect("views");
    ViewFollower::resume(store.clone(), table.clone(), store.clone())
        .await
        .expect("resume")
        .catch_up()
        .await
        .expect("catch up");
    let mut models = ReadModels::default();
    for e in log.envelopes() {
        models.apply(&e);
    }
    let mut scopes: Vec<(ledger_core::TenantId, Option<ledger_core::VendorId>)> = models
        .dashboard
        .days()
        .map(|((t, v, _), _)| (t, Some(v)))
        .collect();
    scopes.extend(scopes.clone().iter().map(|(t, _)| (*t, None)));
    scopes.sort();
    scopes.dedup();
    assert!(scopes.len() >= 4, "two tenants with vendors: {scopes:?}");

    for &(tenant_id, vendor_id) in &scopes {
        // Every page of the listing, through cursors.
        let mut query = OrderListQuery {
            tenant_id,
            vendor_id,
            from: Timestamp::from_micros(i64::MIN),
            until: Timestamp::from_micros(i64::MAX),
            cursor: None,
            limit: 7,
        };
        let mut listed: Vec<OrderView> = Vec::new();
        loop {
            let page = table.orders(&query).await.expect("orders");
            let Some(last) = page.last() else { break };
            query.cursor = Some((last.index.occurred_at, last.order_id));
            for row in &page {
                listed.push(OrderView::from_bytes(&row.view.bytes).expect("an order view"));
            }
        }
        let want: Vec<OrderView> = models
            .orders
            .list(&OrderListQuery {
                limit: usize::MAX,
                cursor: None,
                ..query
            })
            .into_iter()
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(listed.len(), want.len(), "{tenant_id} {vendor_id:?}");
        assert_eq!(listed, want, "{tenant_id} {vendor_id:?}");

        // Dashboards from the stored sums.
        for granularity in [Granularity::Day, Granularity::Week, Granularity::Month] {
            let q = DashboardQuery {
                tenant_id,
                vendor_id,
                from: LocalDate::ymd(2026, 10, 1),
                to: LocalDate::ymd(2026, 11, 30),
                granularity,
                today: LocalDate::ymd(2026, 10, 18),
            };
            let want = models.dashboard.query(&q).expect("a dashboard");
            assert!(want.totals.orders > 0, "the range holds the log's days");
            let days = table
                .day_sums(&DayRange {
                    tenant_id,
                    vendor_id,
                    from: q.from,
                    to: q.to,
                })
                .await
                .expect("day sums");
            let dues = table
                .due_sums(tenant_id, vendor_id)
                .await
                .expect("due sums");
            let got = Dashboard::assemble(
                &q,
                want.currency,
                days.iter().map(|d| (d.date, &d.totals)),
                dues.iter().map(|d| (d.due_date, d.amount)),
            );
            assert_eq!(got, want, "{tenant_id} {vendor_id:?} {granularity:?}");
        }
    }

    let tenants: std::collections::BTreeSet<_> = scopes.iter().map(|(t, _)| *t).collect();
    for tenant_id in tenants {
        let mut accounts: Vec<CreditView> = Vec::new();
        let mut after = None;
        loop {
            let page = table
                .credit_views(tenant_id, after, 3)
                .await
                .expect("credit views");
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (_, view) in &page {
                accounts.push(CreditView::from_bytes(&view.bytes).expect("a credit view"));
            }
        }
        let mut want: Vec<CreditView> = models.credit.accounts(tenant_id).cloned().collect();
        want.sort_by_key(|v| v.employee_id);
        assert!(!want.is_empty());
        assert_eq!(accounts, want, "{tenant_id}");
    }
}
