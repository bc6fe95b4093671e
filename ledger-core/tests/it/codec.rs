//! The stored record format: golden fixtures, upcasting, robustness against
//! arbitrary and tampered bytes, the codec's specific errors, and JSON.
//!
//! Golden fixtures live in `tests/fixtures/golden/<EventType>.v<N>.bin`. A
//! fixture is written once, by `TALLY_BLESS=1 cargo test -p ledger-core --test
//! it codec`, and never again: stored bytes must decode forever, so a fixture
//! that no longer matches is a failing test, never a file to regenerate.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ledger_core::codec::{self, ChainError, CodecError, FORMAT_VERSION};
use ledger_core::event::{
    CommissionRateChanged, CreditAccountOpened, CreditAccountReinstated, CreditAccountSuspended,
    CreditAdjusted, CreditPolicyChanged, CreditRefunded, CreditReplenished, CreditSpent, Line,
    Payment, PaymentReceived, RefundIssued, SaleRecorded, TenantConfigured, Tender,
    VendorRegistered, VendorReinstated, VendorSuspended,
};
use ledger_core::limits::{EVENT_BYTES_MAX, ID_LEN_MAX, LINES_PER_SALE_MAX, QUANTITY_MAX};
use ledger_core::policy::{CreditPolicy, ReplenishMode};
use ledger_core::text::{Name, Reason};
use ledger_core::{
    Actor, Cadence, CommandId, CommissionRate, Currency, EmployeeId, Envelope, Event, EventId,
    EventType, Hash, Header, ItemCode, LocalDate, Money, OrderId, Period, RefundId, Role, StreamId,
    StreamKind, StreamVersion, TenantId, TimeZone, Timestamp, UserId, VendorId,
};
use proptest::prelude::*;
use rust_decimal::{Decimal, dec};
use serde_json::json;
use sha2::{Digest, Sha256};

/// `format | prev_hash | hash`, before the body.
const PREFIX_LEN: usize = 1 + 32 + 32;

const BLESS_HINT: &str = "create missing fixtures with `TALLY_BLESS=1 cargo test -p ledger-core \
                          --test it codec` and commit them";

// ---------------------------------------------------------------------------
// Fixed, realistic values: one tenant ("acme", PHP, Asia/Manila), one vendor,
// one employee's credit account, an invoiced order and a credit-paid order.

fn php(amount: Decimal) -> Money {
    Money::parse(amount, Currency::new("PHP")).expect("a valid PHP amount")
}

fn rate(basis_points: u16) -> CommissionRate {
    CommissionRate::from_basis_points(basis_points).expect("a valid rate")
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("an RFC 3339 instant")
}

fn tita() -> VendorId {
    VendorId::new("tita-kitchen")
}

fn maria() -> EmployeeId {
    EmployeeId::new("E042")
}

fn invoiced_order() -> OrderId {
    OrderId::new("ord-20261116-0001")
}

fn credit_order() -> OrderId {
    OrderId::new("ord-20261116-0002")
}

const ADMIN: (&str, Role) = ("admin-rosa", Role::Admin);
const CASHIER: (&str, Role) = ("cashier-07", Role::Cashier);
const SERVICE: (&str, Role) = ("replenisher", Role::Service);

/// The previous event's hash for an event at `version` of its stream: genesis
/// for the first event, otherwise a fixed digest standing in for the real one.
fn prev_hash(version: u64) -> Hash {
    if version == 1 {
        Hash::GENESIS
    } else {
        Hash::from_hex("5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8")
            .expect("64 hex digits")
    }
}

/// A header with ids derived from `seq`, so every fixture's ids differ.
fn header(
    seq: u128,
    stream: StreamId,
    version: u64,
    (user, role): (&str, Role),
    occurred_at: &str,
    recorded_at: &str,
) -> Header {
    Header {
        event_id: EventId::from_u128(0x0193_3f6c_9a10_7c4e_8b2d_5a00_0000_0000 | seq),
        tenant_id: TenantId::new("acme"),
        stream,
        version: StreamVersion::new(version),
        occurred_at: at(occurred_at),
        recorded_at: at(recorded_at),
        command_id: CommandId::from_u128(0x0193_3f6c_9a10_7d01_a4f3_c100_0000_0000 | seq),
        actor: Actor {
            user_id: UserId::new(user),
            role,
        },
    }
}

