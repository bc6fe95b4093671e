//! The stream projector's functions, `projector-streams` and
//! `projector-kinesis`, against the emulated Runtime API, writing a
//! read-model table on DynamoDB Local.
//!
//! The events come from ledger-core's own deciders (`MemoryLedger`), and
//! the payloads are built as AWS sends them: a DynamoDB Streams event, and
//! a Kinesis event whose records carry Kinesis Data Streams for DynamoDB
//! change records as base64 JSON. What the function wrote is read back and
//! compared with a fresh fold of the same events.

use aws_local::emulator::unique_prefix;
use std::collections::BTreeMap;

use ledger_core::credit::{CreditCommand, CreditPolicyInput, OpenCreditAccount, ReplenishCredit};
use ledger_core::event::{Payment, Tender};
use ledger_core::memory::{Command, MemoryLedger};
use ledger_core::policy::ReplenishMode;
use ledger_core::projection::ReadModels;
use ledger_core::rng::SplitMix64;
use ledger_core::sale::{IssueRefund, LineInput, ReceivePayment, RecordSale, SaleCommand};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::{RegisterVendor, VendorCommand};
use ledger_core::{
    Actor, Cadence, CommissionRate, Currency, EmployeeId, Envelope, ItemCode, LocalDate, OrderId,
    Period, RefundId, Role, StreamId, StreamKind, TenantId, TimeZone, Timestamp, UserId, VendorId,
};
use ledger_store::dynamodb::DynamoConfig;
use ledger_store::views::{MemoryState, ViewTable};
use projector::plan::pk_of;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::runtime::{
    EXIT_WAIT_MAX, Function, Outcome, Printed, REGION, RuntimeApi, fixture, function_name,
    lambda_env, now_ms, tables,
};

const STREAMS_BIN: &str = env!("CARGO_BIN_EXE_projector-streams");
const KINESIS_BIN: &str = env!("CARGO_BIN_EXE_projector-kinesis");

const STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/tally-events/stream/2026-11-16T00:00:00.000";
const KINESIS_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/tally-events";

/// Whether `lag` (ms) lies between the newest and the oldest event's age,
/// give or take a minute of test time.
fn lag_fits(log: &[Logged], lag: f64) -> bool {
    let ages: Vec<f64> = log
        .iter()
        .map(|e| now_ms() as f64 - (e.envelope.header.recorded_at.as_micros() / 1000) as f64)
        .collect();
    let (young, old) = ages
        .iter()
        .fold((f64::MAX, f64::MIN), |(y, o), a| (y.min(*a), o.max(*a)));
    (young - 60_000.0..=old + 60_000.0).contains(&lag)
}

// ---------------------------------------------------------------------------
// A realistic log, from ledger-core's deciders.
// ---------------------------------------------------------------------------

/// One event of the log as the event table holds it.
#[derive(Debug, Clone)]
struct Logged {
    envelope: Envelope,
    bytes: Vec<u8>,
}

impl Logged {
    fn pk(&self) -> String {
        pk_of(self.envelope.header.tenant_id, self.envelope.stream())
    }

    fn version(&self) -> u64 {
        self.envelope.version().get()
    }

    fn stream(&self) -> StreamId {
        self.envelope.stream()
    }

    /// Whether a per-stream view folds it (orders and credit accounts).
    fn has_view(&self) -> bool {
        matches!(self.stream().kind(), StreamKind::Order | StreamKind::Credit)
    }

    /// The event item, as the store writes it (`tn`, `ty`, `at`, `cid`
    /// beside the key and the bytes).
    fn item(&self) -> Value {
        let h = &self.envelope.header;
        json!({
            "pk": {"S": self.pk()},
            "v": {"N": self.version().to_string()},
            "b": {"B": base64(&self.bytes)},
            "tn": {"S": h.tenant_id.to_string()},
            "ty": {"S": self.envelope.event.event_type().as_str()},
            "at": {"N": h.occurred_at.as_micros().to_string()},
            "cid": {"S": h.command_id.to_string()},
        })
    }
}

const TENANT: &str = "canteen";
/// Cash, refunded in two parts: versions 1, 2 and 3 of its stream.
const TWICE_REFUNDED: &str = "O-0005";
/// Paid with credit and refunded: versions 1 and 2 of its stream, and a
/// refund on the employee's credit stream.
const CREDIT_REFUNDED: &str = "O-0006";

fn admin() -> Actor {
    Actor {
        user_id: UserId::new("admin"),
        role: Role::Admin,
    }
}

