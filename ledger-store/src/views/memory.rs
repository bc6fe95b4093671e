//! The in-memory read-model table: the port's semantics with faults on
//! demand, for property tests, and the shape a scan of any table is read
//! into ([`MemoryState`]) to compare with a fresh fold.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ledger_core::projection::ReadModels;
use ledger_core::projection::activity::{ActivityEntry, ActivityQuery};
use ledger_core::projection::credit::CreditView;
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::projection::orders::OrderView;
use ledger_core::{EmployeeId, OrderId, StreamId, StreamKind, StreamVersion, TenantId, VendorId};
use rustc_hash::FxHashMap;

use super::{
    Cost, DayRange, DayRow, DueRow, OrderIndex, OrderRow, Parked, QUERY_ROWS_MAX, StoredView, Sum,
    SumKey, TableError, ViewKey, ViewTable, Write, WriteError,
};

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
    /// The index each order view was last written with.
    pub indexes: FxHashMap<ViewKey, OrderIndex>,
    pub sums: BTreeMap<SumKey, Sum>,
    pub parked: BTreeMap<(String, u64), Parked>,
    /// The activity entry of every projected event.
    pub activity: BTreeMap<(TenantId, StreamId, StreamVersion), ActivityEntry>,
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

    fn spend(state: &mut MemoryState) -> Result<(), TableError> {
        match &mut state.budget {
            Some(0) => Err(TableError::Crashed),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl ViewTable for MemoryTable {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        Ok(keys.iter().map(|k| state.views.get(k).cloned()).collect())
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        Ok(state
            .parked
            .range((pk.to_owned(), 0)..=(pk.to_owned(), u64::MAX))
            .next()
            .map(|((_, v), _)| *v))
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
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
            if let Some(index) = w.index {
                state.indexes.insert(w.key, index);
            }
        }
        for s in &write.sums {
            let total = match state.sums.get(&s.key) {
                Some(stored) => {
                    let mut total = *stored;
                    total.add(&s.add);
                    total
                }
                None => s.add,
            };
            if total.is_settled() {
                state.sums.remove(&s.key);
            } else {
                state.sums.insert(s.key, total);
            }
        }
        state.writes += 1;
        Ok(Cost::default())
    }

    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        Ok(state.parked.values().cloned().collect())
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        state
            .parked
            .retain(|(p, version), _| p != pk || *version > through);
        Ok(())
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        for p in parked {
            state.parked.insert((p.pk.clone(), p.version), p.clone());
        }
        Ok(Cost::default())
    }

    async fn orders(&self, query: &OrderListQuery) -> Result<Vec<OrderRow>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        let mut rows: Vec<OrderRow> = state
            .indexes
            .iter()
            .filter(|(key, index)| {
                key.tenant_id == query.tenant_id
                    && query.vendor_id.is_none_or(|v| v == index.vendor_id)
                    && (query.from..query.until).contains(&index.occurred_at)
            })
            .filter_map(|(key, index)| {
                let order_id = OrderId::from_text(key.stream.id());
                let below = query
                    .cursor
                    .is_none_or(|c| (index.occurred_at, order_id) < c);
                let view = state.views.get(key)?;
                below.then(|| OrderRow {
                    order_id,
                    index: *index,
                    view: view.clone(),
                })
            })
            .collect();
        rows.sort_unstable_by_key(|r| std::cmp::Reverse((r.index.occurred_at, r.order_id)));
        rows.truncate(query.limit.min(QUERY_ROWS_MAX));
        Ok(rows)
    }

    async fn day_sums(&self, range: &DayRange) -> Result<Vec<DayRow>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        let mut rows: Vec<DayRow> = state
            .sums
            .iter()
            .filter_map(|(key, sum)| match (key, sum) {
                (
                    SumKey::Day {
                        tenant_id,
                        vendor_id,
                        date,
                    },
                    Sum::Day(totals),
                ) if *tenant_id == range.tenant_id
                    && range.vendor_id.is_none_or(|v| v == *vendor_id)
                    && (range.from..=range.to).contains(date) =>
                {
                    Some(DayRow {
                        vendor_id: *vendor_id,
                        date: *date,
                        totals: *totals,
                    })
                }
                _ => None,
            })
            .collect();
        rows.sort_unstable_by_key(|r| (r.date, r.vendor_id));
        Ok(rows)
    }

    async fn due_sums(
        &self,
        tenant: TenantId,
        vendor: Option<VendorId>,
    ) -> Result<Vec<DueRow>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        let mut rows: Vec<DueRow> = state
            .sums
            .iter()
            .filter_map(|(key, sum)| match (key, sum) {
                (
                    SumKey::Due {
                        tenant_id,
                        vendor_id,
                        due_date,
                    },
                    Sum::Due(amount),
                ) if *tenant_id == tenant && vendor.is_none_or(|v| v == *vendor_id) => {
                    Some(DueRow {
                        vendor_id: *vendor_id,
                        due_date: *due_date,
                        amount: *amount,
                    })
                }
                _ => None,
            })
            .collect();
        rows.sort_unstable_by_key(|r| (r.due_date, r.vendor_id));
        Ok(rows)
    }

    async fn credit_views(
        &self,
        tenant: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(EmployeeId, StoredView)>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        let mut rows: Vec<(EmployeeId, StoredView)> = state
            .views
            .iter()
            .filter(|(key, _)| key.tenant_id == tenant && key.stream.kind() == StreamKind::Credit)
            .map(|(key, view)| (EmployeeId::from_text(key.stream.id()), view.clone()))
            .filter(|(employee, _)| after.is_none_or(|a| *employee > a))
            .collect();
        rows.sort_unstable_by_key(|(employee, _)| *employee);
        rows.truncate(limit.min(QUERY_ROWS_MAX));
        Ok(rows)
    }

    async fn record_activity(&self, entries: &[ActivityEntry]) -> Result<Cost, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        for e in entries {
            state
                .activity
                .insert((e.tenant_id, e.stream, e.version), e.clone());
        }
        Ok(Cost::default())
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        let mut rows: Vec<ActivityEntry> = state
            .activity
            .values()
            .filter(|e| {
                e.tenant_id == query.tenant_id
                    && query.filter.matches(e)
                    && query.cursor.is_none_or(|c| e.sort_key() < c)
            })
            .cloned()
            .collect();
        rows.sort_unstable_by_key(|e| std::cmp::Reverse(e.sort_key()));
        rows.truncate(query.limit.min(QUERY_ROWS_MAX));
        Ok(rows)
    }

    async fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> Result<bool, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        Ok(events
            .iter()
            .all(|(stream, version)| state.activity.contains_key(&(tenant_id, *stream, *version))))
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        Self::spend(&mut state)?;
        Ok(state.clone())
    }
}

