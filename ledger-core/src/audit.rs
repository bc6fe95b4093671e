//! The audit: reads a log in commit order and proves it sound, or says where
//! it is not.
//!
//! Checked per record: it decodes; its hash matches its bytes; it links to the
//! previous record of its stream; versions are contiguous from 1; its postings
//! sum to zero per currency; a tenant's money is in one currency; the balance
//! an event states (`balance_after`) is the balance its postings produce; no
//! credit balance goes negative. Checked at the end: every credit checkout and
//! refund has both halves (credit clearing nets to zero); refunds never exceed
//! the sale and fully refunded orders reconcile to the cent; and the
//! projections agree with the ledger (credit balances, vendor net payable).

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::codec;
use crate::envelope::{Envelope, Hash};
use crate::event::Event;
use crate::id::{EmployeeId, StreamId, StreamKind, StreamVersion, TenantId, VendorId};
use crate::money::Currency;
use crate::posting::{Account, postings};
use crate::projection::ReadModels;
use crate::sale::OrderStatus;

/// How many findings a report keeps in detail; the rest are only counted.
pub const FINDINGS_KEPT_MAX: usize = 1000;

/// Something wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    Undecodable {
        position: u64,
        error: String,
    },
    HashMismatch {
        position: u64,
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    },
    BrokenLink {
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    },
    VersionGap {
        tenant_id: TenantId,
        stream: StreamId,
        expected: StreamVersion,
        got: StreamVersion,
    },
    Unbalanced {
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    },
    MixedCurrency {
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    },
    BalanceMismatch {
        tenant_id: TenantId,
        employee_id: EmployeeId,
        version: StreamVersion,
        stated: Decimal,
        ledger: Decimal,
    },
    NegativeCredit {
        tenant_id: TenantId,
        employee_id: EmployeeId,
        version: StreamVersion,
    },
    CreditClearingOpen {
        tenant_id: TenantId,
        amount: Decimal,
    },
    RefundMismatch {
        tenant_id: TenantId,
        order: StreamId,
        problem: &'static str,
    },
    ProjectionDrift {
        tenant_id: TenantId,
        what: String,
        projection: Decimal,
        ledger: Decimal,
    },
}

/// The audit's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub events: u64,
    pub streams: u64,
    pub postings: u64,
    pub findings_total: u64,
    pub findings: Vec<Finding>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.findings_total == 0
    }
}

/// Feed it every record of a log in commit order (per-stream order is what
/// matters), then [`Auditor::finish`].
#[derive(Default)]
pub struct Auditor {
    heads: FxHashMap<(TenantId, StreamId), (StreamVersion, Hash)>,
    ledger: FxHashMap<(TenantId, Account), Decimal>,
    currencies: FxHashMap<TenantId, Currency>,
    models: ReadModels,
    report: AuditReport,
}

