//! The read-model table: the port the stream projector writes its views
//! and sums through, with its contract, and an in-memory adapter
//! ([`MemoryTable`]) for property tests. The DynamoDB adapter is
//! `dynamodb::views::DynamoTable`; both pass [`conformance`].
//!
//! Three kinds of item:
//!
//! - **Views**, one per order and per credit account: the fold of one
//!   stream, stored with the stream version it reflects. Every write of a
//!   view is *gated*: it succeeds only if the stored version is the one the
//!   writer folded onto (or the view does not exist yet). That version is
//!   the stream's gate for every projection written with it.
//! - **Sums**, one per vendor and day and per vendor and due date: dashboard
//!   totals, only ever added to. A sum is written in the same atomic
//!   [`Write`] as the gated views whose events it adds, so an event's
//!   contribution lands exactly when its view's gate moves past it: never
//!   twice, never without it.
//! - **Parked records**: poison and the events waiting behind it, for
//!   operators and the replay CLI.

use std::future::Future;

use futures_util::StreamExt;

use ledger_core::projection::activity::{ActivityEntry, ActivityQuery};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::{
    Currency, EmployeeId, LocalDate, OrderId, StreamId, StreamKind, StreamVersion, TenantId,
    Timestamp, VendorId,
};
use rust_decimal::Decimal;

mod any;
pub mod conformance;
mod memory;

pub use any::AnyTable;

pub use memory::{Drift, MemoryState, MemoryTable, Projection};

/// A handle on whichever generation of a read-model table is live:
/// readers holding it read the generation set last (a server switches it
/// when it adopts a rebuilt generation).
#[derive(Clone, Debug)]
pub struct Live<T>(std::sync::Arc<std::sync::RwLock<T>>);

impl<T: Clone> Live<T> {
    pub fn new(table: T) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(table)))
    }

    /// The live generation's table.
    pub fn current(&self) -> T {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `table` the live generation for every later call.
    pub fn set(&self, table: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = table;
    }
}

/// An activity entry's place in its tenant's log, as text that sorts as
/// [`ActivityEntry::sort_key`] does: the record time (20 digits, offset so
/// negative instants sort first), the stream kind's rank, the stream id
/// and the version, separated by spaces (below every id byte, so a shorter
/// id sorts before its extensions as the zero-padded ids do). Both stores
/// order activity by it.
pub fn activity_rank(at: Timestamp, stream: StreamId, version: StreamVersion) -> String {
    let micros = (at.as_micros() as u64) ^ (1 << 63);
    let kind = StreamKind::ALL
        .iter()
        .position(|k| *k == stream.kind())
        .unwrap_or(0);
    format!("{micros:020} {kind} {} {:020}", stream.id(), version.get())
}

/// A view's key: the stream it folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    pub tenant_id: TenantId,
    pub stream: StreamId,
}

/// A stored view: the version of its stream it reflects, and its bytes
/// (`OrderView::to_bytes` / `CreditView::to_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredView {
    pub version: StreamVersion,
    pub bytes: Vec<u8>,
}

/// What an order view is listed by: its vendor and business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderIndex {
    pub vendor_id: VendorId,
    pub occurred_at: Timestamp,
}

/// A gated write of one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewWrite {
    pub key: ViewKey,
    /// The version the writer folded onto; `NONE`: the view must not exist.
    pub expect: StreamVersion,
    pub view: StoredView,
    pub index: Option<OrderIndex>,
}

/// A sum's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SumKey {
    /// A vendor's totals for a tenant-local day.
    Day {
        tenant_id: TenantId,
        vendor_id: VendorId,
        date: LocalDate,
    },
    /// A vendor's outstanding invoices due on a day.
    Due {
        tenant_id: TenantId,
        vendor_id: VendorId,
        due_date: LocalDate,
    },
}

/// What to add to a sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sum {
    Day(DayTotals),
    Due(Decimal),
}

impl Sum {
    /// A receivable that came to zero: settled, so it lists as absent (a
    /// day sum is never settled, whatever it holds).
    pub fn is_settled(&self) -> bool {
        matches!(self, Sum::Due(amount) if amount.is_zero())
    }