/// A read model, as drift reports name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    Orders,
    Credit,
    Dashboard,
    Activity,
}

impl Projection {
    pub const ALL: [Projection; 4] = [
        Projection::Orders,
        Projection::Credit,
        Projection::Dashboard,
        Projection::Activity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Projection::Orders => "orders",
            Projection::Credit => "credit",
            Projection::Dashboard => "dashboard",
            Projection::Activity => "activity",
        }
    }
}

/// One difference between stored read models and a fresh fold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub projection: Projection,
    /// What differs: a view's stream, a sum's key, an activity entry's
    /// event, or a count.
    pub key: String,
    /// What the fresh fold has (`absent`: nothing).
    pub expected: String,
    /// What is stored (`absent`: nothing).
    pub found: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: stored {}, fresh fold {}",
            self.projection.as_str(),
            self.key,
            self.found,
            self.expected
        )
    }
}

const ABSENT: &str = "absent";

fn drift(
    projection: Projection,
    key: String,
    expected: Option<String>,
    found: Option<String>,
) -> Drift {
    Drift {
        projection,
        key,
        expected: expected.unwrap_or_else(|| ABSENT.to_owned()),
        found: found.unwrap_or_else(|| ABSENT.to_owned()),
    }
}

impl MemoryState {
    /// How these read models differ from `fresh`, the same projections
    /// folded from scratch: one [`Drift`] per difference, empty when they
    /// agree. Tests assert convergence with it; the replay CLI reports it.
    pub fn drift(&self, fresh: &ReadModels) -> Vec<Drift> {
        let mut out = Vec::new();
        self.views_drift(fresh, &mut out);
        self.sums_drift(fresh, &mut out);
        self.activity_drift(fresh, &mut out);
        out
    }

