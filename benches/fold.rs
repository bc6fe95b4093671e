//! Decode + fold of a realistic mixed log into every projection, beside the
//! baseline of a JSON-per-event store (parse each event's JSON into a generic
//! value, then into the type, then apply), measured in the same run.
//!
//! `cargo bench --bench fold` prints events per second ("elem/s") per case;
//! each case runs on one core. The `snapshot` group measures writing and
//! restoring a snapshot of the read models after the whole workload: what a
//! projector pays at a checkpoint, and at a restart instead of refolding.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ledger_core::codec;
use ledger_core::envelope::Envelope;
use ledger_core::projection::ReadModels;
use tally_sim::{SimConfig, simulate};

/// About 100k events: 60 days of a 1,000-sales-a-day cafeteria with 500
/// employees on credit, so the read models outgrow the CPU caches as real
/// ones do.
fn workload() -> Vec<Vec<u8>> {
    let config = SimConfig {
        days: 60,
        vendors: 12,
        employees: 500,
        sales_per_day: 1000,
        ..SimConfig::default()
    };
    simulate(config).0.into_records()
}

fn fold(c: &mut Criterion) {
    let records = workload();
    let envelopes: Vec<Envelope> = records
        .iter()
        .map(|r| codec::decode(r).expect("decodes"))
        .collect();
    let json: Vec<String> = envelopes
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes"))
        .collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let json_bytes: usize = json.iter().map(String::len).sum();
    eprintln!(
        "workload: {} events, {} bytes/event binary, {} bytes/event JSON",
        records.len(),
        bytes / records.len(),
        json_bytes / json.len()
    );

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("decode+fold/binary", |b| {
        b.iter_batched(
            ReadModels::default,
            |mut models| {
                for record in &records {
                    models.apply(&codec::decode(record).expect("decodes"));
                }
                models
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("decode+fold/json-baseline", |b| {
        b.iter_batched(
            ReadModels::default,
            |mut models| {
                for line in &json {
                    let value: serde_json::Value = serde_json::from_str(line).expect("parses");
                    let envelope: Envelope = serde_json::from_value(value).expect("is an envelope");
                    models.apply(&envelope);
                }
                models
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("decode-only/binary", |b| {
        b.iter(|| {
            for record in &records {
                black_box(codec::decode(record).expect("decodes"));
            }
        });
    });
    group.bench_function("fold-only", |b| {
        b.iter_batched(
            ReadModels::default,
            |mut models| {
                for envelope in &envelopes {
                    models.apply(envelope);
                }
                models
            },
            BatchSize::LargeInput,
        );
    });
    macro_rules! fold_one {
        ($name:literal, $projection:ty) => {
            group.bench_function(concat!("fold-only/", $name), |b| {
                b.iter_batched(
                    <$projection>::default,
                    |mut projection| {
                        for envelope in &envelopes {
                            projection.apply(envelope);
                        }
                        projection
                    },
                    BatchSize::LargeInput,
                );
            });
        };
    }
    fold_one!("dashboard", ledger_core::projection::VendorDailyTotals);
    fold_one!("orders", ledger_core::projection::OrderViews);
    fold_one!("credit", ledger_core::projection::CreditBalances);
    fold_one!("activity", ledger_core::projection::ActivityLog);
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let records = workload();
    let mut models = ReadModels::default();
    for record in &records {
        models.apply(&codec::decode(record).expect("decodes"));
    }
    let bytes = models.to_snapshot();
    eprintln!(
        "snapshot: {} events folded, {} bytes ({} bytes/event)",
        records.len(),
        bytes.len(),
        bytes.len() / records.len()
    );

    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    // Dropping the result is not part of either cost, as in `fold`.
    group.bench_function("encode", |b| {
        b.iter_with_large_drop(|| models.to_snapshot());
    });
    group.bench_function("decode", |b| {
        b.iter_with_large_drop(|| ReadModels::from_snapshot(black_box(&bytes)).expect("restores"));
    });
    group.finish();
}

criterion_group!(benches, fold, snapshot);
criterion_main!(benches);
