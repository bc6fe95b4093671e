//! The audit: reads a log and proves it sound, or says where it is not.
//!
//! Checked per record: it decodes; it sits under the key it names (tenant,
//! stream, version); its hash matches its bytes; it links to the previous
//! record of its stream; versions are contiguous from 1; its postings sum
//! to zero per currency; a tenant's money is in one currency; the balance
//! an event states (`balance_after`) is the balance its postings produce;
//! no credit balance goes negative; no account is replenished twice for one
//! period. Checked at the end: every credit checkout and refund has both
//! halves (credit clearing nets to zero); refunds never exceed the sale and
//! fully refunded orders reconcile to the cent. Read models and heads are
//! reconciled against the ledger by [`Auditor::reconcile`], with what the
//! caller read from wherever they live.
//!
//! Only per-stream order matters: streams may interleave in any way. The
//! state is compact and per key (a stream's version and hash, an account's
//! balance, an order's four amounts, an account's replenished periods),
//! never per event, so a log far larger than memory can be audited.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::codec;
use crate::envelope::{Envelope, Hash};
use crate::event::Event;
use crate::id::{EmployeeId, OrderId, StreamId, StreamKind, StreamVersion, TenantId, VendorId};
use crate::money::Currency;
use crate::posting::{Account, postings};
use crate::projection::ReadModels;
use crate::time::{Period, Timestamp};

/// How many findings a report keeps in detail; the rest are only counted.
pub const FINDINGS_KEPT_MAX: usize = 1000;

/// Where a record was found: the key it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoredAt {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub version: StreamVersion,
}

/// Something wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The record's bytes do not decode (`position`: its ordinal in the
    /// audit's reading, from 0, which on DynamoDB depends on the Scan's
    /// interleaving; `at`: its key, when the store gave one).
    Undecodable {
        position: u64,
        at: Option<StoredAt>,
        error: String,
    },
    /// The record decodes to another key than the one it is stored under.
    Misplaced { at: StoredAt, names: StoredAt },
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
    DuplicateReplenishment {
        tenant_id: TenantId,
        employee_id: EmployeeId,
        version: StreamVersion,
        period: Period,
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
    /// A figure a read model or a head states differs from the ledger's.
    ProjectionDrift {
        tenant_id: TenantId,
        /// Where the figure was read: `read models`, `heads`, ...
        source: &'static str,
        what: String,
        projection: Decimal,
        ledger: Decimal,
    },
    /// A stored stream head disagrees with its stream.
    HeadMismatch {
        tenant_id: TenantId,
        stream: StreamId,
        problem: String,
    },
    /// The log no longer hashes to a digest taken earlier: an event that
    /// existed then was changed, removed or reordered, or one was inserted
    /// before the digest's instant.
    DigestMismatch { expected: String, found: String },
}

/// One tenant's figures, as the audit read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantSummary {
    pub events: u64,
    pub streams: u64,
    pub first_recorded_at: Option<Timestamp>,
    pub last_recorded_at: Option<Timestamp>,
    pub currency: Option<Currency>,
    /// Gross of every sale recorded.
    pub gross_sales: Decimal,
    /// Every refund issued.
    pub refunds: Decimal,
    /// Commission earned, net of reversals.
    pub commission: Decimal,
    /// What the tenant owes its vendors.
    pub vendor_payable: Decimal,
    /// Invoices not yet paid.
    pub receivable: Decimal,
    /// Credit the tenant owes its employees.
    pub credit_outstanding: Decimal,
}

/// The audit's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub events: u64,
    pub streams: u64,
    pub postings: u64,
    pub findings_total: u64,
    pub findings: Vec<Finding>,
    pub tenants: BTreeMap<TenantId, TenantSummary>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.findings_total == 0
    }
}

/// The ledger's balances, from the postings of every event audited.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    accounts: FxHashMap<(TenantId, Account), Decimal>,
}

impl Ledger {
    fn balance(&self, tenant_id: TenantId, account: Account) -> Decimal {
        self.accounts
            .get(&(tenant_id, account))
            .copied()
            .unwrap_or_default()
    }

    /// What the tenant owes an employee: minus their account's postings.
    pub fn credit_balance(&self, tenant_id: TenantId, employee_id: EmployeeId) -> Decimal {
        -self.balance(tenant_id, Account::EmployeeCredit(employee_id))
    }

    /// What the tenant owes a vendor: minus its payable's postings.
    pub fn vendor_payable(&self, tenant_id: TenantId, vendor_id: VendorId) -> Decimal {
        -self.balance(tenant_id, Account::VendorPayable(vendor_id))
    }

    /// Every employee's credit balance with a posting, by tenant.
    pub fn credit_balances(&self) -> CreditFigures {
        self.accounts
            .iter()
            .filter_map(|((t, a), amount)| match a {
                Account::EmployeeCredit(e) => Some(((*t, *e), -*amount)),
                _ => None,
            })
            .collect()
    }

