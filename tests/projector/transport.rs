//! A deterministic simulator of the transports and of Lambda's event source
//! mapping, driving a [`StreamProjector`] over a [`MemoryTable`].
//!
//! - **Shards.** Each event is one item of the event table, so each is one
//!   record, placed on a shard by a seeded hash of its key. On a DynamoDB
//!   stream a shard holds its records once each, in commit order; two
//!   events of one stream may sit on different shards, so across shards
//!   any order is possible. Kinesis Data Streams for DynamoDB also
//!   duplicates records and reorders them: here within blocks of a shard
//!   (a record never moves past a whole block), which is what keeps a
//!   batch-size-bounded redelivery able to reach the missing version.
//!   Idempotency items (version 0) come through as records too.
//! - **Event source mapping** with `ReportBatchItemFailures`, one shard at a
//!   time per shard: from its acknowledged position, a batch of random size; if the
//!   report lists failures the acknowledged position moves to the lowest failed record
//!   in shard order and everything after it comes again, else past the
//!   batch. After a failure the next batch is sometimes bisected. Shards
//!   interleave at random, and two shards' invocations sometimes run
//!   concurrently on the same table.
//! - **Faults.** Before some invocations the table gets a budget of a few
//!   operations; every operation after it fails. Either the process died
//!   there (the whole batch is redelivered, whatever the report said) or
//!   the table was out (the report is believed: it must name everything
//!   not written).
//!
//! Fairness: a shard that made no progress twice in a row gets a full
//! batch. Without it an adversary could starve the record that closes
//! every gap; with it, the earliest unapplied event in commit order is
//! always deliverable, so every schedule converges.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ledger_core::StreamVersion;
use ledger_core::rng::SplitMix64;
use ledger_store::dynamodb::change::Change;
use ledger_store::views::{
    Cost, MemoryState, MemoryTable, Parked, StoredView, TableError, ViewKey, ViewTable, Write,
    WriteError,
};
use projector::plan::Limits;
use projector::record::ChangeRecord;
use projector::{Report, StreamProjector};

use crate::history::Log;

/// A [`MemoryTable`] that counts the gate conflicts it answers, so tests
/// can tell the conflict path was taken, and keeps every write larger than
/// the projector's item limit.
#[derive(Debug)]
pub struct Probe {
    pub table: MemoryTable,
    conflicts: AtomicU64,
    actions_max: usize,
    /// Writes past `actions_max`: their views and their items.
    oversized: Mutex<Vec<(usize, usize)>>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe::new(usize::MAX)
    }
}

impl Probe {
    pub fn new(actions_max: usize) -> Self {
        Probe {
            table: MemoryTable::new(),
            conflicts: AtomicU64::new(0),
            actions_max,
            oversized: Mutex::new(Vec::new()),
        }
    }

    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Each write past the item limit: how many views it held, and items.
    pub fn oversized(&self) -> Vec<(usize, usize)> {
        self.oversized.lock().expect("no panics while held").clone()
    }
}

impl ViewTable for Probe {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        self.table.load(keys).await
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        self.table.parked_from(pk).await
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        if write.actions() > self.actions_max {
            let mut oversized = self.oversized.lock().expect("no panics while held");
            oversized.push((write.views.len(), write.actions()));
        }
        let result = self.table.write(write).await;
        if matches!(result, Err(WriteError::Conflict(_))) {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        self.table.park(parked).await
    }

    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        self.table.parked().await
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        self.table.unpark(pk, through).await
    }

    async fn record_activity(
        &self,
        entries: &[ledger_core::projection::activity::ActivityEntry],
    ) -> Result<Cost, TableError> {
        self.table.record_activity(entries).await
    }

    async fn activity(
        &self,
        query: &ledger_core::projection::activity::ActivityQuery,
    ) -> Result<Vec<ledger_core::projection::activity::ActivityEntry>, TableError> {
        self.table.activity(query).await
    }

    async fn seen(
        &self,
        tenant_id: ledger_core::TenantId,
        events: &[(ledger_core::StreamId, ledger_core::StreamVersion)],
    ) -> Result<bool, TableError> {
        self.table.seen(tenant_id, events).await
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        self.table.scan().await
    }

    async fn orders(
        &self,
        query: &ledger_core::projection::orders::OrderListQuery,
    ) -> Result<Vec<ledger_store::views::OrderRow>, TableError> {
        self.table.orders(query).await
    }

    async fn day_sums(
        &self,
        range: &ledger_store::views::DayRange,
    ) -> Result<Vec<ledger_store::views::DayRow>, TableError> {
        self.table.day_sums(range).await
    }

    async fn due_sums(
        &self,
        tenant_id: ledger_core::TenantId,
        vendor_id: Option<ledger_core::VendorId>,
    ) -> Result<Vec<ledger_store::views::DueRow>, TableError> {
        self.table.due_sums(tenant_id, vendor_id).await
    }

    async fn credit_views(
        &self,
        tenant_id: ledger_core::TenantId,
        after: Option<ledger_core::EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(ledger_core::EmployeeId, StoredView)>, TableError> {
        self.table.credit_views(tenant_id, after, limit).await
    }
}

