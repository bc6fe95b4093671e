//! What projecting a log must give, and what the table may hold on the way.
//!
//! - [`assert_converged`]: after convergence, the table equals the fold of
//!   the log from scratch by ledger-core's `ReadModels`, and nothing is
//!   parked.
//! - [`Cuts`]: at every moment in between, the table is a consistent cut of
//!   the log: each view is the fold of its stream up to the version it
//!   claims, and each sum is exactly what those versions add (an event's
//!   dashboard effect lands with its view's gate, never twice, never
//!   without it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use ledger_core::projection::credit::CreditView;
use ledger_core::projection::dashboard::{self, DashboardChange};
use ledger_core::projection::orders::OrderView;
use ledger_core::projection::{CreditBalances, OrderViews, Outcome, ReadModels};
use ledger_core::{EmployeeId, Envelope, OrderId, StreamId, StreamKind, StreamVersion};
use ledger_store::views::{MemoryState, StoredView, Sum, SumKey, ViewKey};
use projector::plan::pk_of;

/// Lines of a diff shown before the rest is counted.
const DIFF_LINES_MAX: usize = 20;

/// `Ok` when `state` holds exactly the fold of `log` (in commit order) and
/// nothing is parked; otherwise every difference, one per line.
pub fn assert_converged(state: &MemoryState, log: &[Envelope]) -> Result<(), String> {
    let mut diff = read_model_diff(state, log);
    if !state.parked.is_empty() {
        diff.push(format!(
            "parked, expected nothing: {:?}",
            state.parked.values().collect::<Vec<_>>()
        ));
    }
    into_result(diff)
}

/// Every difference between the table's views and sums and the fold of
/// `log` from scratch (parked records are the caller's to check).
pub fn read_model_diff(state: &MemoryState, log: &[Envelope]) -> Vec<String> {
    let mut fresh = ReadModels::default();
    let mut tenants = BTreeSet::new();
    for envelope in log {
        assert_eq!(
            fresh.apply(envelope),
            Outcome::Applied,
            "the expected log must be in commit order"
        );
        tenants.insert(envelope.tenant_id());
    }
    let mut diff = Vec::new();
    let (mut orders, mut accounts) = (0, 0);
    for (key, stored) in &state.views {
        let pk = pk_of(key.tenant_id, key.stream);
        match key.stream.kind() {
            StreamKind::Order => {
                orders += 1;
                let expected = fresh
                    .orders
                    .get(key.tenant_id, OrderId::from_text(key.stream.id()));
                compare_view(
                    &mut diff,
                    &pk,
                    stored,
                    OrderView::from_bytes(&stored.bytes).map_err(|e| e.to_string()),
                    expected,
                    |v| v.version,
                );
            }
            StreamKind::Credit => {
                accounts += 1;
                let expected = fresh
                    .credit
                    .get(key.tenant_id, EmployeeId::from_text(key.stream.id()));
                compare_view(
                    &mut diff,
                    &pk,
                    stored,
                    CreditView::from_bytes(&stored.bytes).map_err(|e| e.to_string()),
                    expected,
                    |v| v.version,
                );
            }
            kind => diff.push(format!("{pk}: a view of a {kind:?} stream")),
        }
    }
    if orders != fresh.orders.len() {
        diff.push(format!(
            "order views: {orders} stored, {} in the fold",
            fresh.orders.len()
        ));
        for (tenant_id, view) in fresh.orders.iter() {
            let stream = StreamId::order(view.order_id);
            if !state.views.contains_key(&ViewKey { tenant_id, stream }) {
                diff.push(format!("{}: missing", pk_of(tenant_id, stream)));
            }
        }
    }
    let fold_accounts: usize = tenants
        .iter()
        .map(|t| fresh.credit.accounts(*t).count())
        .sum();
    if accounts != fold_accounts {
        diff.push(format!(
            "credit views: {accounts} stored, {fold_accounts} in the fold"
        ));
        for tenant_id in &tenants {
            for view in fresh.credit.accounts(*tenant_id) {
                let stream = StreamId::credit(view.employee_id);
                let key = ViewKey {
                    tenant_id: *tenant_id,
                    stream,
                };
                if !state.views.contains_key(&key) {
                    diff.push(format!("{}: missing", pk_of(*tenant_id, stream)));
                }
            }
        }
    }
    let mut sums: BTreeMap<SumKey, Sum> = BTreeMap::new();
    for ((tenant_id, vendor_id, date), totals) in fresh.dashboard.days() {
        let key = SumKey::Day {
            tenant_id,
            vendor_id,
            date,
        };
        sums.insert(key, Sum::Day(*totals));
    }
    for ((tenant_id, vendor_id, due_date), amount) in fresh.dashboard.receivables() {
        let key = SumKey::Due {
            tenant_id,
            vendor_id,
            due_date,
        };
        sums.insert(key, Sum::Due(amount));
    }
    compare_sums(&mut diff, &state.sums, &sums);
    diff
}

