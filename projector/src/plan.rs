//! The pure core: a batch of records and the stored views it touches in,
//! the fewest read-model writes out.
//!
//! 1. [`Batch::new`] decodes every record with the ledger-core codec and
//!    groups events by stream, in version order, with duplicates inside the
//!    batch merged.
//! 2. [`plan_stream`] takes one stream's events and its stored view, and
//!    sorts every event into: a duplicate (at or below the stored version:
//!    acknowledged, nothing written), the run to apply (the versions right
//!    after the stored one, with no hole), a gap (after a missing version:
//!    reported as a batch item failure, so the transport redelivers it after
//!    the missing one), or parked (poison, or behind parked poison). The run
//!    is folded onto the stored view by ledger-core's own projection code,
//!    giving one new view and the dashboard changes of every event in it.
//! 3. [`pack`] packs stream plans into atomic [`Write`]s of at most
//!    [`Limits::actions`] items: each plan's gated view together with the
//!    sums its events add to, with additions to one day or due date merged
//!    within each write. Many events for one vendor-day become one item
//!    update.

use std::collections::BTreeMap;

use ledger_core::codec;
use ledger_core::projection::credit::CreditView;
use ledger_core::projection::dashboard::{self, DashboardChange};
use ledger_core::projection::orders::OrderView;
use ledger_core::projection::{CreditBalances, OrderViews, Outcome};
use ledger_core::{Envelope, StreamId, StreamKind, StreamVersion, TenantId};
use ledger_store::dynamodb::item::parse_pk;

use ledger_store::dynamodb::change::Change;

use crate::record::ChangeRecord;
use ledger_store::views::{
    OrderIndex, Parked, StoredView, Sum, SumAdd, SumKey, ViewKey, ViewWrite, Write,
};

/// A batch, decoded and grouped.
#[derive(Debug, Default)]
pub struct Batch {
    /// Streams with events or poison in this batch.
    pub streams: BTreeMap<ViewKey, StreamBatch>,
    /// Records that cannot be tied to a readable stream: parked as they are.
    pub unreadable: Vec<Parked>,
    /// Records with nothing to project (idempotency items, removals).
    pub ignored: Vec<String>,
    /// Records in the batch.
    pub records: usize,
    /// The oldest and newest write times in the batch, in milliseconds
    /// since the epoch: each event's own `recorded_at` (when the store
    /// accepted it, to the microsecond), else the record's approximate
    /// creation time (to the second on DynamoDB Streams, to the minute on
    /// DynamoDB Local).
    pub oldest_written_ms: Option<i64>,
    pub newest_written_ms: Option<i64>,
}

/// One stream's part of a batch.
#[derive(Debug, Default)]
pub struct StreamBatch {
    /// The partition key as delivered.
    pub pk: String,
    pub events: BTreeMap<StreamVersion, Delivered>,
}

/// One version of a stream as delivered (maybe more than once).
#[derive(Debug)]
pub struct Delivered {
    pub content: Content,
    /// Every record that carried this version.
    pub ids: Vec<String>,
}

/// What a delivered version holds.
#[derive(Debug)]
pub enum Content {
    Event(Box<Envelope>),
    /// The record is there but cannot be projected.
    Poison(String),
}

impl Batch {
    /// Decodes and groups `records`. Never panics, whatever they hold.
    pub fn new(records: Vec<ChangeRecord>) -> Batch {
        let mut batch = Batch {
            records: records.len(),
            ..Batch::default()
        };
        for record in records {
            batch.push(record);
        }
        batch
    }

    /// Sorts one record into the batch.
    fn push(&mut self, record: ChangeRecord) {
        let ChangeRecord {
            id,
            written_at_ms,
            change,
        } = record;
        if !matches!(change, Change::Event { .. }) {
            self.written_at(written_at_ms);
        }
        match change {
            Change::Ignored => self.ignored.push(id),
            Change::Malformed {
                pk,
                version,
                reason,
            } => self.push_malformed(pk, version, reason, id),
            Change::Event { pk, version, bytes } => {
                self.push_event(pk, version, &bytes, written_at_ms, id);
            }
        }
    }