/// The fixed header and event of `event_type`'s golden fixture. The match is
/// exhaustive so that a new event type cannot be added without one.
fn golden_event(event_type: EventType) -> (Header, Event) {
    let tenant = StreamId::tenant(TenantId::new("acme"));
    let vendor = StreamId::vendor(tita());
    let credit = StreamId::credit(maria());
    let day = "2026-11-16T01:02:03.456789Z";
    let later = "2026-11-16T01:02:03.512004Z";
    match event_type {
        EventType::TenantConfigured => (
            header(
                1,
                tenant,
                1,
                ADMIN,
                "2026-11-01T00:00:00Z",
                "2026-11-01T00:00:00.000417Z",
            ),
            Event::TenantConfigured(TenantConfigured {
                currency: Currency::new("PHP"),
                time_zone: TimeZone::new("Asia/Manila"),
            }),
        ),
        EventType::VendorRegistered => (
            header(2, vendor, 1, ADMIN, day, later),
            Event::VendorRegistered(VendorRegistered {
                name: Name::new("Tita's Kitchen"),
                commission_rate: rate(1000),
            }),
        ),
        EventType::CommissionRateChanged => (
            header(3, vendor, 2, ADMIN, day, later),
            Event::CommissionRateChanged(CommissionRateChanged {
                commission_rate: rate(1250),
            }),
        ),
        EventType::VendorSuspended => (
            header(4, vendor, 3, ADMIN, day, later),
            Event::VendorSuspended(VendorSuspended {
                reason: Reason::new("Failed sanitary inspection on 2026-11-20"),
            }),
        ),
        EventType::VendorReinstated => (
            header(5, vendor, 4, ADMIN, day, later),
            Event::VendorReinstated(VendorReinstated {}),
        ),
        EventType::CreditAccountOpened => (
            header(6, credit, 1, ADMIN, day, later),
            Event::CreditAccountOpened(CreditAccountOpened {
                name: Name::new("Maria Santos"),
                policy: CreditPolicy {
                    allowance: php(dec!(1500)),
                    cadence: Cadence::SemiMonthly,
                    mode: ReplenishMode::Accumulate,
                    cap: Some(php(dec!(3000))),
                },
            }),
        ),
        EventType::CreditPolicyChanged => (
            header(7, credit, 2, ADMIN, day, later),
            Event::CreditPolicyChanged(CreditPolicyChanged {
                policy: CreditPolicy {
                    allowance: php(dec!(1750)),
                    cadence: Cadence::SemiMonthly,
                    mode: ReplenishMode::Accumulate,
                    cap: None,
                },
            }),
        ),
        EventType::CreditReplenished => (
            header(
                8,
                credit,
                3,
                SERVICE,
                "2026-11-15T16:00:00Z",
                "2026-11-15T16:00:01.204311Z",
            ),
            Event::CreditReplenished(CreditReplenished {
                period: Period::parse("2026-11-H2").expect("a period"),
                amount: php(dec!(1750)),
                balance_after: php(dec!(1750)),
            }),
        ),
        EventType::CreditSpent => (
            header(9, credit, 4, CASHIER, day, later),
            Event::CreditSpent(CreditSpent {
                order_id: credit_order(),
                amount: php(dec!(145.00)),
                balance_after: php(dec!(1605.00)),
            }),
        ),
        EventType::CreditRefunded => (
            header(
                10,
                credit,
                5,
                ADMIN,
                "2026-11-17T02:30:00Z",
                "2026-11-17T02:30:00.090001Z",
            ),
            Event::CreditRefunded(CreditRefunded {
                order_id: credit_order(),
                refund_id: RefundId::new("rf-0002-1"),
                amount: php(dec!(65.00)),
                balance_after: php(dec!(1670.00)),
            }),
        ),
        EventType::CreditAdjusted => (
            header(
                11,
                credit,
                6,
                ADMIN,
                "2026-11-18T00:10:00Z",
                "2026-11-18T00:10:00.3Z",
            ),
            Event::CreditAdjusted(CreditAdjusted {
                amount: php(dec!(-20.00)),
                reason: Reason::new("Duplicate meal charge, see ticket #4411"),
                balance_after: php(dec!(1650.00)),
            }),
        ),
        EventType::CreditAccountSuspended => (
            header(
                12,
                credit,
                7,
                ADMIN,
                "2026-11-20T08:00:00Z",
                "2026-11-20T08:00:00.5Z",
            ),
            Event::CreditAccountSuspended(CreditAccountSuspended {
                reason: Reason::new("On leave without pay"),
            }),
        ),
        EventType::CreditAccountReinstated => (
            header(
                13,
                credit,
                8,
                ADMIN,
                "2026-12-01T08:00:00Z",
                "2026-12-01T08:00:00.5Z",
            ),
            Event::CreditAccountReinstated(CreditAccountReinstated {}),
        ),
        // An offline sale (recorded two hours after it happened), invoiced.
        EventType::SaleRecorded => (
            header(
                14,
                StreamId::order(invoiced_order()),
                1,
                CASHIER,
                "2026-11-16T03:12:45.25Z",
                "2026-11-16T05:40:02.918331Z",
            ),
            Event::SaleRecorded(SaleRecorded {
                vendor_id: tita(),
                lines: vec![
                    Line {
                        item: ItemCode::new("ADOBO-RICE"),
                        quantity: 2,
                        unit_price: php(dec!(95.00)),
                    },
                    Line {
                        item: ItemCode::new("CALAMANSI-JUICE"),
                        quantity: 3,
                        unit_price: php(dec!(32.50)),
                    },
                ],
                gross: php(dec!(287.50)),
                commission_rate: rate(1250),
                commission: php(dec!(35.94)), // 12.5 % of 287.50 = 35.9375
                payment: Payment::Invoice {
                    due_date: LocalDate::ymd(2026, 11, 30),
                },
                business_date: LocalDate::ymd(2026, 11, 16),
            }),
        ),
        EventType::PaymentReceived => (
            header(
                15,
                StreamId::order(invoiced_order()),
                2,
                CASHIER,
                day,
                later,
            ),
            Event::PaymentReceived(PaymentReceived {
                vendor_id: tita(),
                amount: php(dec!(287.50)),
                tender: Tender::MobileMoney,
                business_date: LocalDate::ymd(2026, 11, 28),
                due_date: LocalDate::ymd(2026, 11, 30),
            }),
        ),
        // A partial refund of a 145.00 sale paid with Maria's credit.
        EventType::RefundIssued => (
            header(
                16,
                StreamId::order(credit_order()),
                2,
                ADMIN,
                "2026-11-17T02:30:00Z",
                later,
            ),
            Event::RefundIssued(RefundIssued {
                vendor_id: tita(),
                refund_id: RefundId::new("rf-0002-1"),
                amount: php(dec!(65.00)),
                commission_reversed: php(dec!(8.12)), // 18.12 × 65 / 145
                tender: Tender::Credit {
                    employee_id: maria(),
                },
                business_date: LocalDate::ymd(2026, 11, 17),
                completes_refund: false,
                reason: Some(Reason::new("Wrong order served")),
            }),
        ),
    }
}

