//! The stream projector's handler on DynamoDB Local: batches delivered the
//! way the transports may deliver them (reordered across items, duplicated,
//! failed records redelivered with everything after them), a failure after
//! k writes, and the write capacity each projection costs per event
//! (`cargo test --test system streams -- --nocapture` prints it).

use std::sync::atomic::{AtomicI64, Ordering};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use ledger_core::LocalDate;
use ledger_core::codec;
use ledger_core::projection::ReadModels;
use ledger_store::dynamodb::change::Change;
use ledger_store::dynamodb::views::DynamoTable;
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::views::{
    Cost, Parked, StoredView, TableError, ViewKey, ViewTable, Write, WriteError,
};
use projector::StreamProjector;
use projector::plan::{Limits, pk_of};
use projector::record::ChangeRecord;
use tally_sim::{SimConfig, simulate};

use ledger_core::rng::SplitMix64;

/// A small day of trade: every event kind, several vendors and accounts.
fn log(seed: u64, tenant: &str) -> Vec<Vec<u8>> {
    let (ledger, _) = simulate(SimConfig {
        seed,
        tenant_id: ledger_core::TenantId::new(tenant),
        first_day: LocalDate::ymd(2026, 10, 1),
        days: 2,
        vendors: 3,
        employees: 6,
        sales_per_day: 40,
    });
    ledger.into_records()
}

/// Each record as the event table's stream carries it, with its position
/// as the record id.
fn records(log: &[Vec<u8>]) -> Vec<ChangeRecord> {
    log.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let e = codec::decode(bytes).expect("the simulator writes valid records");
            ChangeRecord {
                id: format!("{i:08}"),
                written_at_ms: None,
                change: Change::Event {
                    pk: pk_of(e.tenant_id(), e.stream()),
                    version: e.version().get(),
                    bytes: bytes.clone(),
                },
            }
        })
        .collect()
}

fn fresh_fold(log: &[Vec<u8>]) -> ReadModels {
    let mut models = ReadModels::default();
    for bytes in log {
        models.apply(&codec::decode(bytes).expect("valid records"));
    }
    models
}

async fn table(label: &str) -> DynamoTable {
    let config = DynamoConfig {
        endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
        table_prefix: unique_prefix(label),
    };
    DynamoStore::create_and_connect(&config)
        .await
        .expect("tables on DynamoDB Local");
    DynamoTable::connect(&config).await
}

/// Delivers `records` in shuffled batches with duplicates until none is
/// reported failed; returns the summed cost and the number of rounds.
async fn deliver<T: ViewTable>(
    projector: &StreamProjector<T>,
    records: Vec<ChangeRecord>,
    seed: u64,
) -> (Cost, u32) {
    let mut rng = SplitMix64::new(seed);
    let mut pending = records;
    let mut cost = Cost::default();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 50, "delivery does not converge");
        // Reorder across items, and duplicate a tenth.
        let mut batchable = pending.clone();
        for i in (1..batchable.len()).rev() {
            batchable.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in 0..batchable.len() / 10 {
            let copy = batchable[i * 7 % batchable.len()].clone();
            batchable.push(copy);
        }
        let mut failed = Vec::new();
        for batch in batchable.chunks(25) {
            let report = projector.handle(batch.to_vec()).await;
            cost.add(&report.cost);
            failed.extend(report.failed);
        }
        pending.retain(|r| failed.contains(&r.id));
    }
    (cost, rounds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_on_dynamodb_local_equals_a_fresh_fold() {
    let log = log(7, "streams-fold");
    let table = table("streams-fold").await;
    let projector = StreamProjector::new(table.clone());
    let (cost, rounds) = deliver(&projector, records(&log), 11).await;

    let state = table.scan().await.expect("the table scans");
    let drift = state.drift(&fresh_fold(&log));
    assert!(
        drift.is_empty(),
        "drift from a fresh fold:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        state.parked.is_empty(),
        "nothing is parked: {:?}",
        state.parked
    );

    let count = |kind: ledger_core::StreamKind| {
        log.iter()
            .filter(|b| codec::decode(b).is_ok_and(|e| e.stream().kind() == kind))
            .count() as f64
    };
    let (orders, credits) = (
        count(ledger_core::StreamKind::Order),
        count(ledger_core::StreamKind::Credit),
    );
    println!(
        "{} events ({orders} order, {credits} credit) in {rounds} rounds of shuffled, duplicated batches of 25",
        log.len()
    );
    println!(
        "WCU by AWS's formula, per event of the projection's streams: order views {:.2}, \
         dashboard sums {:.2} (per order event), credit views {:.2}; all projections per event {:.2}; \
         DynamoDB Local reported {:.1} in all",
        cost.orders / orders,
        cost.dashboard / orders,
        cost.credit / credits,
        cost.total() / log.len() as f64,
        cost.reported
    );
    assert!(cost.orders > 0.0 && cost.dashboard > 0.0 && cost.credit > 0.0);
}

/// The same handler over the SQLite read-model table, delivered the same
/// hostile way, folds to the same read models: the port holds on both
/// stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_on_sqlite_equals_a_fresh_fold() {
    let log = log(7, "streams-sqlite");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let table = ledger_store::sqlite::SqliteViews::open(&dir.path().join("log-views"))
        .expect("the table opens");
    let projector = StreamProjector::new(table.clone());
    deliver(&projector, records(&log), 13).await;
    let state = table.scan().await.expect("the table scans");
    let drift = state.drift(&fresh_fold(&log));
    assert!(
        drift.is_empty(),
        "drift from a fresh fold:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(state.parked.is_empty(), "nothing is parked");
    assert!(!state.views.is_empty() && !state.sums.is_empty());
}

/// A table that dies after a budget of operations, as a process would.
struct Crashing<T> {
    inner: T,
    budget: AtomicI64,
}

impl<T: ViewTable> Crashing<T> {
    fn spend(&self) -> Result<(), TableError> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err(TableError::Crashed)
        }
    }
}

