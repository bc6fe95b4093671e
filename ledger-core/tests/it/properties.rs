//! Property tests of the domain.
//!
//! One generator ([`scenarios`]) builds a realistic command sequence for one
//! tenant: configure the tenant, register vendors, open credit accounts, then
//! a random mix of checkouts, invoice payments, refunds, replenishments,
//! adjustments and admin changes while a simulated clock moves forward. Steps
//! name their targets by index into what exists when they run ([`Sim`]
//! resolves them), so most commands are meaningful and a failing sequence
//! shrinks well; some steps are deliberately invalid to exercise rejections.
//!
//! Every sequence runs through the reference command handler
//! ([`MemoryLedger`]), and each property checks one law on what comes out:
//! the commands' results, the ledger's state after each command, or the
//! sealed log (alone, or two tenants' logs interleaved).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;

use chrono::Duration;
use ledger_core::audit;
use ledger_core::codec;
use ledger_core::credit::{
    AdjustCredit, ChangeCreditPolicy, CreditCommand, CreditPolicyInput, OpenCreditAccount,
    ReinstateCreditAccount, ReplenishCredit, SuspendCreditAccount,
};
use ledger_core::event::{Event, Payment, Tender};
use ledger_core::limits::{
    AMOUNT_MAJOR_MAX, CLOCK_SKEW_SECONDS_MAX, OFFLINE_AGE_DAYS_MAX, QUANTITY_MAX,
};
use ledger_core::memory::{Command, MemoryLedger};
use ledger_core::policy::ReplenishMode;
use ledger_core::posting;
use ledger_core::projection::activity::{ActivityEntry, ActivityFilter, PAGE_ACTIVITY_MAX};
use ledger_core::projection::credit::{CreditChange, PAGE_STATEMENT_MAX, StatementLine};
use ledger_core::projection::dashboard::{DashboardChange, DashboardQuery, DayTotals, Granularity};
use ledger_core::projection::orders::{OrderChange, OrderView};
use ledger_core::projection::{
    ActivityLog, Changes, CreditBalances, OrderViews, Outcome, ReadModels, VendorDailyTotals,
};
use ledger_core::rng::SplitMix64;
use ledger_core::sale::{
    IssueRefund, LineInput, OrderStatus, ReceivePayment, RecordSale, SaleCommand,
};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::{
    ChangeCommissionRate, RegisterVendor, ReinstateVendor, SuspendVendor, VendorCommand,
};
use ledger_core::{
    Actor, Cadence, CommissionRate, Currency, EmployeeId, Envelope, ItemCode, LocalDate, OrderId,
    Period, RefundId, Rejection, Role, StreamId, StreamKind, StreamVersion, TenantId, TimeZone,
    Timestamp, UserId, VendorId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRunner};
use rust_decimal::{Decimal, RoundingStrategy};

/// Cases per property. The acceptance bar is thousands of sequences each.
const CASES: u32 = 2000;

/// XorShift instead of the default ChaCha: in a debug build, drawing the
/// random numbers for a scenario with ChaCha cost several times more than
/// running it, and these tests need no cryptographic generator.
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The generator: a scenario is a tenant's setup plus steps that name their
// targets by index, resolved against the ledger when they run.
// ---------------------------------------------------------------------------

/// The tenant's currency and zone: mostly PHP in Manila, sometimes JPY, whose
/// minor unit has scale 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TenantCurrency {
    Php,
    Jpy,
}

impl TenantCurrency {
    fn currency(self) -> Currency {
        match self {
            Self::Php => Currency::new("PHP"),
            Self::Jpy => Currency::new("JPY"),
        }
    }

    fn zone(self) -> TimeZone {
        match self {
            Self::Php => TimeZone::new("Asia/Manila"),
            Self::Jpy => TimeZone::new("Asia/Tokyo"),
        }
    }
}

/// A credit policy; amounts in minor units of the tenant currency.
#[derive(Debug, Clone)]
struct PolicySpec {
    allowance: i64,
    cadence: Cadence,
    mode: ReplenishMode,
    /// For accumulate: how far above the allowance the cap is, if capped.
    cap_above_allowance: Option<i64>,
    /// A rule the policy breaks on purpose, if any.
    flaw: Option<PolicyFlaw>,
}

#[derive(Debug, Clone, Copy)]
enum PolicyFlaw {
    ZeroAllowance,
    OverPreciseAllowance,
    CapOnTopUp,
    CapBelowAllowance,
}

impl PolicySpec {
    fn input(&self, scale: u32) -> CreditPolicyInput {
        let mut input = CreditPolicyInput {
            allowance: Decimal::new(self.allowance, scale),
            cadence: self.cadence,
            mode: self.mode,
            cap: match self.mode {
                ReplenishMode::Accumulate => self
                    .cap_above_allowance
                    .map(|above| Decimal::new(self.allowance + above, scale)),
                ReplenishMode::TopUp => None,
            },
        };
        match self.flaw {
            None => {}
            Some(PolicyFlaw::ZeroAllowance) => input.allowance = Decimal::ZERO,
            Some(PolicyFlaw::OverPreciseAllowance) => {
                input.allowance = over_precise(self.allowance, scale)
            }
            Some(PolicyFlaw::CapOnTopUp) => {
                input.mode = ReplenishMode::TopUp;
                input.cap = Some(input.allowance);
            }
            Some(PolicyFlaw::CapBelowAllowance) => {
                input.mode = ReplenishMode::Accumulate;
                input.cap = Some(Decimal::new(self.allowance - 1, scale));
            }
        }
        input
    }
}

/// Whom a command targets: something that exists (by index), or an id nobody registered.
#[derive(Debug, Clone, Copy)]
enum Target {
    Existing(Index),
    Unknown,
}

#[derive(Debug, Clone)]
struct LineSpec {
    quantity: u32,
    price: Price,
}

#[derive(Debug, Clone, Copy)]
enum Price {
    /// In minor units of the tenant currency.
    Minor(i64),
    /// One digit more than the currency allows.
    OverPrecise(i64),
    /// Just past the largest amount the domain accepts.
    BeyondLimit,
}

impl LineSpec {
    fn breaks_a_rule(&self) -> bool {
        self.quantity == 0
            || self.quantity > QUANTITY_MAX
            || matches!(self.price, Price::OverPrecise(_) | Price::BeyondLimit)
    }

