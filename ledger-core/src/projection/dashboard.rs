//! Vendor dashboards: totals per tenant, vendor and tenant-local day, rolled
//! up to ISO weeks or months at query time; and receivables by due date.

use bincode::error::DecodeError;
use chrono::{Datelike, Duration};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::bytes::{Reader, Writer};
use super::gate::{Outcome, Sink, StreamGate};
use crate::envelope::Envelope;
use crate::event::{Event, Payment};
use crate::id::{StreamKind, TenantId, VendorId};
use crate::money::Currency;
use crate::time::LocalDate;

/// The longest range a dashboard query may span, in days.
pub const QUERY_DAYS_MAX: i64 = 732;

/// One vendor's figures for one day (or, in a query, a roll-up of days).
/// Amounts are in the tenant's currency. Every field is a sum, so buckets
/// and deltas add commutatively in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotals {
    pub orders: u64,
    pub gross: Decimal,
    pub commission: Decimal,
    pub refunds: u64,
    pub refunded_gross: Decimal,
    pub refunded_commission: Decimal,
    pub gross_cash: Decimal,
    pub gross_card: Decimal,
    pub gross_mobile_money: Decimal,
    pub gross_credit: Decimal,
    pub gross_invoice: Decimal,
    pub payments: u64,
    pub payments_received: Decimal,
}

impl DayTotals {
    pub fn net(&self) -> Decimal {
        self.gross - self.commission
    }
    pub fn refunded_net(&self) -> Decimal {
        self.refunded_gross - self.refunded_commission
    }
    /// Net after refunds: what the vendor is owed for these days.
    pub fn net_payable(&self) -> Decimal {
        self.net() - self.refunded_net()
    }

    pub fn add(&mut self, d: &DayTotals) {
        self.orders += d.orders;
        self.gross += d.gross;
        self.commission += d.commission;
        self.refunds += d.refunds;
        self.refunded_gross += d.refunded_gross;
        self.refunded_commission += d.refunded_commission;
        self.gross_cash += d.gross_cash;
        self.gross_card += d.gross_card;
        self.gross_mobile_money += d.gross_mobile_money;
        self.gross_credit += d.gross_credit;
        self.gross_invoice += d.gross_invoice;
        self.payments += d.payments;
        self.payments_received += d.payments_received;
    }

    /// The delta one event makes to its day, and the day.
    fn delta(event: &Event) -> Option<(VendorId, LocalDate, DayTotals)> {
        let mut d = DayTotals::default();
        let (vendor, date) = match event {
            Event::SaleRecorded(e) => {
                d.orders = 1;
                d.gross = e.gross.amount();
                d.commission = e.commission.amount();
                let slot = match e.payment {
                    Payment::Cash => &mut d.gross_cash,
                    Payment::Card => &mut d.gross_card,
                    Payment::MobileMoney => &mut d.gross_mobile_money,
                    Payment::Credit { .. } => &mut d.gross_credit,
                    Payment::Invoice { .. } => &mut d.gross_invoice,
                };
                *slot = e.gross.amount();
                (e.vendor_id, e.business_date)
            }
            Event::RefundIssued(e) => {
                d.refunds = 1;
                d.refunded_gross = e.amount.amount();
                d.refunded_commission = e.commission_reversed.amount();
                (e.vendor_id, e.business_date)
            }
            Event::PaymentReceived(e) => {
                d.payments = 1;
                d.payments_received = e.amount.amount();
                (e.vendor_id, e.business_date)
            }
            _ => return None,
        };
        Some((vendor, date, d))
    }
}

impl DayTotals {
    fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to the totals cannot be left out.
        let Self {
            orders,
            gross,
            commission,
            refunds,
            refunded_gross,
            refunded_commission,
            gross_cash,
            gross_card,
            gross_mobile_money,
            gross_credit,
            gross_invoice,
            payments,
            payments_received,
        } = self;
        w.put(orders);
        w.put(refunds);
        w.put(payments);
        for d in [
            gross,
            commission,
            refunded_gross,
            refunded_commission,
            gross_cash,
            gross_card,
            gross_mobile_money,
            gross_credit,
            gross_invoice,
            payments_received,
        ] {
            w.decimal(*d);
        }
    }

    fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            orders: r.get()?,
            refunds: r.get()?,
            payments: r.get()?,
            gross: r.decimal()?,
            commission: r.decimal()?,
            refunded_gross: r.decimal()?,
            refunded_commission: r.decimal()?,
            gross_cash: r.decimal()?,
            gross_card: r.decimal()?,
            gross_mobile_money: r.decimal()?,
            gross_credit: r.decimal()?,
            gross_invoice: r.decimal()?,
            payments_received: r.decimal()?,
        })
    }
}

/// A change to one dashboard key: add `delta` to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashboardChange {
    Day {
        tenant_id: TenantId,
        vendor_id: VendorId,
        date: LocalDate,
        delta: DayTotals,
    },
    /// Outstanding invoices due on `due_date`: add `delta` (negative on payment).
    Receivable {
        tenant_id: TenantId,
        vendor_id: VendorId,
        due_date: LocalDate,
        delta: Decimal,
    },
}

