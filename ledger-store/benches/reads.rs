//! What the API's reads cost on DynamoDB: for each query the read-model
//! port answers an endpoint with, the `Query`/`BatchGetItem` calls it sends
//! and the read capacity (RCU) they consume, at three scales of history:
//!
//! - (a) a vendor with [`FULL`]`.orders` orders: one order by id (`load`),
//!   the first and a deep page of its orders newest first (`orders`, at the
//!   API's default and largest page sizes), and its activity page;
//! - (b) a tenant of [`FULL`]`.vendors` vendors: the admin's all-vendor
//!   dashboard over 30 days (`day_sums` + `due_sums`, as the dashboard
//!   handler reads them) beside one vendor's, and the tenant-wide orders
//!   page;
//! - (c) a one-year dashboard (by month: the buckets are made in memory, so
//!   the granularity changes nothing read) for one vendor and for all.
//!
//! `cargo bench -p ledger-store --bench reads` seeds one tenant on DynamoDB
//! Local through the port's own writes (a few minutes), then runs each
//! query once on a [`DynamoTable::metered`] table and prints a table:
//! rows returned, calls, RCU by AWS's formula, RCU DynamoDB Local reported,
//! bytes read, and the emulator's wall time (informational only: it is not
//! the service's latency). The counts are deterministic; no timing is
//! asserted. Under `cargo test` (no `--bench` argument) or with `--test`,
//! it runs the same queries on a tiny tenant ([`QUICK`]) as a smoke test.
//!
//! The seeded history: every vendor sells every day of one year, so it has
//! one day sum a day, and (as `tally-sim` does: invoice sales due 7 days
//! later, every day) one due sum a day, paid when due: a payment brings
//! its due sum to zero, and the table deletes it.
//! The big vendor's orders are spread evenly over the year, each with one
//! activity entry (its sale); the other vendors have a few orders each.
//! Order views are real `OrderView` bytes (three lines, paid in cash).

use std::future::Future;
use std::time::{Duration, Instant};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use futures_util::StreamExt;
use ledger_core::event::{Line, Payment};
use ledger_core::projection::activity::{
    ActivityEntry, ActivityFilter, ActivityQuery, PAGE_ACTIVITY_MAX,
};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::orders::{OrderListQuery, OrderView, PAGE_ORDERS_MAX};
use ledger_core::sale::OrderStatus;
use ledger_core::{
    Actor, CommissionRate, Currency, EventType, ItemCode, LocalDate, Money, OrderId, Role,
    StreamId, StreamVersion, TenantId, Timestamp, UserId, VendorId,
};
use ledger_store::conformance::unique_tenant;
use ledger_store::dynamodb::views::{DynamoTable, ReadTotals};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::views::{
    DayRange, OrderIndex, StoredView, Sum, SumAdd, SumKey, ViewKey, ViewTable, ViewWrite, Write,
};
use rust_decimal::Decimal;

/// The API's page size when the client names none
/// (`command_api::http::reads::PAGE_DEFAULT`).
const PAGE_DEFAULT: usize = 50;
/// Views or sums per seeding write: one `TransactWriteItems` of at most 100
/// actions.
const SEED_WRITE_ITEMS: usize = 100;
/// Activity entries per seeding `record_activity` (`BatchWriteItem`s of 25).
const SEED_ACTIVITY_ENTRIES: usize = 250;
/// Seeding calls in flight at once.
const SEED_IN_FLIGHT: usize = 8;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How much history the tenant has.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Vendors of the tenant; each has a day sum and a due sum every day.
    vendors: usize,
    /// Days of history (the last one is yesterday).
    days: usize,
    /// Orders of the big vendor, with one activity entry each.
    orders: usize,
    /// Orders of each other vendor.
    other_orders: usize,
}

/// The scales of the issue.
const FULL: Scale = Scale {
    vendors: 200,
    days: 365,
    orders: 10_000,
    other_orders: 5,
};

/// A smoke test's: every query still has rows and a later page.
const QUICK: Scale = Scale {
    vendors: 3,
    days: 31,
    orders: 240,
    other_orders: 2,
};

