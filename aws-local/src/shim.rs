//! A faulty stand-in for Kinesis Data Streams for DynamoDB.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use ledger_core::rng::SplitMix64;
use ledger_store::dynamodb::change::{
    ChangeIdentity, DynamoChange, DynamoChangeRecord, RECORD_FORMAT,
};
use ledger_store::dynamodb::sdk_config;

use crate::kinesis::{PUT_RECORDS_MAX, ensure_stream};
use crate::mapping::{RunnerError, RunnerHandle};
use crate::streams::{StreamsRunner, StreamsRunnerConfig};

/// The change record the service would write for a DynamoDB stream record
/// of `table_name`.
pub fn change_record(record: &EventRecord, table_name: &str) -> DynamoChangeRecord {
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
            let change = change_record(record, &self.table_name);
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
            rng.shuffle(window);
        }
        (copies, held.into_iter().chain(unwritable).min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The change record Kinesis Data Streams for DynamoDB writes for the
    /// one record of the sample DynamoDB Streams event.
    const SERVICE_SAMPLE: &str =
        include_str!("../../tests/fixtures/aws/kinesis-change-record.json");

    /// A DynamoDB Streams event as Lambda delivers it.
    const STREAM_SAMPLE: &str =
        include_str!("../../tests/fixtures/aws/dynamodb-streams-event.json");

    fn stream_record() -> EventRecord {
        let event: Event = serde_json::from_str(STREAM_SAMPLE).expect("stream sample parses");
        event.records.into_iter().next().expect("one record")
    }

    #[test]
    fn the_change_record_is_what_the_service_writes() {
        let ours = change_record(&stream_record(), "events");
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
        let change = change_record(&record, "events");
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
