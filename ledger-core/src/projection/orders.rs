//! Order views: one per order, looked up by id (within a vendor for vendor
//! callers) or listed per vendor newest first.

use bincode::error::DecodeError;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::bytes::{Reader, Writer};
use super::gate::{Outcome, Sink, admit};
use crate::envelope::{Envelope, Header};
use crate::event::{Event, Line, Payment, RefundIssued, SaleRecorded};
use crate::id::{OrderId, RefundId, StreamKind, StreamVersion, TenantId, VendorId};
use crate::limits::{LINES_PER_SALE_MAX, REASON_LEN_MAX, REFUNDS_PER_ORDER_MAX};
use crate::money::{CommissionRate, Money};
use crate::sale::OrderStatus;
use crate::text::Reason;
use crate::time::{LocalDate, Timestamp};

/// Most orders one list page may hold.
pub const PAGE_ORDERS_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundView {
    pub refund_id: RefundId,
    pub amount: Money,
    pub commission_reversed: Money,
    pub occurred_at: Timestamp,
    pub reason: Option<Reason>,
}

/// What a dashboard user sees of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub vendor_id: VendorId,
    pub lines: Vec<Line>,
    pub gross: Money,
    pub commission_rate: CommissionRate,
    pub commission: Money,
    pub net: Money,
    pub payment: Payment,
    pub status: OrderStatus,
    pub refunded: Money,
    pub commission_reversed: Money,
    pub refunds: Vec<RefundView>,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub business_date: LocalDate,
    pub paid_at: Option<Timestamp>,
    /// The order stream's version this view reflects.
    pub version: StreamVersion,
}

/// The new state of one order view; a store writes it if its stored version
/// is `view.version - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub tenant_id: TenantId,
    pub view: OrderView,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderViews {
    /// Boxed: a map growing to millions of views moves pointers when it
    /// rehashes, not ~400-byte views.
    views: FxHashMap<(TenantId, OrderId), Box<OrderView>>,
}

impl OrderViews {
    pub fn apply(&mut self, envelope: &Envelope) -> Outcome {
        self.apply_into(envelope, &mut super::gate::Discard)
    }

    pub fn apply_into(
        &mut self,
        envelope: &Envelope,
        sink: &mut impl Sink<OrderChange>,
    ) -> Outcome {
        if envelope.stream().kind() != StreamKind::Order {
            return Outcome::Applied;
        }
        let last = self
            .get(envelope.tenant_id(), order_id(envelope))
            .map_or(StreamVersion::NONE, |v| v.version);
        let outcome = admit(last, envelope.version());
        if outcome == Outcome::Applied {
            self.evolve(envelope, sink);
        }
        outcome
    }

    /// Folds an admitted event.
    pub(super) fn evolve(&mut self, envelope: &Envelope, sink: &mut impl Sink<OrderChange>) {
        debug_assert_eq!(envelope.stream().kind(), StreamKind::Order);
        let tenant_id = envelope.tenant_id();
        let h = &envelope.header;
        let key = (tenant_id, order_id(envelope));
        let view = match &envelope.event {
            Event::SaleRecorded(e) => self
                .views
                .entry(key)
                .insert_entry(OrderView::recorded(key.1, e, h))
                .into_mut()
                .as_mut(),
            Event::PaymentReceived(_) => {
                let Some(view) = self.views.get_mut(&key) else {
                    return;
                };
                view.status = OrderStatus::Paid;
                view.paid_at = Some(h.occurred_at);
                view
            }
            Event::RefundIssued(e) => {
                let Some(view) = self.views.get_mut(&key) else {
                    return;
                };
                view.refund(e, h.occurred_at);
                view
            }
            _ => return,
        };
        view.version = h.version;
        sink.emit(|| OrderChange {
            tenant_id,
            view: view.clone(),
        });
    }

    /// Starts the order's fold from a stored view instead of from nothing:
    /// the next event `apply` admits for it is `view.version + 1`. This is
    /// how a store that keeps one item per order folds a batch onto it.
    pub fn resume(&mut self, tenant_id: TenantId, view: OrderView) {
        self.views
            .insert((tenant_id, view.order_id), Box::new(view));
    }

    pub fn get(&self, tenant_id: TenantId, order_id: OrderId) -> Option<&OrderView> {
        self.views.get(&(tenant_id, order_id)).map(Box::as_ref)
    }

    /// A page of orders, newest first (by business time, then id), strictly
    /// after `cursor` in that order.
    pub fn list(&self, q: &OrderListQuery) -> Vec<&OrderView> {
        let mut page: Vec<&OrderView> = self
            .views
            .iter()
            .filter(|((t, _), v)| {
                *t == q.tenant_id
                    && q.vendor_id.is_none_or(|want| want == v.vendor_id)
                    && (q.from..q.until).contains(&v.occurred_at)
                    && q.cursor.is_none_or(|c| (v.occurred_at, v.order_id) < c)
            })
            .map(|(_, v)| v.as_ref())
            .collect();
        page.sort_unstable_by_key(|v| std::cmp::Reverse((v.occurred_at, v.order_id)));
        page.truncate(q.limit.min(PAGE_ORDERS_MAX));
        page
    }

