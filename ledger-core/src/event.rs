//! Every event of the domain, their stable type tags and schema versions.
//!
//! One flat enum: each variant belongs to exactly one stream kind
//! ([`Event::stream_kind`]). Field names are part of the JSON contract and the
//! field order is part of the binary one: change either only with a new schema
//! version and an upcaster in [`crate::codec`].

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::id::{EmployeeId, ItemCode, OrderId, RefundId, StreamKind, VendorId};
use crate::money::{CommissionRate, Currency, Money};
use crate::policy::CreditPolicy;
use crate::text::{Name, Reason};
use crate::time::{LocalDate, Period, TimeZone};

/// `tenant/{id}`: the tenant's currency and time zone.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct TenantConfigured {
    pub currency: Currency,
    pub time_zone: TimeZone,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct VendorRegistered {
    pub name: Name,
    pub commission_rate: CommissionRate,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CommissionRateChanged {
    pub commission_rate: CommissionRate,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct VendorSuspended {
    pub reason: Reason,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct VendorReinstated {}

/// Schema version 2: the policy gained `mode` and `cap` (version 1 accounts
/// were all top-up, uncapped; see `codec::legacy`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditAccountOpened {
    pub name: Name,
    pub policy: CreditPolicy,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicyChanged {
    pub policy: CreditPolicy,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditAccountSuspended {
    pub reason: Reason,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditAccountReinstated {}

/// The once-per-period replenishment. `amount` is the change it made and may
/// be zero (an accumulate account at its cap) or negative (a top-up account
/// holding more than its allowance after an adjustment).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditReplenished {
    pub period: Period,
    pub amount: Money,
    pub balance_after: Money,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditSpent {
    pub order_id: OrderId,
    pub amount: Money,
    pub balance_after: Money,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditRefunded {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    pub amount: Money,
    pub balance_after: Money,
}

/// An admin's correction; `amount` is signed.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditAdjusted {
    pub amount: Money,
    pub reason: Reason,
    pub balance_after: Money,
}

/// One line of a sale. The line total is `quantity × unit_price`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub item: ItemCode,
    pub quantity: u32,
    pub unit_price: Money,
}

/// How money moved at once: at checkout, on an invoice's payment, or back on a refund.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tender {
    Cash,
    Card,
    MobileMoney,
    Credit { employee_id: EmployeeId },
}

/// How a sale is paid: at once by a [`Tender`], or later against an invoice.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payment {
    Cash,
    Card,
    MobileMoney,
    Credit {
        employee_id: EmployeeId,
    },
    /// A receivable, due on `due_date` (tenant-local).
    Invoice {
        due_date: LocalDate,
    },
}

impl Payment {
    /// The tender if the sale was paid at once; `None` for an invoice.
    pub fn tender(self) -> Option<Tender> {
        match self {
            Self::Cash => Some(Tender::Cash),
            Self::Card => Some(Tender::Card),
            Self::MobileMoney => Some(Tender::MobileMoney),
            Self::Credit { employee_id } => Some(Tender::Credit { employee_id }),
            Self::Invoice { .. } => None,
        }
    }
}

/// A checkout. Everything a projection needs is captured here, decided once:
/// the commission rate in force, the amounts, and the tenant-local business
/// date, so no projection ever has to join another stream.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct SaleRecorded {
    pub vendor_id: VendorId,
    pub lines: Vec<Line>,
    pub gross: Money,
    pub commission_rate: CommissionRate,
    pub commission: Money,
    pub payment: Payment,
    pub business_date: LocalDate,
}

impl SaleRecorded {
    pub fn net(&self) -> Money {
        self.gross
            .checked_sub(self.commission)
            .expect("commission never exceeds gross")
    }
}

/// An invoice paid in full.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct PaymentReceived {
    pub vendor_id: VendorId,
    pub amount: Money,
    pub tender: Tender,
    pub business_date: LocalDate,
    /// The invoice's due date, so receivable projections need no join.
    pub due_date: LocalDate,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RefundIssued {
    pub vendor_id: VendorId,
    pub refund_id: RefundId,
    pub amount: Money,
    pub commission_reversed: Money,
    /// Where the money goes back: the tender the order was paid with.
    pub tender: Tender,
    pub business_date: LocalDate,
    /// Whether this refund brought the order to fully refunded.
    pub completes_refund: bool,
    pub reason: Option<Reason>,
}

impl RefundIssued {
    pub fn net(&self) -> Money {
        self.amount
            .checked_sub(self.commission_reversed)
            .expect("reversal never exceeds refund")
    }
}

/// Every event of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum Event {
    TenantConfigured(TenantConfigured),
    VendorRegistered(VendorRegistered),
    CommissionRateChanged(CommissionRateChanged),
    VendorSuspended(VendorSuspended),
    VendorReinstated(VendorReinstated),
    CreditAccountOpened(CreditAccountOpened),
    CreditPolicyChanged(CreditPolicyChanged),
    CreditAccountSuspended(CreditAccountSuspended),
    CreditAccountReinstated(CreditAccountReinstated),
    CreditReplenished(CreditReplenished),
    CreditSpent(CreditSpent),
    CreditRefunded(CreditRefunded),
    CreditAdjusted(CreditAdjusted),
    SaleRecorded(SaleRecorded),
    PaymentReceived(PaymentReceived),
    RefundIssued(RefundIssued),
}

