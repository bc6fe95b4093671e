//! `order/{id}`: checkout, invoice payment and refunds. A checkout or refund
//! paid with credit decides two streams at once (`order/…` and `credit/…`);
//! the store appends both atomically or neither.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credit::{CreditAccount, CreditState, evolve_account};
use crate::decider::Decider;
use crate::event::{
    CreditRefunded, CreditSpent, Event, Line, Payment, PaymentReceived, RefundIssued, SaleRecorded,
    Tender,
};
use crate::id::{EmployeeId, ItemCode, OrderId, RefundId, VendorId};
use crate::limits::{
    CLOCK_SKEW_SECONDS_MAX, LINES_PER_SALE_MAX, OFFLINE_AGE_DAYS_MAX, QUANTITY_MAX,
    REFUNDS_PER_ORDER_MAX,
};
use crate::money::{Currency, Money};
use crate::rejection::Rejection;
use crate::tenant::{TenantSettings, TenantState, evolve_settings};
use crate::text::Reason;
use crate::time::Timestamp;
use crate::vendor::{Vendor, VendorState};

/// A sale line as the POS sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub item: ItemCode,
    pub quantity: u32,
    #[schemars(with = "crate::money::amount_text::Unsigned")]
    #[serde(with = "crate::money::amount_text::unsigned")]
    pub unit_price: Decimal,
}

/// Checkout: records a sale, paid at once or by invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSale {
    pub order_id: OrderId,
    pub vendor_id: VendorId,
    pub lines: Vec<LineInput>,
    pub payment: Payment,
    /// When the sale happened, for sales recorded offline; `now` otherwise.
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
    /// The server's clock when the command arrived.
    pub now: Timestamp,
}

impl RecordSale {
    /// The business time of the sale.
    pub fn occurred_at(&self) -> Timestamp {
        self.occurred_at.unwrap_or(self.now)
    }
}

/// Settles an invoice in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivePayment {
    pub order_id: OrderId,
    #[schemars(with = "crate::money::amount_text::Unsigned")]
    #[serde(with = "crate::money::amount_text::unsigned")]
    pub amount: Decimal,
    pub tender: Tender,
    pub now: Timestamp,
}

/// Refunds part or all of a paid order. `refund_id` makes it idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRefund {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    #[schemars(with = "crate::money::amount_text::Unsigned")]
    #[serde(with = "crate::money::amount_text::unsigned")]
    pub amount: Decimal,
    #[serde(default)]
    pub reason: Option<Reason>,
    pub now: Timestamp,
}

/// Every command on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleCommand {
    Record(RecordSale),
    ReceivePayment(ReceivePayment),
    Refund(IssueRefund),
}

impl SaleCommand {
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Record(c) => c.order_id,
            Self::ReceivePayment(c) => c.order_id,
            Self::Refund(c) => c.order_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    PartiallyRefunded,
    Refunded,
}

/// An order as its stream decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub vendor_id: VendorId,
    pub payment: Payment,
    pub gross: Money,
    pub commission: Money,
    pub status: OrderStatus,
    /// How it was settled, once it was.
    pub settled_by: Option<Tender>,
    pub refunded: Money,
    pub commission_reversed: Money,
    pub refunds: Vec<(RefundId, Money)>,
}

impl Order {
    pub fn remaining(&self) -> Money {
        self.gross
            .checked_sub(self.refunded)
            .expect("refunds never exceed gross")
    }

    /// The employee whose credit paid for the order, if credit did.
    pub fn credit_employee(&self) -> Option<EmployeeId> {
        match self.payment {
            Payment::Credit { employee_id } => Some(employee_id),
            _ => None,
        }
    }
}

/// `None` until the sale is recorded.
pub type OrderState = Option<Order>;

