//! Logs to project: simulated tenants' logs, with more refunds and invoice
//! payments than the simulator makes so that order streams are often longer
//! than one event (gaps and dashboard sums on one order need two). Two
//! tenants reuse the same order, vendor and employee ids, so a key that
//! forgot its tenant would mix them.

use ledger_core::envelope::Actor;
use ledger_core::event::Tender;
use ledger_core::memory::{Command, MemoryLedger};
use ledger_core::rng::SplitMix64;
use ledger_core::sale::{IssueRefund, OrderStatus, ReceivePayment, SaleCommand};
use ledger_core::{
    Envelope, LocalDate, OrderId, RefundId, Role, StreamKind, TenantId, Timestamp, UserId, codec,
};
use ledger_store::dynamodb::change::Change;
use projector::plan::pk_of;
use projector::record::ChangeRecord;
use rust_decimal::Decimal;
use tally_sim::{SimConfig, simulate};

/// What log to generate; small, so thousands of cases stay fast.
#[derive(Debug, Clone)]
pub struct LogShape {
    pub seed: u64,
    /// Tenants whose logs interleave, each simulated from its own seed.
    pub tenants: u32,
    /// Days after 2026-10-14: 16 is a replenishment day.
    pub first_day_offset: u32,
    pub days: u32,
    pub vendors: u32,
    pub employees: u32,
    pub sales_per_day: u32,
    /// Chance per order of one to three more refunds or a payment at the end.
    pub more_percent: u64,
}

impl Default for LogShape {
    fn default() -> Self {
        LogShape {
            seed: 1,
            tenants: 1,
            first_day_offset: 1,
            days: 2,
            vendors: 3,
            employees: 5,
            sales_per_day: 12,
            more_percent: 40,
        }
    }
}

/// One event of the log as the event table holds it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub envelope: Envelope,
    /// The codec's bytes (what a change record carries).
    pub bytes: Vec<u8>,
    /// The event item's partition key.
    pub pk: String,
    pub version: u64,
}

impl Logged {
    /// The change record that delivers this event under `id`.
    pub fn record(&self, id: String) -> ChangeRecord {
        ChangeRecord {
            id,
            written_at_ms: None,
            change: Change::Event {
                pk: self.pk.clone(),
                version: self.version,
                bytes: self.bytes.clone(),
            },
        }
    }
}

/// The log of one or more tenants in commit order.
#[derive(Debug, Clone)]
pub struct Log {
    pub events: Vec<Logged>,
}

impl Log {
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.events.iter().map(|e| e.envelope.clone()).collect()
    }

    /// The events of `pk`, in version order.
    pub fn stream(&self, pk: &str) -> Vec<&Logged> {
        self.events.iter().filter(|e| e.pk == pk).collect()
    }

    /// Partition keys of `kind` streams with at least `n` events, in the
    /// order of their `n`th event.
    pub fn streams_with_at_least(&self, kind: StreamKind, n: u64) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.envelope.stream().kind() == kind && e.version == n)
            .map(|e| e.pk.clone())
            .collect()
    }
}

pub fn generate(shape: &LogShape) -> Log {
    let mut logs: Vec<std::vec::IntoIter<Logged>> = (0..shape.tenants.max(1))
        .map(|t| tenant_log(shape, t).into_iter())
        .collect();
    // Tenants write independently: any interleaving keeps each one's order.
    let mut rng = SplitMix64::new(shape.seed ^ 0x7E4A_4175);
    let mut events = Vec::new();
    while !logs.is_empty() {
        let at = rng.below(logs.len() as u64) as usize;
        let run = 1 + rng.below(6);
        let before = events.len();
        events.extend(logs[at].by_ref().take(run as usize));
        if events.len() - before < run as usize {
            logs.remove(at);
        }
    }
    Log { events }
}

fn tenant_log(shape: &LogShape, t: u32) -> Vec<Logged> {
    let tenant_id = TenantId::new(&format!("t{}", t + 1));
    let seed = shape.seed.wrapping_add(u64::from(t));
    let (mut ledger, _) = simulate(SimConfig {
        seed,
        tenant_id,
        first_day: LocalDate::ymd(2026, 10, 14 + shape.first_day_offset),
        days: shape.days,
        vendors: shape.vendors,
        employees: shape.employees,
        sales_per_day: shape.sales_per_day,
    });
    more_history(&mut ledger, seed, shape.more_percent);
    ledger
        .records()
        .iter()
        .map(|bytes| {
            let envelope = codec::decode(bytes).expect("the simulator's records decode");
            Logged {
                pk: pk_of(envelope.tenant_id(), envelope.stream()),
                version: envelope.version().get(),
                bytes: bytes.clone(),
                envelope,
            }
        })
        .collect()
}

/// Refunds and invoice payments on the simulated orders, an hour after the
/// last record, through the same deciders (a rejection just adds nothing).
fn more_history(ledger: &mut MemoryLedger, seed: u64, more_percent: u64) {
    let mut orders: Vec<OrderId> = Vec::new();
    let mut now = Timestamp::from_micros(0);
    for bytes in ledger.records() {
        let envelope = codec::decode(bytes).expect("the simulator's records decode");
        now = now.max(envelope.header.recorded_at);
        if envelope.stream().kind() == StreamKind::Order && envelope.version().get() == 1 {
            orders.push(OrderId::from_text(envelope.stream().id()));
        }
    }
    now = now.plus_seconds(3600);
    let mut rng = SplitMix64::new(seed ^ 0x00A1_1CE5);
    let mut refunds = 0u64;
    for order_id in orders {
        if !rng.chance_percent(more_percent) {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let Some(order) = ledger.order_state(order_id) else {
                break;
            };
            let (command, actor) = match order.status {
                OrderStatus::Pending => (
                    SaleCommand::ReceivePayment(ReceivePayment {
                        order_id,
                        amount: order.gross.amount(),
                        tender: Tender::Card,
                        now,
                    }),
                    actor("admin", Role::Admin),
                ),
                OrderStatus::Paid | OrderStatus::PartiallyRefunded => {
                    let remaining = order.remaining().amount();
                    let amount = if rng.chance_percent(30) {
                        remaining
                    } else {
                        (remaining / Decimal::from(3)).round_dp(2)
                    };
                    if amount.is_zero() {
                        break;
                    }
                    refunds += 1;
                    (
                        SaleCommand::Refund(IssueRefund {
                            order_id,
                            refund_id: RefundId::new(&format!("X{refunds:06}")),
                            amount,
                            reason: None,
                            now,
                        }),
                        actor(&format!("owner-{}", order.vendor_id), Role::Vendor),
                    )
                }
                OrderStatus::Refunded => break,
            };
            let _ = ledger.execute(&Command::Sale(command), actor, now);
            now = now.plus_seconds(60);
        }
    }
}

fn actor(user: &str, role: Role) -> Actor {
    Actor {
        user_id: UserId::new(user),
        role,
    }
}
