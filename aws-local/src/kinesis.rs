//! Kinesis: a faulty stand-in for Kinesis Data Streams for DynamoDB, and
//! Lambda's event source mapping on a Kinesis stream.
//!
//! A table can copy its changes into a Kinesis stream ("Kinesis Data
//! Streams for DynamoDB"), whose records, AWS warns, may arrive **out of
//! order and more than once**. DynamoDB Local has no such destination, so
//! [`KinesisShim`] plays it: a [`StreamsRunner`] handler that turns each
//! DynamoDB stream record into the change record that feature writes
//! ([`DynamoChangeRecord`], the JSON in a Kinesis record's data) and puts
//! it into a Kinesis stream with a partition key hashed from the item's
//! key, so different items of one aggregate land on different shards and
//! lose their relative order, as they would in the service. On top of that
//! it injects the faults the service is allowed to commit, deliberately and
//! deterministically from a seed ([`Faults`]):
//!
//! - a record is written twice with a given probability;
//! - the records of a batch are shuffled within a window;
//! - a record is held back to a later batch with a given probability: the
//!   shim reports it as a failed item, so the Streams runner hands it (and,
//!   by Lambda's rule, every record after it, which are thereby written
//!   twice) over again in its next batch.
//!
//! Unlike the service, the shim keeps the stream record's `eventID` (the
//! service mints its own), so a test can trace each Kinesis record to its
//! source, and it writes `ApproximateCreationDateTime` in milliseconds but
//! with the precision of the stream record it copies (seconds on the
//! service, where the feature can give microseconds).
//!
//! [`KinesisRunner`] then plays Lambda's event source mapping on the
//! Kinesis stream with the same core as the Streams runner (see
//! [`crate::runner`] for the semantics and where they differ from Lambda):
//! one task per shard from `TRIM_HORIZON`, children after their parents
//! (split or merged), batches of `KinesisEvent` records built as Lambda
//! builds them ([`lambda_kinesis_record`]), and `ReportBatchItemFailures`
//! retries from the lowest failed sequence number.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::kinesis::{
    KinesisEncryptionType, KinesisEvent, KinesisEventRecord, KinesisRecord,
};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, PutRecordsRequestEntry, ShardIteratorType, StreamStatus,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::kinesalite::sdk_config;
use crate::runner::{
    MappingConfig, Page, Position, ReadError, RunnerError, RunnerHandle, ShardInfo, Source,
    SplitMix64, StreamsRunner, StreamsRunnerConfig, start_mapping,
};

/// Most records one Kinesis `GetRecords` returns.
pub const KINESIS_BATCH_SIZE_MAX: usize = 10_000;
/// Most records in one `PutRecords`.
pub const PUT_RECORDS_MAX: usize = 500;
/// How long the shim waits for a stream it created to become ACTIVE.
pub const STREAM_ACTIVE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Pause between looks at a stream that is not ACTIVE yet.
const STREAM_ACTIVE_POLL: Duration = Duration::from_millis(20);

/// The `recordFormat` of every change record.
pub const RECORD_FORMAT: &str = "application/json";

/// A table change as Kinesis Data Streams for DynamoDB writes it into the
/// data of a Kinesis record: the DynamoDB Streams record's fields without
/// `eventVersion`, `eventSourceARN`, `SequenceNumber` and `StreamViewType`,
/// with `userIdentity`, `recordFormat` and `tableName` added, and
/// `ApproximateCreationDateTime` in epoch milliseconds. Attribute values
/// are DynamoDB JSON (`{"S": ".."}`, `{"N": ".."}`, `{"B": "<base64>"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamoChangeRecord {
    /// The table's region.
    pub aws_region: String,
    /// The change's identifier.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    /// `null`, or DynamoDB's own identity for a delete by TTL.
    pub user_identity: Option<ChangeIdentity>,
    /// Always [`RECORD_FORMAT`].
    pub record_format: String,
    /// The table changed.
    pub table_name: String,
    /// The change itself.
    pub dynamodb: DynamoChange,
    /// Always `aws:dynamodb`.
    pub event_source: String,
}

/// Who made a change: present only for deletes by TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeIdentity {
    /// `Service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `dynamodb.amazonaws.com`.
    #[serde(rename = "principalId")]
    pub principal_id: String,
}

