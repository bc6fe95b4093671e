//! Double-entry postings: what every event does to the ledger's accounts.
//!
//! Sign convention: a debit is positive, a credit negative. For every event
//! the postings sum to zero in each currency. Liabilities (what the tenant
//! owes employees and vendors) carry credit balances, so an employee's credit
//! balance is minus the sum of the postings to their `EmployeeCredit` account.

use serde::Serialize;

use crate::envelope::Envelope;
use crate::event::{Event, Payment, Tender};
use crate::id::{EmployeeId, VendorId};
use crate::money::Money;

/// A ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "account", content = "id", rename_all = "snake_case")]
pub enum Account {
    /// Credit the tenant owes an employee (a liability).
    EmployeeCredit(EmployeeId),
    /// The tenant's funding of employee credit.
    CreditFunding,
    /// Credit in transit between an order and a credit account. Both halves of
    /// every credit checkout or refund post here, so it nets to zero exactly
    /// when no multi-stream append is half-present.
    CreditClearing,
    /// What the platform owes a vendor (a liability).
    VendorPayable(VendorId),
    /// The platform's commission revenue.
    PlatformCommission,
    /// Cash collected at the point of sale.
    CashClearing,
    /// Card payments collected.
    CardClearing,
    /// Mobile-money payments collected.
    MobileMoneyClearing,
    /// Invoices outstanding for a vendor's sales.
    Receivable(VendorId),
}

impl Account {
    fn of_tender(tender: Tender) -> Self {
        match tender {
            Tender::Cash => Self::CashClearing,
            Tender::Card => Self::CardClearing,
            Tender::MobileMoney => Self::MobileMoneyClearing,
            Tender::Credit { .. } => Self::CreditClearing,
        }
    }

    fn of_payment(payment: Payment, vendor_id: VendorId) -> Self {
        match payment.tender() {
            Some(tender) => Self::of_tender(tender),
            None => Self::Receivable(vendor_id),
        }
    }
}

/// One line of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Posting {
    pub account: Account,
    /// Positive: debit. Negative: credit.
    pub amount: Money,
}

/// The postings of one event. Events that move no money have none; postings
/// of zero are left out.
pub fn postings(envelope: &Envelope) -> Vec<Posting> {
    let mut out = Vec::with_capacity(3);
    let mut post = |account, amount: Money| {
        if !amount.is_zero() {
            out.push(Posting { account, amount });
        }
    };
    let employee = || EmployeeId::from_text(envelope.stream().id());
    match &envelope.event {
        Event::SaleRecorded(e) => {
            post(Account::of_payment(e.payment, e.vendor_id), e.gross);
            post(Account::VendorPayable(e.vendor_id), e.net().negate());
            post(Account::PlatformCommission, e.commission.negate());
        }
        Event::PaymentReceived(e) => {
            post(Account::of_tender(e.tender), e.amount);
            post(Account::Receivable(e.vendor_id), e.amount.negate());
        }
        Event::RefundIssued(e) => {
            post(Account::VendorPayable(e.vendor_id), e.net());
            post(Account::PlatformCommission, e.commission_reversed);
            post(Account::of_tender(e.tender), e.amount.negate());
        }
        Event::CreditSpent(e) => {
            post(Account::EmployeeCredit(employee()), e.amount);
            post(Account::CreditClearing, e.amount.negate());
        }
        Event::CreditRefunded(e) => {
            post(Account::CreditClearing, e.amount);
            post(Account::EmployeeCredit(employee()), e.amount.negate());
        }
        Event::CreditReplenished(e) => {
            post(Account::CreditFunding, e.amount);
            post(Account::EmployeeCredit(employee()), e.amount.negate());
        }
        Event::CreditAdjusted(e) => {
            post(Account::CreditFunding, e.amount);
            post(Account::EmployeeCredit(employee()), e.amount.negate());
        }
        Event::TenantConfigured(_)
        | Event::VendorRegistered(_)
        | Event::CommissionRateChanged(_)
        | Event::VendorSuspended(_)
        | Event::VendorReinstated(_)
        | Event::CreditAccountOpened(_)
        | Event::CreditPolicyChanged(_)
        | Event::CreditAccountSuspended(_)
        | Event::CreditAccountReinstated(_) => {}
    }
    out
}