    /// A record that is not a readable event item: poison in its stream
    /// when its key and version say which, else unreadable.
    fn push_malformed(
        &mut self,
        pk: Option<String>,
        version: Option<u64>,
        reason: String,
        id: String,
    ) {
        match (pk.as_deref().map(parse_pk), version) {
            (Some(Ok((tenant_id, stream))), Some(version)) if version > 0 => self.add(
                ViewKey { tenant_id, stream },
                pk.unwrap_or_default(),
                StreamVersion::new(version),
                Content::Poison(reason),
                id,
            ),
            // Without a stream to park under, the record parks under its
            // own id, so no two share an item.
            _ => self.unreadable.push(Parked {
                pk: pk.unwrap_or_else(|| format!("unreadable|{id}")),
                version: version.unwrap_or(0),
                record: id,
                error: reason,
                behind: None,
            }),
        }
    }

    /// An event item: decoded and checked against its key.
    fn push_event(
        &mut self,
        pk: String,
        version: u64,
        bytes: &[u8],
        written_at_ms: Option<i64>,
        id: String,
    ) {
        let (tenant_id, stream) = match parse_pk(&pk) {
            Ok(key) => key,
            Err(reason) => {
                self.unreadable.push(Parked {
                    pk,
                    version,
                    record: id,
                    error: reason.to_string(),
                    behind: None,
                });
                return;
            }
        };
        let v = StreamVersion::new(version);
        let (content, recorded_at_ms) = decode(&pk, tenant_id, stream, v, bytes);
        self.written_at(recorded_at_ms.or(written_at_ms));
        self.add(ViewKey { tenant_id, stream }, pk, v, content, id);
    }

    fn written_at(&mut self, at: Option<i64>) {
        if let Some(at) = at {
            self.oldest_written_ms = Some(self.oldest_written_ms.map_or(at, |o| o.min(at)));
            self.newest_written_ms = Some(self.newest_written_ms.map_or(at, |n| n.max(at)));
        }
    }

    fn add(&mut self, key: ViewKey, pk: String, v: StreamVersion, content: Content, id: String) {
        let stream = self.streams.entry(key).or_insert_with(|| StreamBatch {
            pk,
            events: BTreeMap::new(),
        });
        match stream.events.get_mut(&v) {
            // The same version twice: one item, delivered twice. Its
            // content is the same unless one copy is damaged; a readable
            // copy wins.
            Some(seen) => {
                seen.ids.push(id);
                if matches!(seen.content, Content::Poison(_))
                    && matches!(content, Content::Event(_))
                {
                    seen.content = content;
                }
            }
            None => {
                stream.events.insert(
                    v,
                    Delivered {
                        content,
                        ids: vec![id],
                    },
                );
            }
        }
    }
}

/// What an event item under `pk` (read as `tenant_id`, `stream`, `v`)
/// holds, and when the store accepted it (its `recorded_at`, in
/// milliseconds since the epoch) if it decodes.
fn decode(
    pk: &str,
    tenant_id: TenantId,
    stream: StreamId,
    v: StreamVersion,
    bytes: &[u8],
) -> (Content, Option<i64>) {
    let envelope = match codec::decode(bytes) {
        Ok(envelope) => envelope,
        Err(e) => {
            return (
                Content::Poison(format!("the record does not decode: {e}")),
                None,
            );
        }
    };
    let h = &envelope.header;
    let recorded_at_ms = Some(h.recorded_at.as_micros() / 1000);
    let content = if h.tenant_id == tenant_id && h.stream == stream && h.version == v {
        Content::Event(Box::new(envelope))
    } else {
        Content::Poison(format!(
            "the record is {}|{} version {}, but its key says {pk} version {}",
            h.tenant_id,
            h.stream,
            h.version,
            v.get()
        ))
    };
    (content, recorded_at_ms)
}

/// Whether a stream kind has a per-stream view (and so a gate in the table).
pub fn has_view(kind: StreamKind) -> bool {
    matches!(kind, StreamKind::Order | StreamKind::Credit)
}

/// What to do with one stream's part of a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamPlan {
    pub key: Option<ViewKey>,
    /// The gated write of the folded run, if there is one.
    pub view: Option<ViewWrite>,
    /// Dashboard additions of the run's events.
    pub sums: Vec<SumAdd>,
    /// Records done once `view` is written (the run; duplicates are done
    /// already and listed in `done`).
    pub applies: Vec<String>,
    /// Records done whatever happens: duplicates, and events of streams
    /// without a view.
    pub done: Vec<String>,
    /// Records to report as batch item failures (after a gap).
    pub failed: Vec<String>,
    /// Records to park.
    pub park: Vec<Parked>,
    /// The first version after a gap: the caller asks the table whether the
    /// stream is parked at or below it, and plans again with the answer.
    pub gap_at: Option<StreamVersion>,
    /// Events in the run.
    pub events: usize,
}

