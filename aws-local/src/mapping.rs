//! A local stand-in for Lambda's event source mapping (ESM) on a change
//! stream: the core both runners share ([`crate::streams::StreamsRunner`]
//! on a DynamoDB Stream, [`crate::kinesis::KinesisRunner`] on a Kinesis
//! stream), generic over a `Source`.
//!
//! DynamoDB Local has no Lambda triggers, so tests and the local server
//! need something that reads a table's stream and calls the same handler
//! function Lambda would, with the same batches and the same retry rules.
//! What it emulates, as Lambda documents it for
//! a stream mapping with `ReportBatchItemFailures`, `TRIM_HORIZON`,
//! `ParallelizationFactor` 1 and no bisection, age limit or retry limit:
//!
//! - **Shards.** Every shard of the stream is read by one task, so batches
//!   of one shard are strictly sequential and shards run concurrently. A
//!   child shard is read only once its parents have been read to their end
//!   (a parent the listing no longer shows, because it was trimmed, counts
//!   as read). The shard list is rediscovered periodically.
//! - **Batches.** A batch is one `GetRecords` of at most the batch size
//!   (default 100, Lambda's default) records of one shard, in shard order,
//!   delivered as soon as it is read (no batching window). Its records are
//!   built exactly as Lambda builds them
//!   ([`crate::streams::lambda_record`]).
//! - **Partial failures.** A response with no `batchItemFailures` acknowledges
//!   the batch up to its last record. Otherwise the lowest failed sequence
//!   number (compared as numbers) is the retry point: the acknowledged position
//!   moves to just before it and the shard is read again from it, so records after
//!   it that succeeded are delivered again. An `itemIdentifier` that is
//!   empty, null or not a sequence number of the batch fails the whole
//!   batch, as does a handler that panics (Lambda's "function error").
//!   Retries wait a jittered exponential backoff and never end (the Streams
//!   ESM default of unlimited retries), so a poison record blocks its shard;
//!   each retry is logged as a warning with the failing identifier and the
//!   attempt count.
//! - **Errors of the service** (throttling, a network blip, an expired
//!   iterator) are logged and retried with backoff from the acknowledged position;
//!   they never end the runner.
//!
//! Where it differs from Lambda:
//!
//! - Acknowledged positions live in memory. A restarted runner starts again from
//!   `TRIM_HORIZON` and redelivers everything the stream still holds; the
//!   handler must be idempotent, which Lambda's at-least-once delivery
//!   demands anyway.
//! - An idle shard is polled every 25 ms by default, where Lambda polls
//!   each shard about four times a second: tests see records sooner.
//! - A batch is at most one `GetRecords` (at most 1,000 records on a
//!   DynamoDB Stream), where Lambda may combine reads up to 10,000 records
//!   or 6 MB; there is no batching window, no payload limit, no on-failure
//!   destination, and no second reader limit to respect.
//!
//! [`RunnerHandle`] stops the runner, reports what it has delivered
//! ([`RunnerStats`]), and tells a test when everything the stream held has
//! been acknowledged ([`RunnerHandle::caught_up`]).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::rng::SplitMix64;
use ledger_store::dynamodb::stream::{
    ShardInfo, ShardPage, ShardPosition, ShardReadError, compare_sequence_numbers, ready_shards,
};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Lambda's default batch size for stream mappings.
pub const BATCH_SIZE_DEFAULT: usize = 100;
/// Most records one DynamoDB Streams `GetRecords` returns.
pub const STREAMS_BATCH_SIZE_MAX: usize = 1_000;
/// Pause between reads of a shard that had nothing new.
pub const IDLE_POLL_INTERVAL_DEFAULT: Duration = Duration::from_millis(25);
/// Pause between listings of the stream's shards.
pub const SHARD_DISCOVERY_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// First pause before a retry.
pub const RETRY_BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(10);
/// Longest pause before a retry.
pub const RETRY_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);
/// How long [`RunnerHandle::stop`] waits for batches in flight to finish
/// before it aborts them.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a mapping reads and retries; the same knobs for both runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingConfig {
    /// Most records per batch (Lambda's `BatchSize`).
    pub batch_size: usize,
    /// Pause between reads of a shard that had nothing new.
    pub idle_poll_interval: Duration,
    /// Pause between listings of the stream's shards. A shard read to its
    /// end and [`RunnerHandle::caught_up`] also trigger a listing.
    pub shard_discovery_interval: Duration,
    /// First pause before a retry (of a failed batch or a failed call).
    pub retry_backoff_min: Duration,
    /// Longest pause before a retry.
    pub retry_backoff_max: Duration,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            batch_size: BATCH_SIZE_DEFAULT,
            idle_poll_interval: IDLE_POLL_INTERVAL_DEFAULT,
            shard_discovery_interval: SHARD_DISCOVERY_INTERVAL_DEFAULT,
            retry_backoff_min: RETRY_BACKOFF_MIN_DEFAULT,
            retry_backoff_max: RETRY_BACKOFF_MAX_DEFAULT,
        }
    }
}

