//! Every bound the domain enforces, named once.
//!
//! A command that goes past one of these is rejected with
//! [`Rejection::LimitExceeded`](crate::Rejection::LimitExceeded) or
//! [`Rejection::Validation`](crate::Rejection::Validation); nothing relies on an
//! overflow to stop it. The decoder enforces the same bounds on bytes it reads.

/// Longest identifier (tenant, vendor, employee, order, refund, user), in bytes.
/// A hyphenated UUID (36 characters) fits.
pub const ID_LEN_MAX: usize = 36;
/// Longest display name of a vendor or employee, in bytes.
pub const NAME_LEN_MAX: usize = 100;
/// Longest free-text reason (suspension, adjustment, refund), in bytes.
pub const REASON_LEN_MAX: usize = 200;
/// Most lines one sale may carry.
pub const LINES_PER_SALE_MAX: usize = 100;
/// Largest quantity on one line.
pub const QUANTITY_MAX: u32 = 10_000;
/// Largest absolute amount, in major units, of any single money value the
/// domain accepts or produces: a price, an order gross, an allowance, a cap,
/// an adjustment, a credit balance.
pub const AMOUNT_MAJOR_MAX: i64 = 1_000_000_000;
/// Most refunds one order may receive.
pub const REFUNDS_PER_ORDER_MAX: usize = 100;
/// How far in the past a sale recorded offline may say it happened.
pub const OFFLINE_AGE_DAYS_MAX: i64 = 30;
/// How far in the future (POS clock skew) an `occurred_at` may be.
pub const CLOCK_SKEW_SECONDS_MAX: i64 = 300;
/// Largest encoded event record, in bytes. A sale at [`LINES_PER_SALE_MAX`]
/// lines encodes to well under this.
pub const EVENT_BYTES_MAX: usize = 32 * 1024;
