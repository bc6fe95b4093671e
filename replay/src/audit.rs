//! `tally audit`: the whole log checked by ledger-core's
//! [`Auditor`](ledger_core::audit::Auditor), then the read models and the
//! stream heads reconciled with the ledger it built, and, when given, a
//! digest taken earlier recomputed over the log as it is now.
//!
//! Memory: the auditor's per-stream, per-account and per-order state, a
//! digest's per-stream state, and the figures of the read models it
//! reconciles (a balance per account, a sum per vendor and day); never the
//! events, nor the rest of the read models.

use std::collections::BTreeMap;

use ledger_core::Hash;
use ledger_core::LocalDate;
use ledger_core::audit::{AuditReport, Auditor, Finding, StoredAt};
use ledger_core::digest::{Digest, Digester};
use ledger_core::head::{HeadState, StreamHead};
use ledger_core::id::{EmployeeId, StreamId, StreamVersion, TenantId, VendorId};
use ledger_core::projection::credit::CreditView;
use ledger_store::EventStore;
use ledger_store::views::{DayRange, QUERY_ROWS_MAX, ViewTable};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::progress::Progress;
use crate::{Ledger, Reading};

/// Heads loaded per call.
const HEADS_PER_LOAD: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Only this tenant's streams (and read models).
    pub tenant: Option<TenantId>,
    /// A digest taken earlier, to prove the log against.
    pub against: Option<Digest>,
}

/// An audit's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    pub clean: bool,
    pub report: AuditReport,
    /// The digest given and the one the log hashes to now.
    pub digest: Option<DigestCheck>,
    pub reading: Reading,
}

#[derive(Debug, Clone, Serialize)]
pub struct DigestCheck {
    pub expected: String,
    pub found: String,
    pub holds: bool,
}

/// Audits the ledger.
///
/// # Errors
/// The store's or the read-model table's.
pub async fn audit(
    ledger: &Ledger,
    options: &AuditOptions,
    progress: &Progress,
) -> anyhow::Result<AuditRun> {
    let tenant = options.against.and_then(|d| d.tenant).or(options.tenant);
    let mut auditor = Auditor::new();
    let mut digester = options.against.as_ref().map(Digester::again);
    let reading = ledger
        .records(tenant, progress, |record| {
            let at = StoredAt {
                tenant_id: record.tenant_id,
                stream: record.stream,
                version: record.version,
            };
            if let Some(envelope) = auditor.record_at(at, &record.bytes)
                && let Some(digester) = digester.as_mut()
            {
                digester.event(&envelope);
            }
        })
        .await?;
    reconcile_read_models(ledger, &mut auditor).await?;
    check_heads(ledger, &mut auditor).await?;
    let digest = match (options.against, digester) {
        (Some(expected), Some(digester)) => {
            let found = digester.finish();
            let holds = found == expected;
            if !holds {
                auditor.find(Finding::DigestMismatch {
                    expected: expected.to_string(),
                    found: found.to_string(),
                });
            }
            Some(DigestCheck {
                expected: expected.to_string(),
                found: found.to_string(),
                holds,
            })
        }
        _ => None,
    };
    let report = auditor.finish();
    Ok(AuditRun {
        clean: report.is_clean(),
        report,
        digest,
        reading,
    })
}

/// Compares the credit balances and vendor payables the read models state
/// with the ledger's, for every tenant audited: the tenant's credit views
/// a page at a time, and its day sums (one row per vendor and day), never
/// the rest of the read models.
async fn reconcile_read_models(ledger: &Ledger, auditor: &mut Auditor) -> anyhow::Result<()> {
    let failed =
        |e: ledger_store::views::TableError| anyhow::anyhow!("reading the read models: {e}");
    let mut credit: BTreeMap<(TenantId, EmployeeId), Decimal> = BTreeMap::new();
    let mut payable: BTreeMap<(TenantId, VendorId), Decimal> = BTreeMap::new();
    for tenant_id in auditor.tenants() {
        let mut after = None;
        loop {
            let page = ledger
                .views
                .credit_views(tenant_id, after, QUERY_ROWS_MAX)
                .await
                .map_err(failed)?;
            let Some(last) = page.last().map(|(e, _)| *e) else {
                break;
            };
            for (employee_id, stored) in &page {
                let view = CreditView::from_bytes(&stored.bytes)
                    .map_err(|e| anyhow::anyhow!("the credit view of {employee_id}: {e}"))?;
                credit.insert((tenant_id, *employee_id), view.balance.amount());
            }
            if page.len() < QUERY_ROWS_MAX {
                break;
            }
            after = Some(last);
        }
        let days = ledger
            .views
            .day_sums(&DayRange {
                tenant_id,
                vendor_id: None,
                from: LocalDate::ymd(1, 1, 1),
                to: LocalDate::ymd(9999, 12, 31),
            })
            .await
            .map_err(failed)?;
        for day in days {
            *payable.entry((tenant_id, day.vendor_id)).or_default() += day.totals.net_payable();
        }
    }
    auditor.reconcile("read models", credit, payable);
    Ok(())
}