    fn input(&self, line: usize, scale: u32) -> LineInput {
        let unit_price = match self.price {
            Price::Minor(minor) => Decimal::new(minor, scale),
            Price::OverPrecise(minor) => over_precise(minor, scale),
            Price::BeyondLimit => Decimal::from(AMOUNT_MAJOR_MAX) + Decimal::ONE,
        };
        LineInput {
            item: ItemCode::new(&format!("sku-{line}")),
            quantity: self.quantity,
            unit_price,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum PaymentSpec {
    Cash,
    Card,
    MobileMoney,
    Credit(Target),
    /// Due this many days after the sale's business date (negative: before it).
    Invoice {
        due_in_days: i64,
    },
}

/// When the sale says it happened, relative to the server clock.
#[derive(Debug, Clone, Copy)]
enum Timing {
    Now,
    /// Recorded offline and synced later.
    Offline {
        seconds_ago: i64,
    },
    /// A POS clock running ahead.
    Ahead {
        seconds: i64,
    },
}

#[derive(Debug, Clone, Copy)]
enum OrderChoice {
    Fresh,
    /// Reuses an existing order's id: must be rejected.
    Reuse(Index),
}

#[derive(Debug, Clone)]
struct SaleSpec {
    vendor: Target,
    order: OrderChoice,
    lines: Vec<LineSpec>,
    payment: PaymentSpec,
    timing: Timing,
}

#[derive(Debug, Clone, Copy)]
enum PaymentAmount {
    Exact,
    /// Off by this many minor units (never zero).
    Off(i64),
    OverPrecise,
}

#[derive(Debug, Clone, Copy)]
enum TenderSpec {
    Cash,
    Card,
    MobileMoney,
    /// An invoice cannot be settled with credit.
    Credit,
}

#[derive(Debug, Clone, Copy)]
enum RefundAmount {
    /// This percentage of what remains (at least one minor unit).
    Percent(i64),
    ExactRemaining,
    /// More than remains, by this many minor units.
    TooMuch(i64),
    Zero,
    OverPrecise,
}

#[derive(Debug, Clone, Copy)]
enum PeriodChoice {
    Current,
    /// An earlier period (one or two back).
    Earlier,
    /// A period that has not started.
    Future,
    /// A period of the other cadence.
    WrongCadence,
}

#[derive(Debug, Clone, Copy)]
enum Reconfigure {
    /// The settings in force again: changes nothing.
    Same,
    /// Another time zone, same currency.
    Zone(Index),
    /// The other currency: refused once money moved.
    Currency,
}

/// Zones a tenant may move to: east and west of Manila, so period and day
/// boundaries move both ways.
const ZONES: [&str; 4] = [
    "Asia/Manila",
    "Asia/Tokyo",
    "Europe/London",
    "America/Los_Angeles",
];

#[derive(Debug, Clone)]
enum Action {
    Sale(SaleSpec),
    ReceivePayment {
        order: Index,
        amount: PaymentAmount,
        tender: TenderSpec,
    },
    Refund {
        order: Index,
        amount: RefundAmount,
        with_reason: bool,
    },
    /// Repeats an earlier refund's id, with its amount or another.
    RepeatRefund {
        refund: Index,
        same_amount: bool,
    },
    Replenish {
        employee: Target,
        period: PeriodChoice,
    },
    /// Runs an earlier successful replenishment again.
    ReplenishAgain(Index),
    Adjust {
        employee: Target,
        minor: i64,
    },
    SuspendVendor(Target),
    ReinstateVendor(Target),
    ChangeCommissionRate {
        vendor: Target,
        basis_points: u16,
    },
    SuspendAccount(Target),
    ReinstateAccount(Target),
    /// Keeps the account's cadence, so replenished periods stay comparable.
    ChangeCreditPolicy {
        employee: Target,
        policy: PolicySpec,
    },
    RegisterVendor {
        basis_points: u16,
        reuse: Option<Index>,
    },
    OpenAccount {
        policy: PolicySpec,
        reuse: Option<Index>,
    },
    Reconfigure(Reconfigure),
}

#[derive(Debug, Clone)]
struct Step {
    /// How far the clock moves before the step.
    advance_seconds: i64,
    action: Action,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    currency: TenantCurrency,
    vendors: Vec<u16>,
    accounts: Vec<PolicySpec>,
    /// Whether the scheduler replenishes every account right after setup.
    /// Mostly it does, so credit checkouts can succeed early; when it does
    /// not, no money moves until the steps move some, and the tenant's
    /// settings may still change.
    replenish_after_setup: bool,
    steps: Vec<Step>,
}

// Strategies. Each alternative is chosen by one integer draw ("band") and its
// parameters by plain ranges, instead of `prop_oneof!`: that macro forks the
// test runner for every alternative before the one it picks, which dominated
// generation time in debug builds. Bands and ranges shrink toward 0, so the
// first band of each choice is the simplest case, as with `prop_oneof!`.

fn tenant_currency() -> impl Strategy<Value = TenantCurrency> {
    (0..5u32).prop_map(|band| {
        if band < 4 {
            TenantCurrency::Php
        } else {
            TenantCurrency::Jpy
        }
    })
}

fn basis_points() -> impl Strategy<Value = u16> {
    (0..8u32, 0..=10_000u16).prop_map(|(band, x)| match band {
        0..=3 => x,
        4..=5 => 500 + x % 1_501,
        6 => 0,
        _ => 10_000,
    })
}

/// A valid policy; amounts large enough that credit checkouts often succeed.
fn valid_policy() -> impl Strategy<Value = PolicySpec> {
    (
        0..4u32,
        0..=500_000i64,
        any::<bool>(),
        any::<bool>(),
        0..3u32,
        0..=1_000_000i64,
    )
        .prop_map(
            |(band, allowance, monthly, accumulate, capped, cap)| PolicySpec {
                allowance: if band < 3 {
                    10_000 + allowance % 490_001
                } else {
                    1 + allowance % 10_000
                },
                cadence: if monthly {
                    Cadence::Monthly
                } else {
                    Cadence::SemiMonthly
                },
                mode: if accumulate {
                    ReplenishMode::Accumulate
                } else {
                    ReplenishMode::TopUp
                },
                cap_above_allowance: (capped > 0).then_some(cap),
                flaw: None,
            },
        )
}

/// A policy that is sometimes flawed on purpose.
fn any_policy() -> impl Strategy<Value = PolicySpec> {
    (valid_policy(), 0..12u32).prop_map(|(policy, band)| {
        let flaw = match band {
            0..=7 => None,
            8 => Some(PolicyFlaw::ZeroAllowance),
            9 => Some(PolicyFlaw::OverPreciseAllowance),
            10 => Some(PolicyFlaw::CapOnTopUp),
            _ => Some(PolicyFlaw::CapBelowAllowance),
        };
        PolicySpec { flaw, ..policy }
    })
}

fn target() -> impl Strategy<Value = Target> {
    (0..31u32, any::<Index>()).prop_map(|(band, index)| {
        if band < 30 {
            Target::Existing(index)
        } else {
            Target::Unknown
        }
    })
}

fn line() -> impl Strategy<Value = LineSpec> {
    (0..37u32, 0..=1_000u32, 0..37u32, 0..=500_000i64).prop_map(|(q_band, q, p_band, p)| LineSpec {
        quantity: match q_band {
            0..=29 => 1 + q % 5,
            30..=33 => 6 + q % 95,
            34 => 0,
            35 => QUANTITY_MAX,
            _ => QUANTITY_MAX + 1,
        },
        price: match p_band {
            0..=29 => Price::Minor(1 + p % 20_000),
            30..=33 => Price::Minor(20_001 + p % 480_000),
            34..=35 => Price::OverPrecise(1 + p % 20_000),
            _ => Price::BeyondLimit,
        },
    })
}

fn payment() -> impl Strategy<Value = PaymentSpec> {
    (0..14u32, target(), -3..=45i64).prop_map(|(band, employee, due_in_days)| match band {
        0..=2 => PaymentSpec::Cash,
        3..=4 => PaymentSpec::Card,
        5..=6 => PaymentSpec::MobileMoney,
        7..=10 => PaymentSpec::Credit(employee),
        _ => PaymentSpec::Invoice { due_in_days },
    })
}

fn timing() -> impl Strategy<Value = Timing> {
    let max_age = OFFLINE_AGE_DAYS_MAX * 86_400;
    (0..20u32, 0..=max_age).prop_map(move |(band, x)| match band {
        0..=11 => Timing::Now,
        12..=15 => Timing::Offline {
            seconds_ago: 1 + x % max_age,
        },
        16 => Timing::Offline {
            seconds_ago: max_age,
        },
        17 => Timing::Offline {
            seconds_ago: max_age + 1 + x % (10 * 86_400),
        },
        18 => Timing::Ahead {
            seconds: 1 + x % CLOCK_SKEW_SECONDS_MAX,
        },
        _ => Timing::Ahead {
            seconds: CLOCK_SKEW_SECONDS_MAX + 1 + x % 3_300,
        },
    })
}

fn sale() -> impl Strategy<Value = SaleSpec> {
    let order = (0..31u32, any::<Index>()).prop_map(|(band, index)| {
        if band < 30 {
            OrderChoice::Fresh
        } else {
            OrderChoice::Reuse(index)
        }
    });
    (
        target(),
        order,
        prop::collection::vec(line(), 1..=4),
        payment(),
        timing(),
    )
        .prop_map(|(vendor, order, lines, payment, timing)| SaleSpec {
            vendor,
            order,
            lines,
            payment,
            timing,
        })
}

fn payment_amount() -> impl Strategy<Value = PaymentAmount> {
    (0..8u32, 1..=500i64).prop_map(|(band, delta)| match band {
        0..=5 => PaymentAmount::Exact,
        6 if delta % 2 == 0 => PaymentAmount::Off(-delta),
        6 => PaymentAmount::Off(delta),
        _ => PaymentAmount::OverPrecise,
    })
}

fn tender() -> impl Strategy<Value = TenderSpec> {
    (0..10u32).prop_map(|band| match band {
        0..=2 => TenderSpec::Cash,
        3..=5 => TenderSpec::Card,
        6..=8 => TenderSpec::MobileMoney,
        _ => TenderSpec::Credit,
    })
}

fn refund_amount() -> impl Strategy<Value = RefundAmount> {
    (0..15u32, 1..=99i64, 1..=1_000i64).prop_map(|(band, percent, extra)| match band {
        0..=7 => RefundAmount::Percent(percent),
        8..=11 => RefundAmount::ExactRemaining,
        12 => RefundAmount::TooMuch(extra),
        13 => RefundAmount::Zero,
        _ => RefundAmount::OverPrecise,
    })
}

fn period_choice() -> impl Strategy<Value = PeriodChoice> {
    (0..12u32).prop_map(|band| match band {
        0..=7 => PeriodChoice::Current,
        8..=9 => PeriodChoice::Earlier,
        10 => PeriodChoice::Future,
        _ => PeriodChoice::WrongCadence,
    })
}

/// Which action a step takes, and how often.
#[derive(Debug, Clone, Copy)]
enum ActionKind {
    Sale,
    ReceivePayment,
    Refund,
    RepeatRefund,
    Replenish,
    ReplenishAgain,
    Adjust,
    SuspendVendor,
    ReinstateVendor,
    ChangeCommissionRate,
    SuspendAccount,
    ReinstateAccount,
    ChangeCreditPolicy,
    RegisterVendor,
    OpenAccount,
    Reconfigure,
}

const ACTION_WEIGHTS: [(u32, ActionKind); 16] = [
    (30, ActionKind::Sale),
    (5, ActionKind::ReceivePayment),
    (10, ActionKind::Refund),
    (2, ActionKind::RepeatRefund),
    (10, ActionKind::Replenish),
    (2, ActionKind::ReplenishAgain),
    (3, ActionKind::Adjust),
    (1, ActionKind::SuspendVendor),
    (3, ActionKind::ReinstateVendor),
    (1, ActionKind::ChangeCommissionRate),
    (1, ActionKind::SuspendAccount),
    (3, ActionKind::ReinstateAccount),
    (1, ActionKind::ChangeCreditPolicy),
    (1, ActionKind::RegisterVendor),
    (1, ActionKind::OpenAccount),
    (1, ActionKind::Reconfigure),
];

fn action_kind() -> impl Strategy<Value = ActionKind> {
    let total: u32 = ACTION_WEIGHTS.iter().map(|(weight, _)| weight).sum();
    (0..total).prop_map(|mut draw| {
        for (weight, kind) in ACTION_WEIGHTS {
            if draw < weight {
                return kind;
            }
            draw -= weight;
        }
        unreachable!("the draw is below the total weight")
    })
}

/// One action: its kind, and every parameter any kind might need, drawn
/// together (cheaper than a union) and then given meaning by the kind.
fn action() -> impl Strategy<Value = Action> {
    let amounts = (refund_amount(), payment_amount(), tender(), period_choice());
    let admin = (
        any_policy(),
        basis_points(),
        0..3u32,
        0..5u32,
        -50_000..=50_000i64,
    );
    (
        action_kind(),
        sale(),
        any::<Index>(),
        any::<Index>(),
        target(),
        any::<bool>(),
        amounts,
        admin,
    )
        .prop_map(|(kind, sale, index, other, target, flag, amounts, admin)| {
            let (refund, payment, tender, period) = amounts;
            let (policy, basis_points, reconfigure, reuse, minor) = admin;
            // Reusing an existing vendor or employee id, one time in five.
            let reuse = (reuse == 4).then_some(other);
            match kind {
                ActionKind::Sale => Action::Sale(sale),
                ActionKind::ReceivePayment => Action::ReceivePayment {
                    order: index,
                    amount: payment,
                    tender,
                },
                ActionKind::Refund => Action::Refund {
                    order: index,
                    amount: refund,
                    with_reason: flag,
                },
                ActionKind::RepeatRefund => Action::RepeatRefund {
                    refund: index,
                    same_amount: flag,
                },
                ActionKind::Replenish => Action::Replenish {
                    employee: target,
                    period,
                },
                ActionKind::ReplenishAgain => Action::ReplenishAgain(index),
                ActionKind::Adjust => Action::Adjust {
                    employee: target,
                    minor,
                },
                ActionKind::SuspendVendor => Action::SuspendVendor(target),
                ActionKind::ReinstateVendor => Action::ReinstateVendor(target),
                ActionKind::ChangeCommissionRate => Action::ChangeCommissionRate {
                    vendor: target,
                    basis_points,
                },
                ActionKind::SuspendAccount => Action::SuspendAccount(target),
                ActionKind::ReinstateAccount => Action::ReinstateAccount(target),
                ActionKind::ChangeCreditPolicy => Action::ChangeCreditPolicy {
                    employee: target,
                    policy,
                },
                ActionKind::RegisterVendor => Action::RegisterVendor {
                    basis_points,
                    reuse,
                },
                ActionKind::OpenAccount => Action::OpenAccount { policy, reuse },
                ActionKind::Reconfigure => Action::Reconfigure(match reconfigure {
                    0 => Reconfigure::Same,
                    1 => Reconfigure::Zone(index),
                    _ => Reconfigure::Currency,
                }),
            }
        })
}

/// A few minutes to a day between steps, so a sequence spans several
/// replenishment periods and tenant-local days.
fn advance() -> impl Strategy<Value = i64> {
    (0..8u32, 0..=86_400i64).prop_map(|(band, x)| match band {
        0..=2 => 60 + x % 3_541,
        3..=5 => 3_600 + x % (5 * 3_600 + 1),
        _ => 6 * 3_600 + x % (18 * 3_600 + 1),
    })
}

fn step() -> impl Strategy<Value = Step> {
    (advance(), action()).prop_map(|(advance_seconds, action)| Step {
        advance_seconds,
        action,
    })
}

/// A tenant's command sequence with `steps` steps after its setup.
pub(crate) fn scenarios(steps: std::ops::Range<usize>) -> impl Strategy<Value = Scenario> {
    (
        tenant_currency(),
        prop::collection::vec(basis_points(), 1..=4),
        prop::collection::vec(valid_policy(), 1..=4),
        0..5u32,
        prop::collection::vec(step(), steps),
    )
        .prop_map(|(currency, vendors, accounts, band, steps)| Scenario {
            currency,
            vendors,
            accounts,
            replenish_after_setup: band < 4,
            steps,
        })
}

// ---------------------------------------------------------------------------
// The simulator: resolves steps against the ledger and runs them.
// ---------------------------------------------------------------------------

/// What the generator meant a command to do, where the rules leave no doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// Whatever the rules decide in the current state.
    Open,
    /// Breaks a rule whatever the state: must be rejected.
    Invalid,
    /// Repeats a command that succeeded: must succeed and write nothing.
    Repeat,
}

/// One executed command, as an observer sees it.
pub(crate) struct Executed<'a> {
    pub(crate) command: &'a Command,
    intent: Intent,
    records_before: usize,
    pub(crate) result: &'a Result<Vec<Envelope>, Rejection>,
    pub(crate) ledger: &'a MemoryLedger,
}

impl Executed<'_> {
    /// The records this command appended.
    pub(crate) fn appended(&self) -> &[Vec<u8>] {
        &self.ledger.records()[self.records_before..]
    }
}

