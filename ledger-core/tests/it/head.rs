//! Stream heads: golden fixtures of their bytes, heads evolved stream by
//! stream against the fully folded aggregates, deciding from restored heads
//! against deciding from the whole log, and no bytes make reading panic.
//!
//! Golden fixtures live in `tests/fixtures/golden/heads/<kind>.v<HEAD_FORMAT>.bin`.
//! A fixture is written once, by `TALLY_BLESS=1 cargo test -p ledger-core
//! --test it head`, and a fixture that no longer matches is a failing test:
//! a change to what a head holds or how it is written bumps [`HEAD_FORMAT`]
//! (stored heads of the old format are then rebuilt from their streams) and
//! blesses fixtures of the new format. Fixtures of a retired format stay
//! checked: they must be refused as [`HeadError::UnknownFormat`].

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ledger_core::codec;
use ledger_core::credit::CreditAccount;
use ledger_core::event::{
    CommissionRateChanged, CreditAccountOpened, CreditReplenished, CreditSpent, Line, Payment,
    PaymentReceived, RefundIssued, SaleRecorded, TenantConfigured, Tender, VendorRegistered,
    VendorSuspended,
};
use ledger_core::head::{HEAD_BYTES_MAX, HEAD_FORMAT, HeadError, HeadState, StreamHead};
use ledger_core::limits::{AMOUNT_MAJOR_MAX, ID_LEN_MAX, REFUNDS_PER_ORDER_MAX};
use ledger_core::memory::{Aggregates, SealContext};
use ledger_core::policy::{CreditPolicy, ReplenishMode};
use ledger_core::sale::{Order, OrderStatus};
use ledger_core::tenant::{TenantContext, TenantSettings};
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::RegisteredVendor;
use ledger_core::{
    Actor, Cadence, CommandId, CommissionRate, Currency, EmployeeId, Envelope, Event, EventId,
    Hash, Header, ItemCode, LocalDate, Money, OrderId, Period, RefundId, Role, StreamId,
    StreamKind, StreamVersion, TenantId, TimeZone, Timestamp, UserId, VendorId,
};
use proptest::prelude::*;
use rust_decimal::{Decimal, dec};

use crate::codec::{blessing, create_new};
use crate::properties::{Executed, config, decode_all, log_of, scenarios, simulate};

const BLESS_HINT: &str = "create missing fixtures with `TALLY_BLESS=1 cargo test -p ledger-core \
                          --test it head` and commit them";

// ---------------------------------------------------------------------------
// Fixed, realistic streams: the tenant "acme" (PHP, Asia/Manila), a vendor
// whose rate changed before it was suspended, an employee's account that
// was replenished and spent from, and an invoiced order of three lines, paid
// and then partly refunded.

fn php(amount: Decimal) -> Money {
    Money::parse(amount, Currency::new("PHP")).expect("a valid PHP amount")
}

fn rate(basis_points: u16) -> CommissionRate {
    CommissionRate::from_basis_points(basis_points).expect("a valid rate")
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("an RFC 3339 instant")
}

fn acme() -> TenantId {
    TenantId::new("acme")
}

fn tita() -> VendorId {
    VendorId::new("tita-kitchen")
}

fn maria() -> EmployeeId {
    EmployeeId::new("E042")
}

fn order_id() -> OrderId {
    OrderId::new("ord-20261116-0001")
}

fn policy() -> CreditPolicy {
    CreditPolicy {
        allowance: php(dec!(1500)),
        cadence: Cadence::SemiMonthly,
        mode: ReplenishMode::Accumulate,
        cap: Some(php(dec!(3000))),
    }
}

fn h2() -> Period {
    Period::parse("2026-11-H2").expect("a period")
}

