//! The stream projector's handler on DynamoDB Local: batches delivered the
//! way the transports may deliver them (reordered across items, duplicated,
//! failed records redelivered with everything after them), a failure after
//! k writes, and the write capacity each projection costs per event
//! (`cargo test --test system streams -- --nocapture` prints it).

use std::sync::atomic::{AtomicI64, Ordering};

use ledger_core::LocalDate;
use ledger_core::codec;
use ledger_core::projection::ReadModels;
use ledger_store::dynamodb::local::{DynamoLocal, unique_prefix};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use projector::Projector;
use projector::dynamo::DynamoTable;
use projector::plan::{Limits, pk_of};
use projector::record::{Body, Record};
use projector::table::{Cost, Parked, StoredView, Table, TableError, ViewKey, Write, WriteError};
use tally::sim::{SimConfig, simulate};

use crate::common::Rng;

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
fn records(log: &[Vec<u8>]) -> Vec<Record> {
    log.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let e = codec::decode(bytes).expect("the simulator writes valid records");
            Record {
                id: format!("{i:08}"),
                written_at_ms: None,
                body: Body::Event {
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
        endpoint: Some(DynamoLocal::shared().endpoint().to_owned()),
        table_prefix: unique_prefix(label),
    };
    DynamoStore::create_and_connect(&config)
        .await
        .expect("tables on DynamoDB Local");
    DynamoTable::connect(&config).await
}

/// Delivers `records` in shuffled batches with duplicates until none is
/// reported failed; returns the summed cost and the number of rounds.
async fn deliver<T: Table>(
    projector: &Projector<T>,
    records: Vec<Record>,
    seed: u64,
) -> (Cost, u32) {
    let mut rng = Rng(seed);
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
    let projector = Projector::new(table.clone());
    let (cost, rounds) = deliver(&projector, records(&log), 11).await;

    let state = table.scan().await.expect("the table scans");
    let drift = state.drift(&fresh_fold(&log));
    assert!(
        drift.is_empty(),
        "drift from a fresh fold:\n{}",
        drift.join("\n")
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

/// A table that dies after a budget of operations, as a process would.
struct Crashing<T> {
    inner: T,
    budget: AtomicI64,
}

impl<T: Table> Crashing<T> {
    fn spend(&self) -> Result<(), String> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err("injected crash".into())
        }
    }
}

impl<T: Table> Table for Crashing<T> {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        self.spend().map_err(TableError)?;
        self.inner.load(keys).await
    }
    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        self.spend().map_err(TableError)?;
        self.inner.parked_from(pk).await
    }
    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        self.spend().map_err(WriteError::Failed)?;
        self.inner.write(write).await
    }
    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        self.spend().map_err(TableError)?;
        self.inner.park(parked).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dying_after_k_writes_converges_when_redelivered() {
    let log = log(3, "streams-crash");
    let batch: Vec<Record> = records(&log).into_iter().take(60).collect();
    let expected = fresh_fold(&log[..60]);
    // Small writes, so the batch takes many and the crash lands between them.
    let limits = Limits {
        actions: 4,
        bytes: usize::MAX,
    };
    for k in [1, 2, 4, 7] {
        let table = table("streams-crash").await;
        let crashing = Projector::with_limits(
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
        let report = Projector::with_limits(table.clone(), limits)
            .handle(batch.clone())
            .await;
        assert!(report.failed.is_empty(), "k = {k}: {:?}", report.failed);
        let state = table.scan().await.expect("the table scans");
        let drift = state.drift(&expected);
        assert!(drift.is_empty(), "k = {k}: drift:\n{}", drift.join("\n"));
    }
}
