//! A seeded, deterministic simulator of a cafeteria tenant: vendors with
//! commission rates, employees on semi-monthly credit, weeks of sales paid by
//! credit, cash, card, mobile money and invoice, refunds, invoice payments,
//! replenishments, and a monthly commission rate change. Every event comes
//! out of the real deciders through [`MemoryLedger`], so the log is one the
//! product could have written.
//!
//! Its randomness is the workspace's one seeded generator,
//! [`SplitMix64`], so a seed names a log forever. [`demo`] is `tally demo`:
//! simulate, fold, print the figures, audit.

pub mod demo;

use chrono::{Datelike, Duration};
use ledger_core::credit::{CreditCommand, CreditPolicyInput, OpenCreditAccount, ReplenishCredit};
use ledger_core::event::{Payment, Tender};
use ledger_core::memory::{Command, MemoryLedger};
use ledger_core::policy::ReplenishMode;
use ledger_core::rng::SplitMix64;
use ledger_core::sale::{
    IssueRefund, LineInput, OrderStatus, ReceivePayment, RecordSale, SaleCommand,
};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::{ChangeCommissionRate, RegisterVendor, VendorCommand};
use ledger_core::{
    Actor, Cadence, CommissionRate, Currency, EmployeeId, ItemCode, LocalDate, OrderId, Period,
    RefundId, Role, TenantId, TimeZone, Timestamp, UserId, VendorId,
};
use rust_decimal::Decimal;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub tenant_id: TenantId,
    pub first_day: LocalDate,
    pub days: u32,
    pub vendors: u32,
    pub employees: u32,
    pub sales_per_day: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            tenant_id: TenantId::new("demo"),
            first_day: LocalDate::ymd(2026, 10, 1),
            days: 42,
            vendors: 6,
            employees: 250,
            sales_per_day: 400,
        }
    }
}

/// What the simulation did.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub commands: u64,
    pub rejected: u64,
    pub rejected_by_code: std::collections::BTreeMap<&'static str, u64>,
}

const MENU: [(&str, i64); 12] = [
    ("ADOBO", 8500),
    ("SINIGANG", 9500),
    ("LUMPIA", 4500),
    ("PANCIT", 7000),
    ("RICE", 2000),
    ("SISIG", 11000),
    ("HALO-HALO", 6500),
    ("COFFEE", 3500),
    ("ICED-TEA", 2500),
    ("BANANA-Q", 2000),
    ("TAPSILOG", 9000),
    ("BOTTLED-WATER", 1500),
];

struct Simulator {
    config: SimConfig,
    ledger: MemoryLedger,
    rng: SplitMix64,
    zone: TimeZone,
    stats: SimStats,
    orders: Vec<OrderId>,
    invoices: Vec<OrderId>,
    next_order: u64,
    next_refund: u64,
}

/// Runs the simulation and returns the ledger (its records are the log).
pub fn simulate(config: SimConfig) -> (MemoryLedger, SimStats) {
    let zone = TimeZone::new("Asia/Manila");
    let mut sim = Simulator {
        ledger: MemoryLedger::new(config.tenant_id),
        rng: SplitMix64::new(config.seed),
        zone,
        stats: SimStats::default(),
        orders: Vec::new(),
        invoices: Vec::new(),
        next_order: 0,
        next_refund: 0,
        config,
    };
    sim.run();
    (sim.ledger, sim.stats)
}

fn admin() -> Actor {
    Actor {
        user_id: UserId::new("admin"),
        role: Role::Admin,
    }
}

fn vendor_id(i: u32) -> VendorId {
    VendorId::new(&format!("V{i:02}"))
}

fn employee_id(i: u32) -> EmployeeId {
    EmployeeId::new(&format!("E{i:04}"))
}