/// Seals `events` as one stream's first events, chained, with fixed headers.
fn chain(stream: StreamId, events: Vec<Event>) -> Vec<Envelope> {
    let mut prev_hash = Hash::GENESIS;
    let mut seq = 0u128;
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let header = Header {
                event_id: EventId::from_u128(0x0193_3f6c_9a10_7c4e_8b2d_5a00_0000_0000 | seq),
                tenant_id: acme(),
                stream,
                version: StreamVersion::new(seq as u64),
                occurred_at: at("2026-11-16T01:02:03.456789Z"),
                recorded_at: at("2026-11-16T01:02:03.512004Z"),
                command_id: CommandId::from_u128(0x0193_3f6c_9a10_7d01_a4f3_c100_0000_0000 | seq),
                actor: Actor {
                    user_id: UserId::new("admin-rosa"),
                    role: Role::Admin,
                },
            };
            let sealed = codec::seal(header, event, prev_hash).expect("a fixture event seals");
            prev_hash = sealed.envelope.hash;
            sealed.envelope
        })
        .collect()
}

fn tenant_events() -> Vec<Envelope> {
    chain(
        StreamId::tenant(acme()),
        vec![Event::TenantConfigured(TenantConfigured {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        })],
    )
}

fn vendor_events() -> Vec<Envelope> {
    chain(
        StreamId::vendor(tita()),
        vec![
            Event::VendorRegistered(VendorRegistered {
                name: Name::new("Tita's Kitchen"),
                commission_rate: rate(1000),
            }),
            Event::CommissionRateChanged(CommissionRateChanged {
                commission_rate: rate(1250),
            }),
            Event::VendorSuspended(VendorSuspended {
                reason: Reason::new("Failed sanitary inspection on 2026-11-20"),
            }),
        ],
    )
}

fn credit_events() -> Vec<Envelope> {
    chain(
        StreamId::credit(maria()),
        vec![
            Event::CreditAccountOpened(CreditAccountOpened {
                name: Name::new("Maria Santos"),
                policy: policy(),
            }),
            Event::CreditReplenished(CreditReplenished {
                period: h2(),
                amount: php(dec!(1500)),
                balance_after: php(dec!(1500)),
            }),
            Event::CreditSpent(CreditSpent {
                order_id: OrderId::new("ord-20261116-0002"),
                amount: php(dec!(145.00)),
                balance_after: php(dec!(1355.00)),
            }),
        ],
    )
}

fn order_events() -> Vec<Envelope> {
    let line = |item: &str, quantity, unit_price| Line {
        item: ItemCode::new(item),
        quantity,
        unit_price: php(unit_price),
    };
    let due_date = LocalDate::ymd(2026, 11, 30);
    chain(
        StreamId::order(order_id()),
        vec![
            Event::SaleRecorded(SaleRecorded {
                vendor_id: tita(),
                lines: vec![
                    line("ADOBO-RICE", 2, dec!(95.00)),
                    line("CALAMANSI-JUICE", 3, dec!(32.50)),
                    line("HALO-HALO", 1, dec!(45.00)),
                ],
                gross: php(dec!(332.50)),
                commission_rate: rate(1250),
                commission: php(dec!(41.56)), // 12.5 % of 332.50 = 41.5625
                payment: Payment::Invoice { due_date },
                business_date: LocalDate::ymd(2026, 11, 16),
            }),
            Event::PaymentReceived(PaymentReceived {
                vendor_id: tita(),
                amount: php(dec!(332.50)),
                tender: Tender::MobileMoney,
                business_date: LocalDate::ymd(2026, 11, 28),
                due_date,
            }),
            Event::RefundIssued(RefundIssued {
                vendor_id: tita(),
                refund_id: RefundId::new("rf-0001-1"),
                amount: php(dec!(65.00)),
                commission_reversed: php(dec!(8.12)), // 41.56 × 65 / 332.50 = 8.1245
                tender: Tender::MobileMoney,
                business_date: LocalDate::ymd(2026, 11, 29),
                completes_refund: false,
                reason: Some(Reason::new("Wrong order served")),
            }),
        ],
    )
}