    /// Adds `other` to `self`; a sum of another kind is left out (keys fix
    /// the kind, so it never happens).
    pub fn add(&mut self, other: &Sum) {
        match (self, other) {
            (Sum::Day(a), Sum::Day(b)) => a.add(b),
            (Sum::Due(a), Sum::Due(b)) => *a += b,
            _ => {}
        }
    }
}

/// An addition to one sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumAdd {
    pub key: SumKey,
    pub add: Sum,
    /// The tenant's currency, stored beside the sum so it can be shown.
    pub currency: Option<Currency>,
}

/// One atomic write: every view's gate holds and every sum is added, or
/// nothing is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Write {
    pub views: Vec<ViewWrite>,
    pub sums: Vec<SumAdd>,
}

impl Write {
    /// Items the write touches (one per view and per sum).
    pub fn actions(&self) -> usize {
        self.views.len() + self.sums.len()
    }
}

/// A parked record: it cannot be projected, and neither can what follows it
/// in its stream until an operator redrives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The event item's partition key, as delivered (`tenant|stream`).
    pub pk: String,
    pub version: u64,
    /// The delivered record's id (its sequence number).
    pub record: String,
    /// Why it is parked.
    pub error: String,
    /// For an event parked only because an earlier one of its stream is:
    /// that version.
    pub behind: Option<u64>,
}

/// One order view as a listing returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: OrderId,
    pub index: OrderIndex,
    pub view: StoredView,
}

/// A range of a tenant's day sums: one vendor's, or every vendor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub tenant_id: TenantId,
    /// `None`: every vendor of the tenant.
    pub vendor_id: Option<VendorId>,
    pub from: LocalDate,
    /// Inclusive.
    pub to: LocalDate,
}

/// One stored day sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRow {
    pub vendor_id: VendorId,
    pub date: LocalDate,
    pub totals: DayTotals,
}

/// One stored due sum: what a vendor's invoices due on a day still owe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueRow {
    pub vendor_id: VendorId,
    pub due_date: LocalDate,
    pub amount: Decimal,
}

/// Writes of one [`ViewTable::write_many`] in flight at once, by default.
pub const WRITES_IN_FLIGHT_MAX: usize = 8;

/// Most rows one query of the port returns in one call; callers page.
pub const QUERY_ROWS_MAX: usize = 1_000;

/// Write capacity a write consumed, by projection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// AWS's formula over the items written.
    pub orders: f64,
    pub credit: f64,
    pub dashboard: f64,
    pub parked: f64,
    pub activity: f64,
    /// What the endpoint reported, for all of them together.
    pub reported: f64,
}

impl Cost {
    pub fn total(&self) -> f64 {
        self.orders + self.credit + self.dashboard + self.parked + self.activity
    }

    pub fn add(&mut self, other: &Cost) {
        self.orders += other.orders;
        self.credit += other.credit;
        self.dashboard += other.dashboard;
        self.parked += other.parked;
        self.activity += other.activity;
        self.reported += other.reported;
    }
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Gates that did not hold: the index of each view in the write and
    /// what is stored now. Nothing was written.
    #[error("{} view gate(s) did not hold", .0.len())]
    Conflict(Vec<(usize, Option<StoredView>)>),
    /// Anything else (throttled, unreachable, refused). Whether anything
    /// was written is unknown only in that the write is atomic: all or
    /// nothing.
    #[error(transparent)]
    Failed(#[from] TableError),
}

/// Why a read, a write or a park did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The backend failed or refused; `context` says what the table was
    /// doing.
    #[error("{context}: {}", crate::error_chain(.source.as_ref()))]
    Backend {
        context: String,
        #[source]
        source: crate::BoxError,
    },
    /// An item is not one this port writes.
    #[error("read-model item {0}")]
    Corrupt(String),
    /// The in-memory table's injected crash: every operation fails.
    #[error("the table crashed (injected)")]
    Crashed,
}