/// Folds one order stream.
pub fn evolve_order(s: OrderState, e: &Event) -> OrderState {
    match (s, e) {
        (None, Event::SaleRecorded(e)) => {
            let zero = Money::zero(e.gross.currency());
            Some(Order {
                vendor_id: e.vendor_id,
                payment: e.payment,
                gross: e.gross,
                commission: e.commission,
                status: if e.payment.tender().is_some() {
                    OrderStatus::Paid
                } else {
                    OrderStatus::Pending
                },
                settled_by: e.payment.tender(),
                refunded: zero,
                commission_reversed: zero,
                refunds: Vec::new(),
            })
        }
        (Some(mut o), Event::PaymentReceived(e)) => {
            o.status = OrderStatus::Paid;
            o.settled_by = Some(e.tender);
            Some(o)
        }
        (Some(mut o), Event::RefundIssued(e)) => {
            o.refunded = o
                .refunded
                .checked_add(e.amount)
                .expect("decided refunds stay in range");
            o.commission_reversed = o
                .commission_reversed
                .checked_add(e.commission_reversed)
                .expect("decided reversals stay in range");
            o.refunds.push((e.refund_id, e.amount));
            o.status = if e.completes_refund {
                OrderStatus::Refunded
            } else {
                OrderStatus::PartiallyRefunded
            };
            Some(o)
        }
        (s, _) => s,
    }
}

/// What order commands decide on: the tenant's settings, the vendor, the
/// order, and the credit account of the employee who pays (or paid) with
/// credit, when there is one. The command handler loads these streams; each
/// event updates the part of its own kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaleContext {
    pub tenant: TenantState,
    pub vendor: VendorState,
    pub order: OrderState,
    pub credit: CreditState,
}

pub struct Sale;

impl Decider for Sale {
    type Command = SaleCommand;
    type State = SaleContext;

    fn initial_state() -> SaleContext {
        SaleContext::default()
    }

    fn decide(c: &SaleCommand, s: &SaleContext) -> Result<Vec<Event>, Rejection> {
        let tenant = s.tenant.ok_or(Rejection::TenantNotConfigured)?;
        match c {
            SaleCommand::Record(c) => record(c, s, tenant),
            SaleCommand::ReceivePayment(c) => receive_payment(c, s, tenant),
            SaleCommand::Refund(c) => refund(c, s, tenant),
        }
    }

    fn evolve(s: SaleContext, e: &Event) -> SaleContext {
        SaleContext {
            tenant: evolve_settings(s.tenant, e),
            vendor: Vendor::evolve(s.vendor, e),
            order: evolve_order(s.order, e),
            credit: evolve_account(s.credit, e),
        }
    }
}

fn record(
    c: &RecordSale,
    s: &SaleContext,
    tenant: TenantSettings,
) -> Result<Vec<Event>, Rejection> {
    let vendor = s.vendor.as_ref().ok_or(Rejection::VendorNotFound)?;
    if vendor.suspended {
        return Err(Rejection::VendorSuspended);
    }
    if s.order.is_some() {
        return Err(Rejection::OrderExists);
    }
    let occurred_at = c.occurred_at();
    if occurred_at > c.now.plus_seconds(CLOCK_SKEW_SECONDS_MAX) {
        return Err(Rejection::InvalidField {
            field: "occurred_at",
            problem: "is in the future",
        });
    }
    if occurred_at < c.now.plus_seconds(-OFFLINE_AGE_DAYS_MAX * 86_400) {
        return Err(Rejection::InvalidField {
            field: "occurred_at",
            problem: "is older than offline sales may be",
        });
    }
    let (lines, gross) = price(&c.lines, tenant.currency)?;
    let commission = gross.commission(vendor.commission_rate);
    let business_date = occurred_at.local_date(tenant.time_zone);
    if let Payment::Invoice { due_date } = c.payment
        && due_date < business_date
    {
        return Err(Rejection::InvalidField {
            field: "payment.due_date",
            problem: "is before the sale",
        });
    }
    let credit = match c.payment {
        Payment::Credit { .. } => Some(spend(c.order_id, gross, s.credit.as_ref())?),
        _ => None,
    };
    let sale = SaleRecorded {
        vendor_id: c.vendor_id,
        lines,
        gross,
        commission_rate: vendor.commission_rate,
        commission,
        payment: c.payment,
        business_date,
    };
    Ok(std::iter::once(Event::SaleRecorded(sale))
        .chain(credit)
        .collect())
}