/// The tenant as seeded.
struct Tenant {
    tenant: TenantId,
    vendors: Vec<VendorId>,
    /// The vendor with [`Scale::orders`] orders.
    big: VendorId,
    /// The big vendor's orders, newest first.
    orders: Vec<(Timestamp, OrderId)>,
    /// All orders of the tenant, newest first.
    tenant_orders: Vec<(Timestamp, OrderId)>,
    /// The big vendor's activity entries, newest first.
    activity: Vec<ActivityEntry>,
    first_day: LocalDate,
    last_day: LocalDate,
    view_bytes: usize,
}

fn php() -> Currency {
    Currency::new("PHP")
}

fn money(minor: i64) -> Money {
    Money::parse(Decimal::new(minor, 2), php()).expect("money")
}

fn day_plus(day: LocalDate, days: usize) -> LocalDate {
    LocalDate::new(day.as_naive() + chrono::Days::new(days as u64))
}

fn midnight(day: LocalDate) -> Timestamp {
    Timestamp::from_datetime(day.as_naive().and_time(chrono::NaiveTime::MIN).and_utc())
}

/// A POS-minted order id (a UUID's text).
fn order_id(vendor: usize, n: usize) -> OrderId {
    OrderId::new(&format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        vendor * 7_919 + n,
        vendor,
        n % 4_096,
        (n * 31) % 4_096,
        n * 2_654_435_761 % (1 << 48)
    ))
}

/// A realistic order view: three lines, paid in cash.
fn order_view(order_id: OrderId, vendor_id: VendorId, at: Timestamp) -> OrderView {
    let lines = vec![
        Line {
            item: ItemCode::new("SKU-RICE-MEAL-01"),
            quantity: 2,
            unit_price: money(8_500),
        },
        Line {
            item: ItemCode::new("SKU-ICED-TEA-L"),
            quantity: 2,
            unit_price: money(4_500),
        },
        Line {
            item: ItemCode::new("SKU-LECHE-FLAN"),
            quantity: 1,
            unit_price: money(6_000),
        },
    ];
    let gross = 32_000;
    let commission = gross * 1_200 / 10_000;
    OrderView {
        order_id,
        vendor_id,
        lines,
        gross: money(gross),
        commission_rate: CommissionRate::from_basis_points(1_200).expect("rate"),
        commission: money(commission),
        net: money(gross - commission),
        payment: Payment::Cash,
        status: OrderStatus::Paid,
        refunded: money(0),
        commission_reversed: money(0),
        refunds: Vec::new(),
        occurred_at: at,
        recorded_at: at.plus_seconds(2),
        business_date: LocalDate::new(at.to_datetime().date_naive()),
        paid_at: Some(at),
        version: StreamVersion::new(1),
    }
}

/// A vendor's day: every total set, as a busy stall's.
fn day_totals(v: usize, d: usize) -> DayTotals {
    let k = ((v * 31 + d * 7) % 50) as i64;
    let cents = |base: i64| Decimal::new(base + k * 137, 2);
    DayTotals {
        orders: 27 + k as u64,
        gross: cents(843_250),
        commission: cents(101_190),
        refunds: 1,
        refunded_gross: cents(12_000),
        refunded_commission: cents(1_440),
        gross_cash: cents(300_000),
        gross_card: cents(250_050),
        gross_mobile_money: cents(120_000),
        gross_credit: cents(100_000),
        gross_invoice: cents(73_200),
        payments: 2,
        payments_received: cents(65_000),
    }
}

fn add(key: SumKey, add: Sum) -> SumAdd {
    SumAdd {
        key,
        add,
        currency: Some(php()),
    }
}

/// Writes `writes`, [`SEED_IN_FLIGHT`] at a time; every one must succeed.
async fn write_all(table: &DynamoTable, writes: Vec<Write>) {
    for result in table.write_many(&writes).await {
        result.expect("a seeding write");
    }
}