// ---------------------------------------------------------------------------
// Golden fixtures.

/// One committed record and what it must decode to.
struct Golden {
    /// File name inside [`golden_dir`].
    file: String,
    header: Header,
    prev_hash: Hash,
    /// The decoded event: for an old schema version, after upcasting.
    event: Event,
    /// The record as this code writes it today (what blessing commits).
    fresh: Vec<u8>,
    /// Whether `codec::seal` writes this version today, so the fixture must
    /// equal `fresh` byte for byte.
    current: bool,
}

fn current_golden(event_type: EventType) -> Golden {
    let (header, event) = golden_event(event_type);
    let prev_hash = prev_hash(header.version.get());
    let sealed = codec::seal(header, event.clone(), prev_hash).expect("a golden event seals");
    Golden {
        file: format!(
            "{}.v{}.bin",
            event_type.as_str(),
            event_type.schema_version()
        ),
        header,
        prev_hash,
        event,
        fresh: sealed.bytes,
        current: true,
    }
}

/// `CreditAccountOpened` v1 (before the policy gained `mode` and `cap`).
fn credit_account_opened_v1() -> Golden {
    let header = header(
        17,
        StreamId::credit(EmployeeId::new("E017")),
        1,
        ADMIN,
        "2025-06-02T01:00:00Z",
        "2025-06-02T01:00:00.250113Z",
    );
    let (name, allowance, cadence) = (
        Name::new("Juan dela Cruz"),
        php(dec!(2000)),
        Cadence::Monthly,
    );
    let fresh = codec::seal_legacy_credit_account_opened_v1(
        header,
        name.clone(),
        allowance,
        cadence,
        Hash::GENESIS,
    )
    .expect("a v1 record seals");
    // A v1 account was topped up every period, with no cap.
    let policy = CreditPolicy {
        allowance,
        cadence,
        mode: ReplenishMode::TopUp,
        cap: None,
    };
    Golden {
        file: "CreditAccountOpened.v1.bin".into(),
        header,
        prev_hash: Hash::GENESIS,
        event: Event::CreditAccountOpened(CreditAccountOpened { name, policy }),
        fresh,
        current: false,
    }
}