fn compare_view<V: PartialEq + Debug>(
    diff: &mut Vec<String>,
    pk: &str,
    stored: &StoredView,
    decoded: Result<V, String>,
    expected: Option<&V>,
    version: impl Fn(&V) -> StreamVersion,
) {
    let view = match decoded {
        Ok(view) => view,
        Err(e) => {
            diff.push(format!("{pk}: the stored view does not decode: {e}"));
            return;
        }
    };
    if version(&view) != stored.version {
        diff.push(format!(
            "{pk}: stored as version {} but the view says {}",
            stored.version,
            version(&view)
        ));
    }
    match expected {
        None => diff.push(format!(
            "{pk}: stored at version {}, not in the fold",
            stored.version
        )),
        Some(expected) if *expected != view => diff.push(format!(
            "{pk}: stored at version {}, the fold is at version {}\n  stored: {view:?}\n  fold:   {expected:?}",
            stored.version,
            version(expected)
        )),
        Some(_) => {}
    }
}

/// Sums compare by value: a `Decimal` of another scale is the same sum.
fn compare_sums(
    diff: &mut Vec<String>,
    stored: &BTreeMap<SumKey, Sum>,
    expected: &BTreeMap<SumKey, Sum>,
) {
    // A settled receivable (a due sum at zero) reads as absent, stored or
    // not: adapters delete it.
    let live = |sums: &BTreeMap<SumKey, Sum>| -> BTreeMap<SumKey, Sum> {
        sums.iter()
            .filter(|(_, sum)| !sum.is_settled())
            .map(|(k, v)| (*k, *v))
            .collect()
    };
    let (stored, expected) = (&live(stored), &live(expected));
    for (key, sum) in stored {
        match expected.get(key) {
            None => diff.push(format!("sum {key:?}: stored {sum:?}, expected none")),
            Some(want) if want != sum => {
                diff.push(format!(
                    "sum {key:?}:\n  stored:   {sum:?}\n  expected: {want:?}"
                ));
            }
            Some(_) => {}
        }
    }
    for (key, want) in expected {
        if !stored.contains_key(key) {
            diff.push(format!("sum {key:?}: missing, expected {want:?}"));
        }
    }
}

fn into_result(mut diff: Vec<String>) -> Result<(), String> {
    if diff.is_empty() {
        return Ok(());
    }
    let more = diff.len().saturating_sub(DIFF_LINES_MAX);
    diff.truncate(DIFF_LINES_MAX);
    if more > 0 {
        diff.push(format!("... and {more} more differences"));
    }
    Err(diff.join("\n"))
}

/// Every prefix of every stream's fold, to check that a table is a
/// consistent cut of the log at any moment.
pub struct Cuts {
    /// Per stream with a view: the view's bytes after version `i + 1`.
    views: HashMap<ViewKey, Vec<Vec<u8>>>,
    /// Per order stream: what version `i + 1` adds to the dashboard.
    sums: HashMap<ViewKey, Vec<Vec<(SumKey, Sum)>>>,
}

impl Cuts {
    /// `log` in commit order.
    pub fn new(log: &[Envelope]) -> Cuts {
        let mut orders = OrderViews::default();
        let mut credit = CreditBalances::default();
        let mut views: HashMap<ViewKey, Vec<Vec<u8>>> = HashMap::new();
        let mut sums: HashMap<ViewKey, Vec<Vec<(SumKey, Sum)>>> = HashMap::new();
        for envelope in log {
            let tenant_id = envelope.tenant_id();
            let key = ViewKey {
                tenant_id,
                stream: envelope.stream(),
            };
            let id = key.stream.id();
            let bytes = match key.stream.kind() {
                StreamKind::Order => {
                    assert_eq!(orders.apply(envelope), Outcome::Applied);
                    let mut adds = Vec::new();
                    dashboard::changes(envelope, |change| adds.push(sum_of(change)));
                    sums.entry(key).or_default().push(adds);
                    let view = orders.get(tenant_id, OrderId::from_text(id));
                    view.expect("an applied order event has a view").to_bytes()
                }
                StreamKind::Credit => {
                    assert_eq!(credit.apply(envelope), Outcome::Applied);
                    let view = credit.get(tenant_id, EmployeeId::from_text(id));
                    view.expect("an applied credit event has a view").to_bytes()
                }
                StreamKind::Tenant | StreamKind::Vendor => continue,
            };
            views.entry(key).or_default().push(bytes);
        }
        Cuts { views, sums }
    }