impl MappingConfig {
    pub(crate) fn check(&self, batch_size_max: usize) -> Result<(), RunnerError> {
        if !(1..=batch_size_max).contains(&self.batch_size) {
            return Err(RunnerError::Config(format!(
                "batch size {} is not within 1..={batch_size_max}",
                self.batch_size
            )));
        }
        if self.retry_backoff_min.is_zero() || self.retry_backoff_min > self.retry_backoff_max {
            return Err(RunnerError::Config(format!(
                "retry backoff {:?}..{:?} is not a positive range",
                self.retry_backoff_min, self.retry_backoff_max
            )));
        }
        Ok(())
    }
}

/// Why a runner did not start or did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The configuration is out of bounds.
    #[error("invalid runner configuration: {0}")]
    Config(String),
    /// The source could not be found or prepared.
    #[error("runner setup failed: {0}")]
    Setup(String),
    /// The runner stopped before the condition was met.
    #[error("the runner stopped")]
    Stopped,
    /// The condition was not met in time.
    #[error("the runner did not catch up within {0:?}")]
    Timeout(Duration),
}

/// What a runner has done so far. Counts only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Handler invocations, redeliveries included.
    pub batches_delivered: u64,
    /// Records passed to the handler, redelivered ones counted again.
    pub records_delivered: u64,
    /// Handler invocations that redelivered records after a failure.
    pub redeliveries: u64,
    /// Records acknowledged, each once.
    pub records_acknowledged: u64,
    /// When the last record acknowledged (on any shard) entered the source:
    /// a DynamoDB record's `ApproximateCreationDateTime`, a Kinesis record's
    /// `approximateArrivalTimestamp`. Now minus this is the mapping's lag.
    pub last_acknowledged_at: Option<DateTime<Utc>>,
    /// Shard tasks running now.
    pub shards_reading: usize,
    /// Shards read to their end.
    pub shards_finished: usize,
}

impl RunnerStats {
    /// How far behind `now` the last acknowledged record is, when there is one.
    pub fn lag(&self, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
        self.last_acknowledged_at.map(|at| now - at)
    }
}

/// A running mapping. Dropping it aborts its tasks at once; [`stop`] lets
/// batches in flight finish first.
///
/// [`stop`]: RunnerHandle::stop
#[derive(Debug)]
pub struct RunnerHandle {
    source_arn: String,
    progress: Arc<Progress>,
    shutdown: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
}

impl RunnerHandle {
    /// The ARN of the stream read (the records' `eventSourceARN`).
    pub fn source_arn(&self) -> &str {
        &self.source_arn
    }

    /// What the runner has done so far.
    pub fn stats(&self) -> RunnerStats {
        self.progress.stats.borrow().clone()
    }

    /// A watch of [`RunnerStats`], updated after every batch. It closes
    /// once the runner's tasks have all ended and the handle is gone.
    pub fn subscribe(&self) -> watch::Receiver<RunnerStats> {
        self.progress.stats.subscribe()
    }

    /// Waits until every record the stream held when this was called has
    /// been acknowledged: a shard listing made after the call, and for
    /// every shard in it either its end reached or a read, begun after the
    /// call, that found nothing new (on Kinesis, nothing new and
    /// `MillisBehindLatest` 0). A shard is read only after its earlier
    /// records were acknowledged, so that read proves the rest.
    ///
    /// On DynamoDB Local a record is in the stream once its write returned;
    /// the service may show it a little later.
    ///
    /// # Errors
    /// [`RunnerError::Timeout`] after `timeout`; [`RunnerError::Stopped`]
    /// when the runner's tasks ended.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), RunnerError> {
        let since = Instant::now();
        self.progress.discover.notify_one();
        let mut coverage = self.progress.coverage.subscribe();
        let reached =
            tokio::time::timeout(timeout, coverage.wait_for(|c| c.stopped || c.covers(since)))
                .await;
        match reached {
            Ok(Ok(coverage)) if !coverage.stopped => Ok(()),
            Ok(_) => Err(RunnerError::Stopped),
            Err(_) => Err(RunnerError::Timeout(timeout)),
        }
    }

    /// Stops reading: batches in flight finish (for at most [`STOP_GRACE`],
    /// then they are aborted), no new batch starts, and every task has
    /// ended when this returns.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(supervisor) = self.supervisor.take() {
            let abort = supervisor.abort_handle();
            if tokio::time::timeout(STOP_GRACE, supervisor).await.is_err() {
                tracing::warn!(
                    source = %self.source_arn,
                    "batches still in flight after {STOP_GRACE:?}: aborted"
                );
                abort.abort();
            }
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
    }
}

// The mapping core, shared by the DynamoDB Streams and Kinesis runners.