/// One committed head and what it must decode to.
struct GoldenHead {
    /// File name inside [`heads_dir`].
    file: String,
    /// The head, stated by hand.
    head: StreamHead,
    /// The head the stream's events evolve to; must equal `head`.
    evolved: StreamHead,
}

fn evolved(stream: StreamId, events: &[Envelope]) -> StreamHead {
    let mut head = StreamHead::empty(stream);
    for envelope in events {
        head.evolve(envelope)
            .expect("the fixture's events are in order");
    }
    head
}

fn golden(kind: StreamKind) -> GoldenHead {
    let (events, state) = match kind {
        StreamKind::Tenant => (tenant_events(), tenant_state()),
        StreamKind::Vendor => (vendor_events(), vendor_state()),
        StreamKind::Credit => (credit_events(), credit_state()),
        StreamKind::Order => (order_events(), order_state()),
    };
    let last = events.last().expect("every fixture stream has events");
    let stream = last.stream();
    let mut evolved = evolved(stream, &events);
    // No tenant event carries a currency: the handler marks it once any
    // event of the tenant does.
    evolved.mark_amounts_recorded();
    GoldenHead {
        file: format!("{}.v{HEAD_FORMAT}.bin", kind.as_str()),
        head: StreamHead {
            stream,
            version: last.version(),
            hash: last.hash,
            state,
        },
        evolved,
    }
}

fn tenant_state() -> HeadState {
    HeadState::Tenant(TenantContext {
        settings: Some(TenantSettings {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        }),
        amounts_recorded: true,
    })
}

fn vendor_state() -> HeadState {
    HeadState::Vendor(Some(RegisteredVendor {
        name: Name::new("Tita's Kitchen"),
        commission_rate: rate(1250),
        suspended: true,
    }))
}

fn credit_state() -> HeadState {
    HeadState::Credit(Some(CreditAccount {
        name: Name::new("Maria Santos"),
        policy: policy(),
        balance: php(dec!(1355.00)),
        suspended: false,
        last_period: Some(h2()),
    }))
}

fn order_state() -> HeadState {
    HeadState::Order(Some(Order {
        vendor_id: tita(),
        payment: Payment::Invoice {
            due_date: LocalDate::ymd(2026, 11, 30),
        },
        gross: php(dec!(332.50)),
        commission: php(dec!(41.56)),
        status: OrderStatus::PartiallyRefunded,
        settled_by: Some(Tender::MobileMoney),
        refunded: php(dec!(65.00)),
        commission_reversed: php(dec!(8.12)),
        refunds: vec![(RefundId::new("rf-0001-1"), php(dec!(65.00)))],
    }))
}

fn all_golden() -> Vec<GoldenHead> {
    StreamKind::ALL.into_iter().map(golden).collect()
}

// ---------------------------------------------------------------------------
// Golden fixtures.

fn heads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/heads")
}