fn cashier() -> Actor {
    Actor {
        user_id: UserId::new("cashier-1"),
        role: Role::Cashier,
    }
}

fn owner() -> Actor {
    Actor {
        user_id: UserId::new("owner-1"),
        role: Role::Vendor,
    }
}

fn line(item: &str, quantity: u32, cents: i64) -> LineInput {
    LineInput {
        item: ItemCode::new(item),
        quantity,
        unit_price: Decimal::new(cents, 2),
    }
}

/// A sale of the test log: order, vendor, lines, payment, minute after
/// opening it was recorded, and the minute it happened if rung up offline.
type SaleRow = (
    &'static str,
    &'static str,
    Vec<LineInput>,
    Payment,
    i64,
    Option<i64>,
);

/// A day and a bit of a canteen: the tenant configured, two stalls, two
/// employees on credit (opened and replenished), sales paid every way
/// (one rung up offline), an invoice paid later, refunds in part and in
/// full, on cash and on credit.
fn canteen() -> Vec<Logged> {
    let tenant = TenantId::new(TENANT);
    let zone = TimeZone::new("Asia/Manila");
    let day = LocalDate::ymd(2026, 11, 16);
    let opening = zone.start_of(day).plus_seconds(7 * 3600);
    let at = |minutes: i64| opening.plus_seconds(minutes * 60);
    let mut ledger = MemoryLedger::new(tenant);
    let run = |ledger: &mut MemoryLedger, command: Command, actor: Actor, now: Timestamp| {
        if let Err(rejection) = ledger.execute(&command, actor, now) {
            panic!("{command:?} was rejected: {rejection:?}");
        }
    };
    run(
        &mut ledger,
        Command::Tenant(ConfigureTenant {
            currency: Currency::new("PHP"),
            time_zone: zone,
        }),
        admin(),
        at(0),
    );
    for (vendor, bps) in [("V1", 1000), ("V2", 1500)] {
        run(
            &mut ledger,
            Command::Vendor(VendorCommand::Register(RegisterVendor {
                vendor_id: VendorId::new(vendor),
                name: Name::new(&format!("Stall {vendor}")),
                commission_rate: CommissionRate::from_basis_points(bps).unwrap(),
            })),
            admin(),
            at(0),
        );
    }
    for employee in ["E1", "E2"] {
        run(
            &mut ledger,
            Command::Credit(CreditCommand::Open(OpenCreditAccount {
                employee_id: EmployeeId::new(employee),
                name: Name::new(&format!("Employee {employee}")),
                policy: CreditPolicyInput {
                    allowance: Decimal::new(1500, 0),
                    cadence: Cadence::SemiMonthly,
                    mode: ReplenishMode::TopUp,
                    cap: None,
                },
            })),
            admin(),
            at(1),
        );
        run(
            &mut ledger,
            Command::Credit(CreditCommand::Replenish(ReplenishCredit {
                employee_id: EmployeeId::new(employee),
                period: Period::containing(at(2), zone, Cadence::SemiMonthly),
                now: at(2),
            })),
            Actor {
                user_id: UserId::new("scheduler"),
                role: Role::Service,
            },
            at(2),
        );
    }
    let credit = |e: &str| Payment::Credit {
        employee_id: EmployeeId::new(e),
    };
    let sales: [SaleRow; 8] = [
        (
            "O-0001",
            "V1",
            vec![line("ADOBO", 1, 8500), line("RICE", 2, 2000)],
            Payment::Cash,
            10,
            None,
        ),
        (
            "O-0002",
            "V1",
            vec![line("SISIG", 1, 11000)],
            credit("E1"),
            40,
            None,
        ),
        (
            "O-0003",
            "V2",
            vec![line("COFFEE", 2, 3500)],
            Payment::Card,
            65,
            None,
        ),
        // Rung up offline at 09:00, synced at 11:00.
        (
            "O-0004",
            "V2",
            vec![line("PANCIT", 1, 7000)],
            credit("E2"),
            240,
            Some(120),
        ),
        (
            TWICE_REFUNDED,
            "V1",
            vec![line("LUMPIA", 2, 4500), line("ICED-TEA", 1, 2500)],
            Payment::Cash,
            300,
            None,
        ),
        (
            CREDIT_REFUNDED,
            "V2",
            vec![line("TAPSILOG", 1, 9000)],
            credit("E1"),
            315,
            None,
        ),
        (
            "O-0007",
            "V2",
            vec![line("HALO-HALO", 3, 6500)],
            Payment::Invoice {
                due_date: LocalDate::ymd(2026, 11, 23),
            },
            390,
            None,
        ),
        (
            "O-0008",
            "V1",
            vec![line("BANANA-Q", 4, 2000)],
            Payment::MobileMoney,
            420,
            None,
        ),
    ];
    for (order, vendor, lines, payment, minute, offline) in sales {
        run(
            &mut ledger,
            Command::Sale(SaleCommand::Record(RecordSale {
                order_id: OrderId::new(order),
                vendor_id: VendorId::new(vendor),
                lines,
                payment,
                occurred_at: offline.map(at),
                now: at(minute),
            })),
            cashier(),
            at(minute),
        );
    }
    let refund =
        |ledger: &mut MemoryLedger, order: &str, id: &str, amount: Option<Decimal>, minute: i64| {
            let remaining = ledger
                .order_state(OrderId::new(order))
                .unwrap()
                .remaining()
                .amount();
            let command = Command::Sale(SaleCommand::Refund(IssueRefund {
                order_id: OrderId::new(order),
                refund_id: RefundId::new(id),
                amount: amount.unwrap_or(remaining),
                reason: Some(Reason::new("customer returned the item")),
                now: at(minute),
            }));
            if let Err(rejection) = ledger.execute(&command, owner(), at(minute)) {
                panic!("{command:?} was rejected: {rejection:?}");
            }
        };
    refund(
        &mut ledger,
        TWICE_REFUNDED,
        "R-1",
        Some(Decimal::new(2000, 2)),
        330,
    );
    refund(&mut ledger, CREDIT_REFUNDED, "R-2", None, 345);
    refund(&mut ledger, TWICE_REFUNDED, "R-3", None, 360);
    let gross = ledger
        .order_state(OrderId::new("O-0007"))
        .unwrap()
        .gross
        .amount();
    run(
        &mut ledger,
        Command::Sale(SaleCommand::ReceivePayment(ReceivePayment {
            order_id: OrderId::new("O-0007"),
            amount: gross,
            tender: Tender::Card,
            now: at(660),
        })),
        admin(),
        at(660),
    );
    // The next day.
    run(
        &mut ledger,
        Command::Sale(SaleCommand::Record(RecordSale {
            order_id: OrderId::new("O-0009"),
            vendor_id: VendorId::new("V1"),
            lines: vec![line("COFFEE", 1, 3500)],
            payment: Payment::Cash,
            occurred_at: None,
            now: at(24 * 60 + 30),
        })),
        cashier(),
        at(24 * 60 + 30),
    );
    ledger
        .records()
        .iter()
        .map(|bytes| Logged {
            envelope: ledger_core::codec::decode(bytes).unwrap(),
            bytes: bytes.clone(),
        })
        .collect()
}

