//! The read-model table as the projector sees it, and an in-memory table
//! with the same semantics for property tests.
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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use ledger_core::projection::dashboard::DayTotals;
use ledger_core::{Currency, LocalDate, StreamId, StreamVersion, TenantId, Timestamp, VendorId};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

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

/// Write capacity a write consumed, by projection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// AWS's formula over the items written.
    pub orders: f64,
    pub credit: f64,
    pub dashboard: f64,
    pub parked: f64,
    /// What the endpoint reported, for all of them together.
    pub reported: f64,
}

impl Cost {
    pub fn total(&self) -> f64 {
        self.orders + self.credit + self.dashboard + self.parked
    }

    pub fn add(&mut self, other: &Cost) {
        self.orders += other.orders;
        self.credit += other.credit;
        self.dashboard += other.dashboard;
        self.parked += other.parked;
        self.reported += other.reported;
    }
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Gates that did not hold: the index of each view in the write and
    /// what is stored now. Nothing was written.
    #[error("{} view gate(s) did not hold", .0.len())]
    Conflict(Vec<(usize, Option<StoredView>)>),
    /// Anything else (throttled, unreachable, refused). Whether anything
    /// was written is unknown only in that the write is atomic: all or
    /// nothing.
    #[error("{0}")]
    Failed(String),
}

/// Why a read or a park did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TableError(pub String);

/// The read-model table. Implementations: [`MemoryTable`] and
/// `DynamoTable`.
pub trait Table: Send + Sync {
    /// The stored views of `keys`, in order (strongly consistent).
    fn load(
        &self,
        keys: &[ViewKey],
    ) -> impl Future<Output = Result<Vec<Option<StoredView>>, TableError>> + Send;

    /// The lowest version of the stream that is parked, if any.
    fn parked_from(&self, pk: &str)
    -> impl Future<Output = Result<Option<u64>, TableError>> + Send;

    /// Writes `write` atomically, gates first.
    fn write(&self, write: &Write) -> impl Future<Output = Result<Cost, WriteError>> + Send;

    /// Stores parked records; storing one twice stores it once.
    fn park(&self, parked: &[Parked]) -> impl Future<Output = Result<Cost, TableError>> + Send;
}

/// An in-memory table with the semantics of the DynamoDB one, and faults
/// on demand: after a budget of operations, every operation fails, as if
/// the process had died there.
#[derive(Debug, Default)]
pub struct MemoryTable {
    state: Mutex<MemoryState>,
}

/// Everything a [`MemoryTable`] holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryState {
    pub views: FxHashMap<ViewKey, StoredView>,
    pub sums: BTreeMap<SumKey, Sum>,
    pub parked: BTreeMap<(String, u64), Parked>,
    /// Operations left before the table "crashes"; `None`: no limit.
    pub budget: Option<u64>,
    /// Writes that happened.
    pub writes: u64,
}

impl MemoryTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `ops` more operations succeed, then fails every one.
    pub fn crash_after(&self, ops: u64) {
        self.lock().budget = Some(ops);
    }

    /// Lifts the crash: a restarted process sees the same table.
    pub fn recover(&self) {
        self.lock().budget = None;
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> MemoryState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave the state half
        // changed: every operation checks before it mutates.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spend(state: &mut MemoryState) -> Result<(), String> {
        match &mut state.budget {
            Some(0) => Err("injected crash".into()),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Table for MemoryTable {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state).map_err(TableError)?;
        Ok(keys.iter().map(|k| state.views.get(k).cloned()).collect())
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state).map_err(TableError)?;
        Ok(state
            .parked
            .range((pk.to_owned(), 0)..=(pk.to_owned(), u64::MAX))
            .next()
            .map(|((_, v), _)| *v))
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state).map_err(WriteError::Failed)?;
        let conflicts: Vec<(usize, Option<StoredView>)> = write
            .views
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let stored = state.views.get(&w.key);
                let holds = stored.map_or(StreamVersion::NONE, |s| s.version) == w.expect;
                (!holds).then(|| (i, stored.cloned()))
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(WriteError::Conflict(conflicts));
        }
        for w in &write.views {
            state.views.insert(w.key, w.view.clone());
        }
        for s in &write.sums {
            state
                .sums
                .entry(s.key)
                .and_modify(|sum| sum.add(&s.add))
                .or_insert(s.add);
        }
        state.writes += 1;
        Ok(Cost::default())
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state).map_err(TableError)?;
        for p in parked {
            state.parked.insert((p.pk.clone(), p.version), p.clone());
        }
        Ok(Cost::default())
    }
}