/// A stream as a mapping reads it: shards, iterators, records, and how
/// its records become the handler's event.
pub(crate) trait Source: Send + Sync + 'static {
    /// A record as the handler sees it, built from the service's record.
    type Record: Send + 'static;
    /// What the handler is called with.
    type Event: Send + 'static;
    /// What the handler answers.
    type Response: Send + 'static;
    /// The largest batch one read can return.
    const BATCH_SIZE_MAX: usize;

    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, ShardReadError>> + Send;
    fn iterator(
        &self,
        shard: &str,
        from: &ShardPosition,
    ) -> impl Future<Output = Result<String, ShardReadError>> + Send;
    fn read(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> impl Future<Output = Result<ShardPage<Self::Record>, ShardReadError>> + Send;
    /// The record's sequence number (its batch item identifier).
    fn sequence_number(record: &Self::Record) -> &str;
    /// When the record entered the source.
    fn entered_at(record: &Self::Record) -> Option<DateTime<Utc>>;
    fn event(records: Vec<Self::Record>) -> Self::Event;
    /// The response's `batchItemFailures` identifiers.
    fn failures(response: Self::Response) -> Vec<Option<String>>;
}

/// What a handler's answer means for its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    /// Acknowledge up to the last record.
    Acknowledged,
    /// Acknowledge up to just before record `from` (an index into the batch) and read
    /// again from it.
    Retry { from: usize, cause: RetryCause },
}

/// Why a batch is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetryCause {
    /// The lowest failed item.
    Failed(String),
    /// An identifier that is empty, null or not in the batch: the whole
    /// batch failed.
    Invalid(Option<String>),
    /// The handler panicked: the whole batch failed.
    Panicked,
}

impl std::fmt::Display for RetryCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryCause::Failed(id) => write!(f, "item {id} failed"),
            RetryCause::Invalid(Some(id)) => write!(f, "invalid item identifier {id:?}"),
            RetryCause::Invalid(None) => f.write_str("null item identifier"),
            RetryCause::Panicked => f.write_str("the handler panicked"),
        }
    }
}

/// Lambda's `ReportBatchItemFailures` rule on a batch whose records have
/// `sequence_numbers`: no failures acknowledges it; an identifier that is
/// empty, null or not in the batch fails all of it; otherwise the lowest
/// failed sequence number is the retry point.
pub(crate) fn batch_outcome(
    sequence_numbers: &[&str],
    failures: &[Option<String>],
) -> BatchOutcome {
    let mut lowest: Option<&str> = None;
    for failure in failures {
        let valid = failure
            .as_deref()
            .filter(|id| !id.is_empty() && sequence_numbers.contains(id));
        let Some(id) = valid else {
            return BatchOutcome::Retry {
                from: 0,
                cause: RetryCause::Invalid(failure.clone()),
            };
        };
        if lowest.is_none_or(|low| compare_sequence_numbers(id, low) == Ordering::Less) {
            lowest = Some(id);
        }
    }
    match lowest {
        None => BatchOutcome::Acknowledged,
        Some(id) => BatchOutcome::Retry {
            from: sequence_numbers.iter().position(|s| *s == id).unwrap_or(0),
            cause: RetryCause::Failed(id.to_owned()),
        },
    }
}

/// The pause before retry `attempt` (1 for the first): an exponential
/// ceiling from `min` doubling up to `max`, of which a random half is
/// waited ("equal jitter"), never below `min`.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration, random: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let ceiling = min.saturating_mul(1u32 << doublings).min(max);
    let half = ceiling / 2;
    let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = Duration::from_nanos(random % span.saturating_add(1));
    (ceiling - half + jitter).clamp(min, max)
}

/// A generator for jitter, seeded from the clock and `salt` so that shards
/// retrying together do not wait in step.
fn jitter_rng(salt: &str) -> SplitMix64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let salt = salt.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    SplitMix64::new(nanos ^ salt)
}

/// Starts the supervisor of a mapping from `source` to `handler`.
pub(crate) fn start_mapping<S, H, Fut>(
    source: S,
    config: MappingConfig,
    handler: H,
    source_arn: String,
) -> RunnerHandle
where
    S: Source,
    H: Fn(S::Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S::Response> + Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mapping = Arc::new(Mapping {
        source,
        handler,
        config,
        progress: progress.clone(),
    });
    let supervisor = tokio::spawn(supervise(mapping, shutdown_rx));
    RunnerHandle {
        source_arn,
        progress,
        shutdown,
        supervisor: Some(supervisor),
    }
}

struct Mapping<S, H> {
    source: S,
    handler: H,
    config: MappingConfig,
    progress: Arc<Progress>,
}

/// What the tasks share with the handle.
#[derive(Debug, Default)]
struct Progress {
    stats: watch::Sender<RunnerStats>,
    coverage: watch::Sender<Coverage>,
    /// Wakes the supervisor for a listing now.
    discover: Notify,
    /// Each shard's acknowledged position, so a shard task that died restarts there.
    positions: Mutex<HashMap<String, ShardPosition>>,
}

/// How much of the stream has been seen to its current end.
#[derive(Debug, Default)]
struct Coverage {
    /// When the last listing began, and what it showed.
    listed_at: Option<Instant>,
    listing: Vec<String>,
    finished: HashSet<String>,
    /// When the last read that found a shard's end began.
    at_end_since: HashMap<String, Instant>,
    stopped: bool,
}