async fn seed(table: &DynamoTable, scale: Scale) -> Tenant {
    let tenant = unique_tenant("reads");
    let vendors: Vec<VendorId> = (0..scale.vendors)
        .map(|v| VendorId::new(&format!("vendor-{v:04}")))
        .collect();
    let big = vendors[0];
    let first_day = LocalDate::ymd(2025, 1, 1);
    let last_day = day_plus(first_day, scale.days - 1);
    let start = midnight(first_day).as_micros();
    let span = scale.days as i64 * MICROS_PER_DAY;

    // Orders: the big vendor's evenly over the year, the others' scattered.
    let clock = Instant::now();
    let mut views = Vec::new();
    let mut orders = Vec::new();
    let mut tenant_orders = Vec::new();
    let mut activity = Vec::new();
    let mut view_bytes = 0;
    for (v, vendor) in vendors.iter().enumerate() {
        let count = if v == 0 {
            scale.orders
        } else {
            scale.other_orders
        };
        for n in 0..count {
            let offset = if v == 0 {
                n as i64 * (span / count as i64) + 9 * 3_600_000_000
            } else {
                ((v * 7_919 + n * 104_729) as i64 * 1_000_003) % span
            };
            let at = Timestamp::from_micros(start + offset);
            let id = order_id(v, n);
            let bytes = order_view(id, *vendor, at).to_bytes();
            view_bytes = bytes.len();
            views.push(ViewWrite {
                key: ViewKey {
                    tenant_id: tenant,
                    stream: StreamId::order(id),
                },
                expect: StreamVersion::NONE,
                view: StoredView {
                    version: StreamVersion::new(1),
                    bytes,
                },
                index: Some(OrderIndex {
                    vendor_id: *vendor,
                    occurred_at: at,
                }),
            });
            tenant_orders.push((at, id));
            if v == 0 {
                orders.push((at, id));
                activity.push(ActivityEntry {
                    tenant_id: tenant,
                    stream: StreamId::order(id),
                    version: StreamVersion::new(1),
                    event_type: EventType::SaleRecorded,
                    occurred_at: at,
                    recorded_at: at.plus_seconds(2),
                    actor: Actor {
                        user_id: UserId::new(&format!("cashier-{:02}", n % 6)),
                        role: Role::Cashier,
                    },
                    vendor_id: Some(*vendor),
                    amount: Some(money(32_000)),
                });
            }
        }
    }
    let writes = views
        .chunks(SEED_WRITE_ITEMS)
        .map(|chunk| Write {
            views: chunk.to_vec(),
            sums: Vec::new(),
        })
        .collect();
    write_all(table, writes).await;
    eprintln!(
        "seeded {} order views ({view_bytes} view bytes each) in {:.1?}",
        views.len(),
        clock.elapsed()
    );

    let clock = Instant::now();
    let sends: Vec<_> = activity
        .chunks(SEED_ACTIVITY_ENTRIES)
        .map(|chunk| table.record_activity(chunk))
        .collect();
    let results: Vec<_> = futures_util::stream::iter(sends)
        .buffer_unordered(SEED_IN_FLIGHT)
        .collect()
        .await;
    for result in results {
        result.expect("seeding activity");
    }
    eprintln!(
        "seeded {} activity entries in {:.1?}",
        activity.len(),
        clock.elapsed()
    );

    // Every vendor's day sums and due sums, one of each a day. A due sum
    // falls 7 days after its sale; those due by the last day are then paid
    // (their payments written after every invoice, so each brings its sum
    // to zero and the table deletes it), the rest outstanding.
    let clock = Instant::now();
    let mut sums = Vec::with_capacity(2 * scale.vendors * scale.days);
    let mut payments = Vec::new();
    for (v, vendor) in vendors.iter().enumerate() {
        for d in 0..scale.days {
            let date = day_plus(first_day, d);
            sums.push(add(
                SumKey::Day {
                    tenant_id: tenant,
                    vendor_id: *vendor,
                    date,
                },
                Sum::Day(day_totals(v, d)),
            ));
            let due_date = day_plus(date, 7);
            let key = SumKey::Due {
                tenant_id: tenant,
                vendor_id: *vendor,
                due_date,
            };
            let owed = Decimal::new(73_200, 2);
            sums.push(add(key, Sum::Due(owed)));
            if due_date <= last_day {
                payments.push(add(key, Sum::Due(-owed)));
            }
        }
    }
    // Every invoice before any payment, so each payment finds its sum.
    for adds in [&sums, &payments] {
        let writes = adds
            .chunks(SEED_WRITE_ITEMS)
            .map(|chunk| Write {
                views: Vec::new(),
                sums: chunk.to_vec(),
            })
            .collect();
        write_all(table, writes).await;
    }
    eprintln!(
        "seeded {} day sums and {} due sums (all but the last week's paid) in {:.1?}",
        sums.len() / 2,
        sums.len() / 2,
        clock.elapsed()
    );

    let newest_first = |list: &mut Vec<(Timestamp, OrderId)>| {
        list.sort_by(|a, b| b.cmp(a));
    };
    newest_first(&mut orders);
    newest_first(&mut tenant_orders);
    activity.sort_by_key(|e| std::cmp::Reverse(e.recorded_at));
    Tenant {
        tenant,
        vendors,
        big,
        orders,
        tenant_orders,
        activity,
        first_day,
        last_day,
        view_bytes,
    }
}

