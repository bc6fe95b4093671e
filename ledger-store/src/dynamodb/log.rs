//! The commit log of a DynamoDB event table: its DynamoDB Stream, followed.
//!
//! DynamoDB has no global commit order of its own. Its stream is the
//! nearest thing: every item write appears in it once, and within one shard
//! in the order the writes happened. [`StreamLog`] tails the stream and
//! gives each event record the position of its stream sequence number, so
//! the `EventStore` port's log (`read_log`, `head`, `follow`, positions on
//! records) holds on DynamoDB as it does on SQLite.
//!
//! That is sound while the stream has one shard open at a time, which is
//! DynamoDB Local's case: its sequence numbers are small, consecutive
//! integers. The service splits busy tables into several concurrently open
//! shards whose sequence numbers are not one order and do not fit a `u64`;
//! the follower refuses such a stream loudly rather than invent an order.
//! In the cloud the projectors consume the stream per item instead, gated by
//! each event's own stream version, and need no positions.
//!
//! The follower keeps the records it has seen in memory: the stream is the
//! only ordered source, and the local server it serves holds the whole log
//! in memory anyway (the command side's state and the read models).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Shard, ShardIteratorType};
use ledger_core::id::{StreamId, StreamVersion, TenantId};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::{BYTES, PK, VERSION, parse_pk};
use crate::{Position, Record, StoreError};

/// How long an append waits for the stream to show its events.
pub const STREAM_WAIT_MAX: Duration = Duration::from_secs(10);
/// Pause between polls of a shard that had nothing new.
const POLL_IDLE: Duration = Duration::from_millis(5);
/// Consecutive failed stream calls before the follower gives up.
const FAILURES_MAX: u32 = 20;
/// The longest pause between retries of a failed stream call.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(super) struct StreamLog {
    index: RwLock<Index>,
    head: watch::Sender<Position>,
    /// Why the follower stopped, once it has.
    failed: Mutex<Option<String>>,
}

#[derive(Default)]
struct Index {
    /// Every event record seen, in position order.
    records: Vec<Record>,
    positions: FxHashMap<(TenantId, StreamId, StreamVersion), Position>,
}

impl StreamLog {
    /// Starts following `stream_arn` and returns once the follower has caught
    /// up with what the stream held at the start.
    pub(super) async fn follow(
        client: Client,
        stream_arn: String,
    ) -> Result<Arc<StreamLog>, StoreError> {
        let log = Arc::new(StreamLog {
            index: RwLock::new(Index::default()),
            head: watch::Sender::new(Position::ZERO),
            failed: Mutex::new(None),
        });
        let (caught_up, mut caught_up_rx) = watch::channel(false);
        let follower = Follower {
            client,
            stream_arn,
            log: Arc::downgrade(&log),
            done: HashSet::new(),
            last_sequence: None,
        };
        tokio::spawn(follower.run(caught_up));
        caught_up_rx
            .wait_for(|&up| up)
            .await
            .map_err(|_| log.failure())?;
        Ok(log)
    }

    pub(super) fn head(&self) -> Position {
        *self.head.borrow()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    pub(super) fn read(&self, after: Position, limit: usize) -> Vec<Record> {
        let index = self.index.read().expect("stream index lock");
        let start = index.records.partition_point(|r| r.position <= after);
        index.records[start..].iter().take(limit).cloned().collect()
    }

    pub(super) fn known(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    ) -> Option<Position> {
        let index = self.index.read().expect("stream index lock");
        index.positions.get(&(tenant_id, stream, version)).copied()
    }

    /// The position of a committed event, waiting for the stream to show it.
    pub(super) async fn position_of(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        version: StreamVersion,
    ) -> Result<Position, StoreError> {
        let mut changes = self.head.subscribe();
        let deadline = tokio::time::Instant::now() + STREAM_WAIT_MAX;
        loop {
            if let Some(position) = self.known(tenant_id, stream, version) {
                return Ok(position);
            }
            if self.failed.lock().expect("failure lock").is_some() {
                return Err(self.failure());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.failure()),
                Err(_) => {
                    return Err(StoreError::Backend(format!(
                        "{stream} version {version} of tenant {tenant_id} is committed but the \
                         table's stream did not show it within {STREAM_WAIT_MAX:?}"
                    )));
                }
            }
        }
    }

