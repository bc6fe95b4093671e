//! Credit balances and statements, per employee.

use bincode::error::DecodeError;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::bytes::{Reader, Writer};
use super::gate::{Outcome, Sink, admit};
use crate::envelope::Envelope;
use crate::event::{CreditAccountOpened, Event};
use crate::id::{EmployeeId, OrderId, RefundId, StreamKind, StreamVersion, TenantId};
use crate::limits::{NAME_LEN_MAX, REASON_LEN_MAX};
use crate::money::Money;
use crate::policy::CreditPolicy;
use crate::text::{Name, Reason};
use crate::time::{Period, Timestamp};

/// Most statement lines one page may hold.
pub const PAGE_STATEMENT_MAX: usize = 500;

/// An employee's credit as they and admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditView {
    pub employee_id: EmployeeId,
    pub name: Name,
    pub policy: CreditPolicy,
    pub suspended: bool,
    pub balance: Money,
    pub last_period: Option<Period>,
    pub lifetime_spent: Money,
    pub lifetime_replenished: Money,
    /// The credit stream's version this view reflects.
    pub version: StreamVersion,
}

/// What moved a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Movement {
    Replenished {
        period: Period,
    },
    Spent {
        order_id: OrderId,
    },
    Refunded {
        order_id: OrderId,
        refund_id: RefundId,
    },
    Adjusted {
        reason: Reason,
    },
}

/// One line of a statement, with the running balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub version: StreamVersion,
    pub occurred_at: Timestamp,
    #[serde(flatten)]
    pub movement: Movement,
    /// The signed change to the balance.
    pub amount: Money,
    pub balance_after: Money,
}

/// The new state of one account view, and the statement line to append (keyed
/// by the account and `line.version`) if the event moved money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditChange {
    pub tenant_id: TenantId,
    pub view: CreditView,
    pub line: Option<StatementLine>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreditBalances {
    views: FxHashMap<(TenantId, EmployeeId), CreditView>,
    statements: FxHashMap<(TenantId, EmployeeId), Vec<StatementLine>>,
}

impl CreditBalances {
    pub fn apply(&mut self, envelope: &Envelope) -> Outcome {
        self.apply_into(envelope, &mut super::gate::Discard)
    }

    pub fn apply_into(
        &mut self,
        envelope: &Envelope,
        sink: &mut impl Sink<CreditChange>,
    ) -> Outcome {
        if envelope.stream().kind() != StreamKind::Credit {
            return Outcome::Applied;
        }
        let last = self
            .get(envelope.tenant_id(), employee_id(envelope))
            .map_or(StreamVersion::NONE, |v| v.version);
        let outcome = admit(last, envelope.version());
        if outcome == Outcome::Applied {
            self.evolve(envelope, sink);
        }
        outcome
    }

    /// Folds an admitted event.
    pub(super) fn evolve(&mut self, envelope: &Envelope, sink: &mut impl Sink<CreditChange>) {
        debug_assert_eq!(envelope.stream().kind(), StreamKind::Credit);
        let tenant_id = envelope.tenant_id();
        let key = (tenant_id, employee_id(envelope));
        let h = &envelope.header;
        if let Event::CreditAccountOpened(e) = &envelope.event {
            self.views.insert(key, CreditView::opened(key.1, e));
        }
        let Some(view) = self.views.get_mut(&key) else {
            return;
        };
        view.version = h.version;
        let line = view
            .evolve(&envelope.event)
            .map(|(movement, amount)| StatementLine {
                version: h.version,
                occurred_at: h.occurred_at,
                movement,
                amount,
                balance_after: view.balance,
            });
        if let Some(line) = &line {
            self.statements.entry(key).or_default().push(line.clone());
        }
        sink.emit(|| CreditChange {
            tenant_id,
            view: view.clone(),
            line,
        });
    }

    /// Starts the account's fold from a stored view instead of from nothing:
    /// the next event `apply` admits for it is `view.version + 1`. The
    /// statement starts empty: a store that keeps one item per account
    /// reads statements from the credit stream itself.
    pub fn resume(&mut self, tenant_id: TenantId, view: CreditView) {
        self.views.insert((tenant_id, view.employee_id), view);
    }