/// The committed bytes of `golden`: a missing file is written from today's
/// encoding when blessing, and is an error otherwise. An existing file is
/// never written, blessing or not.
#[allow(clippy::disallowed_methods)] // Tests read and bless committed files.
fn committed(golden: &GoldenHead) -> Result<Vec<u8>, String> {
    let path = heads_dir().join(&golden.file);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound && blessing() => {
            create_new(&path, &golden.head.to_bytes());
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(format!("fixture {} is missing: {BLESS_HINT}", golden.file))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Checks one fixture: the stream's events evolve to the stated head, the
/// committed bytes decode to it, and `to_bytes` still writes those bytes.
fn check(golden: &GoldenHead) -> Result<(), String> {
    let file = &golden.file;
    if golden.evolved != golden.head {
        return Err(format!(
            "{file}: the stream evolves to\n{:#?}\nbut the fixture states\n{:#?}",
            golden.evolved, golden.head
        ));
    }
    let stored = committed(golden)?;
    let decoded =
        StreamHead::from_bytes(&stored).map_err(|e| format!("{file} no longer decodes: {e}"))?;
    if decoded != golden.head {
        return Err(format!(
            "{file} decodes to\n{decoded:#?}\nbut must decode to\n{:#?}",
            golden.head
        ));
    }
    let fresh = golden.head.to_bytes();
    if fresh != stored {
        let first = stored.iter().zip(&fresh).position(|(a, b)| a != b);
        return Err(format!(
            "{file}: `StreamHead::to_bytes` now writes different bytes for the same head \
             (committed {} bytes, now {} bytes, first difference at byte {}). Revert the \
             change, or bump HEAD_FORMAT and bless fixtures of the new format",
            stored.len(),
            fresh.len(),
            first.unwrap_or(stored.len().min(fresh.len())),
        ));
    }
    Ok(())
}

#[test]
fn golden_heads_decode_and_reencode() {
    let failures: Vec<String> = all_golden().iter().filter_map(|g| check(g).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A fixture of a retired format stays refused, so the caller rebuilds the
/// head from its stream instead of reading stale state.
#[test]
#[allow(clippy::disallowed_methods)] // Tests read committed files.
fn every_committed_head_fixture_is_checked() {
    let current: Vec<String> = all_golden().into_iter().map(|g| g.file).collect();
    let Ok(entries) = std::fs::read_dir(heads_dir()) else {
        return; // Nothing committed yet: the test above reports the missing files.
    };
    for entry in entries {
        let path = entry.expect("readable fixtures folder").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".bin") || current.contains(&name) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable fixture");
        let format = bytes.first().copied().unwrap_or(HEAD_FORMAT);
        assert!(
            format != HEAD_FORMAT,
            "{name} is of the current format but no test checks it"
        );
        assert_eq!(
            StreamHead::from_bytes(&bytes),
            Err(HeadError::UnknownFormat(format)),
            "{name}"
        );
    }
}

/// One fixture per kind of stream, so a committed file pins the binary form
/// of every kind of state.
#[test]
fn the_golden_heads_cover_every_kind() {
    let kinds: Vec<StreamKind> = all_golden().iter().map(|g| g.head.stream.kind()).collect();
    assert_eq!(kinds, StreamKind::ALL.to_vec());
    for g in all_golden() {
        assert_eq!(g.head.state.kind(), g.head.stream.kind(), "{}", g.file);
    }
}

// ---------------------------------------------------------------------------
// Heads against the fully folded aggregates.

/// Every event of `log`, grouped by stream in version order.
fn by_stream(log: &[Envelope]) -> BTreeMap<StreamId, Vec<&Envelope>> {
    let mut streams: BTreeMap<StreamId, Vec<&Envelope>> = BTreeMap::new();
    for envelope in log {
        streams.entry(envelope.stream()).or_default().push(envelope);
    }
    streams
}

fn fold(tenant_id: TenantId, log: &[Envelope]) -> Aggregates {
    let mut aggregates = Aggregates::new(tenant_id);
    for envelope in log {
        aggregates.evolve(envelope);
    }
    aggregates
}

fn round_trip(head: &StreamHead) -> Result<StreamHead, TestCaseError> {
    let bytes = head.to_bytes();
    prop_assert!(bytes.len() <= HEAD_BYTES_MAX, "{} bytes", bytes.len());
    prop_assert_eq!(bytes[0], HEAD_FORMAT);
    StreamHead::from_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {head:?}")))
}

/// The seal context of every command in the restore property.
fn seal_context() -> SealContext {
    SealContext {
        command_id: CommandId::from_u128(7),
        actor: Actor {
            user_id: UserId::new("admin-1"),
            role: Role::Admin,
        },
        now: at("2026-01-01T00:00:00Z"),
    }
}

/// What a command handler that keeps heads does around one command: the
/// heads of the streams it touched, evolved event by event and stored as
/// bytes; and the fully folded aggregates, as the oracle.
struct HeadKeeper {
    tenant_id: TenantId,
    folded: Aggregates,
    stored: BTreeMap<StreamId, Vec<u8>>,
}

impl HeadKeeper {
    fn new(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            folded: Aggregates::new(tenant_id),
            stored: BTreeMap::new(),
        }
    }

    fn load(&self, stream: StreamId) -> Result<StreamHead, TestCaseError> {
        match self.stored.get(&stream) {
            None => Ok(StreamHead::empty(stream)),
            Some(bytes) => {
                StreamHead::from_bytes(bytes).map_err(|e| TestCaseError::fail(format!("{e}")))
            }
        }
    }

    /// A fresh `Aggregates` with only the heads `command` touches restored
    /// decides and seals exactly as the fully folded one.
    fn check(&self, x: &Executed<'_>) -> Result<(), TestCaseError> {
        let command = x.command;
        let touches = self.folded.touches(command);
        let mut fresh = Aggregates::new(self.tenant_id);
        for stream in touches.writes.iter().chain(&touches.reads) {
            fresh.restore(self.load(*stream)?);
        }
        prop_assert_eq!(&fresh.touches(command), &touches, "{:?}", command);
        let decided = self.folded.decide(command);
        prop_assert_eq!(&fresh.decide(command), &decided, "{:?}", command);
        match (&decided, x.result) {
            (Ok(events), Ok(envelopes)) => {
                let executed: Vec<(StreamId, Event)> = envelopes
                    .iter()
                    .map(|e| (e.stream(), e.event.clone()))
                    .collect();
                prop_assert_eq!(events, &executed);
                let seal = |aggregates: &Aggregates| {
                    let mut id = 0u128;
                    aggregates
                        .seal(events.clone(), seal_context().now, seal_context(), || {
                            id += 1;
                            EventId::from_u128(id)
                        })
                        .map(|sealed| sealed.into_iter().map(|s| s.bytes).collect::<Vec<_>>())
                };
                prop_assert_eq!(seal(&fresh), seal(&self.folded));
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "oracle decided {:?}, the ledger {:?}", a, b),
        }
        Ok(())
    }

    /// Folds the command's events in: into the oracle, and into the heads
    /// of their streams; the tenant head is marked (and stored) when one of
    /// them carries a currency.
    fn record(&mut self, appended: &[Envelope]) -> Result<(), TestCaseError> {
        for envelope in appended {
            self.folded.evolve(envelope);
            let mut head = self.load(envelope.stream())?;
            head.evolve(envelope)
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            self.stored.insert(envelope.stream(), head.to_bytes());
        }
        if appended.iter().any(|e| e.event.currency().is_some()) {
            let tenant = StreamId::tenant(self.tenant_id);
            let mut head = self.load(tenant)?;
            head.mark_amounts_recorded();
            self.stored.insert(tenant, head.to_bytes());
        }
        for envelope in appended {
            let stream = envelope.stream();
            prop_assert_eq!(&self.load(stream)?, &self.folded.stream_head(stream));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    /// For every stream of any generated log, the head evolved over that
    /// stream's events alone equals the stream's head in the fully folded
    /// aggregates; the tenant head's `amounts_recorded` is whether any event
    /// of the tenant carries a currency. A stream without events has the
    /// empty head.
    #[test]
    fn an_evolved_head_equals_the_folded_stream_head(scenario in scenarios(20..120)) {
        let tenant_id = TenantId::new("t1");
        let log = decode_all(&log_of("t1", &scenario)?)?;
        let folded = fold(tenant_id, &log);
        let recorded = log.iter().any(|e| e.event.currency().is_some());
        prop_assert_eq!(folded.amounts_recorded(), recorded);
        for (stream, events) in by_stream(&log) {
            let mut head = StreamHead::empty(stream);
            for envelope in events {
                head.evolve(envelope).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            }
            if stream.kind() == StreamKind::Tenant && recorded {
                head.mark_amounts_recorded();
            }
            if let HeadState::Tenant(t) = &head.state {
                prop_assert_eq!(t.amounts_recorded, recorded);
            }
            prop_assert_eq!(&head, &folded.stream_head(stream));
        }
        for stream in [StreamId::vendor(VendorId::new("nobody")), StreamId::order(OrderId::new("none"))] {
            prop_assert_eq!(folded.stream_head(stream), StreamHead::empty(stream));
        }
    }

    /// Every head a generated log passes through, at every version of every
    /// stream, reads back from its bytes as itself.
    #[test]
    fn heads_round_trip_through_bytes(scenario in scenarios(20..120)) {
        let log = decode_all(&log_of("t1", &scenario)?)?;
        for (stream, events) in by_stream(&log) {
            let mut head = StreamHead::empty(stream);
            prop_assert_eq!(&round_trip(&head)?, &head);
            for envelope in events {
                head.evolve(envelope).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(&round_trip(&head)?, &head);
            }
            head.mark_amounts_recorded();
            prop_assert_eq!(&round_trip(&head)?, &head);
        }
    }

    /// Before every generated command, fresh aggregates holding only the
    /// stored heads of the streams the command touches decide and seal as
    /// the aggregates folded from the whole log, and as the ledger did.
    #[test]
    fn restoring_the_touched_heads_decides_as_the_full_fold(scenario in scenarios(20..120)) {
        let tenant_id = TenantId::new("t1");
        let mut keeper = HeadKeeper::new(tenant_id);
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            keeper.check(x)?;
            let appended = decode_all(x.appended())?;
            keeper.record(&appended)
        })?;
        prop_assert_eq!(keeper.folded.amounts_recorded(), {
            let tenant = keeper.load(StreamId::tenant(tenant_id))?;
            matches!(tenant.state, HeadState::Tenant(TenantContext { amounts_recorded: true, .. }))
        });
    }
}

// ---------------------------------------------------------------------------
// Robustness: no bytes make reading panic.

/// Every golden head, and the largest order head.
fn samples() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = all_golden().iter().map(|g| g.head.to_bytes()).collect();
    all.push(largest_order_head().to_bytes());
    all
}

/// An order at every bound: the longest ids, the largest amounts, every
/// refund an order may receive.
fn largest_order_head() -> StreamHead {
    let id = |prefix: &str, n: usize| format!("{prefix}{n:0>width$}", width = ID_LEN_MAX - 1);
    let big = php(Decimal::from(AMOUNT_MAJOR_MAX));
    let refunds = (0..REFUNDS_PER_ORDER_MAX)
        .map(|n| (RefundId::new(&id("r", n)), big))
        .collect();
    let order_id = OrderId::new(&id("o", 0));
    StreamHead {
        stream: StreamId::order(order_id),
        version: StreamVersion::new(u64::MAX - 1),
        hash: Hash([0xff; 32]),
        state: HeadState::Order(Some(Order {
            vendor_id: VendorId::new(&id("v", 0)),
            payment: Payment::Credit {
                employee_id: EmployeeId::new(&id("e", 0)),
            },
            gross: big,
            commission: big,
            status: OrderStatus::Refunded,
            settled_by: Some(Tender::Credit {
                employee_id: EmployeeId::new(&id("e", 0)),
            }),
            refunded: big,
            commission_reversed: big,
            refunds,
        })),
    }
}

#[test]
fn the_largest_order_head_fits_the_bound() {
    let head = largest_order_head();
    let bytes = head.to_bytes();
    assert!(
        bytes.len() * 4 <= HEAD_BYTES_MAX,
        "{} bytes leave too little room below {HEAD_BYTES_MAX}",
        bytes.len()
    );
    assert_eq!(StreamHead::from_bytes(&bytes), Ok(head));
}

/// Every strict prefix of a real head is refused, and every single changed
/// byte is read without panicking: the format byte as an unknown format.
#[test]
fn truncated_and_flipped_heads_never_panic() {
    for bytes in samples() {
        for len in 0..bytes.len() {
            let result = StreamHead::from_bytes(&bytes[..len]);
            assert!(
                matches!(result, Err(HeadError::Malformed(_))),
                "{len} of {} bytes: {result:?}",
                bytes.len()
            );
        }
        for position in 0..bytes.len() {
            for mask in [0x01, 0x02, 0x10, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[position] ^= mask;
                let result = StreamHead::from_bytes(&flipped);
                if position == 0 {
                    assert_eq!(result, Err(HeadError::UnknownFormat(flipped[0])));
                } else if let Ok(head) = result {
                    // Whatever it reads as, it is a head that writes and reads back.
                    assert_eq!(StreamHead::from_bytes(&head.to_bytes()), Ok(head));
                }
            }
        }
    }
}

#[test]
fn another_format_byte_is_an_unknown_format() {
    let bytes = golden(StreamKind::Order).head.to_bytes();
    for format in (0..=u8::MAX).filter(|&f| f != HEAD_FORMAT) {
        let mut other = bytes.clone();
        other[0] = format;
        assert_eq!(
            StreamHead::from_bytes(&other),
            Err(HeadError::UnknownFormat(format))
        );
        assert_eq!(
            StreamHead::from_bytes(&[format]),
            Err(HeadError::UnknownFormat(format))
        );
    }
}

#[test]
fn empty_trailing_and_oversized_inputs_are_malformed() {
    let malformed =
        |bytes: &[u8]| matches!(StreamHead::from_bytes(bytes), Err(HeadError::Malformed(_)));
    assert!(malformed(&[]));
    assert!(malformed(&[HEAD_FORMAT]));
    let mut trailing = golden(StreamKind::Vendor).head.to_bytes();
    trailing.push(0);
    assert!(malformed(&trailing));
    let mut oversized = vec![0u8; HEAD_BYTES_MAX + 1];
    oversized[0] = HEAD_FORMAT;
    assert!(malformed(&oversized));
}

/// The kind byte and the stream's own kind must agree.
#[test]
fn a_head_whose_kind_is_not_its_streams_is_malformed() {
    for g in all_golden() {
        let bytes = g.head.to_bytes();
        for kind in 0..=u8::MAX {
            let mut other = bytes.clone();
            other[1] = kind;
            if kind != bytes[1] {
                assert!(
                    matches!(StreamHead::from_bytes(&other), Err(HeadError::Malformed(_))),
                    "{} with kind byte {kind}",
                    g.file
                );
            }
        }
    }
}

/// A length prefix far beyond the bytes left (a refund count, a name) is
/// refused before anything is reserved for it.
#[test]
fn huge_length_prefixes_are_refused_without_reserving() {
    let bytes = golden(StreamKind::Order).head.to_bytes();
    // The refund count is the byte before the one refund's id and amount.
    let refund = RefundId::new("rf-0001-1");
    let amount = bincode::encode_to_vec(php(dec!(65.00)), bincode::config::standard()).unwrap();
    let tail = 1 + refund.as_str().len() + amount.len(); // id length, id, amount
    let count_at = bytes.len() - tail - 1;
    assert_eq!(bytes[count_at], 1, "the refund count");
    let mut huge = bytes[..count_at].to_vec();
    huge.extend([0xfd]); // a varint u64 follows: eight bytes
    huge.extend(u64::MAX.to_le_bytes());
    huge.extend(&bytes[count_at + 1..]);
    assert!(matches!(
        StreamHead::from_bytes(&huge),
        Err(HeadError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never panic the reader, with or without a valid
    /// format and kind byte (without them, nearly every input would stop at
    /// the first byte).
    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..400),
        valid_format: bool,
        kind in 0..6u8,
    ) {
        if valid_format && !bytes.is_empty() {
            bytes[0] = HEAD_FORMAT;
        }
        if bytes.len() > 2 {
            bytes[1] = kind;
            bytes[2] = kind; // The stream id's kind tag.
        }
        if let Ok(head) = StreamHead::from_bytes(&bytes) {
            prop_assert_eq!(StreamHead::from_bytes(&head.to_bytes()), Ok(head));
        }
    }

    /// A real head with a random tail replaced never panics the reader.
    #[test]
    fn real_heads_with_random_tails_never_panic(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let samples = samples();
        let bytes = &samples[which.index(samples.len())];
        let mut mutated = bytes[..cut.index(bytes.len())].to_vec();
        mutated.extend(tail);
        let _ = StreamHead::from_bytes(&mutated);
    }
}

// ---------------------------------------------------------------------------
// Evolving a head.

#[test]
fn out_of_order_events_are_refused_and_leave_the_head_unchanged() {
    let events = order_events();
    let stream = events[0].stream();
    let mut head = StreamHead::empty(stream);
    head.evolve(&events[0]).unwrap();
    let before = head.clone();
    // Skipping ahead, and repeating the event the head is at.
    for (envelope, found) in [(&events[2], 3), (&events[0], 1)] {
        assert_eq!(
            head.evolve(envelope),
            Err(HeadError::OutOfOrder {
                stream,
                head: StreamVersion::new(1),
                found: StreamVersion::new(found),
            })
        );
        assert_eq!(head, before);
    }
    // An event of another stream.
    let vendor = &vendor_events()[1];
    assert_eq!(
        head.evolve(vendor),
        Err(HeadError::WrongStream {
            head: stream,
            event: vendor.stream(),
        })
    );
    assert_eq!(head, before);
    // The next version, but not linked to the head.
    let mut unlinked = events[1].clone();
    unlinked.prev_hash = Hash([7; 32]);
    assert_eq!(
        head.evolve(&unlinked),
        Err(HeadError::BrokenLink {
            stream,
            version: StreamVersion::new(2),
        })
    );
    assert_eq!(head, before);
    // And the right event still moves it.
    head.evolve(&events[1]).unwrap();
    assert_eq!(head.version, StreamVersion::new(2));
    assert_eq!(head.hash, events[1].hash);
}

/// A head decoded at the last version there is refuses the next event
/// instead of overflowing.
#[test]
fn a_head_at_the_last_version_refuses_more_events() {
    let events = vendor_events();
    let mut head = StreamHead::empty(events[0].stream());
    head.version = StreamVersion::new(u64::MAX);
    let before = head.clone();
    assert!(matches!(
        head.evolve(&events[0]),
        Err(HeadError::OutOfOrder { .. })
    ));
    assert_eq!(head, before);
}

#[test]
fn amounts_recorded_marks_only_the_tenant_head() {
    let mut tenant = evolved(StreamId::tenant(acme()), &tenant_events());
    assert!(matches!(
        tenant.state,
        HeadState::Tenant(TenantContext {
            amounts_recorded: false,
            ..
        })
    ));
    tenant.mark_amounts_recorded();
    assert_eq!(tenant.state, tenant_state());
    let vendor = evolved(StreamId::vendor(tita()), &vendor_events());
    let mut marked = vendor.clone();
    marked.mark_amounts_recorded();
    assert_eq!(marked, vendor);
}

/// Restoring the tenant head sets `amounts_recorded` from it, either way.
#[test]
fn restoring_the_tenant_head_sets_amounts_recorded() {
    let mut aggregates = Aggregates::new(acme());
    let mut head = golden(StreamKind::Tenant).head;
    aggregates.restore(head.clone());
    assert!(aggregates.amounts_recorded());
    assert_eq!(aggregates.stream_head(head.stream), head);
    head.state = HeadState::Tenant(TenantContext {
        amounts_recorded: false,
        ..TenantContext::default()
    });
    aggregates.restore(head.clone());
    assert!(!aggregates.amounts_recorded());
    assert_eq!(aggregates.settings(), None);
    for g in all_golden() {
        aggregates.restore(g.head.clone());
        assert_eq!(aggregates.stream_head(g.head.stream), g.head);
    }
}