/// How hostile the transport is.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Open shards, 1..=4.
    pub shards: usize,
    /// The mapping's batch size: a batch holds 1..=this many records.
    pub batch_max: usize,
    /// Kinesis Data Streams: duplicates and reordering within a shard.
    pub kinesis: Option<Kinesis>,
    /// Items per atomic write; `None`: the default limits.
    pub actions: Option<usize>,
    /// Chance of a fault budget before an invocation.
    pub crash_percent: u64,
    /// Chance that two shards' invocations run concurrently.
    pub concurrent_percent: u64,
    /// Chance that an invocation timed out but its writes still land while
    /// Lambda retries from the same acknowledged position: the two race on the same
    /// gates.
    pub zombie_percent: u64,
    /// Chance that the batch after a failure is bisected.
    pub bisect_percent: u64,
    /// Chance of an idempotency item's record after a command.
    pub ignored_percent: u64,
    /// Drives every choice above.
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Kinesis {
    /// Records are reordered within consecutive blocks of this many.
    pub block: usize,
    /// Chance that a record is delivered twice (both copies in its block).
    pub duplicate_percent: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            shards: 2,
            batch_max: 5,
            kinesis: None,
            actions: None,
            crash_percent: 0,
            concurrent_percent: 0,
            zombie_percent: 0,
            bisect_percent: 0,
            ignored_percent: 0,
            seed: 0,
        }
    }
}

/// What a run did, to show the schedules are as hostile as claimed.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub invocations: u64,
    /// Records reported failed by reports that were believed.
    pub failed: u64,
    pub died: u64,
    pub outages: u64,
    pub concurrent: u64,
    pub zombies: u64,
    pub bisected: u64,
    pub duplicates: u64,
    pub conflicts: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.invocations += other.invocations;
        self.failed += other.failed;
        self.died += other.died;
        self.outages += other.outages;
        self.concurrent += other.concurrent;
        self.zombies += other.zombies;
        self.bisected += other.bisected;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
    }
}

/// The table after convergence, and what it took.
pub struct Run {
    pub state: MemoryState,
    pub tally: Tally,
}

/// Checks the table between invocations.
pub type Check<'a> = &'a mut dyn FnMut(&MemoryState) -> Result<(), String>;

/// Delivers `log` under `knobs` until every shard is consumed, checking the
/// table with `check` after every step; then delivers every shard once more
/// whole, which must fail nothing and change nothing.
///
/// # Errors
/// A report naming a record outside its batch, a failed check, or no
/// convergence within a generous number of steps.
pub async fn run(log: &Log, knobs: &Knobs, check: Check<'_>) -> Result<Run, String> {
    let limits = knobs
        .actions
        .map_or_else(Limits::default, |actions| Limits {
            actions,
            bytes: usize::MAX,
        });
    let projector = StreamProjector::with_limits(Probe::new(limits.actions), limits);
    let mut rng = SplitMix64::new(knobs.seed);
    let mut tally = Tally::default();
    let mut shards = layout(log, knobs, &mut rng, &mut tally);
    let records: usize = shards.iter().map(|s| s.records.len()).sum();
    let steps_max = 1_000 + 50 * records;
    for step in 0.. {
        let open: Vec<usize> = (0..shards.len()).filter(|&s| !shards[s].done()).collect();
        if open.is_empty() {
            break;
        }
        if step == steps_max {
            return Err(format!(
                "no convergence after {steps_max} steps; acknowledged positions: {}",
                describe(&shards)
            ));
        }
        let first = open[rng.below(open.len() as u64) as usize];
        let second = (open.len() > 1 && rng.chance_percent(knobs.concurrent_percent)).then(|| {
            let others: Vec<usize> = open.iter().copied().filter(|&s| s != first).collect();
            others[rng.below(others.len() as u64) as usize]
        });
        let fault = rng
            .chance_percent(knobs.crash_percent)
            .then(|| (rng.below(6), rng.chance_percent(50)));
        if let Some((ops, _)) = fault {
            projector.table().table.crash_after(ops);
        }
        // The zombie was an earlier invocation from the same acknowledged position,
        // maybe of another size: the two fold different runs of a stream
        // onto the same gate.
        let zombie = rng
            .chance_percent(knobs.zombie_percent)
            .then(|| shards[first].peek(1 + rng.below(knobs.batch_max as u64) as usize));
        let a = shards[first].next_batch(knobs.batch_max, &mut rng);
        let b = second.map(|s| shards[s].next_batch(knobs.batch_max, &mut rng));
        tally.concurrent += u64::from(b.is_some());
        tally.zombies += u64::from(zombie.is_some());
        tally.invocations += 1 + u64::from(b.is_some()) + u64::from(zombie.is_some());
        // The zombie's report goes nowhere: Lambda already counted it failed.
        let (report_a, report_b, _) = tokio::join!(
            projector.handle(a),
            maybe(b.map(|b| projector.handle(b))),
            maybe(zombie.map(|z| projector.handle(z))),
        );
        // A spent budget: some operation may have failed.
        let faulted = fault.is_some() && projector.table().table.snapshot().budget == Some(0);
        let died = faulted && fault.is_some_and(|(_, dies)| dies);
        if fault.is_some() {
            projector.table().table.recover();
        }
        if faulted {
            if died {
                tally.died += 1;
            } else {
                tally.outages += 1;
            }
        }
        let settle =
            |shard: &mut Shard, report: &Report, tally: &mut Tally, rng: &mut SplitMix64| {
                shard
                    .settle((!died).then_some(report), knobs.bisect_percent, rng, tally)
                    .map_err(|e| format!("step {step}: {e}"))
            };
        settle(&mut shards[first], &report_a, &mut tally, &mut rng)?;
        if let (Some(s), Some(report)) = (second, &report_b) {
            settle(&mut shards[s], report, &mut tally, &mut rng)?;
        }
        let state = projector.table().table.snapshot();
        check(&state).map_err(|e| format!("after step {step}: {e}"))?;
    }
    tally.conflicts = projector.table().conflicts();
    let state = after_convergence(&projector, &shards, limits).await?;
    Ok(Run { state, tally })
}