/// One line of the report.
struct Measured {
    query: String,
    scale: String,
    rows: usize,
    reads: ReadTotals,
    took: Duration,
}

/// Runs `query` (which answers its row count) on the metered `table` and
/// keeps what it read.
async fn measure(
    table: &DynamoTable,
    report: &mut Vec<Measured>,
    query: &str,
    scale: &str,
    run: impl Future<Output = usize>,
) -> usize {
    let before = table.reads();
    let clock = Instant::now();
    let rows = run.await;
    let took = clock.elapsed();
    report.push(Measured {
        query: query.to_owned(),
        scale: scale.to_owned(),
        rows,
        reads: table.reads().since(&before),
        took,
    });
    rows
}

fn orders_query(
    t: &Tenant,
    vendor_id: Option<VendorId>,
    cursor: Option<(Timestamp, OrderId)>,
    limit: usize,
) -> OrderListQuery {
    OrderListQuery {
        tenant_id: t.tenant,
        vendor_id,
        from: Timestamp::from_micros(i64::MIN),
        until: Timestamp::from_micros(i64::MAX),
        cursor,
        limit,
    }
}

/// `orders` as the endpoint calls it; checks the page is the one expected.
async fn orders_page(
    table: &DynamoTable,
    query: OrderListQuery,
    expected: &[(Timestamp, OrderId)],
) -> usize {
    let rows = table.orders(&query).await.expect("orders");
    let got: Vec<(Timestamp, OrderId)> = rows
        .iter()
        .map(|r| (r.index.occurred_at, r.order_id))
        .collect();
    let skip = query.cursor.map_or(0, |c| {
        expected.iter().position(|o| *o == c).expect("cursor") + 1
    });
    let want: Vec<_> = expected
        .iter()
        .skip(skip)
        .take(query.limit)
        .copied()
        .collect();
    assert_eq!(got, want, "the page newest first");
    rows.len()
}

/// `day_sums` then `due_sums`, as the dashboard handler reads them.
async fn dashboard(
    table: &DynamoTable,
    t: &Tenant,
    vendor_id: Option<VendorId>,
    from: LocalDate,
) -> usize {
    day_sums(table, t, vendor_id, from).await + due_sums(table, t, vendor_id).await
}

async fn day_sums(
    table: &DynamoTable,
    t: &Tenant,
    vendor_id: Option<VendorId>,
    from: LocalDate,
) -> usize {
    let rows = table
        .day_sums(&DayRange {
            tenant_id: t.tenant,
            vendor_id,
            from,
            to: t.last_day,
        })
        .await
        .expect("day sums");
    let days = (t.last_day.as_naive() - from.as_naive()).num_days() as usize + 1;
    let vendors = if vendor_id.is_some() {
        1
    } else {
        t.vendors.len()
    };
    assert_eq!(rows.len(), days * vendors, "a day sum per vendor and day");
    rows.len()
}

async fn due_sums(table: &DynamoTable, t: &Tenant, vendor_id: Option<VendorId>) -> usize {
    let rows = table.due_sums(t.tenant, vendor_id).await.expect("due sums");
    let history = (t.last_day.as_naive() - t.first_day.as_naive()).num_days() as usize + 1;
    // Sales of the last week are due after the last day: still owed.
    let outstanding = history.min(7);
    let vendors = if vendor_id.is_some() {
        1
    } else {
        t.vendors.len()
    };
    assert_eq!(
        rows.len(),
        outstanding * vendors,
        "the outstanding due dates, none of the settled ones"
    );
    rows.len()
}

