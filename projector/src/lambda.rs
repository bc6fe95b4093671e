//! Lambda's event types to records, and the handler's report back to
//! Lambda's partial-batch response. The functions' entries (`tally-lambda`)
//! and the local runners call these.
//!
//! Two sources feed the same [`StreamProjector::handle`]:
//!
//! - a DynamoDB Streams event source mapping delivers a DynamoDB `Event`;
//!   a record's batch item identifier is its `SequenceNumber`;
//! - a Kinesis event source mapping on the table's Kinesis Data Streams for
//!   DynamoDB destination delivers a `KinesisEvent` whose records' data is
//!   the change record as JSON; the identifier is the Kinesis
//!   `sequenceNumber`.
//!
//! Both mappings must be configured with `ReportBatchItemFailures`,
//! `ParallelizationFactor` 1 and `TRIM_HORIZON`. A record the handler
//! reports failed is retried, with everything after it in its shard.

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
};
use ledger_store::dynamodb::change::{Change, DynamoChangeRecord};
use ledger_store::views::ViewTable;

use crate::handler::{Report, StreamProjector};
use crate::record::ChangeRecord;

/// The records of a DynamoDB Streams event.
pub fn dynamodb_records(event: DynamoDbEvent) -> Vec<ChangeRecord> {
    event
        .records
        .into_iter()
        .map(|r| {
            let change = r.change;
            let id = change
                .sequence_number
                .clone()
                .unwrap_or_else(|| r.event_id.clone());
            // The field is required by Lambda's format; a record without it
            // reads as the epoch, which is no write time at all.
            let written_at = change.approximate_creation_date_time.timestamp_millis();
            ChangeRecord::read(
                id,
                (written_at > 0).then_some(written_at),
                &r.event_name,
                &change.keys,
                &change.new_image,
            )
        })
        .collect()
}

/// The records of a Kinesis event carrying DynamoDB change records.
pub fn kinesis_records(event: KinesisEvent) -> Vec<ChangeRecord> {
    event
        .records
        .into_iter()
        .map(|r| {
            let id = r.kinesis.sequence_number;
            match serde_json::from_slice::<DynamoChangeRecord>(&r.kinesis.data.0) {
                Ok(record) => ChangeRecord {
                    id,
                    written_at_ms: record.dynamodb.approximate_creation_date_time_ms,
                    change: record.change(),
                },
                Err(e) => ChangeRecord {
                    id,
                    written_at_ms: None,
                    change: Change::Malformed {
                        pk: None,
                        version: None,
                        reason: format!("the Kinesis record is not a DynamoDB change record: {e}"),
                    },
                },
            }
        })
        .collect()
}

/// Projects a DynamoDB Streams event; the response names the records to
/// retry.
pub async fn handle_dynamodb<T: ViewTable>(
    projector: &StreamProjector<T>,
    event: DynamoDbEvent,
) -> DynamoDbEventResponse {
    let report = projector.handle(dynamodb_records(event)).await;
    dynamodb_response(&report)
}

/// Projects a Kinesis event; the response names the records to retry.
pub async fn handle_kinesis<T: ViewTable>(
    projector: &StreamProjector<T>,
    event: KinesisEvent,
) -> KinesisEventResponse {
    let report = projector.handle(kinesis_records(event)).await;
    kinesis_response(&report)
}

/// Lambda's partial-batch response for a DynamoDB Streams batch.
pub fn dynamodb_response(report: &Report) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = report
        .failed
        .iter()
        .map(|id| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(id.clone());
            failure
        })
        .collect();
    response
}