/// Plans one stream: `stored` is its stored view (for streams with one),
/// `parked_from` the lowest parked version of the stream if the caller has
/// looked it up, `actions_max` the most items one write may hold.
pub fn plan_stream(
    key: ViewKey,
    stream: &StreamBatch,
    stored: Option<&StoredView>,
    parked_from: Option<u64>,
    actions_max: usize,
) -> StreamPlan {
    let mut plan = StreamPlan {
        key: Some(key),
        ..StreamPlan::default()
    };
    if !has_view(key.stream.kind()) {
        plan_viewless(&mut plan, stream);
        return plan;
    }
    let last = stored.map_or(StreamVersion::NONE, |s| s.version);
    let mut run = sort_events(&mut plan, stream, last, parked_from);
    cut_run(&mut plan, &mut run, actions_max);
    if run.events.is_empty() {
        return plan;
    }
    match fold(key, stored, &run.events) {
        Ok((view, index, sums)) => {
            plan.events = run.events.len();
            plan.applies = run.ids.iter().flat_map(|ids| ids.iter().cloned()).collect();
            plan.view = Some(ViewWrite {
                key,
                expect: last,
                view,
                index,
            });
            plan.sums = sums;
        }
        // Later events of the stream in this batch were failed or parked
        // already; a failed one would come back and wait behind this.
        Err(error) => park_run(&mut plan, stream, &run, &error),
    }
    plan
}

/// The run of a stream's events to fold: the versions right after the
/// stored one, with no hole.
struct Run<'a> {
    events: Vec<&'a Envelope>,
    /// The ids that carried each event of the run (more than one when the
    /// batch holds duplicates).
    ids: Vec<&'a [String]>,
}

/// Tenant and vendor streams feed no per-key read model here: their
/// events are done on receipt; only poison is kept for operators.
fn plan_viewless(plan: &mut StreamPlan, stream: &StreamBatch) {
    for (v, d) in &stream.events {
        match &d.content {
            Content::Event(_) => plan.done.extend(d.ids.iter().cloned()),
            Content::Poison(error) => park(plan, stream, *v, d, error.clone(), None),
        }
    }
}

/// Sorts every event of a stream whose view is at `last` into `plan`
/// (duplicate, gap or parked), and returns the run.
fn sort_events<'a>(
    plan: &mut StreamPlan,
    stream: &'a StreamBatch,
    last: StreamVersion,
    parked_from: Option<u64>,
) -> Run<'a> {
    let mut next = last.next();
    let mut run = Run {
        events: Vec::new(),
        ids: Vec::new(),
    };
    // Parked at: the version the stream is stuck behind, once known.
    let mut stuck: Option<u64> = None;
    for (v, d) in &stream.events {
        if *v <= last {
            plan.done.extend(d.ids.iter().cloned());
            continue;
        }
        if let Some(p) = stuck {
            park_behind(plan, stream, *v, d, p);
            continue;
        }
        let envelope = match &d.content {
            Content::Event(envelope) => envelope,
            // Poison is parked wherever it is: waiting cannot make it
            // readable. What follows it in its stream waits behind it.
            Content::Poison(error) => {
                park(plan, stream, *v, d, error.clone(), None);
                stuck = Some(v.get());
                continue;
            }
        };
        if *v == next {
            run.events.push(envelope);
            run.ids.push(&d.ids);
            next = next.next();
            continue;
        }
        // A hole before `v`. If the stream is parked at or below `v`, the
        // missing version is stuck in the park and `v` waits behind it;
        // otherwise the missing version has not been delivered yet.
        match parked_from {
            Some(p) if p <= v.get() => {
                stuck = Some(p);
                park_behind(plan, stream, *v, d, p);
            }
            _ => {
                plan.gap_at.get_or_insert(*v);
                plan.failed.extend(d.ids.iter().cloned());
            }
        }
    }
    run
}

/// One write holds a view and its sums: a run whose sums would not fit is
/// cut where they stop fitting, and the rest is redelivered, to be the next
/// run on top of this one.
fn cut_run(plan: &mut StreamPlan, run: &mut Run<'_>, actions_max: usize) {
    let fits = prefix_within(&run.events, actions_max);
    for ids in run.ids.drain(fits..) {
        plan.failed.extend(ids.iter().cloned());
    }
    run.events.truncate(fits);
}