    /// Every vendor's payable with a posting, by tenant.
    pub fn vendor_payables(&self) -> PayableFigures {
        self.accounts
            .iter()
            .filter_map(|((t, a), amount)| match a {
                Account::VendorPayable(v) => Some(((*t, *v), -*amount)),
                _ => None,
            })
            .collect()
    }
}

/// An order's figures, as far as the refund rules need them.
#[derive(Debug, Clone, Copy, Default)]
struct OrderTally {
    gross: Decimal,
    commission: Decimal,
    refunded: Decimal,
    reversed: Decimal,
    completed: bool,
}

/// Feed it every record of a log, each stream's in version order (streams
/// may interleave in any way), then [`Auditor::finish`].
#[derive(Default)]
pub struct Auditor {
    heads: FxHashMap<(TenantId, StreamId), (StreamVersion, Hash)>,
    ledger: Ledger,
    currencies: FxHashMap<TenantId, Currency>,
    orders: FxHashMap<(TenantId, OrderId), OrderTally>,
    replenished: FxHashSet<(TenantId, EmployeeId, Period)>,
    report: AuditReport,
}

impl Auditor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finding to the report (the caller's own checks add theirs).
    pub fn find(&mut self, finding: Finding) {
        self.report.findings_total += 1;
        if self.report.findings.len() < FINDINGS_KEPT_MAX {
            self.report.findings.push(finding);
        }
    }

    /// The ledger so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Every tenant audited so far.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.report.tenants.keys().copied().collect()
    }

    /// Every stream audited, with its last version and hash.
    pub fn stream_heads(&self) -> impl Iterator<Item = (TenantId, StreamId, StreamVersion, Hash)> {
        self.heads.iter().map(|((t, s), (v, h))| (*t, *s, *v, *h))
    }

    /// Audits one record read without its key (a log of bytes).
    pub fn record(&mut self, bytes: &[u8]) -> Option<Envelope> {
        self.audit(None, bytes)
    }

    /// Audits one record as stored under `at`; returns it decoded, when it
    /// decodes, for the caller's own folds.
    pub fn record_at(&mut self, at: StoredAt, bytes: &[u8]) -> Option<Envelope> {
        self.audit(Some(at), bytes)
    }

    fn audit(&mut self, at: Option<StoredAt>, bytes: &[u8]) -> Option<Envelope> {
        let position = self.report.events;
        self.report.events += 1;
        let envelope = match codec::decode(bytes) {
            Ok(e) => e,
            Err(error) => {
                self.find(Finding::Undecodable {
                    position,
                    at,
                    error: error.to_string(),
                });
                return None;
            }
        };
        let (tenant_id, stream, version) =
            (envelope.tenant_id(), envelope.stream(), envelope.version());
        let names = StoredAt {
            tenant_id,
            stream,
            version,
        };
        if let Some(at) = at
            && at != names
        {
            self.find(Finding::Misplaced { at, names });
        }
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
        let summary = self.report.tenants.entry(tenant_id).or_default();
        summary.events += 1;
        let recorded_at = envelope.header.recorded_at;
        summary.first_recorded_at = Some(
            summary
                .first_recorded_at
                .map_or(recorded_at, |t| t.min(recorded_at)),
        );
        summary.last_recorded_at = Some(
            summary
                .last_recorded_at
                .map_or(recorded_at, |t| t.max(recorded_at)),
        );
        if last == StreamVersion::NONE {
            self.report.streams += 1;
            summary.streams += 1;
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
        self.tally(&envelope);
        Some(envelope)
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
            *self
                .ledger
                .accounts
                .entry((tenant_id, p.account))
                .or_default() += p.amount.amount();
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
            let ledger = self.ledger.credit_balance(tenant_id, employee_id);
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
            if let Event::CreditReplenished(e) = &envelope.event
                && !self.replenished.insert((tenant_id, employee_id, e.period))
            {
                self.find(Finding::DuplicateReplenishment {
                    tenant_id,
                    employee_id,
                    version,
                    period: e.period,
                });
            }
        }
    }

    /// Keeps what the refund rules and the summary need of an order event.
    fn tally(&mut self, envelope: &Envelope) {
        if envelope.stream().kind() != StreamKind::Order {
            return;
        }
        let tenant_id = envelope.tenant_id();
        let key = (tenant_id, OrderId::from_text(envelope.stream().id()));
        let summary = self.report.tenants.entry(tenant_id).or_default();
        match &envelope.event {
            Event::SaleRecorded(e) => {
                summary.gross_sales += e.gross.amount();
                let order = self.orders.entry(key).or_default();
                order.gross += e.gross.amount();
                order.commission += e.commission.amount();
            }
            Event::RefundIssued(e) => {
                summary.refunds += e.amount.amount();
                let order = self.orders.entry(key).or_default();
                order.refunded += e.amount.amount();
                order.reversed += e.commission_reversed.amount();
                order.completed |= e.completes_refund;
            }
            _ => {}
        }
    }

    /// Compares figures read from a projection (`source`: the read models,
    /// the heads) with the ledger's, both ways: an account the ledger has
    /// and the projection lacks reads as zero there, and so does the
    /// reverse. Give every figure of the tenants audited, and only those.
    pub fn reconcile(
        &mut self,
        source: &'static str,
        credit: impl IntoIterator<Item = ((TenantId, EmployeeId), Decimal)>,
        payable: impl IntoIterator<Item = ((TenantId, VendorId), Decimal)>,
    ) {
        let credit: BTreeMap<_, _> = credit.into_iter().collect();
        let payable: BTreeMap<_, _> = payable.into_iter().collect();
        let ledger_credit = self.ledger.credit_balances();
        let ledger_payable = self.ledger.vendor_payables();
        for ((tenant_id, employee_id), projection, ledger) in joined(&credit, &ledger_credit) {
            self.find(Finding::ProjectionDrift {
                tenant_id,
                source,
                what: format!("credit balance of employee {employee_id}"),
                projection,
                ledger,
            });
        }
        for ((tenant_id, vendor_id), projection, ledger) in joined(&payable, &ledger_payable) {
            self.find(Finding::ProjectionDrift {
                tenant_id,
                source,
                what: format!("net payable of vendor {vendor_id}"),
                projection,
                ledger,
            });
        }
    }

    /// Runs the end-of-log checks and returns the report.
    pub fn finish(mut self) -> AuditReport {
        let tenants: Vec<TenantId> = self.report.tenants.keys().copied().collect();
        for tenant_id in tenants {
            let open = self.ledger.balance(tenant_id, Account::CreditClearing);
            if !open.is_zero() {
                self.find(Finding::CreditClearingOpen {
                    tenant_id,
                    amount: open,
                });
            }
        }
        self.check_refunds();
        self.summarise();
        // Streams arrive interleaved however the reader read them (a
        // parallel Scan differs run to run): list findings in one order.
        self.report
            .findings
            .sort_by_cached_key(|f| format!("{f:?}"));
        self.report
    }

    fn summarise(&mut self) {
        for ((tenant_id, account), amount) in &self.ledger.accounts {
            let Some(summary) = self.report.tenants.get_mut(tenant_id) else {
                continue;
            };
            match account {
                Account::PlatformCommission => summary.commission -= amount,
                Account::VendorPayable(_) => summary.vendor_payable -= amount,
                Account::Receivable(_) => summary.receivable += amount,
                Account::EmployeeCredit(_) => summary.credit_outstanding -= amount,
                _ => {}
            }
        }
        for (tenant_id, currency) in &self.currencies {
            if let Some(summary) = self.report.tenants.get_mut(tenant_id) {
                summary.currency = Some(*currency);
            }
        }
    }

    fn check_refunds(&mut self) {
        let mut problems = Vec::new();
        for ((tenant_id, order_id), o) in &self.orders {
            let order = StreamId::order(*order_id);
            if o.refunded > o.gross {
                problems.push((*tenant_id, order, "refunded exceeds gross"));
            }
            if o.reversed > o.commission {
                problems.push((*tenant_id, order, "commission reversed exceeds commission"));
            }
            if o.completed && (o.refunded != o.gross || o.reversed != o.commission) {
                problems.push((*tenant_id, order, "fully refunded order does not reconcile"));
            }
        }
        problems.sort_by_key(|(t, o, _)| (*t, *o));
        for (tenant_id, order, problem) in problems {
            self.find(Finding::RefundMismatch {
                tenant_id,
                order,
                problem,
            });
        }
    }
}