fn order_stream(order: &str) -> StreamId {
    StreamId::order(OrderId::new(order))
}

/// The log's events of `stream` at `version`.
fn find(log: &[Logged], stream: StreamId, version: u64) -> Logged {
    log.iter()
        .find(|e| e.stream() == stream && e.version() == version)
        .unwrap_or_else(|| panic!("{stream} version {version} is not in the log"))
        .clone()
}

/// Every projection folded from scratch over `events`.
fn fresh_fold<'a>(events: impl IntoIterator<Item = &'a Logged>) -> ReadModels {
    let mut models = ReadModels::default();
    for e in events {
        models.apply(&e.envelope);
    }
    models
}

// ---------------------------------------------------------------------------
// Payloads, as AWS sends them.
// ---------------------------------------------------------------------------

/// One change record of the event table, delivered by a transport under a
/// sequence number (the batch item identifier).
#[derive(Debug, Clone)]
struct Change {
    seq: String,
    pk: String,
    version: u64,
    /// The new image (DynamoDB JSON).
    image: Value,
    /// When the item was written, in milliseconds since the epoch.
    written_ms: u64,
}

impl Change {
    fn of(event: &Logged, seq: String, written_ms: u64) -> Change {
        Change {
            seq,
            pk: event.pk(),
            version: event.version(),
            image: event.item(),
            written_ms,
        }
    }

    /// The event's key with `bytes` in place of the record.
    fn with_bytes(mut self, bytes: &[u8]) -> Change {
        self.image["b"] = json!({"B": base64(bytes)});
        self
    }

    fn keys(&self) -> Value {
        json!({"pk": {"S": self.pk}, "v": {"N": self.version.to_string()}})
    }

