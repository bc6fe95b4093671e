//! The stream projector's handler: events per second through
//! `StreamProjector::handle` on the in-memory table (the core's own cost: decode,
//! plan, fold, pack), on the SQLite table (what the embedded follower
//! does per page) and on DynamoDB Local (what a Lambda invocation does
//! against a table), beside the baseline of the in-process fold of the same
//! records (decode + `ReadModels::apply`), all in the same run; then the
//! end-to-end lag on DynamoDB Local, from a checkout's `201` over HTTP to its
//! order view in the read-model table, through the table's stream, the local
//! runner and the handler.
//!
//! `cargo bench --bench projector` prints events per second ("elem/s") and
//! the lag's p50/p99.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use criterion::{BatchSize, Criterion, Throughput};
use ledger_core::codec;
use ledger_core::projection::ReadModels;
use ledger_store::dynamodb::change::Change;
use ledger_store::dynamodb::views::DynamoTable;
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::SqliteViews;
use ledger_store::views::{MemoryTable, ViewKey, ViewTable};
use projector::StreamProjector;
use projector::plan::pk_of;
use projector::record::ChangeRecord;
use tally_sim::{SimConfig, simulate};

/// Records per Lambda batch (the event source mapping's default).
const BATCH: usize = 100;
/// Checkouts whose lag is measured.
const LAG_SAMPLES: usize = 200;

fn log(tenant: &str, sales_per_day: u32) -> Vec<Vec<u8>> {
    simulate(SimConfig {
        tenant_id: ledger_core::TenantId::new(tenant),
        days: 3,
        vendors: 6,
        employees: 60,
        sales_per_day,
        ..SimConfig::default()
    })
    .0
    .into_records()
}

fn records(log: &[Vec<u8>]) -> Vec<ChangeRecord> {
    log.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let e = codec::decode(bytes).expect("valid records");
            ChangeRecord {
                id: i.to_string(),
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

async fn project_all<T: ViewTable>(projector: &StreamProjector<T>, records: &[ChangeRecord]) {
    for batch in records.chunks(BATCH) {
        let report = projector.handle(batch.to_vec()).await;
        assert!(report.failed.is_empty(), "in log order nothing fails");
    }
}

fn throughput(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let workload = log("bench", 300);
    let recs = records(&workload);
    let mut group = c.benchmark_group("handler");
    group.throughput(Throughput::Elements(workload.len() as u64));
    group.sample_size(10);
    group.bench_function("in-process fold (baseline)", |b| {
        b.iter(|| {
            let mut models = ReadModels::default();
            for bytes in &workload {
                models.apply(&codec::decode(bytes).expect("valid"));
            }
            black_box(models)
        })
    });
    group.bench_function("handler on the in-memory table", |b| {
        b.iter_batched(
            || StreamProjector::new(MemoryTable::new()),
            |p| runtime.block_on(project_all(&p, &recs)),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("handler on the SQLite table", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let table = SqliteViews::open(&dir.path().join("views")).expect("the table");
                (dir, StreamProjector::new(table))
            },
            |(dir, p)| {
                runtime.block_on(project_all(&p, &recs));
                drop(p);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // On DynamoDB Local every iteration needs events the table has not
    // seen: a log of its own tenant, made before the clock starts.
    let small = log("bench-ddb-0", 40);
    let mut group = c.benchmark_group("handler on DynamoDB Local");
    group.throughput(Throughput::Elements(small.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let table = runtime.block_on(async {
        let config = DynamoConfig {
            endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
            table_prefix: unique_prefix("bench-projector"),
        };
        DynamoStore::create_and_connect(&config)
            .await
            .expect("tables on DynamoDB Local");
        DynamoTable::connect(&config).await
    });
    let projector = StreamProjector::new(table);
    let mut tenant = 0u64;
    group.bench_function("batches of 100 in log order", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                tenant += 1;
                let recs = records(&log(&format!("bench-ddb-{tenant}"), 40));
                let start = Instant::now();
                runtime.block_on(project_all(&projector, &recs));
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// From a checkout's `201` to its order view in the read-model table.
fn lag(runtime: &tokio::runtime::Runtime, samples: usize) {
    runtime.block_on(async {
        use tally::server::{Server, ServerConfig, StoreConfig};
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = DynamoConfig {
            endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
            table_prefix: unique_prefix("bench-lag"),
        };
        let server = Server::start(ServerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            demo: false,
            store: StoreConfig::Dynamo(config.clone()),
        })
        .await
        .expect("the server starts on DynamoDB Local");
        let table = DynamoTable::connect(&config).await;
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        let tenant = ledger_core::TenantId::new("bench-lag");
        let token = |role: ledger_core::Role| {
            server.key.mint(&command_api::auth::Claims::new(
                tenant,
                ledger_core::UserId::new("bench"),
                &[role],
                (role == ledger_core::Role::Cashier).then(|| ledger_core::VendorId::new("V1")),
                None::<ledger_core::EmployeeId>,
                Duration::from_secs(3600),
            ))
        };
        let (admin, cashier) = (
            token(ledger_core::Role::Admin),
            token(ledger_core::Role::Cashier),
        );
        let send = |token: &str, path: &str, key: &str, body: serde_json::Value| {
            http.post(format!("{base}{path}"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
        };
        let put = http
            .put(format!("{base}/v1/tenant"))
            .bearer_auth(&admin)
            .header("idempotency-key", "t")
            .json(&serde_json::json!({"currency": "PHP", "time_zone": "Asia/Manila"}))
            .send()
            .await
            .expect("tenant");
        assert!(put.status().is_success());
        let vendor = send(
            &admin,
            "/v1/vendors",
            "v",
            serde_json::json!({"vendor_id": "V1", "name": "Canteen", "commission_rate": 1000}),
        )
        .await
        .expect("vendor");
        assert!(vendor.status().is_success());

        let mut lags = Vec::with_capacity(samples);
        for n in 0..samples {
            let order_id = format!("lag-{n:04}");
            let reply = send(
                &cashier,
                "/v1/sales",
                &order_id,
                serde_json::json!({
                    "order_id": order_id,
                    "lines": [{"item": "ICED-TEA", "quantity": 1, "unit_price": "35.00"}],
                    "payment": {"method": "cash"},
                }),
            )
            .await
            .expect("checkout");
            assert_eq!(reply.status(), 201);
            let acknowledged = Instant::now();
            let key = ViewKey {
                tenant_id: tenant,
                stream: ledger_core::StreamId::order(ledger_core::OrderId::new(&order_id)),
            };
            loop {
                let stored = table.load(&[key]).await.expect("loads");
                if stored[0].is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lags.push(acknowledged.elapsed());
        }
        lags.sort();
        let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
        println!(
            "end-to-end lag on DynamoDB Local, checkout 201 to order view ({samples} checkouts, \
             runner polling every {:?}): p50 {:?}, p99 {:?}, max {:?}",
            aws_local::mapping::IDLE_POLL_INTERVAL_DEFAULT,
            at(0.50),
            at(0.99),
            lags[lags.len() - 1]
        );
        server.stop().await.expect("a clean stop");
    });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c, &runtime);
    // `cargo test` runs benchmarks once as a smoke test (only `cargo bench`
    // passes `--bench`): a few checkouts prove the lag path.
    let samples = if std::env::args().any(|a| a == "--bench") {
        LAG_SAMPLES
    } else {
        5
    };
    lag(&runtime, samples);
    c.final_summary();
}