/// Validates lines and prices them; returns the lines and the gross.
fn price(input: &[LineInput], currency: Currency) -> Result<(Vec<Line>, Money), Rejection> {
    if input.is_empty() {
        return Err(Rejection::InvalidField {
            field: "lines",
            problem: "a sale needs at least one line",
        });
    }
    if input.len() > LINES_PER_SALE_MAX {
        return Err(Rejection::LimitExceeded {
            field: "lines",
            what: "line count",
            max: LINES_PER_SALE_MAX as i64,
        });
    }
    let mut gross = Money::zero(currency);
    let mut lines = Vec::with_capacity(input.len());
    for line in input {
        if line.quantity == 0 {
            return Err(Rejection::InvalidField {
                field: "lines.quantity",
                problem: "must be at least 1",
            });
        }
        if line.quantity > QUANTITY_MAX {
            return Err(Rejection::LimitExceeded {
                field: "lines.quantity",
                what: "quantity",
                max: i64::from(QUANTITY_MAX),
            });
        }
        let unit_price = Money::parse(line.unit_price, currency)
            .map_err(|e| Rejection::money("lines.unit_price", e))?;
        if !unit_price.is_positive() {
            return Err(Rejection::InvalidField {
                field: "lines.unit_price",
                problem: "must be positive",
            });
        }
        let total = unit_price
            .times(line.quantity)
            .map_err(|e| Rejection::money("lines", e))?;
        gross = gross
            .checked_add(total)
            .map_err(|e| Rejection::money("gross", e))?;
        lines.push(Line {
            item: line.item,
            quantity: line.quantity,
            unit_price,
        });
    }
    Ok((lines, gross))
}

fn spend(
    order_id: OrderId,
    amount: Money,
    account: Option<&CreditAccount>,
) -> Result<Event, Rejection> {
    let account = account.ok_or(Rejection::EmployeeNotFound)?;
    if account.suspended {
        return Err(Rejection::CreditAccountSuspended);
    }
    let balance_after = account
        .balance
        .checked_sub(amount)
        .map_err(|e| Rejection::money("gross", e))?;
    if balance_after.is_negative() {
        return Err(Rejection::InsufficientCredit {
            balance: account.balance,
            needed: amount,
        });
    }
    Ok(Event::CreditSpent(CreditSpent {
        order_id,
        amount,
        balance_after,
    }))
}

fn receive_payment(
    c: &ReceivePayment,
    s: &SaleContext,
    tenant: TenantSettings,
) -> Result<Vec<Event>, Rejection> {
    let order = s.order.as_ref().ok_or(Rejection::OrderNotFound)?;
    let Payment::Invoice { due_date } = order.payment else {
        return Err(Rejection::OrderNotPending);
    };
    if order.status != OrderStatus::Pending {
        return Err(Rejection::OrderNotPending);
    }
    if matches!(c.tender, Tender::Credit { .. }) {
        return Err(Rejection::InvalidField {
            field: "tender",
            problem: "an invoice is paid by cash, card or mobile money",
        });
    }
    let amount =
        Money::parse(c.amount, tenant.currency).map_err(|e| Rejection::money("amount", e))?;
    if amount != order.gross {
        return Err(Rejection::PaymentAmountMismatch {
            expected: order.gross,
        });
    }
    Ok(vec![Event::PaymentReceived(PaymentReceived {
        vendor_id: order.vendor_id,
        amount,
        tender: c.tender,
        business_date: c.now.local_date(tenant.time_zone),
        due_date,
    })])
}

