//! The read-model table's contract as checks, written once against
//! [`ViewTable`]; `view_table_conformance_tests!` makes one test per check
//! for an adapter. Every check works in a tenant of its own and reads back
//! only that tenant's items, so the checks can share one long-lived table.

use ledger_core::envelope::{Actor, Role};
use ledger_core::event::EventType;
use ledger_core::projection::activity::{ActivityEntry, ActivityFilter, ActivityQuery};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::{
    Currency, EmployeeId, LocalDate, OrderId, StreamId, StreamVersion, TenantId, Timestamp,
    VendorId,
};
use ledger_core::{Money, UserId};
use rust_decimal::Decimal;

use super::{
    DayRange, DayRow, DueRow, MemoryState, OrderIndex, OrderRow, Parked, StoredView, Sum, SumAdd,
    SumKey, ViewKey, ViewTable, ViewWrite, Write, WriteError,
};
use crate::conformance::unique_tenant;

/// Makes one `#[tokio::test]` per check for the table `$fresh().await`
/// returns (with a guard that lives as long as the test).
#[macro_export]
macro_rules! view_table_conformance_tests {
    ($fresh:path) => {
        $crate::view_table_conformance_tests!(@each $fresh;
            unwritten_views_load_as_none,
            views_load_in_key_order_as_written,
            a_gate_that_does_not_hold_writes_nothing,
            a_moved_gate_is_reported_with_what_is_stored,
            a_lone_view_is_gated_too,
            sums_only_add,
            a_large_write_is_all_or_nothing,
            parking_twice_stores_once,
            unparking_deletes_only_what_was_applied,
            orders_list_newest_first_in_pages,
            sums_list_by_date_then_vendor,
            credit_views_list_by_employee_in_pages,
            writes_together_answer_each_and_a_failed_gate_fails_alone,
            activity_lists_newest_first_by_filter_in_pages,
            recorded_activity_is_seen_and_recording_twice_stores_once,
        );
    };
    (@each $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (table, _guard) = $fresh().await;
                $crate::views::conformance::$check(&table).await;
            }
        )*
    };
}

fn order(tenant_id: TenantId, n: u32) -> ViewKey {
    ViewKey {
        tenant_id,
        stream: StreamId::parse(&format!("order/O{n}")).expect("order stream"),
    }
}

fn credit(tenant_id: TenantId, n: u32) -> ViewKey {
    ViewKey {
        tenant_id,
        stream: StreamId::parse(&format!("credit/E{n}")).expect("credit stream"),
    }
}

fn view(version: u64, fill: u8) -> StoredView {
    StoredView {
        version: StreamVersion::new(version),
        bytes: vec![fill; 16 + version as usize],
    }
}

/// A gated write of `key` from `expect` to `to`, with an order view's index
/// for order streams.
fn gated(key: ViewKey, expect: u64, to: StoredView) -> ViewWrite {
    let index = (key.stream.kind() == ledger_core::StreamKind::Order).then(|| OrderIndex {
        vendor_id: VendorId::parse("V1").expect("vendor"),
        occurred_at: Timestamp::from_micros(1_767_225_600_000_000 + to.version.get() as i64),
    });
    ViewWrite {
        key,
        expect: StreamVersion::new(expect),
        view: to,
        index,
    }
}