/// The keys where `a` and `b` differ, a missing key reading as zero.
fn joined<K: Ord + Copy>(
    a: &BTreeMap<K, Decimal>,
    b: &BTreeMap<K, Decimal>,
) -> Vec<(K, Decimal, Decimal)> {
    let keys: std::collections::BTreeSet<K> = a.keys().chain(b.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                a.get(&k).copied().unwrap_or_default(),
                b.get(&k).copied().unwrap_or_default(),
            );
            (x != y).then_some((k, x, y))
        })
        .collect()
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

/// Audits a whole log held in memory, and reconciles a fresh fold of every
/// projection with its ledger.
pub fn audit<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> AuditReport {
    let mut auditor = Auditor::new();
    let mut models = ReadModels::default();
    for bytes in records {
        if let Some(envelope) = auditor.record(bytes) {
            // Gaps and duplicates were reported; the gate keeps them out.
            models.apply(&envelope);
        }
    }
    let (credit, payable) = figures(&models);
    auditor.reconcile("projections", credit, payable);
    auditor.finish()
}

/// Credit balances by tenant and employee.
pub type CreditFigures = BTreeMap<(TenantId, EmployeeId), Decimal>;
/// Vendor payables by tenant and vendor.
pub type PayableFigures = BTreeMap<(TenantId, VendorId), Decimal>;

/// The credit balances and vendor payables a fold of the projections states.
fn figures(models: &ReadModels) -> (CreditFigures, PayableFigures) {
    let credit = models
        .credit
        .all()
        .map(|(t, v)| ((t, v.employee_id), v.balance.amount()))
        .collect();
    let mut payable = PayableFigures::new();
    for ((t, v, _), totals) in models.dashboard.days() {
        *payable.entry((t, v)).or_default() += totals.net_payable();
    }
    (credit, payable)
}