async fn activity_page(
    table: &DynamoTable,
    t: &Tenant,
    cursor_at: Option<usize>,
    limit: usize,
) -> usize {
    let cursor = cursor_at.map(|i| {
        let e = &t.activity[i];
        (e.recorded_at, e.stream, e.version)
    });
    let page = table
        .activity(&ActivityQuery {
            tenant_id: t.tenant,
            filter: ActivityFilter::Vendor(t.big),
            cursor,
            limit,
        })
        .await
        .expect("activity");
    let skip = cursor_at.map_or(0, |i| i + 1);
    let want: Vec<_> = t.activity.iter().skip(skip).take(limit).cloned().collect();
    assert_eq!(page, want, "the vendor's entries newest first");
    page.len()
}

async fn run(table: &DynamoTable, t: &Tenant, scale: Scale) -> Vec<Measured> {
    let mut report = Vec::new();
    let r = &mut report;
    let a = format!("(a) {} orders", scale.orders);
    let b = format!("(b) {} vendors", scale.vendors);
    let c = format!("(c) {} vendors, {} d", scale.vendors, scale.days);
    let deep = t.orders.len() / 2 - 1;
    let deep_activity = t.activity.len() / 2 - 1;
    let month = LocalDate::new(t.last_day.as_naive() - chrono::Days::new(29));
    let year = t.first_day;

    // (a) One vendor's orders and activity.
    let (at, id) = t.orders[deep];
    measure(table, r, "order by id (load)", &a, async {
        let key = ViewKey {
            tenant_id: t.tenant,
            stream: StreamId::order(id),
        };
        let loaded = table.load(&[key]).await.expect("load");
        assert!(loaded[0].is_some(), "the order's view");
        1
    })
    .await;
    for limit in [PAGE_DEFAULT, PAGE_ORDERS_MAX] {
        let q = orders_query(t, Some(t.big), None, limit);
        let name = format!("vendor orders, page 1, limit {limit}");
        measure(table, r, &name, &a, orders_page(table, q, &t.orders)).await;
        let q = orders_query(t, Some(t.big), Some((at, id)), limit);
        let name = format!("vendor orders, after #{}, limit {limit}", deep + 1);
        measure(table, r, &name, &a, orders_page(table, q, &t.orders)).await;
    }
    for limit in [PAGE_DEFAULT, PAGE_ACTIVITY_MAX] {
        let name = format!("vendor activity, page 1, limit {limit}");
        measure(table, r, &name, &a, activity_page(table, t, None, limit)).await;
    }
    let name = format!(
        "vendor activity, after #{}, limit {PAGE_DEFAULT}",
        deep_activity + 1
    );
    let page = activity_page(table, t, Some(deep_activity), PAGE_DEFAULT);
    measure(table, r, &name, &a, page).await;

    // (b) The tenant: dashboards over 30 days and its orders.
    for (who, vendor) in [("one vendor", Some(t.big)), ("all vendors", None)] {
        let name = format!("dashboard 30 d, {who}: day_sums");
        measure(table, r, &name, &b, day_sums(table, t, vendor, month)).await;
        let name = format!("dashboard 30 d, {who}: due_sums");
        measure(table, r, &name, &b, due_sums(table, t, vendor)).await;
        let name = format!("dashboard 30 d, {who} (both)");
        measure(table, r, &name, &b, dashboard(table, t, vendor, month)).await;
    }
    let deep_tenant = t.tenant_orders.len() / 2 - 1;
    for limit in [PAGE_DEFAULT, PAGE_ORDERS_MAX] {
        let q = orders_query(t, None, None, limit);
        let name = format!("tenant orders, page 1, limit {limit}");
        measure(table, r, &name, &b, orders_page(table, q, &t.tenant_orders)).await;
    }
    let q = orders_query(t, None, Some(t.tenant_orders[deep_tenant]), PAGE_DEFAULT);
    let name = format!(
        "tenant orders, after #{}, limit {PAGE_DEFAULT}",
        deep_tenant + 1
    );
    measure(table, r, &name, &b, orders_page(table, q, &t.tenant_orders)).await;

    // (c) A year by month: the same day sums, bucketed in memory.
    for (who, vendor) in [("one vendor", Some(t.big)), ("all vendors", None)] {
        let name = format!("dashboard 1 y by month, {who}: day_sums");
        measure(table, r, &name, &c, day_sums(table, t, vendor, year)).await;
        let name = format!("dashboard 1 y by month, {who} (both)");
        measure(table, r, &name, &c, dashboard(table, t, vendor, year)).await;
    }
    report
}