/// The `dynamodb` part of a [`DynamoChangeRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamoChange {
    /// When the change was made, in epoch milliseconds.
    #[serde(
        rename = "ApproximateCreationDateTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub approximate_creation_date_time_ms: Option<i64>,
    /// The item's primary key.
    #[serde(rename = "Keys")]
    pub keys: serde_dynamo::Item,
    /// The item after the change (not for `REMOVE`).
    #[serde(rename = "NewImage", default, skip_serializing_if = "Option::is_none")]
    pub new_image: Option<serde_dynamo::Item>,
    /// The item before the change (not for `INSERT`).
    #[serde(rename = "OldImage", default, skip_serializing_if = "Option::is_none")]
    pub old_image: Option<serde_dynamo::Item>,
    /// The size of the change in bytes.
    #[serde(rename = "SizeBytes")]
    pub size_bytes: i64,
}

impl DynamoChangeRecord {
    /// The change record the service would write for a DynamoDB stream
    /// record of `table_name`.
    pub fn from_stream_record(record: &EventRecord, table_name: &str) -> DynamoChangeRecord {
        let change = &record.change;
        let image = |item: &serde_dynamo::Item| (!item.is_empty()).then(|| item.clone());
        DynamoChangeRecord {
            aws_region: record.aws_region.clone(),
            event_id: record.event_id.clone(),
            event_name: record.event_name.clone(),
            user_identity: record
                .user_identity
                .as_ref()
                .map(|identity| ChangeIdentity {
                    kind: identity.type_.clone(),
                    principal_id: identity.principal_id.clone(),
                }),
            record_format: RECORD_FORMAT.to_owned(),
            table_name: table_name.to_owned(),
            dynamodb: DynamoChange {
                approximate_creation_date_time_ms: Some(
                    change.approximate_creation_date_time.timestamp_millis(),
                ),
                keys: change.keys.clone(),
                new_image: image(&change.new_image),
                old_image: image(&change.old_image),
                size_bytes: change.size_bytes,
            },
            event_source: record
                .event_source
                .clone()
                .unwrap_or_else(|| "aws:dynamodb".to_owned()),
        }
    }
}

/// A Kinesis partition key for an item: 32 hex digits hashed from its
/// primary key, like the service's, so each item (not each aggregate)
/// picks its shard.
pub fn partition_key(keys: &serde_dynamo::Item) -> String {
    // FNV-1a, 128 bits, over the key's attributes in name order.
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut names: Vec<&String> = keys.keys().collect();
    names.sort();
    let mut hash = OFFSET;
    for name in names {
        let value = serde_json::to_string(&keys[name]).unwrap_or_default();
        for byte in name.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash = (hash ^ u128::from(byte)).wrapping_mul(PRIME);
        }
    }
    format!("{hash:032X}")
}

/// The faults the shim injects. All draws come from one generator seeded
/// with `seed`, so a seed and the same batches give the same faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Seeds the generator.
    pub seed: u64,
    /// Probability that a record is written twice.
    pub duplicate_probability: f64,
    /// Probability that a record is held back to a later batch.
    pub hold_back_probability: f64,
    /// Records of a batch are shuffled within consecutive windows of this
    /// many; 0 or 1 keeps their order.
    pub reorder_window: usize,
}

impl Faults {
    /// No faults: every record once, in order.
    pub fn none() -> Faults {
        Faults {
            seed: 0,
            duplicate_probability: 0.0,
            hold_back_probability: 0.0,
            reorder_window: 0,
        }
    }
}

/// Where the shim reads and writes, and how it misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimConfig {
    /// The table's stream, and how it is read.
    pub source: StreamsRunnerConfig,
    /// A Kinesis endpoint (kinesalite); `None` for the service.
    pub kinesis_endpoint: Option<String>,
    /// The Kinesis stream written, created when missing.
    pub stream_name: String,
    /// Shards of the Kinesis stream when the shim creates it.
    pub shard_count: u32,
    /// The faults injected.
    pub faults: Faults,
}

/// Copies a table's DynamoDB stream into a Kinesis stream, with faults.
#[derive(Debug)]
pub struct KinesisShim {
    runner: RunnerHandle,
    state: Arc<ShimState>,
    stream_arn: String,
}