fn date_of(text: &str) -> LocalDate {
    LocalDate::new(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date"))
}

fn day(tenant_id: TenantId, date: &str) -> SumKey {
    SumKey::Day {
        tenant_id,
        vendor_id: VendorId::parse("V1").expect("vendor"),
        date: date_of(date),
    }
}

fn due(tenant_id: TenantId, date: &str) -> SumKey {
    SumKey::Due {
        tenant_id,
        vendor_id: VendorId::parse("V1").expect("vendor"),
        due_date: date_of(date),
    }
}

fn sale(gross_minor: i64) -> Sum {
    let gross = Decimal::new(gross_minor, 2);
    Sum::Day(DayTotals {
        orders: 1,
        gross,
        commission: Decimal::new(gross_minor / 10, 2),
        gross_cash: gross,
        ..DayTotals::default()
    })
}

fn add(key: SumKey, sum: Sum) -> SumAdd {
    SumAdd {
        key,
        add: sum,
        currency: Currency::from_code("PHP").ok(),
    }
}

/// Everything the table holds of `tenant_id`.
async fn state_of<T: ViewTable>(table: &T, tenant_id: TenantId) -> MemoryState {
    let all = table.scan().await.expect("scan");
    let parked_prefix = format!("{tenant_id}|");
    let sum_tenant = |key: &SumKey| match key {
        SumKey::Day { tenant_id, .. } | SumKey::Due { tenant_id, .. } => *tenant_id,
    };
    MemoryState {
        views: all
            .views
            .into_iter()
            .filter(|(k, _)| k.tenant_id == tenant_id)
            .collect(),
        sums: all
            .sums
            .into_iter()
            .filter(|(k, _)| sum_tenant(k) == tenant_id)
            .collect(),
        parked: all
            .parked
            .into_iter()
            .filter(|((pk, _), _)| pk.starts_with(&parked_prefix))
            .collect(),
        ..MemoryState::default()
    }
}

async fn write_ok<T: ViewTable>(table: &T, write: Write) {
    table.write(&write).await.expect("the write's gates hold");
}

/// A view never written loads as `None`, and the table holds nothing of
/// the tenant.
pub async fn unwritten_views_load_as_none<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-none");
    let loaded = table
        .load(&[order(tenant, 1), credit(tenant, 1)])
        .await
        .expect("load");
    assert_eq!(loaded, vec![None, None]);
    assert_eq!(state_of(table, tenant).await, MemoryState::default());
    assert_eq!(
        table
            .parked_from(&format!("{tenant}|order/O1"))
            .await
            .expect("parked"),
        None
    );
}

/// `load` answers in the order of the keys asked, with each view's version
/// and bytes as last written.
pub async fn views_load_in_key_order_as_written<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-order");
    let (a, b, c) = (order(tenant, 1), credit(tenant, 2), order(tenant, 3));
    write_ok(
        table,
        Write {
            views: vec![gated(a, 0, view(1, 1)), gated(b, 0, view(2, 2))],
            sums: vec![add(day(tenant, "2026-01-01"), sale(100))],
        },
    )
    .await;
    write_ok(
        table,
        Write {
            views: vec![gated(a, 1, view(3, 3))],
            sums: Vec::new(),
        },
    )
    .await;
    let loaded = table.load(&[c, b, a]).await.expect("load");
    assert_eq!(loaded, vec![None, Some(view(2, 2)), Some(view(3, 3))]);
}

/// A write whose gate does not hold fails naming it, with what is stored,
/// and writes nothing at all: not its other views, not its sums.
pub async fn a_gate_that_does_not_hold_writes_nothing<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-gate");
    let (a, b) = (order(tenant, 1), order(tenant, 2));
    write_ok(
        table,
        Write {
            views: vec![gated(a, 0, view(2, 1))],
            sums: vec![add(day(tenant, "2026-01-01"), sale(100))],
        },
    )
    .await;
    let before = state_of(table, tenant).await;
    let refused = Write {
        // `b` is new and would be fine; `a` is at 2, not 1.
        views: vec![gated(b, 0, view(1, 7)), gated(a, 1, view(3, 7))],
        sums: vec![
            add(day(tenant, "2026-01-01"), sale(500)),
            add(due(tenant, "2026-02-01"), Sum::Due(Decimal::new(500, 2))),
        ],
    };
    match table.write(&refused).await {
        Err(WriteError::Conflict(conflicts)) => {
            assert_eq!(conflicts, vec![(1, Some(view(2, 1)))]);
        }
        other => panic!("a gate that does not hold must conflict, got {other:?}"),
    }
    assert_eq!(state_of(table, tenant).await, before, "nothing was written");
    // A new view's gate is that it does not exist: writing it again as new
    // conflicts, naming it with what is stored.
    match table
        .write(&Write {
            views: vec![gated(a, 0, view(1, 9))],
            sums: Vec::new(),
        })
        .await
    {
        Err(WriteError::Conflict(conflicts)) => assert_eq!(conflicts, vec![(0, Some(view(2, 1)))]),
        other => panic!("an existing view written as new must conflict, got {other:?}"),
    }
    assert_eq!(state_of(table, tenant).await, before, "nothing was written");
}