    fn size_bytes(&self) -> usize {
        self.image.to_string().len()
    }

    /// A DynamoDB Streams record as Lambda delivers it.
    fn streams_record(&self) -> Value {
        json!({
            "eventID": format!("{:032x}", hash(&self.seq)),
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": {
                "ApproximateCreationDateTime": self.written_ms / 1000,
                "Keys": self.keys(),
                "NewImage": self.image,
                "SequenceNumber": self.seq,
                "SizeBytes": self.size_bytes(),
                "StreamViewType": "NEW_IMAGE",
            },
            "eventSourceARN": STREAM_ARN,
        })
    }

    /// The change record Kinesis Data Streams for DynamoDB writes.
    fn kinesis_change(&self) -> Value {
        json!({
            "awsRegion": REGION,
            "eventID": format!("{:08x}-{:04x}-4000-8000-{:012x}", hash(&self.seq) as u32, self.version, self.version),
            "eventName": "INSERT",
            "userIdentity": null,
            "recordFormat": "application/json",
            "tableName": "tally-events",
            "dynamodb": {
                "ApproximateCreationDateTime": self.written_ms,
                "Keys": self.keys(),
                "NewImage": self.image,
                "SizeBytes": self.size_bytes(),
            },
            "eventSource": "aws:dynamodb",
        })
    }

    /// A Kinesis record as Lambda delivers it.
    fn kinesis_record(&self) -> Value {
        kinesis_record(
            &self.seq,
            &self.pk,
            self.kinesis_change().to_string().as_bytes(),
        )
    }
}

fn kinesis_record(seq: &str, partition_key: &str, data: &[u8]) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": format!("{:032X}", hash(partition_key)),
            "sequenceNumber": seq,
            "data": base64(data),
            "approximateArrivalTimestamp": (now_ms() as f64) / 1000.0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000000:{seq}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/tally-projector",
        "awsRegion": REGION,
        "eventSourceARN": KINESIS_ARN,
    })
}

fn streams_event(changes: &[Change]) -> Value {
    json!({"Records": changes.iter().map(Change::streams_record).collect::<Vec<_>>()})
}

/// Sequence numbers as DynamoDB Streams writes them (digits, increasing).
fn streams_seq(n: usize) -> String {
    format!("{}", 300_000_000_000_000_000_000u128 + n as u128 * 1000)
}

/// Sequence numbers as Kinesis writes them (56 digits, increasing).
fn kinesis_seq(n: usize) -> String {
    format!("4959033827149025660855969253836157109592157598913{:07}", n)
}

/// The log as one shard delivers it: every event in commit order, each
/// under its own sequence number, written `age_ms` ago.
fn changes(log: &[Logged], seq: fn(usize) -> String, age_ms: u64) -> Vec<Change> {
    let written = now_ms() - age_ms;
    log.iter()
        .enumerate()
        .map(|(i, e)| Change::of(e, seq(i), written + i as u64))
        .collect()
}

/// FNV-1a, for ids that look like AWS's and never change.
fn hash(text: &str) -> u128 {
    text.bytes()
        .fold(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d, |h, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B)
        })
}

// ---------------------------------------------------------------------------
// Logs.
// ---------------------------------------------------------------------------

/// A structured log line's fields (tracing's JSON keeps them under
/// `fields`).
fn fields(line: &Value) -> &Value {
    line.get("fields").unwrap_or(line)
}

/// Every stdout line as JSON, asserting each is an object.
fn json_lines(printed: &Printed) -> Vec<Value> {
    printed
        .stdout
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let value: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {l}"));
            assert!(value.is_object(), "a stdout line is not a JSON object: {l}");
            value
        })
        .collect()
}

/// The per-batch metrics lines, in order.
fn batch_lines(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| fields(l).get("message").and_then(Value::as_str) == Some("batch projected"))
        .cloned()
        .collect()
}

fn number(line: &Value, name: &str) -> f64 {
    fields(line)
        .get(name)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {name} in {line}"))
}

/// The request id of the Lambda invocation span a line was logged in.
fn request_id(line: &Value) -> Option<&str> {
    line.get("spans")?
        .as_array()?
        .iter()
        .find_map(|s| s.get("requestId")?.as_str())
}

