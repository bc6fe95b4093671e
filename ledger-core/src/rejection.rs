//! Why a command was refused: one enum, one stable machine code per variant.

use rust_decimal::Decimal;

use crate::money::{Money, MoneyError};

/// A command refused by a decider. Refusing writes nothing.
///
/// [`Rejection::code`] is the stable machine code the API returns; the
/// `Display` text is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: &'static str,
    },
    #[error("{field}: {amount} has more than {scale} decimal places")]
    AmountTooPrecise {
        field: &'static str,
        amount: Decimal,
        scale: u32,
    },
    #[error("{field}: {what} exceeds the limit of {max}")]
    LimitExceeded {
        field: &'static str,
        what: &'static str,
        max: i64,
    },
    #[error("the tenant has no currency and time zone yet")]
    TenantNotConfigured,
    #[error("the currency cannot change once money has moved")]
    CurrencyLocked,
    #[error("no such vendor")]
    VendorNotFound,
    #[error("the vendor is already registered")]
    VendorExists,
    #[error("the vendor is suspended")]
    VendorSuspended,
    #[error("no credit account for this employee")]
    EmployeeNotFound,
    #[error("the employee already has a credit account")]
    CreditAccountExists,
    #[error("the credit account is suspended")]
    CreditAccountSuspended,
    #[error("insufficient credit: balance {balance}, needed {needed}")]
    InsufficientCredit { balance: Money, needed: Money },
    #[error("the period's cadence does not match the account's policy")]
    PeriodCadenceMismatch,
    #[error("the period has not started yet")]
    PeriodNotStarted,
    #[error("no such order")]
    OrderNotFound,
    #[error("an order with this id already exists")]
    OrderExists,
    #[error("the order is not awaiting payment")]
    OrderNotPending,
    #[error("only a paid order can be refunded")]
    OrderNotRefundable,
    #[error("a payment must settle the whole invoice: {expected}")]
    PaymentAmountMismatch { expected: Money },
    #[error("refund exceeds what remains refundable: {remaining}")]
    RefundExceedsRemaining { remaining: Money },
    #[error("this refund id was already used for a different refund")]
    RefundIdReused,
}

impl Rejection {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidField { .. } | Self::AmountTooPrecise { .. } => "validation_failed",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::TenantNotConfigured => "tenant_not_configured",
            Self::CurrencyLocked => "currency_locked",
            Self::VendorNotFound => "vendor_not_found",
            Self::VendorExists => "vendor_exists",
            Self::VendorSuspended => "vendor_suspended",
            Self::EmployeeNotFound => "employee_not_found",
            Self::CreditAccountExists => "credit_account_exists",
            Self::CreditAccountSuspended => "credit_account_suspended",
            Self::InsufficientCredit { .. } => "insufficient_credit",
            Self::PeriodCadenceMismatch => "period_cadence_mismatch",
            Self::PeriodNotStarted => "period_not_started",
            Self::OrderNotFound => "order_not_found",
            Self::OrderExists => "order_exists",
            Self::OrderNotPending => "order_not_pending",
            Self::OrderNotRefundable => "order_not_refundable",
            Self::PaymentAmountMismatch { .. } => "payment_amount_mismatch",
            Self::RefundExceedsRemaining { .. } => "refund_exceeds_remaining",
            Self::RefundIdReused => "idempotency_key_reused",
        }
    }

    /// Maps a money error on `field` to the rejection a client should see.
    pub(crate) fn money(field: &'static str, error: MoneyError) -> Self {
        match error {
            MoneyError::TooPrecise { amount, scale } => Self::AmountTooPrecise {
                field,
                amount,
                scale,
            },
            MoneyError::OutOfRange(_) => Self::LimitExceeded {
                field,
                what: "amount",
                max: crate::limits::AMOUNT_MAJOR_MAX,
            },
            MoneyError::UnknownCurrency(_) | MoneyError::CurrencyMismatch(..) => {
                Self::InvalidField {
                    field,
                    problem: "not in the tenant's currency",
                }
            }
        }
    }
}
