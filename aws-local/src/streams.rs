//! Lambda's event source mapping on a table's DynamoDB Stream, emulated
//! (see [`crate::mapping`] for what it does as Lambda does and where it
//! differs).
//!
//! [`StreamsRunner`] finds the table's stream, reads it through the
//! store's one reader of it ([`ChangeStream`]) and hands the handler
//! batches of records built exactly as Lambda builds them
//! ([`lambda_record`]).

use std::collections::HashMap;
use std::future::Future;

use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType, UserIdentity,
};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::AttributeValue;
use chrono::{DateTime, Utc};
use ledger_store::dynamodb::sdk_config;
use ledger_store::dynamodb::stream::{
    ChangeStream, ShardInfo, ShardPage, ShardPosition, ShardReadError,
};

use crate::mapping::{
    MappingConfig, RunnerError, RunnerHandle, STREAMS_BATCH_SIZE_MAX, Source, start_mapping,
};

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
            stream: ChangeStream::new(
                aws_sdk_dynamodbstreams::Client::new(&sdk),
                stream_arn.clone(),
            ),
        };
        Ok(start_mapping(source, config.mapping, handler, stream_arn))
    }
}

// The DynamoDB Streams source.

struct StreamsSource {
    stream: ChangeStream,
}

impl Source for StreamsSource {
    type Record = EventRecord;
    type Event = Event;
    type Response = DynamoDbEventResponse;
    const BATCH_SIZE_MAX: usize = STREAMS_BATCH_SIZE_MAX;

    async fn shards(&self) -> Result<Vec<ShardInfo>, ShardReadError> {
        self.stream.shards().await
    }

    async fn iterator(&self, shard: &str, from: &ShardPosition) -> Result<String, ShardReadError> {
        self.stream.iterator(shard, from).await
    }

    async fn read(
        &self,
        _shard: &str,
        iterator: String,
        limit: usize,
    ) -> Result<ShardPage<EventRecord>, ShardReadError> {
        let page = self.stream.read(iterator, limit).await?;
        let arn = self.stream.arn();
        let records = page
            .records
            .into_iter()
            .filter_map(|record| {
                let converted = lambda_record(record, arn);
                if converted.is_none() {
                    tracing::warn!(stream = %arn, "stream record without a sequence number skipped");
                }
                converted
            })
            .collect();
        Ok(ShardPage {
            records,
            next: page.next,
            at_end: page.at_end,
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

/// A DynamoDB Streams record as Lambda hands it to a function: the
/// record's own fields (`eventID`, `eventName`, `eventVersion`,
/// `eventSource`, `awsRegion`, `userIdentity`, and in `dynamodb` the
/// `ApproximateCreationDateTime`, `Keys`, `NewImage`, `OldImage`,
/// `SequenceNumber`, `SizeBytes` and `StreamViewType`) plus the
/// `eventSourceARN` Lambda adds. `None` for a record without a sequence
/// number, which no mapping could acknowledge. Attribute values of a type
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

    /// A DynamoDB Streams event as Lambda delivers it, in the shape of the
    /// example in the Lambda developer guide ("Using AWS Lambda with Amazon
    /// DynamoDB"), with values of this project.
    const LAMBDA_SAMPLE: &str =
        include_str!("../../tests/fixtures/aws/dynamodb-streams-event.json");

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
}
