//! `credit/{employee_id}`: an employee's credit account: its policy, balance
//! and the once-per-period replenishment.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decider::Decider;
use crate::event::{
    CreditAccountOpened, CreditAccountReinstated, CreditAccountSuspended, CreditAdjusted,
    CreditPolicyChanged, CreditReplenished, Event,
};
use crate::id::EmployeeId;
use crate::limits::AMOUNT_MAJOR_MAX;
use crate::money::{Currency, Money};
use crate::policy::{CreditPolicy, ReplenishMode};
use crate::rejection::Rejection;
use crate::tenant::{TenantSettings, TenantState, evolve_settings};
use crate::text::{Name, Reason};
use crate::time::{Cadence, Period, Timestamp};

/// A policy as a caller states it, validated against the tenant's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicyInput {
    #[schemars(with = "crate::money::amount_text::Unsigned")]
    #[serde(with = "crate::money::amount_text::unsigned")]
    pub allowance: Decimal,
    pub cadence: Cadence,
    pub mode: ReplenishMode,
    #[serde(default, with = "crate::money::amount_text::unsigned_option")]
    #[schemars(with = "Option<crate::money::amount_text::Unsigned>")]
    pub cap: Option<Decimal>,
}

impl CreditPolicyInput {
    fn validate(&self, currency: Currency) -> Result<CreditPolicy, Rejection> {
        let allowance =
            Money::parse(self.allowance, currency).map_err(|e| Rejection::money("allowance", e))?;
        if !allowance.is_positive() {
            return Err(Rejection::InvalidField {
                field: "allowance",
                problem: "must be positive",
            });
        }
        let cap = match (self.mode, self.cap) {
            (_, None) => None,
            (ReplenishMode::TopUp, Some(_)) => {
                return Err(Rejection::InvalidField {
                    field: "cap",
                    problem: "applies only to accumulate mode",
                });
            }
            (ReplenishMode::Accumulate, Some(cap)) => {
                let cap = Money::parse(cap, currency).map_err(|e| Rejection::money("cap", e))?;
                if cap.amount() < allowance.amount() {
                    return Err(Rejection::InvalidField {
                        field: "cap",
                        problem: "must be at least the allowance",
                    });
                }
                Some(cap)
            }
        };
        Ok(CreditPolicy {
            allowance,
            cadence: self.cadence,
            mode: self.mode,
            cap,
        })
    }
}

/// Enrolls an employee: opens their credit account with a zero balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCreditAccount {
    pub employee_id: EmployeeId,
    pub name: Name,
    pub policy: CreditPolicyInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCreditPolicy {
    pub employee_id: EmployeeId,
    pub policy: CreditPolicyInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendCreditAccount {
    pub employee_id: EmployeeId,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReinstateCreditAccount {
    pub employee_id: EmployeeId,
}

/// Replenishes one account for one period: at most once per period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplenishCredit {
    pub employee_id: EmployeeId,
    pub period: Period,
    /// The server's clock when the command arrived.
    pub now: Timestamp,
}

/// An admin's signed correction of a balance, with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustCredit {
    pub employee_id: EmployeeId,
    #[schemars(with = "crate::money::amount_text::Signed")]
    #[serde(with = "crate::money::amount_text::signed")]
    pub amount: Decimal,
    pub reason: Reason,
}

/// Every command on a credit stream alone. Spending and refunding credit are
/// part of the sale commands, which decide both streams at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCommand {
    Open(OpenCreditAccount),
    ChangePolicy(ChangeCreditPolicy),
    Suspend(SuspendCreditAccount),
    Reinstate(ReinstateCreditAccount),
    Replenish(ReplenishCredit),
    Adjust(AdjustCredit),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditAccount {
    pub name: Name,
    pub policy: CreditPolicy,
    pub balance: Money,
    pub suspended: bool,
    pub last_period: Option<Period>,
}

/// `None` until opened.
pub type CreditState = Option<CreditAccount>;