impl<T: ViewTable> ViewTable for Crashing<T> {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        self.spend()?;
        self.inner.load(keys).await
    }
    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        self.spend()?;
        self.inner.parked_from(pk).await
    }
    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        self.spend()?;
        self.inner.write(write).await
    }
    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        self.spend()?;
        self.inner.park(parked).await
    }
    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        self.spend()?;
        self.inner.parked().await
    }
    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        self.spend()?;
        self.inner.unpark(pk, through).await
    }
    async fn record_activity(
        &self,
        entries: &[ledger_core::projection::activity::ActivityEntry],
    ) -> Result<Cost, TableError> {
        self.spend()?;
        self.inner.record_activity(entries).await
    }
    async fn activity(
        &self,
        query: &ledger_core::projection::activity::ActivityQuery,
    ) -> Result<Vec<ledger_core::projection::activity::ActivityEntry>, TableError> {
        self.spend()?;
        self.inner.activity(query).await
    }
    async fn seen(
        &self,
        tenant_id: ledger_core::TenantId,
        events: &[(ledger_core::StreamId, ledger_core::StreamVersion)],
    ) -> Result<bool, TableError> {
        self.spend()?;
        self.inner.seen(tenant_id, events).await
    }
    async fn scan(&self) -> Result<ledger_store::views::MemoryState, TableError> {
        self.inner.scan().await
    }

    async fn orders(
        &self,
        query: &ledger_core::projection::orders::OrderListQuery,
    ) -> Result<Vec<ledger_store::views::OrderRow>, TableError> {
        self.spend()?;
        self.inner.orders(query).await
    }

    async fn day_sums(
        &self,
        range: &ledger_store::views::DayRange,
    ) -> Result<Vec<ledger_store::views::DayRow>, TableError> {
        self.spend()?;
        self.inner.day_sums(range).await
    }

    async fn due_sums(
        &self,
        tenant_id: ledger_core::TenantId,
        vendor_id: Option<ledger_core::VendorId>,
    ) -> Result<Vec<ledger_store::views::DueRow>, TableError> {
        self.spend()?;
        self.inner.due_sums(tenant_id, vendor_id).await
    }

    async fn credit_views(
        &self,
        tenant_id: ledger_core::TenantId,
        after: Option<ledger_core::EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(ledger_core::EmployeeId, StoredView)>, TableError> {
        self.spend()?;
        self.inner.credit_views(tenant_id, after, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dying_after_k_writes_converges_when_redelivered() {
    let log = log(3, "streams-crash");
    let batch: Vec<ChangeRecord> = records(&log).into_iter().take(60).collect();
    let expected = fresh_fold(&log[..60]);
    // Small writes, so the batch takes many and the crash lands between them.
    let limits = Limits {
        actions: 4,
        bytes: usize::MAX,
    };
    for k in [1, 2, 4, 7] {
        let table = table("streams-crash").await;
        let crashing = StreamProjector::with_limits(
            Crashing {
                inner: table.clone(),
                budget: AtomicI64::new(k),
            },
            limits,
        );
        let report = crashing.handle(batch.clone()).await;
        assert!(
            !report.failed.is_empty(),
            "k = {k}: a crashed batch reports failures"
        );
        let half = table.scan().await.expect("the table scans");
        assert!(
            !half.drift(&expected).is_empty(),
            "k = {k}: the crash left the batch half written"
        );
        // Lambda redelivers the whole batch (a crash is a function error).
        let report = StreamProjector::with_limits(table.clone(), limits)
            .handle(batch.clone())
            .await;
        assert!(report.failed.is_empty(), "k = {k}: {:?}", report.failed);
        let state = table.scan().await.expect("the table scans");
        let drift = state.drift(&expected);
        assert!(
            drift.is_empty(),
            "k = {k}: drift:\n{}",
            drift
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Every event the store holds, folded from scratch (in any order across
/// streams: the fold's result does not depend on it).
async fn fold_store(store: &ledger_store::AnyStore) -> ReadModels {
    let mut models = ReadModels::default();
    for record in store.all_records().await.expect("the store reads") {
        models.apply(&codec::decode(&record.bytes).expect("valid records"));
    }
    models
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_through_the_api_reach_the_read_models_by_the_stream_and_by_kinesis() {
    use std::sync::Arc;
    use std::time::Duration;

    use aws_local::kinesis::{KinesisRunner, KinesisRunnerConfig};
    use aws_local::shim::{Faults, KinesisShim, ShimConfig};
    use aws_local::streams::StreamsRunnerConfig;
    use command_api::auth::Claims;
    use ledger_core::Role;
    use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
    use reqwest::Method;
    use serde_json::json;
    use tally::server::{Server, ServerConfig, StoreConfig};

    use crate::common::{self, Http};

    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Emulator::shared(Kind::DynamoDb).endpoint().to_owned();
    let config = DynamoConfig {
        endpoint: Some(endpoint.clone()),
        table_prefix: unique_prefix("streams-e2e"),
    };
    let server = Server::start(ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        demo: false,
        store: StoreConfig::Dynamo(config.clone()),
    })
    .await
    .expect("the server starts on DynamoDB Local");

    // The Kinesis path: the table's stream copied into kinesalite with
    // duplicates and reordering, projected into read-model tables of its own.
    let kinesis_config = DynamoConfig {
        endpoint: Some(endpoint.clone()),
        table_prefix: unique_prefix("streams-e2e-kinesis"),
    };
    DynamoStore::create_and_connect(&kinesis_config)
        .await
        .expect("tables for the Kinesis path");
    let kinesis_table = DynamoTable::connect(&kinesis_config).await;
    let stream_name = unique_prefix("streams-e2e")
        .trim_end_matches('-')
        .to_owned();
    let kinesis = Emulator::shared(Kind::Kinesis).endpoint().to_owned();
    let shim = KinesisShim::start(ShimConfig {
        source: StreamsRunnerConfig::new(Some(endpoint.clone()), config.table_names().0),
        kinesis_endpoint: Some(kinesis.clone()),
        stream_name: stream_name.clone(),
        shard_count: 3,
        faults: Faults {
            seed: 5,
            duplicate_probability: 0.2,
            hold_back_probability: 0.2,
            reorder_window: 8,
        },
    })
    .await
    .expect("the shim starts");
    let kinesis_projector = Arc::new(StreamProjector::new(kinesis_table.clone()));
    let kinesis_runner = KinesisRunner::start(
        KinesisRunnerConfig::new(Some(kinesis), stream_name),
        move |event| {
            let projector = Arc::clone(&kinesis_projector);
            async move { projector::lambda::handle_kinesis(&projector, event).await }
        },
    )
    .await
    .expect("the Kinesis runner starts");

    let http = Http::new(format!("http://{}", server.addr));
    let tenant = TenantId::new("sys-streams");
    let mint = |role: Role| {
        server.key.mint(&Claims::new(
            tenant,
            UserId::new("sys-streams"),
            &[role],
            (role == Role::Cashier).then(|| VendorId::new("V1")),
            None::<EmployeeId>,
            Duration::from_secs(600),
        ))
    };
    let (admin, cashier) = (mint(Role::Admin), mint(Role::Cashier));
    let employees: Vec<String> = (1..=3).map(|n| format!("E{n}")).collect();
    common::set_up_tenant(&http, &admin, "V1", &employees, "5000.00").await;
    for n in 0..24 {
        let order_id = format!("o-{n:03}");
        let payment = match n % 3 {
            0 => json!({"method": "cash"}),
            1 => json!({"method": "credit", "employee_id": employees[n % employees.len()]}),
            _ => json!({"method": "card"}),
        };
        http.must(
            Method::POST,
            "/v1/sales",
            &cashier,
            &order_id,
            json!({
                "order_id": order_id,
                "lines": [{"item": "ADOBO-RICE-BOWL", "quantity": 1 + n % 3, "unit_price": "85.00"}],
                "payment": payment,
            }),
        )
        .await;
        if n % 4 == 1 {
            http.must(
                Method::POST,
                &format!("/v1/orders/{order_id}/refunds"),
                &admin,
                &format!("refund-{order_id}"),
                json!({"refund_id": format!("r-{order_id}"), "amount": "20.00", "reason": "cold"}),
            )
            .await;
        }
    }

    let runner = server
        .stream_projection()
        .expect("the server runs the stream projector");
    runner
        .caught_up(Duration::from_secs(60))
        .await
        .expect("the stream projector catches up");
    shim.runner()
        .caught_up(Duration::from_secs(60))
        .await
        .expect("the shim copies everything");
    kinesis_runner
        .caught_up(Duration::from_secs(60))
        .await
        .expect("the Kinesis runner catches up");

    let fresh = fold_store(server.store()).await;
    assert!(fresh.orders.len() >= 24, "the checkouts are in the log");
    let by_stream = DynamoTable::connect(&config)
        .await
        .scan()
        .await
        .expect("scans");
    let drift = by_stream.drift(&fresh);
    assert!(
        drift.is_empty(),
        "stream path drift:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let by_kinesis = kinesis_table.scan().await.expect("scans");
    let drift = by_kinesis.drift(&fresh);
    assert!(
        drift.is_empty(),
        "Kinesis path drift:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(by_stream.parked.is_empty() && by_kinesis.parked.is_empty());
    let delivered = kinesis_runner.stats();
    assert!(
        shim.records_written() > runner.stats().records_acknowledged,
        "the shim duplicated records ({} written for {} in the table's stream)",
        shim.records_written(),
        runner.stats().records_acknowledged
    );
    println!(
        "stream path: {:?}\nKinesis path: {} records written by the shim, {delivered:?}",
        runner.stats(),
        shim.records_written()
    );
    let health = http.health().await.expect("healthz answers");
    assert!(
        health["stream_projection"]["records_acknowledged"].as_u64() > Some(0),
        "/healthz reports the stream projector: {health}"
    );
    kinesis_runner.stop().await;
    shim.stop().await;
    server.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_parked_with_what_waits_behind_it_and_tally_parked_lists_it() {
    let log = log(9, "streams-poison");
    let mut recs = records(&log);
    // The first order stream with at least two events: its first event
    // becomes poison.
    let order_pk = recs
        .iter()
        .filter_map(|r| match &r.change {
            Change::Event { pk, version: 2, .. } if pk.contains("|order/") => Some(pk.clone()),
            _ => None,
        })
        .next()
        .expect("an order with a refund or a payment");
    for r in &mut recs {
        if let Change::Event {
            pk,
            version: 1,
            bytes,
        } = &mut r.change
            && *pk == order_pk
        {
            bytes.truncate(10);
        }
    }
    let config = DynamoConfig {
        endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
        table_prefix: unique_prefix("streams-poison"),
    };
    DynamoStore::create_and_connect(&config)
        .await
        .expect("tables");
    let table = DynamoTable::connect(&config).await;
    let projector = StreamProjector::new(table.clone());
    for batch in recs.chunks(30) {
        let report = projector.handle(batch.to_vec()).await;
        assert!(
            report.failed.is_empty(),
            "parking never blocks: {:?}",
            report.failed
        );
    }

    let parked = table.parked().await.expect("parked records read");
    let versions: Vec<(u64, Option<u64>)> = parked.iter().map(|p| (p.version, p.behind)).collect();
    let expected: Vec<(u64, Option<u64>)> = recs
        .iter()
        .filter_map(|r| match &r.change {
            Change::Event { pk, version, .. } if *pk == order_pk => {
                Some((*version, (*version > 1).then_some(1)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        versions, expected,
        "the poison and every later event of its order"
    );
    assert!(
        parked[0].error.contains("does not decode"),
        "{:?}",
        parked[0]
    );
    assert!(parked.iter().all(|p| p.pk == order_pk));

    // Every other stream flowed: the read models equal a fresh fold of the
    // log without the poisoned order.
    let mut expected_models = ReadModels::default();
    for bytes in &log {
        let e = codec::decode(bytes).expect("valid");
        if pk_of(e.tenant_id(), e.stream()) != order_pk {
            expected_models.apply(&e);
        }
    }
    let drift = table.scan().await.expect("scans").drift(&expected_models);
    assert!(
        drift.is_empty(),
        "drift:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Operators see them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "parked",
            "--store",
            "dynamodb",
            "--endpoint",
            Emulator::shared(Kind::DynamoDb).endpoint(),
        ])
        .args(["--table-prefix", &config.table_prefix])
        .output()
        .expect("tally parked runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), parked.len());
    assert_eq!(lines[0]["stream"], order_pk.as_str());
    assert_eq!(lines[0]["version"], 1);
}
