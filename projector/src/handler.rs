//! The handler: one batch of records in, read-model writes done, the
//! records to redeliver out. Lambda's entries, the local runners and the
//! property tests all call [`StreamProjector::handle`].
//!
//! Per batch: decode and group ([`Batch::new`]); load the stored views of
//! the order and credit streams in the batch (one consistent batch read);
//! plan every stream ([`plan_stream`]); for streams with a gap, ask the
//! table whether the stream is parked and plan again; park poison; then
//! write. Order views go in transactions with the dashboard sums their
//! events add ([`pack`]); credit views are single gated writes; the writes
//! of a batch touch disjoint items and go out together
//! (`ViewTable::write_many`: concurrently on DynamoDB, in one transaction
//! on SQLite). A write
//! whose gate does not hold (another handler moved the view) is planned
//! again on the view the failed write returned, at most
//! [`CONFLICT_ROUNDS_MAX`] times. Whatever is not written is reported
//! failed, so the transport redelivers it; everything written is exact,
//! because a redelivered event is a duplicate at its view's gate.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::plan::{ACTIONS_MIN, Batch, Content, Limits, StreamPlan, pack, plan_stream};
use crate::record::ChangeRecord;
use ledger_core::projection::activity::ActivityEntry;
use ledger_store::views::{Cost, Parked, StoredView, ViewKey, ViewTable, Write, WriteError};

/// How many times a batch re-plans streams whose gate moved under it.
pub const CONFLICT_ROUNDS_MAX: usize = 4;

/// The projector over a read-model table.
#[derive(Debug)]
pub struct StreamProjector<T> {
    table: T,
    limits: Limits,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Records to report as batch item failures, each once.
    pub failed: Vec<String>,
    /// Records in the batch.
    pub records: usize,
    /// Events folded into views (each once, however often delivered).
    pub applied: usize,
    /// Records that were duplicates or had nothing to project.
    pub skipped: usize,
    /// Records parked (poison, or waiting behind it).
    pub parked: usize,
    /// Atomic writes made (transactions or single gated writes), and park
    /// writes.
    pub writes: usize,
    /// Write capacity, by projection.
    pub cost: Cost,
    /// From the oldest event's write (its `recorded_at`) to the end of the
    /// batch: how far behind the projection was.
    pub lag_max_ms: Option<i64>,
    /// From the newest event's write to the end of the batch.
    pub lag_min_ms: Option<i64>,
}

impl<T: ViewTable> StreamProjector<T> {
    pub fn new(table: T) -> Self {
        Self::with_limits(table, Limits::default())
    }

    /// A projector whose writes stay within `limits` (tests use small ones
    /// to force many writes per batch); fewer than [`ACTIONS_MIN`] items
    /// per write cannot hold one event's changes and count as that many.
    pub fn with_limits(table: T, limits: Limits) -> Self {
        let limits = Limits {
            actions: limits.actions.max(ACTIONS_MIN),
            ..limits
        };
        StreamProjector { table, limits }
    }

    pub fn table(&self) -> &T {
        &self.table
    }