fn refund(
    c: &IssueRefund,
    s: &SaleContext,
    tenant: TenantSettings,
) -> Result<Vec<Event>, Rejection> {
    let order = s.order.as_ref().ok_or(Rejection::OrderNotFound)?;
    let amount =
        Money::parse(c.amount, tenant.currency).map_err(|e| Rejection::money("amount", e))?;
    if let Some((_, earlier)) = order.refunds.iter().find(|(id, _)| *id == c.refund_id) {
        return if *earlier == amount {
            Ok(vec![])
        } else {
            Err(Rejection::RefundIdReused)
        };
    }
    if !amount.is_positive() {
        return Err(Rejection::InvalidField {
            field: "amount",
            problem: "must be positive",
        });
    }
    let tender = match (order.status, order.settled_by) {
        (OrderStatus::Pending, _) | (_, None) => return Err(Rejection::OrderNotRefundable),
        (_, Some(tender)) => tender,
    };
    let remaining = order.remaining();
    if amount.amount() > remaining.amount() {
        return Err(Rejection::RefundExceedsRemaining { remaining });
    }
    if order.refunds.len() >= REFUNDS_PER_ORDER_MAX {
        return Err(Rejection::LimitExceeded {
            field: "refunds",
            what: "refunds per order",
            max: REFUNDS_PER_ORDER_MAX as i64,
        });
    }
    let completes_refund = amount == remaining;
    let commission_reversed = reversal(order, amount, completes_refund);
    let mut events = vec![Event::RefundIssued(RefundIssued {
        vendor_id: order.vendor_id,
        refund_id: c.refund_id,
        amount,
        commission_reversed,
        tender,
        business_date: c.now.local_date(tenant.time_zone),
        completes_refund,
        reason: c.reason.clone(),
    })];
    if let Tender::Credit { .. } = tender {
        let account = s.credit.as_ref().ok_or(Rejection::EmployeeNotFound)?;
        let balance_after = account
            .balance
            .checked_add(amount)
            .map_err(|e| Rejection::money("amount", e))?;
        events.push(Event::CreditRefunded(CreditRefunded {
            order_id: c.order_id,
            refund_id: c.refund_id,
            amount,
            balance_after,
        }));
    }
    Ok(events)
}