/// A writer that folded onto a version another writer has since moved past
/// conflicts, and learns the stored view from the failure.
pub async fn a_moved_gate_is_reported_with_what_is_stored<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-moved");
    let a = order(tenant, 1);
    write_ok(
        table,
        Write {
            views: vec![gated(a, 0, view(1, 1))],
            sums: Vec::new(),
        },
    )
    .await;
    write_ok(
        table,
        Write {
            views: vec![gated(a, 1, view(2, 2))],
            sums: Vec::new(),
        },
    )
    .await;
    let stale = Write {
        views: vec![gated(a, 1, view(2, 9))],
        sums: vec![add(day(tenant, "2026-01-02"), sale(100))],
    };
    match table.write(&stale).await {
        Err(WriteError::Conflict(conflicts)) => assert_eq!(conflicts, vec![(0, Some(view(2, 2)))]),
        other => panic!("a stale gate must conflict, got {other:?}"),
    }
    let state = state_of(table, tenant).await;
    assert_eq!(state.views.get(&a), Some(&view(2, 2)));
    assert!(state.sums.is_empty(), "the stale write's sum was not added");
}

/// A write of one view and no sums (a credit account's) is gated like any
/// other, whatever shortcut an adapter takes for it.
pub async fn a_lone_view_is_gated_too<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-lone");
    let e = credit(tenant, 1);
    write_ok(
        table,
        Write {
            views: vec![gated(e, 0, view(1, 1))],
            sums: Vec::new(),
        },
    )
    .await;
    for (expect, label) in [(0, "as new"), (2, "ahead of what is stored")] {
        match table
            .write(&Write {
                views: vec![gated(e, expect, view(3, 3))],
                sums: Vec::new(),
            })
            .await
        {
            Err(WriteError::Conflict(conflicts)) => {
                assert_eq!(conflicts, vec![(0, Some(view(1, 1)))], "{label}");
            }
            other => panic!("a lone view written {label} must conflict, got {other:?}"),
        }
    }
    write_ok(
        table,
        Write {
            views: vec![gated(e, 1, view(2, 2))],
            sums: Vec::new(),
        },
    )
    .await;
    assert_eq!(
        table.load(&[e]).await.expect("load"),
        vec![Some(view(2, 2))]
    );
}

/// Sums only ever add: writes adding to one key store their total, day sums
/// and due sums alike.
pub async fn sums_only_add<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-sums");
    let (a, b) = (order(tenant, 1), order(tenant, 2));
    let d = day(tenant, "2026-03-01");
    let r = due(tenant, "2026-04-01");
    write_ok(
        table,
        Write {
            views: vec![gated(a, 0, view(1, 1))],
            sums: vec![
                add(d, sale(1_050)),
                add(r, Sum::Due(Decimal::new(1_050, 2))),
            ],
        },
    )
    .await;
    write_ok(
        table,
        Write {
            views: vec![gated(b, 0, view(1, 2))],
            sums: vec![add(d, sale(250)), add(r, Sum::Due(Decimal::new(-1_050, 2)))],
        },
    )
    .await;
    let mut want = sale(1_050);
    want.add(&sale(250));
    let state = state_of(table, tenant).await;
    assert_eq!(state.sums.get(&d), Some(&want));
    assert_eq!(
        state.sums.get(&r).filter(|sum| !sum.is_settled()),
        None,
        "a receivable that came to zero is settled"
    );
    assert!(
        table
            .due_sums(tenant, None)
            .await
            .expect("due sums")
            .is_empty(),
        "a settled receivable is not listed"
    );
    // Owed again on the same date: listed again, with only the new amount.
    write_ok(
        table,
        Write {
            views: vec![gated(b, 1, view(2, 2))],
            sums: vec![add(r, Sum::Due(Decimal::new(300, 2)))],
        },
    )
    .await;
    let listed = table.due_sums(tenant, None).await.expect("due sums");
    assert_eq!(
        listed.iter().map(|row| row.amount).collect::<Vec<_>>(),
        vec![Decimal::new(300, 2)]
    );
    let Some(Sum::Day(totals)) = state.sums.get(&d) else {
        panic!("a day sum");
    };
    assert_eq!((totals.orders, totals.gross), (2, Decimal::new(1_300, 2)));
}