fn assert_converged(state: &MemoryState, fresh: &ReadModels) {
    let drift = state.drift(fresh);
    assert!(
        drift.is_empty(),
        "the table drifted from a fresh fold:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// A shard read in commit order, but with one order's first event missing
/// from the first batch: its second event is the one batch item failure (a
/// gap, redelivered), everything else lands. The redelivery brings both
/// (and a duplicate of an earlier record), and the table is then exactly
/// a fresh fold of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_function_reports_a_gap_and_converges_on_redelivery() {
    let log = canteen();
    let (config, table) = tables("lambda-streams").await;
    let api = RuntimeApi::start().await;
    let mut function = Function::start(STREAMS_BIN, &api, &config, &[]);

    let all = changes(&log, streams_seq, 5_000);
    let gap_stream = order_stream(CREDIT_REFUNDED);
    let (v1, v2) = (find(&log, gap_stream, 1), find(&log, gap_stream, 2));
    let is = |c: &Change, e: &Logged| c.pk == e.pk() && c.version == e.version();
    let first: Vec<Change> = all.iter().filter(|c| !is(c, &v1)).cloned().collect();
    let v1_change = all.iter().find(|c| is(c, &v1)).unwrap().clone();
    let v2_change = all.iter().find(|c| is(c, &v2)).unwrap().clone();
    // An idempotency item rides the same stream (version 0): acknowledged.
    let mut key = v1_change.clone();
    key.seq = streams_seq(10_000);
    key.pk = format!("{TENANT}|key|0b9f6c1e-pos-7");
    key.version = 0;
    key.image = json!({"pk": {"S": key.pk}, "v": {"N": "0"}, "h": {"B": base64(b"request-hash")}, "r": {"B": base64(b"{}")}});
    let mut first_batch = first.clone();
    first_batch.push(key);

    let (id1, outcome) = api
        .invoke(&mut function, &streams_event(&first_batch))
        .await;
    assert_eq!(
        outcome.failures(),
        vec![v2_change.seq.clone()],
        "exactly the record after the missing version is retried"
    );

    // The event source mapping retries the failed record; this batch also
    // carries the missing version and an old record delivered again.
    let credit_dup = first
        .iter()
        .find(|c| c.pk.contains("|credit/"))
        .unwrap()
        .clone();
    let second = vec![v1_change.clone(), v2_change.clone(), credit_dup];
    let (id2, outcome) = api.invoke(&mut function, &streams_event(&second)).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());

    let state = table.scan().await.unwrap();
    assert_converged(&state, &fresh_fold(&log));
    assert!(
        state.parked.is_empty(),
        "nothing parked: {:?}",
        state.parked
    );
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    assert!(api.unexpected().is_empty(), "{:?}", api.unexpected());
    assert!(
        api.next_calls() >= 3,
        "the function asks for the next invocation after each answer"
    );

    let printed = function.stop();
    let lines = json_lines(&printed);
    let batches = batch_lines(&lines);
    assert_eq!(batches.len(), 2, "one metrics line per batch: {lines:#?}");
    let viewed = log.iter().filter(|e| e.has_view()).count();
    let (b1, b2) = (&batches[0], &batches[1]);
    assert_eq!(number(b1, "records") as usize, first_batch.len());
    assert_eq!(
        number(b1, "applied") as usize,
        viewed - 2,
        "all but the gap order"
    );
    assert_eq!(number(b1, "failed") as usize, 1);
    assert!(number(b1, "wcu") > 0.0, "{b1}");
    // Lag is measured from the events' own recorded_at, in milliseconds.
    let lag = number(b1, "lag_max_ms");
    assert!(lag_fits(&log, lag), "lag {lag} ms in {b1}");
    assert_eq!(number(b2, "records") as usize, 3);
    assert_eq!(number(b2, "applied") as usize, 2);
    assert_eq!(number(b2, "skipped") as usize, 1, "the duplicate");
    assert_eq!(number(b2, "failed") as usize, 0);
    assert_eq!(request_id(b1), Some(id1.as_str()), "{b1}");
    assert_eq!(request_id(b2), Some(id2.as_str()), "{b2}");
}