/// The run cannot be projected (a stored view that does not decode, a
/// stream that does not start as its kind must): park it whole, first
/// event as the cause, so nothing is half applied.
fn park_run(plan: &mut StreamPlan, stream: &StreamBatch, run: &Run<'_>, error: &str) {
    let first = run.events[0].version().get();
    for (e, ids) in run.events.iter().zip(&run.ids) {
        for id in ids.iter() {
            plan.park.push(Parked {
                pk: stream.pk.clone(),
                version: e.version().get(),
                record: id.clone(),
                error: error.to_owned(),
                behind: (e.version().get() != first).then_some(first),
            });
        }
    }
}

fn park_behind(
    plan: &mut StreamPlan,
    stream: &StreamBatch,
    v: StreamVersion,
    d: &Delivered,
    p: u64,
) {
    park(
        plan,
        stream,
        v,
        d,
        format!("waiting behind parked version {p}"),
        Some(p),
    );
}

fn park(
    plan: &mut StreamPlan,
    stream: &StreamBatch,
    v: StreamVersion,
    d: &Delivered,
    error: String,
    behind: Option<u64>,
) {
    plan.park.extend(d.ids.iter().map(|id| Parked {
        pk: stream.pk.clone(),
        version: v.get(),
        record: id.clone(),
        error: error.clone(),
        behind,
    }));
}

/// How many events of `run` fit one write of at most `actions_max` items:
/// the view, and one sum per distinct day or due date their dashboard
/// changes touch. At least one: an event's own changes are never split.
fn prefix_within(run: &[&Envelope], actions_max: usize) -> usize {
    let mut keys: Vec<SumKey> = Vec::new();
    for (n, e) in run.iter().enumerate() {
        dashboard::changes(e, |change| {
            let key = sum_add(change, None).key;
            if !keys.contains(&key) {
                keys.push(key);
            }
        });
        if n > 0 && 1 + keys.len() > actions_max {
            return n;
        }
    }
    run.len()
}

/// A folded run: the new stored view, its index, and the dashboard
/// additions of its events.
type Folded = (StoredView, Option<OrderIndex>, Vec<SumAdd>);

/// Folds a run of events onto a stored view with ledger-core's projection
/// code: the new stored view, its index, and the dashboard additions.
fn fold(key: ViewKey, stored: Option<&StoredView>, run: &[&Envelope]) -> Result<Folded, String> {
    match key.stream.kind() {
        StreamKind::Order => fold_order(key, stored, run),
        StreamKind::Credit => fold_credit(key, stored, run),
        StreamKind::Tenant | StreamKind::Vendor => Err("no view folds this stream".into()),
    }
}

fn fold_order(
    key: ViewKey,
    stored: Option<&StoredView>,
    run: &[&Envelope],
) -> Result<Folded, String> {
    let last_version = last_version(run);
    let tenant_id = key.tenant_id;
    let mut views = OrderViews::default();
    if let Some(stored) = stored {
        let view = OrderView::from_bytes(&stored.bytes)
            .map_err(|e| format!("the stored order view does not decode: {e}"))?;
        views.resume(tenant_id, view);
    }
    let mut sums = Vec::new();
    for e in run {
        admitted(views.apply(e), e)?;
        let currency = e.event.amount().map(|m| m.currency());
        dashboard::changes(e, |change| sums.push(sum_add(change, currency)));
    }
    let order_id = ledger_core::OrderId::from_text(key.stream.id());
    let view = views
        .get(tenant_id, order_id)
        .filter(|v| v.version == last_version)
        .ok_or("the order stream does not start with a sale")?;
    Ok((
        StoredView {
            version: last_version,
            bytes: view.to_bytes(),
        },
        Some(OrderIndex {
            vendor_id: view.vendor_id,
            occurred_at: view.occurred_at,
        }),
        sums,
    ))
}