/// Lambda's partial-batch response for a Kinesis batch.
pub fn kinesis_response(report: &Report) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    response.batch_item_failures = report
        .failed
        .iter()
        .map(|id| {
            let mut failure = KinesisBatchItemFailure::default();
            failure.item_identifier = Some(id.clone());
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DynamoDB Streams event exactly as Lambda delivers it (the shape of
    /// AWS's documented sample), carrying an idempotency item and an event
    /// item whose bytes are not a record.
    const DYNAMODB_EVENT: &str = r#"{
      "Records": [
        {
          "eventID": "c4ca4238a0b923820dcc509a6f75849b",
          "eventName": "INSERT",
          "eventVersion": "1.1",
          "eventSource": "aws:dynamodb",
          "awsRegion": "us-east-1",
          "dynamodb": {
            "ApproximateCreationDateTime": 1479499740,
            "Keys": { "pk": { "S": "t1|key|K1" }, "v": { "N": "0" } },
            "NewImage": { "pk": { "S": "t1|key|K1" }, "v": { "N": "0" }, "h": { "B": "AAEC" } },
            "SequenceNumber": "13021600000000001596893679",
            "SizeBytes": 112,
            "StreamViewType": "NEW_IMAGE"
          },
          "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2016-11-16T20:42:48.104"
        },
        {
          "eventID": "c81e728d9d4c2f636f067f89cc14862c",
          "eventName": "INSERT",
          "eventVersion": "1.1",
          "eventSource": "aws:dynamodb",
          "awsRegion": "us-east-1",
          "dynamodb": {
            "ApproximateCreationDateTime": 1479499741,
            "Keys": { "pk": { "S": "t1|order/O1" }, "v": { "N": "1" } },
            "NewImage": { "pk": { "S": "t1|order/O1" }, "v": { "N": "1" }, "b": { "B": "AAECAw==" } },
            "SequenceNumber": "13021600000000001596893680",
            "SizeBytes": 90,
            "StreamViewType": "NEW_IMAGE"
          },
          "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2016-11-16T20:42:48.104"
        }
      ]
    }"#;

    #[test]
    fn lambda_s_dynamodb_event_reads_as_records() {
        let event: DynamoDbEvent = serde_json::from_str(DYNAMODB_EVENT).unwrap();
        let records = dynamodb_records(event);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].change, Change::Ignored);
        assert_eq!(records[0].id, "13021600000000001596893679");
        assert_eq!(records[0].written_at_ms, Some(1_479_499_740_000));
        assert_eq!(
            records[1].change,
            Change::Event {
                pk: "t1|order/O1".into(),
                version: 1,
                bytes: vec![0, 1, 2, 3]
            }
        );
    }

    #[test]
    fn kinesis_records_carry_the_change_record_as_json() {
        // Kinesis Data Streams for DynamoDB's record format, base64 inside
        // the Kinesis event as Lambda delivers it.
        let change = r#"{"awsRegion":"us-east-1","eventID":"0e3d7a6c","eventName":"INSERT","userIdentity":null,"recordFormat":"application/json","tableName":"events","dynamodb":{"ApproximateCreationDateTime":1479499741123,"Keys":{"pk":{"S":"t1|order/O1"},"v":{"N":"2"}},"NewImage":{"pk":{"S":"t1|order/O1"},"v":{"N":"2"},"b":{"B":"BQY="}},"SizeBytes":40},"eventSource":"aws:dynamodb"}"#;
        let event = format!(
            r#"{{"Records":[{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"4959","data":"{}","approximateArrivalTimestamp":1545084650.987}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:4959","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/x","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s"}},{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"4960","data":"bm90IGpzb24=","approximateArrivalTimestamp":1545084650.987}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:4960","eventName":"aws:kinesis:record","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s"}}]}}"#,
            base64(change.as_bytes())
        );
        let event: KinesisEvent = serde_json::from_str(&event).unwrap();
        let records = kinesis_records(event);
        assert_eq!(records[0].id, "4959");
        assert_eq!(records[0].written_at_ms, Some(1_479_499_741_123));
        assert_eq!(
            records[0].change,
            Change::Event {
                pk: "t1|order/O1".into(),
                version: 2,
                bytes: vec![5, 6]
            }
        );
        assert!(
            matches!(&records[1].change, Change::Malformed { reason, .. } if reason.contains("not a DynamoDB change record"))
        );
    }

    #[test]
    fn failures_become_batch_item_failures() {
        let report = Report {
            failed: vec!["11".into(), "12".into()],
            ..Report::default()
        };
        let json = serde_json::to_value(dynamodb_response(&report)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "11"}, {"itemIdentifier": "12"}]})
        );
        let json = serde_json::to_value(kinesis_response(&Report::default())).unwrap();
        assert_eq!(json, serde_json::json!({"batchItemFailures": []}));
    }

    fn base64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