/// The same log through Kinesis Data Streams for DynamoDB: shuffled, with
/// duplicates, in three invocations, failed records redelivered with the
/// next one as the event source mapping does. It converges to a fresh fold;
/// a Kinesis record that is not a change record is acknowledged and parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_function_converges_from_shuffled_duplicated_batches() {
    let log = canteen();
    let (config, table) = tables("lambda-kinesis").await;
    let api = RuntimeApi::start().await;
    let mut function = Function::start(KINESIS_BIN, &api, &config, &[]);

    let all = changes(&log, kinesis_seq, 2_000);
    let mut rng = SplitMix64::new(7);
    let mut delivered: Vec<Change> = all.clone();
    for _ in 0..all.len() / 3 {
        delivered.push(all[rng.below(all.len() as u64) as usize].clone());
    }
    rng.shuffle(&mut delivered);
    let junk_seq = kinesis_seq(9_999);
    let junk = kinesis_record(&junk_seq, "junk", b"not a change record");

    let thirds: Vec<Vec<Change>> = delivered
        .chunks(delivered.len().div_ceil(3))
        .map(<[Change]>::to_vec)
        .collect();
    assert_eq!(thirds.len(), 3);
    let by_seq: BTreeMap<String, Change> = all.iter().map(|c| (c.seq.clone(), c.clone())).collect();
    let mut retry: Vec<Change> = Vec::new();
    let mut failed_ever = 0;
    for (i, third) in thirds.iter().enumerate() {
        let mut batch: Vec<Change> = std::mem::take(&mut retry);
        batch.extend(third.iter().cloned());
        let mut records: Vec<Value> = batch.iter().map(Change::kinesis_record).collect();
        if i == 0 {
            records.insert(records.len() / 2, junk.clone());
        }
        let (_, outcome) = api
            .invoke(&mut function, &json!({"Records": records}))
            .await;
        let failures = outcome.failures();
        assert!(
            !failures.contains(&junk_seq),
            "a record that is not a change record is acknowledged"
        );
        failed_ever += failures.len();
        retry = failures
            .iter()
            .map(|seq| {
                by_seq
                    .get(seq)
                    .unwrap_or_else(|| panic!("failure {seq} names no delivered record"))
                    .clone()
            })
            .collect();
    }
    assert!(failed_ever > 0, "a shuffled log has gaps to redeliver");
    // Everything was delivered once; the last retries bring no new gap.
    let mut rounds = 0;
    while !retry.is_empty() {
        rounds += 1;
        assert!(
            rounds <= 1,
            "still failing after every record arrived: {retry:?}"
        );
        let records: Vec<Value> = retry.iter().map(Change::kinesis_record).collect();
        let (_, outcome) = api
            .invoke(&mut function, &json!({"Records": records}))
            .await;
        retry = outcome
            .failures()
            .iter()
            .map(|s| by_seq[s].clone())
            .collect();
    }

    let state = table.scan().await.unwrap();
    assert_converged(&state, &fresh_fold(&log));
    let parked: Vec<_> = state.parked.values().collect();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].record, junk_seq);
    assert!(
        parked[0].error.contains("not a DynamoDB change record"),
        "{parked:?}"
    );
    assert!(api.unexpected().is_empty(), "{:?}", api.unexpected());

    let printed = function.stop();
    let lines = json_lines(&printed);
    let batches = batch_lines(&lines);
    assert!(batches.len() >= 3, "{lines:#?}");
    // Lag is measured from the events' own recorded_at, in milliseconds.
    let lag = number(&batches[0], "lag_max_ms");
    assert!(lag_fits(&log, lag), "lag {lag} ms in {}", batches[0]);
    assert!(
        lines.iter().any(|l| {
            fields(l).get("message").and_then(Value::as_str) == Some("record parked")
                && fields(l).get("record").and_then(Value::as_str) == Some(junk_seq.as_str())
        }),
        "the parked record is logged: {lines:#?}"
    );
}