impl TableError {
    /// A backend failure while doing `context`.
    pub fn backend(context: impl Into<String>, source: impl Into<crate::BoxError>) -> TableError {
        TableError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// The read-model table.
///
/// The contract every adapter MUST keep (the [`conformance`] suite checks
/// it against [`MemoryTable`] and DynamoDB Local):
///
/// - `load` MUST return, in the order of `keys`, each key's stored view as
///   last written (a strongly consistent read), and `None` for a key never
///   written.
/// - `write` MUST apply every view and every sum of a [`Write`], or none:
///   when any view's stored version differs from its `expect` (`NONE`: the
///   view must not exist), it MUST fail with [`WriteError::Conflict`]
///   naming every such view (its index in `write.views`) with what is
///   stored, and write nothing.
/// - A sum MUST only ever be added to: two writes adding to one key store
///   the total, whatever their order.
/// - `park` MUST store each parked record under its stream key and version;
///   parking one twice MUST store it once (the later record wins).
/// - `parked_from` MUST return the lowest parked version of a stream key,
///   and `None` when nothing of it is parked.
/// - `parked` MUST return every parked record, by stream key then version.
/// - `unpark` MUST delete the stream key's parked records at versions up to
///   `through`, and only those; unparking what is not parked is no error.
/// - `record_activity` MUST store each entry under its `(tenant, stream,
///   version)`; storing one twice MUST store it once. A projector records
///   an event's entry only once the event's views and sums are written
///   (or it is a duplicate), so a stored entry means "projected".
/// - `seen` MUST say, reading strongly consistent, whether every named
///   event's entry is stored: the consistency wait of read-your-writes.
/// - `scan` MUST return everything stored (views, sums, parked records,
///   activity entries) as
///   a strongly consistent read: for audits, drift checks and tests, never
///   a request's path.
///
/// The queries the API answers from (each reads only what it returns, so
/// none costs more as history grows; each MAY trail the last `write` by
/// the adapter's index lag, which the caller's consistency wait covers):
///
/// - `orders` MUST return the tenant's order views (one vendor's when
///   `vendor_id` is set) whose `occurred_at` is in `[from, until)` and
///   whose `(occurred_at, order_id)` is below `cursor` when set, newest
///   first by `(occurred_at, order_id)`, at most `limit` (capped at
///   [`QUERY_ROWS_MAX`]), each with the index it was written with.
/// - `day_sums` MUST return every stored day sum of the range (`from` to
///   `to` inclusive; one vendor's or every vendor's of the tenant), ordered
///   by date then vendor.
/// - `due_sums` MUST return every due sum of the tenant (one vendor's when
///   set) that is not settled (`Sum::is_settled`: it came to zero), ordered
///   by due date then vendor. A settled due sum MUST NOT stay where the
///   listing reads it (an adapter deletes it), so the dashboard's
///   receivables cost what is outstanding, not the tenant's history; one
///   an interrupted write left behind is read and dropped. `scan` MAY
///   omit settled due sums.
/// - `credit_views` MUST return the tenant's credit views in employee id
///   order, those above `after` when set, at most `limit` (capped at
///   [`QUERY_ROWS_MAX`]).
/// - `activity` MUST return the tenant's entries matching the filter (by
///   vendor, by actor, or all), below `cursor` when set, newest first by
///   `(recorded_at, stream, version)`, at most `limit` (capped at
///   [`QUERY_ROWS_MAX`]).
/// - No query MUST ever return another tenant's items.
pub trait ViewTable: Send + Sync {
    /// The stored views of `keys`, in order (strongly consistent).
    fn load(
        &self,
        keys: &[ViewKey],
    ) -> impl Future<Output = Result<Vec<Option<StoredView>>, TableError>> + Send;

    /// The lowest version of the stream that is parked, if any.
    fn parked_from(&self, pk: &str)
    -> impl Future<Output = Result<Option<u64>, TableError>> + Send;

    /// Every parked record, by stream key then version: what operators
    /// look at and redrive from.
    fn parked(&self) -> impl Future<Output = Result<Vec<Parked>, TableError>> + Send;

    /// Deletes the parked records of the stream key `pk` at versions up to
    /// `through`: they were applied.
    fn unpark(&self, pk: &str, through: u64)
    -> impl Future<Output = Result<(), TableError>> + Send;

    /// Writes `write` atomically, gates first.
    fn write(&self, write: &Write) -> impl Future<Output = Result<Cost, WriteError>> + Send;

    /// Writes each of `writes` as [`ViewTable::write`] would, and answers
    /// each one's outcome in order. The writes touch disjoint views; an
    /// adapter may send them together ([`WRITES_IN_FLIGHT_MAX`] at a time,
    /// the default) or in one round trip.
    fn write_many(
        &self,
        writes: &[Write],
    ) -> impl Future<Output = Vec<Result<Cost, WriteError>>> + Send {
        let sends: Vec<_> = writes.iter().map(|w| self.write(w)).collect();
        futures_util::stream::iter(sends)
            .buffered(WRITES_IN_FLIGHT_MAX)
            .collect()
    }

    /// Stores parked records; storing one twice stores it once.
    fn park(&self, parked: &[Parked]) -> impl Future<Output = Result<Cost, TableError>> + Send;

    /// Stores the activity entries of projected events; storing one twice
    /// stores it once.
    fn record_activity(
        &self,
        entries: &[ActivityEntry],
    ) -> impl Future<Output = Result<Cost, TableError>> + Send;

    /// A page of a tenant's activity entries, newest first.
    fn activity(
        &self,
        query: &ActivityQuery,
    ) -> impl Future<Output = Result<Vec<ActivityEntry>, TableError>> + Send;

    /// Whether every one of `events` has its activity entry stored (read
    /// strongly consistent).
    fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> impl Future<Output = Result<bool, TableError>> + Send;

    /// Everything stored.
    fn scan(&self) -> impl Future<Output = Result<MemoryState, TableError>> + Send;

    /// A page of order views, newest first.
    fn orders(
        &self,
        query: &OrderListQuery,
    ) -> impl Future<Output = Result<Vec<OrderRow>, TableError>> + Send;

    /// The day sums of a range.
    fn day_sums(
        &self,
        range: &DayRange,
    ) -> impl Future<Output = Result<Vec<DayRow>, TableError>> + Send;

    /// The due sums of a tenant, or of one of its vendors.
    fn due_sums(
        &self,
        tenant_id: TenantId,
        vendor_id: Option<VendorId>,
    ) -> impl Future<Output = Result<Vec<DueRow>, TableError>> + Send;

    /// A page of the tenant's credit views, by employee id.
    fn credit_views(
        &self,
        tenant_id: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(EmployeeId, StoredView)>, TableError>> + Send;
}

/// A shared table is the table.
impl<T: ViewTable> ViewTable for std::sync::Arc<T> {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        (**self).load(keys).await
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        (**self).parked_from(pk).await
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        (**self).write(write).await
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        (**self).park(parked).await
    }

    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        (**self).parked().await
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        (**self).unpark(pk, through).await
    }

    async fn record_activity(&self, entries: &[ActivityEntry]) -> Result<Cost, TableError> {
        (**self).record_activity(entries).await
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, TableError> {
        (**self).activity(query).await
    }

    async fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> Result<bool, TableError> {
        (**self).seen(tenant_id, events).await
    }

    async fn write_many(&self, writes: &[Write]) -> Vec<Result<Cost, WriteError>> {
        (**self).write_many(writes).await
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        (**self).scan().await
    }

    async fn orders(&self, query: &OrderListQuery) -> Result<Vec<OrderRow>, TableError> {
        (**self).orders(query).await
    }

    async fn day_sums(&self, range: &DayRange) -> Result<Vec<DayRow>, TableError> {
        (**self).day_sums(range).await
    }

    async fn due_sums(
        &self,
        tenant_id: TenantId,
        vendor_id: Option<VendorId>,
    ) -> Result<Vec<DueRow>, TableError> {
        (**self).due_sums(tenant_id, vendor_id).await
    }

    async fn credit_views(
        &self,
        tenant_id: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(EmployeeId, StoredView)>, TableError> {
        (**self).credit_views(tenant_id, after, limit).await
    }
}
