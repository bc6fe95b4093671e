//! Read-model snapshots: restoring one gives back the state it was taken of,
//! folding on from a restore is folding from scratch, exactly-once holds
//! across the restore, and no bytes make restoring panic.
//!
//! Logs come from a small scenario driver over [`MemoryLedger`] (so every
//! event is one the deciders wrote): two tenants, one in PHP and one in JPY
//! (scale 0), whose steps interleave in one commit order, covering every
//! event type and so every field the read models fold.

use std::collections::BTreeSet;

use chrono::Duration;
use ledger_core::credit::{
    AdjustCredit, ChangeCreditPolicy, CreditCommand, CreditPolicyInput, OpenCreditAccount,
    ReinstateCreditAccount, ReplenishCredit, SuspendCreditAccount,
};
use ledger_core::event::{Payment, Tender};
use ledger_core::memory::{Command, MemoryLedger};
use ledger_core::policy::ReplenishMode;
use ledger_core::projection::{
    Changes, Outcome, ReadModels, SNAPSHOT_FORMAT_VERSION, SnapshotError,
};
use ledger_core::sale::{
    IssueRefund, LineInput, OrderStatus, ReceivePayment, RecordSale, SaleCommand,
};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::{
    ChangeCommissionRate, RegisterVendor, ReinstateVendor, SuspendVendor, VendorCommand,
};
use ledger_core::{
    Actor, Cadence, CommissionRate, Currency, EmployeeId, Envelope, EventType, ItemCode, LocalDate,
    OrderId, Period, RefundId, Role, StreamId, TenantId, TimeZone, Timestamp, UserId, VendorId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::RngAlgorithm;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

const VENDORS: u16 = 3;
const EMPLOYEES: u16 = 4;

/// XorShift, as in the other property tests: generation stays cheap in a
/// debug build.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// One step: which tenant acts, what it does, small numbers from which the
/// action picks its targets and amounts, and how far the clock moves first.
#[derive(Debug, Clone)]
struct Step {
    tenant: bool,
    action: u8,
    a: u16,
    b: u16,
    c: u16,
    advance_minutes: i64,
}

fn steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let step = (
        any::<bool>(),
        0..16u8,
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        0..=720i64,
    )
        .prop_map(|(tenant, action, a, b, c, advance_minutes)| Step {
            tenant,
            action,
            a,
            b,
            c,
            advance_minutes,
        });
    prop::collection::vec(step, len)
}

struct Tenant {
    ledger: MemoryLedger,
    scale: u32,
    zone: TimeZone,
    now: Timestamp,
    orders: Vec<OrderId>,
    invoices: Vec<OrderId>,
    next_id: u32,
}

fn vendor_id(i: u16) -> VendorId {
    VendorId::new(&format!("V{}", i % VENDORS))
}

fn employee_id(i: u16) -> EmployeeId {
    EmployeeId::new(&format!("E{}", i % EMPLOYEES))
}

fn actor(user: &str, role: Role) -> Actor {
    Actor {
        user_id: UserId::new(user),
        role,
    }
}

fn admin() -> Actor {
    actor("admin", Role::Admin)
}

impl Tenant {
    fn new(id: &str, currency: &str, zone: &str, log: &mut Vec<Envelope>) -> Self {
        let zone = TimeZone::new(zone);
        let currency = Currency::new(currency);
        let start = zone
            .start_of(LocalDate::ymd(2026, 10, 1))
            .plus_seconds(8 * 3600);
        let mut t = Self {
            ledger: MemoryLedger::new(TenantId::new(id)),
            scale: currency.scale(),
            zone,
            now: start,
            orders: Vec::new(),
            invoices: Vec::new(),
            next_id: 0,
        };
        t.exec(
            Command::Tenant(ConfigureTenant {
                currency,
                time_zone: zone,
            }),
            admin(),
            log,
        );
        for i in 0..VENDORS {
            let c = RegisterVendor {
                vendor_id: vendor_id(i),
                name: Name::new(&format!("Stall {i}")),
                commission_rate: CommissionRate::from_basis_points(500 + 500 * i).unwrap(),
            };
            t.exec(Command::Vendor(VendorCommand::Register(c)), admin(), log);
        }
        for i in 0..EMPLOYEES {
            let c = OpenCreditAccount {
                employee_id: employee_id(i),
                name: Name::new(&format!("Employee {i}")),
                policy: t.policy(i, 0),
            };
            t.exec(Command::Credit(CreditCommand::Open(c)), admin(), log);
            t.replenish(i, log);
        }
        t
    }