/// The changes one order-stream event makes to the dashboard, in order: the
/// delta to its day, then the change to receivables if it has one. A pure
/// function of the event, so a store can add the changes to its own keys;
/// sums commute, so any order of events gives the same totals.
pub fn changes(envelope: &Envelope, mut emit: impl FnMut(DashboardChange)) {
    let tenant_id = envelope.tenant_id();
    let Some((vendor_id, date, delta)) = DayTotals::delta(&envelope.event) else {
        return;
    };
    emit(DashboardChange::Day {
        tenant_id,
        vendor_id,
        date,
        delta,
    });
    let receivable = match &envelope.event {
        Event::SaleRecorded(e) => match e.payment {
            Payment::Invoice { due_date } => Some((due_date, e.gross.amount())),
            _ => None,
        },
        Event::PaymentReceived(e) => Some((e.due_date, -e.amount.amount())),
        _ => None,
    };
    if let Some((due_date, delta)) = receivable {
        emit(DashboardChange::Receivable {
            tenant_id,
            vendor_id,
            due_date,
            delta,
        });
    }
}

/// The dashboard projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorDailyTotals {
    gate: StreamGate,
    days: FxHashMap<(TenantId, VendorId, LocalDate), DayTotals>,
    receivables: FxHashMap<(TenantId, VendorId, LocalDate), Decimal>,
    currencies: FxHashMap<TenantId, Currency>,
}

impl VendorDailyTotals {
    pub fn apply(&mut self, envelope: &Envelope) -> Outcome {
        self.apply_into(envelope, &mut super::gate::Discard)
    }

    pub fn apply_into(
        &mut self,
        envelope: &Envelope,
        sink: &mut impl Sink<DashboardChange>,
    ) -> Outcome {
        if envelope.stream().kind() != StreamKind::Order {
            return Outcome::Applied;
        }
        let outcome = self.gate.admit(envelope);
        if outcome == Outcome::Applied {
            self.evolve(envelope, sink);
        }
        outcome
    }

    /// Folds an admitted event.
    pub(super) fn evolve(&mut self, envelope: &Envelope, sink: &mut impl Sink<DashboardChange>) {
        debug_assert_eq!(envelope.stream().kind(), StreamKind::Order);
        let tenant_id = envelope.tenant_id();
        if let Some(money) = envelope.event.amount() {
            self.currencies.entry(tenant_id).or_insert(money.currency());
        }
        changes(envelope, |change| {
            match &change {
                DashboardChange::Day {
                    tenant_id,
                    vendor_id,
                    date,
                    delta,
                } => self
                    .days
                    .entry((*tenant_id, *vendor_id, *date))
                    .or_default()
                    .add(delta),
                DashboardChange::Receivable {
                    tenant_id,
                    vendor_id,
                    due_date,
                    delta,
                } => {
                    *self
                        .receivables
                        .entry((*tenant_id, *vendor_id, *due_date))
                        .or_default() += delta;
                }
            }
            sink.emit(|| change);
        });
    }

    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to the projection cannot be left out.
        let Self {
            gate,
            days,
            receivables,
            currencies,
        } = self;
        gate.write_snapshot(w);
        w.map(days, |w, (tenant_id, vendor_id, date), totals| {
            w.tenant(*tenant_id);
            w.put(vendor_id);
            w.put(date);
            totals.write_snapshot(w);
        });
        w.map(
            receivables,
            |w, (tenant_id, vendor_id, due_date), amount| {
                w.tenant(*tenant_id);
                w.put(vendor_id);
                w.put(due_date);
                w.decimal(*amount);
            },
        );
        w.map(currencies, |w, tenant_id, currency| {
            w.tenant(*tenant_id);
            w.put(currency);
        });
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            gate: StreamGate::read_snapshot(r)?,
            days: r.map(|r| {
                Ok((
                    (r.tenant()?, r.get()?, r.get()?),
                    DayTotals::read_snapshot(r)?,
                ))
            })?,
            receivables: r.map(|r| Ok(((r.tenant()?, r.get()?, r.get()?), r.decimal()?)))?,
            currencies: r.map(|r| Ok((r.tenant()?, r.get()?)))?,
        })
    }

    /// Every day bucket, in no particular order.
    pub fn days(&self) -> impl Iterator<Item = ((TenantId, VendorId, LocalDate), &DayTotals)> {
        self.days.iter().map(|(k, v)| (*k, v))
    }

    /// Every receivables bucket (outstanding invoices by due date), in no
    /// particular order.
    pub fn receivables(&self) -> impl Iterator<Item = ((TenantId, VendorId, LocalDate), Decimal)> {
        self.receivables.iter().map(|(k, v)| (*k, *v))
    }

    /// Each vendor's totals over all days.
    pub fn all_time(&self, tenant_id: TenantId) -> FxHashMap<VendorId, DayTotals> {
        let mut out: FxHashMap<VendorId, DayTotals> = FxHashMap::default();
        for ((t, v, _), day) in &self.days {
            if *t == tenant_id {
                out.entry(*v).or_default().add(day);
            }
        }
        out
    }

    /// Answers a dashboard query.
    ///
    /// # Errors
    /// When the range is reversed or longer than [`QUERY_DAYS_MAX`].
    pub fn query(&self, q: &DashboardQuery) -> Result<Dashboard, QueryError> {
        q.check()?;
        let wanted = |t: &TenantId, v: &VendorId| {
            *t == q.tenant_id && q.vendor_id.is_none_or(|want| want == *v)
        };
        let days = self
            .days
            .iter()
            .filter(|((t, v, date), _)| wanted(t, v) && (q.from..=q.to).contains(date))
            .map(|((_, _, date), day)| (*date, day));
        let dues = self
            .receivables
            .iter()
            .filter(|((t, v, _), _)| wanted(t, v))
            .map(|((_, _, due), amount)| (*due, *amount));
        Ok(Dashboard::assemble(
            q,
            self.currencies.get(&q.tenant_id).copied(),
            days,
            dues,
        ))
    }
}