    /// `Ok` when every stored view is its stream's fold up to its version
    /// and every sum is exactly what the stored versions add.
    pub fn check(&self, state: &MemoryState) -> Result<(), String> {
        self.watch().check(state)
    }

    /// Follows one table from empty: each check adds up only the versions
    /// views moved by since the last, and also fails if a view moved back.
    pub fn watch(&self) -> Watch<'_> {
        Watch {
            cuts: self,
            versions: HashMap::new(),
            sums: BTreeMap::new(),
            writes: None,
        }
    }
}

/// [`Cuts`] following one table.
pub struct Watch<'a> {
    cuts: &'a Cuts,
    /// Each view's version at the last check.
    versions: HashMap<ViewKey, usize>,
    /// What those versions add to the dashboard.
    sums: BTreeMap<SumKey, Sum>,
    /// The table's write count at the last check that passed: only a
    /// write changes views or sums, so none since means nothing to check.
    writes: Option<u64>,
}

impl Watch<'_> {
    /// `Ok` when `state` is a consistent cut and no view moved back.
    pub fn check(&mut self, state: &MemoryState) -> Result<(), String> {
        if self.writes == Some(state.writes) {
            return Ok(());
        }
        let mut diff = Vec::new();
        for (key, stored) in &state.views {
            let pk = || pk_of(key.tenant_id, key.stream);
            let Some(prefixes) = self.cuts.views.get(key) else {
                diff.push(format!("{}: a view of a stream not in the log", pk()));
                continue;
            };
            let v = usize::try_from(stored.version.get()).unwrap_or(usize::MAX);
            if v == 0 || v > prefixes.len() {
                diff.push(format!(
                    "{}: stored at version {v}, the stream has {}",
                    pk(),
                    prefixes.len()
                ));
                continue;
            }
            if stored.bytes != prefixes[v - 1] && !same_view(key, &stored.bytes, &prefixes[v - 1]) {
                diff.push(format!(
                    "{}: stored at version {v}, but it is not the fold of versions 1..={v}",
                    pk()
                ));
            }
            let before = self.versions.insert(*key, v).unwrap_or(0);
            if v < before {
                diff.push(format!("{}: moved back from version {before} to {v}", pk()));
                continue;
            }
            for adds in self.cuts.sums.get(key).map_or(&[][..], |s| &s[before..v]) {
                for (sum_key, add) in adds {
                    self.sums
                        .entry(*sum_key)
                        .and_modify(|sum| sum.add(add))
                        .or_insert(*add);
                }
            }
        }
        if self.versions.len() != state.views.len() {
            diff.push(format!(
                "{} views seen before, {} stored now",
                self.versions.len(),
                state.views.len()
            ));
        }
        compare_sums(&mut diff, &state.sums, &self.sums);
        self.writes = diff.is_empty().then_some(state.writes);
        into_result(diff)
    }
}

/// Equal views may differ in bytes only if a decimal's scale differs.
fn same_view(key: &ViewKey, stored: &[u8], fold: &[u8]) -> bool {
    match key.stream.kind() {
        StreamKind::Order => match (OrderView::from_bytes(stored), OrderView::from_bytes(fold)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        StreamKind::Credit => {
            match (CreditView::from_bytes(stored), CreditView::from_bytes(fold)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        StreamKind::Tenant | StreamKind::Vendor => false,
    }
}

fn sum_of(change: DashboardChange) -> (SumKey, Sum) {
    match change {
        DashboardChange::Day {
            tenant_id,
            vendor_id,
            date,
            delta,
        } => (
            SumKey::Day {
                tenant_id,
                vendor_id,
                date,
            },
            Sum::Day(delta),
        ),
        DashboardChange::Receivable {
            tenant_id,
            vendor_id,
            due_date,
            delta,
        } => (
            SumKey::Due {
                tenant_id,
                vendor_id,
                due_date,
            },
            Sum::Due(delta),
        ),
    }
}