    fn money(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.scale)
    }

    fn policy(&self, employee: u16, variant: u16) -> CreditPolicyInput {
        let allowance = 20_000 + 5_000 * i64::from(variant % 3);
        let accumulate = employee % 2 == 1;
        CreditPolicyInput {
            allowance: self.money(allowance),
            cadence: Cadence::SemiMonthly,
            mode: if accumulate {
                ReplenishMode::Accumulate
            } else {
                ReplenishMode::TopUp
            },
            cap: accumulate.then(|| self.money(3 * allowance)),
        }
    }

    fn mint(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Runs a command; a rejection writes nothing and is fine here.
    fn exec(&mut self, command: Command, actor: Actor, log: &mut Vec<Envelope>) -> bool {
        match self.ledger.execute(&command, actor, self.now) {
            Ok(envelopes) => {
                log.extend(envelopes);
                true
            }
            Err(_) => false,
        }
    }

    fn replenish(&mut self, employee: u16, log: &mut Vec<Envelope>) {
        let c = ReplenishCredit {
            employee_id: employee_id(employee),
            period: Period::containing(self.now, self.zone, Cadence::SemiMonthly),
            now: self.now,
        };
        let scheduler = actor("scheduler", Role::Service);
        self.exec(Command::Credit(CreditCommand::Replenish(c)), scheduler, log);
    }

    fn step(&mut self, s: &Step, log: &mut Vec<Envelope>) {
        self.now = self.now.plus_seconds(s.advance_minutes * 60);
        match s.action {
            0..=5 => self.sale(s, log),
            6..=7 => self.refund(s, log),
            8 => self.pay_invoice(s, log),
            9 => self.replenish(s.a, log),
            10 => {
                let minor = i64::from(s.b % 5_000) + 1;
                let c = AdjustCredit {
                    employee_id: employee_id(s.a),
                    amount: self.money(if s.c.is_multiple_of(2) { minor } else { -minor }),
                    reason: Reason::new("correction after a till count"),
                };
                self.exec(Command::Credit(CreditCommand::Adjust(c)), admin(), log);
            }
            11 => {
                let employee_id = employee_id(s.a);
                let c = if s.b.is_multiple_of(2) {
                    CreditCommand::Suspend(SuspendCreditAccount {
                        employee_id,
                        reason: Reason::new("left the company"),
                    })
                } else {
                    CreditCommand::Reinstate(ReinstateCreditAccount { employee_id })
                };
                self.exec(Command::Credit(c), admin(), log);
            }
            12 => {
                let c = ChangeCreditPolicy {
                    employee_id: employee_id(s.a),
                    policy: self.policy(s.a, s.b),
                };
                self.exec(
                    Command::Credit(CreditCommand::ChangePolicy(c)),
                    admin(),
                    log,
                );
            }
            13 => {
                let vendor_id = vendor_id(s.a);
                let c = if s.b.is_multiple_of(2) {
                    VendorCommand::Suspend(SuspendVendor {
                        vendor_id,
                        reason: Reason::new("health inspection"),
                    })
                } else {
                    VendorCommand::Reinstate(ReinstateVendor { vendor_id })
                };
                self.exec(Command::Vendor(c), admin(), log);
            }
            14 => {
                let c = ChangeCommissionRate {
                    vendor_id: vendor_id(s.a),
                    commission_rate: CommissionRate::from_basis_points(s.b % 2_001).unwrap(),
                };
                self.exec(
                    Command::Vendor(VendorCommand::ChangeCommissionRate(c)),
                    admin(),
                    log,
                );
            }
            _ => {
                // Every account at once, as the scheduler does at a cutoff.
                for employee in 0..EMPLOYEES {
                    self.replenish(employee, log);
                }
            }
        }
    }

    fn sale(&mut self, s: &Step, log: &mut Vec<Envelope>) {
        let order_id = OrderId::new(&self.mint("O"));
        let lines = (0..1 + s.c % 3)
            .map(|n| LineInput {
                item: ItemCode::new(&format!("SKU-{}", (s.c >> 2).wrapping_add(n) % 7)),
                quantity: 1 + u32::from(s.b >> 8) % 3,
                unit_price: self.money(100 + i64::from((s.a >> 2).wrapping_mul(n + 1)) % 9_000),
            })
            .collect();
        let today = self.now.local_date(self.zone).as_naive();
        let payment = match s.b % 8 {
            0 | 1 => Payment::Cash,
            2 => Payment::Card,
            3 => Payment::MobileMoney,
            4 | 5 => Payment::Credit {
                employee_id: employee_id(s.a),
            },
            _ => Payment::Invoice {
                due_date: LocalDate::new(today + Duration::days(i64::from(s.c % 30))),
            },
        };
        // Some sales were rung up offline and sync hours later.
        let occurred_at =
            s.c.is_multiple_of(5)
                .then(|| self.now.plus_seconds(-3600 * i64::from(1 + s.a % 5)));
        let cashier = actor(&format!("cashier-{}", s.a % VENDORS), Role::Cashier);
        let c = RecordSale {
            order_id,
            vendor_id: vendor_id(s.a),
            lines,
            payment,
            occurred_at,
            now: self.now,
        };
        if self.exec(Command::Sale(SaleCommand::Record(c)), cashier, log) {
            self.orders.push(order_id);
            if matches!(payment, Payment::Invoice { .. }) {
                self.invoices.push(order_id);
            }
        }
    }

    fn refund(&mut self, s: &Step, log: &mut Vec<Envelope>) {
        if self.orders.is_empty() {
            return;
        }
        let order_id = self.orders[usize::from(s.a) % self.orders.len()];
        let Some(order) = self.ledger.order_state(order_id) else {
            return;
        };
        if !matches!(
            order.status,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded
        ) {
            return;
        }
        let remaining = order.remaining().amount();
        let amount = if s.b.is_multiple_of(2) {
            remaining
        } else {
            (remaining / Decimal::from(3)).round_dp(self.scale)
        };
        if amount.is_zero() {
            return;
        }
        let owner = actor(&format!("owner-{}", order.vendor_id), Role::Vendor);
        let c = IssueRefund {
            order_id,
            refund_id: RefundId::new(&self.mint("R")),
            amount,
            reason: s
                .c
                .is_multiple_of(2)
                .then(|| Reason::new("customer returned the item")),
            now: self.now,
        };
        self.exec(Command::Sale(SaleCommand::Refund(c)), owner, log);
    }

    fn pay_invoice(&mut self, s: &Step, log: &mut Vec<Envelope>) {
        if self.invoices.is_empty() {
            return;
        }
        let order_id = self
            .invoices
            .swap_remove(usize::from(s.a) % self.invoices.len());
        let Some(order) = self.ledger.order_state(order_id) else {
            return;
        };
        let c = ReceivePayment {
            order_id,
            amount: order.gross.amount(),
            tender: if s.b.is_multiple_of(2) {
                Tender::Card
            } else {
                Tender::MobileMoney
            },
            now: self.now,
        };
        self.exec(Command::Sale(SaleCommand::ReceivePayment(c)), admin(), log);
    }
}

