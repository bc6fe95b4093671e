//! A local stand-in for Lambda's event source mapping (ESM) on a DynamoDB
//! Stream, and the mapping core it shares with the Kinesis runner.
//!
//! DynamoDB Local has no Lambda triggers, so tests and the local server
//! need something that reads a table's stream and calls the same handler
//! function Lambda would, with the same batches and the same retry rules.
//! [`StreamsRunner`] is that. What it emulates, as Lambda documents it for
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
//!   built exactly as Lambda builds them ([`lambda_record`]).
//! - **Partial failures.** A response with no `batchItemFailures` checkpoints
//!   after the batch's last record. Otherwise the lowest failed sequence
//!   number (compared as numbers) is the retry point: the checkpoint moves
//!   to just before it and the shard is read again from it, so records after
//!   it that succeeded are delivered again. An `itemIdentifier` that is
//!   empty, null or not a sequence number of the batch fails the whole
//!   batch, as does a handler that panics (Lambda's "function error").
//!   Retries wait a jittered exponential backoff and never end (the Streams
//!   ESM default of unlimited retries), so a poison record blocks its shard;
//!   each retry is logged as a warning with the failing identifier and the
//!   attempt count.
//! - **Errors of the service** (throttling, a network blip, an expired
//!   iterator) are logged and retried with backoff from the checkpoint;
//!   they never end the runner.
//!
//! Where it differs from Lambda:
//!
//! - Checkpoints live in memory. A restarted runner starts again from
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

use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType, UserIdentity,
};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::kinesalite::sdk_config;

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

/// What the DynamoDB Streams runner reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsRunnerConfig {
    /// A DynamoDB endpoint (DynamoDB Local, which serves Streams on the same
    /// port); `None` for the service, with credentials and region from the
    /// environment.
    pub endpoint: Option<String>,
    /// The table whose stream is read (its `LatestStreamArn`).
    pub table_name: String,
    /// Batch size, polling and retry backoff.
    pub mapping: MappingConfig,
}

impl StreamsRunnerConfig {
    /// The default mapping on `table_name`'s stream at `endpoint`.
    pub fn new(endpoint: Option<String>, table_name: impl Into<String>) -> Self {
        StreamsRunnerConfig {
            endpoint,
            table_name: table_name.into(),
            mapping: MappingConfig::default(),
        }
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
    /// Records checkpointed (acknowledged), each once.
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

/// Emulates Lambda's event source mapping on a table's DynamoDB Stream.
#[derive(Debug)]
pub struct StreamsRunner;

impl StreamsRunner {
    /// Finds the table's stream and starts delivering its records to
    /// `handler`, one task per shard, until the handle is stopped or
    /// dropped.
    ///
    /// # Errors
    /// [`RunnerError::Config`] for an out-of-bounds configuration;
    /// [`RunnerError::Setup`] when the table cannot be described or has no
    /// stream.
    pub async fn start<H, Fut>(
        config: StreamsRunnerConfig,
        handler: H,
    ) -> Result<RunnerHandle, RunnerError>
    where
        H: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = DynamoDbEventResponse> + Send + 'static,
    {
        config.mapping.check(StreamsSource::BATCH_SIZE_MAX)?;
        let sdk = sdk_config(config.endpoint.as_deref()).await;
        let described = aws_sdk_dynamodb::Client::new(&sdk)
            .describe_table()
            .table_name(&config.table_name)
            .send()
            .await
            .map_err(|e| {
                RunnerError::Setup(format!(
                    "DescribeTable {}: {}",
                    config.table_name,
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ))
            })?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                RunnerError::Setup(format!("table {} has no stream", config.table_name))
            })?
            .to_owned();
        let source = StreamsSource {
            client: aws_sdk_dynamodbstreams::Client::new(&sdk),
            stream_arn: stream_arn.clone(),
        };
        Ok(start_mapping(source, config.mapping, handler, stream_arn))
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

/// A shard as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) id: String,
    /// The shards it was split or merged from.
    pub(crate) parents: Vec<String>,
}

/// Where a shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    TrimHorizon,
    At(String),
    After(String),
}