impl MemoryState {
    /// How these read models differ from `fresh`, the same projections
    /// folded from scratch: one line per difference, empty when they agree.
    /// Tests assert convergence with it; the replay CLI reports drift.
    pub fn drift(&self, fresh: &ledger_core::projection::ReadModels) -> Vec<String> {
        use ledger_core::projection::credit::CreditView;
        use ledger_core::projection::orders::OrderView;
        use ledger_core::{EmployeeId, OrderId, StreamKind};

        let mut out = Vec::new();
        let (mut orders, mut accounts) = (0usize, 0usize);
        for (key, stored) in &self.views {
            let id = key.stream.id();
            match key.stream.kind() {
                StreamKind::Order => {
                    orders += 1;
                    let want = fresh.orders.get(key.tenant_id, OrderId::from_text(id));
                    match OrderView::from_bytes(&stored.bytes) {
                        Ok(got) if Some(&got) == want => {}
                        Ok(got) => out.push(format!(
                            "order {}|{id}: stored {got:?}, fresh fold {want:?}",
                            key.tenant_id
                        )),
                        Err(e) => out.push(format!("order {}|{id}: {e}", key.tenant_id)),
                    }
                }
                StreamKind::Credit => {
                    accounts += 1;
                    let want = fresh.credit.get(key.tenant_id, EmployeeId::from_text(id));
                    match CreditView::from_bytes(&stored.bytes) {
                        Ok(got) if Some(&got) == want => {}
                        Ok(got) => out.push(format!(
                            "credit {}|{id}: stored {got:?}, fresh fold {want:?}",
                            key.tenant_id
                        )),
                        Err(e) => out.push(format!("credit {}|{id}: {e}", key.tenant_id)),
                    }
                }
                kind => out.push(format!("a view of a {kind:?} stream: {}", key.stream)),
            }
            if stored.version.get() == 0 {
                out.push(format!("view {} at version 0", key.stream));
            }
        }
        if orders != fresh.orders.len() {
            out.push(format!(
                "{orders} order views stored, {} in the fresh fold",
                fresh.orders.len()
            ));
        }
        let tenants: std::collections::BTreeSet<TenantId> =
            self.views.keys().map(|k| k.tenant_id).collect();
        let fresh_accounts: usize = tenants
            .iter()
            .map(|t| fresh.credit.accounts(*t).count())
            .sum();
        if accounts != fresh_accounts {
            out.push(format!(
                "{accounts} credit views stored, {fresh_accounts} in the fresh fold"
            ));
        }
        let mut want: BTreeMap<SumKey, Sum> = BTreeMap::new();
        for ((tenant_id, vendor_id, date), totals) in fresh.dashboard.days() {
            want.insert(
                SumKey::Day {
                    tenant_id,
                    vendor_id,
                    date,
                },
                Sum::Day(*totals),
            );
        }
        for ((tenant_id, vendor_id, due_date), amount) in fresh.dashboard.receivables() {
            want.insert(
                SumKey::Due {
                    tenant_id,
                    vendor_id,
                    due_date,
                },
                Sum::Due(amount),
            );
        }
        for (key, sum) in &self.sums {
            match want.remove(key) {
                Some(w) if &w == sum => {}
                w => out.push(format!("{key:?}: stored {sum:?}, fresh fold {w:?}")),
            }
        }
        for (key, sum) in want {
            out.push(format!("{key:?}: not stored, fresh fold {sum:?}"));
        }
        out
    }
}