impl Simulator {
    fn run(&mut self) {
        let start = self.at(self.config.first_day, 7 * 60);
        self.exec(
            Command::Tenant(ConfigureTenant {
                currency: Currency::new("PHP"),
                time_zone: self.zone,
            }),
            admin(),
            start,
        );
        for i in 0..self.config.vendors {
            let bps = [800, 1000, 1200, 1500][(i % 4) as usize];
            let c = RegisterVendor {
                vendor_id: vendor_id(i),
                name: Name::new(&format!("Stall {i}")),
                commission_rate: CommissionRate::from_basis_points(bps).expect("rate in range"),
            };
            self.exec(Command::Vendor(VendorCommand::Register(c)), admin(), start);
        }
        for i in 0..self.config.employees {
            let policy = CreditPolicyInput {
                allowance: Decimal::new(if i % 5 == 0 { 2500 } else { 1500 }, 0),
                cadence: Cadence::SemiMonthly,
                mode: if i % 4 == 0 {
                    ReplenishMode::Accumulate
                } else {
                    ReplenishMode::TopUp
                },
                cap: if i % 4 == 0 {
                    Some(Decimal::new(4000, 0))
                } else {
                    None
                },
            };
            let c = OpenCreditAccount {
                employee_id: employee_id(i),
                name: Name::new(&format!("Employee {i}")),
                policy,
            };
            self.exec(Command::Credit(CreditCommand::Open(c)), admin(), start);
        }
        for day in 0..self.config.days {
            let date =
                LocalDate::new(self.config.first_day.as_naive() + Duration::days(i64::from(day)));
            self.day(date);
        }
    }

    fn day(&mut self, date: LocalDate) {
        let d = date.as_naive();
        if d.day() == 1 || d.day() == 16 {
            self.replenish(date);
        }
        if d.day() == 10 && self.config.vendors > 0 {
            let c = ChangeCommissionRate {
                vendor_id: vendor_id(0),
                commission_rate: CommissionRate::from_basis_points(
                    800 + 50 * (d.month() as u16 % 6),
                )
                .expect("rate"),
            };
            self.exec(
                Command::Vendor(VendorCommand::ChangeCommissionRate(c)),
                admin(),
                self.at(date, 6 * 60),
            );
        }
        let sales = self.config.sales_per_day;
        for n in 0..sales {
            // Business hours 07:00-19:00, spread evenly with jitter.
            let minute = 7 * 60 + (n as u64 * 720 / u64::from(sales.max(1))) + self.rng.below(3);
            let now = self.at(date, minute as u32);
            self.sale(now);
            if self.rng.chance_percent(4) {
                self.refund(now);
            }
        }
        self.pay_invoices(date);
    }

    fn replenish(&mut self, date: LocalDate) {
        let now = self.at(date, 5 * 60);
        let period = Period::containing(now, self.zone, Cadence::SemiMonthly);
        let service = Actor {
            user_id: UserId::new("scheduler"),
            role: Role::Service,
        };
        for i in 0..self.config.employees {
            let c = ReplenishCredit {
                employee_id: employee_id(i),
                period,
                now,
            };
            self.exec(Command::Credit(CreditCommand::Replenish(c)), service, now);
        }
    }

    fn sale(&mut self, now: Timestamp) {
        self.next_order += 1;
        let order_id = OrderId::new(&format!("O{:08}", self.next_order));
        let vendor = self.rng.below(u64::from(self.config.vendors)) as u32;
        let lines = (0..1 + self.rng.below(3))
            .map(|_| {
                let (item, cents) = MENU[self.rng.below(MENU.len() as u64) as usize];
                LineInput {
                    item: ItemCode::new(item),
                    quantity: 1 + self.rng.below(2) as u32,
                    unit_price: Decimal::new(cents, 2),
                }
            })
            .collect();
        let payment = match self.rng.below(100) {
            0..35 if self.config.employees > 0 => Payment::Credit {
                employee_id: employee_id(self.rng.below(u64::from(self.config.employees)) as u32),
            },
            0..70 => Payment::Cash,
            70..85 => Payment::Card,
            85..95 => Payment::MobileMoney,
            _ => Payment::Invoice {
                due_date: LocalDate::new(now.local_date(self.zone).as_naive() + Duration::days(7)),
            },
        };
        // A few sales were rung up offline and sync hours later.
        let occurred_at = self
            .rng
            .chance_percent(3)
            .then(|| now.plus_seconds(-3600 * (1 + self.rng.below(6) as i64)));
        let cashier = Actor {
            user_id: UserId::new(&format!("cashier-{vendor}")),
            role: Role::Cashier,
        };
        let mut c = RecordSale {
            order_id,
            vendor_id: vendor_id(vendor),
            lines,
            payment,
            occurred_at,
            now,
        };
        let mut recorded = self.exec(Command::Sale(SaleCommand::Record(c.clone())), cashier, now);
        if !recorded && matches!(payment, Payment::Credit { .. }) {
            // Out of credit: the employee pays the rest of the way in cash.
            c.payment = Payment::Cash;
            recorded = self.exec(Command::Sale(SaleCommand::Record(c)), cashier, now);
        }
        if recorded {
            self.orders.push(order_id);
            if matches!(payment, Payment::Invoice { .. }) {
                self.invoices.push(order_id);
            }
        }
    }