/// Views written in one write.
const LARGE_WRITE_VIEWS: u32 = 40;

/// A write of many views and sums lands whole, and one stale gate among
/// them keeps every other item of it out.
pub async fn a_large_write_is_all_or_nothing<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-large");
    let keys: Vec<ViewKey> = (0..LARGE_WRITE_VIEWS).map(|n| order(tenant, n)).collect();
    let dates: Vec<String> = (1..=28).map(|d| format!("2026-02-{d:02}")).collect();
    let first = Write {
        views: keys.iter().map(|k| gated(*k, 0, view(1, 1))).collect(),
        sums: dates
            .iter()
            .map(|d| add(day(tenant, d), sale(100)))
            .collect(),
    };
    write_ok(table, first).await;
    let before = state_of(table, tenant).await;
    assert_eq!(before.views.len(), LARGE_WRITE_VIEWS as usize);
    assert_eq!(before.sums.len(), dates.len());
    let mut second = Write {
        views: keys.iter().map(|k| gated(*k, 1, view(2, 2))).collect(),
        sums: dates
            .iter()
            .map(|d| add(day(tenant, d), sale(100)))
            .collect(),
    };
    let last = second.views.len() - 1;
    second.views[last].expect = StreamVersion::new(0);
    match table.write(&second).await {
        Err(WriteError::Conflict(conflicts)) => {
            assert_eq!(conflicts, vec![(last, Some(view(1, 1)))])
        }
        other => panic!("one stale gate must fail the whole write, got {other:?}"),
    }
    assert_eq!(state_of(table, tenant).await, before, "nothing was written");
}

/// `unpark` deletes a stream's parked records up to a version and nothing
/// else; `parked` lists what is left by stream then version.
pub async fn unparking_deletes_only_what_was_applied<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-unpark");
    let parked = |stream: &str, version: u64, behind: Option<u64>| Parked {
        pk: format!("{tenant}|{stream}"),
        version,
        record: format!("seq-{stream}-{version}"),
        error: "poison".to_owned(),
        behind,
    };
    table
        .park(&[
            parked("order/O1", 4, None),
            parked("order/O1", 5, Some(4)),
            parked("order/O1", 6, Some(4)),
            parked("order/O2", 1, None),
        ])
        .await
        .expect("park");
    let ours = |all: Vec<Parked>| -> Vec<Parked> {
        all.into_iter()
            .filter(|p| p.pk.starts_with(&format!("{tenant}|")))
            .collect()
    };
    table
        .unpark(&format!("{tenant}|order/O1"), 5)
        .await
        .expect("unpark");
    assert_eq!(
        ours(table.parked().await.expect("parked")),
        vec![parked("order/O1", 6, Some(4)), parked("order/O2", 1, None)]
    );
    assert_eq!(
        table
            .parked_from(&format!("{tenant}|order/O1"))
            .await
            .expect("parked"),
        Some(6)
    );
    table
        .unpark(&format!("{tenant}|order/O9"), 100)
        .await
        .expect("unparking nothing is no error");
    table
        .unpark(&format!("{tenant}|order/O1"), 6)
        .await
        .expect("unpark");
    assert_eq!(
        ours(table.parked().await.expect("parked")),
        vec![parked("order/O2", 1, None)]
    );
}

/// Parking a record twice stores it once, later fields winning, and
/// `parked_from` is the lowest parked version of the stream.
pub async fn parking_twice_stores_once<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-park");
    let pk = format!("{tenant}|order/O1");
    let parked = |version: u64, error: &str, behind: Option<u64>| Parked {
        pk: pk.clone(),
        version,
        record: format!("seq-{version}"),
        error: error.to_owned(),
        behind,
    };
    table
        .park(&[parked(5, "poison", None), parked(7, "behind 5", Some(5))])
        .await
        .expect("park");
    table
        .park(&[parked(3, "poison", None)])
        .await
        .expect("park");
    table
        .park(&[parked(3, "poison again", None)])
        .await
        .expect("park twice");
    assert_eq!(table.parked_from(&pk).await.expect("parked"), Some(3));
    let other = format!("{tenant}|order/O2");
    assert_eq!(table.parked_from(&other).await.expect("parked"), None);
    let state = state_of(table, tenant).await;
    let stored: Vec<&Parked> = state.parked.values().collect();
    assert_eq!(
        stored,
        vec![
            &parked(3, "poison again", None),
            &parked(5, "poison", None),
            &parked(7, "behind 5", Some(5))
        ]
    );
}