#[derive(Debug)]
struct ShimState {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    table_name: String,
    faults: Faults,
    rng: Mutex<SplitMix64>,
    written: AtomicU64,
}

impl KinesisShim {
    /// Creates the Kinesis stream when missing, waits until it is ACTIVE,
    /// and starts copying the table's stream into it.
    ///
    /// # Errors
    /// [`RunnerError::Config`] for an out-of-bounds configuration;
    /// [`RunnerError::Setup`] when the Kinesis stream cannot be created or
    /// does not become ACTIVE, or the table cannot be found.
    pub async fn start(config: ShimConfig) -> Result<KinesisShim, RunnerError> {
        let shard_count = i32::try_from(config.shard_count)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                RunnerError::Config(format!(
                    "shard count {} is not positive",
                    config.shard_count
                ))
            })?;
        let sdk = sdk_config(config.kinesis_endpoint.as_deref()).await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let stream_arn = ensure_stream(&client, &config.stream_name, shard_count).await?;
        let state = Arc::new(ShimState {
            client,
            stream_name: config.stream_name,
            table_name: config.source.table_name.clone(),
            rng: Mutex::new(SplitMix64::new(config.faults.seed)),
            faults: config.faults,
            written: AtomicU64::new(0),
        });
        let shared = state.clone();
        let runner = StreamsRunner::start(config.source, move |event: Event| {
            let state = shared.clone();
            async move { state.forward(event).await }
        })
        .await?;
        Ok(KinesisShim {
            runner,
            state,
            stream_arn,
        })
    }

    /// Kinesis records written so far, duplicates included.
    pub fn records_written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// The ARN of the Kinesis stream written.
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// The Streams runner that feeds the shim: its stats, and
    /// [`RunnerHandle::caught_up`] to wait until every table change has
    /// been written.
    pub fn runner(&self) -> &RunnerHandle {
        &self.runner
    }

    /// Stops copying, as [`RunnerHandle::stop`].
    pub async fn stop(self) {
        self.runner.stop().await;
    }
}

/// One Kinesis record to put, and the index in its batch of the stream
/// record it copies.
type Copy = (usize, PutRecordsRequestEntry);

impl ShimState {
    /// Writes a batch of stream records into Kinesis, with faults. The
    /// answer fails the lowest record held back or not written, so the
    /// runner hands it over again.
    async fn forward(&self, event: Event) -> DynamoDbEventResponse {
        let records = event.records;
        let (copies, mut lowest_failed) = self.plan(&records);
        for chunk in copies.chunks(PUT_RECORDS_MAX) {
            let entries: Vec<PutRecordsRequestEntry> =
                chunk.iter().map(|(_, entry)| entry.clone()).collect();
            let put = self
                .client
                .put_records()
                .stream_name(&self.stream_name)
                .set_records(Some(entries))
                .send()
                .await;
            let failed: Vec<usize> = match put {
                Ok(put) => {
                    let results = put.records;
                    let failed: Vec<usize> = chunk
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            results
                                .get(*i)
                                .is_none_or(|result| result.error_code.is_some())
                        })
                        .map(|(_, (source, _))| *source)
                        .collect();
                    let written = chunk.len() - failed.len();
                    self.written.fetch_add(written as u64, Ordering::Relaxed);
                    failed
                }
                Err(e) => {
                    tracing::warn!(
                        stream = %self.stream_name,
                        error = %aws_sdk_kinesis::error::DisplayErrorContext(e),
                        "PutRecords failed"
                    );
                    chunk.iter().map(|(source, _)| *source).collect()
                }
            };
            lowest_failed = failed.into_iter().chain(lowest_failed).min();
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(index) = lowest_failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = records[index].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// The Kinesis records to put for `records`, duplicated and shuffled,
    /// and the index of the record held back, if any.
    fn plan(&self, records: &[EventRecord]) -> (Vec<Copy>, Option<usize>) {
        let faults = &self.faults;
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let held = records
            .iter()
            .position(|_| rng.chance(faults.hold_back_probability));
        let mut copies = Vec::with_capacity(records.len() * 2);
        let mut unwritable = None;
        for (index, record) in records.iter().enumerate() {
            if held == Some(index) {
                continue;
            }
            let change = DynamoChangeRecord::from_stream_record(record, &self.table_name);
            let entry = serde_json::to_vec(&change)
                .map_err(|e| e.to_string())
                .and_then(|data| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(data))
                        .partition_key(partition_key(&change.dynamodb.keys))
                        .build()
                        .map_err(|e| e.to_string())
                });
            let entry = match entry {
                Ok(entry) => entry,
                Err(why) => {
                    tracing::error!(event_id = %record.event_id, error = %why, "change record not writable");
                    unwritable = unwritable.or(Some(index));
                    continue;
                }
            };
            if rng.chance(faults.duplicate_probability) {
                copies.push((index, entry.clone()));
            }
            copies.push((index, entry));
        }
        for window in copies.chunks_mut(faults.reorder_window.max(1)) {
            // Fisher-Yates.
            for i in (1..window.len()).rev() {
                window.swap(i, rng.below(i + 1));
            }
        }
        (copies, held.into_iter().chain(unwritable).min())
    }
}