    pub fn get(&self, tenant_id: TenantId, employee_id: EmployeeId) -> Option<&CreditView> {
        self.views.get(&(tenant_id, employee_id))
    }

    /// Every account of a tenant, in no particular order.
    pub fn accounts(&self, tenant_id: TenantId) -> impl Iterator<Item = &CreditView> {
        self.views
            .iter()
            .filter(move |((t, _), _)| *t == tenant_id)
            .map(|(_, v)| v)
    }

    /// Every account of every tenant, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = (TenantId, &CreditView)> {
        self.views.iter().map(|((t, _), v)| (*t, v))
    }

    /// Statement lines in order, strictly after version `after`.
    pub fn statement(
        &self,
        tenant_id: TenantId,
        employee_id: EmployeeId,
        after: StreamVersion,
        limit: usize,
    ) -> &[StatementLine] {
        let lines = self
            .statements
            .get(&(tenant_id, employee_id))
            .map_or(&[][..], Vec::as_slice);
        let start = lines.partition_point(|l| l.version <= after);
        let end = lines.len().min(start + limit.min(PAGE_STATEMENT_MAX));
        &lines[start..end]
    }
}

impl CreditView {
    /// A new account: zero balance and lifetime sums, at no version yet.
    fn opened(employee_id: EmployeeId, e: &CreditAccountOpened) -> Self {
        let zero = Money::zero(e.policy.allowance.currency());
        CreditView {
            employee_id,
            name: e.name.clone(),
            policy: e.policy,
            suspended: false,
            balance: zero,
            last_period: None,
            lifetime_spent: zero,
            lifetime_replenished: zero,
            version: StreamVersion::NONE,
        }
    }

    /// Folds one event into the account (all but its version). An event that
    /// moved money sets the balance to its `balance_after` and returns what
    /// moved it, with the signed change.
    #[inline]
    fn evolve(&mut self, event: &Event) -> Option<(Movement, Money)> {
        match event {
            Event::CreditPolicyChanged(e) => self.policy = e.policy,
            Event::CreditAccountSuspended(_) => self.suspended = true,
            Event::CreditAccountReinstated(_) => self.suspended = false,
            Event::CreditReplenished(e) => {
                self.last_period = Some(e.period);
                self.lifetime_replenished = self
                    .lifetime_replenished
                    .checked_add(e.amount)
                    .unwrap_or(self.lifetime_replenished);
            }
            Event::CreditSpent(e) => {
                self.lifetime_spent = self
                    .lifetime_spent
                    .checked_add(e.amount)
                    .unwrap_or(self.lifetime_spent);
            }
            Event::CreditRefunded(e) => {
                self.lifetime_spent = self
                    .lifetime_spent
                    .checked_sub(e.amount)
                    .unwrap_or(self.lifetime_spent);
            }
            _ => {}
        }
        let (movement, amount, balance_after) = movement_of(event)?;
        self.balance = balance_after;
        Some((movement, amount))
    }
}

/// What a credit event did to the balance: the movement, the signed change
/// and the balance after it (every movement carries it), or `None` for an
/// event that moved no money.
#[inline]
fn movement_of(event: &Event) -> Option<(Movement, Money, Money)> {
    Some(match event {
        Event::CreditReplenished(e) => (
            Movement::Replenished { period: e.period },
            e.amount,
            e.balance_after,
        ),
        Event::CreditSpent(e) => (
            Movement::Spent {
                order_id: e.order_id,
            },
            e.amount.negate(),
            e.balance_after,
        ),
        Event::CreditRefunded(e) => (
            Movement::Refunded {
                order_id: e.order_id,
                refund_id: e.refund_id,
            },
            e.amount,
            e.balance_after,
        ),
        Event::CreditAdjusted(e) => (
            Movement::Adjusted {
                reason: e.reason.clone(),
            },
            e.amount,
            e.balance_after,
        ),
        _ => return None,
    })
}