    /// The activity entries that differ from the fresh fold's.
    fn activity_drift(&self, fresh: &ReadModels, out: &mut Vec<Drift>) {
        let mut want: BTreeMap<(TenantId, StreamId, StreamVersion), &ActivityEntry> = fresh
            .activity
            .entries()
            .map(|e| ((e.tenant_id, e.stream, e.version), e))
            .collect();
        let key = |(t, s, v): &(TenantId, StreamId, StreamVersion)| format!("{t}|{s}@{v}");
        for (k, entry) in &self.activity {
            match want.remove(k) {
                Some(w) if w == entry => {}
                w => out.push(drift(
                    Projection::Activity,
                    key(k),
                    w.map(|w| format!("{w:?}")),
                    Some(format!("{entry:?}")),
                )),
            }
        }
        for (k, entry) in want {
            out.push(drift(
                Projection::Activity,
                key(&k),
                Some(format!("{entry:?}")),
                None,
            ));
        }
    }

    /// The views that differ from the fresh fold's, then the counts.
    fn views_drift(&self, fresh: &ReadModels, out: &mut Vec<Drift>) {
        let (mut orders, mut accounts) = (0usize, 0usize);
        for (key, stored) in &self.views {
            match key.stream.kind() {
                StreamKind::Order => orders += 1,
                StreamKind::Credit => accounts += 1,
                _ => {}
            }
            out.extend(view_drift(key, stored, fresh));
        }
        if orders != fresh.orders.len() {
            out.push(drift(
                Projection::Orders,
                "count of order views".to_owned(),
                Some(fresh.orders.len().to_string()),
                Some(orders.to_string()),
            ));
        }
        let tenants: std::collections::BTreeSet<TenantId> =
            self.views.keys().map(|k| k.tenant_id).collect();
        let fresh_accounts: usize = tenants
            .iter()
            .map(|t| fresh.credit.accounts(*t).count())
            .sum();
        if accounts != fresh_accounts {
            out.push(drift(
                Projection::Credit,
                "count of credit views".to_owned(),
                Some(fresh_accounts.to_string()),
                Some(accounts.to_string()),
            ));
        }
    }

    /// The dashboard sums that differ from the fresh fold's.
    fn sums_drift(&self, fresh: &ReadModels, out: &mut Vec<Drift>) {
        // A settled receivable reads as absent, stored or not.
        let mut want = fresh_sums(fresh);
        want.retain(|_, sum| !sum.is_settled());
        for (key, sum) in self.sums.iter().filter(|(_, sum)| !sum.is_settled()) {
            match want.remove(key) {
                Some(w) if &w == sum => {}
                w => out.push(drift(
                    Projection::Dashboard,
                    format!("{key:?}"),
                    w.map(|w| format!("{w:?}")),
                    Some(format!("{sum:?}")),
                )),
            }
        }
        for (key, sum) in want {
            out.push(drift(
                Projection::Dashboard,
                format!("{key:?}"),
                Some(format!("{sum:?}")),
                None,
            ));
        }
    }
}

/// How one stored view differs from the fresh fold's, if it does.
fn view_drift(key: &ViewKey, stored: &StoredView, fresh: &ReadModels) -> Option<Drift> {
    let id = key.stream.id();
    let name = format!("{}|{}", key.tenant_id, key.stream);
    let at_zero = stored.version.get() == 0;
    match key.stream.kind() {
        StreamKind::Order => {
            let want = fresh.orders.get(key.tenant_id, OrderId::from_text(id));
            match OrderView::from_bytes(&stored.bytes) {
                Ok(got) if Some(&got) == want && !at_zero => None,
                Ok(got) => Some(drift(
                    Projection::Orders,
                    name,
                    want.map(|w| format!("{w:?}")),
                    Some(format!("{got:?} at version {}", stored.version)),
                )),
                Err(e) => Some(drift(
                    Projection::Orders,
                    name,
                    want.map(|w| format!("{w:?}")),
                    Some(format!("undecodable: {e}")),
                )),
            }
        }
        StreamKind::Credit => {
            let want = fresh.credit.get(key.tenant_id, EmployeeId::from_text(id));
            match CreditView::from_bytes(&stored.bytes) {
                Ok(got) if Some(&got) == want && !at_zero => None,
                Ok(got) => Some(drift(
                    Projection::Credit,
                    name,
                    want.map(|w| format!("{w:?}")),
                    Some(format!("{got:?} at version {}", stored.version)),
                )),
                Err(e) => Some(drift(
                    Projection::Credit,
                    name,
                    want.map(|w| format!("{w:?}")),
                    Some(format!("undecodable: {e}")),
                )),
            }
        }
        kind => Some(drift(
            Projection::Orders,
            name,
            None,
            Some(format!("a view of a {kind:?} stream")),
        )),
    }
}

/// Every dashboard sum of the fresh fold, by key.
fn fresh_sums(fresh: &ReadModels) -> BTreeMap<SumKey, Sum> {
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
    want
}
