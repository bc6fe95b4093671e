//! The rules of an employee's credit as events carry them: [`CreditPolicy`]
//! and its [`ReplenishMode`]. A leaf of the domain: the `credit` aggregate
//! decides with these, and its events hold them.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::rejection::Rejection;
use crate::time::Cadence;

/// How a replenishment treats unspent credit.
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
#[serde(rename_all = "snake_case")]
pub enum ReplenishMode {
    /// The balance becomes the allowance: unspent credit does not roll over.
    TopUp,
    /// The allowance is added, up to the cap if there is one.
    Accumulate,
}

/// The rules of an employee's credit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicy {
    pub allowance: Money,
    pub cadence: Cadence,
    pub mode: ReplenishMode,
    /// Only for [`ReplenishMode::Accumulate`]: the balance a replenishment never goes past.
    pub cap: Option<Money>,
}

impl CreditPolicy {
    /// The balance a replenishment leaves, starting from `balance`.
    pub(crate) fn replenished(&self, balance: Money) -> Result<Money, Rejection> {
        match self.mode {
            ReplenishMode::TopUp => Ok(self.allowance),
            ReplenishMode::Accumulate => {
                let added = balance
                    .checked_add(self.allowance)
                    .map_err(|e| Rejection::money("balance", e))?;
                // A cap never takes away what the employee already holds.
                Ok(self.cap.map_or(added, |cap| added.min(cap.max(balance))))
            }
        }
    }
}