/// Redelivers every shard whole, which must fail nothing and change
/// nothing, and checks the writes' sizes; returns the converged table.
async fn after_convergence(
    projector: &StreamProjector<Probe>,
    shards: &[Shard],
    limits: Limits,
) -> Result<MemoryState, String> {
    let state = projector.table().table.snapshot();
    for shard in shards {
        let report = projector.handle(shard.records.clone()).await;
        if !report.failed.is_empty() {
            return Err(format!(
                "after convergence, redelivering a shard failed {:?}",
                report.failed
            ));
        }
    }
    let again = projector.table().table.snapshot();
    let mut changed: Vec<String> = Vec::new();
    for (key, view) in &again.views {
        let before = state.views.get(key).map(|v| v.version);
        if before != Some(view.version) {
            changed.push(format!("{key:?}: {before:?} -> {}", view.version));
        }
    }
    for (key, sum) in &again.sums {
        if state.sums.get(key) != Some(sum) {
            changed.push(format!("{key:?}: {:?} -> {sum:?}", state.sums.get(key)));
        }
    }
    if again.views.len() != state.views.len() || again.parked.keys().ne(state.parked.keys()) {
        changed.push("views removed or parked records changed".into());
    }
    if !changed.is_empty() {
        changed.truncate(10);
        return Err(format!(
            "after convergence, redelivering every shard changed the table:\n{}",
            changed.join("\n")
        ));
    }
    // No write, of one stream or of several, holds more than the limit.
    let shared: Vec<(usize, usize)> = projector.table().oversized();
    if !shared.is_empty() {
        return Err(format!(
            "writes of several views past {} items (views, items): {shared:?}",
            limits.actions
        ));
    }
    Ok(state)
}

async fn maybe<T>(f: Option<impl Future<Output = T>>) -> Option<T> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

/// One shard and its mapping's state.
struct Shard {
    /// Each record's id is `{shard}-{position}`.
    records: Vec<ChangeRecord>,
    /// The first record not yet acknowledged.
    acknowledged: usize,
    /// The batch now being delivered: its start and length.
    delivered: (usize, usize),
    /// After a bisected failure: the next batch's size at most.
    cap: Option<usize>,
    /// Deliveries in a row that did not move the acknowledged position.
    stalls: u32,
}

impl Shard {
    fn done(&self) -> bool {
        self.acknowledged == self.records.len()
    }

    fn peek(&self, size: usize) -> Vec<ChangeRecord> {
        let end = (self.acknowledged + size).min(self.records.len());
        self.records[self.acknowledged..end].to_vec()
    }

    fn next_batch(&mut self, batch_max: usize, rng: &mut SplitMix64) -> Vec<ChangeRecord> {
        let size = if self.stalls >= 2 {
            batch_max
        } else {
            self.cap
                .unwrap_or_else(|| 1 + rng.below(batch_max as u64) as usize)
        };
        let end = (self.acknowledged + size).min(self.records.len());
        self.delivered = (self.acknowledged, end - self.acknowledged);
        self.records[self.acknowledged..end].to_vec()
    }