fn vendor(text: &str) -> VendorId {
    VendorId::parse(text).expect("vendor")
}

/// The first instant of 2026-01-01, in µs.
const NEW_YEAR: i64 = 1_767_225_600_000_000;

/// A new order view `id` of `vendor` at `NEW_YEAR + at` µs, as a row.
fn order_at(tenant_id: TenantId, id: &str, vendor_id: &str, at: i64) -> (ViewWrite, OrderRow) {
    let key = ViewKey {
        tenant_id,
        stream: StreamId::order(OrderId::parse(id).expect("order id")),
    };
    let index = OrderIndex {
        vendor_id: vendor(vendor_id),
        occurred_at: Timestamp::from_micros(NEW_YEAR + at),
    };
    let stored = StoredView {
        version: StreamVersion::new(1),
        bytes: id.as_bytes().to_vec(),
    };
    let write = ViewWrite {
        key,
        expect: StreamVersion::NONE,
        view: stored.clone(),
        index: Some(index),
    };
    let row = OrderRow {
        order_id: OrderId::parse(id).expect("order id"),
        index,
        view: stored,
    };
    (write, row)
}

fn list(tenant_id: TenantId, vendor_id: Option<&str>, limit: usize) -> OrderListQuery {
    OrderListQuery {
        tenant_id,
        vendor_id: vendor_id.map(vendor),
        from: Timestamp::from_micros(NEW_YEAR),
        until: Timestamp::from_micros(NEW_YEAR + 1_000_000),
        cursor: None,
        limit,
    }
}

/// Every page of `query`, each of at most its limit, following cursors.
async fn pages<T: ViewTable>(table: &T, mut query: OrderListQuery) -> Vec<Vec<OrderRow>> {
    let mut pages = Vec::new();
    loop {
        let page = table.orders(&query).await.expect("orders");
        assert!(page.len() <= query.limit, "a page holds at most its limit");
        let Some(last) = page.last() else {
            return pages;
        };
        query.cursor = Some((last.index.occurred_at, last.order_id));
        pages.push(page);
        assert!(pages.len() < 20, "paging does not end");
    }
}

/// Order views list newest first by time then order id (ties at one
/// instant included), within `[from, until)`, one vendor's or all, never
/// another tenant's; pages that follow cursors neither skip nor repeat.
pub async fn orders_list_newest_first_in_pages<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-orders");
    let other = unique_tenant("views-orders-other");
    let made = [
        order_at(tenant, "A", "V1", 10),
        order_at(tenant, "B", "V2", 20),
        // Two orders at one instant: order id breaks the tie.
        order_at(tenant, "C", "V1", 30),
        order_at(tenant, "C2", "V2", 30),
        order_at(tenant, "D", "V1", 40),
        // Outside the window: at `until` and before `from`.
        order_at(tenant, "LATE", "V1", 1_000_000),
        order_at(tenant, "EARLY", "V1", -1),
        order_at(other, "X", "V1", 35),
    ];
    write_ok(
        table,
        Write {
            views: made.iter().map(|(w, _)| w.clone()).collect(),
            sums: Vec::new(),
        },
    )
    .await;
    let rows = |ids: &[&str]| -> Vec<OrderRow> {
        ids.iter()
            .map(|id| {
                made.iter()
                    .find(|(w, _)| w.key.tenant_id == tenant && w.key.stream.id().as_str() == *id)
                    .map(|(_, r)| r.clone())
                    .expect("made")
            })
            .collect()
    };
    let all = table
        .orders(&list(tenant, None, 100))
        .await
        .expect("orders");
    assert_eq!(all, rows(&["D", "C2", "C", "B", "A"]));
    let paged: Vec<OrderRow> = pages(table, list(tenant, None, 2)).await.concat();
    assert_eq!(paged, all, "pages of two add up to the whole list");
    assert_eq!(pages(table, list(tenant, None, 2)).await.len(), 3);
    let v1: Vec<OrderRow> = pages(table, list(tenant, Some("V1"), 1)).await.concat();
    assert_eq!(v1, rows(&["D", "C", "A"]));
    let mut window = list(tenant, None, 100);
    window.from = Timestamp::from_micros(NEW_YEAR + 20);
    window.until = Timestamp::from_micros(NEW_YEAR + 40);
    assert_eq!(
        table.orders(&window).await.expect("orders"),
        rows(&["C2", "C", "B"]),
        "from is inclusive, until exclusive"
    );
    window.cursor = Some((Timestamp::from_micros(NEW_YEAR + 30), OrderId::new("C2")));
    assert_eq!(
        table.orders(&window).await.expect("orders"),
        rows(&["C", "B"]),
        "the cursor is exclusive, and splits a tie"
    );
    assert!(
        table
            .orders(&list(tenant, Some("V9"), 100))
            .await
            .expect("orders")
            .is_empty()
    );
    assert!(
        table
            .orders(&list(tenant, None, 0))
            .await
            .expect("orders")
            .is_empty()
    );
}