/// The commission a refund of `amount` gives back: in proportion to the gross,
/// except that the refund completing the order takes the exact remainder, so
/// refunded gross, commission and net reconcile to the cent with the sale.
/// A proportional share is also capped by what is left to reverse, so that
/// rounding many small refunds up can never reverse more than was charged.
fn reversal(order: &Order, amount: Money, completes_refund: bool) -> Money {
    let left = order
        .commission
        .checked_sub(order.commission_reversed)
        .expect("reversals never exceed commission");
    if completes_refund {
        left
    } else {
        order.commission.pro_rata(amount, order.gross).min(left)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;
    use crate::event::{
        CreditAccountOpened, CreditAccountSuspended, CreditReplenished, TenantConfigured,
        VendorRegistered, VendorSuspended,
    };
    use crate::limits::AMOUNT_MAJOR_MAX;
    use crate::money::CommissionRate;
    use crate::policy::{CreditPolicy, ReplenishMode};
    use crate::testing::given;
    use crate::text::Name;
    use crate::time::{Cadence, LocalDate, Period, TimeZone};

    const NOW: &str = "2026-11-20T04:00:00Z"; // 12:00 in Manila

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }
    fn php(amount: Decimal) -> Money {
        Money::parse(amount, Currency::new("PHP")).unwrap()
    }
    fn o1() -> OrderId {
        OrderId::new("o1")
    }
    fn v1() -> VendorId {
        VendorId::new("v1")
    }
    fn e1() -> EmployeeId {
        EmployeeId::new("E1")
    }
    fn rate() -> CommissionRate {
        CommissionRate::from_basis_points(1250).unwrap() // 12.5 %
    }
    fn tenant() -> Event {
        Event::TenantConfigured(TenantConfigured {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        })
    }
    fn vendor() -> Event {
        Event::VendorRegistered(VendorRegistered {
            name: Name::new("Tita's Kitchen"),
            commission_rate: rate(),
        })
    }
    fn account(balance: Decimal) -> Vec<Event> {
        let policy = CreditPolicy {
            allowance: php(dec!(500)),
            cadence: Cadence::SemiMonthly,
            mode: ReplenishMode::TopUp,
            cap: None,
        };
        vec![
            Event::CreditAccountOpened(CreditAccountOpened {
                name: Name::new("Ana"),
                policy,
            }),
            Event::CreditReplenished(CreditReplenished {
                period: Period::parse("2026-11-H2").unwrap(),
                amount: php(balance),
                balance_after: php(balance),
            }),
        ]
    }
    fn world(balance: Decimal) -> Vec<Event> {
        [vec![tenant(), vendor()], account(balance)].concat()
    }
    fn line(item: &str, quantity: u32, unit_price: Decimal) -> LineInput {
        LineInput {
            item: ItemCode::new(item),
            quantity,
            unit_price,
        }
    }
    fn sale_with(lines: Vec<LineInput>, payment: Payment) -> SaleCommand {
        SaleCommand::Record(RecordSale {
            order_id: o1(),
            vendor_id: v1(),
            lines,
            payment,
            occurred_at: None,
            now: now(),
        })
    }
    fn sale(payment: Payment) -> SaleCommand {
        sale_with(
            vec![line("ADOBO", 2, dec!(85.00)), line("RICE", 1, dec!(20.50))],
            payment,
        )
    }
    fn credit() -> Payment {
        Payment::Credit { employee_id: e1() }
    }
    fn invoice() -> Payment {
        Payment::Invoice {
            due_date: LocalDate::ymd(2026, 12, 5),
        }
    }
    /// The sale `sale(payment)` records: gross 190.50, commission 23.81 (23.8125 rounded).
    fn recorded(payment: Payment) -> Event {
        Event::SaleRecorded(SaleRecorded {
            vendor_id: v1(),
            lines: vec![
                Line {
                    item: ItemCode::new("ADOBO"),
                    quantity: 2,
                    unit_price: php(dec!(85)),
                },
                Line {
                    item: ItemCode::new("RICE"),
                    quantity: 1,
                    unit_price: php(dec!(20.5)),
                },
            ],
            gross: php(dec!(190.50)),
            commission_rate: rate(),
            commission: php(dec!(23.81)),
            payment,
            business_date: LocalDate::ymd(2026, 11, 20),
        })
    }
    fn spent(balance_after: Decimal) -> Event {
        Event::CreditSpent(CreditSpent {
            order_id: o1(),
            amount: php(dec!(190.50)),
            balance_after: php(balance_after),
        })
    }
    fn refund(id: &str, amount: Decimal) -> SaleCommand {
        SaleCommand::Refund(IssueRefund {
            order_id: o1(),
            refund_id: RefundId::new(id),
            amount,
            reason: None,
            now: now(),
        })
    }
    fn refunded(
        id: &str,
        amount: Decimal,
        reversed: Decimal,
        tender: Tender,
        completes: bool,
    ) -> Event {
        Event::RefundIssued(RefundIssued {
            vendor_id: v1(),
            refund_id: RefundId::new(id),
            amount: php(amount),
            commission_reversed: php(reversed),
            tender,
            business_date: LocalDate::ymd(2026, 11, 20),
            completes_refund: completes,
            reason: None,
        })
    }
    fn pay(amount: Decimal, tender: Tender) -> SaleCommand {
        SaleCommand::ReceivePayment(ReceivePayment {
            order_id: o1(),
            amount,
            tender,
            now: now(),
        })
    }
    fn paid() -> Event {
        Event::PaymentReceived(PaymentReceived {
            vendor_id: v1(),
            amount: php(dec!(190.50)),
            tender: Tender::Cash,
            business_date: LocalDate::ymd(2026, 11, 20),
            due_date: LocalDate::ymd(2026, 12, 5),
        })
    }
    fn with(mut events: Vec<Event>, more: &[Event]) -> Vec<Event> {
        events.extend_from_slice(more);
        events
    }

    #[test]
    fn a_cash_sale_captures_amounts_rate_and_local_date() {
        given::<Sale>(&world(dec!(0)))
            .when(&sale(Payment::Cash))
            .then(&[recorded(Payment::Cash)]);
    }

    #[test]
    fn a_credit_sale_spends_credit_on_the_second_stream() {
        given::<Sale>(&world(dec!(500)))
            .when(&sale(credit()))
            .then(&[recorded(credit()), spent(dec!(309.50))]);
    }

    #[test]
    fn a_credit_sale_may_spend_the_exact_balance() {
        given::<Sale>(&world(dec!(190.50)))
            .when(&sale(credit()))
            .then(&[recorded(credit()), spent(dec!(0))]);
    }

    #[test]
    fn a_credit_sale_beyond_the_balance_is_rejected() {
        given::<Sale>(&world(dec!(190.49)))
            .when(&sale(credit()))
            .rejects(Rejection::InsufficientCredit {
                balance: php(dec!(190.49)),
                needed: php(dec!(190.50)),
            });
    }

    #[test]
    fn a_credit_sale_needs_an_open_active_account() {
        given::<Sale>(&[tenant(), vendor()])
            .when(&sale(credit()))
            .rejects(Rejection::EmployeeNotFound);
        let suspended = Event::CreditAccountSuspended(CreditAccountSuspended {
            reason: crate::text::Reason::new("left"),
        });
        given::<Sale>(&with(world(dec!(500)), &[suspended]))
            .when(&sale(credit()))
            .rejects(Rejection::CreditAccountSuspended);
    }

    #[test]
    fn a_sale_needs_a_configured_tenant_and_an_active_vendor() {
        given::<Sale>(&[vendor()])
            .when(&sale(Payment::Cash))
            .rejects(Rejection::TenantNotConfigured);
        given::<Sale>(&[tenant()])
            .when(&sale(Payment::Cash))
            .rejects(Rejection::VendorNotFound);
        let suspended = Event::VendorSuspended(VendorSuspended {
            reason: crate::text::Reason::new("inspection"),
        });
        given::<Sale>(&[tenant(), vendor(), suspended])
            .when(&sale(Payment::Cash))
            .rejects(Rejection::VendorSuspended);
    }

    #[test]
    fn an_order_id_is_used_once() {
        given::<Sale>(&with(world(dec!(0)), &[recorded(Payment::Cash)]))
            .when(&sale(Payment::Cash))
            .rejects(Rejection::OrderExists);
    }

    #[test]
    fn line_rules() {
        let w = world(dec!(0));
        given::<Sale>(&w)
            .when(&sale_with(vec![], Payment::Cash))
            .rejects_code("validation_failed");
        let many = vec![line("X", 1, dec!(1)); LINES_PER_SALE_MAX + 1];
        given::<Sale>(&w)
            .when(&sale_with(many, Payment::Cash))
            .rejects_code("limit_exceeded");
        let most = vec![line("X", 1, dec!(1)); LINES_PER_SALE_MAX];
        assert!(Sale::decide(&sale_with(most, Payment::Cash), &Sale::fold(&w)).is_ok());
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 0, dec!(1))], Payment::Cash))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&sale_with(
                vec![line("X", QUANTITY_MAX + 1, dec!(1))],
                Payment::Cash,
            ))
            .rejects_code("limit_exceeded");
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 1, dec!(0))], Payment::Cash))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 1, dec!(-1))], Payment::Cash))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 1, dec!(1.005))], Payment::Cash))
            .rejects_code("validation_failed");
        let huge = Decimal::from(AMOUNT_MAJOR_MAX) + dec!(1);
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 1, huge)], Payment::Cash))
            .rejects_code("limit_exceeded");
        // Each line within range, the gross beyond it.
        let big = Decimal::from(AMOUNT_MAJOR_MAX);
        given::<Sale>(&w)
            .when(&sale_with(vec![line("X", 2, big)], Payment::Cash))
            .rejects_code("limit_exceeded");
    }

    #[test]
    fn offline_sales_keep_their_time_within_bounds() {
        let w = world(dec!(0));
        let at = |offset_seconds: i64| {
            SaleCommand::Record(RecordSale {
                order_id: o1(),
                vendor_id: v1(),
                lines: vec![line("X", 1, dec!(10))],
                payment: Payment::Cash,
                occurred_at: Some(now().plus_seconds(offset_seconds)),
                now: now(),
            })
        };
        // Synced three days late: the sale keeps its own business date.
        let events = Sale::decide(&at(-3 * 86_400), &Sale::fold(&w)).unwrap();
        let Event::SaleRecorded(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.business_date, LocalDate::ymd(2026, 11, 17));
        given::<Sale>(&w)
            .when(&at(-(OFFLINE_AGE_DAYS_MAX * 86_400) - 1))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&at(CLOCK_SKEW_SECONDS_MAX + 1))
            .rejects_code("validation_failed");
        assert!(Sale::decide(&at(CLOCK_SKEW_SECONDS_MAX), &Sale::fold(&w)).is_ok());
    }

    #[test]
    fn an_invoice_may_not_be_due_before_the_sale() {
        let early = Payment::Invoice {
            due_date: LocalDate::ymd(2026, 11, 19),
        };
        given::<Sale>(&world(dec!(0)))
            .when(&sale(early))
            .rejects_code("validation_failed");
        given::<Sale>(&world(dec!(0)))
            .when(&sale(invoice()))
            .then(&[recorded(invoice())]);
    }

    #[test]
    fn an_invoice_is_paid_in_full_once() {
        let w = with(world(dec!(0)), &[recorded(invoice())]);
        given::<Sale>(&w)
            .when(&pay(dec!(190.50), Tender::Cash))
            .then(&[paid()]);
        given::<Sale>(&w)
            .when(&pay(dec!(190.00), Tender::Cash))
            .rejects(Rejection::PaymentAmountMismatch {
                expected: php(dec!(190.50)),
            });
        given::<Sale>(&w)
            .when(&pay(dec!(190.50), Tender::Credit { employee_id: e1() }))
            .rejects_code("validation_failed");
        given::<Sale>(&with(w, &[paid()]))
            .when(&pay(dec!(190.50), Tender::Cash))
            .rejects(Rejection::OrderNotPending);
    }

    #[test]
    fn payment_needs_a_pending_order() {
        given::<Sale>(&world(dec!(0)))
            .when(&pay(dec!(1), Tender::Cash))
            .rejects(Rejection::OrderNotFound);
        given::<Sale>(&with(world(dec!(0)), &[recorded(Payment::Card)]))
            .when(&pay(dec!(190.50), Tender::Cash))
            .rejects(Rejection::OrderNotPending);
    }

    #[test]
    fn a_partial_refund_reverses_commission_in_proportion() {
        // 23.81 × 100 / 190.50 = 12.4986… -> 12.50
        given::<Sale>(&with(world(dec!(0)), &[recorded(Payment::Cash)]))
            .when(&refund("r1", dec!(100)))
            .then(&[refunded("r1", dec!(100), dec!(12.50), Tender::Cash, false)]);
    }

    #[test]
    fn the_completing_refund_takes_the_exact_remainder() {
        let w = with(
            world(dec!(0)),
            &[
                recorded(Payment::Cash),
                refunded("r1", dec!(100), dec!(12.50), Tender::Cash, false),
            ],
        );
        given::<Sale>(&w)
            .when(&refund("r2", dec!(90.50)))
            .then(&[refunded("r2", dec!(90.50), dec!(11.31), Tender::Cash, true)]);
    }

    #[test]
    fn a_refund_of_a_credit_sale_gives_the_credit_back() {
        let w = with(world(dec!(500)), &[recorded(credit()), spent(dec!(309.50))]);
        given::<Sale>(&w).when(&refund("r1", dec!(190.50))).then(&[
            refunded(
                "r1",
                dec!(190.50),
                dec!(23.81),
                credit().tender().unwrap(),
                true,
            ),
            Event::CreditRefunded(CreditRefunded {
                order_id: o1(),
                refund_id: RefundId::new("r1"),
                amount: php(dec!(190.50)),
                balance_after: php(dec!(500)),
            }),
        ]);
    }

    #[test]
    fn a_refund_may_not_exceed_what_remains() {
        let w = with(
            world(dec!(0)),
            &[
                recorded(Payment::Cash),
                refunded("r1", dec!(100), dec!(12.50), Tender::Cash, false),
            ],
        );
        given::<Sale>(&w).when(&refund("r2", dec!(90.51))).rejects(
            Rejection::RefundExceedsRemaining {
                remaining: php(dec!(90.50)),
            },
        );
        let done = with(
            w,
            &[refunded("r2", dec!(90.50), dec!(11.31), Tender::Cash, true)],
        );
        given::<Sale>(&done)
            .when(&refund("r3", dec!(0.01)))
            .rejects(Rejection::RefundExceedsRemaining {
                remaining: php(dec!(0)),
            });
    }

    #[test]
    fn a_refund_id_makes_a_refund_idempotent() {
        let w = with(
            world(dec!(0)),
            &[
                recorded(Payment::Cash),
                refunded("r1", dec!(100), dec!(12.50), Tender::Cash, false),
            ],
        );
        given::<Sale>(&w).when(&refund("r1", dec!(100))).then(&[]);
        given::<Sale>(&w)
            .when(&refund("r1", dec!(50)))
            .rejects(Rejection::RefundIdReused);
    }

    #[test]
    fn refund_amount_rules() {
        let w = with(world(dec!(0)), &[recorded(Payment::Cash)]);
        given::<Sale>(&w)
            .when(&refund("r1", dec!(0)))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&refund("r1", dec!(-5)))
            .rejects_code("validation_failed");
        given::<Sale>(&w)
            .when(&refund("r1", dec!(1.001)))
            .rejects_code("validation_failed");
    }

    #[test]
    fn only_a_paid_order_can_be_refunded() {
        given::<Sale>(&world(dec!(0)))
            .when(&refund("r1", dec!(1)))
            .rejects(Rejection::OrderNotFound);
        given::<Sale>(&with(world(dec!(0)), &[recorded(invoice())]))
            .when(&refund("r1", dec!(1)))
            .rejects(Rejection::OrderNotRefundable);
        // Once the invoice is paid, the refund goes back by the payment's tender.
        given::<Sale>(&with(world(dec!(0)), &[recorded(invoice()), paid()]))
            .when(&refund("r1", dec!(190.50)))
            .then(&[refunded(
                "r1",
                dec!(190.50),
                dec!(23.81),
                Tender::Cash,
                true,
            )]);
    }

    #[test]
    fn refunds_per_order_are_limited() {
        let mut w = with(world(dec!(0)), &[recorded(Payment::Cash)]);
        for i in 0..REFUNDS_PER_ORDER_MAX {
            w.push(refunded(
                &format!("r{i}"),
                dec!(0.01),
                dec!(0),
                Tender::Cash,
                false,
            ));
        }
        given::<Sale>(&w)
            .when(&refund("one-more", dec!(0.01)))
            .rejects_code("limit_exceeded");
    }

    #[test]
    fn rounding_up_many_small_refunds_never_reverses_more_than_was_charged() {
        // Rate 75 %: each 0.01 refund's exact share is 0.0075, rounded to 0.01.
        let rate = CommissionRate::from_basis_points(7500).unwrap();
        let sale = Event::SaleRecorded(SaleRecorded {
            vendor_id: v1(),
            lines: vec![Line {
                item: ItemCode::new("X"),
                quantity: 1,
                unit_price: php(dec!(0.20)),
            }],
            gross: php(dec!(0.20)),
            commission_rate: rate,
            commission: php(dec!(0.15)),
            payment: Payment::Cash,
            business_date: LocalDate::ymd(2026, 11, 20),
        });
        let mut state = Sale::fold(&with(world(dec!(0)), &[sale]));
        for i in 0..20 {
            for e in Sale::decide(&refund(&format!("r{i}"), dec!(0.01)), &state).unwrap() {
                state = Sale::evolve(state, &e);
            }
        }
        let order = state.order.unwrap();
        assert_eq!(order.status, OrderStatus::Refunded);
        assert_eq!(order.refunded, php(dec!(0.20)));
        assert_eq!(order.commission_reversed, php(dec!(0.15)));
    }
}