    /// Projects one batch. Never panics; every failure is a record to
    /// redeliver.
    pub async fn handle(&self, records: Vec<ChangeRecord>) -> Report {
        let batch = Batch::new(records);
        let mut report = Report {
            records: batch.records,
            skipped: batch.ignored.len(),
            ..Report::default()
        };
        let mut failed: Vec<String> = Vec::new();

        let keys: Vec<ViewKey> = batch
            .streams
            .keys()
            .filter(|k| crate::plan::has_view(k.stream.kind()))
            .copied()
            .collect();
        let stored = match self.table.load(&keys).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "loading views failed; the whole batch is redelivered");
                return self.finish(report, &batch, all_ids(&batch));
            }
        };
        let stored: rustc_hash::FxHashMap<ViewKey, _> = keys.into_iter().zip(stored).collect();

        let mut plans = self.plan(&batch, &stored).await;
        // Park first: a parked record is acknowledged only once it is stored.
        self.park(&batch, &plans, &mut report, &mut failed).await;
        let parked: Vec<String> = plans
            .iter()
            .flat_map(|p| p.park.iter().map(|p| p.record.clone()))
            .collect();
        for plan in &mut plans {
            failed.append(&mut plan.failed);
            report.skipped += plan.done.len();
        }
        self.write(&mut plans, &batch, &mut report, &mut failed)
            .await;
        self.record_activity(&batch, &parked, &mut report, &mut failed)
            .await;
        self.finish(report, &batch, failed)
    }

    /// Records the activity entry of every event of the batch that is now
    /// projected: written, a duplicate, or of a stream without a view;
    /// not failed, not parked. Entries come last, so a stored entry means
    /// the event's views and sums are stored (what read-your-writes waits
    /// for); a failed entry write redelivers its records, which are
    /// duplicates at their gates next time and get their entries then.
    async fn record_activity(
        &self,
        batch: &Batch,
        parked: &[String],
        report: &mut Report,
        failed: &mut Vec<String>,
    ) {
        let unfinished: rustc_hash::FxHashSet<&str> =
            failed.iter().chain(parked).map(String::as_str).collect();
        let mut entries = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for stream in batch.streams.values() {
            for delivered in stream.events.values() {
                let Content::Event(envelope) = &delivered.content else {
                    continue;
                };
                if delivered
                    .ids
                    .iter()
                    .any(|id| unfinished.contains(id.as_str()))
                {
                    continue;
                }
                entries.push(ActivityEntry::of(envelope));
                ids.extend(delivered.ids.iter().cloned());
            }
        }
        if entries.is_empty() {
            return;
        }
        match self.table.record_activity(&entries).await {
            Ok(cost) => {
                report.cost.add(&cost);
                report.writes += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = entries.len(), "recording activity failed; its records are redelivered");
                failed.extend(ids);
            }
        }
    }

    /// Plans every stream of the batch on its stored view; a stream with a
    /// gap is planned again once the table says where it is parked.
    async fn plan(
        &self,
        batch: &Batch,
        stored: &rustc_hash::FxHashMap<ViewKey, Option<StoredView>>,
    ) -> Vec<StreamPlan> {
        let mut plans: Vec<StreamPlan> = Vec::with_capacity(batch.streams.len());
        for (key, stream) in &batch.streams {
            let view = stored.get(key).and_then(Option::as_ref);
            let mut plan = plan_stream(*key, stream, view, None, self.limits.actions);
            if plan.gap_at.is_some() {
                match self.table.parked_from(&stream.pk).await {
                    Ok(Some(p)) => {
                        plan = plan_stream(*key, stream, view, Some(p), self.limits.actions)
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, pk = %stream.pk, "reading parked records failed");
                    }
                }
            }
            plans.push(plan);
        }
        plans
    }

    /// Parks the batch's unreadable records and every plan's poison in one
    /// write; if it fails, they are redelivered.
    async fn park(
        &self,
        batch: &Batch,
        plans: &[StreamPlan],
        report: &mut Report,
        failed: &mut Vec<String>,
    ) {
        let mut parks: Vec<Parked> = batch.unreadable.clone();
        for plan in plans {
            parks.extend(plan.park.iter().cloned());
        }
        if parks.is_empty() {
            return;
        }
        match self.table.park(&parks).await {
            Ok(cost) => {
                report.cost.add(&cost);
                report.writes += 1;
                report.parked = parks.len();
                for p in &parks {
                    tracing::error!(
                        pk = %p.pk, version = p.version, record = %p.record,
                        behind = p.behind.unwrap_or(0), error = %p.error, "record parked"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "parking failed; parked records are redelivered");
                failed.extend(parks.iter().map(|p| p.record.clone()));
            }
        }
    }

    /// Writes every plan's view (and sums), re-planning on gate conflicts.
    async fn write(
        &self,
        plans: &mut [StreamPlan],
        batch: &Batch,
        report: &mut Report,
        failed: &mut Vec<String>,
    ) {
        let mut pending: Vec<usize> = (0..plans.len())
            .filter(|&i| plans[i].view.is_some())
            .collect();
        for round in 0..=CONFLICT_ROUNDS_MAX {
            if pending.is_empty() {
                return;
            }
            if round == CONFLICT_ROUNDS_MAX {
                break;
            }
            let units = units(plans, &pending, self.limits);
            // The writes of a round touch disjoint items: the table takes
            // them together, then their outcomes are settled in order.
            let (writes, members): (Vec<Write>, Vec<Vec<usize>>) = units.into_iter().unzip();
            let answers = self.table.write_many(&writes).await;
            let outcomes: Vec<_> = members.into_iter().zip(answers).collect();
            pending = self.settle(plans, batch, report, failed, outcomes);
        }
        for &i in &pending {
            failed.extend(plans[i].applies.iter().cloned());
        }
    }

    /// Settles the outcomes of a round's writes, each with the plans in it:
    /// counts a write done, re-plans the streams whose gate moved, fails
    /// the records of a write that failed. Returns the plans to write again.
    fn settle(
        &self,
        plans: &mut [StreamPlan],
        batch: &Batch,
        report: &mut Report,
        failed: &mut Vec<String>,
        outcomes: Vec<(Vec<usize>, Result<Cost, WriteError>)>,
    ) -> Vec<usize> {
        let mut retry: Vec<usize> = Vec::new();
        for (members, outcome) in outcomes {
            match outcome {
                Ok(cost) => {
                    report.cost.add(&cost);
                    report.writes += 1;
                    for &i in &members {
                        report.applied += plans[i].events;
                    }
                }
                Err(WriteError::Conflict(conflicts)) => {
                    for (at, current) in conflicts {
                        let i = members[at];
                        self.replan(&mut plans[i], batch, report, failed, current.as_ref());
                    }
                    retry.extend(members.iter().copied().filter(|&i| plans[i].view.is_some()));
                }
                Err(WriteError::Failed(e)) => {
                    tracing::warn!(error = %e, records = members.iter().map(|&i| plans[i].applies.len()).sum::<usize>(), "write failed; its records are redelivered");
                    for &i in &members {
                        failed.extend(plans[i].applies.iter().cloned());
                    }
                }
            }
        }
        retry
    }

    /// Plans a stream again on `current`, the view that moved under it.
    fn replan(
        &self,
        plan: &mut StreamPlan,
        batch: &Batch,
        report: &mut Report,
        failed: &mut Vec<String>,
        current: Option<&StoredView>,
    ) {
        let Some(key) = plan.key else { return };
        let Some(stream) = batch.streams.get(&key) else {
            return;
        };
        tracing::info!(pk = %stream.pk, "view moved under the batch; planning again");
        let mut again = plan_stream(key, stream, current, None, self.limits.actions);
        failed.append(&mut again.failed);
        report.skipped += again.done.len();
        if !again.park.is_empty() {
            // A stored view that no longer decodes: the records are
            // redelivered rather than parked mid-write; the next delivery
            // parks them.
            failed.extend(again.park.iter().map(|p| p.record.clone()));
        }
        *plan = StreamPlan {
            park: Vec::new(),
            ..again
        };
    }

    fn finish(&self, mut report: Report, batch: &Batch, mut failed: Vec<String>) -> Report {
        failed.sort_unstable();
        failed.dedup();
        report.failed = failed;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        report.lag_max_ms = batch.oldest_written_ms.map(|t| now - t);
        report.lag_min_ms = batch.newest_written_ms.map(|t| now - t);
        tracing::info!(
            records = report.records,
            applied = report.applied,
            skipped = report.skipped,
            parked = report.parked,
            failed = report.failed.len(),
            writes = report.writes,
            wcu = report.cost.total(),
            wcu_orders = report.cost.orders,
            wcu_credit = report.cost.credit,
            wcu_dashboard = report.cost.dashboard,
            wcu_parked = report.cost.parked,
            wcu_activity = report.cost.activity,
            wcu_reported = report.cost.reported,
            lag_max_ms = report.lag_max_ms,
            lag_min_ms = report.lag_min_ms,
            "batch projected"
        );
        report
    }
}