/// A record under a valid key whose bytes do not decode is parked with its
/// error, not retried; the next version of its stream in the same batch
/// waits behind it, and so does a later one delivered afterwards (found
/// through the table's parked records). Every other stream is projected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_parked_and_its_stream_waits_behind_it() {
    let log = canteen();
    let (config, table) = tables("lambda-poison").await;
    let api = RuntimeApi::start().await;
    let mut function = Function::start(STREAMS_BIN, &api, &config, &[]);

    let poisoned = order_stream(TWICE_REFUNDED);
    let all = changes(&log, streams_seq, 1_000);
    let of = |v: u64| {
        all.iter()
            .find(|c| c.pk == pk_of(TenantId::new(TENANT), poisoned) && c.version == v)
            .unwrap()
            .clone()
    };
    let (v1, v2, v3) = (
        of(1).with_bytes(b"\x01 these bytes are not a record"),
        of(2),
        of(3),
    );
    let first: Vec<Change> = all
        .iter()
        .filter(|c| !(c.pk == v1.pk && c.version != 2))
        .cloned()
        .chain([v1.clone()])
        .collect();

    let (_, outcome) = api.invoke(&mut function, &streams_event(&first)).await;
    assert_eq!(
        outcome.failures(),
        Vec::<String>::new(),
        "poison is not retried"
    );
    let (_, outcome) = api
        .invoke(&mut function, &streams_event(std::slice::from_ref(&v3)))
        .await;
    assert_eq!(
        outcome.failures(),
        Vec::<String>::new(),
        "behind parked poison, a later version is parked, not retried"
    );

    let state = table.scan().await.unwrap();
    let parked = |v: u64| {
        state
            .parked
            .get(&(v1.pk.clone(), v))
            .unwrap_or_else(|| panic!("version {v} is not parked: {:?}", state.parked))
    };
    assert_eq!(parked(1).record, v1.seq);
    assert_eq!(parked(1).behind, None);
    assert!(
        parked(1).error.contains("does not decode"),
        "{:?}",
        parked(1)
    );
    assert_eq!(
        (parked(2).record.as_str(), parked(2).behind),
        (v2.seq.as_str(), Some(1))
    );
    assert_eq!(
        (parked(3).record.as_str(), parked(3).behind),
        (v3.seq.as_str(), Some(1))
    );
    assert_eq!(state.parked.len(), 3, "{:?}", state.parked);
    assert!(
        !state.views.keys().any(|k| k.stream == poisoned),
        "the poisoned order has no view"
    );
    // Everything else is exactly a fresh fold without the poisoned stream.
    assert_converged(
        &state,
        &fresh_fold(log.iter().filter(|e| e.stream() != poisoned)),
    );

    let printed = function.stop();
    let lines = json_lines(&printed);
    let parked_lines = lines
        .iter()
        .filter(|l| fields(l).get("message").and_then(Value::as_str) == Some("record parked"))
        .count();
    assert_eq!(parked_lines, 3, "{lines:#?}");
}

/// An event the runtime cannot read as the function's event type is an
/// invocation error (Lambda retries the batch), and the function goes on
/// serving: the next invocation is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_is_an_invocation_error_and_the_function_serves_on() {
    let config = DynamoConfig {
        // Never reached: neither invocation touches the table.
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        table_prefix: unique_prefix("lambda-unreadable"),
    };
    for bin in [STREAMS_BIN, KINESIS_BIN] {
        let api = RuntimeApi::start().await;
        let mut function = Function::start(bin, &api, &config, &[]);
        let (_, outcome) = api
            .invoke(&mut function, &json!({"Records": "not a list"}))
            .await;
        let Outcome::Error { error_type, body } = outcome else {
            panic!("{bin}: an unreadable event was answered: {outcome:?}");
        };
        assert!(error_type.is_some(), "{bin}: {body}");
        assert!(body.get("errorMessage").is_some(), "{bin}: {body}");
        let (_, outcome) = api.invoke(&mut function, &json!({"Records": []})).await;
        assert_eq!(outcome.failures(), Vec::<String>::new(), "{bin}");
        let printed = function.stop();
        json_lines(&printed);
        assert!(
            !printed.stderr.iter().any(|l| l.contains("panicked")),
            "{bin}: {:?}",
            printed.stderr
        );
    }
}

/// Outside Lambda, the binary says what is missing and exits non-zero,
/// without a panic.
#[test]
fn without_the_runtime_api_the_binary_exits_with_its_reason() {
    let config = DynamoConfig {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        table_prefix: "unused-".to_owned(),
    };
    for bin in [STREAMS_BIN, KINESIS_BIN] {
        let function = Function::spawn(bin, &lambda_env(function_name(bin), None, &config));
        let (status, printed) = function.wait(EXIT_WAIT_MAX);
        let status = status.unwrap_or_else(|| panic!("{bin} did not exit: {printed:?}"));
        assert!(!status.success(), "{bin}: {status}");
        let stderr = printed.stderr.join("\n");
        assert!(
            stderr.contains("AWS_LAMBDA_RUNTIME_API is not set"),
            "{bin}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{bin}: {stderr}");
    }
}