impl Auditor {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&mut self, finding: Finding) {
        self.report.findings_total += 1;
        if self.report.findings.len() < FINDINGS_KEPT_MAX {
            self.report.findings.push(finding);
        }
    }

    /// Audits one stored record.
    pub fn record(&mut self, bytes: &[u8]) {
        let position = self.report.events;
        self.report.events += 1;
        let envelope = match codec::decode(bytes) {
            Ok(e) => e,
            Err(error) => {
                return self.find(Finding::Undecodable {
                    position,
                    error: error.to_string(),
                });
            }
        };
        let (tenant_id, stream, version) =
            (envelope.tenant_id(), envelope.stream(), envelope.version());
        if codec::verify_record(bytes).is_err() {
            self.find(Finding::HashMismatch {
                position,
                tenant_id,
                stream,
                version,
            });
        }
        let (last, last_hash) = self
            .heads
            .get(&(tenant_id, stream))
            .copied()
            .unwrap_or((StreamVersion::NONE, Hash::GENESIS));
        if last == StreamVersion::NONE {
            self.report.streams += 1;
        }
        if version != last.next() {
            self.find(Finding::VersionGap {
                tenant_id,
                stream,
                expected: last.next(),
                got: version,
            });
        } else if envelope.prev_hash != last_hash {
            self.find(Finding::BrokenLink {
                tenant_id,
                stream,
                version,
            });
        }
        self.heads
            .insert((tenant_id, stream), (version.max(last), envelope.hash));
        self.post(&envelope);
        // Gaps and duplicates were reported above; the gate keeps them out of the models.
        self.models.apply(&envelope);
    }

    fn post(&mut self, envelope: &Envelope) {
        let (tenant_id, stream, version) =
            (envelope.tenant_id(), envelope.stream(), envelope.version());
        let lines = postings(envelope);
        self.report.postings += lines.len() as u64;
        let mut sum = Decimal::ZERO;
        // One finding per event, however many of its postings differ.
        if let Some(currency) = envelope.event.currency()
            && *self.currencies.entry(tenant_id).or_insert(currency) != currency
        {
            self.find(Finding::MixedCurrency {
                tenant_id,
                stream,
                version,
            });
        }
        for p in &lines {
            sum += p.amount.amount();
            *self.ledger.entry((tenant_id, p.account)).or_default() += p.amount.amount();
        }
        if !sum.is_zero() {
            self.find(Finding::Unbalanced {
                tenant_id,
                stream,
                version,
            });
        }
        if stream.kind() == StreamKind::Credit {
            let employee_id = EmployeeId::from_text(stream.id());
            let ledger = -self
                .ledger
                .get(&(tenant_id, Account::EmployeeCredit(employee_id)))
                .copied()
                .unwrap_or_default();
            if let Some(stated) = balance_after(&envelope.event)
                && stated != ledger
            {
                self.find(Finding::BalanceMismatch {
                    tenant_id,
                    employee_id,
                    version,
                    stated,
                    ledger,
                });
            }
            if ledger.is_sign_negative() && !ledger.is_zero() {
                self.find(Finding::NegativeCredit {
                    tenant_id,
                    employee_id,
                    version,
                });
            }
        }
    }

    /// Runs the end-of-log checks and returns the report.
    pub fn finish(mut self) -> AuditReport {
        let tenants: Vec<TenantId> = self.currencies.keys().copied().collect();
        for tenant_id in tenants {
            let open = self
                .ledger
                .get(&(tenant_id, Account::CreditClearing))
                .copied()
                .unwrap_or_default();
            if !open.is_zero() {
                self.find(Finding::CreditClearingOpen {
                    tenant_id,
                    amount: open,
                });
            }
            self.check_vendors(tenant_id);
            self.check_credit(tenant_id);
        }
        self.check_refunds();
        self.report
    }

    fn check_vendors(&mut self, tenant_id: TenantId) {
        let payable: Vec<(VendorId, Decimal)> = self
            .ledger
            .iter()
            .filter_map(|((t, a), amount)| match a {
                Account::VendorPayable(v) if *t == tenant_id => Some((*v, -*amount)),
                _ => None,
            })
            .collect();
        let totals = self.models.dashboard.all_time(tenant_id);
        for (vendor_id, ledger) in payable {
            let projection = totals
                .get(&vendor_id)
                .map(|t| t.net_payable())
                .unwrap_or_default();
            if projection != ledger {
                let what = format!("net payable of vendor {vendor_id}");
                self.find(Finding::ProjectionDrift {
                    tenant_id,
                    what,
                    projection,
                    ledger,
                });
            }
        }
    }

    fn check_credit(&mut self, tenant_id: TenantId) {
        let views: Vec<(EmployeeId, Decimal)> = self
            .models
            .credit
            .accounts(tenant_id)
            .map(|v| (v.employee_id, v.balance.amount()))
            .collect();
        for (employee_id, projection) in views {
            let ledger = -self
                .ledger
                .get(&(tenant_id, Account::EmployeeCredit(employee_id)))
                .copied()
                .unwrap_or_default();
            if projection != ledger {
                let what = format!("credit balance of employee {employee_id}");
                self.find(Finding::ProjectionDrift {
                    tenant_id,
                    what,
                    projection,
                    ledger,
                });
            }
        }
    }

    fn check_refunds(&mut self) {
        let mut problems = Vec::new();
        for (tenant_id, view) in self.models.orders.iter() {
            let order = StreamId::order(view.order_id);
            if view.refunded.amount() > view.gross.amount() {
                problems.push((tenant_id, order, "refunded exceeds gross"));
            }
            if view.commission_reversed.amount() > view.commission.amount() {
                problems.push((tenant_id, order, "commission reversed exceeds commission"));
            }
            if view.status == OrderStatus::Refunded
                && (view.refunded != view.gross || view.commission_reversed != view.commission)
            {
                problems.push((tenant_id, order, "fully refunded order does not reconcile"));
            }
        }
        for (tenant_id, order, problem) in problems {
            self.find(Finding::RefundMismatch {
                tenant_id,
                order,
                problem,
            });
        }
    }
}

fn balance_after(event: &Event) -> Option<Decimal> {
    match event {
        Event::CreditReplenished(e) => Some(e.balance_after.amount()),
        Event::CreditSpent(e) => Some(e.balance_after.amount()),
        Event::CreditRefunded(e) => Some(e.balance_after.amount()),
        Event::CreditAdjusted(e) => Some(e.balance_after.amount()),
        _ => None,
    }
}

/// Audits a whole log.
pub fn audit<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> AuditReport {
    let mut auditor = Auditor::new();
    for bytes in records {
        auditor.record(bytes);
    }
    auditor.finish()
}
