//! The two event-store adapters side by side, `SqliteStore` and
//! `DynamoStore` (against DynamoDB Local), on streams of 10, 1,000 and
//! 10,000 events: what a command pays to write and to rebuild a stream's
//! state as streams grow.
//!
//! `cargo bench -p ledger-store --bench streams` prints, per stream length
//! N, one group per measure with a function per adapter (`sqlite`,
//! `dynamodb`), so each line of the report compares like with like:
//!
//! - `load/N`: `read_stream_all` of a stream of exactly N events, page by
//!   page ([`ledger_store::READ_PAGE_RECORDS_MAX`] records a page), in
//!   events per second ("elem/s"). This is what a command pays on a cold
//!   cache.
//! - `append/N`: one append of one event with an idempotency record, as a
//!   checkout writes, onto the stream of N events; each iteration appends
//!   the stream's next version, so the stream grows by the iterations
//!   criterion runs, warm-up included (the bench prints how far: on a
//!   2-core box some 15,000 events on SQLite, some 700 on DynamoDB). Neither
//!   adapter's append reads the stream, only its current version (an index
//!   seek on SQLite, a `ConditionCheck` on one key on DynamoDB), so N says
//!   how long the stream was at the start, not a cost that scales with it.
//! - `checkout/1000`: one 2-stream append shaped like a credit checkout: a
//!   new stream (a fresh `vendor/…` stream stands in for the order stream,
//!   since the conformance fixtures seal no order events; to the store both
//!   are a new stream of one event) and the next event on an existing
//!   stream of at least 1,000 events, with an idempotency record.
//!
//! On DynamoDB an append is one `TransactWriteItems` and returns when it
//! succeeds (it does not wait for the table's stream). Its loads are one
//! strongly consistent `Query` per page.
//!
//! The streams are filled before the clock starts, in appends of
//! [`APPEND_EVENTS_MAX`] events (about 120 appends per adapter in all); the
//! events are the conformance fixtures', sealed before the clock starts, so
//! this measures the stores, not the codec. SQLite runs on a database in a
//! temporary directory with every commit fsynced; DynamoDB Local in memory
//! on the same machine, so its figures are the emulator's, not the
//! service's (no network round trip, but a JVM and its SQLite underneath).

use std::time::{Duration, Instant};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ledger_core::id::{EmployeeId, StreamId, StreamVersion, TenantId, VendorId};
use ledger_store::conformance::{stream_append, unique_tenant};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::SqliteStore;
use ledger_store::{
    APPEND_EVENTS_MAX, AppendRequest, EventStore, IdempotencyKey, IdempotencyWrite, read_stream_all,
};
use tokio::runtime::Runtime;

/// Stream lengths: a young account, a busy one, a long-lived one.
const LENGTHS: [usize; 3] = [10, 1_000, 10_000];
/// The existing stream the 2-stream append writes to: one of [`LENGTHS`].
const CHECKOUT_LENGTH: usize = 1_000;
/// A typical stored response: the checkout's answer, replayed on retry.
const RESPONSE_BYTES: usize = 160;
/// Samples per function: the fewest criterion takes.
const SAMPLES: usize = 10;
const WARM_UP: Duration = Duration::from_secs(1);
/// Appends take milliseconds: a few hundred of them per function.
const APPEND_TIME: Duration = Duration::from_secs(4);
/// Loads: short, since a 10,000-event load on DynamoDB Local takes about
/// 0.2 s and criterion runs at least [`SAMPLES`] of them anyway.
const LOAD_TIME: Duration = Duration::from_secs(3);

/// A stream of the bench and the version its next append expects.
struct Stream {
    stream: StreamId,
    version: StreamVersion,
}

/// One adapter, with a stream of each of [`LENGTHS`] events.
struct Subject<S> {
    name: &'static str,
    store: S,
    tenant: TenantId,
    /// In the order of [`LENGTHS`].
    streams: Vec<Stream>,
    /// Appends minted so far: names idempotency keys and new streams.
    minted: u64,
}

impl<S: EventStore> Subject<S> {
    /// Fills a stream of each of [`LENGTHS`] events on `store`, in appends
    /// of at most [`APPEND_EVENTS_MAX`] events.
    async fn fill(name: &'static str, store: S) -> Self {
        let tenant = unique_tenant("bench");
        let mut streams = Vec::with_capacity(LENGTHS.len());
        for length in LENGTHS {
            let employee = EmployeeId::new(&format!("E{length}"));
            let mut stream = Stream {
                stream: StreamId::credit(employee),
                version: StreamVersion::NONE,
            };
            let mut held = 0;
            while held < length {
                let count = (length - held).min(APPEND_EVENTS_MAX);
                let append = stream_append(tenant, stream.stream, stream.version, count);
                store
                    .append(AppendRequest {
                        heads: Vec::new(),
                        tenant_id: tenant,
                        streams: vec![append],
                        idempotency: None,
                    })
                    .await
                    .expect("fill a stream");
                held += count;
                stream.version = StreamVersion::new(held as u64);
            }
            streams.push(stream);
        }
        Subject {
            name,
            store,
            tenant,
            streams,
            minted: 0,
        }
    }