/// Creates `name` with `shard_count` shards unless it exists, waits until
/// it is ACTIVE, and returns its ARN.
///
/// # Errors
/// [`RunnerError::Setup`] when it cannot be created or described, or is
/// not ACTIVE within [`STREAM_ACTIVE_WAIT_MAX`].
pub async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shard_count: i32,
) -> Result<String, RunnerError> {
    let created = client
        .create_stream()
        .stream_name(name)
        .shard_count(shard_count)
        .send()
        .await;
    if let Err(e) = created
        && !e
            .as_service_error()
            .is_some_and(|s| s.is_resource_in_use_exception())
    {
        return Err(RunnerError::Setup(kinesis_error("CreateStream", e)));
    }
    let deadline = tokio::time::Instant::now() + STREAM_ACTIVE_WAIT_MAX;
    loop {
        let (status, arn) = describe_stream(client, name).await?;
        if status == StreamStatus::Active {
            return Ok(arn);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RunnerError::Setup(format!(
                "Kinesis stream {name} is {status} after {STREAM_ACTIVE_WAIT_MAX:?}"
            )));
        }
        tokio::time::sleep(STREAM_ACTIVE_POLL).await;
    }
}

async fn describe_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
) -> Result<(StreamStatus, String), RunnerError> {
    let described = client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .map_err(|e| RunnerError::Setup(kinesis_error("DescribeStreamSummary", e)))?;
    let summary = described.stream_description_summary.ok_or_else(|| {
        RunnerError::Setup(format!("DescribeStreamSummary {name} returned no summary"))
    })?;
    Ok((summary.stream_status, summary.stream_arn))
}

fn kinesis_error(operation: &str, e: impl std::error::Error) -> String {
    format!(
        "Kinesis {operation}: {}",
        aws_sdk_kinesis::error::DisplayErrorContext(e)
    )
}

/// What the Kinesis runner reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRunnerConfig {
    /// A Kinesis endpoint (kinesalite); `None` for the service, with
    /// credentials and region from the environment.
    pub endpoint: Option<String>,
    /// The stream read.
    pub stream_name: String,
    /// Batch size, polling and retry backoff.
    pub mapping: MappingConfig,
}

impl KinesisRunnerConfig {
    /// The default mapping on `stream_name` at `endpoint`.
    pub fn new(endpoint: Option<String>, stream_name: impl Into<String>) -> Self {
        KinesisRunnerConfig {
            endpoint,
            stream_name: stream_name.into(),
            mapping: MappingConfig::default(),
        }
    }
}

/// Emulates Lambda's event source mapping on a Kinesis stream.
#[derive(Debug)]
pub struct KinesisRunner;