impl Coverage {
    fn covers(&self, since: Instant) -> bool {
        self.listed_at.is_some_and(|at| at >= since)
            && self.listing.iter().all(|id| {
                self.finished.contains(id)
                    || self.at_end_since.get(id).is_some_and(|at| *at >= since)
            })
    }
}

impl Progress {
    fn position(&self, shard: &str) -> ShardPosition {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shard)
            .cloned()
            .unwrap_or(ShardPosition::TrimHorizon)
    }

    fn delivered(&self, records: usize, redelivery: bool) {
        self.stats.send_modify(|s| {
            s.batches_delivered += 1;
            s.records_delivered += records as u64;
            s.redeliveries += u64::from(redelivery);
        });
    }

    fn acknowledged(
        &self,
        shard: &str,
        records: usize,
        entered_at: Option<DateTime<Utc>>,
        position: &ShardPosition,
    ) {
        if records == 0 {
            return;
        }
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard.to_owned(), position.clone());
        self.stats.send_modify(|s| {
            s.records_acknowledged += records as u64;
            if entered_at.is_some() {
                s.last_acknowledged_at = entered_at;
            }
        });
    }

    fn at_end(&self, shard: &str, since: Instant) {
        self.coverage.send_modify(|c| {
            c.at_end_since.insert(shard.to_owned(), since);
        });
    }

    fn listed(&self, at: Instant, listing: &[ShardInfo]) {
        self.coverage.send_modify(|c| {
            c.listed_at = Some(at);
            c.listing = listing.iter().map(|s| s.id.clone()).collect();
        });
    }

    fn finished(&self, shard: &str) {
        self.coverage.send_modify(|c| {
            c.finished.insert(shard.to_owned());
        });
        self.stats.send_modify(|s| s.shards_finished += 1);
    }
}

/// Marks the runner stopped however its supervisor ends (panics included).
struct StoppedOnDrop(Arc<Progress>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.coverage.send_modify(|c| c.stopped = true);
    }
}

/// Counts a shard task as reading while it lives.
struct Reading(Arc<Progress>);

impl Reading {
    fn new(progress: Arc<Progress>) -> Self {
        progress.stats.send_modify(|s| s.shards_reading += 1);
        Reading(progress)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0
            .stats
            .send_modify(|s| s.shards_reading = s.shards_reading.saturating_sub(1));
    }
}

/// Aborts a spawned task when dropped, so an aborted runner leaves no
/// handler invocation behind.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardExit {
    Finished,
    Stopped,
}

/// `future`, unless shutdown comes first.
async fn unless_stopped<F: Future>(
    shutdown: &mut watch::Receiver<bool>,
    future: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|&stop| stop) => None,
        output = future => Some(output),
    }
}