    fn failure(&self) -> StoreError {
        let failed = self.failed.lock().expect("failure lock");
        StoreError::Backend(
            failed
                .clone()
                .unwrap_or_else(|| "the stream follower stopped".to_owned()),
        )
    }

    fn insert(&self, records: Vec<Record>) {
        let Some(last) = records.last().map(|r| r.position) else {
            return;
        };
        {
            let mut index = self.index.write().expect("stream index lock");
            for record in records {
                index.positions.insert(
                    (record.tenant_id, record.stream, record.version),
                    record.position,
                );
                index.records.push(record);
            }
        }
        self.head.send_replace(last);
    }
}

struct Follower {
    client: Client,
    stream_arn: String,
    /// Held weakly: the follower ends when the last store handle is dropped.
    log: std::sync::Weak<StreamLog>,
    /// Shards read to their end.
    done: HashSet<String>,
    last_sequence: Option<u64>,
}

impl Follower {
    async fn run(mut self, caught_up: watch::Sender<bool>) {
        let mut failures = 0u32;
        let mut shard: Option<(String, String)> = None;
        loop {
            if self.log.strong_count() == 0 {
                return;
            }
            let step = match shard.take() {
                None => self.next_shard().await.map(|next| {
                    shard = next;
                    false
                }),
                Some((id, iterator)) => self.poll(iterator).await.map(|next| {
                    let idle = match next {
                        Poll::More(iterator) => {
                            shard = Some((id, iterator));
                            false
                        }
                        Poll::Idle(iterator) => {
                            shard = Some((id, iterator));
                            true
                        }
                        Poll::Closed => {
                            self.done.insert(id);
                            false
                        }
                    };
                    if idle {
                        caught_up.send_replace(true);
                    }
                    idle
                }),
            };
            match step {
                Ok(idle) => {
                    failures = 0;
                    if idle {
                        tokio::time::sleep(POLL_IDLE).await;
                    }
                }
                Err(Fatal(why)) => return self.stop(why),
                Err(Transient(why)) => {
                    failures += 1;
                    if failures >= FAILURES_MAX {
                        return self.stop(format!(
                            "the stream follower gave up after {failures} failures: {why}"
                        ));
                    }
                    tracing::warn!(error = %why, failures, "stream follower retrying");
                    let backoff = Duration::from_millis(20 << failures.min(6)).min(BACKOFF_MAX);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    fn stop(&self, why: String) {
        tracing::error!(error = %why, "stream follower stopped");
        if let Some(log) = self.log.upgrade() {
            *log.failed.lock().expect("failure lock") = Some(why);
            // Wake the waiters, who look at `failed` before waiting again.
            log.head.send_modify(|_| {});
        }
    }

    /// The next shard to read and an iterator into it, or none yet.
    async fn next_shard(&mut self) -> Result<Option<(String, String)>, Failure> {
        let shards = self.shards().await?;
        let mut ready: Vec<&Shard> = shards
            .iter()
            .filter(|s| !self.done.contains(s.shard_id().unwrap_or_default()))
            .filter(|s| {
                s.parent_shard_id().is_none_or(|parent| {
                    self.done.contains(parent)
                        || !shards.iter().any(|s| s.shard_id() == Some(parent))
                })
            })
            .collect();
        if ready.len() > 1 {
            return Err(Fatal(format!(
                "the table's stream has {} shards open at once; its sequence numbers are then no \
                 single commit order (a one-shard stream, as DynamoDB Local keeps, is needed)",
                ready.len()
            )));
        }
        let Some(shard) = ready.pop() else {
            return Ok(None);
        };
        let id = shard.shard_id().unwrap_or_default().to_owned();
        let mut request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&id);
        request = match self.last_sequence {
            Some(sequence)
                if shard
                    .sequence_number_range()
                    .and_then(|r| r.starting_sequence_number())
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|start| start <= sequence) =>
            {
                request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence.to_string())
            }
            _ => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let iterator = request
            .send()
            .await
            .map_err(|e| Transient(stream_error("GetShardIterator", e)))?
            .shard_iterator
            .ok_or_else(|| Transient("GetShardIterator returned no iterator".to_owned()))?;
        Ok(Some((id, iterator)))
    }

    async fn shards(&self) -> Result<Vec<Shard>, Failure> {
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
                .map_err(|e| Transient(stream_error("DescribeStream", e)))?;
            let Some(description) = described.stream_description else {
                return Err(Transient(
                    "DescribeStream returned no description".to_owned(),
                ));
            };
            shards.extend(description.shards.unwrap_or_default());
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(shards),
            }
        }
    }