/// A failed read or iterator request.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The iterator expired: take a new one from the checkpoint.
    Expired,
    /// The position is older than the stream's retention: start again from
    /// the trim horizon (those records are gone).
    Trimmed(String),
    /// Anything else: retry after a backoff.
    Other(String),
}

/// One `GetRecords`.
#[derive(Debug)]
pub(crate) struct Page<R> {
    pub(crate) records: Vec<R>,
    /// `None` once a closed shard has been read to its end.
    pub(crate) next: Option<String>,
    /// Nothing new and nothing further behind: the shard's current end.
    pub(crate) at_end: bool,
}

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

    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, String>> + Send;
    fn iterator(
        &self,
        shard: &str,
        from: &Position,
    ) -> impl Future<Output = Result<String, ReadError>> + Send;
    fn read(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Self::Record>, ReadError>> + Send;
    /// The record's sequence number (its batch item identifier).
    fn sequence_number(record: &Self::Record) -> &str;
    /// When the record entered the source.
    fn entered_at(record: &Self::Record) -> Option<DateTime<Utc>>;
    fn event(records: Vec<Self::Record>) -> Self::Event;
    /// The response's `batchItemFailures` identifiers.
    fn failures(response: Self::Response) -> Vec<Option<String>>;
}

/// Which shards may start now: not finished, not already being read, and
/// every parent finished or no longer listed (trimmed). Listing order is
/// kept.
pub(crate) fn ready_shards<'a>(
    listing: &'a [ShardInfo],
    finished: &HashSet<String>,
    reading: &HashSet<String>,
) -> Vec<&'a str> {
    let listed: HashSet<&str> = listing.iter().map(|s| s.id.as_str()).collect();
    listing
        .iter()
        .filter(|s| !finished.contains(&s.id) && !reading.contains(&s.id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| finished.contains(p) || !listed.contains(p.as_str()))
        })
        .map(|s| s.id.as_str())
        .collect()
}

/// Orders sequence numbers as the numbers they spell: decimal strings of
/// varying length, so "9" < "10". Leading zeros do not count.
pub(crate) fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// What a handler's answer means for its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    /// Checkpoint after the last record.
    Acknowledged,
    /// Checkpoint before record `from` (an index into the batch) and read
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

