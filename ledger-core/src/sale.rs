//! `order/{id}`: checkout, invoice payment and refunds. A checkout or refund
//! paid with credit decides two streams at once (`order/…` and `credit/…`);
//! the store appends both atomically or neither.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credit::{CreditAccount, CreditState, evolve_account};
use crate::decider::Decider;
use crate::event::{
    CreditRefunded, CreditSpent, Event, Line, Payment, PaymentReceived, RefundIssued, SaleRecorded, Tender,
};
use crate::id::{EmployeeId, ItemCode, OrderId, RefundId, VendorId};
use crate::limits::{
    CLOCK_SKEW_SECONDS_MAX, LINES_PER_SALE_MAX, OFFLINE_AGE_DAYS_MAX, QUANTITY_MAX, REFUNDS_PER_ORDER_MAX,
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
    #[schemars(with = "String")]
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
    #[schemars(with = "String")]
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
    #[schemars(with = "String")]
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
        self.gross.checked_sub(self.refunded).expect("refunds never exceed gross")
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
                status: if e.payment.tender().is_some() { OrderStatus::Paid } else { OrderStatus::Pending },
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
            o.refunded = o.refunded.checked_add(e.amount).expect("decided refunds stay in range");
            o.commission_reversed =
                o.commission_reversed.checked_add(e.commission_reversed).expect("decided reversals stay in range");
            o.refunds.push((e.refund_id, e.amount));
            o.status = if e.completes_refund { OrderStatus::Refunded } else { OrderStatus::PartiallyRefunded };
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

fn record(c: &RecordSale, s: &SaleContext, tenant: TenantSettings) -> Result<Vec<Event>, Rejection> {
    let vendor = s.vendor.as_ref().ok_or(Rejection::VendorNotFound)?;
    if vendor.suspended {
        return Err(Rejection::VendorSuspended);
    }
    if s.order.is_some() {
        return Err(Rejection::OrderExists);
    }
    let occurred_at = c.occurred_at();
    if occurred_at > c.now.plus_seconds(CLOCK_SKEW_SECONDS_MAX) {
        return Err(Rejection::InvalidField { field: "occurred_at", problem: "is in the future" });
    }
    if occurred_at < c.now.plus_seconds(-OFFLINE_AGE_DAYS_MAX * 86_400) {
        return Err(Rejection::InvalidField { field: "occurred_at", problem: "is older than offline sales may be" });
    }
    let (lines, gross) = price(&c.lines, tenant.currency)?;
    let commission = gross.commission(vendor.commission_rate);
    let business_date = occurred_at.local_date(tenant.time_zone);
    if let Payment::Invoice { due_date } = c.payment
        && due_date < business_date
    {
        return Err(Rejection::InvalidField { field: "payment.due_date", problem: "is before the sale" });
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
    Ok(std::iter::once(Event::SaleRecorded(sale)).chain(credit).collect())
}

/// Validates lines and prices them; returns the lines and the gross.
fn price(input: &[LineInput], currency: Currency) -> Result<(Vec<Line>, Money), Rejection> {
    if input.is_empty() {
        return Err(Rejection::InvalidField { field: "lines", problem: "a sale needs at least one line" });
    }
    if input.len() > LINES_PER_SALE_MAX {
        return Err(Rejection::LimitExceeded { field: "lines", what: "line count", max: LINES_PER_SALE_MAX as i64 });
    }
    let mut gross = Money::zero(currency);
    let mut lines = Vec::with_capacity(input.len());
    for line in input {
        if line.quantity == 0 {
            return Err(Rejection::InvalidField { field: "lines.quantity", problem: "must be at least 1" });
        }
        if line.quantity > QUANTITY_MAX {
            return Err(Rejection::LimitExceeded {
                field: "lines.quantity",
                what: "quantity",
                max: i64::from(QUANTITY_MAX),
            });
        }
        let unit_price = Money::parse(line.unit_price, currency).map_err(|e| Rejection::money("lines.unit_price", e))?;
        if !unit_price.is_positive() {
            return Err(Rejection::InvalidField { field: "lines.unit_price", problem: "must be positive" });
        }
        let total = unit_price.times(line.quantity).map_err(|e| Rejection::money("lines", e))?;
        gross = gross.checked_add(total).map_err(|e| Rejection::money("gross", e))?;
        lines.push(Line { item: line.item, quantity: line.quantity, unit_price });
    }
    Ok((lines, gross))
}

fn spend(order_id: OrderId, amount: Money, account: Option<&CreditAccount>) -> Result<Event, Rejection> {
    let account = account.ok_or(Rejection::EmployeeNotFound)?;
    if account.suspended {
        return Err(Rejection::CreditAccountSuspended);
    }
    let balance_after = account.balance.checked_sub(amount).map_err(|e| Rejection::money("gross", e))?;
    if balance_after.is_negative() {
        return Err(Rejection::InsufficientCredit { balance: account.balance, needed: amount });
    }
    Ok(Event::CreditSpent(CreditSpent { order_id, amount, balance_after }))
}

fn receive_payment(c: &ReceivePayment, s: &SaleContext, tenant: TenantSettings) -> Result<Vec<Event>, Rejection> {
    let order = s.order.as_ref().ok_or(Rejection::OrderNotFound)?;
    let Payment::Invoice { due_date } = order.payment else {
        return Err(Rejection::OrderNotPending);
    };
    if order.status != OrderStatus::Pending {
        return Err(Rejection::OrderNotPending);
    }
    if matches!(c.tender, Tender::Credit { .. }) {
        return Err(Rejection::InvalidField { field: "tender", problem: "an invoice is paid by cash, card or mobile money" });
    }
    let amount = Money::parse(c.amount, tenant.currency).map_err(|e| Rejection::money("amount", e))?;
    if amount != order.gross {
        return Err(Rejection::PaymentAmountMismatch { expected: order.gross });
    }
    Ok(vec![Event::PaymentReceived(PaymentReceived {
        vendor_id: order.vendor_id,
        amount,
        tender: c.tender,
        business_date: c.now.local_date(tenant.time_zone),
        due_date,
    })])
}

fn refund(c: &IssueRefund, s: &SaleContext, tenant: TenantSettings) -> Result<Vec<Event>, Rejection> {
    let order = s.order.as_ref().ok_or(Rejection::OrderNotFound)?;
    let amount = Money::parse(c.amount, tenant.currency).map_err(|e| Rejection::money("amount", e))?;
    if let Some((_, earlier)) = order.refunds.iter().find(|(id, _)| *id == c.refund_id) {
        return if *earlier == amount { Ok(vec![]) } else { Err(Rejection::RefundIdReused) };
    }
    if !amount.is_positive() {
        return Err(Rejection::InvalidField { field: "amount", problem: "must be positive" });
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
        let balance_after = account.balance.checked_add(amount).map_err(|e| Rejection::money("amount", e))?;
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
    let left = order.commission.checked_sub(order.commission_reversed).expect("reversals never exceed commission");
    if completes_refund { left } else { order.commission.pro_rata(amount, order.gross).min(left) }
}