/// The log the steps write, in commit order across both tenants.
fn log_of(steps: &[Step]) -> Vec<Envelope> {
    let mut log = Vec::new();
    let mut tenants = [
        Tenant::new("t-php", "PHP", "Asia/Manila", &mut log),
        Tenant::new("t-jpy", "JPY", "Asia/Tokyo", &mut log),
    ];
    for s in steps {
        tenants[usize::from(s.tenant)].step(s, &mut log);
    }
    log
}

fn fold(log: &[Envelope]) -> ReadModels {
    let mut models = ReadModels::default();
    for envelope in log {
        assert_eq!(models.apply(envelope), Outcome::Applied);
    }
    models
}

/// The snapshot's layout is `format | SHA-256(format | body) | body`; this
/// reseals a tampered body so the decoder itself, not the checksum, meets it.
fn reseal(format: u8, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update([format]);
    hasher.update(body);
    let mut bytes = vec![format];
    bytes.extend_from_slice(&hasher.finalize());
    bytes.extend_from_slice(body);
    bytes
}

const HEADER_LEN: usize = 33;

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Snapshot a fold of any prefix of the log, restore it, and go on
    /// folding: the restore equals what it was taken of (to the byte), ends
    /// where the fold from scratch ends, and every event it has already
    /// seen is a duplicate that changes nothing.
    #[test]
    fn restore_then_fold_on_equals_fold_from_scratch(
        steps in steps(0..120),
        split in any::<prop::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let split = split.index(log.len() + 1);
        let (seen, rest) = log.split_at(split);
        let full = fold(&log);

        let mut live = fold(seen);
        let bytes = live.to_snapshot();
        prop_assert_eq!(bytes[0], SNAPSHOT_FORMAT_VERSION);
        let mut restored = ReadModels::from_snapshot(&bytes).unwrap();
        prop_assert_eq!(&restored, &live);
        // Equality of decimals ignores their scale and the activity log
        // compares as a set; equal bytes say nothing at all was lost.
        prop_assert_eq!(restored.to_snapshot(), bytes.as_slice());

        // Redelivery after a restart: what was seen is a duplicate.
        let mut changes = Changes::default();
        for envelope in seen {
            prop_assert_eq!(restored.apply_into(envelope, &mut changes), Outcome::Duplicate);
        }
        prop_assert_eq!(&changes, &Changes::default());
        prop_assert_eq!(&restored, &live);

        // An event past the next of its stream is still a gap.
        if let Some(later) = rest.iter().enumerate().find_map(|(i, e)| {
            rest[..i].iter().any(|p| p.stream() == e.stream() && p.tenant_id() == e.tenant_id()).then_some(e)
        }) {
            let outcome = restored.apply(later);
            prop_assert!(matches!(outcome, Outcome::Gap { .. }), "{:?}", outcome);
            prop_assert_eq!(&restored, &live);
        }

        for envelope in rest {
            prop_assert_eq!(restored.apply(envelope), Outcome::Applied);
            live.apply(envelope);
        }
        prop_assert_eq!(&restored, &full);
        prop_assert_eq!(&live, &full);
        prop_assert_eq!(restored.to_snapshot(), full.to_snapshot());

        for envelope in &log {
            prop_assert_eq!(restored.apply(envelope), Outcome::Duplicate);
        }
        prop_assert_eq!(&restored, &full);
    }
}