impl KinesisRunner {
    /// Finds the stream and starts delivering its records to `handler`,
    /// one task per shard, until the handle is stopped or dropped.
    ///
    /// # Errors
    /// [`RunnerError::Config`] for an out-of-bounds configuration;
    /// [`RunnerError::Setup`] when the stream cannot be described.
    pub async fn start<H, Fut>(
        config: KinesisRunnerConfig,
        handler: H,
    ) -> Result<RunnerHandle, RunnerError>
    where
        H: Fn(KinesisEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = KinesisEventResponse> + Send + 'static,
    {
        config.mapping.check(KinesisSource::BATCH_SIZE_MAX)?;
        let sdk = sdk_config(config.endpoint.as_deref()).await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let (_, stream_arn) = describe_stream(&client, &config.stream_name).await?;
        let source = KinesisSource {
            client,
            stream_name: config.stream_name,
            stream_arn: stream_arn.clone(),
            region: sdk
                .region()
                .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        };
        Ok(start_mapping(source, config.mapping, handler, stream_arn))
    }
}

struct KinesisSource {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    stream_arn: String,
    region: String,
}

impl Source for KinesisSource {
    type Record = KinesisEventRecord;
    type Event = KinesisEvent;
    type Response = KinesisEventResponse;
    const BATCH_SIZE_MAX: usize = KINESIS_BATCH_SIZE_MAX;

    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            // A continuation names the stream through its token only.
            let request = match next.take() {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let listed = request
                .send()
                .await
                .map_err(|e| kinesis_error("ListShards", e))?;
            shards.extend(listed.shards.unwrap_or_default().into_iter().map(|shard| {
                ShardInfo {
                    id: shard.shard_id,
                    parents: shard
                        .parent_shard_id
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id)
                        .collect(),
                }
            }));
            match listed.next_token {
                Some(token) => next = Some(token),
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
            .stream_name(&self.stream_name)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence)
            .send()
            .await
            .map_err(|e| ReadError::Other(kinesis_error("GetShardIterator", e)))?;
        got.shard_iterator
            .ok_or_else(|| ReadError::Other("GetShardIterator returned no iterator".into()))
    }

    async fn read(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> Result<Page<KinesisEventRecord>, ReadError> {
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
                    _ => ReadError::Other(kinesis_error("GetRecords", e)),
                });
            }
        };
        let at_end = got.records.is_empty() && got.millis_behind_latest.unwrap_or(0) == 0;
        let records = got
            .records
            .into_iter()
            .map(|record| lambda_kinesis_record(record, shard, &self.stream_arn, &self.region))
            .collect();
        Ok(Page {
            records,
            next: got.next_shard_iterator,
            at_end,
        })
    }

    fn sequence_number(record: &KinesisEventRecord) -> &str {
        &record.kinesis.sequence_number
    }

    fn entered_at(record: &KinesisEventRecord) -> Option<DateTime<Utc>> {
        Some(record.kinesis.approximate_arrival_timestamp.0)
    }

    fn event(records: Vec<KinesisEventRecord>) -> KinesisEvent {
        let mut event = KinesisEvent::default();
        event.records = records;
        event
    }

    fn failures(response: KinesisEventResponse) -> Vec<Option<String>> {
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}