/// The type of an event, with the tag it is stored under. Tags are forever:
/// never reuse or renumber one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum EventType {
    TenantConfigured,
    VendorRegistered,
    CommissionRateChanged,
    VendorSuspended,
    VendorReinstated,
    CreditAccountOpened,
    CreditPolicyChanged,
    CreditAccountSuspended,
    CreditAccountReinstated,
    CreditReplenished,
    CreditSpent,
    CreditRefunded,
    CreditAdjusted,
    SaleRecorded,
    PaymentReceived,
    RefundIssued,
}

impl EventType {
    pub const ALL: [EventType; 16] = [
        Self::TenantConfigured,
        Self::VendorRegistered,
        Self::CommissionRateChanged,
        Self::VendorSuspended,
        Self::VendorReinstated,
        Self::CreditAccountOpened,
        Self::CreditPolicyChanged,
        Self::CreditAccountSuspended,
        Self::CreditAccountReinstated,
        Self::CreditReplenished,
        Self::CreditSpent,
        Self::CreditRefunded,
        Self::CreditAdjusted,
        Self::SaleRecorded,
        Self::PaymentReceived,
        Self::RefundIssued,
    ];

    /// The stored tag.
    pub const fn tag(self) -> u8 {
        match self {
            Self::TenantConfigured => 1,
            Self::VendorRegistered => 10,
            Self::CommissionRateChanged => 11,
            Self::VendorSuspended => 12,
            Self::VendorReinstated => 13,
            Self::CreditAccountOpened => 20,
            Self::CreditPolicyChanged => 21,
            Self::CreditAccountSuspended => 22,
            Self::CreditAccountReinstated => 23,
            Self::CreditReplenished => 24,
            Self::CreditSpent => 25,
            Self::CreditRefunded => 26,
            Self::CreditAdjusted => 27,
            Self::SaleRecorded => 30,
            Self::PaymentReceived => 31,
            Self::RefundIssued => 32,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.tag() == tag)
    }

    /// The schema version this code writes. Older versions are upcast on read.
    pub const fn schema_version(self) -> u8 {
        match self {
            Self::CreditAccountOpened => 2,
            _ => 1,
        }
    }