/// Called after every command; a property's checks go here.
pub(crate) trait Observer: FnMut(&Executed<'_>) -> Result<(), TestCaseError> {}
impl<F: FnMut(&Executed<'_>) -> Result<(), TestCaseError>> Observer for F {}

fn ignore(_: &Executed<'_>) -> Result<(), TestCaseError> {
    Ok(())
}

const START: &str = "2026-01-01T00:00:00Z";

/// A tenant's ledger and the simulated clock, plus what the log holds so far
/// (learned from the events the commands produced), which steps index into.
pub(crate) struct Sim {
    ledger: MemoryLedger,
    /// The tenant's settings in force.
    currency: Currency,
    zone: TimeZone,
    now: Timestamp,
    money_moved: bool,
    vendors: Vec<VendorId>,
    employees: Vec<EmployeeId>,
    orders: Vec<OrderId>,
    invoices: Vec<OrderId>,
    /// Every refund issued: its order, id and amount.
    refunds: Vec<(OrderId, RefundId, Decimal)>,
    /// Every replenishment command that succeeded.
    replenishments: Vec<ReplenishCredit>,
    /// A counter for fresh ids.
    minted: u64,
}

/// Runs `scenario` for `tenant`, calling `observe` after every command.
pub(crate) fn simulate(
    tenant: &str,
    scenario: &Scenario,
    observe: &mut impl Observer,
) -> Result<Sim, TestCaseError> {
    let mut sim = Sim {
        ledger: MemoryLedger::new(TenantId::new(tenant)),
        currency: scenario.currency.currency(),
        zone: scenario.currency.zone(),
        now: START.parse().expect("a valid instant"),
        money_moved: false,
        vendors: Vec::new(),
        employees: Vec::new(),
        orders: Vec::new(),
        invoices: Vec::new(),
        refunds: Vec::new(),
        replenishments: Vec::new(),
        minted: 0,
    };
    let configure = ConfigureTenant {
        currency: scenario.currency.currency(),
        time_zone: scenario.currency.zone(),
    };
    sim.execute(Command::Tenant(configure), admin(), Intent::Open, observe)?;
    for &basis_points in &scenario.vendors {
        sim.step(
            &Action::RegisterVendor {
                basis_points,
                reuse: None,
            },
            observe,
        )?;
    }
    for policy in &scenario.accounts {
        sim.step(
            &Action::OpenAccount {
                policy: policy.clone(),
                reuse: None,
            },
            observe,
        )?;
    }
    if scenario.replenish_after_setup {
        for employee_id in sim.employees.clone() {
            let cadence = sim
                .ledger
                .credit_state(employee_id)
                .expect("just opened")
                .policy
                .cadence;
            let period = Period::containing(sim.now, sim.zone, cadence);
            let replenish = ReplenishCredit {
                employee_id,
                period,
                now: sim.now,
            };
            let command = Command::Credit(CreditCommand::Replenish(replenish));
            sim.execute(command, scheduler(), Intent::Open, observe)?;
        }
    }
    for step in &scenario.steps {
        sim.now = sim.now.plus_seconds(step.advance_seconds);
        sim.step(&step.action, observe)?;
    }
    Ok(sim)
}

/// The records of a scenario's log.
pub(crate) fn log_of(tenant: &str, scenario: &Scenario) -> Result<Vec<Vec<u8>>, TestCaseError> {
    Ok(simulate(tenant, scenario, &mut ignore)?
        .ledger
        .into_records())
}

fn admin() -> Actor {
    Actor {
        user_id: UserId::new("admin-1"),
        role: Role::Admin,
    }
}

fn scheduler() -> Actor {
    Actor {
        user_id: UserId::new("scheduler"),
        role: Role::Service,
    }
}

fn cashier(vendor_id: VendorId) -> Actor {
    Actor {
        user_id: UserId::new(&format!("cashier-{vendor_id}")),
        role: Role::Cashier,
    }
}

fn vendor_user(vendor_id: VendorId) -> Actor {
    Actor {
        user_id: UserId::new(&format!("owner-{vendor_id}")),
        role: Role::Vendor,
    }
}

/// `minor` with one more, non-zero, decimal place than `scale` allows.
fn over_precise(minor: i64, scale: u32) -> Decimal {
    Decimal::new(minor * 10 + 5, scale + 1)
}

/// An amount at its currency's scale, in minor units.
fn minor_units(amount: Decimal, scale: u32) -> i64 {
    let mut amount = amount;
    amount.rescale(scale);
    i64::try_from(amount.mantissa()).expect("domain amounts fit i64 minor units")
}

fn pick<T: Copy>(items: &[T], index: Index) -> Option<T> {
    (!items.is_empty()).then(|| items[index.index(items.len())])
}

impl Sim {
    fn mint(&mut self, prefix: &str) -> String {
        self.minted += 1;
        format!("{prefix}{}", self.minted)
    }

    fn scale(&self) -> u32 {
        self.currency.scale()
    }

    fn vendor(&self, target: Target, invalid: &mut bool) -> VendorId {
        match target {
            Target::Existing(i) if !self.vendors.is_empty() => {
                self.vendors[i.index(self.vendors.len())]
            }
            _ => {
                *invalid = true;
                VendorId::new("v-unknown")
            }
        }
    }

    fn employee(&self, target: Target, invalid: &mut bool) -> EmployeeId {
        match target {
            Target::Existing(i) if !self.employees.is_empty() => {
                self.employees[i.index(self.employees.len())]
            }
            _ => {
                *invalid = true;
                EmployeeId::new("E-unknown")
            }
        }
    }

    /// Executes a command, lets `observe` check it, and notes what now exists.
    fn execute(
        &mut self,
        command: Command,
        actor: Actor,
        intent: Intent,
        observe: &mut impl Observer,
    ) -> Result<(), TestCaseError> {
        let records_before = self.ledger.records().len();
        let result = self.ledger.execute(&command, actor, self.now);
        observe(&Executed {
            command: &command,
            intent,
            records_before,
            result: &result,
            ledger: &self.ledger,
        })?;
        let Ok(envelopes) = result else { return Ok(()) };
        if let Command::Credit(CreditCommand::Replenish(c)) = &command {
            self.replenishments.push(c.clone());
        }
        for envelope in &envelopes {
            self.note(envelope);
        }
        Ok(())
    }

    fn note(&mut self, envelope: &Envelope) {
        let id = envelope.stream().id();
        match &envelope.event {
            Event::TenantConfigured(e) => {
                self.currency = e.currency;
                self.zone = e.time_zone;
            }
            Event::VendorRegistered(_) => self.vendors.push(VendorId::new(id.as_str())),
            Event::CreditAccountOpened(_) => self.employees.push(EmployeeId::new(id.as_str())),
            Event::SaleRecorded(e) => {
                let order_id = OrderId::new(id.as_str());
                self.orders.push(order_id);
                if let Payment::Invoice { .. } = e.payment {
                    self.invoices.push(order_id);
                }
            }
            Event::RefundIssued(e) => {
                self.refunds
                    .push((OrderId::new(id.as_str()), e.refund_id, e.amount.amount()));
            }
            _ => {}
        }
        self.money_moved |= envelope.event.amount().is_some();
    }

    fn step(&mut self, action: &Action, observe: &mut impl Observer) -> Result<(), TestCaseError> {
        let scale = self.scale();
        let mut invalid = false;
        let (command, actor, intent) = match action {
            Action::Sale(spec) => return self.record_sale(spec, observe),
            Action::ReceivePayment {
                order,
                amount,
                tender,
            } => {
                let order_id = pick(&self.invoices, *order).or_else(|| pick(&self.orders, *order));
                let order_id = order_id.unwrap_or_else(|| {
                    invalid = true;
                    OrderId::new("o-unknown")
                });
                let state = self.ledger.order_state(order_id);
                let gross = state.map_or(Decimal::new(1, scale), |o| o.gross.amount());
                let amount = match amount {
                    PaymentAmount::Exact => gross,
                    PaymentAmount::Off(delta) => {
                        invalid = true;
                        gross + Decimal::new(*delta, scale)
                    }
                    PaymentAmount::OverPrecise => {
                        invalid = true;
                        gross + over_precise(0, scale)
                    }
                };
                let tender = match tender {
                    TenderSpec::Cash => Tender::Cash,
                    TenderSpec::Card => Tender::Card,
                    TenderSpec::MobileMoney => Tender::MobileMoney,
                    TenderSpec::Credit => {
                        invalid = true;
                        Tender::Credit {
                            employee_id: self.employee(Target::Unknown, &mut invalid),
                        }
                    }
                };
                let actor = state.map_or(admin(), |o| cashier(o.vendor_id));
                let pay = ReceivePayment {
                    order_id,
                    amount,
                    tender,
                    now: self.now,
                };
                (
                    Command::Sale(SaleCommand::ReceivePayment(pay)),
                    actor,
                    Intent::Open,
                )
            }
            Action::Refund {
                order,
                amount,
                with_reason,
            } => {
                let order_id = pick(&self.orders, *order).unwrap_or_else(|| {
                    invalid = true;
                    OrderId::new("o-unknown")
                });
                let state = self.ledger.order_state(order_id);
                let remaining = state.map_or(0, |o| minor_units(o.remaining().amount(), scale));
                let actor = state.map_or(admin(), |o| vendor_user(o.vendor_id));
                let amount = match amount {
                    RefundAmount::Percent(percent) => {
                        Decimal::new((remaining * percent / 100).max(1), scale)
                    }
                    RefundAmount::ExactRemaining => Decimal::new(remaining, scale),
                    RefundAmount::TooMuch(extra) => {
                        invalid = true;
                        Decimal::new(remaining + extra, scale)
                    }
                    RefundAmount::Zero => {
                        invalid = true;
                        Decimal::ZERO
                    }
                    RefundAmount::OverPrecise => {
                        invalid = true;
                        over_precise(remaining, scale)
                    }
                };
                let refund = IssueRefund {
                    order_id,
                    refund_id: RefundId::new(&self.mint("r")),
                    amount,
                    reason: with_reason.then(|| Reason::new("customer returned the item")),
                    now: self.now,
                };
                (
                    Command::Sale(SaleCommand::Refund(refund)),
                    actor,
                    Intent::Open,
                )
            }
            Action::RepeatRefund {
                refund,
                same_amount,
            } => {
                let Some((order_id, refund_id, earlier)) = pick(&self.refunds, *refund) else {
                    return Ok(());
                };
                let (amount, intent) = if *same_amount {
                    (earlier, Intent::Repeat)
                } else {
                    (earlier + Decimal::new(1, scale), Intent::Invalid)
                };
                let refund = IssueRefund {
                    order_id,
                    refund_id,
                    amount,
                    reason: None,
                    now: self.now,
                };
                let vendor_id = self
                    .ledger
                    .order_state(order_id)
                    .expect("a refunded order exists")
                    .vendor_id;
                (
                    Command::Sale(SaleCommand::Refund(refund)),
                    vendor_user(vendor_id),
                    intent,
                )
            }
            Action::Replenish { employee, period } => {
                let employee_id = self.employee(*employee, &mut invalid);
                let cadence = self
                    .ledger
                    .credit_state(employee_id)
                    .map_or(Cadence::SemiMonthly, |a| a.policy.cadence);
                let period = match period {
                    PeriodChoice::Current => Period::containing(self.now, self.zone, cadence),
                    PeriodChoice::Earlier => {
                        let back = if cadence == Cadence::Monthly { 31 } else { 16 };
                        Period::containing(
                            self.now.plus_seconds(-back * 86_400),
                            self.zone,
                            cadence,
                        )
                    }
                    PeriodChoice::Future => {
                        invalid = true;
                        Period::containing(self.now.plus_seconds(32 * 86_400), self.zone, cadence)
                    }
                    PeriodChoice::WrongCadence => {
                        invalid = true;
                        let other = if cadence == Cadence::Monthly {
                            Cadence::SemiMonthly
                        } else {
                            Cadence::Monthly
                        };
                        Period::containing(self.now, self.zone, other)
                    }
                };
                // A period that overlaps one already replenished is covered:
                // the command changes nothing and succeeds, even if it would
                // otherwise be refused (future period, other cadence).
                let covered = self
                    .ledger
                    .credit_state(employee_id)
                    .and_then(|account| account.last_period)
                    .is_some_and(|last| period.first_day() <= last.last_day());
                invalid &= !covered;
                let replenish = ReplenishCredit {
                    employee_id,
                    period,
                    now: self.now,
                };
                (
                    Command::Credit(CreditCommand::Replenish(replenish)),
                    scheduler(),
                    Intent::Open,
                )
            }
            Action::ReplenishAgain(index) => {
                if self.replenishments.is_empty() {
                    return Ok(());
                }
                let earlier = &self.replenishments[index.index(self.replenishments.len())];
                // The same command again: whatever happened to the account
                // or the tenant since, the period is already replenished, so
                // it must succeed and change nothing.
                let intent = Intent::Repeat;
                let again = ReplenishCredit {
                    now: self.now,
                    ..earlier.clone()
                };
                (
                    Command::Credit(CreditCommand::Replenish(again)),
                    scheduler(),
                    intent,
                )
            }
            Action::Adjust { employee, minor } => {
                let employee_id = self.employee(*employee, &mut invalid);
                invalid |= *minor == 0;
                let adjust = AdjustCredit {
                    employee_id,
                    amount: Decimal::new(*minor, scale),
                    reason: Reason::new("correction"),
                };
                (
                    Command::Credit(CreditCommand::Adjust(adjust)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::SuspendVendor(vendor) => {
                let vendor_id = self.vendor(*vendor, &mut invalid);
                let suspend = SuspendVendor {
                    vendor_id,
                    reason: Reason::new("health inspection"),
                };
                (
                    Command::Vendor(VendorCommand::Suspend(suspend)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::ReinstateVendor(vendor) => {
                let vendor_id = self.vendor(*vendor, &mut invalid);
                (
                    Command::Vendor(VendorCommand::Reinstate(ReinstateVendor { vendor_id })),
                    admin(),
                    Intent::Open,
                )
            }
            Action::ChangeCommissionRate {
                vendor,
                basis_points,
            } => {
                let vendor_id = self.vendor(*vendor, &mut invalid);
                let commission_rate =
                    CommissionRate::from_basis_points(*basis_points).expect("0..=10000");
                let change = ChangeCommissionRate {
                    vendor_id,
                    commission_rate,
                };
                (
                    Command::Vendor(VendorCommand::ChangeCommissionRate(change)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::SuspendAccount(employee) => {
                let employee_id = self.employee(*employee, &mut invalid);
                let suspend = SuspendCreditAccount {
                    employee_id,
                    reason: Reason::new("on leave"),
                };
                (
                    Command::Credit(CreditCommand::Suspend(suspend)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::ReinstateAccount(employee) => {
                let employee_id = self.employee(*employee, &mut invalid);
                let reinstate = ReinstateCreditAccount { employee_id };
                (
                    Command::Credit(CreditCommand::Reinstate(reinstate)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::ChangeCreditPolicy { employee, policy } => {
                let employee_id = self.employee(*employee, &mut invalid);
                invalid |= policy.flaw.is_some();
                let mut policy = policy.input(scale);
                if let Some(account) = self.ledger.credit_state(employee_id) {
                    policy.cadence = account.policy.cadence;
                }
                let change = ChangeCreditPolicy {
                    employee_id,
                    policy,
                };
                (
                    Command::Credit(CreditCommand::ChangePolicy(change)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::RegisterVendor {
                basis_points,
                reuse,
            } => {
                let vendor_id = match reuse.and_then(|i| pick(&self.vendors, i)) {
                    Some(existing) => {
                        invalid = true;
                        existing
                    }
                    None => VendorId::new(&self.mint("v")),
                };
                let register = RegisterVendor {
                    vendor_id,
                    name: Name::new(&format!("Stall {vendor_id}")),
                    commission_rate: CommissionRate::from_basis_points(*basis_points)
                        .expect("0..=10000"),
                };
                (
                    Command::Vendor(VendorCommand::Register(register)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::OpenAccount { policy, reuse } => {
                let employee_id = match reuse.and_then(|i| pick(&self.employees, i)) {
                    Some(existing) => {
                        invalid = true;
                        existing
                    }
                    None => EmployeeId::new(&self.mint("E")),
                };
                invalid |= policy.flaw.is_some();
                let open = OpenCreditAccount {
                    employee_id,
                    name: Name::new(&format!("Employee {employee_id}")),
                    policy: policy.input(scale),
                };
                (
                    Command::Credit(CreditCommand::Open(open)),
                    admin(),
                    Intent::Open,
                )
            }
            Action::Reconfigure(change) => {
                let (currency, time_zone, intent) = match change {
                    Reconfigure::Same => (self.currency, self.zone, Intent::Repeat),
                    Reconfigure::Zone(i) => (
                        self.currency,
                        TimeZone::new(ZONES[i.index(ZONES.len())]),
                        Intent::Open,
                    ),
                    Reconfigure::Currency => {
                        let other = if self.currency == Currency::new("PHP") {
                            "JPY"
                        } else {
                            "PHP"
                        };
                        let intent = if self.money_moved {
                            Intent::Invalid
                        } else {
                            Intent::Open
                        };
                        (Currency::new(other), self.zone, intent)
                    }
                };
                (
                    Command::Tenant(ConfigureTenant {
                        currency,
                        time_zone,
                    }),
                    admin(),
                    intent,
                )
            }
        };
        let intent = if invalid { Intent::Invalid } else { intent };
        self.execute(command, actor, intent, observe)
    }

    fn record_sale(
        &mut self,
        spec: &SaleSpec,
        observe: &mut impl Observer,
    ) -> Result<(), TestCaseError> {
        let scale = self.scale();
        let mut invalid = false;
        let vendor_id = self.vendor(spec.vendor, &mut invalid);
        let order_id = match spec.order {
            OrderChoice::Reuse(i) if !self.orders.is_empty() => {
                invalid = true;
                self.orders[i.index(self.orders.len())]
            }
            _ => OrderId::new(&self.mint("o")),
        };
        invalid |= spec.lines.iter().any(LineSpec::breaks_a_rule);
        let lines = spec
            .lines
            .iter()
            .enumerate()
            .map(|(k, l)| l.input(k, scale))
            .collect();
        let occurred_at = match spec.timing {
            Timing::Now => None,
            Timing::Offline { seconds_ago } => {
                invalid |= seconds_ago > OFFLINE_AGE_DAYS_MAX * 86_400;
                Some(self.now.plus_seconds(-seconds_ago))
            }
            Timing::Ahead { seconds } => {
                invalid |= seconds > CLOCK_SKEW_SECONDS_MAX;
                Some(self.now.plus_seconds(seconds))
            }
        };
        let business_date = occurred_at.unwrap_or(self.now).local_date(self.zone);
        let payment = match spec.payment {
            PaymentSpec::Cash => Payment::Cash,
            PaymentSpec::Card => Payment::Card,
            PaymentSpec::MobileMoney => Payment::MobileMoney,
            PaymentSpec::Credit(employee) => Payment::Credit {
                employee_id: self.employee(employee, &mut invalid),
            },
            PaymentSpec::Invoice { due_in_days } => {
                invalid |= due_in_days < 0;
                Payment::Invoice {
                    due_date: LocalDate::new(
                        business_date.as_naive() + Duration::days(due_in_days),
                    ),
                }
            }
        };
        let record = RecordSale {
            order_id,
            vendor_id,
            lines,
            payment,
            occurred_at,
            now: self.now,
        };
        let intent = if invalid {
            Intent::Invalid
        } else {
            Intent::Open
        };
        self.execute(
            Command::Sale(SaleCommand::Record(record)),
            cashier(vendor_id),
            intent,
            observe,
        )
    }
}

// ---------------------------------------------------------------------------
// Helpers over logs.
// ---------------------------------------------------------------------------

/// Delivery schedules draw from ledger-core's SplitMix64, so a schedule is
/// a pure function of a seed that proptest picks and prints.
fn one_in(rng: &mut SplitMix64, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

fn below(rng: &mut SplitMix64, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Merges two tenants' logs at random, keeping each log's own commit order.
fn interleave(a: Vec<Vec<u8>>, b: Vec<Vec<u8>>, rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let (mut a, mut b) = (VecDeque::from(a), VecDeque::from(b));
    let mut out = Vec::with_capacity(a.len() + b.len());
    while !a.is_empty() || !b.is_empty() {
        let from_a = b.is_empty() || (!a.is_empty() && one_in(rng, 2));
        out.extend(if from_a { a.pop_front() } else { b.pop_front() });
    }
    out
}

/// Two tenants' logs, interleaved.
fn two_tenant_log(
    first: &Scenario,
    second: &Scenario,
    seed: u64,
) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut rng = SplitMix64::new(seed);
    Ok(interleave(
        log_of("t1", first)?,
        log_of("t2", second)?,
        &mut rng,
    ))
}

pub(crate) fn decode_all(records: &[Vec<u8>]) -> Result<Vec<Envelope>, TestCaseError> {
    records
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            codec::decode(bytes).map_err(|e| TestCaseError::fail(format!("record {i}: {e}")))
        })
        .collect()
}

type StreamKey = (TenantId, StreamId);

fn stream_key(envelope: &Envelope) -> StreamKey {
    (envelope.tenant_id(), envelope.stream())
}

/// The positions of each stream's records, in log order.
fn positions_by_stream(log: &[Envelope]) -> BTreeMap<StreamKey, Vec<usize>> {
    let mut streams: BTreeMap<StreamKey, Vec<usize>> = BTreeMap::new();
    for (i, envelope) in log.iter().enumerate() {
        streams.entry(stream_key(envelope)).or_default().push(i);
    }
    streams
}

fn tenants_of(log: &[Envelope]) -> Vec<TenantId> {
    log.iter()
        .map(Envelope::tenant_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn audit_log(records: &[Vec<u8>]) -> audit::AuditReport {
    audit::audit(records.iter().map(Vec::as_slice))
}

/// Sums of postings per currency.
fn posting_sums(envelope: &Envelope) -> BTreeMap<Currency, Decimal> {
    let mut sums: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for p in posting::postings(envelope) {
        *sums.entry(p.amount.currency()).or_default() += p.amount.amount();
    }
    sums
}

// ---------------------------------------------------------------------------
// Delivery schedules and projections.
// ---------------------------------------------------------------------------

/// A schedule the transports allow: streams interleaved arbitrarily, each
/// stream in its own order, and any delivered record redelivered any number
/// of times later.
fn transport_schedule(log: &[Envelope], rng: &mut SplitMix64) -> Vec<usize> {
    let mut streams: Vec<VecDeque<usize>> = positions_by_stream(log)
        .into_values()
        .map(VecDeque::from)
        .collect();
    let mut out: Vec<usize> = Vec::with_capacity(log.len() * 5 / 4);
    while !streams.is_empty() {
        let s = below(rng, streams.len());
        out.extend(streams[s].pop_front());
        if streams[s].is_empty() {
            streams.swap_remove(s);
        }
        while one_in(rng, 5) {
            out.push(out[below(rng, out.len())]);
        }
    }
    out
}

/// A harsher schedule: any order at all, with duplicates anywhere.
fn shuffled_schedule(len: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut out: Vec<usize> = (0..len).collect();
    rng.shuffle(&mut out);
    for _ in 0..len / 4 {
        let at = below(rng, out.len() + 1);
        let copy = below(rng, len);
        out.insert(at, copy);
    }
    out
}

/// The shape every projection shares, so one harness drives them all.
trait Projection: Default + PartialEq + Debug {
    type Sink: Default;
    /// Whether this projection keeps track of versions for streams of `kind`
    /// (the others it ignores, reporting `Applied`).
    fn tracks(kind: StreamKind) -> bool;
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome;
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Self::Sink) -> Outcome;
    fn emitted(sink: &Self::Sink) -> usize;
    /// Replaying only the emitted changes onto empty maps must reproduce the state.
    fn check_changes(&self, sink: &Self::Sink, tenants: &[TenantId]) -> Result<(), TestCaseError>;
}

impl Projection for ReadModels {
    type Sink = Changes;
    fn tracks(_: StreamKind) -> bool {
        true
    }
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome {
        self.apply(envelope)
    }
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Changes) -> Outcome {
        self.apply_into(envelope, sink)
    }
    fn emitted(sink: &Changes) -> usize {
        sink.dashboard.len() + sink.orders.len() + sink.credit.len() + sink.activity.len()
    }
    fn check_changes(&self, sink: &Changes, tenants: &[TenantId]) -> Result<(), TestCaseError> {
        check_dashboard_changes(&self.dashboard, &sink.dashboard, tenants)?;
        check_order_changes(&self.orders, &sink.orders)?;
        check_credit_changes(&self.credit, &sink.credit, tenants)?;
        check_activity_changes(&self.activity, &sink.activity, tenants)
    }
}

impl Projection for VendorDailyTotals {
    type Sink = Vec<DashboardChange>;
    fn tracks(kind: StreamKind) -> bool {
        kind == StreamKind::Order
    }
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome {
        self.apply(envelope)
    }
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Self::Sink) -> Outcome {
        self.apply_into(envelope, sink)
    }
    fn emitted(sink: &Self::Sink) -> usize {
        sink.len()
    }
    fn check_changes(&self, sink: &Self::Sink, tenants: &[TenantId]) -> Result<(), TestCaseError> {
        check_dashboard_changes(self, sink, tenants)
    }
}

impl Projection for OrderViews {
    type Sink = Vec<OrderChange>;
    fn tracks(kind: StreamKind) -> bool {
        kind == StreamKind::Order
    }
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome {
        self.apply(envelope)
    }
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Self::Sink) -> Outcome {
        self.apply_into(envelope, sink)
    }
    fn emitted(sink: &Self::Sink) -> usize {
        sink.len()
    }
    fn check_changes(&self, sink: &Self::Sink, _: &[TenantId]) -> Result<(), TestCaseError> {
        check_order_changes(self, sink)
    }
}

impl Projection for CreditBalances {
    type Sink = Vec<CreditChange>;
    fn tracks(kind: StreamKind) -> bool {
        kind == StreamKind::Credit
    }
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome {
        self.apply(envelope)
    }
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Self::Sink) -> Outcome {
        self.apply_into(envelope, sink)
    }
    fn emitted(sink: &Self::Sink) -> usize {
        sink.len()
    }
    fn check_changes(&self, sink: &Self::Sink, tenants: &[TenantId]) -> Result<(), TestCaseError> {
        check_credit_changes(self, sink, tenants)
    }
}

impl Projection for ActivityLog {
    type Sink = Vec<ActivityEntry>;
    fn tracks(_: StreamKind) -> bool {
        true
    }
    fn apply_one(&mut self, envelope: &Envelope) -> Outcome {
        self.apply(envelope)
    }
    fn apply_collecting(&mut self, envelope: &Envelope, sink: &mut Self::Sink) -> Outcome {
        self.apply_into(envelope, sink)
    }
    fn emitted(sink: &Self::Sink) -> usize {
        sink.len()
    }
    fn check_changes(&self, sink: &Self::Sink, tenants: &[TenantId]) -> Result<(), TestCaseError> {
        check_activity_changes(self, sink, tenants)
    }
}

/// What a projection must answer to a delivery, given the versions of each
/// stream it has applied so far (updated when the answer is `Applied`).
fn expected_outcome<P: Projection>(
    applied: &mut HashMap<StreamKey, StreamVersion>,
    envelope: &Envelope,
) -> Outcome {
    if !P::tracks(envelope.stream().kind()) {
        return Outcome::Applied;
    }
    let last = applied.entry(stream_key(envelope)).or_default();
    let expected = last.next();
    let got = envelope.version();
    if got == expected {
        *last = got;
        Outcome::Applied
    } else if got < expected {
        Outcome::Duplicate
    } else {
        Outcome::Gap { expected, got }
    }
}

/// The projection folded from scratch over the log in commit order.
fn fold_in_commit_order<P: Projection>(log: &[Envelope]) -> Result<P, TestCaseError> {
    let mut projection = P::default();
    for envelope in log {
        let outcome = projection.apply_one(envelope);
        prop_assert_eq!(
            outcome,
            Outcome::Applied,
            "{} v{} in commit order",
            envelope.stream(),
            envelope.version()
        );
    }
    Ok(projection)
}

/// Delivers `schedule` to a fresh projection through `apply`, checking every
/// outcome; a `Gap` goes on a retry queue that is redelivered, in a new
/// random order, once the schedule has run out (a queue's retry), until
/// every record is applied.
fn deliver<P: Projection>(
    log: &[Envelope],
    schedule: &[usize],
    rng: &mut SplitMix64,
    mut apply: impl FnMut(&mut P, &Envelope) -> Result<Outcome, TestCaseError>,
) -> Result<P, TestCaseError> {
    let mut projection = P::default();
    let mut applied: HashMap<StreamKey, StreamVersion> = HashMap::new();
    let mut queue: Vec<usize> = schedule.to_vec();
    let mut passes = 0;
    while !queue.is_empty() {
        passes += 1;
        prop_assert!(passes <= log.len() + 1, "retries do not converge");
        let mut retry = Vec::new();
        for &i in &queue {
            let envelope = &log[i];
            let expected = expected_outcome::<P>(&mut applied, envelope);
            let got = apply(&mut projection, envelope)?;
            prop_assert_eq!(
                got,
                expected,
                "delivering {} v{}",
                envelope.stream(),
                envelope.version()
            );
            if let Outcome::Gap { .. } = got {
                retry.push(i);
            }
        }
        rng.shuffle(&mut retry);
        queue = retry;
    }
    for envelope in log {
        if P::tracks(envelope.stream().kind()) {
            let last = applied
                .get(&stream_key(envelope))
                .copied()
                .unwrap_or_default();
            prop_assert!(
                last >= envelope.version(),
                "{} v{} never applied",
                envelope.stream(),
                envelope.version()
            );
        }
    }
    Ok(projection)
}

/// Checks one projection under both kinds of schedule, with `apply` and with
/// `apply_into`, against its fold from scratch.
fn check_projection<P: Projection>(log: &[Envelope], seed: u64) -> Result<P, TestCaseError> {
    let tenants = tenants_of(log);
    let reference: P = fold_in_commit_order(log)?;
    let mut rng = SplitMix64::new(seed);

    let schedule = transport_schedule(log, &mut rng);
    let incremental = deliver::<P>(log, &schedule, &mut rng, |p, e| Ok(p.apply_one(e)))?;
    prop_assert_eq!(
        &incremental,
        &reference,
        "transport schedule {:?}",
        schedule
    );

    let schedule = shuffled_schedule(log.len(), &mut rng);
    let incremental = deliver::<P>(log, &schedule, &mut rng, |p, e| Ok(p.apply_one(e)))?;
    prop_assert_eq!(&incremental, &reference, "shuffled schedule {:?}", schedule);

    let schedule = shuffled_schedule(log.len(), &mut rng);
    let mut sink = P::Sink::default();
    let incremental = deliver::<P>(log, &schedule, &mut rng, |p, e| {
        let before = P::emitted(&sink);
        let outcome = p.apply_collecting(e, &mut sink);
        if outcome != Outcome::Applied {
            prop_assert_eq!(
                P::emitted(&sink),
                before,
                "a {:?} delivery emitted changes",
                outcome
            );
        }
        Ok(outcome)
    })?;
    prop_assert_eq!(
        &incremental,
        &reference,
        "shuffled schedule with changes {:?}",
        schedule
    );
    incremental.check_changes(&sink, &tenants)?;
    Ok(reference)
}

fn check_dashboard_changes(
    dashboard: &VendorDailyTotals,
    changes: &[DashboardChange],
    tenants: &[TenantId],
) -> Result<(), TestCaseError> {
    let mut days: BTreeMap<(TenantId, VendorId, LocalDate), DayTotals> = BTreeMap::new();
    let mut receivables: BTreeMap<(TenantId, VendorId), BTreeMap<LocalDate, Decimal>> =
        BTreeMap::new();
    for change in changes {
        match change {
            DashboardChange::Day {
                tenant_id,
                vendor_id,
                date,
                delta,
            } => {
                days.entry((*tenant_id, *vendor_id, *date))
                    .or_default()
                    .add(delta);
            }
            DashboardChange::Receivable {
                tenant_id,
                vendor_id,
                due_date,
                delta,
            } => {
                *receivables
                    .entry((*tenant_id, *vendor_id))
                    .or_default()
                    .entry(*due_date)
                    .or_default() += delta;
            }
        }
    }
    let ask = |tenant_id, vendor_id, date| {
        let query = DashboardQuery {
            tenant_id,
            vendor_id: Some(vendor_id),
            from: date,
            to: date,
            granularity: Granularity::Day,
            today: date,
        };
        dashboard
            .query(&query)
            .map_err(|e| TestCaseError::fail(format!("dashboard query: {e}")))
    };
    for (&(tenant_id, vendor_id, date), replayed) in &days {
        let answer = ask(tenant_id, vendor_id, date)?;
        prop_assert_eq!(
            &answer.totals,
            replayed,
            "{} {} {}",
            tenant_id,
            vendor_id,
            date
        );
    }
    // No bucket exists that no change made: each vendor's all-time totals
    // are the sum of the replayed days.
    for &tenant_id in tenants {
        let mut replayed: BTreeMap<VendorId, DayTotals> = BTreeMap::new();
        for ((_, vendor_id, _), day) in days.iter().filter(|((t, _, _), _)| *t == tenant_id) {
            replayed.entry(*vendor_id).or_default().add(day);
        }
        let all_time: BTreeMap<VendorId, DayTotals> =
            dashboard.all_time(tenant_id).into_iter().collect();
        prop_assert_eq!(all_time, replayed, "all-time totals of {}", tenant_id);
    }
    for (&(tenant_id, vendor_id), by_due_date) in &receivables {
        let pending: Decimal = by_due_date.values().sum();
        let last_due = *by_due_date
            .keys()
            .next_back()
            .expect("at least one due date");
        let after_last = LocalDate::new(last_due.as_naive() + Duration::days(1));
        for today in by_due_date.keys().copied().chain([after_last]) {
            let answer = ask(tenant_id, vendor_id, today)?;
            let overdue: Decimal = by_due_date.range(..today).map(|(_, amount)| amount).sum();
            prop_assert_eq!(
                answer.receivables_pending,
                pending,
                "pending of {} {}",
                tenant_id,
                vendor_id
            );
            prop_assert_eq!(
                answer.receivables_overdue,
                overdue,
                "overdue of {} {} on {}",
                tenant_id,
                vendor_id,
                today
            );
        }
    }
    Ok(())
}

fn check_order_changes(orders: &OrderViews, changes: &[OrderChange]) -> Result<(), TestCaseError> {
    let mut last: HashMap<(TenantId, OrderId), &OrderView> = HashMap::new();
    for change in changes {
        last.insert((change.tenant_id, change.view.order_id), &change.view);
    }
    prop_assert_eq!(last.len(), orders.len());
    for ((tenant_id, order_id), view) in last {
        prop_assert_eq!(orders.get(tenant_id, order_id), Some(view));
    }
    Ok(())
}

fn check_credit_changes(
    credit: &CreditBalances,
    changes: &[CreditChange],
    tenants: &[TenantId],
) -> Result<(), TestCaseError> {
    let mut views = HashMap::new();
    let mut statements: HashMap<(TenantId, EmployeeId), Vec<StatementLine>> = HashMap::new();
    for change in changes {
        let key = (change.tenant_id, change.view.employee_id);
        views.insert(key, &change.view);
        statements
            .entry(key)
            .or_default()
            .extend(change.line.clone());
    }
    for &tenant_id in tenants {
        let replayed = views.keys().filter(|(t, _)| *t == tenant_id).count();
        prop_assert_eq!(
            credit.accounts(tenant_id).count(),
            replayed,
            "accounts of {}",
            tenant_id
        );
    }
    for (&(tenant_id, employee_id), view) in &views {
        prop_assert_eq!(credit.get(tenant_id, employee_id), Some(*view));
        let lines = statements
            .get(&(tenant_id, employee_id))
            .map_or(&[][..], Vec::as_slice);
        prop_assert!(lines.len() < PAGE_STATEMENT_MAX, "statement fits one page");
        let statement = credit.statement(
            tenant_id,
            employee_id,
            StreamVersion::NONE,
            PAGE_STATEMENT_MAX,
        );
        prop_assert_eq!(
            statement,
            lines,
            "statement of {} {}",
            tenant_id,
            employee_id
        );
    }
    Ok(())
}

fn check_activity_changes(
    activity: &ActivityLog,
    entries: &[ActivityEntry],
    tenants: &[TenantId],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(activity.len(), entries.len());
    for &tenant_id in tenants {
        let mut replayed: Vec<&ActivityEntry> = entries
            .iter()
            .filter(|e| e.tenant_id == tenant_id)
            .collect();
        replayed.sort_by_key(|e| std::cmp::Reverse(e.sort_key()));
        prop_assert!(
            replayed.len() < PAGE_ACTIVITY_MAX,
            "a tenant's log fits one page"
        );
        // Every page, newest first, small pages to exercise the cursor.
        let mut paged: Vec<&ActivityEntry> = Vec::new();
        let mut cursor = None;
        loop {
            let page = activity.query(tenant_id, ActivityFilter::All, cursor, 7);
            let Some(last) = page.last() else { break };
            cursor = Some(last.sort_key());
            paged.extend(page);
        }
        prop_assert_eq!(&paged, &replayed, "activity of {}", tenant_id);
        let vendors: BTreeSet<VendorId> = replayed.iter().filter_map(|e| e.vendor_id).collect();
        for vendor_id in vendors {
            let page = activity.query(
                tenant_id,
                ActivityFilter::Vendor(vendor_id),
                None,
                PAGE_ACTIVITY_MAX,
            );
            let expected: Vec<&ActivityEntry> = replayed
                .iter()
                .copied()
                .filter(|e| e.vendor_id == Some(vendor_id))
                .collect();
            prop_assert_eq!(page, expected, "activity of vendor {}", vendor_id);
        }
        let users: BTreeSet<UserId> = replayed.iter().map(|e| e.actor.user_id).collect();
        for user_id in users {
            let page = activity.query(
                tenant_id,
                ActivityFilter::Actor(user_id),
                None,
                PAGE_ACTIVITY_MAX,
            );
            let expected: Vec<&ActivityEntry> = replayed
                .iter()
                .copied()
                .filter(|e| e.actor.user_id == user_id)
                .collect();
            prop_assert_eq!(page, expected, "activity of user {}", user_id);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Double entry: every event's postings balance, per currency.
    #[test]
    fn postings_always_sum_to_zero(scenario in scenarios(20..120)) {
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            for envelope in x.result.iter().flatten() {
                for (currency, sum) in posting_sums(envelope) {
                    prop_assert!(sum.is_zero(), "{} v{} postings sum to {} {}: {:?}",
                        envelope.stream(), envelope.version(), sum, currency, posting::postings(envelope));
                }
            }
            Ok(())
        })?;
    }

    /// No command leaves a credit balance below zero, and the credit
    /// projection fed the log so far states the same balances as the ledger.
    #[test]
    fn credit_balance_is_never_negative(scenario in scenarios(20..120)) {
        let mut projection = CreditBalances::default();
        let mut employees: BTreeSet<EmployeeId> = BTreeSet::new();
        let tenant_id = TenantId::new("t1");
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            for envelope in x.result.iter().flatten() {
                prop_assert_eq!(projection.apply(envelope), Outcome::Applied);
                if let Event::CreditAccountOpened(_) = envelope.event {
                    employees.insert(EmployeeId::new(envelope.stream().id().as_str()));
                }
            }
            for &employee_id in &employees {
                let account = x.ledger.credit_state(employee_id).expect("an opened account exists");
                prop_assert!(!account.balance.is_negative(), "{} has {} after {:?}", employee_id, account.balance, x.command);
                let view = projection.get(tenant_id, employee_id).expect("the projection knows the account");
                prop_assert_eq!(view.balance, account.balance, "projected balance of {}", employee_id);
                prop_assert_eq!(view.suspended, account.suspended);
                prop_assert_eq!(view.last_period, account.last_period);
            }
            Ok(())
        })?;
    }

    /// Per order: refunds never exceed the gross nor reversals the commission;
    /// each partial reversal is the half-to-even share of the commission; and
    /// a fully refunded order reconciles exactly (gross, commission and net).
    #[test]
    fn refunds_never_exceed_gross_and_full_refunds_reconcile(scenario in scenarios(20..120)) {
        let sim = simulate("t1", &scenario, &mut ignore)?;
        let scale = sim.currency.scale();
        let log = decode_all(sim.ledger.records())?;
        struct Tally { gross: Decimal, commission: Decimal, net: Decimal, refunded: Decimal, reversed: Decimal, refunded_net: Decimal, completed: bool }
        let mut orders: BTreeMap<OrderId, Tally> = BTreeMap::new();
        for envelope in &log {
            let order_id = OrderId::new(envelope.stream().id().as_str());
            match &envelope.event {
                Event::SaleRecorded(e) => {
                    let tally = Tally { gross: e.gross.amount(), commission: e.commission.amount(), net: e.net().amount(),
                        refunded: Decimal::ZERO, reversed: Decimal::ZERO, refunded_net: Decimal::ZERO, completed: false };
                    prop_assert_eq!(tally.gross - tally.commission, tally.net);
                    prop_assert!(orders.insert(order_id, tally).is_none(), "{} recorded twice", order_id);
                }
                Event::RefundIssued(e) => {
                    let t = orders.get_mut(&order_id).expect("a refund follows its sale");
                    prop_assert!(!t.completed, "{} refunded after it was fully refunded", order_id);
                    prop_assert!(e.amount.is_positive());
                    let left = t.commission - t.reversed;
                    let expected_reversal = if e.completes_refund {
                        left
                    } else {
                        (t.commission * e.amount.amount() / t.gross)
                            .round_dp_with_strategy(scale, RoundingStrategy::MidpointNearestEven)
                            .min(left)
                    };
                    prop_assert_eq!(e.commission_reversed.amount(), expected_reversal, "reversal of {} on {}", e.refund_id, order_id);
                    t.refunded += e.amount.amount();
                    t.reversed += e.commission_reversed.amount();
                    t.refunded_net += e.net().amount();
                    t.completed = e.completes_refund;
                    prop_assert_eq!(e.completes_refund, t.refunded == t.gross, "completes_refund of {}", e.refund_id);
                }
                _ => {}
            }
        }
        for (order_id, t) in &orders {
            prop_assert!(t.refunded <= t.gross, "{} refunded {} of {}", order_id, t.refunded, t.gross);
            prop_assert!(t.reversed <= t.commission, "{} reversed {} of {}", order_id, t.reversed, t.commission);
            let order = sim.ledger.order_state(*order_id).expect("a recorded order");
            prop_assert_eq!(order.refunded.amount(), t.refunded);
            prop_assert_eq!(order.commission_reversed.amount(), t.reversed);
            prop_assert_eq!(order.status == OrderStatus::Refunded, t.completed);
            if order.status == OrderStatus::Refunded {
                prop_assert_eq!(t.refunded, t.gross, "{} refunded", order_id);
                prop_assert_eq!(t.reversed, t.commission, "{} commission reversed", order_id);
                prop_assert_eq!(t.refunded_net, t.net, "{} net refunded", order_id);
            }
        }
    }

    /// Running a replenishment again for a period it already covered returns
    /// no events and appends nothing.
    #[test]
    fn replenishing_a_period_twice_changes_nothing(
        scenario in scenarios(20..120),
        extra_replays in prop::collection::vec((any::<Index>(), any::<Index>()), 1..4),
    ) {
        // Besides the replays the generator mixes in, replay at a few more random points.
        let mut scenario = scenario;
        for (at, which) in extra_replays {
            let at = at.index(scenario.steps.len() + 1);
            scenario.steps.insert(at, Step { advance_seconds: 60, action: Action::ReplenishAgain(which) });
        }
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            if x.intent == Intent::Repeat && matches!(x.command, Command::Credit(CreditCommand::Replenish(_))) {
                prop_assert_eq!(x.result, &Ok(vec![]), "replaying {:?}", x.command);
                prop_assert!(x.appended().is_empty());
            }
            Ok(())
        })?;
    }

    /// Repeating a command that succeeded (a refund id with its amount, the
    /// tenant settings in force, a replenished period) writes nothing.
    #[test]
    fn repeating_a_command_that_succeeded_writes_nothing(scenario in scenarios(20..120)) {
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            if x.intent == Intent::Repeat {
                prop_assert_eq!(x.result, &Ok(vec![]), "repeating {:?}", x.command);
                prop_assert!(x.appended().is_empty());
            }
            Ok(())
        })?;
    }

    /// A rejected command appends nothing; an accepted one appends exactly its
    /// events; a command that breaks a rule is rejected.
    #[test]
    fn a_rejected_command_writes_nothing(scenario in scenarios(20..120)) {
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            match x.result {
                Err(rejection) => prop_assert!(x.appended().is_empty(), "{:?} rejected ({}) but wrote {} records",
                    x.command, rejection.code(), x.appended().len()),
                Ok(envelopes) => {
                    prop_assert_eq!(x.appended().len(), envelopes.len());
                    prop_assert!(x.intent != Intent::Invalid, "accepted {:?}: {:?}", x.command, envelopes);
                }
            }
            Ok(())
        })?;
    }

    /// Every record decodes to the envelope `execute` returned, and sealing
    /// that envelope again gives the same bytes.
    #[test]
    fn encode_decode_is_identity(scenario in scenarios(20..120)) {
        simulate("t1", &scenario, &mut |x: &Executed<'_>| {
            let Ok(envelopes) = x.result else { return Ok(()) };
            for (envelope, bytes) in envelopes.iter().zip(x.appended()) {
                let decoded = codec::decode(bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(&decoded, envelope);
                let sealed = codec::seal(envelope.header, envelope.event.clone(), envelope.prev_hash)
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(&sealed.bytes, bytes);
                prop_assert_eq!(&sealed.envelope, envelope);
                prop_assert_eq!(codec::verify_record(bytes), Ok((envelope.prev_hash, envelope.hash)));
            }
            Ok(())
        })?;
    }

    /// Every projection, fed under any delivery the transports allow (and
    /// under arbitrary reordering with gaps retried), ends equal to its fold
    /// from scratch; and the changes it emits replay to the same state.
    #[test]
    fn incremental_apply_equals_fold_from_scratch(
        first in scenarios(10..60),
        second in scenarios(10..60),
        seed in any::<u64>(),
    ) {
        let records = two_tenant_log(&first, &second, seed)?;
        let log = decode_all(&records)?;
        let mut rng = SplitMix64::new(seed ^ 0x5EED);
        let all: ReadModels = check_projection(&log, rng.next_u64())?;
        let orders: OrderViews = check_projection(&log, rng.next_u64())?;
        let credit: CreditBalances = check_projection(&log, rng.next_u64())?;
        let activity: ActivityLog = check_projection(&log, rng.next_u64())?;
        let dashboard: VendorDailyTotals = check_projection(&log, rng.next_u64())?;
        // Fed together or alone, the projections agree.
        prop_assert_eq!(&all.orders, &orders);
        prop_assert_eq!(&all.credit, &credit);
        prop_assert_eq!(&all.activity, &activity);
        for tenant_id in tenants_of(&log) {
            let together: BTreeMap<_, _> = all.dashboard.all_time(tenant_id).into_iter().collect();
            let alone: BTreeMap<_, _> = dashboard.all_time(tenant_id).into_iter().collect();
            prop_assert_eq!(together, alone);
        }
    }

    /// The audit passes an untouched log; flipping any one byte, dropping a
    /// record from the middle of a stream or swapping two records of a stream
    /// makes it report at least one finding.
    #[test]
    fn hash_chain_verifies_and_any_one_byte_tamper_is_detected(
        scenario in scenarios(10..60),
        record in any::<Index>(),
        position in any::<Index>(),
        mask in 1..=255u8,
        dropped in any::<Index>(),
        swapped in (any::<Index>(), any::<Index>(), any::<Index>()),
    ) {
        let records = log_of("t1", &scenario)?;
        let report = audit_log(&records);
        prop_assert!(report.is_clean(), "findings on an untouched log: {:#?}", report.findings);

        let mut tampered = records.clone();
        let bytes = &mut tampered[record.index(records.len())];
        let at = position.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(!audit_log(&tampered).is_clean(), "flipping byte {} with {:#04x} went unnoticed", at, mask);

        let log = decode_all(&records)?;
        let streams = positions_by_stream(&log);
        // A record that is not the last of its stream: dropping the last is a
        // truncation no chain can see.
        let middle: Vec<usize> = streams.values().flat_map(|p| p[..p.len() - 1].iter().copied()).collect();
        if let Some(i) = pick(&middle, dropped) {
            let mut without = records.clone();
            without.remove(i);
            prop_assert!(!audit_log(&without).is_clean(), "dropping {} v{} went unnoticed", log[i].stream(), log[i].version());
        }

        let long: Vec<&Vec<usize>> = streams.values().filter(|p| p.len() >= 2).collect();
        if let Some(positions) = pick(&long, swapped.0) {
            let a = swapped.1.index(positions.len());
            let b = (a + 1 + swapped.2.index(positions.len() - 1)) % positions.len();
            let mut reordered = records.clone();
            reordered.swap(positions[a], positions[b]);
            prop_assert!(!audit_log(&reordered).is_clean(), "swapping {} v{} and v{} went unnoticed",
                log[positions[a]].stream(), log[positions[a]].version(), log[positions[b]].version());
        }
    }

    /// Whatever commands ran, in one tenant or two interleaved, the audit's
    /// cross-checks hold: chains, versions, postings, balances, refunds and
    /// the projections against the ledger.
    #[test]
    fn audit_is_clean_for_every_generated_log(
        first in scenarios(20..100),
        second in scenarios(20..100),
        seed in any::<u64>(),
    ) {
        let records = two_tenant_log(&first, &second, seed)?;
        let report = audit_log(&records);
        prop_assert!(report.is_clean(), "audit findings: {:#?}", report.findings);
        prop_assert_eq!(report.events, records.len() as u64);
    }
}

/// Guards the generator against quietly becoming vacuous: over a few hundred
/// scenarios, every kind of success and every rejection the rules define is
/// reached.
#[test]
fn the_generator_exercises_every_rule() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenarios(20..120);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let scenario = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let mut count = |x: &Executed<'_>| {
            let key = match x.result {
                Err(rejection) => format!("rejected {}", rejection.code()),
                Ok(envelopes) if envelopes.is_empty() => "accepted without events".to_owned(),
                Ok(envelopes) => match &envelopes[0].event {
                    Event::SaleRecorded(e) => format!("sale {}", payment_kind(e.payment)),
                    Event::RefundIssued(e) if e.completes_refund => "refund completing".to_owned(),
                    Event::RefundIssued(_) => "refund partial".to_owned(),
                    other => format!("{:?}", other.event_type()),
                },
            };
            *seen.entry(key).or_default() += 1;
            if x.intent == Intent::Repeat
                && matches!(x.command, Command::Credit(CreditCommand::Replenish(_)))
            {
                *seen.entry("replenishment replayed".to_owned()).or_default() += 1;
            }
            Ok(())
        };
        simulate("t1", &scenario, &mut count).expect("counting never fails");
    }
    let wanted = [
        "sale cash",
        "sale card",
        "sale mobile_money",
        "sale credit",
        "sale invoice",
        "refund completing",
        "refund partial",
        "replenishment replayed",
        "accepted without events",
        "PaymentReceived",
        "CreditReplenished",
        "CreditAdjusted",
        "CommissionRateChanged",
        "VendorSuspended",
        "VendorReinstated",
        "CreditAccountSuspended",
        "CreditAccountReinstated",
        "CreditPolicyChanged",
        "TenantConfigured",
        "rejected validation_failed",
        "rejected limit_exceeded",
        "rejected insufficient_credit",
        "rejected refund_exceeds_remaining",
        "rejected idempotency_key_reused",
        "rejected order_exists",
        "rejected order_not_pending",
        "rejected order_not_refundable",
        "rejected payment_amount_mismatch",
        "rejected vendor_suspended",
        "rejected vendor_exists",
        "rejected vendor_not_found",
        "rejected employee_not_found",
        "rejected credit_account_exists",
        "rejected credit_account_suspended",
        "rejected period_cadence_mismatch",
        "rejected period_not_started",
        "rejected currency_locked",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !seen.contains_key(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}; seen: {seen:#?}"
    );
}

fn payment_kind(payment: Payment) -> &'static str {
    match payment {
        Payment::Cash => "cash",
        Payment::Card => "card",
        Payment::MobileMoney => "mobile_money",
        Payment::Credit { .. } => "credit",
        Payment::Invoice { .. } => "invoice",
    }
}

/// Found by `audit_is_clean_for_every_generated_log`: a tenant could switch
/// currency after opening credit accounts (no money had moved), stranding
/// allowances in the old currency. An allowance is an amount: it locks the
/// currency like money moving does.
#[test]
fn regression_currency_is_locked_once_a_credit_allowance_exists() {
    let mut ledger = MemoryLedger::new(TenantId::new("t1"));
    let admin = Actor {
        user_id: ledger_core::UserId::new("admin"),
        role: Role::Admin,
    };
    let now: ledger_core::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let configure = |code: &str| {
        Command::Tenant(ConfigureTenant {
            currency: Currency::new(code),
            time_zone: TimeZone::new("Asia/Manila"),
        })
    };
    ledger.execute(&configure("PHP"), admin, now).unwrap();
    // Before any amount exists the currency may still change.
    ledger.execute(&configure("USD"), admin, now).unwrap();
    ledger.execute(&configure("PHP"), admin, now).unwrap();
    let open = Command::Credit(CreditCommand::Open(OpenCreditAccount {
        employee_id: EmployeeId::new("E1"),
        name: Name::new("Ana"),
        policy: CreditPolicyInput {
            allowance: Decimal::new(500, 0),
            cadence: Cadence::SemiMonthly,
            mode: ReplenishMode::TopUp,
            cap: None,
        },
    }));
    ledger.execute(&open, admin, now).unwrap();
    let records = ledger.records().len();
    assert_eq!(
        ledger.execute(&configure("JPY"), admin, now),
        Err(Rejection::CurrencyLocked)
    );
    assert_eq!(
        ledger.records().len(),
        records,
        "a rejection writes nothing"
    );
}

/// Found while profiling: `ReadModels` fed order events to the credit fold,
/// which looked the order's id up as an employee id. An order named like an
/// employee then overwrote that employee's view version.
#[test]
fn regression_an_order_named_like_an_employee_leaves_the_credit_view_alone() {
    let mut ledger = MemoryLedger::new(TenantId::new("t1"));
    let admin = Actor {
        user_id: ledger_core::UserId::new("admin"),
        role: Role::Admin,
    };
    let now: ledger_core::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
    let run =
        |ledger: &mut MemoryLedger, command: Command| ledger.execute(&command, admin, now).unwrap();
    run(
        &mut ledger,
        Command::Tenant(ConfigureTenant {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        }),
    );
    run(
        &mut ledger,
        Command::Vendor(VendorCommand::Register(RegisterVendor {
            vendor_id: ledger_core::VendorId::new("v1"),
            name: Name::new("Stall"),
            commission_rate: CommissionRate::from_basis_points(1000).unwrap(),
        })),
    );
    run(
        &mut ledger,
        Command::Credit(CreditCommand::Open(OpenCreditAccount {
            employee_id: EmployeeId::new("X1"),
            name: Name::new("Ana"),
            policy: CreditPolicyInput {
                allowance: Decimal::new(500, 0),
                cadence: Cadence::SemiMonthly,
                mode: ReplenishMode::TopUp,
                cap: None,
            },
        })),
    );
    for line in 0..3 {
        let order_id = if line == 0 {
            "X1".to_owned()
        } else {
            format!("X1-{line}")
        };
        run(
            &mut ledger,
            Command::Sale(SaleCommand::Record(RecordSale {
                order_id: OrderId::new(&order_id),
                vendor_id: ledger_core::VendorId::new("v1"),
                lines: vec![LineInput {
                    item: ItemCode::new("TEA"),
                    quantity: 1,
                    unit_price: Decimal::new(25, 0),
                }],
                payment: Payment::Cash,
                occurred_at: None,
                now,
            })),
        );
        run(
            &mut ledger,
            Command::Sale(SaleCommand::Refund(IssueRefund {
                order_id: OrderId::new(&order_id),
                refund_id: RefundId::new("r1"),
                amount: Decimal::new(5, 0),
                reason: None,
                now,
            })),
        );
    }
    let mut models = ReadModels::default();
    let mut alone = CreditBalances::default();
    let mut changes = Changes::default();
    for record in ledger.records() {
        let envelope = codec::decode(record).unwrap();
        models.apply_into(&envelope, &mut changes);
        alone.apply(&envelope);
    }
    let tenant = TenantId::new("t1");
    let view = models.credit.get(tenant, EmployeeId::new("X1")).unwrap();
    assert_eq!(
        view.version,
        StreamVersion::new(1),
        "only the account's own event"
    );
    assert_eq!(models.credit, alone);
    assert_eq!(changes.credit.len(), 1, "{:?}", changes.credit);
}