/// Folds one credit stream.
pub fn evolve_account(s: CreditState, e: &Event) -> CreditState {
    let balance_after = match e {
        Event::CreditAccountOpened(e) => {
            return Some(CreditAccount {
                name: e.name.clone(),
                policy: e.policy,
                balance: Money::zero(e.policy.allowance.currency()),
                suspended: false,
                last_period: None,
            });
        }
        Event::CreditReplenished(e) => e.balance_after,
        Event::CreditSpent(e) => e.balance_after,
        Event::CreditRefunded(e) => e.balance_after,
        Event::CreditAdjusted(e) => e.balance_after,
        Event::CreditPolicyChanged(e) => {
            return s.map(|a| CreditAccount {
                policy: e.policy,
                ..a
            });
        }
        Event::CreditAccountSuspended(_) => {
            return s.map(|a| CreditAccount {
                suspended: true,
                ..a
            });
        }
        Event::CreditAccountReinstated(_) => {
            return s.map(|a| CreditAccount {
                suspended: false,
                ..a
            });
        }
        _ => return s,
    };
    s.map(|mut a| {
        a.balance = balance_after;
        if let Event::CreditReplenished(e) = e {
            a.last_period = Some(e.period);
        }
        a
    })
}

/// What credit commands decide on: the tenant's settings and the account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreditContext {
    pub tenant: TenantState,
    pub account: CreditState,
}

pub struct Credit;

impl Decider for Credit {
    type Command = CreditCommand;
    type State = CreditContext;

    fn initial_state() -> CreditContext {
        CreditContext::default()
    }

    fn decide(c: &CreditCommand, s: &CreditContext) -> Result<Vec<Event>, Rejection> {
        let tenant = s.tenant.ok_or(Rejection::TenantNotConfigured)?;
        if let CreditCommand::Open(c) = c {
            if s.account.is_some() {
                return Err(Rejection::CreditAccountExists);
            }
            let policy = c.policy.validate(tenant.currency)?;
            return Ok(vec![Event::CreditAccountOpened(CreditAccountOpened {
                name: c.name.clone(),
                policy,
            })]);
        }
        let account = s.account.as_ref().ok_or(Rejection::EmployeeNotFound)?;
        match c {
            CreditCommand::Open(_) => unreachable!("handled above"),
            CreditCommand::ChangePolicy(c) => {
                let policy = c.policy.validate(tenant.currency)?;
                Ok(if policy == account.policy {
                    vec![]
                } else {
                    vec![Event::CreditPolicyChanged(CreditPolicyChanged { policy })]
                })
            }
            CreditCommand::Suspend(c) => Ok(if account.suspended {
                vec![]
            } else {
                vec![Event::CreditAccountSuspended(CreditAccountSuspended {
                    reason: c.reason.clone(),
                })]
            }),
            CreditCommand::Reinstate(_) => Ok(if account.suspended {
                vec![Event::CreditAccountReinstated(CreditAccountReinstated {})]
            } else {
                vec![]
            }),
            CreditCommand::Replenish(c) => replenish(c, account, tenant),
            CreditCommand::Adjust(c) => adjust(c, account, tenant),
        }
    }

    fn evolve(s: CreditContext, e: &Event) -> CreditContext {
        CreditContext {
            tenant: evolve_settings(s.tenant, e),
            account: evolve_account(s.account, e),
        }
    }
}

fn replenish(
    c: &ReplenishCredit,
    account: &CreditAccount,
    tenant: TenantSettings,
) -> Result<Vec<Event>, Rejection> {
    // Once per period: a period that overlaps or precedes the last one
    // replenished is already covered, so running it again changes nothing.
    // This comes first: a replay succeeds with no events whatever happened
    // since (a suspension, a new cadence, a new time zone).
    if let Some(last) = account.last_period
        && c.period.first_day() <= last.last_day()
    {
        return Ok(vec![]);
    }
    if account.suspended {
        return Err(Rejection::CreditAccountSuspended);
    }
    if c.period.cadence() != account.policy.cadence {
        return Err(Rejection::PeriodCadenceMismatch);
    }
    if tenant.time_zone.start_of(c.period.first_day()) > c.now {
        return Err(Rejection::PeriodNotStarted);
    }
    let balance_after = account.policy.replenished(account.balance)?;
    let amount = balance_after
        .checked_sub(account.balance)
        .map_err(|e| Rejection::money("amount", e))?;
    Ok(vec![Event::CreditReplenished(CreditReplenished {
        period: c.period,
        amount,
        balance_after,
    })])
}