fn all_golden() -> Vec<Golden> {
    let mut all: Vec<Golden> = EventType::ALL.into_iter().map(current_golden).collect();
    all.push(credit_account_opened_v1());
    all
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

#[allow(clippy::disallowed_methods)] // The bless switch is an environment variable.
pub(crate) fn blessing() -> bool {
    std::env::var("TALLY_BLESS").is_ok_and(|v| v == "1")
}

/// The committed bytes of `golden`. A missing file is written from `fresh`
/// when blessing, and is an error otherwise. An existing file is never
/// written, blessing or not.
#[allow(clippy::disallowed_methods)] // Tests read and bless committed files.
fn committed(golden: &Golden) -> Result<Vec<u8>, String> {
    let path = golden_dir().join(&golden.file);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound && blessing() => {
            create_new(&path, &golden.fresh);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(format!("fixture {} is missing: {BLESS_HINT}", golden.file))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes `path` unless it exists, atomically: several tests may bless the
/// same fixture at once, and none may see it half written or overwrite it.
#[allow(clippy::disallowed_methods)] // Tests read and bless committed files.
pub(crate) fn create_new(path: &Path, bytes: &[u8]) {
    static TEMPS: AtomicUsize = AtomicUsize::new(0);
    let n = TEMPS.fetch_add(1, Ordering::Relaxed);
    let temp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::create_dir_all(path.parent().expect("a fixture is in a folder"))
        .expect("fixtures folder");
    std::fs::write(&temp, bytes).expect("write temporary fixture");
    // A hard link, unlike a rename, fails rather than replace an existing file.
    match std::fs::hard_link(&temp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    }
    std::fs::remove_file(&temp).expect("remove temporary fixture");
}

/// Checks one fixture: (a) it decodes to exactly the expected envelope, (b)
/// its hash verifies and (c) for current versions, `seal` still writes it.
fn check(golden: &Golden) -> Result<(), String> {
    let file = &golden.file;
    let stored = committed(golden)?;
    let decoded = codec::decode(&stored).map_err(|e| format!("{file} no longer decodes: {e}"))?;
    let (prev_hash, hash) =
        codec::verify_record(&stored).map_err(|e| format!("{file} no longer verifies: {e}"))?;
    let expected = Envelope {
        header: golden.header,
        prev_hash: golden.prev_hash,
        hash,
        event: golden.event.clone(),
    };
    if decoded != expected || prev_hash != golden.prev_hash {
        return Err(format!(
            "{file} decodes to\n{decoded:#?}\nbut must decode to\n{expected:#?}"
        ));
    }
    if golden.current && stored != golden.fresh {
        // The stored hash differs whenever anything does; point past it.
        let differs = |(i, (a, b)): (usize, (&u8, &u8))| a != b && !(33..PREFIX_LEN).contains(&i);
        let first = stored
            .iter()
            .zip(&golden.fresh)
            .enumerate()
            .position(differs);
        return Err(format!(
            "{file}: `codec::seal` now writes different bytes for the same value \
             (committed {} bytes, now {} bytes, first difference at byte {}). Stored bytes are \
             forever and fixtures are never re-blessed: revert the format change, or bump the \
             schema version, add an upcaster and keep this fixture as a legacy case",
            stored.len(),
            golden.fresh.len(),
            first.unwrap_or(stored.len().min(golden.fresh.len())),
        ));
    }
    Ok(())
}

#[test]
fn golden_fixtures_decode_verify_and_reencode() {
    let failures: Vec<String> = all_golden().iter().filter_map(|g| check(g).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_event_type_has_a_current_fixture() {
    let mut missing = Vec::new();
    for event_type in EventType::ALL {
        let golden = current_golden(event_type);
        assert_eq!(
            golden.file,
            format!(
                "{}.v{}.bin",
                event_type.as_str(),
                event_type.schema_version()
            )
        );
        if let Err(e) = committed(&golden) {
            missing.push(e);
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// When a schema version is bumped, the old fixture stays (its bytes must
/// still decode) and needs a legacy case here; an unchecked fixture means
/// that case was forgotten.
#[test]
fn every_committed_fixture_is_checked() {
    let known: Vec<String> = all_golden().into_iter().map(|g| g.file).collect();
    let Ok(entries) = std::fs::read_dir(golden_dir()) else {
        return; // Nothing committed yet: the tests above report the missing files.
    };
    let mut unchecked: Vec<String> = entries
        .map(|e| {
            e.expect("readable fixtures folder")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".bin") && !known.contains(name))
        .collect();
    unchecked.sort();
    assert!(
        unchecked.is_empty(),
        "fixtures no test checks: {unchecked:?}; add a legacy case for each to all_golden()"
    );
}

// ---------------------------------------------------------------------------
// Upcasting.

#[test]
fn credit_account_opened_v1_upcasts_to_an_uncapped_top_up_policy() {
    let golden = credit_account_opened_v1();
    let stored = committed(&golden).unwrap_or_else(|e| panic!("{e}"));

    // The record really is v1: the schema byte follows the header and the tag.
    let tag_at = PREFIX_LEN + encode(&golden.header).len();
    assert_eq!(
        stored[tag_at..tag_at + 2],
        [EventType::CreditAccountOpened.tag(), 1]
    );

    let envelope = codec::decode(&stored).expect("v1 decodes");
    let Event::CreditAccountOpened(opened) = &envelope.event else {
        panic!("decoded as {:?}", envelope.event.event_type());
    };
    assert_eq!(opened.name, Name::new("Juan dela Cruz"));
    assert_eq!(opened.policy.allowance, php(dec!(2000)));
    assert_eq!(opened.policy.cadence, Cadence::Monthly);
    assert_eq!(opened.policy.mode, ReplenishMode::TopUp);
    assert_eq!(opened.policy.cap, None);

    // Upcasting changes the value, never the bytes: the stored hash verifies...
    let (_, hash) = codec::verify_record(&stored).expect("v1 record verifies");
    assert_eq!(hash, envelope.hash);
    // ...and is not the hash the upcast value would get if written today (v2).
    let today = codec::seal(envelope.header, envelope.event.clone(), envelope.prev_hash).unwrap();
    assert_ne!(today.envelope.hash, hash);
    assert_eq!(codec::decode(&today.bytes).unwrap().event, envelope.event);
}

#[test]
fn v1_with_a_non_positive_allowance_is_out_of_bounds() {
    let golden = credit_account_opened_v1();
    let bytes = codec::seal_legacy_credit_account_opened_v1(
        golden.header,
        Name::new("Juan dela Cruz"),
        php(dec!(0)),
        Cadence::Monthly,
        Hash::GENESIS,
    )
    .unwrap();
    assert!(matches!(
        codec::decode(&bytes),
        Err(CodecError::OutOfBounds(_))
    ));
}

// ---------------------------------------------------------------------------
// Crafting records by hand, following the layout documented in `codec`.

fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

/// `Header | tag | schema version | payload`.
fn body(header: &Header, tag: u8, schema_version: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = encode(header);
    body.extend([tag, schema_version]);
    body.extend(payload);
    body
}

/// A record around `body` with a correct hash, so that only decoding can object.
fn record(prev_hash: Hash, body: &[u8]) -> Vec<u8> {
    let hash = Sha256::new()
        .chain_update(prev_hash.0)
        .chain_update([FORMAT_VERSION])
        .chain_update(body)
        .finalize();
    let mut bytes = vec![FORMAT_VERSION];
    bytes.extend(prev_hash.0);
    bytes.extend(hash);
    bytes.extend(body);
    bytes
}

fn golden_sale() -> (Header, SaleRecorded) {
    match golden_event(EventType::SaleRecorded) {
        (header, Event::SaleRecorded(sale)) => (header, sale),
        _ => unreachable!(),
    }
}

/// The crafting helpers above must write exactly what `seal` writes, or the
/// error tests below would test something else than the real format.
#[test]
fn crafted_records_follow_the_documented_layout() {
    let (header, sale) = golden_sale();
    let sealed = codec::seal(header, Event::SaleRecorded(sale.clone()), prev_hash(1)).unwrap();
    let crafted = record(
        prev_hash(1),
        &body(&header, EventType::SaleRecorded.tag(), 1, &encode(&sale)),
    );
    assert_eq!(crafted, sealed.bytes);
    assert_eq!(
        codec::verify_record(&crafted),
        Ok((prev_hash(1), sealed.envelope.hash))
    );
}

// ---------------------------------------------------------------------------
// Specific errors.

#[test]
fn wrong_format_byte_is_unknown_format() {
    let good = current_golden(EventType::SaleRecorded).fresh;
    for format in [0, 2, 0x7f, 0xff] {
        let mut bytes = good.clone();
        bytes[0] = format;
        assert_eq!(
            codec::decode(&bytes),
            Err(CodecError::UnknownFormat(format))
        );
        assert_eq!(
            codec::verify_record(&bytes),
            Err(ChainError::Codec(CodecError::UnknownFormat(format)))
        );
    }
}

#[test]
fn every_unassigned_tag_is_an_unknown_event_type() {
    let (header, sale) = golden_sale();
    let payload = encode(&sale);
    for tag in (0..=u8::MAX).filter(|&t| EventType::from_tag(t).is_none()) {
        let bytes = record(Hash::GENESIS, &body(&header, tag, 1, &payload));
        assert!(
            codec::verify_record(&bytes).is_ok(),
            "verification does not decode"
        );
        assert_eq!(
            codec::decode(&bytes),
            Err(CodecError::UnknownEventType(tag)),
            "tag {tag}"
        );
    }
}

#[test]
fn unknown_schema_versions_are_named() {
    let (header, sale) = golden_sale();
    let payload = encode(&sale);
    let unknown = |event_type: EventType, schema_version: u8| {
        let bytes = record(
            Hash::GENESIS,
            &body(&header, event_type.tag(), schema_version, &payload),
        );
        assert_eq!(
            codec::decode(&bytes),
            Err(CodecError::UnknownSchemaVersion {
                event_type,
                schema_version
            }),
            "{event_type:?} v{schema_version}"
        );
    };
    unknown(EventType::SaleRecorded, 9);
    unknown(EventType::SaleRecorded, 0);
    unknown(EventType::SaleRecorded, u8::MAX);
    unknown(EventType::CreditAccountOpened, 0);
    // Versions this code does not know yet, for every type.
    for event_type in EventType::ALL {
        unknown(event_type, event_type.schema_version() + 1);
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let (header, sale) = golden_sale();
    let good = body(&header, EventType::SaleRecorded.tag(), 1, &encode(&sale));
    for extra in [&[0u8][..], &[0, 0, 0], &[0xff; 17]] {
        let bytes = record(Hash::GENESIS, &[&good[..], extra].concat());
        assert_eq!(
            codec::decode(&bytes),
            Err(CodecError::TrailingBytes(extra.len()))
        );
    }
}

#[test]
fn every_truncation_is_an_error() {
    for golden in all_golden() {
        let bytes = &golden.fresh;
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            if len < PREFIX_LEN {
                assert_eq!(codec::decode(cut), Err(CodecError::Truncated(len)));
                assert_eq!(
                    codec::verify_record(cut),
                    Err(ChainError::Codec(CodecError::Truncated(len)))
                );
            } else {
                assert!(
                    codec::decode(cut).is_err(),
                    "{} cut to {len} bytes",
                    golden.file
                );
                assert!(
                    codec::verify_record(cut).is_err(),
                    "{} cut to {len}",
                    golden.file
                );
            }
        }
    }
}

#[test]
fn records_beyond_the_size_limit_are_too_large() {
    let mut bytes = vec![0u8; EVENT_BYTES_MAX + 1];
    bytes[0] = FORMAT_VERSION;
    assert_eq!(
        codec::decode(&bytes),
        Err(CodecError::TooLarge(EVENT_BYTES_MAX + 1))
    );
    assert_eq!(
        codec::verify_record(&bytes),
        Err(ChainError::Codec(CodecError::TooLarge(EVENT_BYTES_MAX + 1)))
    );
    // At the limit exactly the size is fine; these zeros are just not a record.
    bytes.pop();
    assert!(!matches!(
        codec::decode(&bytes),
        Err(CodecError::TooLarge(_)) | Ok(_)
    ));

    // Sealing refuses to write one, too. No event within the domain's bounds
    // is that large (see the next test), so it is refused as out of bounds.
    let (header, mut sale) = golden_sale();
    sale.lines = vec![sale.lines[0].clone(); 2_000];
    assert!(matches!(
        codec::seal(header, Event::SaleRecorded(sale), Hash::GENESIS),
        Err(CodecError::OutOfBounds(_) | CodecError::TooLarge(_))
    ));
}

/// The largest sale the domain allows must fit the record limit and decode.
#[test]
fn the_largest_legal_sale_fits_and_decodes() {
    let (header, mut sale) = golden_sale();
    let price = php(Decimal::from(100_000));
    sale.lines = (0..LINES_PER_SALE_MAX)
        .map(|i| Line {
            item: ItemCode::new(&format!("{i:0>width$}", width = ID_LEN_MAX)),
            quantity: QUANTITY_MAX,
            unit_price: price,
        })
        .collect();
    let sealed = codec::seal(header, Event::SaleRecorded(sale), Hash::GENESIS).expect("fits");
    assert!(sealed.bytes.len() <= EVENT_BYTES_MAX);
    assert_eq!(codec::decode(&sealed.bytes), Ok(sealed.envelope));
}

#[test]
fn events_on_a_stream_of_another_kind_are_rejected() {
    let streams = [
        StreamId::tenant(TenantId::new("acme")),
        StreamId::vendor(tita()),
        StreamId::credit(maria()),
        StreamId::order(invoiced_order()),
    ];
    for event_type in EventType::ALL {
        let (mut header, event) = golden_event(event_type);
        for stream in streams
            .into_iter()
            .filter(|s| s.kind() != event_type.stream_kind())
        {
            // `seal` refuses this, so move a sealed event's payload behind a
            // header naming the wrong stream by hand.
            let original = golden_event(event_type).0;
            let sealed = codec::seal(original, event.clone(), Hash::GENESIS).unwrap();
            let rest = &sealed.bytes[PREFIX_LEN + encode(&original).len()..];
            header.stream = stream;
            let mut forged_body = encode(&header);
            forged_body.extend(rest);
            let bytes = record(Hash::GENESIS, &forged_body);
            assert!(
                matches!(codec::decode(&bytes), Err(CodecError::OutOfBounds(_))),
                "{event_type:?} on {stream}"
            );
            assert!(codec::seal(header, event.clone(), Hash::GENESIS).is_err());
        }
    }
}

/// The decoder enforces the sale's domain bounds on bytes it did not write.
#[test]
fn sales_outside_the_domain_bounds_are_rejected() {
    let (header, good) = golden_sale();
    let out_of_bounds = |sale: SaleRecorded| {
        let bytes = forged(&header, EventType::SaleRecorded, &encode(&sale));
        assert!(matches!(
            codec::decode(&bytes),
            Err(CodecError::OutOfBounds(_))
        ));
    };
    out_of_bounds(SaleRecorded {
        lines: vec![],
        ..good.clone()
    });
    out_of_bounds(SaleRecorded {
        lines: vec![good.lines[0].clone(); LINES_PER_SALE_MAX + 1],
        ..good.clone()
    });
    let mut zero = good.clone();
    zero.lines[1].quantity = 0;
    out_of_bounds(zero);
    let mut too_many = good.clone();
    too_many.lines[0].quantity = QUANTITY_MAX + 1;
    out_of_bounds(too_many);
    out_of_bounds(SaleRecorded {
        commission: php(dec!(287.51)),
        ..good.clone()
    });
    out_of_bounds(SaleRecorded {
        commission: php(dec!(-0.01)),
        ..good
    });
}

// ---------------------------------------------------------------------------
// Tampering and robustness.

/// Any single changed byte of a real record, anywhere, fails verification:
/// the format byte as an unknown format, every other byte as a hash mismatch.
#[test]
fn every_single_byte_change_is_detected() {
    for golden in all_golden() {
        let bytes = &golden.fresh;
        assert!(codec::verify_record(bytes).is_ok());
        for position in 0..bytes.len() {
            for mask in [0x01, 0x10, 0x80, 0xff] {
                let mut tampered = bytes.clone();
                tampered[position] ^= mask;
                let expected = if position == 0 {
                    ChainError::Codec(CodecError::UnknownFormat(tampered[0]))
                } else {
                    ChainError::HashMismatch
                };
                assert_eq!(
                    codec::verify_record(&tampered),
                    Err(expected),
                    "{} byte {position} ^ {mask:#04x}",
                    golden.file
                );
            }
        }
    }
}

/// An edit to a record.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..16);
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<prop::sample::Index>(), bytes()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => bytes().prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    // An index into 0..=len, so the end is a position too.
    let at = |i: &prop::sample::Index, len: usize| i.index(len + 1);
    match mutation {
        Mutation::Set(i, b) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::Set(..) => {}
        Mutation::Insert(i, new) => {
            let at = at(i, bytes.len());
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let from = at(i, bytes.len());
            bytes.drain(from..(from + n).min(bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Mutation::Extend(new) => bytes.extend(new),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never panic the codec, with or without a valid format
    /// byte (without one, nearly every input would stop at the first byte).
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..600), valid_format: bool) {
        if valid_format && !bytes.is_empty() {
            bytes[0] = FORMAT_VERSION;
        }
        let _ = codec::decode(&bytes);
        let _ = codec::verify_record(&bytes);
    }

    /// Arbitrary payloads behind a valid header and a known (or nearly known)
    /// tag and version exercise every payload decoder.
    #[test]
    fn arbitrary_payloads_never_panic(
        event_type in prop::sample::select(EventType::ALL.to_vec()),
        schema_version in 0u8..4,
        payload in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let (header, _) = golden_event(event_type);
        let bytes = record(Hash::GENESIS, &body(&header, event_type.tag(), schema_version, &payload));
        let _ = codec::decode(&bytes);
        prop_assert!(codec::verify_record(&bytes).is_ok());
    }

    /// Real records, edited at random: decoding returns Ok or Err without
    /// panicking, and any change at all fails verification.
    #[test]
    fn mutated_records_never_panic_and_never_verify(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let golden = all_golden();
        let original = &golden[which.index(golden.len())].fresh;
        let mut bytes = original.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let _ = codec::decode(&bytes);
        let verified = codec::verify_record(&bytes);
        if bytes == *original {
            prop_assert!(verified.is_ok());
        } else {
            prop_assert!(verified.is_err());
        }
    }
}

// ---------------------------------------------------------------------------
// Every payment and tender variant, through both encodings.

#[test]
fn every_payment_and_tender_variant_round_trips() {
    let (sale_header, sale) = golden_sale();
    let payments = [
        Payment::Cash,
        Payment::Card,
        Payment::MobileMoney,
        Payment::Credit {
            employee_id: maria(),
        },
        Payment::Invoice {
            due_date: LocalDate::ymd(2026, 12, 15),
        },
    ];
    let (refund_header, refund) = match golden_event(EventType::RefundIssued) {
        (header, Event::RefundIssued(refund)) => (header, refund),
        _ => unreachable!(),
    };
    let tenders = [
        Tender::Cash,
        Tender::Card,
        Tender::MobileMoney,
        Tender::Credit {
            employee_id: maria(),
        },
    ];
    let events = payments
        .map(|payment| {
            (
                sale_header,
                Event::SaleRecorded(SaleRecorded {
                    payment,
                    ..sale.clone()
                }),
            )
        })
        .into_iter()
        .chain(tenders.map(|tender| {
            (
                refund_header,
                Event::RefundIssued(RefundIssued {
                    tender,
                    reason: None,
                    ..refund.clone()
                }),
            )
        }));
    for (header, event) in events {
        let sealed = codec::seal(header, event.clone(), Hash::GENESIS).unwrap();
        assert_eq!(codec::decode(&sealed.bytes).as_ref(), Ok(&sealed.envelope));
        assert_json_round_trip(&event);
    }
}

// ---------------------------------------------------------------------------
// JSON.

#[track_caller]
fn assert_json_round_trip(event: &Event) {
    let json = serde_json::to_string(event).expect("events serialize");
    let back: Event = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, event, "{json}");
}

#[test]
fn every_event_round_trips_through_json() {
    for golden in all_golden() {
        assert_json_round_trip(&golden.event);
        let value = serde_json::to_value(&golden.event).unwrap();
        assert_eq!(value["type"], json!(golden.event.event_type().as_str()));
    }
}

/// The export form: one envelope per line, header fields flattened.
#[test]
fn envelopes_round_trip_through_json() {
    for golden in all_golden() {
        let envelope = codec::decode(&golden.fresh).unwrap();
        let json = serde_json::to_string(&envelope).unwrap();
        assert_eq!(
            serde_json::from_str::<Envelope>(&json).unwrap(),
            envelope,
            "{json}"
        );
    }
}

/// Amounts are strings at exactly the currency's scale, so no client parses
/// them as floats and `1.5` and `1.50` are one value.
#[test]
fn json_amounts_are_strings_at_the_currency_scale() {
    let (_, sale) = golden_sale();
    let value = serde_json::to_value(Event::SaleRecorded(sale)).unwrap();
    assert_eq!(
        value["gross"],
        json!({ "amount": "287.50", "currency": "PHP" })
    );
    assert_eq!(value["lines"][0]["unit_price"]["amount"], json!("95.00"));

    let amount = |money: Money| serde_json::to_value(money).unwrap()["amount"].clone();
    assert_eq!(amount(php(dec!(12.5))), json!("12.50"));
    assert_eq!(amount(php(dec!(1500))), json!("1500.00"));
    assert_eq!(amount(php(dec!(-20))), json!("-20.00"));
    let yen = Money::parse(dec!(1500), Currency::new("JPY")).unwrap();
    assert_eq!(amount(yen), json!("1500"));

    // Reading normalizes to the scale; more precision than the currency has is refused.
    let read =
        |text: &str| serde_json::from_value::<Money>(json!({ "amount": text, "currency": "PHP" }));
    assert_eq!(read("12.5").unwrap(), php(dec!(12.50)));
    assert!(read("12.505").is_err());
}

#[test]
fn json_events_reject_unknown_fields() {
    let (_, sale) = golden_sale();
    let mut value = serde_json::to_value(Event::SaleRecorded(sale)).unwrap();
    value["surprise"] = json!(1);
    assert!(serde_json::from_value::<Event>(value).is_err());
}

/// Every stream kind appears in some fixture's header, so the binary form of
/// every kind of stream id is pinned by a committed file.
#[test]
fn golden_events_cover_every_stream_kind() {
    for kind in StreamKind::ALL {
        assert!(
            EventType::ALL
                .iter()
                .any(|t| golden_event(*t).0.stream.kind() == kind),
            "{kind:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Regressions: records that decoded and verified, then made a reader panic.
// The hash chain is not a signature, so anyone who can write bytes can make
// them verify; decoding is where well-formedness is enforced.

fn usd(amount: Decimal) -> Money {
    Money::parse(amount, ledger_core::Currency::new("USD")).unwrap()
}

/// Seals nothing: writes the record by hand, as a hostile or buggy writer would.
fn forged(header: &Header, event_type: EventType, payload: &[u8]) -> Vec<u8> {
    record(
        Hash::GENESIS,
        &body(
            header,
            event_type.tag(),
            event_type.schema_version(),
            payload,
        ),
    )
}

#[track_caller]
fn assert_refused_and_audited(bytes: &[u8]) {
    assert!(
        matches!(codec::decode(bytes), Err(CodecError::OutOfBounds(_))),
        "{:?}",
        codec::decode(bytes)
    );
    // The audit reports the record instead of crashing on it.
    let report = ledger_core::audit::audit([bytes]);
    assert!(!report.is_clean(), "{report:?}");
}

#[test]
fn regression_sale_with_commission_in_another_currency_is_refused() {
    let (header, mut sale) = golden_sale();
    sale.commission = usd(dec!(10.00));
    assert_refused_and_audited(&forged(&header, EventType::SaleRecorded, &encode(&sale)));
    // And `seal` refuses to write it in the first place.
    assert!(matches!(
        codec::seal(header, Event::SaleRecorded(sale), Hash::GENESIS),
        Err(CodecError::OutOfBounds(_))
    ));
}

#[test]
fn regression_refund_reversing_more_than_it_refunds_is_refused() {
    let (header, event) = golden_event(EventType::RefundIssued);
    let Event::RefundIssued(mut refund) = event else {
        unreachable!()
    };
    refund.amount = php(-dec!(1_000_000_000));
    refund.commission_reversed = php(dec!(1_000_000_000));
    assert_refused_and_audited(&forged(&header, EventType::RefundIssued, &encode(&refund)));
    let Event::RefundIssued(mut refund) = golden_event(EventType::RefundIssued).1 else {
        unreachable!()
    };
    refund.commission_reversed = usd(dec!(1));
    assert_refused_and_audited(&forged(&header, EventType::RefundIssued, &encode(&refund)));
}

#[test]
fn regression_instant_beyond_chrono_is_refused() {
    let (mut header, sale) = golden_sale();
    header.occurred_at = Timestamp::from_micros(i64::MAX);
    let bytes = forged(&header, EventType::SaleRecorded, &encode(&sale));
    assert!(
        matches!(codec::decode(&bytes), Err(CodecError::OutOfBounds(_))),
        "{:?}",
        codec::decode(&bytes)
    );
}

#[test]
fn credit_movements_that_leave_a_negative_balance_are_refused() {
    let (header, event) = golden_event(EventType::CreditSpent);
    let Event::CreditSpent(mut spent) = event else {
        unreachable!()
    };
    spent.balance_after = php(dec!(-0.01));
    assert_refused_and_audited(&forged(&header, EventType::CreditSpent, &encode(&spent)));
}
