//! Appends per second through `SqliteStore`, each shaped like a credit
//! checkout: a `SaleRecorded` opening a new order stream and a `CreditSpent`
//! on the employee's credit stream, in one append with an idempotency record.
//!
//! `cargo bench -p ledger-store --bench append` prints appends per second
//! ("elem/s") for 1, 64 and 512 concurrent appenders, each appender an
//! employee of its own so that nothing conflicts, on a database in a
//! temporary directory with every commit fsynced; once with time-ordered
//! client ids (order ids and idempotency keys minted like UUIDv7) and once
//! with random ones (UUIDv4). Requests are sealed before the clock starts:
//! this measures the store, not the codec. After each case it prints how
//! many appends a group commit took on average.

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ledger_core::codec::{self, Sealed};
use ledger_core::event::{CreditSpent, Event, Line, Payment, SaleRecorded};
use ledger_core::id::{
    CommandId, EmployeeId, EventId, ItemCode, OrderId, StreamId, StreamVersion, TenantId, UserId,
    VendorId,
};
use ledger_core::{
    Actor, CommissionRate, Currency, Hash, Header, LocalDate, Money, Role, Timestamp,
};
use ledger_store::sqlite::SqliteStore;
use ledger_store::{AppendRequest, EventStore, IdempotencyKey, IdempotencyWrite, StreamAppend};
use rust_decimal::Decimal;
use tokio::task::JoinSet;

/// Concurrent appenders per case: one caller alone, a busy service, and
/// the HTTP layer's whole concurrency.
const APPENDERS: [usize; 3] = [1, 64, 512];
/// A typical stored response: the checkout's answer, replayed on retry.
const RESPONSE_BYTES: usize = 160;
/// 2026-01-01T12:00:00Z.
const NOW_MICROS: i64 = 1_767_268_800_000_000;

/// The shape of the ids clients mint (order ids, idempotency keys). Each
/// new order stream and each idempotency key is an index insert: ids that
/// rise over time (UUIDv7) land on the index's last pages, random ones
/// (UUIDv4) on a page of their own each, which is what a commit then has to
/// write.
#[derive(Debug, Clone, Copy)]
enum Ids {
    TimeOrdered,
    Random,
}

const LOW_80_BITS: u128 = (1 << 80) - 1;

/// One employee paying with credit, over and over.
struct Appender {
    employee: EmployeeId,
    credit: StreamId,
    version: StreamVersion,
    prev_hash: Hash,
}

struct Checkouts {
    tenant: TenantId,
    vendor: VendorId,
    actor: Actor,
    price: Money,
    balance: Money,
    rate: CommissionRate,
    minted: u64,
}

impl Checkouts {
    fn new() -> Self {
        let eur = Currency::new("EUR");
        Checkouts {
            tenant: TenantId::new("bench"),
            vendor: VendorId::new("canteen"),
            actor: Actor {
                user_id: UserId::new("till-1"),
                role: Role::Cashier,
            },
            price: Money::parse(Decimal::new(1_250, 2), eur).expect("price"),
            balance: Money::parse(Decimal::new(100_000, 2), eur).expect("balance"),
            rate: CommissionRate::from_basis_points(1_200).expect("rate"),
            minted: 0,
        }
    }

    /// A fresh id of the given shape.
    fn mint(&mut self, ids: Ids) -> u128 {
        self.minted += 1;
        // SplitMix64's first output for a seed: a bijection that scatters
        // consecutive inputs.
        let high = ledger_core::rng::SplitMix64::new(self.minted).next_u64();
        let low = ledger_core::rng::SplitMix64::new(high).next_u64();
        match ids {
            // As UUIDv7: a rising 48-bit prefix (time), then random bits.
            Ids::TimeOrdered => (u128::from(self.minted) << 80) | (u128::from(low) & LOW_80_BITS),
            Ids::Random => (u128::from(high) << 64) | u128::from(low),
        }
    }