fn adjust(
    c: &AdjustCredit,
    account: &CreditAccount,
    tenant: TenantSettings,
) -> Result<Vec<Event>, Rejection> {
    let amount =
        Money::parse(c.amount, tenant.currency).map_err(|e| Rejection::money("amount", e))?;
    if amount.is_zero() {
        return Err(Rejection::InvalidField {
            field: "amount",
            problem: "must not be zero",
        });
    }
    let balance_after =
        account
            .balance
            .checked_add(amount)
            .map_err(|_| Rejection::LimitExceeded {
                field: "amount",
                what: "resulting balance",
                max: AMOUNT_MAJOR_MAX,
            })?;
    if balance_after.is_negative() {
        return Err(Rejection::InsufficientCredit {
            balance: account.balance,
            needed: amount.negate(),
        });
    }
    Ok(vec![Event::CreditAdjusted(CreditAdjusted {
        amount,
        reason: c.reason.clone(),
        balance_after,
    })])
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;
    use crate::event::{CreditSpent, TenantConfigured};
    use crate::id::OrderId;
    use crate::money::Currency;
    use crate::testing::given;
    use crate::time::TimeZone;

    fn php(amount: Decimal) -> Money {
        Money::parse(amount, Currency::new("PHP")).unwrap()
    }
    fn e1() -> EmployeeId {
        EmployeeId::new("E1")
    }
    fn tenant() -> Event {
        Event::TenantConfigured(TenantConfigured {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        })
    }
    fn policy_input(mode: ReplenishMode, cap: Option<Decimal>) -> CreditPolicyInput {
        CreditPolicyInput {
            allowance: dec!(500),
            cadence: Cadence::SemiMonthly,
            mode,
            cap,
        }
    }
    fn policy(mode: ReplenishMode, cap: Option<Decimal>) -> CreditPolicy {
        CreditPolicy {
            allowance: php(dec!(500)),
            cadence: Cadence::SemiMonthly,
            mode,
            cap: cap.map(php),
        }
    }
    fn opened(mode: ReplenishMode, cap: Option<Decimal>) -> Event {
        Event::CreditAccountOpened(CreditAccountOpened {
            name: Name::new("Ana"),
            policy: policy(mode, cap),
        })
    }
    fn open(mode: ReplenishMode, cap: Option<Decimal>) -> CreditCommand {
        CreditCommand::Open(OpenCreditAccount {
            employee_id: e1(),
            name: Name::new("Ana"),
            policy: policy_input(mode, cap),
        })
    }
    fn replenish(period: &str) -> CreditCommand {
        CreditCommand::Replenish(ReplenishCredit {
            employee_id: e1(),
            period: Period::parse(period).unwrap(),
            now: "2026-11-20T04:00:00Z".parse().unwrap(),
        })
    }
    fn replenished(period: &str, amount: Decimal, after: Decimal) -> Event {
        Event::CreditReplenished(CreditReplenished {
            period: Period::parse(period).unwrap(),
            amount: php(amount),
            balance_after: php(after),
        })
    }
    fn spent(amount: Decimal, after: Decimal) -> Event {
        Event::CreditSpent(CreditSpent {
            order_id: OrderId::new("o1"),
            amount: php(amount),
            balance_after: php(after),
        })
    }
    fn adjust(amount: Decimal) -> CreditCommand {
        CreditCommand::Adjust(AdjustCredit {
            employee_id: e1(),
            amount,
            reason: Reason::new("correction"),
        })
    }
    fn top_up() -> Event {
        opened(ReplenishMode::TopUp, None)
    }

    #[test]
    fn opening_an_account() {
        given::<Credit>(&[tenant()])
            .when(&open(ReplenishMode::TopUp, None))
            .then(&[top_up()]);
    }

    #[test]
    fn opening_needs_a_configured_tenant() {
        given::<Credit>(&[])
            .when(&open(ReplenishMode::TopUp, None))
            .rejects(Rejection::TenantNotConfigured);
    }

    #[test]
    fn opening_twice_is_rejected() {
        given::<Credit>(&[tenant(), top_up()])
            .when(&open(ReplenishMode::TopUp, None))
            .rejects(Rejection::CreditAccountExists);
    }

    #[test]
    fn policy_validation() {
        let bad = |p: CreditPolicyInput| {
            CreditCommand::Open(OpenCreditAccount {
                employee_id: e1(),
                name: Name::new("Ana"),
                policy: p,
            })
        };
        let mut p = policy_input(ReplenishMode::TopUp, None);
        p.allowance = dec!(0);
        given::<Credit>(&[tenant()])
            .when(&bad(p))
            .rejects_code("validation_failed");
        let mut p = policy_input(ReplenishMode::TopUp, None);
        p.allowance = dec!(1.001);
        given::<Credit>(&[tenant()])
            .when(&bad(p))
            .rejects_code("validation_failed");
        given::<Credit>(&[tenant()])
            .when(&bad(policy_input(ReplenishMode::TopUp, Some(dec!(900)))))
            .rejects_code("validation_failed");
        given::<Credit>(&[tenant()])
            .when(&bad(policy_input(
                ReplenishMode::Accumulate,
                Some(dec!(100)),
            )))
            .rejects_code("validation_failed");
    }

    #[test]
    fn top_up_sets_the_balance_to_the_allowance() {
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
            spent(dec!(120), dec!(380)),
        ])
        .when(&replenish("2026-11-H2"))
        .then(&[replenished("2026-11-H2", dec!(120), dec!(500))]);
    }

    #[test]
    fn top_up_takes_back_credit_above_the_allowance() {
        let adjusted = Event::CreditAdjusted(CreditAdjusted {
            amount: php(dec!(100)),
            reason: Reason::new("bonus"),
            balance_after: php(dec!(600)),
        });
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
            adjusted,
        ])
        .when(&replenish("2026-11-H2"))
        .then(&[replenished("2026-11-H2", dec!(-100), dec!(500))]);
    }

    #[test]
    fn accumulate_adds_up_to_the_cap() {
        let acc = opened(ReplenishMode::Accumulate, Some(dec!(800)));
        given::<Credit>(&[
            tenant(),
            acc.clone(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&replenish("2026-11-H2"))
        .then(&[replenished("2026-11-H2", dec!(300), dec!(800))]);
        let uncapped = opened(ReplenishMode::Accumulate, None);
        given::<Credit>(&[
            tenant(),
            uncapped,
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&replenish("2026-11-H2"))
        .then(&[replenished("2026-11-H2", dec!(500), dec!(1000))]);
    }

    #[test]
    fn accumulate_at_the_cap_still_marks_the_period() {
        let acc = opened(ReplenishMode::Accumulate, Some(dec!(500)));
        given::<Credit>(&[
            tenant(),
            acc,
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&replenish("2026-11-H2"))
        .then(&[replenished("2026-11-H2", dec!(0), dec!(500))]);
    }

    #[test]
    fn replenishing_a_period_twice_changes_nothing() {
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&replenish("2026-11-H1"))
        .then(&[]);
    }

    #[test]
    fn replenishing_an_earlier_period_changes_nothing() {
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H2", dec!(500), dec!(500)),
        ])
        .when(&replenish("2026-11-H1"))
        .then(&[]);
    }

    #[test]
    fn regression_a_replay_of_a_done_period_succeeds_after_a_suspension() {
        let suspended = Event::CreditAccountSuspended(CreditAccountSuspended {
            reason: Reason::new("left"),
        });
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
            suspended,
        ])
        .when(&replenish("2026-11-H1"))
        .then(&[]);
    }

    #[test]
    fn replenishing_a_future_period_is_rejected() {
        given::<Credit>(&[tenant(), top_up()])
            .when(&replenish("2026-12-H1"))
            .rejects(Rejection::PeriodNotStarted);
    }

    #[test]
    fn replenishing_with_the_wrong_cadence_is_rejected() {
        given::<Credit>(&[tenant(), top_up()])
            .when(&replenish("2026-11"))
            .rejects(Rejection::PeriodCadenceMismatch);
    }

    #[test]
    fn replenishing_a_suspended_account_is_rejected() {
        let suspended = Event::CreditAccountSuspended(CreditAccountSuspended {
            reason: Reason::new("left"),
        });
        given::<Credit>(&[tenant(), top_up(), suspended])
            .when(&replenish("2026-11-H1"))
            .rejects(Rejection::CreditAccountSuspended);
    }

    #[test]
    fn commands_on_an_unknown_account_are_rejected() {
        given::<Credit>(&[tenant()])
            .when(&replenish("2026-11-H1"))
            .rejects(Rejection::EmployeeNotFound);
        given::<Credit>(&[tenant()])
            .when(&adjust(dec!(5)))
            .rejects(Rejection::EmployeeNotFound);
    }

    #[test]
    fn adjusting_a_balance() {
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&adjust(dec!(-200)))
        .then(&[Event::CreditAdjusted(CreditAdjusted {
            amount: php(dec!(-200)),
            reason: Reason::new("correction"),
            balance_after: php(dec!(300)),
        })]);
    }

    #[test]
    fn an_adjustment_may_not_overdraw() {
        given::<Credit>(&[
            tenant(),
            top_up(),
            replenished("2026-11-H1", dec!(500), dec!(500)),
        ])
        .when(&adjust(dec!(-500.01)))
        .rejects_code("insufficient_credit");
    }

    #[test]
    fn a_zero_or_over_precise_adjustment_is_rejected() {
        given::<Credit>(&[tenant(), top_up()])
            .when(&adjust(dec!(0)))
            .rejects_code("validation_failed");
        given::<Credit>(&[tenant(), top_up()])
            .when(&adjust(dec!(0.001)))
            .rejects_code("validation_failed");
    }

    #[test]
    fn an_adjustment_past_the_amount_limit_is_rejected() {
        given::<Credit>(&[tenant(), top_up()])
            .when(&adjust(Decimal::from(AMOUNT_MAJOR_MAX) + dec!(1)))
            .rejects_code("limit_exceeded");
    }

    #[test]
    fn suspend_and_reinstate_are_idempotent() {
        let suspend = CreditCommand::Suspend(SuspendCreditAccount {
            employee_id: e1(),
            reason: Reason::new("left"),
        });
        let suspended = Event::CreditAccountSuspended(CreditAccountSuspended {
            reason: Reason::new("left"),
        });
        given::<Credit>(&[tenant(), top_up()])
            .when(&suspend)
            .then(std::slice::from_ref(&suspended));
        given::<Credit>(&[tenant(), top_up(), suspended.clone()])
            .when(&suspend)
            .then(&[]);
        let reinstate = CreditCommand::Reinstate(ReinstateCreditAccount { employee_id: e1() });
        given::<Credit>(&[tenant(), top_up(), suspended])
            .when(&reinstate)
            .then(&[Event::CreditAccountReinstated(CreditAccountReinstated {})]);
        given::<Credit>(&[tenant(), top_up()])
            .when(&reinstate)
            .then(&[]);
    }

    #[test]
    fn changing_the_policy() {
        let change = |p| {
            CreditCommand::ChangePolicy(ChangeCreditPolicy {
                employee_id: e1(),
                policy: p,
            })
        };
        given::<Credit>(&[tenant(), top_up()])
            .when(&change(policy_input(ReplenishMode::TopUp, None)))
            .then(&[]);
        given::<Credit>(&[tenant(), top_up()])
            .when(&change(policy_input(
                ReplenishMode::Accumulate,
                Some(dec!(1000)),
            )))
            .then(&[Event::CreditPolicyChanged(CreditPolicyChanged {
                policy: policy(ReplenishMode::Accumulate, Some(dec!(1000))),
            })]);
    }
}
