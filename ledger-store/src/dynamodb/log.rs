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
use aws_sdk_dynamodbstreams::types::OperationType;
use ledger_core::id::{StreamId, StreamVersion, TenantId};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::item;
use super::stream::{ChangeStream, ShardPosition, ShardReadError, ready_shards};
use crate::{Position, READ_PAGE_RECORDS_MAX, Record, StoreError};

/// How long an append waits for the stream to show its events.
pub const STREAM_WAIT_MAX: Duration = Duration::from_secs(10);
/// Pause between polls of a shard that had nothing new.
const POLL_IDLE: Duration = Duration::from_millis(5);
/// Consecutive failed stream calls before the follower gives up.
const FAILURES_MAX: u32 = 20;

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
            stream: ChangeStream::new(client, stream_arn),
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
                    return Err(StoreError::backend(
                        "following the table's stream",
                        format!(
                            "{stream} version {version} of tenant {tenant_id} is committed but \
                             the stream did not show it within {STREAM_WAIT_MAX:?}"
                        ),
                    ));
                }
            }
        }
    }

    fn failure(&self) -> StoreError {
        let failed = self.failed.lock().expect("failure lock");
        StoreError::backend(
            "following the table's stream",
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
    stream: ChangeStream,
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
                Some((id, iterator)) => self.poll(iterator).await.map(|next| match next {
                    Some((iterator, idle)) => {
                        shard = Some((id, iterator));
                        if idle {
                            caught_up.send_replace(true);
                        }
                        idle
                    }
                    None => {
                        self.done.insert(id);
                        false
                    }
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
                    tokio::time::sleep(super::backoff(failures)).await;
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
        let shards = self.stream.shards().await.map_err(transient)?;
        let mut ready = ready_shards(&shards, &self.done, &HashSet::new());
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
        // A shard that starts at or before the last record seen is the one
        // being read again after a failure: go on after that record.
        let from = match self.last_sequence {
            Some(sequence)
                if shard
                    .first_sequence
                    .as_deref()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|start| start <= sequence) =>
            {
                ShardPosition::After(sequence.to_string())
            }
            _ => ShardPosition::TrimHorizon,
        };
        let iterator = self
            .stream
            .iterator(&shard.id, &from)
            .await
            .map_err(transient)?;
        Ok(Some((shard.id.clone(), iterator)))
    }

    /// Reads one page: the iterator to go on with and whether the shard is
    /// idle, or `None` once a closed shard is read to its end.
    async fn poll(&mut self, iterator: String) -> Result<Option<(String, bool)>, Failure> {
        // Any failure drops the iterator: the next step takes a new one
        // after the last record seen (an expired iterator included).
        let page = self
            .stream
            .read(iterator, READ_PAGE_RECORDS_MAX)
            .await
            .map_err(transient)?;
        let mut records = Vec::with_capacity(page.records.len());
        for record in page.records {
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
            let event = item::read_event(&image)
                .map_err(|e| Fatal(format!("stream record {sequence}: {e}")))?;
            if let Some(event) = event {
                records.push(Record {
                    position: Position(sequence),
                    tenant_id: event.tenant_id,
                    stream: event.stream,
                    version: event.version,
                    bytes: event.bytes.to_vec(),
                });
            }
        }
        if let Some(log) = self.log.upgrade() {
            log.insert(records);
        }
        Ok(page.next.map(|next| (next, page.at_end)))
    }
}

enum Failure {
    Transient(String),
    Fatal(String),
}
use Failure::{Fatal, Transient};

fn transient(e: ShardReadError) -> Failure {
    Transient(e.to_string())
}