    async fn poll(&mut self, iterator: String) -> Result<Poll, Failure> {
        let got = match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
        {
            Ok(got) => got,
            // Any failure drops the iterator: the next step takes a new one
            // after the last record seen (an expired iterator included).
            Err(e) => return Err(Transient(stream_error("GetRecords", e))),
        };
        let fetched = got.records.unwrap_or_default();
        let empty = fetched.is_empty();
        let mut records = Vec::with_capacity(fetched.len());
        for record in fetched {
            let Some(change) = record.dynamodb else {
                continue;
            };
            let sequence = change.sequence_number.as_deref().unwrap_or_default();
            let sequence: u64 = sequence.parse().map_err(|_| {
                Fatal(format!(
                    "stream sequence number {sequence} does not fit a log position (a \
                     one-shard stream, as DynamoDB Local keeps, is needed)"
                ))
            })?;
            if self.last_sequence.is_some_and(|last| sequence <= last) {
                return Err(Fatal(format!(
                    "stream sequence numbers went back from {:?} to {sequence}",
                    self.last_sequence
                )));
            }
            self.last_sequence = Some(sequence);
            if record.event_name != Some(OperationType::Insert) {
                // Events and idempotency records are only ever inserted.
                continue;
            }
            let Some(image) = change.new_image else {
                continue;
            };
            if let Some(record) = event_record(&image, Position(sequence)).map_err(Fatal)? {
                records.push(record);
            }
        }
        if let Some(log) = self.log.upgrade() {
            log.insert(records);
        }
        Ok(match got.next_shard_iterator {
            None => Poll::Closed,
            Some(next) if empty => Poll::Idle(next),
            Some(next) => Poll::More(next),
        })
    }
}

/// An event record from a stream image; `None` for an idempotency record.
fn event_record(
    image: &std::collections::HashMap<String, AttributeValue>,
    position: Position,
) -> Result<Option<Record>, String> {
    let version = match image.get(VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map_err(|_| format!("stream image with version {n}"))?,
        _ => return Err("stream image without a version".to_owned()),
    };
    if version == 0 {
        return Ok(None);
    }
    let Some(AttributeValue::S(pk)) = image.get(PK) else {
        return Err("stream image without a partition key".to_owned());
    };
    let (tenant_id, stream) = parse_pk(pk).map_err(|e| format!("stream image key {pk}: {e}"))?;
    let Some(AttributeValue::B(bytes)) = image.get(BYTES) else {
        return Err(format!("stream image {pk}/{version} without event bytes"));
    };
    Ok(Some(Record {
        position,
        tenant_id,
        stream,
        version: StreamVersion::new(version),
        bytes: bytes.clone().into_inner(),
    }))
}

enum Poll {
    More(String),
    Idle(String),
    Closed,
}

enum Failure {
    Transient(String),
    Fatal(String),
}
use Failure::{Fatal, Transient};

fn stream_error(operation: &str, e: impl std::error::Error) -> String {
    format!(
        "DynamoDB Streams {operation}: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
    )
}