    pub const fn stream_kind(self) -> StreamKind {
        match self {
            Self::TenantConfigured => StreamKind::Tenant,
            Self::VendorRegistered
            | Self::CommissionRateChanged
            | Self::VendorSuspended
            | Self::VendorReinstated => StreamKind::Vendor,
            Self::CreditAccountOpened
            | Self::CreditPolicyChanged
            | Self::CreditAccountSuspended
            | Self::CreditAccountReinstated
            | Self::CreditReplenished
            | Self::CreditSpent
            | Self::CreditRefunded
            | Self::CreditAdjusted => StreamKind::Credit,
            Self::SaleRecorded | Self::PaymentReceived | Self::RefundIssued => StreamKind::Order,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantConfigured => "TenantConfigured",
            Self::VendorRegistered => "VendorRegistered",
            Self::CommissionRateChanged => "CommissionRateChanged",
            Self::VendorSuspended => "VendorSuspended",
            Self::VendorReinstated => "VendorReinstated",
            Self::CreditAccountOpened => "CreditAccountOpened",
            Self::CreditPolicyChanged => "CreditPolicyChanged",
            Self::CreditAccountSuspended => "CreditAccountSuspended",
            Self::CreditAccountReinstated => "CreditAccountReinstated",
            Self::CreditReplenished => "CreditReplenished",
            Self::CreditSpent => "CreditSpent",
            Self::CreditRefunded => "CreditRefunded",
            Self::CreditAdjusted => "CreditAdjusted",
            Self::SaleRecorded => "SaleRecorded",
            Self::PaymentReceived => "PaymentReceived",
            Self::RefundIssued => "RefundIssued",
        }
    }
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::TenantConfigured(_) => EventType::TenantConfigured,
            Self::VendorRegistered(_) => EventType::VendorRegistered,
            Self::CommissionRateChanged(_) => EventType::CommissionRateChanged,
            Self::VendorSuspended(_) => EventType::VendorSuspended,
            Self::VendorReinstated(_) => EventType::VendorReinstated,
            Self::CreditAccountOpened(_) => EventType::CreditAccountOpened,
            Self::CreditPolicyChanged(_) => EventType::CreditPolicyChanged,
            Self::CreditAccountSuspended(_) => EventType::CreditAccountSuspended,
            Self::CreditAccountReinstated(_) => EventType::CreditAccountReinstated,
            Self::CreditReplenished(_) => EventType::CreditReplenished,
            Self::CreditSpent(_) => EventType::CreditSpent,
            Self::CreditRefunded(_) => EventType::CreditRefunded,
            Self::CreditAdjusted(_) => EventType::CreditAdjusted,
            Self::SaleRecorded(_) => EventType::SaleRecorded,
            Self::PaymentReceived(_) => EventType::PaymentReceived,
            Self::RefundIssued(_) => EventType::RefundIssued,
        }
    }

    pub fn stream_kind(&self) -> StreamKind {
        self.event_type().stream_kind()
    }

    /// The vendor an event concerns, where it concerns one.
    pub fn vendor_id(&self) -> Option<VendorId> {
        match self {
            Self::SaleRecorded(e) => Some(e.vendor_id),
            Self::PaymentReceived(e) => Some(e.vendor_id),
            Self::RefundIssued(e) => Some(e.vendor_id),
            _ => None,
        }
    }

    /// The currency of the amounts an event holds: money it moves, or a credit
    /// policy's allowance. `None` for events without amounts.
    pub fn currency(&self) -> Option<Currency> {
        match self {
            Self::CreditAccountOpened(e) => Some(e.policy.allowance.currency()),
            Self::CreditPolicyChanged(e) => Some(e.policy.allowance.currency()),
            other => other.amount().map(|m| m.currency()),
        }
    }

    /// The money an event moves, where it moves some.
    pub fn amount(&self) -> Option<Money> {
        match self {
            Self::CreditReplenished(e) => Some(e.amount),
            Self::CreditSpent(e) => Some(e.amount),
            Self::CreditRefunded(e) => Some(e.amount),
            Self::CreditAdjusted(e) => Some(e.amount),
            Self::SaleRecorded(e) => Some(e.gross),
            Self::PaymentReceived(e) => Some(e.amount),
            Self::RefundIssued(e) => Some(e.amount),
            _ => None,
        }
    }
}