    fn refund(&mut self, now: Timestamp) {
        // Refunds concern recent orders.
        let recent = self.orders.len().min(200) as u64;
        if recent == 0 {
            return;
        }
        let order_id = self.orders[self.orders.len() - 1 - self.rng.below(recent) as usize];
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
        let amount = if self.rng.chance_percent(50) {
            remaining
        } else {
            (remaining / Decimal::from(2)).round_dp(2)
        };
        if amount.is_zero() {
            return;
        }
        self.next_refund += 1;
        let c = IssueRefund {
            order_id,
            refund_id: RefundId::new(&format!("R{:08}", self.next_refund)),
            amount,
            reason: Some(Reason::new("customer returned the item")),
            now,
        };
        let vendor = Actor {
            user_id: UserId::new(&format!("owner-{}", order.vendor_id)),
            role: Role::Vendor,
        };
        self.exec(Command::Sale(SaleCommand::Refund(c)), vendor, now);
    }

    fn pay_invoices(&mut self, date: LocalDate) {
        let now = self.at(date, 18 * 60);
        let due: Vec<OrderId> = std::mem::take(&mut self.invoices);
        for order_id in due {
            let Some(order) = self.ledger.order_state(order_id) else {
                continue;
            };
            // Each pending invoice has a 1-in-5 chance of being paid each day.
            if order.status == OrderStatus::Pending && self.rng.chance_percent(20) {
                let tender = if self.rng.chance_percent(50) {
                    Tender::Card
                } else {
                    Tender::MobileMoney
                };
                let c = ReceivePayment {
                    order_id,
                    amount: order.gross.amount(),
                    tender,
                    now,
                };
                self.exec(Command::Sale(SaleCommand::ReceivePayment(c)), admin(), now);
            } else if order.status == OrderStatus::Pending {
                self.invoices.push(order_id);
            }
        }
    }

    fn exec(&mut self, command: Command, actor: Actor, now: Timestamp) -> bool {
        self.stats.commands += 1;
        match self.ledger.execute(&command, actor, now) {
            Ok(_) => true,
            Err(rejection) => {
                self.stats.rejected += 1;
                *self
                    .stats
                    .rejected_by_code
                    .entry(rejection.code())
                    .or_default() += 1;
                false
            }
        }
    }

    fn at(&self, date: LocalDate, minute_of_day: u32) -> Timestamp {
        let start = self.zone.start_of(date).to_datetime();
        Timestamp::from_datetime(start + Duration::minutes(i64::from(minute_of_day)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::audit::audit;

    fn small() -> SimConfig {
        SimConfig {
            days: 3,
            employees: 10,
            sales_per_day: 30,
            ..SimConfig::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_log_byte_for_byte() {
        let (a, stats_a) = simulate(small());
        let (b, stats_b) = simulate(small());
        assert!(!a.records().is_empty());
        assert_eq!(a.records(), b.records());
        assert_eq!(stats_a.commands, stats_b.commands);
    }

    #[test]
    fn different_seeds_give_different_logs() {
        let (a, _) = simulate(small());
        let (c, _) = simulate(SimConfig { seed: 7, ..small() });
        assert_ne!(a.records(), c.records());
    }

    #[test]
    fn a_simulated_log_audits_clean() {
        let (ledger, stats) = simulate(SimConfig {
            days: 20,
            employees: 20,
            sales_per_day: 60,
            ..SimConfig::default()
        });
        let report = audit(ledger.records().iter().map(Vec::as_slice));
        assert!(report.is_clean(), "{:#?}", report.findings);
        assert!(report.events > 1000);
        // Credit runs out now and then, as in life: the rules were exercised.
        assert!(
            stats.rejected_by_code.contains_key("insufficient_credit"),
            "{stats:?}"
        );
    }
}