impl DashboardQuery {
    /// Whether the range can be answered.
    ///
    /// # Errors
    /// When the range is reversed or longer than [`QUERY_DAYS_MAX`].
    pub fn check(&self) -> Result<(), QueryError> {
        let days = (self.to.as_naive() - self.from.as_naive()).num_days();
        if days < 0 {
            return Err(QueryError::ReversedRange);
        }
        if days >= QUERY_DAYS_MAX {
            return Err(QueryError::RangeTooLong);
        }
        Ok(())
    }
}

impl Dashboard {
    /// The dashboard of `q` from the day totals of its range and the
    /// outstanding invoices by due date of its vendors (one or all), in any
    /// order: the one roll-up, whether the sums come from memory or from a
    /// read-model table. Days outside `q`'s range are the caller's to leave
    /// out.
    pub fn assemble<'a>(
        q: &DashboardQuery,
        currency: Option<Currency>,
        days: impl IntoIterator<Item = (LocalDate, &'a DayTotals)>,
        dues: impl IntoIterator<Item = (LocalDate, Decimal)>,
    ) -> Dashboard {
        let mut buckets: std::collections::BTreeMap<LocalDate, DayTotals> = Default::default();
        let mut totals = DayTotals::default();
        for (date, day) in days {
            buckets
                .entry(q.granularity.bucket_start(date))
                .or_default()
                .add(day);
            totals.add(day);
        }
        let (mut pending, mut overdue) = (Decimal::ZERO, Decimal::ZERO);
        for (due, amount) in dues {
            pending += amount;
            if due < q.today {
                overdue += amount;
            }
        }
        let series = buckets
            .into_iter()
            .map(|(start, totals)| Bucket {
                label: q.granularity.label(start),
                start,
                totals,
            })
            .collect();
        Dashboard {
            currency,
            series,
            totals,
            receivables_pending: pending,
            receivables_overdue: overdue,
        }
    }
}

/// How a dashboard series is bucketed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    /// ISO 8601 weeks, Monday to Sunday.
    Week,
    Month,
}

impl Granularity {
    fn bucket_start(self, date: LocalDate) -> LocalDate {
        let d = date.as_naive();
        LocalDate::new(match self {
            Self::Day => d,
            Self::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Self::Month => d.with_day(1).expect("every month has a first day"),
        })
    }

    fn label(self, start: LocalDate) -> String {
        let d = start.as_naive();
        match self {
            Self::Day => d.to_string(),
            Self::Week => format!("{}-W{:02}", d.iso_week().year(), d.iso_week().week()),
            Self::Month => format!("{:04}-{:02}", d.year(), d.month()),
        }
    }
}

/// A dashboard query; `to` is inclusive, `today` decides what is overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardQuery {
    pub tenant_id: TenantId,
    /// `None`: every vendor of the tenant (admins only; the API enforces it).
    pub vendor_id: Option<VendorId>,
    pub from: LocalDate,
    pub to: LocalDate,
    pub granularity: Granularity,
    pub today: LocalDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the range ends before it starts")]
    ReversedRange,
    #[error("the range is longer than {QUERY_DAYS_MAX} days")]
    RangeTooLong,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub label: String,
    pub start: LocalDate,
    pub totals: DayTotals,
}

/// A dashboard: a series of buckets (only those with activity) and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    /// `None` when the tenant has no money movement yet.
    pub currency: Option<Currency>,
    pub series: Vec<Bucket>,
    pub totals: DayTotals,
    /// Invoices not yet paid, whatever their sale date.
    pub receivables_pending: Decimal,
    /// The part of `receivables_pending` due before `today`.
    pub receivables_overdue: Decimal,
}