    /// Every view, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TenantId, &OrderView)> {
        self.views.iter().map(|((t, _), v)| (*t, v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

impl OrderView {
    /// The view a sale opens, boxed where it is built (see [`OrderViews`]).
    #[inline]
    fn recorded(order_id: OrderId, e: &SaleRecorded, h: &Header) -> Box<Self> {
        let paid = e.payment.tender().is_some();
        Box::new(OrderView {
            order_id,
            vendor_id: e.vendor_id,
            lines: e.lines.clone(),
            gross: e.gross,
            commission_rate: e.commission_rate,
            commission: e.commission,
            net: e.net(),
            payment: e.payment,
            status: if paid {
                OrderStatus::Paid
            } else {
                OrderStatus::Pending
            },
            refunded: Money::zero(e.gross.currency()),
            commission_reversed: Money::zero(e.gross.currency()),
            refunds: Vec::new(),
            occurred_at: h.occurred_at,
            recorded_at: h.recorded_at,
            business_date: e.business_date,
            paid_at: paid.then_some(h.occurred_at),
            version: h.version,
        })
    }

    /// Adds a refund issued at `occurred_at` to the order's sums and list.
    #[inline]
    fn refund(&mut self, e: &RefundIssued, occurred_at: Timestamp) {
        self.refunded = self.refunded.checked_add(e.amount).unwrap_or(self.refunded);
        self.commission_reversed = self
            .commission_reversed
            .checked_add(e.commission_reversed)
            .unwrap_or(self.commission_reversed);
        self.status = if e.completes_refund {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
        self.refunds.push(RefundView {
            refund_id: e.refund_id,
            amount: e.amount,
            commission_reversed: e.commission_reversed,
            occurred_at,
            reason: e.reason.clone(),
        });
    }
}

impl OrderViews {
    /// Each view under its tenant; the order id, the rest of the key, is the view's own.
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        w.map(&self.views, |w, (tenant_id, _), view| {
            w.tenant(*tenant_id);
            view.write_snapshot(w);
        });
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let views = r.map(|r| {
            let tenant_id = r.tenant()?;
            let view = OrderView::read_snapshot(r)?;
            Ok(((tenant_id, view.order_id), Box::new(view)))
        })?;
        Ok(Self { views })
    }
}

impl OrderView {
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to the view cannot be left out.
        let Self {
            order_id,
            vendor_id,
            lines,
            gross,
            commission_rate,
            commission,
            net,
            payment,
            status,
            refunded,
            commission_reversed,
            refunds,
            occurred_at,
            recorded_at,
            business_date,
            paid_at,
            version,
        } = self;
        w.put(order_id);
        w.put(vendor_id);
        w.seq(lines, Writer::put);
        w.put(gross);
        w.put(commission_rate);
        w.put(commission);
        w.put(net);
        w.put(payment);
        w.put(&status_tag(*status));
        w.put(refunded);
        w.put(commission_reversed);
        w.seq(refunds, |w, refund| {
            let RefundView {
                refund_id,
                amount,
                commission_reversed,
                occurred_at,
                reason,
            } = refund;
            w.put(refund_id);
            w.put(amount);
            w.put(commission_reversed);
            w.put(occurred_at);
            w.option(reason.as_ref(), Writer::put);
        });
        w.put(occurred_at);
        w.put(recorded_at);
        w.put(business_date);
        w.put(paid_at);
        w.put(version);
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            order_id: r.get()?,
            vendor_id: r.get()?,
            lines: r.seq(LINES_PER_SALE_MAX, Reader::get::<Line>)?,
            gross: r.get()?,
            commission_rate: r.get()?,
            commission: r.get()?,
            net: r.get()?,
            payment: r.get()?,
            status: status_from_tag(r.get()?)?,
            refunded: r.get()?,
            commission_reversed: r.get()?,
            refunds: r.seq(REFUNDS_PER_ORDER_MAX, |r| {
                Ok(RefundView {
                    refund_id: r.get()?,
                    amount: r.get()?,
                    commission_reversed: r.get()?,
                    occurred_at: r.get()?,
                    reason: r.option(|r| r.text(REASON_LEN_MAX))?,
                })
            })?,
            occurred_at: r.get()?,
            recorded_at: r.get()?,
            business_date: r.get()?,
            paid_at: r.get()?,
            version: r.get()?,
        })
    }
}

/// The snapshot's tags for order statuses. Tags are part of the format: add
/// new ones, never renumber.
pub(crate) fn status_tag(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Pending => 0,
        OrderStatus::Paid => 1,
        OrderStatus::PartiallyRefunded => 2,
        OrderStatus::Refunded => 3,
    }
}

pub(crate) fn status_from_tag(tag: u8) -> Result<OrderStatus, DecodeError> {
    Ok(match tag {
        0 => OrderStatus::Pending,
        1 => OrderStatus::Paid,
        2 => OrderStatus::PartiallyRefunded,
        3 => OrderStatus::Refunded,
        _ => return Err(DecodeError::Other("unknown order status")),
    })
}

fn order_id(envelope: &Envelope) -> OrderId {
    OrderId::from_text(envelope.stream().id())
}

/// Orders of a tenant (one vendor, or all for admins) with `from <= occurred_at < until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderListQuery {
    pub tenant_id: TenantId,
    pub vendor_id: Option<VendorId>,
    pub from: Timestamp,
    pub until: Timestamp,
    /// The last `(occurred_at, order_id)` of the previous page.
    pub cursor: Option<(Timestamp, OrderId)>,
    pub limit: usize,
}
