//! The projections folded afresh from the log: `replay verify` compares
//! them with the live read models, `replay as-of` folds only what was
//! recorded up to an instant.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use ledger_core::id::{EmployeeId, StreamId, TenantId, VendorId};
use ledger_core::posting::{Account, postings};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::{ReadModels, VendorDailyTotals};
use ledger_core::time::Timestamp;
use ledger_store::views::{Drift, MemoryState, Projection, SumKey, ViewTable};
use rust_decimal::Decimal;
use rustc_hash::FxHashSet;
use serde::Serialize;

use crate::progress::Progress;
use crate::{Ledger, Reading};

/// Most drifts a verification lists; the rest are counted.
pub const DRIFTS_LISTED_MAX: usize = 1000;

/// What `replay verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub clean: bool,
    pub drift_total: usize,
    pub drift: Vec<Drift>,
    pub reading: Reading,
}

/// Folds the log afresh into every projection and compares the read
/// models of `projections` with it, for `tenant` (every tenant when
/// `None`). Read models trail the log while a projector is catching up:
/// run it on a caught-up projector, or read a drift of the newest events
/// as that.
///
/// Memory: the fresh fold and the stored read models, both whole (the
/// activity log among them holds an entry per event).
///
/// # Errors
/// The store's or the table's, or a record that does not decode.
pub async fn verify(
    ledger: &Ledger,
    tenant: Option<TenantId>,
    projections: &[Projection],
    progress: &Progress,
) -> anyhow::Result<Verified> {
    let mut fresh = ReadModels::default();
    let reading = ledger
        .events(tenant, progress, |envelope| {
            fresh.apply(&envelope);
        })
        .await?;
    let mut stored = ledger
        .views
        .scan()
        .await
        .map_err(|e| anyhow::anyhow!("reading the read models: {e}"))
        .context("verify")?;
    if let Some(tenant) = tenant {
        keep_tenant(&mut stored, tenant);
    }
    let wanted: BTreeSet<Projection> = projections.iter().copied().collect();
    let mut drift: Vec<Drift> = stored
        .drift(&fresh)
        .into_iter()
        .filter(|d| wanted.contains(&d.projection))
        .collect();
    let drift_total = drift.len();
    drift.truncate(DRIFTS_LISTED_MAX);
    Ok(Verified {
        clean: drift_total == 0,
        drift_total,
        drift,
        reading,
    })
}

/// Leaves only `tenant`'s read models.
fn keep_tenant(state: &mut MemoryState, tenant: TenantId) {
    state.views.retain(|k, _| k.tenant_id == tenant);
    state.indexes.retain(|k, _| k.tenant_id == tenant);
    state.sums.retain(|k, _| match k {
        SumKey::Day { tenant_id, .. } | SumKey::Due { tenant_id, .. } => *tenant_id == tenant,
    });
    state.activity.retain(|(t, _, _), _| *t == tenant);
}

/// The figures of one tenant at an instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantAsOf {
    /// Events recorded up to the instant.
    pub events: u64,
    /// Each employee's credit balance.
    pub credit: BTreeMap<EmployeeId, Decimal>,
    /// What the tenant owed each vendor.
    pub payable: BTreeMap<VendorId, Decimal>,
    /// Each vendor's dashboard totals over all days.
    pub dashboard: BTreeMap<VendorId, DayTotals>,
}

/// What `replay as-of` found.
#[derive(Debug, Clone, Serialize)]
pub struct AsOf {
    pub at: Timestamp,
    pub tenants: BTreeMap<TenantId, TenantAsOf>,
    pub reading: Reading,
}

/// Credit balances, vendor payables and dashboard totals as they stood at
/// `at`: each stream folded up to (not including) its first event recorded
/// after `at`, the same cut a digest makes. Memory: one entry per stream
/// (the cut), per account and per vendor-day.
///
/// # Errors
/// The store's, or a record that does not decode.
pub async fn as_of(
    ledger: &Ledger,
    tenant: Option<TenantId>,
    at: Timestamp,
    progress: &Progress,
) -> anyhow::Result<AsOf> {
    let mut closed: FxHashSet<(TenantId, StreamId)> = FxHashSet::default();
    let mut dashboard = VendorDailyTotals::default();
    let mut tenants: BTreeMap<TenantId, TenantAsOf> = BTreeMap::new();
    let reading = ledger
        .events(tenant, progress, |envelope| {
            let key = (envelope.tenant_id(), envelope.stream());
            if closed.contains(&key) {
                return;
            }
            if envelope.header.recorded_at > at {
                closed.insert(key);
                return;
            }
            let figures = tenants.entry(envelope.tenant_id()).or_default();
            figures.events += 1;
            for p in postings(&envelope) {
                match p.account {
                    Account::EmployeeCredit(e) => {
                        *figures.credit.entry(e).or_default() -= p.amount.amount();
                    }
                    Account::VendorPayable(v) => {
                        *figures.payable.entry(v).or_default() -= p.amount.amount();
                    }
                    _ => {}
                }
            }
            dashboard.apply(&envelope);
        })
        .await?;
    for ((tenant_id, vendor_id, _), day) in dashboard.days() {
        tenants
            .entry(tenant_id)
            .or_default()
            .dashboard
            .entry(vendor_id)
            .or_default()
            .add(day);
    }
    Ok(AsOf {
        at,
        tenants,
        reading,
    })
}
