//! Lambda's event source mapping on a Kinesis stream, emulated.
//!
//! [`KinesisRunner`] plays Lambda's event source mapping on a Kinesis
//! stream (which [`crate::shim`] fills in tests) with the same core as the Streams runner (see
//! [`crate::mapping`] for the semantics and where they differ from Lambda):
//! one task per shard from `TRIM_HORIZON`, children after their parents
//! (split or merged), batches of `KinesisEvent` records built as Lambda
//! builds them ([`lambda_kinesis_record`]), and `ReportBatchItemFailures`
//! retries from the lowest failed sequence number.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::kinesis::{
    KinesisEncryptionType, KinesisEvent, KinesisEventRecord, KinesisRecord,
};
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::{EncryptionType, ShardIteratorType, StreamStatus};
use chrono::{DateTime, Utc};
use ledger_store::dynamodb::sdk_config;
use ledger_store::dynamodb::stream::{ShardInfo, ShardPage, ShardPosition, ShardReadError};

use crate::mapping::{MappingConfig, RunnerError, RunnerHandle, Source, start_mapping};

/// Most records one Kinesis `GetRecords` returns.
pub const KINESIS_BATCH_SIZE_MAX: usize = 10_000;
/// Most records in one `PutRecords`.
pub const PUT_RECORDS_MAX: usize = 500;
/// How long the shim waits for a stream it created to become ACTIVE.
pub const STREAM_ACTIVE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Pause between looks at a stream that is not ACTIVE yet.
const STREAM_ACTIVE_POLL: Duration = Duration::from_millis(20);

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

    async fn shards(&self) -> Result<Vec<ShardInfo>, ShardReadError> {
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
                .map_err(|e| ShardReadError::Other(kinesis_error("ListShards", e)))?;
            shards.extend(listed.shards.unwrap_or_default().into_iter().map(|shard| {
                ShardInfo {
                    id: shard.shard_id,
                    parents: shard
                        .parent_shard_id
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id)
                        .collect(),
                    first_sequence: shard
                        .sequence_number_range
                        .map(|range| range.starting_sequence_number),
                }
            }));
            match listed.next_token {
                Some(token) => next = Some(token),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, shard: &str, from: &ShardPosition) -> Result<String, ShardReadError> {
        let (kind, sequence) = match from {
            ShardPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            ShardPosition::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone())),
            ShardPosition::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
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
            .map_err(|e| ShardReadError::Other(kinesis_error("GetShardIterator", e)))?;
        got.shard_iterator
            .ok_or_else(|| ShardReadError::Other("GetShardIterator returned no iterator".into()))
    }

    async fn read(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> Result<ShardPage<KinesisEventRecord>, ShardReadError> {
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
                    Some(s) if s.is_expired_iterator_exception() => ShardReadError::Expired,
                    _ => ShardReadError::Other(kinesis_error("GetRecords", e)),
                });
            }
        };
        let at_end = got.records.is_empty() && got.millis_behind_latest.unwrap_or(0) == 0;
        let records = got
            .records
            .into_iter()
            .map(|record| lambda_kinesis_record(record, shard, &self.stream_arn, &self.region))
            .collect();
        Ok(ShardPage {
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

    #[test]
    fn a_kinesis_record_has_the_shape_lambda_delivers() {
        use aws_sdk_kinesis::primitives::DateTime as SdkTime;
        let record = aws_sdk_kinesis::types::Record::builder()
            .sequence_number("49568167373333333333333333333333333333333333333333333333")
            .approximate_arrival_timestamp(SdkTime::from_millis(1_767_225_600_477))
            .data(aws_sdk_kinesis::primitives::Blob::new(
                b"Hello World".to_vec(),
            ))
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
}