/// One realistic snapshot, and the log it was taken of, for the tamper tests.
fn sample() -> (Vec<Envelope>, Vec<u8>) {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = steps(150..151)
        .new_tree(&mut runner)
        .expect("generates")
        .current();
    let log = log_of(&steps);
    let bytes = fold(&log).to_snapshot();
    (log, bytes)
}

proptest! {
    #![proptest_config(config(256))]

    /// A cut anywhere is an error, never a panic.
    #[test]
    fn a_truncated_snapshot_is_an_error(cut in any::<prop::sample::Index>()) {
        let (_, bytes) = sample_cached();
        let cut = cut.index(bytes.len());
        prop_assert!(ReadModels::from_snapshot(&bytes[..cut]).is_err());
        // Even resealed, a shortened body cannot pass for a whole one.
        if cut >= HEADER_LEN {
            prop_assert!(ReadModels::from_snapshot(&reseal(bytes[0], &bytes[HEADER_LEN..cut])).is_err());
        }
    }

    /// Any altered byte is caught by the checksum.
    #[test]
    fn a_corrupted_snapshot_is_an_error(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (_, bytes) = sample_cached();
        let mut corrupt = bytes.clone();
        for (at, byte) in &edits {
            corrupt[at.index(bytes.len())] = *byte;
        }
        let restored = ReadModels::from_snapshot(&corrupt);
        if corrupt == *bytes {
            prop_assert!(restored.is_ok());
        } else {
            prop_assert!(restored.is_err());
        }
    }

    /// Past the checksum, the decoder meets tampered bodies without
    /// panicking or reserving memory the input cannot fill: an error, or
    /// read models (whatever they then hold).
    #[test]
    fn a_tampered_body_never_panics_the_decoder(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        garbage in prop::collection::vec(any::<u8>(), 0..256),
        splice in any::<prop::sample::Index>(),
    ) {
        let (_, bytes) = sample_cached();
        let mut body = bytes[HEADER_LEN..].to_vec();
        for (at, byte) in &edits {
            let at = at.index(body.len());
            body[at] = *byte;
        }
        let _ = ReadModels::from_snapshot(&reseal(SNAPSHOT_FORMAT_VERSION, &body));
        let at = splice.index(body.len() + 1);
        body.splice(at..at, garbage.iter().copied());
        let _ = ReadModels::from_snapshot(&reseal(SNAPSHOT_FORMAT_VERSION, &body));
        let _ = ReadModels::from_snapshot(&reseal(SNAPSHOT_FORMAT_VERSION, &garbage));
    }
}

fn sample_cached() -> &'static (Vec<Envelope>, Vec<u8>) {
    static SAMPLE: std::sync::OnceLock<(Vec<Envelope>, Vec<u8>)> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(sample)
}

