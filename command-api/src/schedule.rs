//! Jobs on a clock: the scheduled credit replenishment.
//!
//! [`replenish_due`] visits every tenant the store lists
//! ([`EventStore::tenants`]) and every credit account of its credit
//! projection, and replenishes each account for the period of its cadence
//! that contains `at` (the instant the schedule fired, so a retried
//! invocation asks for the same periods) in the tenant's time zone, with
//! its events stamped by the clock: semi-monthly periods
//! start on the 1st and the 16th, monthly ones on the 1st. An account whose
//! view already shows that period is not asked again.
//!
//! It is safe to run twice and to be cut off anywhere: each account's
//! replenishment is its own command, and the decider replenishes an account
//! at most once per period (a second run for the period decides no
//! events), so a rerun after a timeout only does what is left. Nothing
//! depends on the read models being current: a view that lags only costs a
//! command that decides nothing.

use std::time::Instant;

use ledger_core::credit::{CreditCommand, ReplenishCredit};
use ledger_core::envelope::{Actor, Role};
use ledger_core::id::{EmployeeId, StreamId, TenantId, UserId};
use ledger_core::memory::Command;
use ledger_core::projection::credit::CreditView;
use ledger_core::time::{Period, Timestamp};
use ledger_store::EventStore;
use ledger_store::views::{AnyTable, QUERY_ROWS_MAX, TableError, ViewTable};
use serde::Serialize;

use crate::http::handler::now;
use crate::service::{Caller, CommandService, Decision, ExecuteError};

/// The user the scheduler acts as, with the Service role.
pub const SCHEDULER_USER: &str = "scheduler";
/// Tenants asked of the store per page.
pub const TENANTS_PAGE: usize = 100;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplenishReport {
    /// Tenants visited (configured ones; an unconfigured tenant has no zone
    /// and is skipped).
    pub tenants: u64,
    /// Credit accounts looked at.
    pub accounts: u64,
    /// Accounts replenished by this run.
    pub replenished: u64,
    /// Accounts already replenished for their current period: by the view,
    /// or by the decider when the view lagged.
    pub up_to_date: u64,
    /// Accounts the decider refused (suspended, say), with its code.
    pub refused: Vec<Refused>,
    /// Whether the run stopped at its deadline before visiting everything;
    /// the next run does the rest.
    pub unfinished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub tenant_id: TenantId,
    pub employee_id: EmployeeId,
    pub code: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("reading the credit views failed: {0}")]
    Views(#[from] TableError),
    #[error("a credit view could not be read: {0}")]
    Corrupt(String),
}

/// Replenishes every account whose period (by its cadence, in its
/// tenant's zone, at `at`) has not been replenished, stopping before
/// anything more once `deadline` has passed.
///
/// # Errors
/// The store's or the read models'; what was done before stays done.
pub async fn replenish_due<S: EventStore>(
    service: &CommandService<S>,
    views: &AnyTable,
    at: Timestamp,
    deadline: Option<Instant>,
) -> Result<ReplenishReport, ScheduleError> {
    let mut report = ReplenishReport::default();
    let mut after = None;
    loop {
        let tenants = service
            .store()
            .tenants(after, TENANTS_PAGE)
            .await
            .map_err(ExecuteError::from)?;
        let Some(&last) = tenants.last() else {
            return Ok(report);
        };
        for tenant_id in tenants {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                report.unfinished = true;
                return Ok(report);
            }
            replenish_tenant(service, views, tenant_id, at, deadline, &mut report).await?;
            if report.unfinished {
                return Ok(report);
            }
        }
        after = Some(last);
    }
}

async fn replenish_tenant<S: EventStore>(
    service: &CommandService<S>,
    views: &AnyTable,
    tenant_id: TenantId,
    at: Timestamp,
    deadline: Option<Instant>,
    report: &mut ReplenishReport,
) -> Result<(), ScheduleError> {
    let settings = service
        .aggregates(tenant_id, &[StreamId::tenant(tenant_id)])
        .await?
        .settings();
    let Some(settings) = settings else {
        return Ok(());
    };
    report.tenants += 1;
    let caller = Caller {
        tenant_id,
        actor: Actor {
            user_id: UserId::new(SCHEDULER_USER),
            role: Role::Service,
        },
    };
    let mut after = None;
    loop {
        let page = views.credit_views(tenant_id, after, QUERY_ROWS_MAX).await?;
        let full = page.len() == QUERY_ROWS_MAX;
        after = page.last().map(|(id, _)| *id);
        for (employee_id, stored) in page {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                report.unfinished = true;
                return Ok(());
            }
            let view = CreditView::from_bytes(&stored.bytes)
                .map_err(|e| ScheduleError::Corrupt(format!("{employee_id}: {e}")))?;
            report.accounts += 1;
            let period = Period::containing(at, settings.time_zone, view.policy.cadence);
            if view.last_period.is_some_and(|last| last >= period) {
                report.up_to_date += 1;
                continue;
            }
            let now = now();
            let command = Command::Credit(CreditCommand::Replenish(ReplenishCredit {
                employee_id,
                period,
                now,
            }));
            let executed = service
                .execute(caller, &command, now, None, |_| Vec::new())
                .await?;
            match executed.decision {
                Some(Decision::Accepted(events)) if events.is_empty() => report.up_to_date += 1,
                Some(Decision::Accepted(_)) => report.replenished += 1,
                Some(Decision::Rejected(rejection)) => report.refused.push(Refused {
                    tenant_id,
                    employee_id,
                    code: rejection.code(),
                }),
                None => unreachable!("unkeyed commands are never replays"),
            }
        }
        if !full {
            return Ok(());
        }
    }
}