/// Day sums list by date then vendor over an inclusive range, one
/// vendor's or all; due sums by due date then vendor; none of another
/// tenant.
pub async fn sums_list_by_date_then_vendor<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-sum-list");
    let other = unique_tenant("views-sum-list-other");
    let day_of = |t: TenantId, v: &str, d: &str| SumKey::Day {
        tenant_id: t,
        vendor_id: vendor(v),
        date: date_of(d),
    };
    let due_of = |t: TenantId, v: &str, d: &str| SumKey::Due {
        tenant_id: t,
        vendor_id: vendor(v),
        due_date: date_of(d),
    };
    let mut sums = Vec::new();
    for (i, d) in ["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04"]
        .iter()
        .enumerate()
    {
        sums.push(add(day_of(tenant, "V2", d), sale(200 + i as i64)));
        sums.push(add(day_of(tenant, "V1", d), sale(100 + i as i64)));
        sums.push(add(day_of(other, "V1", d), sale(900)));
    }
    sums.push(add(
        due_of(tenant, "V2", "2026-06-01"),
        Sum::Due(Decimal::new(5, 0)),
    ));
    sums.push(add(
        due_of(tenant, "V1", "2026-06-02"),
        Sum::Due(Decimal::new(6, 0)),
    ));
    sums.push(add(
        due_of(tenant, "V1", "2026-06-01"),
        Sum::Due(Decimal::new(7, 0)),
    ));
    sums.push(add(
        due_of(other, "V1", "2026-06-01"),
        Sum::Due(Decimal::new(9, 0)),
    ));
    write_ok(
        table,
        Write {
            views: Vec::new(),
            sums,
        },
    )
    .await;
    let totals = |minor: i64| match sale(minor) {
        Sum::Day(t) => t,
        Sum::Due(_) => unreachable!("a sale is a day sum"),
    };
    let row = |v: &str, d: &str, minor: i64| DayRow {
        vendor_id: vendor(v),
        date: date_of(d),
        totals: totals(minor),
    };
    let range = |v: Option<&str>, from: &str, to: &str| DayRange {
        tenant_id: tenant,
        vendor_id: v.map(vendor),
        from: date_of(from),
        to: date_of(to),
    };
    assert_eq!(
        table
            .day_sums(&range(None, "2026-05-02", "2026-05-03"))
            .await
            .expect("day sums"),
        vec![
            row("V1", "2026-05-02", 101),
            row("V2", "2026-05-02", 201),
            row("V1", "2026-05-03", 102),
            row("V2", "2026-05-03", 202),
        ]
    );
    assert_eq!(
        table
            .day_sums(&range(Some("V2"), "2026-05-03", "2026-05-09"))
            .await
            .expect("day sums"),
        vec![row("V2", "2026-05-03", 202), row("V2", "2026-05-04", 203)]
    );
    assert!(
        table
            .day_sums(&range(None, "2026-05-05", "2026-05-04"))
            .await
            .expect("day sums")
            .is_empty(),
        "an empty range"
    );
    let due_row = |v: &str, d: &str, amount: i64| DueRow {
        vendor_id: vendor(v),
        due_date: date_of(d),
        amount: Decimal::new(amount, 0),
    };
    assert_eq!(
        table.due_sums(tenant, None).await.expect("due sums"),
        vec![
            due_row("V1", "2026-06-01", 7),
            due_row("V2", "2026-06-01", 5),
            due_row("V1", "2026-06-02", 6),
        ]
    );
    assert_eq!(
        table
            .due_sums(tenant, Some(vendor("V1")))
            .await
            .expect("due sums"),
        vec![
            due_row("V1", "2026-06-01", 7),
            due_row("V1", "2026-06-02", 6)
        ]
    );
}