impl StatementLine {
    /// The statement line of one credit event, from the event alone (it
    /// carries the balance after it), or `None` for an event that moved no
    /// money. A statement is the credit stream read by version through this.
    pub fn of(envelope: &Envelope) -> Option<StatementLine> {
        if envelope.stream().kind() != StreamKind::Credit {
            return None;
        }
        let (movement, amount, balance_after) = movement_of(&envelope.event)?;
        Some(StatementLine {
            version: envelope.version(),
            occurred_at: envelope.header.occurred_at,
            movement,
            amount,
            balance_after,
        })
    }
}

impl CreditBalances {
    /// Each view under its tenant (the employee id, the rest of the key, is
    /// the view's own), then each statement under its key.
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        let Self { views, statements } = self;
        w.map(views, |w, (tenant_id, _), view| {
            w.tenant(*tenant_id);
            view.write_snapshot(w);
        });
        w.map(statements, |w, (tenant_id, employee_id), lines| {
            w.tenant(*tenant_id);
            w.put(employee_id);
            w.seq(lines, |w, line| line.write_snapshot(w));
        });
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let views = r.map(|r| {
            let tenant_id = r.tenant()?;
            let view = CreditView::read_snapshot(r)?;
            Ok(((tenant_id, view.employee_id), view))
        })?;
        let statements = r.map(|r| {
            let key = (r.tenant()?, r.get()?);
            // A statement grows with its account's history: no bound but the
            // bytes left, which `seq` checks.
            Ok((key, r.seq(usize::MAX, StatementLine::read_snapshot)?))
        })?;
        Ok(Self { views, statements })
    }
}

impl CreditView {
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to the view cannot be left out.
        let Self {
            employee_id,
            name,
            policy,
            suspended,
            balance,
            last_period,
            lifetime_spent,
            lifetime_replenished,
            version,
        } = self;
        w.put(employee_id);
        w.put(name);
        w.put(policy);
        w.put(suspended);
        w.put(balance);
        w.put(last_period);
        w.put(lifetime_spent);
        w.put(lifetime_replenished);
        w.put(version);
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            employee_id: r.get()?,
            name: r.text(NAME_LEN_MAX)?,
            policy: r.get()?,
            suspended: r.get()?,
            balance: r.get()?,
            last_period: r.get()?,
            lifetime_spent: r.get()?,
            lifetime_replenished: r.get()?,
            version: r.get()?,
        })
    }
}

impl StatementLine {
    fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to the line cannot be left out.
        let Self {
            version,
            occurred_at,
            movement,
            amount,
            balance_after,
        } = self;
        w.put(version);
        w.put(occurred_at);
        // Tags are part of the snapshot format: add new ones, never renumber.
        match movement {
            Movement::Replenished { period } => {
                w.put(&0u8);
                w.put(period);
            }
            Movement::Spent { order_id } => {
                w.put(&1u8);
                w.put(order_id);
            }
            Movement::Refunded {
                order_id,
                refund_id,
            } => {
                w.put(&2u8);
                w.put(order_id);
                w.put(refund_id);
            }
            Movement::Adjusted { reason } => {
                w.put(&3u8);
                w.put(reason);
            }
        }
        w.put(amount);
        w.put(balance_after);
    }

    fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.get()?,
            occurred_at: r.get()?,
            movement: match r.get::<u8>()? {
                0 => Movement::Replenished { period: r.get()? },
                1 => Movement::Spent { order_id: r.get()? },
                2 => Movement::Refunded {
                    order_id: r.get()?,
                    refund_id: r.get()?,
                },
                3 => Movement::Adjusted {
                    reason: r.text(REASON_LEN_MAX)?,
                },
                _ => return Err(DecodeError::Other("unknown statement movement")),
            },
            amount: r.get()?,
            balance_after: r.get()?,
        })
    }
}

fn employee_id(envelope: &Envelope) -> EmployeeId {
    EmployeeId::from_text(envelope.stream().id())
}
