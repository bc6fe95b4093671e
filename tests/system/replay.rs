//! The audit and replay tools (`tally audit`, `digest`, `export`, `replay
//! verify`, `replay as-of`) run as the real binary against a ledger a real
//! server seeded and projected, on both stores; faults are planted below
//! the command API, as someone with write access to the tables could.

use std::process::Command;
use std::time::Duration;

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use ledger_core::codec;
use ledger_core::envelope::Envelope;
use ledger_core::event::{CreditSpent, Event};
use ledger_core::id::{OrderId, StreamId, StreamKind, StreamVersion, TenantId, UserId};
use ledger_core::time::Timestamp;
use ledger_store::dynamodb::DynamoConfig;
use ledger_store::views::{AnyTable, Sum, SumAdd, SumKey, ViewTable, Write};
use ledger_store::{AnyStore, Record, tamper};
use serde_json::Value;
use tally::server::{Server, ServerConfig, StoreConfig};

use crate::common::Http;

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Dynamo,
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tools_find_every_planted_fault() {
        super::the_tools_find_every_planted_fault(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redrive_applies_parked_records_and_clears_them_once() {
        super::redrive_applies_parked_records_and_clears_them_once(super::Backend::Sqlite).await;
    }
}

mod dynamodb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tools_find_every_planted_fault() {
        super::the_tools_find_every_planted_fault(super::Backend::Dynamo).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redrive_applies_parked_records_and_clears_them_once() {
        super::redrive_applies_parked_records_and_clears_them_once(super::Backend::Dynamo).await;
    }
}

const DEMO: &str = "demo";
/// How long the stream projector may take to project a seeded demo tenant
/// (some ten thousand events) on DynamoDB Local: about 20 s alone, several
/// times that while the suite's other DynamoDB tests share the emulator and
/// the two cores. A bound on liveness, not a speed target.
const DEMO_PROJECTED_WAIT: Duration = Duration::from_secs(300);

/// A demo ledger seeded and projected by a real server, then stopped.
struct Fixture {
    _dir: tempfile::TempDir,
    args: Vec<String>,
    store: AnyStore,
    views: AnyTable,
}

async fn seeded(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, args) = match backend {
        Backend::Sqlite => (
            StoreConfig::Sqlite,
            vec!["--data".to_owned(), dir.path().display().to_string()],
        ),
        Backend::Dynamo => {
            let endpoint = tokio::task::spawn_blocking(|| {
                Emulator::shared(Kind::DynamoDb).endpoint().to_owned()
            })
            .await
            .expect("DynamoDB Local starts");
            let prefix = unique_prefix("sys-replay");
            (
                StoreConfig::Dynamo(DynamoConfig {
                    endpoint: Some(endpoint.clone()),
                    table_prefix: prefix.clone(),
                }),
                vec![
                    "--store".to_owned(),
                    "dynamodb".to_owned(),
                    "--endpoint".to_owned(),
                    endpoint,
                    "--table-prefix".to_owned(),
                    prefix,
                ],
            )
        }
    };
    let server = start_demo(dir.path(), store).await;
    match server.stream_projection() {
        Some(runner) => runner
            .caught_up(DEMO_PROJECTED_WAIT)
            .await
            .expect("the stream projector catches up"),
        None => {
            let http = Http::new(format!("http://{}", server.addr));
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                let health = http.health().await.expect("/healthz answers");
                if health["projection_lag_records"] == 0 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the follower catches up: {health}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let store = server.store().clone();
    let views = server.views().clone();
    server.stop().await.expect("the server stops");
    Fixture {
        _dir: dir,
        args,
        store,
        views,
    }
}

/// A server on `store` with the demo tenant, in a fresh data directory.
async fn demo_server(store: StoreConfig) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = start_demo(dir.path(), store).await;
    (dir, server)
}

async fn start_demo(data_dir: &std::path::Path, store: StoreConfig) -> Server {
    Server::start(ServerConfig {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        demo: true,
        store,
    })
    .await
    .expect("the server starts")
}

/// Runs the real binary; its exit code and stdout.
async fn tally(fixture: &Fixture, args: &[&str]) -> (i32, String) {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(fixture.args.iter().cloned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(&all)
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the binary returns");
    let stdout = String::from_utf8(output.stdout).expect("stdout is text");
    let code = output.status.code().expect("the binary exits");
    assert!(
        code == 0 || code == 1,
        "{args:?} exited {code}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (code, stdout)
}

async fn tally_json(fixture: &Fixture, args: &[&str]) -> (i32, Value) {
    let (code, out) = tally(fixture, args).await;
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    (code, value)
}

fn findings(report: &Value) -> Vec<Value> {
    report["report"]["findings"]
        .as_array()
        .expect("findings")
        .clone()
}

/// The findings that name `stream`.
fn naming(report: &Value, stream: StreamId) -> Vec<Value> {
    let stream = stream.to_string();
    findings(report)
        .into_iter()
        .filter(|f| f.to_string().contains(&format!("\"{stream}\"")))
        .collect()
}

/// A stream of `kind` with at least `events` events, and its records.
fn stream_with(
    records: &[Record],
    kind: StreamKind,
    events: usize,
    except: &[StreamId],
) -> (StreamId, Vec<Record>) {
    let mut by_stream: std::collections::BTreeMap<StreamId, Vec<Record>> = Default::default();
    for r in records.iter().filter(|r| r.stream.kind() == kind) {
        by_stream.entry(r.stream).or_default().push(r.clone());
    }
    by_stream
        .into_iter()
        .find(|(s, rs)| rs.len() >= events && !except.contains(s))
        .unwrap_or_else(|| panic!("a {kind:?} stream of {events} events"))
}

async fn the_tools_find_every_planted_fault(backend: Backend) {
    let fixture = seeded(backend).await;
    let tenant = TenantId::new(DEMO);

    // A clean ledger: audit and verify pass, exit 0.
    let (code, clean) = tally_json(&fixture, &["audit", "--json"]).await;
    assert_eq!(code, 0, "{clean:#}");
    let events = clean["report"]["events"].as_u64().expect("events");
    assert!(events > 1000, "{events}");
    let summary = &clean["report"]["tenants"][DEMO];
    assert_eq!(summary["events"].as_u64(), Some(events));
    assert_ne!(summary["gross_sales"], "0", "{summary}");
    let (code, verified) = tally_json(&fixture, &["replay", "verify", "--json"]).await;
    assert_eq!(code, 0, "{verified:#}");

    // A digest kept now holds against the untouched log.
    let at = Timestamp::from_datetime(chrono::Utc::now() + chrono::Duration::hours(1));
    let at = at.to_datetime().to_rfc3339();
    let (_, digest) = tally(&fixture, &["digest", "--at", &at]).await;
    let digest = digest.trim().to_owned();
    assert!(digest.starts_with("tally-digest/1/*/"), "{digest}");
    let (code, holds) = tally_json(&fixture, &["audit", "--json", "--against", &digest]).await;
    assert_eq!(code, 0, "{holds:#}");
    assert_eq!(holds["digest"]["holds"], true);

    // Export: every event once, each line the envelope that seals to the
    // stored hash (so nothing needed to recompute the chain is lost).
    let (code, jsonl) = tally(&fixture, &["export", "--format", "jsonl"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len() as u64, events);
    let schema: Value = serde_json::from_str(include_str!("../../schemas/events/Envelope.json"))
        .expect("the published schema is JSON");
    let schema = jsonschema::validator_for(&schema).expect("the published schema compiles");
    let mut broken: Value = serde_json::from_str(lines[0]).expect("a line is JSON");
    broken["version"] = Value::from("one");
    assert!(
        !schema.is_valid(&broken),
        "the schema holds lines to something"
    );
    for line in &lines {
        let value: Value = serde_json::from_str(line).expect("a line is JSON");
        if let Some(error) = schema.iter_errors(&value).next() {
            panic!("an exported line breaks schemas/events/Envelope.json: {error}: {line}");
        }
        let envelope: Envelope = serde_json::from_value(value).expect("a line is an envelope");
        let sealed = codec::seal(envelope.header, envelope.event.clone(), envelope.prev_hash)
            .expect("an exported event seals again");
        assert_eq!(sealed.envelope.hash, envelope.hash, "{line}");
    }
    let (_, again) = tally(&fixture, &["export", "--format", "jsonl"]).await;
    assert_eq!(again, jsonl, "the same ledger exports to the same bytes");

    let records = fixture.store.all_records().await.expect("the log reads");
    let (credit, credit_records) = stream_with(&records, StreamKind::Credit, 2, &[]);
    let (_, one) = tally(&fixture, &["export", "--stream", &credit.to_string()]).await;
    let versions: Vec<u64> = one
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["version"]
                .as_u64()
                .expect("v")
        })
        .collect();
    assert_eq!(
        versions,
        (1..=credit_records.len() as u64).collect::<Vec<_>>()
    );

    // As of an instant before the log began: nothing; after it: the audit's figures.
    let (_, before) = tally_json(
        &fixture,
        &["replay", "as-of", "--json", "--at", "2000-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(before["tenants"], serde_json::json!({}));
    let (_, after) = tally_json(&fixture, &["replay", "as-of", "--json", "--at", &at]).await;
    let payable: rust_decimal::Decimal = after["tenants"][DEMO]["payable"]
        .as_object()
        .expect("payables")
        .values()
        .map(|v| {
            v.as_str()
                .expect("a decimal")
                .parse::<rust_decimal::Decimal>()
                .expect("decimal")
        })
        .sum();
    assert_eq!(
        payable.to_string(),
        summary["vendor_payable"].as_str().expect("payable")
    );

    // Planted below the API: one flipped byte, a deleted event, a spend
    // that overdraws a credit account, and a vendor stream rewritten and
    // rehashed end to end.
    let (tampered, tampered_records) = stream_with(&records, StreamKind::Order, 1, &[]);
    let mut bytes = tampered_records[0].bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    tamper::put_record(
        &fixture.store,
        tenant,
        tampered,
        StreamVersion::new(1),
        bytes,
    )
    .await
    .expect("a byte flips");

    let (gapped, _) = stream_with(&records, StreamKind::Credit, 3, &[credit]);
    tamper::delete_record(&fixture.store, tenant, gapped, StreamVersion::new(2))
        .await
        .expect("an event goes");

    let overdrawn = credit_records
        .last()
        .map(|r| codec::decode(&r.bytes).expect("decodes"))
        .expect("a last event");
    let currency = overdrawn
        .event
        .currency()
        .expect("a credit event has a currency");
    let mut header = overdrawn.header;
    header.version = overdrawn.header.version.next();
    let spend = Event::CreditSpent(CreditSpent {
        order_id: OrderId::new("O-planted"),
        amount: ledger_core::Money::parse(rust_decimal::Decimal::new(99_999_999, 2), currency)
            .expect("an amount"),
        balance_after: ledger_core::Money::zero(currency),
    });
    let planted = codec::seal(header, spend, overdrawn.hash).expect("the spend seals");
    tamper::put_record(
        &fixture.store,
        tenant,
        credit,
        planted.envelope.version(),
        planted.bytes.clone(),
    )
    .await
    .expect("the spend is planted");

    let (vendor, vendor_records) = stream_with(&records, StreamKind::Vendor, 1, &[]);
    let mut prev = ledger_core::Hash::GENESIS;
    for r in &vendor_records {
        let mut e = codec::decode(&r.bytes).expect("decodes");
        e.header.actor.user_id = UserId::new("mallory");
        let resealed = codec::seal(e.header, e.event, prev).expect("reseals");
        prev = resealed.envelope.hash;
        tamper::put_record(&fixture.store, tenant, vendor, r.version, resealed.bytes)
            .await
            .expect("rewritten");
    }

    let (code, found) = tally_json(&fixture, &["audit", "--json"]).await;
    assert_eq!(code, 1, "{found:#}");
    let kinds = |stream| -> Vec<String> {
        naming(&found, stream)
            .iter()
            .map(|f| f["finding"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let flipped = kinds(tampered);
    assert!(
        flipped
            .iter()
            .any(|k| k == "hash_mismatch" || k == "undecodable"),
        "{flipped:?}"
    );
    assert!(
        kinds(gapped).contains(&"version_gap".to_owned()),
        "{:?}",
        kinds(gapped)
    );
    let overdraw: Vec<Value> = findings(&found)
        .into_iter()
        .filter(|f| f["finding"] == "negative_credit" && f["employee_id"] == credit.id().as_str())
        .collect();
    assert_eq!(overdraw.len(), 1, "{found:#}");
    assert_eq!(overdraw[0]["version"], planted.envelope.version().get());
    assert!(
        kinds(vendor).is_empty(),
        "a rehashed stream passes a plain audit: {:?}",
        kinds(vendor)
    );

    // Only the digest sees the rewritten stream.
    let (code, against) = tally_json(&fixture, &["audit", "--json", "--against", &digest]).await;
    assert_eq!(code, 1);
    assert_eq!(against["digest"]["holds"], false);
    assert!(
        findings(&against)
            .iter()
            .any(|f| f["finding"] == "digest_mismatch"),
        "{against:#}"
    );

    // A planted drift in the read models: verify names its key.
    let (vendor_id, date) = match fixture
        .views
        .scan()
        .await
        .expect("scans")
        .sums
        .keys()
        .next()
    {
        Some(SumKey::Day {
            vendor_id, date, ..
        }) => (*vendor_id, *date),
        other => panic!("a day sum: {other:?}"),
    };
    let totals = ledger_core::projection::dashboard::DayTotals {
        gross: rust_decimal::Decimal::ONE,
        ..Default::default()
    };
    fixture
        .views
        .write(&Write {
            views: Vec::new(),
            sums: vec![SumAdd {
                key: SumKey::Day {
                    tenant_id: tenant,
                    vendor_id,
                    date,
                },
                add: Sum::Day(totals),
                currency: None,
            }],
        })
        .await
        .expect("a sum is added below the projector");
    let (_, drifted) = tally_json(
        &fixture,
        &["replay", "verify", "--json", "--projection", "dashboard"],
    )
    .await;
    let drift = drifted["drift"].as_array().expect("drift");
    assert!(
        drift.iter().any(|d| d["projection"] == "dashboard"
            && d["key"]
                .as_str()
                .unwrap_or_default()
                .contains(vendor_id.as_str())),
        "{drifted:#}"
    );
}

/// A rebuild can stop short of switching and resume later; it folds every
/// event once across the two runs, then the new generation is live and
/// agrees with a fresh fold, and the old one is left untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_resumes_and_switches_to_an_exact_generation() {
    let fixture = seeded(Backend::Sqlite).await;
    let (_, audit) = tally_json(&fixture, &["audit", "--json"]).await;
    let events = audit["report"]["events"].as_u64().expect("events");
    let database = std::path::Path::new(&fixture.args[1]).join(tally::server::DATABASE_FILE);
    let old = ledger_store::sqlite::views_path(&database);
    let old_bytes = std::fs::metadata(&old).expect("the live generation").len();

    // A second rebuilder of one generation refuses, and writes nothing.
    let next = ledger_store::sqlite::generation_path(&database, 2);
    let mut lock_name = next.clone().into_os_string();
    lock_name.push(".lock");
    let held = std::fs::File::create(&lock_name).expect("the lock file");
    held.try_lock().expect("the test holds the lock");
    let mut refused = Command::new(env!("CARGO_BIN_EXE_tally"));
    refused.args(["replay", "rebuild"]).args(&fixture.args);
    let refused = tokio::task::spawn_blocking(move || refused.output().expect("runs"))
        .await
        .expect("returns");
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another rebuild"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!next.exists(), "a refused rebuild creates no generation");
    assert_eq!(
        ledger_store::sqlite::live_generation(&database).expect("reads"),
        1
    );
    drop(held);

    let (code, first) = tally_json(&fixture, &["replay", "rebuild", "--no-switch", "--json"]).await;
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(first["generation"], 2);
    assert_eq!(first["switched"], false);
    assert_eq!(first["folded"].as_u64(), Some(events));
    assert_eq!(
        ledger_store::sqlite::live_generation(&database).expect("reads"),
        1
    );

    let (code, second) = tally_json(&fixture, &["replay", "rebuild", "--json"]).await;
    assert_eq!(code, 0, "{second:#}");
    assert_eq!(second["folded"], 0, "the second run resumes: {second:#}");
    assert_eq!(second["switched"], true);
    assert_eq!(
        ledger_store::sqlite::live_generation(&database).expect("reads"),
        2
    );
    assert_eq!(
        std::fs::metadata(&old)
            .expect("the old generation is left")
            .len(),
        old_bytes
    );

    let (code, verified) = tally_json(&fixture, &["replay", "verify", "--json"]).await;
    assert_eq!(
        code, 0,
        "the new generation equals a fresh fold: {verified:#}"
    );
    let (code, audited) = tally_json(&fixture, &["audit", "--json"]).await;
    assert_eq!(code, 0, "{audited:#}");
}

/// `tally load` runs against a server while `replay rebuild` builds and
/// switches in a new generation: the server adopts it, the load
/// generator's own read-back passes, and the live generation equals a
/// fresh fold of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_loses_nothing_and_counts_nothing_twice() {
    let (dir, server) = demo_server(StoreConfig::Sqlite).await;
    let url = format!("http://{}", server.addr);
    let data = dir.path().display().to_string();
    let load = {
        let (url, data) = (url.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tally"))
                .args(["load", "--url", &url, "--data", &data])
                .args(["--concurrency", "8", "--employees", "20", "--vendors", "3"])
                .args(["--duration", "6", "--seed", "11"])
                .output()
                .expect("tally load runs")
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rebuilt = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tally"))
                .args(["replay", "rebuild", "--json", "--data", &data])
                .output()
                .expect("the rebuild runs")
        })
        .await
        .expect("the rebuild returns")
    };
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let rebuilt: Value = serde_json::from_slice(&rebuilt.stdout).expect("json");
    assert_eq!(rebuilt["switched"], true, "{rebuilt:#}");

    let load = load.await.expect("the load returns");
    let stdout = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(stdout.contains("Verification PASSED"), "{stdout}");

    let http = Http::new(url);
    let health = http.health().await.expect("/healthz answers");
    assert_eq!(health["read_model_generation"], 2, "{health}");
    assert_eq!(health["projection_lag_records"], 0, "{health}");
    server.stop().await.expect("the server stops");

    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["replay", "verify", "--json", "--data", &data])
        .output()
        .expect("verify runs");
    let verified: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(output.status.code(), Some(0), "{verified:#}");
}

/// An empty ledger of `backend`: its store, its read models, and the
/// arguments that name it.
async fn empty_ledger(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    match backend {
        Backend::Sqlite => {
            let database = dir.path().join(tally::server::DATABASE_FILE);
            let store = ledger_store::sqlite::SqliteStore::open(&database).expect("opens");
            let views = ledger_store::sqlite::SqliteViews::open(&ledger_store::sqlite::views_path(
                &database,
            ))
            .expect("opens");
            Fixture {
                args: vec!["--data".to_owned(), dir.path().display().to_string()],
                _dir: dir,
                store: AnyStore::Sqlite(store),
                views: AnyTable::Sqlite(views),
            }
        }
        Backend::Dynamo => {
            let endpoint = tokio::task::spawn_blocking(|| {
                Emulator::shared(Kind::DynamoDb).endpoint().to_owned()
            })
            .await
            .expect("DynamoDB Local starts");
            let config = DynamoConfig {
                endpoint: Some(endpoint.clone()),
                table_prefix: unique_prefix("sys-redrive"),
            };
            let store = ledger_store::dynamodb::DynamoStore::create_and_connect(&config)
                .await
                .expect("tables");
            let views = ledger_store::dynamodb::views::DynamoTable::connect(&config).await;
            Fixture {
                args: vec![
                    "--store".to_owned(),
                    "dynamodb".to_owned(),
                    "--endpoint".to_owned(),
                    endpoint,
                    "--table-prefix".to_owned(),
                    config.table_prefix.clone(),
                ],
                _dir: dir,
                store: AnyStore::Dynamo(store),
                views: AnyTable::Dynamo(views),
            }
        }
    }
}

/// A projector that could not read an order's first event parked it and
/// everything behind it; after the fix, `replay redrive` applies them from
/// the event table and clears every entry, and a second redrive finds
/// nothing to do.
async fn redrive_applies_parked_records_and_clears_them_once(backend: Backend) {
    use ledger_store::dynamodb::change::Change;
    use projector::record::ChangeRecord;

    let source = seeded(backend).await;
    let records = source.store.all_records().await.expect("the log reads");
    let (order, order_records) = stream_with(&records, StreamKind::Order, 2, &[]);
    let first = codec::decode(&order_records[0].bytes).expect("decodes");
    let Event::SaleRecorded(sale) = &first.event else {
        panic!("an order starts with its sale: {:?}", first.event)
    };
    let vendor = StreamId::vendor(sale.vendor_id);
    let tenant = TenantId::new(DEMO);
    let copied: Vec<&Record> = records
        .iter()
        .filter(|r| r.stream == order || r.stream == vendor || r.stream == StreamId::tenant(tenant))
        .collect();

    // Another ledger holding those streams, projected by a projector that
    // could not read the order's first event.
    let ledger = empty_ledger(backend).await;
    for r in &copied {
        tamper::put_record(
            &ledger.store,
            r.tenant_id,
            r.stream,
            r.version,
            r.bytes.clone(),
        )
        .await
        .expect("copied");
    }
    let delivered: Vec<ChangeRecord> = copied
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut bytes = r.bytes.clone();
            if r.stream == order && r.version.get() == 1 {
                bytes.truncate(10);
            }
            ChangeRecord {
                id: i.to_string(),
                written_at_ms: None,
                change: Change::Event {
                    pk: projector::plan::pk_of(r.tenant_id, r.stream),
                    version: r.version.get(),
                    bytes,
                },
            }
        })
        .collect();
    let report = projector::StreamProjector::new(ledger.views.clone())
        .handle(delivered)
        .await;
    assert_eq!(report.parked, order_records.len(), "{report:?}");
    let (code, drift) = tally_json(&ledger, &["replay", "verify", "--json"]).await;
    assert_eq!(code, 1, "a parked order is drift: {drift:#}");

    let (code, redriven) = tally_json(&ledger, &["replay", "redrive", "--json"]).await;
    assert_eq!(code, 0, "{redriven:#}");
    let streams = redriven["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "{redriven:#}");
    assert_eq!(
        streams[0]["cleared"].as_u64(),
        Some(order_records.len() as u64)
    );
    assert_eq!(
        streams[0]["applied"].as_u64(),
        Some(order_records.len() as u64)
    );
    assert!(ledger.views.parked().await.expect("reads").is_empty());
    let (code, verified) = tally_json(&ledger, &["replay", "verify", "--json"]).await;
    assert_eq!(code, 0, "{verified:#}");

    // Exactly once: nothing left to do, and the sums did not move.
    let before = ledger.views.scan().await.expect("scans");
    let (code, again) = tally_json(&ledger, &["replay", "redrive", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(again["streams"], serde_json::json!([]));
    assert_eq!(ledger.views.scan().await.expect("scans").sums, before.sums);
}

/// On DynamoDB: a rebuild built without switching leaves both pointers;
/// the next one folds, moves writers, folds again and moves readers, and
/// the new generation equals a fresh fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_rebuild_switches_to_an_exact_generation() {
    let fixture = seeded(Backend::Dynamo).await;
    let first = match fixture.views.clone() {
        AnyTable::Dynamo(table) => table,
        AnyTable::LiveDynamo(live) => live.current(),
        other => panic!("a DynamoDB fixture reads a DynamoDB table: {other:?}"),
    };
    let (code, built) = tally_json(&fixture, &["replay", "rebuild", "--no-switch", "--json"]).await;
    assert_eq!(code, 0, "{built:#}");
    assert_eq!(built["generation"], 2);
    assert_eq!(built["switched"], false);
    let live = first.generations().await.expect("the pointer reads");
    assert_eq!((live.read, live.write), (1, 1));

    let (code, switched) = tally_json(&fixture, &["replay", "rebuild", "--json"]).await;
    assert_eq!(code, 0, "{switched:#}");
    assert_eq!(switched["switched"], true);
    let live = first.generations().await.expect("the pointer reads");
    assert_eq!((live.read, live.write), (2, 2));
    let (code, verified) = tally_json(&fixture, &["replay", "verify", "--json"]).await;
    assert_eq!(code, 0, "{verified:#}");
    let old = first.scan().await.expect("the old generation reads");
    assert!(
        !old.views.is_empty(),
        "the old generation is left as it was"
    );
}

/// A server on DynamoDB adopts a rebuilt generation while it runs: a sale
/// made after the switch is projected into the new generation only, and
/// the API reads it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_dynamodb_server_adopts_a_rebuilt_generation() {
    use command_api::auth::Claims;
    use ledger_core::envelope::Role;
    use ledger_core::id::VendorId;

    let endpoint =
        tokio::task::spawn_blocking(|| Emulator::shared(Kind::DynamoDb).endpoint().to_owned())
            .await
            .expect("DynamoDB Local starts");
    let config = DynamoConfig {
        endpoint: Some(endpoint.clone()),
        table_prefix: unique_prefix("sys-adopt"),
    };
    let (_dir, server) = demo_server(StoreConfig::Dynamo(config.clone())).await;
    let runner = server.stream_projection().expect("a stream projector");
    runner
        .caught_up(DEMO_PROJECTED_WAIT)
        .await
        .expect("caught up");
    let args = [
        "replay",
        "rebuild",
        "--json",
        "--store",
        "dynamodb",
        "--endpoint",
        &endpoint,
        "--table-prefix",
        &config.table_prefix,
    ];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(&args)
            .output()
            .expect("the rebuild runs")
    })
    .await
    .expect("the rebuild returns");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The server polls the pointer every 200 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cashier = server.key.mint(&Claims::new(
        TenantId::new(DEMO),
        UserId::new("adopt-cashier"),
        &[Role::Cashier],
        Some(VendorId::new("V01")),
        None,
        Duration::from_secs(600),
    ));
    let http = Http::new(format!("http://{}", server.addr));
    let sale = serde_json::json!({
        "order_id": "O-adopted",
        "lines": [{"item": "ADOBO", "quantity": 1, "unit_price": "85.00"}],
        "payment": {"method": "cash"},
    });
    let reply = http
        .send(
            reqwest::Method::POST,
            "/v1/sales",
            &cashier,
            Some("adopted-sale"),
            Some(&sale),
        )
        .await
        .expect("the sale is sent");
    assert!(
        reply.status.is_success(),
        "{}: {}",
        reply.status,
        reply.body
    );
    runner
        .caught_up(Duration::from_secs(60))
        .await
        .expect("caught up");
    let read = http.get("/v1/orders/O-adopted", &cashier).await;
    assert_eq!(read.status, reqwest::StatusCode::OK, "{}", read.body);

    let first = ledger_store::dynamodb::views::DynamoTable::connect(&config).await;
    let key = ledger_store::views::ViewKey {
        tenant_id: TenantId::new(DEMO),
        stream: StreamId::order(OrderId::new("O-adopted")),
    };
    let in_new = first.generation(2).load(&[key]).await.expect("reads");
    let in_old = first.load(&[key]).await.expect("reads");
    assert!(in_new[0].is_some(), "projected into the new generation");
    assert!(
        in_old[0].is_none(),
        "the old generation is no longer written"
    );
    server.stop().await.expect("the server stops");
}

/// `replay as-of` at an instant says what the API said at that instant,
/// after later sales moved the figures on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_an_instant_equals_what_the_api_said_then() {
    use command_api::auth::Claims;
    use ledger_core::envelope::Role;
    use ledger_core::id::{EmployeeId, VendorId};

    let (dir, server) = demo_server(StoreConfig::Sqlite).await;
    let http = Http::new(format!("http://{}", server.addr));
    let mint = |role: Role, vendor: Option<&str>| {
        server.key.mint(&Claims::new(
            TenantId::new(DEMO),
            UserId::new("as-of"),
            &[role],
            vendor.map(VendorId::new),
            None::<EmployeeId>,
            Duration::from_secs(600),
        ))
    };
    let (admin, cashier) = (mint(Role::Admin, None), mint(Role::Cashier, Some("V01")));
    let caught_up = || async {
        loop {
            let health = http.health().await.expect("/healthz answers");
            if health["projection_lag_records"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let dashboard = "/v1/dashboard?from=2000-01-01&to=2001-12-31&granularity=month&vendor_id=V01";
    let today = chrono::Utc::now().date_naive();
    let dashboard = dashboard
        .replace(
            "2000-01-01",
            &(today - chrono::Duration::days(400)).to_string(),
        )
        .replace(
            "2001-12-31",
            &(today + chrono::Duration::days(2)).to_string(),
        );
    let figures = || async {
        caught_up().await;
        let credit = http.get("/v1/employees/E0001/credit", &admin).await;
        let totals = http.get(&dashboard, &admin).await;
        assert_eq!(credit.status, reqwest::StatusCode::OK, "{}", credit.body);
        assert_eq!(totals.status, reqwest::StatusCode::OK, "{}", totals.body);
        (
            credit.body["balance"]["amount"]
                .as_str()
                .expect("a balance")
                .to_owned(),
            totals.body["totals"].clone(),
        )
    };
    let (balance_then, totals_then) = figures().await;
    let then = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for n in 0..3 {
        let sale = serde_json::json!({
            "order_id": format!("O-after-{n}"),
            "lines": [{"item": "ADOBO", "quantity": 1, "unit_price": "85.00"}],
            "payment": {"method": "credit", "employee_id": "E0001"},
        });
        let reply = http
            .send(
                reqwest::Method::POST,
                "/v1/sales",
                &cashier,
                Some(&format!("as-of-{n}")),
                Some(&sale),
            )
            .await
            .expect("sent");
        assert!(
            reply.status.is_success(),
            "{}: {}",
            reply.status,
            reply.body
        );
    }
    let (balance_now, totals_now) = figures().await;
    assert_ne!(balance_now, balance_then, "the sales moved the balance");

    let data = dir.path().display().to_string();
    let as_of = |at: String| {
        let data = data.clone();
        async move {
            let output = tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_tally"))
                    .args([
                        "replay", "as-of", "--json", "--tenant", DEMO, "--at", &at, "--data", &data,
                    ])
                    .output()
                    .expect("as-of runs")
            })
            .await
            .expect("as-of returns");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let value: Value = serde_json::from_slice(&output.stdout).expect("json");
            value["tenants"][DEMO].clone()
        }
    };
    for (at, balance, totals) in [
        (then, balance_then, totals_then),
        (chrono::Utc::now().to_rfc3339(), balance_now, totals_now),
    ] {
        let figures = as_of(at.clone()).await;
        assert_eq!(
            figures["credit"]["E0001"],
            balance.as_str(),
            "credit at {at}"
        );
        let vendor = &figures["dashboard"]["V01"];
        for field in [
            "gross",
            "commission",
            "orders",
            "refunded_gross",
            "gross_credit",
        ] {
            assert_eq!(vendor[field], totals[field], "{field} at {at}");
        }
        assert_eq!(
            figures["payable"]["V01"], totals["net_payable"],
            "payable at {at}"
        );
    }
    server.stop().await.expect("the server stops");
}