    fn header(&mut self, stream: StreamId, version: StreamVersion, command: CommandId) -> Header {
        Header {
            event_id: EventId::from_u128(self.mint(Ids::Random)),
            tenant_id: self.tenant,
            stream,
            version,
            occurred_at: Timestamp::from_micros(NOW_MICROS),
            recorded_at: Timestamp::from_micros(NOW_MICROS),
            command_id: command,
            actor: self.actor,
        }
    }

    /// The append a credit checkout makes.
    fn next(&mut self, appender: &mut Appender, ids: Ids) -> AppendRequest {
        let command = CommandId::from_u128(self.mint(ids));
        let order_id = OrderId::new(&format!("o{}", command.as_uuid().simple()));
        let order = StreamId::order(order_id);
        let sale = Event::SaleRecorded(SaleRecorded {
            vendor_id: self.vendor,
            lines: vec![Line {
                item: ItemCode::new("LUNCH-MENU"),
                quantity: 1,
                unit_price: self.price,
            }],
            gross: self.price,
            commission_rate: self.rate,
            commission: self.price.commission(self.rate),
            payment: Payment::Credit {
                employee_id: appender.employee,
            },
            business_date: LocalDate::ymd(2026, 1, 1),
        });
        let spent = Event::CreditSpent(CreditSpent {
            order_id,
            amount: self.price,
            balance_after: self.balance,
        });
        let order_header = self.header(order, StreamVersion::NONE.next(), command);
        let sale = codec::seal(order_header, sale, Hash::GENESIS).expect("seal sale");
        let credit_header = self.header(appender.credit, appender.version.next(), command);
        let spent: Sealed =
            codec::seal(credit_header, spent, appender.prev_hash).expect("seal credit");
        let expected = appender.version;
        appender.version = appender.version.next();
        appender.prev_hash = spent.envelope.hash;
        AppendRequest {
            heads: Vec::new(),
            tenant_id: self.tenant,
            streams: vec![
                StreamAppend {
                    stream: order,
                    expected: StreamVersion::NONE,
                    events: vec![sale],
                },
                StreamAppend {
                    stream: appender.credit,
                    expected,
                    events: vec![spent],
                },
            ],
            idempotency: Some(IdempotencyWrite {
                key: IdempotencyKey::parse(&format!("checkout-{command}")).expect("key"),
                request_hash: [7; 32],
                response: vec![b'r'; RESPONSE_BYTES],
            }),
        }
    }
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append/credit-checkout");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));

    for (ids, appenders) in [Ids::TimeOrdered, Ids::Random]
        .into_iter()
        .flat_map(|ids| APPENDERS.map(|n| (ids, n)))
    {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("bench.db")).expect("open");
        let mut checkouts = Checkouts::new();
        let mut employees: Vec<Appender> = (0..appenders)
            .map(|n| {
                let employee = EmployeeId::new(&format!("E{n:05}"));
                Appender {
                    employee,
                    credit: StreamId::credit(employee),
                    version: StreamVersion::NONE,
                    prev_hash: Hash::GENESIS,
                }
            })
            .collect();

        let name = match ids {
            Ids::TimeOrdered => "time-ordered-ids",
            Ids::Random => "random-ids",
        };
        group.bench_function(BenchmarkId::new(name, appenders), |b| {
            b.iter_custom(|iters| {
                let mut work: Vec<Vec<AppendRequest>> = vec![Vec::new(); appenders];
                for i in 0..iters as usize {
                    let who = i % appenders;
                    work[who].push(checkouts.next(&mut employees[who], ids));
                }
                let start = Instant::now();
                runtime.block_on(async {
                    let mut tasks = JoinSet::new();
                    for requests in work {
                        let store = store.clone();
                        tasks.spawn(async move {
                            for request in requests {
                                store.append(request).await.expect("append");
                            }
                        });
                    }
                    while let Some(done) = tasks.join_next().await {
                        done.expect("appender");
                    }
                });
                start.elapsed()
            });
        });
        let stats = store.stats();
        eprintln!(
            "{name}, {appenders} appenders: {} appends in {} commits, {:.1} appends per commit",
            stats.appends,
            stats.commits,
            stats.appends as f64 / stats.commits.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