/// The atomic writes of one round for the plans `pending`, each with the
/// plans in it. Orders (with their sums) share transactions; a credit view
/// has no sums, so it is written alone, which is cheaper.
fn units(plans: &[StreamPlan], pending: &[usize], limits: Limits) -> Vec<(Write, Vec<usize>)> {
    let (orders, credits): (Vec<usize>, Vec<usize>) = pending
        .iter()
        .partition(|&&i| plans[i].view.as_ref().is_some_and(|v| v.index.is_some()));
    let mut units: Vec<(Write, Vec<usize>)> = {
        let refs: Vec<&StreamPlan> = orders.iter().map(|&i| &plans[i]).collect();
        pack(&refs, limits)
            .into_iter()
            .map(|(w, idx)| (w, idx.into_iter().map(|j| orders[j]).collect()))
            .collect()
    };
    units.extend(credits.iter().map(|&i| {
        let view = plans[i].view.clone().into_iter().collect();
        (
            Write {
                views: view,
                sums: Vec::new(),
            },
            vec![i],
        )
    }));
    units
}

fn all_ids(batch: &Batch) -> Vec<String> {
    let mut ids: Vec<String> = batch
        .streams
        .values()
        .flat_map(|s| s.events.values().flat_map(|d| d.ids.iter().cloned()))
        .collect();
    ids.extend(batch.unreadable.iter().map(|p| p.record.clone()));
    ids
}