/// With the read-model table unreachable, nothing can be projected: every
/// event record of the batch is a batch item failure (redelivered), the
/// invocation itself succeeds, and the process serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_table_fails_every_event_record_for_redelivery() {
    let log = canteen();
    let config = DynamoConfig {
        // Nothing listens on the discard port.
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        table_prefix: unique_prefix("lambda-unreachable"),
    };
    let api = RuntimeApi::start().await;
    let mut function = Function::start(STREAMS_BIN, &api, &config, &[]);
    let all = changes(&log, streams_seq, 1_000);
    let batch: Vec<Change> = all
        .iter()
        .filter(|c| c.pk.contains("|order/"))
        .take(3)
        .cloned()
        .collect();
    let (_, outcome) = api.invoke(&mut function, &streams_event(&batch)).await;
    let mut want: Vec<String> = batch.iter().map(|c| c.seq.clone()).collect();
    want.sort();
    assert_eq!(outcome.failures(), want);
    let (_, outcome) = api.invoke(&mut function, &json!({"Records": []})).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    let printed = function.stop();
    let lines = json_lines(&printed);
    assert!(
        lines
            .iter()
            .any(|l| l.get("level").and_then(Value::as_str) == Some("WARN")),
        "the failure is logged: {lines:#?}"
    );
}

/// lambda_runtime 1.5 panics without `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (or
/// with a value that is not an i32), in `Config::from_env`: the entry checks
/// it first and exits with the reason.
#[test]
fn without_the_memory_size_the_binary_exits_with_its_reason() {
    let config = DynamoConfig {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        table_prefix: "unused-".to_owned(),
    };
    for bin in [STREAMS_BIN, KINESIS_BIN] {
        let mut env = lambda_env(function_name(bin), None, &config);
        env.retain(|(k, _)| *k != "AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
        // A runtime API that is never answered: the binary must not get
        // that far.
        env.push(("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9".to_owned()));
        let (status, printed) = Function::spawn(bin, &env).wait(EXIT_WAIT_MAX);
        let status = status.unwrap_or_else(|| panic!("{bin} did not exit: {printed:?}"));
        let stderr = printed.stderr.join("\n");
        assert!(!status.success(), "{bin}: {status}");
        assert!(!stderr.contains("panicked"), "{bin}: {stderr}");
        assert!(
            stderr.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "{bin}: {stderr}"
        );
    }
}

/// A record that cannot be tied to a stream parks under its own id: two of
/// them in a batch, and another in a later batch, are three parked records,
/// all acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unreadable_record_is_parked() {
    let (config, table) = tables("lambda-unreadable-parked").await;
    let api = RuntimeApi::start().await;
    let mut function = Function::start(KINESIS_BIN, &api, &config, &[]);
    let (a, b, c) = (kinesis_seq(1), kinesis_seq(2), kinesis_seq(3));
    let event = json!({"Records": [
        kinesis_record(&a, "x", b"not a change record"),
        kinesis_record(&b, "y", b"{\"neither\": true}"),
    ]});
    let (_, outcome) = api.invoke(&mut function, &event).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    let event = json!({"Records": [kinesis_record(&c, "z", b"nor this")]});
    let (_, outcome) = api.invoke(&mut function, &event).await;
    assert_eq!(outcome.failures(), Vec::<String>::new());
    let state = table.scan().await.unwrap();
    let mut parked: Vec<&str> = state.parked.values().map(|p| p.record.as_str()).collect();
    parked.sort_unstable();
    assert_eq!(
        parked,
        vec![a.as_str(), b.as_str(), c.as_str()],
        "{:?}",
        state.parked
    );
    function.stop();
}

/// The committed samples, as Lambda delivers them (a DynamoDB Streams
/// batch; a Kinesis batch whose record carries a Kinesis Data Streams for
/// DynamoDB change record), read by the real binaries: each names one
/// event item whose bytes are not a record, which is parked under its
/// stream and acknowledged, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_batches_are_read_and_their_poison_parked() {
    for (bin, name, id) in [
        (
            STREAMS_BIN,
            "dynamodb-streams-event.json",
            "4421584500000000017450439091",
        ),
        (
            KINESIS_BIN,
            "kinesis-event.json",
            "49658327361027458734910291876543210987654321098765432",
        ),
    ] {
        let (config, table) = tables("lambda-fixture").await;
        let api = RuntimeApi::start().await;
        let mut function = Function::start(bin, &api, &config, &[]);
        let (_, outcome) = api.invoke(&mut function, &fixture(name)).await;
        assert_eq!(outcome.failures(), Vec::<String>::new(), "{name}");
        let state = table.scan().await.unwrap();
        let parked: Vec<(&str, u64, &str)> = state
            .parked
            .iter()
            .map(|((pk, version), p)| (pk.as_str(), *version, p.record.as_str()))
            .collect();
        assert_eq!(
            parked,
            vec![("acme|credit/E1", 1, id)],
            "{name}: {:?}",
            state.parked
        );
        function.stop();
    }
}

/// Standard base64, as DynamoDB's JSON carries binary values.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