/// SplitMix64: a small, fast, seedable generator, enough for jitter and
/// for the shim's deterministic faults.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator seeded from the clock and `salt`, for jitter.
    pub(crate) fn from_entropy(salt: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let salt = salt.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        SplitMix64(nanos ^ salt)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p` (clamped to 0..=1).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        // 53 random bits make a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p.clamp(0.0, 1.0)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
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
    /// Each shard's checkpoint, so a shard task that died restarts there.
    positions: Mutex<HashMap<String, Position>>,
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
    fn position(&self, shard: &str) -> Position {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shard)
            .cloned()
            .unwrap_or(Position::TrimHorizon)
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
        position: &Position,
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
    let mut rng = SplitMix64::from_entropy("supervisor");
    let mut tasks = JoinSet::new();
    let mut task_shards: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut reading: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut failures = 0u32;
    loop {
        let listed_at = Instant::now();
        let pause = match unless_stopped(&mut shutdown, mapping.source.shards()).await {
            None => break,
            Some(Ok(listing)) => {
                failures = 0;
                for id in ready_shards(&listing, &finished, &reading) {
                    let start = progress.position(id);
                    let task = tasks.spawn(read_shard(
                        mapping.clone(),
                        id.to_owned(),
                        start,
                        shutdown.clone(),
                    ));
                    task_shards.insert(task.id(), id.to_owned());
                    reading.insert(id.to_owned());
                }
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
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, exit) = match joined {
                    Ok((id, exit)) => (id, Some(exit)),
                    Err(e) => (e.id(), None),
                };
                let Some(shard) = task_shards.remove(&id) else { continue };
                reading.remove(&shard);
                match exit {
                    Some(ShardExit::Finished) => {
                        progress.finished(&shard);
                        finished.insert(shard);
                    }
                    Some(ShardExit::Stopped) => {}
                    None => tracing::error!(
                        %shard,
                        "shard task died; restarting it from its checkpoint"
                    ),
                }
            }
        }
    }
    // Batches in flight finish; every task then sees the shutdown.
    while tasks.join_next().await.is_some() {}
}

/// Reads one shard from `position` to its end (or to shutdown), delivering
/// batches to the handler with Lambda's retry rules.
async fn read_shard<S, H, Fut>(
    mapping: Arc<Mapping<S, H>>,
    shard: String,
    position: Position,
    shutdown: watch::Receiver<bool>,
) -> ShardExit
where
    S: Source,
    H: Fn(S::Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S::Response> + Send + 'static,
{
    let _reading = Reading::new(mapping.progress.clone());
    let mut reader = ShardReader {
        rng: SplitMix64::from_entropy(&shard),
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
    /// Where a new iterator starts: the checkpoint, or the record a
    /// redelivery starts at.
    position: Position,
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
    async fn read(&mut self) -> ControlFlow<ShardExit, Option<(Page<S::Record>, Instant)>> {
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
    async fn failed(&mut self, error: ReadError) -> ControlFlow<ShardExit> {
        self.errors += 1;
        let position = std::mem::replace(&mut self.position, Position::TrimHorizon);
        self.position = after_error(&self.shard, position, error, self.errors);
        let wait = self.backoff(self.errors);
        self.sleep(wait).await
    }

    /// Hands a batch to the handler and checkpoints what it acknowledged.
    async fn deliver(&mut self, page: Page<S::Record>) -> ControlFlow<ShardExit> {
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
            let checkpoint = Position::After(sequence_numbers[last].clone());
            progress.acknowledged(&self.shard, acknowledged, entered_at[last], &checkpoint);
            self.position = checkpoint;
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
        self.position = Position::At(at.to_owned());
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
fn after_error(shard: &str, position: Position, error: ReadError, attempt: u32) -> Position {
    match error {
        ReadError::Expired => {
            tracing::debug!(%shard, "shard iterator expired; taking a new one at the checkpoint");
            position
        }
        ReadError::Trimmed(why) => {
            tracing::warn!(%shard, error = %why, "checkpoint past the stream's retention; restarting at the trim horizon");
            Position::TrimHorizon
        }
        ReadError::Other(why) => {
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

// The DynamoDB Streams source.

struct StreamsSource {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
}

impl Source for StreamsSource {
    type Record = EventRecord;
    type Event = Event;
    type Response = DynamoDbEventResponse;
    const BATCH_SIZE_MAX: usize = STREAMS_BATCH_SIZE_MAX;

    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let described = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| streams_error("DescribeStream", e))?;
            let description = described
                .stream_description
                .ok_or("DescribeStream returned no description")?;
            shards.extend(
                description
                    .shards
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|shard| {
                        Some(ShardInfo {
                            id: shard.shard_id?,
                            parents: shard.parent_shard_id.into_iter().collect(),
                        })
                    }),
            );
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, shard: &str, from: &Position) -> Result<String, ReadError> {
        let (kind, sequence) = match from {
            Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            Position::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone())),
            Position::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
        };
        let got = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence)
            .send()
            .await;
        match got {
            Ok(got) => got
                .shard_iterator
                .ok_or_else(|| ReadError::Other("GetShardIterator returned no iterator".into())),
            Err(e) => Err(match e.as_service_error() {
                Some(s) if s.is_trimmed_data_access_exception() => {
                    ReadError::Trimmed(streams_error("GetShardIterator", e))
                }
                _ => ReadError::Other(streams_error("GetShardIterator", e)),
            }),
        }
    }

    async fn read(
        &self,
        _shard: &str,
        iterator: String,
        limit: usize,
    ) -> Result<Page<EventRecord>, ReadError> {
        let got = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await;
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                return Err(match e.as_service_error() {
                    Some(s) if s.is_expired_iterator_exception() => ReadError::Expired,
                    Some(s) if s.is_trimmed_data_access_exception() => {
                        ReadError::Trimmed(streams_error("GetRecords", e))
                    }
                    _ => ReadError::Other(streams_error("GetRecords", e)),
                });
            }
        };
        let fetched = got.records.unwrap_or_default();
        let at_end = fetched.is_empty();
        let records = fetched
            .into_iter()
            .filter_map(|record| {
                let converted = lambda_record(record, &self.stream_arn);
                if converted.is_none() {
                    tracing::warn!(
                        stream = %self.stream_arn,
                        "stream record without a sequence number skipped"
                    );
                }
                converted
            })
            .collect();
        Ok(Page {
            records,
            next: got.next_shard_iterator,
            at_end,
        })
    }

    fn sequence_number(record: &EventRecord) -> &str {
        record.change.sequence_number.as_deref().unwrap_or_default()
    }

    fn entered_at(record: &EventRecord) -> Option<DateTime<Utc>> {
        Some(record.change.approximate_creation_date_time)
    }

    fn event(records: Vec<EventRecord>) -> Event {
        let mut event = Event::default();
        event.records = records;
        event
    }

    fn failures(response: DynamoDbEventResponse) -> Vec<Option<String>> {
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}

fn streams_error(operation: &str, e: impl std::error::Error) -> String {
    format!(
        "DynamoDB Streams {operation}: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
    )
}

/// A DynamoDB Streams record as Lambda hands it to a function: the
/// record's own fields (`eventID`, `eventName`, `eventVersion`,
/// `eventSource`, `awsRegion`, `userIdentity`, and in `dynamodb` the
/// `ApproximateCreationDateTime`, `Keys`, `NewImage`, `OldImage`,
/// `SequenceNumber`, `SizeBytes` and `StreamViewType`) plus the
/// `eventSourceARN` Lambda adds. `None` for a record without a sequence
/// number, which no mapping could checkpoint. Attribute values of a type
/// this SDK does not know are left out rather than guessed.
pub fn lambda_record(
    record: aws_sdk_dynamodbstreams::types::Record,
    stream_arn: &str,
) -> Option<EventRecord> {
    let change = record.dynamodb?;
    let sequence_number = change.sequence_number?;
    let mut converted = StreamRecord::default();
    converted.approximate_creation_date_time = change
        .approximate_creation_date_time
        .and_then(|at| DateTime::from_timestamp(at.secs(), at.subsec_nanos()))
        .unwrap_or_default();
    converted.keys = item(change.keys);
    converted.new_image = item(change.new_image);
    converted.old_image = item(change.old_image);
    converted.sequence_number = Some(sequence_number);
    converted.size_bytes = change.size_bytes.unwrap_or_default();
    converted.stream_view_type = change.stream_view_type.and_then(|view| {
        use aws_sdk_dynamodbstreams::types::StreamViewType as Sdk;
        match view {
            Sdk::KeysOnly => Some(StreamViewType::KeysOnly),
            Sdk::NewImage => Some(StreamViewType::NewImage),
            Sdk::OldImage => Some(StreamViewType::OldImage),
            Sdk::NewAndOldImages => Some(StreamViewType::NewAndOldImages),
            _ => None,
        }
    });
    let mut event = EventRecord::default();
    event.aws_region = record.aws_region.unwrap_or_default();
    event.change = converted;
    event.event_id = record.event_id.unwrap_or_default();
    event.event_name = record
        .event_name
        .map(|name| name.as_str().to_owned())
        .unwrap_or_default();
    event.event_source = record.event_source;
    event.event_version = record.event_version;
    event.event_source_arn = Some(stream_arn.to_owned());
    event.user_identity = record.user_identity.map(|identity| {
        let mut user = UserIdentity::default();
        user.type_ = identity.r#type.unwrap_or_default();
        user.principal_id = identity.principal_id.unwrap_or_default();
        user
    });
    Some(event)
}

fn item(image: Option<HashMap<String, AttributeValue>>) -> serde_dynamo::Item {
    image
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| Some((name, attribute(value)?)))
        .collect::<HashMap<String, serde_dynamo::AttributeValue>>()
        .into()
}

/// The SDK's attribute value as serde_dynamo's (whose own `From` panics on
/// a variant it does not know).
fn attribute(value: AttributeValue) -> Option<serde_dynamo::AttributeValue> {
    use serde_dynamo::AttributeValue as D;
    Some(match value {
        AttributeValue::B(b) => D::B(b.into_inner()),
        AttributeValue::Bool(b) => D::Bool(b),
        AttributeValue::Bs(bs) => D::Bs(bs.into_iter().map(|b| b.into_inner()).collect()),
        AttributeValue::L(l) => D::L(l.into_iter().filter_map(attribute).collect()),
        AttributeValue::M(m) => D::M(
            m.into_iter()
                .filter_map(|(k, v)| Some((k, attribute(v)?)))
                .collect(),
        ),
        AttributeValue::N(n) => D::N(n),
        AttributeValue::Ns(ns) => D::Ns(ns),
        AttributeValue::Null(null) => D::Null(null),
        AttributeValue::S(s) => D::S(s),
        AttributeValue::Ss(ss) => D::Ss(ss),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_child_waits_for_its_parent_along_a_chain() {
        let listing = [shard("a", &[]), shard("b", &["a"]), shard("c", &["b"])];
        assert_eq!(ready_shards(&listing, &set(&[]), &set(&[])), ["a"]);
        assert!(ready_shards(&listing, &set(&[]), &set(&["a"])).is_empty());
        assert_eq!(ready_shards(&listing, &set(&["a"]), &set(&[])), ["b"]);
        assert_eq!(ready_shards(&listing, &set(&["a", "b"]), &set(&[])), ["c"]);
        assert!(ready_shards(&listing, &set(&["a", "b", "c"]), &set(&[])).is_empty());
    }

    #[test]
    fn both_halves_of_a_split_start_together_after_the_parent() {
        let listing = [shard("p", &[]), shard("l", &["p"]), shard("r", &["p"])];
        assert_eq!(ready_shards(&listing, &set(&[]), &set(&[])), ["p"]);
        assert_eq!(ready_shards(&listing, &set(&["p"]), &set(&[])), ["l", "r"]);
        assert_eq!(ready_shards(&listing, &set(&["p"]), &set(&["l"])), ["r"]);
    }

    #[test]
    fn a_merge_waits_for_both_parents() {
        let listing = [shard("x", &[]), shard("y", &[]), shard("m", &["x", "y"])];
        assert_eq!(ready_shards(&listing, &set(&[]), &set(&[])), ["x", "y"]);
        assert_eq!(
            ready_shards(&listing, &set(&["x"]), &set(&["y"])),
            Vec::<&str>::new()
        );
        assert_eq!(ready_shards(&listing, &set(&["x", "y"]), &set(&[])), ["m"]);
    }

    #[test]
    fn a_trimmed_parent_counts_as_read() {
        let listing = [shard("b", &["gone"]), shard("c", &["b"])];
        assert_eq!(ready_shards(&listing, &set(&[]), &set(&[])), ["b"]);
        // Several open shards with trimmed parents all start at once.
        let listing = [shard("s1", &["t1"]), shard("s2", &["t2"]), shard("s3", &[])];
        assert_eq!(
            ready_shards(&listing, &set(&[]), &set(&[])),
            ["s1", "s2", "s3"]
        );
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        use Ordering::*;
        assert_eq!(compare_sequence_numbers("9", "10"), Less);
        assert_eq!(
            compare_sequence_numbers("000000000000000000010", "9"),
            Greater
        );
        assert_eq!(compare_sequence_numbers("0042", "42"), Equal);
        assert_eq!(
            compare_sequence_numbers(
                "49568167373333333333333333333333333333333333333333333333",
                "49568167373333333334444444444444444444444444444444444444"
            ),
            Less
        );
        assert_eq!(compare_sequence_numbers("", "0"), Equal);
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
    fn chance_and_below_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        assert!(!(0..1_000).any(|_| rng.chance(0.0)));
        assert!((0..1_000).all(|_| rng.chance(1.0)));
        assert!((0..1_000).all(|_| rng.below(3) < 3));
        assert_eq!(rng.below(0), 0);
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

    /// A record of a DynamoDB Streams event as Lambda delivers it, in the
    /// shape of the example in the Lambda developer guide ("Using AWS
    /// Lambda with Amazon DynamoDB"), with values of this project.
    const LAMBDA_SAMPLE: &str = r#"{
      "Records": [
        {
          "eventID": "c4ca4238a0b923820dcc509a6f75849b",
          "eventName": "INSERT",
          "eventVersion": "1.1",
          "eventSource": "aws:dynamodb",
          "awsRegion": "us-east-1",
          "dynamodb": {
            "ApproximateCreationDateTime": 1767225600,
            "Keys": {
              "pk": { "S": "acme|credit/E1" },
              "v": { "N": "1" }
            },
            "NewImage": {
              "pk": { "S": "acme|credit/E1" },
              "v": { "N": "1" },
              "b": { "B": "AAECAw==" }
            },
            "SequenceNumber": "4421584500000000017450439091",
            "SizeBytes": 59,
            "StreamViewType": "NEW_IMAGE"
          },
          "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2026-01-01T00:00:00.000"
        }
      ]
    }"#;

    fn sdk_record() -> aws_sdk_dynamodbstreams::types::Record {
        use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime as SdkTime};
        use aws_sdk_dynamodbstreams::types::{OperationType, Record, StreamViewType as View};
        let keys = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("acme|credit/E1".into())),
            ("v".to_owned(), AttributeValue::N("1".into())),
        ]);
        let mut image = keys.clone();
        image.insert(
            "b".to_owned(),
            AttributeValue::B(Blob::new(vec![0, 1, 2, 3])),
        );
        let change = aws_sdk_dynamodbstreams::types::StreamRecord::builder()
            .approximate_creation_date_time(SdkTime::from_secs(1_767_225_600))
            .set_keys(Some(keys))
            .set_new_image(Some(image))
            .sequence_number("4421584500000000017450439091")
            .size_bytes(59)
            .stream_view_type(View::NewImage)
            .build();
        Record::builder()
            .event_id("c4ca4238a0b923820dcc509a6f75849b")
            .event_name(OperationType::Insert)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(change)
            .build()
    }

    /// Every object key and the JSON type of every leaf, with nulls and
    /// empty objects left out (the Rust event type writes an absent
    /// optional field as null and an absent image as `{}`; Lambda leaves
    /// both out).
    fn shape(value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(_, v)| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
                    .map(|(k, v)| (k.clone(), shape(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
            Value::String(_) => Value::String("string".into()),
            Value::Number(_) => Value::String("number".into()),
            Value::Bool(_) => Value::String("bool".into()),
            Value::Null => Value::Null,
        }
    }

    #[test]
    fn a_converted_record_has_the_shape_lambda_delivers() {
        let arn =
            "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2026-01-01T00:00:00.000";
        let record = lambda_record(sdk_record(), arn).expect("a record with a sequence number");
        let mut event = Event::default();
        event.records = vec![record];
        let ours = serde_json::to_value(&event).expect("serializes");
        let sample: serde_json::Value =
            serde_json::from_str(LAMBDA_SAMPLE).expect("sample is JSON");
        assert_eq!(shape(&ours), shape(&sample));
        // Not only the shape: the sample read back is the record we built.
        let parsed: Event = serde_json::from_str(LAMBDA_SAMPLE).expect("the sample deserializes");
        assert_eq!(parsed, event);
        let change = &parsed.records[0].change;
        assert_eq!(
            change.new_image.get("b"),
            Some(&serde_dynamo::AttributeValue::B(vec![0, 1, 2, 3]))
        );
        assert_eq!(
            change.approximate_creation_date_time.timestamp(),
            1_767_225_600
        );
    }

    /// Every attribute type converts (the SDK's `Unknown`, which cannot be
    /// built outside it, is left out rather than panicked on as
    /// serde_dynamo's own `From` would).
    #[test]
    fn every_attribute_type_converts() {
        use aws_sdk_dynamodbstreams::primitives::Blob;
        use serde_dynamo::AttributeValue as D;
        let image = HashMap::from([
            ("b".to_owned(), AttributeValue::B(Blob::new(vec![1]))),
            ("bool".to_owned(), AttributeValue::Bool(true)),
            (
                "bs".to_owned(),
                AttributeValue::Bs(vec![Blob::new(vec![2])]),
            ),
            ("n".to_owned(), AttributeValue::N("1.5".into())),
            ("ns".to_owned(), AttributeValue::Ns(vec!["1".into()])),
            ("null".to_owned(), AttributeValue::Null(true)),
            ("s".to_owned(), AttributeValue::S("x".into())),
            ("ss".to_owned(), AttributeValue::Ss(vec!["y".into()])),
            (
                "l".to_owned(),
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([(
                    "k".to_owned(),
                    AttributeValue::S("z".into()),
                )]))]),
            ),
        ]);
        let converted = item(Some(image));
        let expected: serde_dynamo::Item = HashMap::from([
            ("b".to_owned(), D::B(vec![1])),
            ("bool".to_owned(), D::Bool(true)),
            ("bs".to_owned(), D::Bs(vec![vec![2]])),
            ("n".to_owned(), D::N("1.5".into())),
            ("ns".to_owned(), D::Ns(vec!["1".into()])),
            ("null".to_owned(), D::Null(true)),
            ("s".to_owned(), D::S("x".into())),
            ("ss".to_owned(), D::Ss(vec!["y".into()])),
            (
                "l".to_owned(),
                D::L(vec![D::M(HashMap::from([(
                    "k".to_owned(),
                    D::S("z".into()),
                )]))]),
            ),
        ])
        .into();
        assert_eq!(converted, expected);
        assert!(item(None).is_empty());
    }

    #[test]
    fn a_record_without_a_sequence_number_is_skipped() {
        let mut record = sdk_record();
        if let Some(change) = record.dynamodb.as_mut() {
            change.sequence_number = None;
        }
        assert!(lambda_record(record, "arn").is_none());
        let mut record = sdk_record();
        record.dynamodb = None;
        assert!(lambda_record(record, "arn").is_none());
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
        fn shard(&self, id: &str) -> Result<&(ShardInfo, Vec<u64>, bool), ReadError> {
            self.shards
                .iter()
                .find(|(s, _, _)| s.id == id)
                .ok_or_else(|| ReadError::Other(format!("no shard {id}")))
        }
    }

    impl Source for FakeSource {
        /// (shard, sequence number)
        type Record = (String, String);
        type Event = Vec<(String, String)>;
        type Response = Vec<Option<String>>;
        const BATCH_SIZE_MAX: usize = 1_000;

        async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
            if take(&self.fail) {
                return Err("listing failed".into());
            }
            Ok(self.shards.iter().map(|(s, _, _)| s.clone()).collect())
        }

        async fn iterator(&self, shard: &str, from: &Position) -> Result<String, ReadError> {
            let (_, records, _) = self.shard(shard)?;
            let find = |s: &str| {
                records
                    .iter()
                    .position(|r| r.to_string() == s)
                    .ok_or_else(|| ReadError::Other(format!("no record {s}")))
            };
            let index = match from {
                Position::TrimHorizon => 0,
                Position::At(s) => find(s)?,
                Position::After(s) => find(s)? + 1,
            };
            Ok(format!("{shard}/{index}"))
        }

        async fn read(
            &self,
            shard: &str,
            iterator: String,
            limit: usize,
        ) -> Result<Page<(String, String)>, ReadError> {
            if take(&self.expire) {
                return Err(ReadError::Expired);
            }
            if take(&self.fail) {
                return Err(ReadError::Other("read failed".into()));
            }
            let (_, records, closed) = self.shard(shard)?;
            let index: usize = iterator
                .rsplit_once('/')
                .and_then(|(_, i)| i.parse().ok())
                .ok_or_else(|| ReadError::Other(format!("bad iterator {iterator}")))?;
            let end = (index + limit).min(records.len());
            let page: Vec<(String, String)> = records[index..end]
                .iter()
                .map(|r| (shard.to_owned(), r.to_string()))
                .collect();
            let next = (!*closed || end < records.len()).then(|| format!("{shard}/{end}"));
            Ok(Page {
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