/// Lists shards, starts a task for each ready one, and restarts the
/// listing when a shard ends, when asked, or every discovery interval.
async fn supervise<S, H, Fut>(mapping: Arc<Mapping<S, H>>, mut shutdown: watch::Receiver<bool>)
where
    S: Source,
    H: Fn(S::Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S::Response> + Send + 'static,
{
    let progress = mapping.progress.clone();
    let _stopped = StoppedOnDrop(progress.clone());
    let config = &mapping.config;
    let mut rng = jitter_rng("supervisor");
    let mut shards = ShardTasks::default();
    let mut failures = 0u32;
    loop {
        let listed_at = Instant::now();
        let pause = match unless_stopped(&mut shutdown, mapping.source.shards()).await {
            None => break,
            Some(Ok(listing)) => {
                failures = 0;
                shards.start(&mapping, &listing, &shutdown);
                progress.listed(listed_at, &listing);
                config.shard_discovery_interval
            }
            Some(Err(why)) => {
                failures += 1;
                let pause = backoff(
                    failures,
                    config.retry_backoff_min,
                    config.retry_backoff_max,
                    rng.next_u64(),
                );
                tracing::warn!(error = %why, attempt = failures, "listing shards failed; retrying");
                pause
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => break,
            () = tokio::time::sleep(pause) => {}
            () = progress.discover.notified() => {}
            Some(joined) = shards.tasks.join_next_with_id(), if !shards.tasks.is_empty() => {
                shards.ended(&progress, joined);
            }
        }
    }
    // Batches in flight finish; every task then sees the shutdown.
    while shards.tasks.join_next().await.is_some() {}
}

/// The supervisor's shard tasks: the shard each one reads, and the shards
/// read to their end.
#[derive(Default)]
struct ShardTasks {
    tasks: JoinSet<ShardExit>,
    task_shards: HashMap<tokio::task::Id, String>,
    reading: HashSet<String>,
    finished: HashSet<String>,
}

impl ShardTasks {
    /// Starts a task for every shard of `listing` that is ready and not
    /// being read, from its acknowledged position.
    fn start<S, H, Fut>(
        &mut self,
        mapping: &Arc<Mapping<S, H>>,
        listing: &[ShardInfo],
        shutdown: &watch::Receiver<bool>,
    ) where
        S: Source,
        H: Fn(S::Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S::Response> + Send + 'static,
    {
        for shard in ready_shards(listing, &self.finished, &self.reading) {
            let id = shard.id.as_str();
            let start = mapping.progress.position(id);
            let task = self.tasks.spawn(read_shard(
                mapping.clone(),
                id.to_owned(),
                start,
                shutdown.clone(),
            ));
            self.task_shards.insert(task.id(), id.to_owned());
            self.reading.insert(id.to_owned());
        }
    }

    /// Settles a task that ended: its shard is no longer read, and is
    /// finished if the task read it to its end; one that died is
    /// restarted by the next listing.
    fn ended(
        &mut self,
        progress: &Progress,
        joined: Result<(tokio::task::Id, ShardExit), tokio::task::JoinError>,
    ) {
        let (id, exit) = match joined {
            Ok((id, exit)) => (id, Some(exit)),
            Err(e) => (e.id(), None),
        };
        let Some(shard) = self.task_shards.remove(&id) else {
            return;
        };
        self.reading.remove(&shard);
        match exit {
            Some(ShardExit::Finished) => {
                progress.finished(&shard);
                self.finished.insert(shard);
            }
            Some(ShardExit::Stopped) => {}
            None => tracing::error!(
                %shard,
                "shard task died; restarting it from its acknowledged position"
            ),
        }
    }
}

/// Reads one shard from `position` to its end (or to shutdown), delivering
/// batches to the handler with Lambda's retry rules.
async fn read_shard<S, H, Fut>(
    mapping: Arc<Mapping<S, H>>,
    shard: String,
    position: ShardPosition,
    shutdown: watch::Receiver<bool>,
) -> ShardExit
where
    S: Source,
    H: Fn(S::Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S::Response> + Send + 'static,
{
    let _reading = Reading::new(mapping.progress.clone());
    let mut reader = ShardReader {
        rng: jitter_rng(&shard),
        mapping,
        shard,
        position,
        iterator: None,
        errors: 0,
        retrying: None,
        shutdown,
    };
    loop {
        if let ControlFlow::Break(exit) = reader.step().await {
            return exit;
        }
    }
}

/// One shard task's state between reads.
struct ShardReader<S, H> {
    mapping: Arc<Mapping<S, H>>,
    shard: String,
    /// Where a new iterator starts: the acknowledged position, or the record a
    /// redelivery starts at.
    position: ShardPosition,
    iterator: Option<String>,
    /// Consecutive failed calls.
    errors: u32,
    /// The sequence number a redelivery starts at, and how often it failed.
    retrying: Option<(String, u32)>,
    rng: SplitMix64,
    shutdown: watch::Receiver<bool>,
}

impl<S, H, Fut> ShardReader<S, H>
where
    S: Source,
    H: Fn(S::Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S::Response> + Send + 'static,
{
    /// One read and, when it found records, one delivery.
    async fn step(&mut self) -> ControlFlow<ShardExit> {
        let Some((page, began)) = self.read().await? else {
            return ControlFlow::Continue(());
        };
        if !page.records.is_empty() {
            return self.deliver(page).await;
        }
        if page.at_end {
            self.mapping.progress.at_end(&self.shard, began);
        }
        let Some(next) = page.next else {
            return ControlFlow::Break(ShardExit::Finished);
        };
        self.iterator = Some(next);
        self.sleep(self.mapping.config.idle_poll_interval).await
    }

    /// The next page and when its read began; `None` after a failed call
    /// (logged, and waited out).
    async fn read(&mut self) -> ControlFlow<ShardExit, Option<(ShardPage<S::Record>, Instant)>> {
        let iterator = match self.iterator.take() {
            Some(iterator) => iterator,
            None => {
                let request = self.mapping.source.iterator(&self.shard, &self.position);
                match unless_stopped(&mut self.shutdown, request).await {
                    None => return ControlFlow::Break(ShardExit::Stopped),
                    Some(Ok(iterator)) => iterator,
                    Some(Err(e)) => return self.failed(e).await.map_continue(|()| None),
                }
            }
        };
        let began = Instant::now();
        let config = &self.mapping.config;
        let request = self
            .mapping
            .source
            .read(&self.shard, iterator, config.batch_size);
        match unless_stopped(&mut self.shutdown, request).await {
            None => ControlFlow::Break(ShardExit::Stopped),
            Some(Ok(page)) => {
                self.errors = 0;
                ControlFlow::Continue(Some((page, began)))
            }
            Some(Err(e)) => self.failed(e).await.map_continue(|()| None),
        }
    }

    /// Logs a failed call, moves the position if it must, and backs off.
    async fn failed(&mut self, error: ShardReadError) -> ControlFlow<ShardExit> {
        self.errors += 1;
        let position = std::mem::replace(&mut self.position, ShardPosition::TrimHorizon);
        self.position = after_error(&self.shard, position, error, self.errors);
        let wait = self.backoff(self.errors);
        self.sleep(wait).await
    }

    /// Hands a batch to the handler and moves past what it acknowledged.
    async fn deliver(&mut self, page: ShardPage<S::Record>) -> ControlFlow<ShardExit> {
        let sequence_numbers: Vec<String> = page
            .records
            .iter()
            .map(|r| S::sequence_number(r).to_owned())
            .collect();
        let entered_at: Vec<Option<DateTime<Utc>>> =
            page.records.iter().map(S::entered_at).collect();
        let progress = &self.mapping.progress;
        progress.delivered(page.records.len(), self.retrying.is_some());
        let outcome = match invoke(&self.mapping.handler, S::event(page.records)).await {
            Some(response) => {
                let ids: Vec<&str> = sequence_numbers.iter().map(String::as_str).collect();
                batch_outcome(&ids, &S::failures(response))
            }
            None => BatchOutcome::Retry {
                from: 0,
                cause: RetryCause::Panicked,
            },
        };
        let (acknowledged, retry) = match outcome {
            BatchOutcome::Acknowledged => (sequence_numbers.len(), None),
            BatchOutcome::Retry { from, cause } => (from, Some(cause)),
        };
        if let Some(last) = acknowledged.checked_sub(1) {
            let acknowledged_at = ShardPosition::After(sequence_numbers[last].clone());
            progress.acknowledged(
                &self.shard,
                acknowledged,
                entered_at[last],
                &acknowledged_at,
            );
            self.position = acknowledged_at;
        }
        match retry {
            None => {
                self.retrying = None;
                let Some(next) = page.next else {
                    return ControlFlow::Break(ShardExit::Finished);
                };
                self.iterator = Some(next);
                ControlFlow::Continue(())
            }
            Some(cause) => {
                self.redeliver_from(&sequence_numbers[acknowledged], cause)
                    .await
            }
        }
    }

    /// Backs off, then reads the shard again from record `at`.
    async fn redeliver_from(&mut self, at: &str, cause: RetryCause) -> ControlFlow<ShardExit> {
        let attempt = match self.retrying.take() {
            Some((previous, attempts)) if previous == at => attempts + 1,
            _ => 1,
        };
        self.retrying = Some((at.to_owned(), attempt));
        let wait = self.backoff(attempt);
        tracing::warn!(
            shard = %self.shard,
            identifier = %at,
            %cause,
            attempt,
            backoff_ms = wait.as_millis() as u64,
            "batch failed; redelivering from the failed record"
        );
        self.position = ShardPosition::At(at.to_owned());
        self.iterator = None;
        self.sleep(wait).await
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let config = &self.mapping.config;
        backoff(
            attempt,
            config.retry_backoff_min,
            config.retry_backoff_max,
            self.rng.next_u64(),
        )
    }

    async fn sleep(&mut self, wait: Duration) -> ControlFlow<ShardExit> {
        match unless_stopped(&mut self.shutdown, tokio::time::sleep(wait)).await {
            Some(()) => ControlFlow::Continue(()),
            None => ControlFlow::Break(ShardExit::Stopped),
        }
    }
}

/// Logs a failed call and says where the next iterator starts.
fn after_error(
    shard: &str,
    position: ShardPosition,
    error: ShardReadError,
    attempt: u32,
) -> ShardPosition {
    match error {
        ShardReadError::Expired => {
            tracing::debug!(%shard, "shard iterator expired; taking a new one at the acknowledged position");
            position
        }
        ShardReadError::Trimmed(why) => {
            tracing::warn!(%shard, error = %why, "acknowledged position past the stream's retention; restarting at the trim horizon");
            ShardPosition::TrimHorizon
        }
        ShardReadError::Other(why) => {
            tracing::warn!(%shard, error = %why, attempt, "stream call failed; retrying");
            position
        }
    }
}

/// Calls the handler in a task of its own, so a panic is a failed batch
/// (Lambda's function error) rather than a dead shard. `None` when it
/// panicked.
async fn invoke<H, E, Fut>(handler: &H, event: E) -> Option<Fut::Output>
where
    H: Fn(E) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(handler(event)));
    match (&mut task.0).await {
        Ok(response) => Some(response),
        Err(e) => {
            tracing::error!(error = %e, "the handler panicked; the whole batch failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            first_sequence: None,
        }
    }

    #[test]
    fn no_failures_acknowledge_the_batch() {
        assert_eq!(batch_outcome(&["1", "2"], &[]), BatchOutcome::Acknowledged);
    }

    #[test]
    fn the_lowest_failed_sequence_number_is_the_retry_point() {
        let batch = ["98", "99", "100", "101"];
        let failures = [
            Some("101".to_owned()),
            Some("99".to_owned()),
            Some("100".to_owned()),
        ];
        assert_eq!(
            batch_outcome(&batch, &failures),
            BatchOutcome::Retry {
                from: 1,
                cause: RetryCause::Failed("99".to_owned())
            }
        );
    }

    #[test]
    fn an_invalid_identifier_fails_the_whole_batch() {
        let batch = ["5", "6", "7"];
        for bad in [None, Some(String::new()), Some("8".to_owned())] {
            let failures = [Some("7".to_owned()), bad.clone()];
            assert_eq!(
                batch_outcome(&batch, &failures),
                BatchOutcome::Retry {
                    from: 0,
                    cause: RetryCause::Invalid(bad)
                }
            );
        }
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        let min = Duration::from_millis(10);
        let max = Duration::from_secs(1);
        for random in [0, 1, 12_345, u64::MAX / 3, u64::MAX] {
            let mut ceiling = min;
            for attempt in 1..=40 {
                let wait = backoff(attempt, min, max, random);
                assert!(wait >= min && wait <= max, "{attempt}: {wait:?}");
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{attempt}: {wait:?}"
                );
                ceiling = (ceiling * 2).min(max);
            }
        }
        assert_eq!(backoff(0, min, max, 0), min);
        assert!(backoff(u32::MAX, min, max, u64::MAX) >= max / 2);
    }

    #[test]
    fn coverage_needs_a_fresh_listing_and_every_shard_at_its_end() {
        let before = Instant::now();
        let since = before + Duration::from_millis(1);
        let after = since + Duration::from_millis(1);
        let mut c = Coverage {
            listed_at: Some(after),
            listing: vec!["a".into(), "b".into()],
            ..Coverage::default()
        };
        c.finished.insert("a".into());
        c.at_end_since.insert("b".into(), before);
        assert!(!c.covers(since), "b's end was seen before the call");
        c.at_end_since.insert("b".into(), after);
        assert!(c.covers(since));
        c.listed_at = Some(before);
        assert!(!c.covers(since), "the listing is older than the call");
    }

    /// A stream in memory: shards with their sequence numbers, and faults
    /// to answer reads with.
    #[derive(Default)]
    struct FakeSource {
        shards: Vec<(ShardInfo, Vec<u64>, bool)>,
        /// Reads still to answer with an expired iterator.
        expire: std::sync::atomic::AtomicU32,
        /// Calls still to fail.
        fail: std::sync::atomic::AtomicU32,
    }

    fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        counter
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    impl FakeSource {
        fn shard(&self, id: &str) -> Result<&(ShardInfo, Vec<u64>, bool), ShardReadError> {
            self.shards
                .iter()
                .find(|(s, _, _)| s.id == id)
                .ok_or_else(|| ShardReadError::Other(format!("no shard {id}")))
        }
    }

    impl Source for FakeSource {
        /// (shard, sequence number)
        type Record = (String, String);
        type Event = Vec<(String, String)>;
        type Response = Vec<Option<String>>;
        const BATCH_SIZE_MAX: usize = 1_000;

        async fn shards(&self) -> Result<Vec<ShardInfo>, ShardReadError> {
            if take(&self.fail) {
                return Err(ShardReadError::Other("listing failed".into()));
            }
            Ok(self.shards.iter().map(|(s, _, _)| s.clone()).collect())
        }

        async fn iterator(
            &self,
            shard: &str,
            from: &ShardPosition,
        ) -> Result<String, ShardReadError> {
            let (_, records, _) = self.shard(shard)?;
            let find = |s: &str| {
                records
                    .iter()
                    .position(|r| r.to_string() == s)
                    .ok_or_else(|| ShardReadError::Other(format!("no record {s}")))
            };
            let index = match from {
                ShardPosition::TrimHorizon => 0,
                ShardPosition::At(s) => find(s)?,
                ShardPosition::After(s) => find(s)? + 1,
            };
            Ok(format!("{shard}/{index}"))
        }

        async fn read(
            &self,
            shard: &str,
            iterator: String,
            limit: usize,
        ) -> Result<ShardPage<(String, String)>, ShardReadError> {
            if take(&self.expire) {
                return Err(ShardReadError::Expired);
            }
            if take(&self.fail) {
                return Err(ShardReadError::Other("read failed".into()));
            }
            let (_, records, closed) = self.shard(shard)?;
            let index: usize = iterator
                .rsplit_once('/')
                .and_then(|(_, i)| i.parse().ok())
                .ok_or_else(|| ShardReadError::Other(format!("bad iterator {iterator}")))?;
            let end = (index + limit).min(records.len());
            let page: Vec<(String, String)> = records[index..end]
                .iter()
                .map(|r| (shard.to_owned(), r.to_string()))
                .collect();
            let next = (!*closed || end < records.len()).then(|| format!("{shard}/{end}"));
            Ok(ShardPage {
                at_end: page.is_empty(),
                records: page,
                next,
            })
        }

        fn sequence_number(record: &(String, String)) -> &str {
            &record.1
        }

        fn entered_at(_: &(String, String)) -> Option<DateTime<Utc>> {
            None
        }

        fn event(records: Vec<(String, String)>) -> Self::Event {
            records
        }

        fn failures(response: Self::Response) -> Vec<Option<String>> {
            response
        }
    }

    fn fast() -> MappingConfig {
        MappingConfig {
            batch_size: 4,
            idle_poll_interval: Duration::from_millis(1),
            shard_discovery_interval: Duration::from_millis(20),
            retry_backoff_min: Duration::from_millis(1),
            retry_backoff_max: Duration::from_millis(5),
        }
    }

    type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

    fn run(source: FakeSource, fail_once: Option<&str>) -> (RunnerHandle, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fail_once = fail_once.map(str::to_owned);
        let handler = move |batch: Vec<(String, String)>| {
            log.lock().unwrap().push(batch.clone());
            let failure = fail_once
                .as_ref()
                .filter(|f| batch.iter().any(|(_, s)| s == *f))
                .filter(|_| !failed.swap(true, std::sync::atomic::Ordering::SeqCst))
                .cloned();
            async move { failure.into_iter().map(Some).collect::<Vec<_>>() }
        };
        (start_mapping(source, fast(), handler, "arn".into()), seen)
    }

    #[tokio::test]
    async fn children_are_read_after_their_parents_across_a_split() {
        let source = FakeSource {
            shards: vec![
                (shard("p", &[]), (1..=6).collect(), true),
                (shard("l", &["p"]), (10..=13).collect(), false),
                (shard("r", &["p"]), (20..=22).collect(), true),
            ],
            ..FakeSource::default()
        };
        let (runner, seen) = run(source, None);
        runner
            .caught_up(Duration::from_secs(5))
            .await
            .expect("caught up");
        let delivered: Vec<(String, String)> = seen.lock().unwrap().concat();
        let last_parent = delivered.iter().rposition(|(s, _)| s == "p");
        let first_child = delivered.iter().position(|(s, _)| s != "p");
        assert!(last_parent < first_child, "{delivered:?}");
        assert_eq!(delivered.len(), 6 + 4 + 3);
        let stats = runner.stats();
        assert_eq!(stats.shards_finished, 2, "p and r are closed and read");
        assert_eq!(stats.records_acknowledged, 13);
        assert!(seen.lock().unwrap().iter().all(|b| b.len() <= 4));
        runner.stop().await;
    }

    #[tokio::test]
    async fn expired_iterators_and_failed_calls_lose_and_repeat_nothing() {
        let source = FakeSource {
            shards: vec![(shard("s", &[]), (1..=10).collect(), false)],
            expire: 3.into(),
            fail: 3.into(),
        };
        let (runner, seen) = run(source, None);
        runner
            .caught_up(Duration::from_secs(5))
            .await
            .expect("caught up");
        let delivered: Vec<String> = seen
            .lock()
            .unwrap()
            .concat()
            .into_iter()
            .map(|r| r.1)
            .collect();
        let expected: Vec<String> = (1..=10).map(|n: u64| n.to_string()).collect();
        assert_eq!(delivered, expected);
        assert_eq!(runner.stats().redeliveries, 0);
        runner.stop().await;
    }

    #[tokio::test]
    async fn a_failed_item_is_redelivered_from_the_shard_with_what_follows() {
        let source = FakeSource {
            shards: vec![(shard("s", &[]), (1..=10).collect(), true)],
            ..FakeSource::default()
        };
        let (runner, seen) = run(source, Some("6"));
        runner
            .caught_up(Duration::from_secs(5))
            .await
            .expect("caught up");
        let batches: Vec<Vec<String>> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.iter().map(|r| r.1.clone()).collect())
            .collect();
        assert_eq!(
            batches,
            [
                vec!["1", "2", "3", "4"],
                vec!["5", "6", "7", "8"],
                vec!["6", "7", "8", "9"],
                vec!["10"]
            ]
        );
        let stats = runner.stats();
        assert_eq!((stats.redeliveries, stats.records_acknowledged), (1, 10));
        assert_eq!(stats.shards_finished, 1);
        runner.stop().await;
    }

    #[tokio::test]
    async fn dropping_the_handle_aborts_a_hung_handler() {
        let source = FakeSource {
            shards: vec![(shard("s", &[]), vec![1], false)],
            ..FakeSource::default()
        };
        let entered = Arc::new(Notify::new());
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (signal, flag) = (entered.clone(), released.clone());
        let runner = start_mapping(
            source,
            fast(),
            move |_: Vec<(String, String)>| {
                let (signal, flag) = (signal.clone(), flag.clone());
                async move {
                    signal.notify_one();
                    // Never answers: only an abort ends it.
                    let _unset_on_abort = SetOnDrop(flag);
                    std::future::pending::<Vec<Option<String>>>().await
                }
            },
            "arn".into(),
        );
        entered.notified().await;
        let stats = runner.subscribe();
        drop(runner);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !released.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the handler's task was aborted");
        let mut stats = stats;
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while stats.changed().await.is_ok() {}
        });
        assert!(closed.await.is_ok(), "every task ended");
    }

    struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