/// A Kinesis record as Lambda hands it to a function: `kinesis` holds the
/// data (base64 in JSON), partition key, sequence number, arrival time and
/// schema version `1.0`; around it Lambda adds `eventSource`
/// `aws:kinesis`, `eventID` `shardId-…:sequence`, `eventName`
/// `aws:kinesis:record`, `eventVersion` `1.0`, `eventSourceARN` and
/// `awsRegion`. `invokeIdentityArn` (the function's role) stays empty: no
/// role invokes a local handler.
pub fn lambda_kinesis_record(
    record: aws_sdk_kinesis::types::Record,
    shard: &str,
    stream_arn: &str,
    region: &str,
) -> KinesisEventRecord {
    let arrived = record
        .approximate_arrival_timestamp
        .and_then(|at| DateTime::from_timestamp(at.secs(), at.subsec_nanos()))
        .unwrap_or_default();
    let mut kinesis = KinesisRecord::default();
    // Both wrappers are non-exhaustive: fill the defaults in place.
    *kinesis.approximate_arrival_timestamp = arrived;
    *kinesis.data = record.data.into_inner();
    kinesis.encryption_type = match record.encryption_type {
        Some(EncryptionType::Kms) => KinesisEncryptionType::Kms,
        _ => KinesisEncryptionType::None,
    };
    kinesis.partition_key = record.partition_key.unwrap_or_default();
    kinesis.kinesis_schema_version = Some("1.0".to_owned());
    let mut converted = KinesisEventRecord::default();
    converted.event_id = Some(format!("{shard}:{}", record.sequence_number));
    kinesis.sequence_number = record.sequence_number;
    converted.aws_region = Some(region.to_owned());
    converted.event_name = Some("aws:kinesis:record".to_owned());
    converted.event_source = Some("aws:kinesis".to_owned());
    converted.event_source_arn = Some(stream_arn.to_owned());
    converted.event_version = Some("1.0".to_owned());
    converted.kinesis = kinesis;
    converted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change record in the shape Kinesis Data Streams for DynamoDB
    /// writes (as documented for the feature and as the service emits it),
    /// with values of this project.
    const SERVICE_SAMPLE: &str = r#"{
      "awsRegion": "us-east-1",
      "eventID": "6ef5a2d4-7b43-4d9a-9c7e-2f1d0b3c8a51",
      "eventName": "INSERT",
      "userIdentity": null,
      "recordFormat": "application/json",
      "tableName": "events",
      "dynamodb": {
        "ApproximateCreationDateTime": 1767225600000,
        "Keys": {
          "pk": { "S": "acme|credit/E1" },
          "v": { "N": "1" }
        },
        "NewImage": {
          "pk": { "S": "acme|credit/E1" },
          "v": { "N": "1" },
          "b": { "B": "AAECAw==" }
        },
        "SizeBytes": 59
      },
      "eventSource": "aws:dynamodb"
    }"#;

    /// The same change as a DynamoDB Streams record in a Lambda event.
    const STREAM_SAMPLE: &str = r#"{
      "eventID": "6ef5a2d4-7b43-4d9a-9c7e-2f1d0b3c8a51",
      "eventName": "INSERT",
      "eventVersion": "1.1",
      "eventSource": "aws:dynamodb",
      "awsRegion": "us-east-1",
      "dynamodb": {
        "ApproximateCreationDateTime": 1767225600,
        "Keys": { "pk": { "S": "acme|credit/E1" }, "v": { "N": "1" } },
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
    }"#;

    fn stream_record() -> EventRecord {
        serde_json::from_str(STREAM_SAMPLE).expect("stream sample parses")
    }

    #[test]
    fn the_change_record_is_what_the_service_writes() {
        let ours = DynamoChangeRecord::from_stream_record(&stream_record(), "events");
        let ours = serde_json::to_value(&ours).expect("serializes");
        let sample: serde_json::Value = serde_json::from_str(SERVICE_SAMPLE).expect("sample");
        // The same fields with the same values; the struct writes them in
        // the service's order too.
        assert_eq!(ours, sample);
        let parsed: DynamoChangeRecord =
            serde_json::from_str(SERVICE_SAMPLE).expect("the sample deserializes");
        assert_eq!(
            parsed.dynamodb.new_image.as_ref().and_then(|i| i.get("b")),
            Some(&serde_dynamo::AttributeValue::B(vec![0, 1, 2, 3]))
        );
        assert_eq!(parsed.user_identity, None);
    }

    #[test]
    fn a_remove_carries_only_the_old_image_and_ttl_deletes_name_the_service() {
        let mut record = stream_record();
        record.event_name = "REMOVE".to_owned();
        record.change.old_image = std::mem::take(&mut record.change.new_image);
        let mut identity = aws_lambda_events::event::dynamodb::UserIdentity::default();
        identity.type_ = "Service".to_owned();
        identity.principal_id = "dynamodb.amazonaws.com".to_owned();
        record.user_identity = Some(identity);
        let change = DynamoChangeRecord::from_stream_record(&record, "events");
        let json = serde_json::to_value(&change).expect("serializes");
        assert!(json["dynamodb"].get("NewImage").is_none());
        assert!(json["dynamodb"]["OldImage"]["b"]["B"].is_string());
        assert_eq!(
            json["userIdentity"],
            serde_json::json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
    }

    #[test]
    fn partition_keys_are_per_item_and_stable() {
        let record = stream_record();
        let key = partition_key(&record.change.keys);
        assert_eq!(key.len(), 32);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(key, partition_key(&record.change.keys.clone()));
        let mut next = record.change.keys.clone();
        next.insert("v".into(), serde_dynamo::AttributeValue::N("2".into()));
        assert_ne!(
            key,
            partition_key(&next),
            "versions of one stream are items of their own"
        );
    }

    #[test]
    fn a_kinesis_record_has_the_shape_lambda_delivers() {
        use aws_sdk_kinesis::primitives::DateTime as SdkTime;
        let record = aws_sdk_kinesis::types::Record::builder()
            .sequence_number("49568167373333333333333333333333333333333333333333333333")
            .approximate_arrival_timestamp(SdkTime::from_millis(1_767_225_600_477))
            .data(Blob::new(b"Hello World".to_vec()))
            .partition_key("s1")
            .build()
            .expect("all required fields");
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/events";
        let converted = lambda_kinesis_record(record, "shardId-000000000000", arn, "us-east-1");
        let mut event = KinesisEvent::default();
        event.records = vec![converted];
        // The example event of the Lambda developer guide's Kinesis page,
        // with values of this project.
        let sample = serde_json::json!({
            "Records": [{
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "s1",
                    "sequenceNumber": "49568167373333333333333333333333333333333333333333333333",
                    "data": "SGVsbG8gV29ybGQ=",
                    "approximateArrivalTimestamp": 1767225600.477
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000000:49568167373333333333333333333333333333333333333333333333",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": arn
            }]
        });
        let mut parsed: KinesisEvent =
            serde_json::from_value(sample.clone()).expect("deserializes");
        parsed.records[0].invoke_identity_arn = None;
        assert_eq!(
            parsed, event,
            "what Lambda's event decodes to, but the role"
        );
        // The Rust type writes every field Lambda writes (it also writes
        // `encryptionType`, and the arrival time as a string), so a handler
        // reading either JSON sees the same record.
        let ours = serde_json::to_value(&event).expect("serializes");
        for (field, _) in sample["Records"][0].as_object().into_iter().flatten() {
            assert!(ours["Records"][0].get(field).is_some(), "{field}");
        }
        for (field, _) in sample["Records"][0]["kinesis"]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert!(
                ours["Records"][0]["kinesis"].get(field).is_some(),
                "{field}"
            );
        }
        let reread: KinesisEvent = serde_json::from_value(ours).expect("reads back");
        assert_eq!(reread, event);
        assert_eq!(reread.records[0].kinesis.data.0, b"Hello World");
    }

    #[test]
    fn faults_duplicate_shuffle_and_hold_back_deterministically() {
        let state = |faults: Faults| ShimState {
            client: aws_sdk_kinesis::Client::from_conf(
                aws_sdk_kinesis::Config::builder()
                    .behavior_version(aws_config::BehaviorVersion::latest())
                    .build(),
            ),
            stream_name: "s".into(),
            table_name: "events".into(),
            rng: Mutex::new(SplitMix64::new(faults.seed)),
            faults,
            written: AtomicU64::new(0),
        };
        let records: Vec<EventRecord> = (0..200)
            .map(|i| {
                let mut r = stream_record();
                r.event_id = format!("e{i}");
                r.change.sequence_number = Some(format!("{}", 1000 + i));
                r
            })
            .collect();
        let order = |copies: &[Copy]| copies.iter().map(|(i, _)| *i).collect::<Vec<_>>();

        let (copies, held) = state(Faults::none()).plan(&records);
        assert_eq!(order(&copies), (0..200).collect::<Vec<_>>());
        assert_eq!(held, None);

        let faults = Faults {
            seed: 42,
            duplicate_probability: 0.2,
            hold_back_probability: 0.01,
            reorder_window: 8,
        };
        let (first, held) = state(faults.clone()).plan(&records);
        let (again, held_again) = state(faults.clone()).plan(&records);
        assert_eq!(order(&first), order(&again), "a seed names its faults");
        assert_eq!(held, held_again);
        let written = first.len() + usize::from(held.is_some());
        assert!(written > 200 + 20, "duplicates: {written}");
        assert_ne!(order(&first), {
            let mut sorted = order(&first);
            sorted.sort_unstable();
            sorted
        });
        // Reordering stays within windows of 8 copies: the same draws
        // without the shuffle give each window the same records.
        let unshuffled = Faults {
            reorder_window: 0,
            ..faults
        };
        let (straight, _) = state(unshuffled).plan(&records);
        assert_eq!(straight.len(), first.len());
        for (shuffled, kept) in first.chunks(8).zip(straight.chunks(8)) {
            let mut shuffled = order(shuffled);
            shuffled.sort_unstable();
            assert_eq!(shuffled, order(kept));
        }
    }
}