fn fold_credit(
    key: ViewKey,
    stored: Option<&StoredView>,
    run: &[&Envelope],
) -> Result<Folded, String> {
    let last_version = last_version(run);
    let tenant_id = key.tenant_id;
    let mut accounts = CreditBalances::default();
    if let Some(stored) = stored {
        let view = CreditView::from_bytes(&stored.bytes)
            .map_err(|e| format!("the stored credit view does not decode: {e}"))?;
        accounts.resume(tenant_id, view);
    }
    for e in run {
        admitted(accounts.apply(e), e)?;
    }
    let employee_id = ledger_core::EmployeeId::from_text(key.stream.id());
    let view = accounts
        .get(tenant_id, employee_id)
        .filter(|v| v.version == last_version)
        .ok_or("the credit stream does not start with an opened account")?;
    Ok((
        StoredView {
            version: last_version,
            bytes: view.to_bytes(),
        },
        None,
        Vec::new(),
    ))
}

fn last_version(run: &[&Envelope]) -> StreamVersion {
    run.last().map_or(StreamVersion::NONE, |e| e.version())
}

/// Whether a view took `e` as its next event.
fn admitted(outcome: Outcome, e: &Envelope) -> Result<(), String> {
    match outcome {
        Outcome::Applied => Ok(()),
        other => Err(format!(
            "version {} was not the next of its stored view ({other:?})",
            e.version()
        )),
    }
}

fn sum_add(change: DashboardChange, currency: Option<ledger_core::Currency>) -> SumAdd {
    match change {
        DashboardChange::Day {
            tenant_id,
            vendor_id,
            date,
            delta,
        } => SumAdd {
            key: SumKey::Day {
                tenant_id,
                vendor_id,
                date,
            },
            add: Sum::Day(delta),
            currency,
        },
        DashboardChange::Receivable {
            tenant_id,
            vendor_id,
            due_date,
            delta,
        } => SumAdd {
            key: SumKey::Due {
                tenant_id,
                vendor_id,
                due_date,
            },
            add: Sum::Due(delta),
            currency,
        },
    }
}

/// The fewest items a write must allow: one event's view and the (at most
/// two) sums its dashboard changes touch.
pub const ACTIONS_MIN: usize = 3;

/// How big one atomic write may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Items per write (DynamoDB: 100 per transaction); at least
    /// [`ACTIONS_MIN`].
    pub actions: usize,
    /// Bytes of view items per write (DynamoDB: 4 MB per transaction; the
    /// default leaves room for keys and sums).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            actions: 100,
            bytes: 3_500_000,
        }
    }
}

/// Packs the gated views (each with its sums) into atomic writes within
/// `limits`; returns each write with the indexes of the plans in it.
/// A plan's view and its sums always share a write.
pub fn pack(plans: &[&StreamPlan], limits: Limits) -> Vec<(Write, Vec<usize>)> {
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for (i, plan) in plans.iter().enumerate() {
        let Some(view) = &plan.view else { continue };
        let mut merged: BTreeMap<SumKey, SumAdd> = BTreeMap::new();
        merge(&mut merged, &plan.sums);
        let fits = |o: &Open| {
            let new_keys = merged.keys().filter(|k| !o.sums.contains_key(k)).count();
            o.views.len() + 1 + o.sums.len() + new_keys <= limits.actions
                && o.bytes + view.view.bytes.len() <= limits.bytes
        };
        if open.as_ref().is_some_and(|o| !fits(o)) {
            out.push(open.take().map(Open::close).unwrap_or_default());
        }
        let o = open.get_or_insert_with(Open::default);
        o.views.push(view.clone());
        o.plans.push(i);
        o.bytes += view.view.bytes.len();
        merge(&mut o.sums, &plan.sums);
    }
    out.extend(open.map(Open::close));
    out
}

#[derive(Default)]
struct Open {
    views: Vec<ViewWrite>,
    sums: BTreeMap<SumKey, SumAdd>,
    plans: Vec<usize>,
    bytes: usize,
}

impl Open {
    fn close(self) -> (Write, Vec<usize>) {
        (
            Write {
                views: self.views,
                sums: self.sums.into_values().collect(),
            },
            self.plans,
        )
    }
}

fn merge(into: &mut BTreeMap<SumKey, SumAdd>, sums: &[SumAdd]) {
    for s in sums {
        into.entry(s.key)
            .and_modify(|acc| {
                acc.add.add(&s.add);
                acc.currency = acc.currency.or(s.currency);
            })
            .or_insert_with(|| s.clone());
    }
}

/// The stream of a view key, as the event table's partition key.
pub fn pk_of(tenant_id: TenantId, stream: StreamId) -> String {
    format!("{tenant_id}|{stream}")
}