    /// Moves the acknowledged position as Lambda does: `None` if the invocation died.
    fn settle(
        &mut self,
        report: Option<&Report>,
        bisect_percent: u64,
        rng: &mut SplitMix64,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let (start, len) = self.delivered;
        let next = match report {
            None => start,
            Some(report) => {
                if report.records != len {
                    return Err(format!(
                        "a batch of {len} records reported {}",
                        report.records
                    ));
                }
                let mut lowest = start + len;
                for id in &report.failed {
                    let at = id
                        .split_once('-')
                        .and_then(|(_, at)| at.parse::<usize>().ok())
                        .filter(|&at| self.records.get(at).is_some_and(|r| r.id == *id));
                    match at {
                        Some(at) if (start..start + len).contains(&at) => lowest = lowest.min(at),
                        _ => return Err(format!("a report names {id}, not in its batch")),
                    }
                }
                tally.failed += report.failed.len() as u64;
                lowest
            }
        };
        let failure = next < start + len;
        self.stalls = if next > self.acknowledged {
            0
        } else {
            self.stalls + 1
        };
        self.acknowledged = next;
        self.cap = (failure && len > 1 && rng.chance_percent(bisect_percent)).then(|| {
            tally.bisected += 1;
            len / 2
        });
        Ok(())
    }
}

fn describe(shards: &[Shard]) -> String {
    shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let head = s.records.get(s.acknowledged).map(|r| match &r.change {
                Change::Event { pk, version, .. } => format!("{pk} v{version}"),
                other => format!("{other:?}"),
            });
            format!(
                "shard {i} at {}/{} (head {head:?})",
                s.acknowledged,
                s.records.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a shard position delivers.
#[derive(Clone, Copy)]
enum Item {
    /// The log's event at this index.
    Event(usize),
    /// An idempotency item.
    Ignored,
}

/// Places the log's records on shards as the transport would.
fn layout(log: &Log, knobs: &Knobs, rng: &mut SplitMix64, tally: &mut Tally) -> Vec<Shard> {
    assert!((1..=4).contains(&knobs.shards) && knobs.batch_max >= 1);
    let mut lists: Vec<Vec<Item>> = vec![Vec::new(); knobs.shards];
    for (i, logged) in log.events.iter().enumerate() {
        let shard = item_hash(knobs.seed, &logged.pk, logged.version) % knobs.shards as u64;
        lists[shard as usize].push(Item::Event(i));
        let command = logged.envelope.header.command_id;
        let last_of_command = log
            .events
            .get(i + 1)
            .is_none_or(|next| next.envelope.header.command_id != command);
        if last_of_command && rng.chance_percent(knobs.ignored_percent) {
            lists[rng.below(knobs.shards as u64) as usize].push(Item::Ignored);
        }
    }
    if let Some(kinesis) = &knobs.kinesis {
        assert!(
            kinesis.block >= 1 && 2 * kinesis.block <= knobs.batch_max,
            "a block with its duplicates must fit in one batch, or a gap could outlast every redelivery"
        );
        for list in &mut lists {
            *list = reorder(list, kinesis, rng, tally);
        }
    }
    lists
        .into_iter()
        .enumerate()
        .map(|(s, items)| {
            let records: Vec<ChangeRecord> = items
                .iter()
                .enumerate()
                .map(|(at, item)| {
                    let id = format!("{s}-{at:05}");
                    match item {
                        Item::Event(i) => log.events[*i].record(id),
                        Item::Ignored => ChangeRecord {
                            id,
                            written_at_ms: None,
                            change: Change::Ignored,
                        },
                    }
                })
                .collect();
            Shard {
                records,
                acknowledged: 0,
                delivered: (0, 0),
                cap: None,
                stalls: 0,
            }
        })
        .collect()
}

/// Duplicates and shuffles within blocks.
fn reorder(list: &[Item], kinesis: &Kinesis, rng: &mut SplitMix64, tally: &mut Tally) -> Vec<Item> {
    let mut out = Vec::with_capacity(list.len());
    for block in list.chunks(kinesis.block) {
        let mut items: Vec<Item> = Vec::with_capacity(2 * block.len());
        for item in block {
            items.push(*item);
            if rng.chance_percent(kinesis.duplicate_percent) {
                items.push(*item);
                tally.duplicates += 1;
            }
        }
        for i in (1..items.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        out.extend(items);
    }
    out
}

/// FNV-1a of the item's key, mixed with the seed: the item's shard.
fn item_hash(seed: u64, pk: &str, version: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in pk.bytes().chain(version.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    SplitMix64::new(seed ^ h).next_u64()
}

/// The version `StoredView`s say for a key, `NONE` if absent.
pub fn stored_version(state: &MemoryState, key: &ViewKey) -> StreamVersion {
    state
        .views
        .get(key)
        .map_or(StreamVersion::NONE, |v| v.version)
}