// ---------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------

#[test]
fn a_snapshot_of_another_format_is_refused_clearly() {
    let (_, bytes) = sample_cached();
    let mut other = bytes.clone();
    other[0] = SNAPSHOT_FORMAT_VERSION + 1;
    let err = ReadModels::from_snapshot(&other).unwrap_err();
    assert_eq!(
        err,
        SnapshotError::UnsupportedVersion {
            found: SNAPSHOT_FORMAT_VERSION + 1
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "snapshot format {} is not supported (this code reads format {}); \
             refold the read models from the log",
            SNAPSHOT_FORMAT_VERSION + 1,
            SNAPSHOT_FORMAT_VERSION
        )
    );
    // The version is checked before anything else, so an old format is
    // named as such even when its layout differs from this one's.
    assert_eq!(
        ReadModels::from_snapshot(&[0]),
        Err(SnapshotError::UnsupportedVersion { found: 0 })
    );
}

#[test]
fn empty_and_short_snapshots_are_refused() {
    assert_eq!(
        ReadModels::from_snapshot(&[]),
        Err(SnapshotError::Truncated(0))
    );
    assert_eq!(
        ReadModels::from_snapshot(&[SNAPSHOT_FORMAT_VERSION; 10]),
        Err(SnapshotError::Truncated(10))
    );
    let (_, bytes) = sample_cached();
    let mut trailing = bytes[HEADER_LEN..].to_vec();
    trailing.push(0);
    assert_eq!(
        ReadModels::from_snapshot(&reseal(SNAPSHOT_FORMAT_VERSION, &trailing)),
        Err(SnapshotError::TrailingBytes(1))
    );
}

#[test]
fn empty_read_models_round_trip() {
    let empty = ReadModels::default();
    let bytes = empty.to_snapshot();
    assert_eq!(ReadModels::from_snapshot(&bytes).unwrap(), empty);
}

/// A refused event leaves no trace: the gate records a stream only once one
/// of its events is applied, so a gap changes neither the read models nor
/// their snapshot.
#[test]
fn a_gap_leaves_no_trace() {
    let (log, _) = sample_cached();
    let second = log
        .iter()
        .find(|e| e.version().get() == 2)
        .expect("a stream with two events");
    let mut models = ReadModels::default();
    assert!(matches!(models.apply(second), Outcome::Gap { .. }));
    assert_eq!(models, ReadModels::default());
    assert_eq!(models.to_snapshot(), ReadModels::default().to_snapshot());
}

/// Equal states give equal bytes, whatever order the events came in: here
/// the same log delivered stream by stream instead of in commit order.
#[test]
fn snapshot_bytes_do_not_depend_on_delivery_order() {
    let (log, bytes) = sample_cached();
    let mut by_stream: Vec<&Envelope> = log.iter().collect();
    by_stream.sort_by_key(|e| (std::cmp::Reverse(e.tenant_id()), e.stream(), e.version()));
    let mut models = ReadModels::default();
    for envelope in by_stream {
        assert_eq!(models.apply(envelope), Outcome::Applied);
    }
    let reordered = models.to_snapshot();
    // The activity log keeps arrival order, so only the rest is compared
    // byte for byte: restored, the two are the same read models.
    assert_eq!(
        ReadModels::from_snapshot(&reordered).unwrap(),
        ReadModels::from_snapshot(bytes).unwrap()
    );
    let mut by_commit = ReadModels::from_snapshot(&reordered).unwrap();
    by_commit.activity = ReadModels::from_snapshot(bytes).unwrap().activity;
    assert_eq!(by_commit.to_snapshot(), *bytes);
}

/// The scenarios reach every event type, so the properties cover every
/// field the read models fold.
#[test]
fn the_scenarios_reach_every_event_type() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    let mut streams = BTreeSet::new();
    for _ in 0..8 {
        let steps = steps(100..121).new_tree(&mut runner).unwrap().current();
        for envelope in log_of(&steps) {
            seen.insert(envelope.event.event_type());
            streams.insert((envelope.tenant_id(), envelope.stream()));
        }
    }
    let missing: Vec<EventType> = EventType::ALL
        .into_iter()
        .filter(|t| !seen.contains(t))
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    assert!(streams.iter().any(|(t, _)| *t == TenantId::new("t-jpy")));
    assert!(streams.contains(&(TenantId::new("t-php"), StreamId::order(OrderId::new("O1")))));
}