/// Credit views list by employee id (byte order), after a cursor, at most
/// a limit; order views and other tenants' are never among them.
pub async fn credit_views_list_by_employee_in_pages<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-credit-list");
    let other = unique_tenant("views-credit-list-other");
    let account = |t: TenantId, id: &str| ViewKey {
        tenant_id: t,
        stream: StreamId::credit(EmployeeId::parse(id).expect("employee")),
    };
    let ids = ["E10", "E2", "E1", "E1a"];
    let mut views: Vec<ViewWrite> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| gated(account(tenant, id), 0, view(1, i as u8)))
        .collect();
    views.push(gated(account(other, "E0"), 0, view(1, 9)));
    views.push(gated(order(tenant, 1), 0, view(1, 9)));
    write_ok(
        table,
        Write {
            views,
            sums: Vec::new(),
        },
    )
    .await;
    let want = |id: &str| {
        let i = ids.iter().position(|x| *x == id).expect("made");
        (EmployeeId::new(id), view(1, i as u8))
    };
    assert_eq!(
        table.credit_views(tenant, None, 100).await.expect("credit"),
        vec![want("E1"), want("E10"), want("E1a"), want("E2")]
    );
    assert_eq!(
        table
            .credit_views(tenant, Some(EmployeeId::new("E10")), 2)
            .await
            .expect("credit"),
        vec![want("E1a"), want("E2")]
    );
    assert!(
        table
            .credit_views(tenant, Some(EmployeeId::new("E2")), 2)
            .await
            .expect("credit")
            .is_empty()
    );
}

/// An activity entry of `stream` at `version`, recorded at `at` µs, by
/// `actor`, about `vendor`.
fn entry(
    tenant_id: TenantId,
    stream: &str,
    version: u64,
    at: i64,
    actor: &str,
    vendor: Option<&str>,
) -> ActivityEntry {
    ActivityEntry {
        tenant_id,
        stream: StreamId::parse(stream).expect("stream"),
        version: StreamVersion::new(version),
        event_type: EventType::SaleRecorded,
        occurred_at: Timestamp::from_micros(at - 5),
        recorded_at: Timestamp::from_micros(at),
        actor: Actor {
            user_id: UserId::new(actor),
            role: Role::Cashier,
        },
        vendor_id: vendor.map(VendorId::new),
        amount: Some(Money::parse(Decimal::new(1250, 2), Currency::new("PHP")).expect("money")),
    }
}

/// Every page of a query, walking the cursor as the API does.
async fn all_pages<T: ViewTable>(table: &T, mut query: ActivityQuery) -> Vec<ActivityEntry> {
    let mut out: Vec<ActivityEntry> = Vec::new();
    loop {
        let page = table.activity(&query).await.expect("activity");
        assert!(page.len() <= query.limit, "a page longer than its limit");
        let full = page.len() == query.limit;
        out.extend(page);
        match (full, out.last()) {
            (true, Some(last)) => query.cursor = Some(last.sort_key()),
            _ => return out,
        }
    }
}