fn print(report: &[Measured]) {
    println!(
        "\n| query | scale | rows | calls | RCU (formula) | RCU (reported) | KB read | B/row | ms (local) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in report {
        let r = &m.reads;
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            m.query,
            m.scale,
            m.rows,
            r.calls,
            r.rcu_computed,
            r.rcu_reported,
            r.bytes as f64 / 1024.0,
            r.bytes.checked_div(r.items).unwrap_or(0),
            m.took.as_millis()
        );
    }
}

/// Each listing's growth, from the bytes a row of it weighs.
fn print_growth(report: &[Measured], t: &Tenant) {
    let per_row = |name: &str| {
        report
            .iter()
            .find(|m| m.query.starts_with(name))
            .map_or(0, |m| m.reads.bytes.checked_div(m.reads.items).unwrap_or(0))
    };
    let (order, activity) = (per_row("vendor orders"), per_row("vendor activity"));
    let (day, due) = (
        per_row("dashboard 30 d, all vendors: day_sums"),
        per_row("dashboard 30 d, all vendors: due_sums"),
    );
    println!(
        "\nGrowth (a Query page holds at most 1 MB; index reads 0.5 RCU per 4 KB, \
         table reads 1 RCU per 4 KB; an order view is {} bytes of view in a {order}-byte item):",
        t.view_bytes
    );
    println!(
        "- order by id: 1 BatchGetItem, 1 RCU (consistent, one item under 4 KB), whatever the history."
    );
    println!(
        "- orders (vendor or tenant) and activity pages: one Query of `limit` items ({order} B and \
         {activity} B each; a cursor page reads one more), whatever the depth, the orders and the vendors."
    );
    println!(
        "- day_sums, one vendor: a consistent range of the table, one {day}-byte item per day in the \
         range: ~{:.2} RCU per day.",
        day as f64 / 4096.0
    );
    println!(
        "- day_sums, all vendors: the `listing` index, one item per vendor per day in the range: \
         ~{:.3} RCU per vendor-day, and one call per ~{} vendor-days; bucketing by month reads the same.",
        day as f64 / 8192.0,
        (1 << 20) / day.max(1)
    );
    println!(
        "- due_sums: the outstanding due dates only (a settled one is deleted when paid), whatever \
         the dashboard's range: {due} B per vendor per outstanding due date, ~{:.3} RCU per \
         vendor-due-date on the index (~{:.2} per due date consistent, one vendor); it grows with \
         what is owed, not with history.",
        due as f64 / 8192.0,
        due as f64 / 4096.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not, and
    // `cargo bench -- --test` adds `--test`: a smoke test then.
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let scale = if full { FULL } else { QUICK };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = DynamoConfig {
            endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
            table_prefix: unique_prefix("reads"),
        };
        DynamoStore::create_and_connect(&config)
            .await
            .expect("create tables on DynamoDB Local");
        let table = DynamoTable::connect(&config).await.metered();
        let clock = Instant::now();
        let tenant = seed(&table, scale).await;
        eprintln!("seeded {scale:?} in {:.1?}", clock.elapsed());
        let seeding = table.reads();
        assert_eq!(seeding.calls, 0, "seeding reads nothing");
        let report = run(&table, &tenant, scale).await;
        print(&report);
        print_growth(&report, &tenant);
        if !full {
            println!("\n(a smoke test at {scale:?}; `cargo bench` runs {FULL:?})");
        }
    });
}