/// Checks the stored heads of one tenant's `batch` of streams (each with
/// its last version and hash), noting the credit balances of current ones.
async fn check_batch(
    ledger: &Ledger,
    tenant_id: TenantId,
    batch: &[(StreamId, StreamVersion, Hash)],
    found: &mut Vec<Finding>,
    credit: &mut BTreeMap<(TenantId, EmployeeId), Decimal>,
) -> anyhow::Result<()> {
    let ids: Vec<StreamId> = batch.iter().map(|(s, _, _)| *s).collect();
    let heads = ledger
        .store
        .load_heads(tenant_id, &ids)
        .await
        .map_err(|e| anyhow::anyhow!("reading the stream heads: {e}"))?;
    for ((stream, last, hash), stored) in batch.iter().zip(heads) {
        let Some(stored) = stored else { continue };
        let problem = match StreamHead::from_bytes(&stored.bytes) {
            Err(e) => Some(format!("undecodable head: {e}")),
            Ok(head) if head.stream != *stream => {
                Some(format!("the head names stream {}", head.stream))
            }
            Ok(head) if head.version > *last => Some(format!(
                "head at version {}, ahead of the stream's last version {last}",
                head.version
            )),
            Ok(head) if head.version == *last && head.hash != *hash => Some(format!(
                "head at version {last} has hash {}, the stream's event has {}",
                head.hash.to_hex(),
                hash.to_hex()
            )),
            Ok(head) => {
                if head.version == *last
                    && let HeadState::Credit(Some(account)) = &head.state
                {
                    credit.insert(
                        (tenant_id, EmployeeId::from_text(stream.id())),
                        account.balance.amount(),
                    );
                }
                None
            }
        };
        if let Some(problem) = problem {
            found.push(Finding::HeadMismatch {
                tenant_id,
                stream: *stream,
                problem,
            });
        }
    }
    Ok(())
}

/// Checks every stored head of an audited stream: never ahead of its
/// stream; at the stream's last version, the same hash, and for a credit
/// account the ledger's balance. (A head behind its stream is allowed: it
/// is derived state, brought forward by the next command.)
async fn check_heads(ledger: &Ledger, auditor: &mut Auditor) -> anyhow::Result<()> {
    let mut found = Vec::new();
    let mut credit: BTreeMap<(TenantId, EmployeeId), Decimal> = BTreeMap::new();
    // A batch of streams per tenant, loaded when full: the streams are
    // never copied whole (a log has millions).
    let mut pending: FxHashMap<TenantId, Vec<(StreamId, StreamVersion, Hash)>> =
        FxHashMap::default();
    for (tenant_id, stream, version, hash) in auditor.stream_heads() {
        let batch = pending.entry(tenant_id).or_default();
        batch.push((stream, version, hash));
        if batch.len() == HEADS_PER_LOAD {
            let batch = std::mem::take(batch);
            check_batch(ledger, tenant_id, &batch, &mut found, &mut credit).await?;
        }
    }
    for (tenant_id, batch) in pending {
        if !batch.is_empty() {
            check_batch(ledger, tenant_id, &batch, &mut found, &mut credit).await?;
        }
    }
    for finding in found {
        auditor.find(finding);
    }
    // Only accounts whose head is current can be compared.
    let ledger_credit: BTreeMap<_, _> = auditor
        .ledger()
        .credit_balances()
        .into_iter()
        .filter(|(k, _)| credit.contains_key(k))
        .collect();
    for (key, head) in credit {
        let ledger = ledger_credit.get(&key).copied().unwrap_or_default();
        if head != ledger {
            auditor.find(Finding::ProjectionDrift {
                tenant_id: key.0,
                source: "heads",
                what: format!("credit balance of employee {}", key.1),
                projection: head,
                ledger,
            });
        }
    }
    Ok(())
}