    fn idempotency(&mut self) -> IdempotencyWrite {
        self.minted += 1;
        IdempotencyWrite {
            key: IdempotencyKey::parse(&format!("bench-{}", self.minted)).expect("key"),
            request_hash: [0; 32],
            response: vec![b'r'; RESPONSE_BYTES],
        }
    }

    /// The next event on the stream of `LENGTHS[index]`, with an idempotency
    /// record.
    fn next_append(&mut self, index: usize) -> AppendRequest {
        let idempotency = self.idempotency();
        let stream = &mut self.streams[index];
        let append = stream_append(self.tenant, stream.stream, stream.version, 1);
        stream.version = stream.version.next();
        AppendRequest {
            heads: Vec::new(),
            tenant_id: self.tenant,
            streams: vec![append],
            idempotency: Some(idempotency),
        }
    }

    /// A new stream of one event and the next event on the stream of
    /// `LENGTHS[index]`, with an idempotency record.
    fn next_checkout(&mut self, index: usize) -> AppendRequest {
        let idempotency = self.idempotency();
        let order = StreamId::vendor(VendorId::new(&format!("V{}", self.minted)));
        let order = stream_append(self.tenant, order, StreamVersion::NONE, 1);
        let stream = &mut self.streams[index];
        let credit = stream_append(self.tenant, stream.stream, stream.version, 1);
        stream.version = stream.version.next();
        AppendRequest {
            heads: Vec::new(),
            tenant_id: self.tenant,
            streams: vec![order, credit],
            idempotency: Some(idempotency),
        }
    }
}

/// `read_stream_all` of the stream of `LENGTHS[index]` events.
fn load<S: EventStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    subject: &Subject<S>,
    index: usize,
) {
    let stream = subject.streams[index].stream;
    group.bench_function(subject.name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let records = read_stream_all(
                        &subject.store,
                        subject.tenant,
                        stream,
                        StreamVersion::NONE,
                    )
                    .await
                    .expect("load");
                    assert_eq!(records.len(), LENGTHS[index], "a whole stream");
                }
                start.elapsed()
            })
        });
    });
}

/// Appends, one after the other, of the requests `next` mints; minted
/// before the clock starts.
fn append<S: EventStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    subject: &mut Subject<S>,
    next: impl Fn(&mut Subject<S>) -> AppendRequest,
) {
    let name = subject.name;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let requests: Vec<AppendRequest> = (0..iters).map(|_| next(subject)).collect();
            runtime.block_on(async {
                let start = Instant::now();
                for request in requests {
                    subject.store.append(request).await.expect("append");
                }
                start.elapsed()
            })
        });
    });
}

fn streams(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let sqlite = SqliteStore::open(&dir.path().join("tally.db")).expect("open SQLite");
    let config = DynamoConfig {
        endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
        table_prefix: unique_prefix("bench"),
    };
    let (mut sqlite, mut dynamo) = runtime.block_on(async {
        let dynamo = DynamoStore::create_and_connect(&config)
            .await
            .expect("create tables on DynamoDB Local and connect");
        let filling = Instant::now();
        let sqlite = Subject::fill("sqlite", sqlite).await;
        eprintln!("filled the SQLite streams in {:?}", filling.elapsed());
        let filling = Instant::now();
        let dynamo = Subject::fill("dynamodb", dynamo).await;
        eprintln!("filled the DynamoDB streams in {:?}", filling.elapsed());
        (sqlite, dynamo)
    });

    // Loads first, while every stream holds exactly its length.
    for (index, length) in LENGTHS.into_iter().enumerate() {
        let mut group = c.benchmark_group(format!("load/{length}"));
        group.throughput(Throughput::Elements(length as u64));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(SAMPLES);
        group.warm_up_time(WARM_UP);
        group.measurement_time(LOAD_TIME);
        load(&mut group, &runtime, &sqlite, index);
        load(&mut group, &runtime, &dynamo, index);
        group.finish();
    }

    for (index, length) in LENGTHS.into_iter().enumerate() {
        let mut group = c.benchmark_group(format!("append/{length}"));
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(SAMPLES);
        group.warm_up_time(WARM_UP);
        group.measurement_time(APPEND_TIME);
        append(&mut group, &runtime, &mut sqlite, |s| s.next_append(index));
        append(&mut group, &runtime, &mut dynamo, |s| s.next_append(index));
        group.finish();
        for (name, stream) in [
            (sqlite.name, &sqlite.streams[index]),
            (dynamo.name, &dynamo.streams[index]),
        ] {
            eprintln!(
                "append/{length}/{name}: the stream grew from {length} to {} events",
                stream.version.get()
            );
        }
    }

    let index = LENGTHS
        .iter()
        .position(|&length| length == CHECKOUT_LENGTH)
        .expect("CHECKOUT_LENGTH is one of LENGTHS");
    let mut group = c.benchmark_group(format!("checkout/{CHECKOUT_LENGTH}"));
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(SAMPLES);
    group.warm_up_time(WARM_UP);
    group.measurement_time(APPEND_TIME);
    append(&mut group, &runtime, &mut sqlite, |s| {
        s.next_checkout(index)
    });
    append(&mut group, &runtime, &mut dynamo, |s| {
        s.next_checkout(index)
    });
    group.finish();
}

criterion_group!(benches, streams);
criterion_main!(benches);