pub async fn activity_lists_newest_first_by_filter_in_pages<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-activity-list");
    let other = unique_tenant("views-activity-list-other");
    // Ties on the instant are broken by stream (kind, then id: `O1` before
    // `O1a` before `O2`) and version, as `ActivityEntry::sort_key` orders.
    let entries = vec![
        entry(tenant, "order/O1", 1, 1_000, "U1", Some("V1")),
        entry(tenant, "credit/E1", 1, 1_000, "U1", None),
        entry(tenant, "order/O1a", 1, 1_000, "U2", Some("V2")),
        entry(tenant, "order/O2", 1, 1_000, "U2", Some("V1")),
        entry(tenant, "order/O1", 2, 2_000, "U2", Some("V1")),
        entry(tenant, "vendor/V1", 1, 500, "U9", Some("V1")),
        entry(tenant, "tenant/T", 1, 100, "U9", None),
        entry(other, "order/O1", 1, 3_000, "U1", Some("V1")),
    ];
    table.record_activity(&entries).await.expect("recorded");
    let mut want: Vec<ActivityEntry> = entries
        .iter()
        .filter(|e| e.tenant_id == tenant)
        .cloned()
        .collect();
    want.sort_by_key(|e| std::cmp::Reverse(e.sort_key()));
    for filter in [
        ActivityFilter::All,
        ActivityFilter::Vendor(VendorId::new("V1")),
        ActivityFilter::Actor(UserId::new("U2")),
        ActivityFilter::Actor(UserId::new("nobody")),
    ] {
        let expected: Vec<ActivityEntry> =
            want.iter().filter(|e| filter.matches(e)).cloned().collect();
        for limit in [1, 2, 100] {
            let query = ActivityQuery {
                tenant_id: tenant,
                filter,
                cursor: None,
                limit,
            };
            assert_eq!(
                all_pages(table, query).await,
                expected,
                "{filter:?}, pages of {limit}"
            );
        }
    }
}

pub async fn recorded_activity_is_seen_and_recording_twice_stores_once<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-activity-seen");
    let first = entry(tenant, "order/O1", 1, 1_000, "U1", Some("V1"));
    let second = entry(tenant, "order/O1", 2, 2_000, "U1", Some("V1"));
    let at = |e: &ActivityEntry| (e.stream, e.version);
    assert!(!table.seen(tenant, &[at(&first)]).await.expect("seen"));
    table
        .record_activity(&[first.clone(), first.clone()])
        .await
        .expect("recorded");
    table
        .record_activity(std::slice::from_ref(&first))
        .await
        .expect("recorded again");
    assert!(table.seen(tenant, &[at(&first)]).await.expect("seen"));
    assert!(
        !table
            .seen(tenant, &[at(&first), at(&second)])
            .await
            .expect("seen"),
        "seen only when every named event is"
    );
    let other = unique_tenant("views-activity-seen-other");
    assert!(
        !table.seen(other, &[at(&first)]).await.expect("seen"),
        "another tenant's entry is not this one's"
    );
    let query = ActivityQuery {
        tenant_id: tenant,
        filter: ActivityFilter::All,
        cursor: None,
        limit: 10,
    };
    assert_eq!(table.activity(&query).await.expect("listed"), vec![first]);
}

/// `write_many` answers each write in order; a write whose gate does not
/// hold writes nothing and fails alone, the others land.
pub async fn writes_together_answer_each_and_a_failed_gate_fails_alone<T: ViewTable>(table: &T) {
    let tenant = unique_tenant("views-many");
    let one = |key: ViewKey, expect: u64, to: StoredView| Write {
        views: vec![gated(key, expect, to)],
        sums: Vec::new(),
    };
    write_ok(table, one(order(tenant, 1), 0, view(1, 1))).await;
    let outcomes = table
        .write_many(&[
            one(order(tenant, 2), 0, view(1, 2)),
            // Stored at 1, not 5: refused.
            one(order(tenant, 1), 5, view(6, 3)),
            one(credit(tenant, 1), 0, view(1, 4)),
        ])
        .await;
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    match &outcomes[1] {
        Err(WriteError::Conflict(c)) => assert_eq!(c, &vec![(0, Some(view(1, 1)))]),
        other => panic!("a moved gate is a conflict, not {other:?}"),
    }
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    let loaded = table
        .load(&[order(tenant, 1), order(tenant, 2), credit(tenant, 1)])
        .await
        .expect("load");
    assert_eq!(
        loaded,
        vec![Some(view(1, 1)), Some(view(1, 2)), Some(view(1, 4))]
    );
}
