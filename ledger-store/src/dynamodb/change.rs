//! Changes of the event table as its change streams deliver them: a
//! DynamoDB Streams record (to Lambda or a local runner) or a Kinesis Data
//! Streams for DynamoDB record ([`DynamoChangeRecord`], the JSON in a
//! Kinesis record's data). Both carry the item's keys and new image;
//! [`read_change`] reads either into a [`Change`] without trusting it: a
//! record that cannot be read is [`Change::Malformed`] with the reason,
//! never a panic.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::item::{Attribute, BYTES, PK, VERSION, number, string};

/// What one change of the event table is to a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An event item inserted: its partition key (`tenant|stream`), its
    /// version and the codec's bytes, not yet decoded.
    Event {
        pk: String,
        version: u64,
        bytes: Vec<u8>,
    },
    /// Not an event: an idempotency item, or a removal.
    Ignored,
    /// A record that is not a readable event item, with what is known of it.
    Malformed {
        pk: Option<String>,
        version: Option<u64>,
        reason: String,
    },
}

/// Reads a change of the event table: `event_name` is `INSERT`, `MODIFY`
/// or `REMOVE`, `keys` the item's key and `new_image` its new image (empty
/// for a removal).
pub fn read_change<A: Attribute>(
    event_name: &str,
    keys: &HashMap<String, A>,
    new_image: &HashMap<String, A>,
) -> Change {
    let pk = string(keys, PK).ok().map(str::to_owned);
    let version = number(keys, VERSION).ok();
    let malformed = |reason: String| Change::Malformed {
        pk: pk.clone(),
        version,
        reason,
    };
    let (Some(pk_text), Some(version)) = (&pk, version) else {
        return malformed(format!(
            "the record's keys are not an event table key ({PK} string, {VERSION} number)"
        ));
    };
    // Version 0 is an idempotency item, and events are never removed or
    // changed: neither is anything a projection folds.
    if version == 0 || event_name == "REMOVE" {
        return Change::Ignored;
    }
    if event_name != "INSERT" {
        return malformed(format!(
            "event items are only ever inserted, but this record is a {event_name}"
        ));
    }
    match new_image.get(BYTES).and_then(A::as_b) {
        Some(bytes) => Change::Event {
            pk: pk_text.clone(),
            version,
            bytes: bytes.to_vec(),
        },
        None => malformed(format!(
            "the new image has no binary attribute {BYTES} (is the stream's view type NEW_IMAGE?)"
        )),
    }
}

/// The `recordFormat` of every change record.
pub const RECORD_FORMAT: &str = "application/json";

/// A table change as Kinesis Data Streams for DynamoDB writes it into the
/// data of a Kinesis record: the DynamoDB Streams record's fields without
/// `eventVersion`, `eventSourceARN`, `SequenceNumber` and `StreamViewType`,
/// with `userIdentity`, `recordFormat` and `tableName` added, and
/// `ApproximateCreationDateTime` in epoch milliseconds. Attribute values
/// are DynamoDB JSON (`{"S": ".."}`, `{"N": ".."}`, `{"B": "<base64>"}`).
///
/// Reading is lenient where a projection needs nothing: a missing region,
/// identifier, format, table, source or size reads as empty, so only the
/// event name, the keys and the new image decide what a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamoChangeRecord {
    /// The table's region.
    #[serde(default)]
    pub aws_region: String,
    /// The change's identifier.
    #[serde(rename = "eventID", default)]
    pub event_id: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    /// `null`, or DynamoDB's own identity for a delete by TTL.
    pub user_identity: Option<ChangeIdentity>,
    /// Always [`RECORD_FORMAT`].
    #[serde(default)]
    pub record_format: String,
    /// The table changed.
    #[serde(default)]
    pub table_name: String,
    /// The change itself.
    pub dynamodb: DynamoChange,
    /// Always `aws:dynamodb`.
    #[serde(default)]
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
    #[serde(rename = "Keys", default)]
    pub keys: serde_dynamo::Item,
    /// The item after the change (not for `REMOVE`).
    #[serde(rename = "NewImage", default, skip_serializing_if = "Option::is_none")]
    pub new_image: Option<serde_dynamo::Item>,
    /// The item before the change (not for `INSERT`).
    #[serde(rename = "OldImage", default, skip_serializing_if = "Option::is_none")]
    pub old_image: Option<serde_dynamo::Item>,
    /// The size of the change in bytes.
    #[serde(rename = "SizeBytes", default)]
    pub size_bytes: i64,
}

impl DynamoChangeRecord {
    /// What the change is to a projection.
    pub fn change(&self) -> Change {
        let empty = HashMap::new();
        let new_image = self.dynamodb.new_image.as_deref().unwrap_or(&empty);
        read_change(&self.event_name, &self.dynamodb.keys, new_image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_dynamo::AttributeValue;

    type Image = HashMap<String, AttributeValue>;

    fn image(pairs: &[(&str, AttributeValue)]) -> Image {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn keys(pk: &str, v: &str) -> Image {
        image(&[
            (PK, AttributeValue::S(pk.into())),
            (VERSION, AttributeValue::N(v.into())),
        ])
    }

    #[test]
    fn an_inserted_event_item_is_an_event() {
        let new = image(&[
            (PK, AttributeValue::S("t|order/O1".into())),
            (VERSION, AttributeValue::N("3".into())),
            (BYTES, AttributeValue::B(vec![1, 2, 3])),
        ]);
        assert_eq!(
            read_change("INSERT", &keys("t|order/O1", "3"), &new),
            Change::Event {
                pk: "t|order/O1".into(),
                version: 3,
                bytes: vec![1, 2, 3]
            }
        );
    }

    #[test]
    fn idempotency_items_and_removals_are_ignored() {
        let change = read_change("INSERT", &keys("t|key|K", "0"), &Image::new());
        assert_eq!(change, Change::Ignored);
        let change = read_change("REMOVE", &keys("t|order/O", "1"), &Image::new());
        assert_eq!(change, Change::Ignored);
    }

    #[test]
    fn unreadable_records_are_malformed_with_what_is_known() {
        let change = read_change("INSERT", &Image::new(), &Image::new());
        assert!(matches!(
            change,
            Change::Malformed {
                pk: None,
                version: None,
                ..
            }
        ));
        let change = read_change("INSERT", &keys("t|order/O", "2"), &Image::new());
        assert!(
            matches!(&change, Change::Malformed { pk: Some(pk), version: Some(2), reason } if pk == "t|order/O" && reason.contains("NEW_IMAGE"))
        );
        let change = read_change("MODIFY", &keys("t|order/O", "2"), &Image::new());
        assert!(matches!(&change, Change::Malformed { reason, .. } if reason.contains("MODIFY")));
        let bad_version = image(&[
            (PK, AttributeValue::S("t|order/O".into())),
            (VERSION, AttributeValue::N("-1".into())),
        ]);
        let change = read_change("INSERT", &bad_version, &Image::new());
        assert!(matches!(change, Change::Malformed { version: None, .. }));
    }

    /// A change record in the shape Kinesis Data Streams for DynamoDB
    /// writes (as documented for the feature and as the service emits it).
    const SERVICE_SAMPLE: &str =
        include_str!("../../../tests/fixtures/aws/kinesis-change-record.json");

    #[test]
    fn a_service_change_record_reads_back_as_written() {
        let parsed: DynamoChangeRecord =
            serde_json::from_str(SERVICE_SAMPLE).expect("the sample deserializes");
        assert_eq!(parsed.user_identity, None);
        assert_eq!(
            parsed.dynamodb.approximate_creation_date_time_ms,
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parsed.change(),
            Change::Event {
                pk: "acme|credit/E1".into(),
                version: 1,
                bytes: vec![0, 1, 2, 3]
            }
        );
        let written = serde_json::to_value(&parsed).expect("serializes");
        let sample: serde_json::Value = serde_json::from_str(SERVICE_SAMPLE).expect("sample");
        assert_eq!(written, sample);
    }

    /// Only the event name, the keys and the new image decide what a record
    /// is: one without the fields a projection does not need still reads.
    #[test]
    fn a_change_record_without_its_descriptive_fields_still_reads() {
        let minimal = r#"{"eventName":"INSERT","dynamodb":{"Keys":{"pk":{"S":"t|order/O1"},"v":{"N":"2"}},"NewImage":{"pk":{"S":"t|order/O1"},"v":{"N":"2"},"b":{"B":"BQY="}}}}"#;
        let parsed: DynamoChangeRecord = serde_json::from_str(minimal).expect("reads");
        assert_eq!(parsed.dynamodb.approximate_creation_date_time_ms, None);
        assert_eq!(
            parsed.change(),
            Change::Event {
                pk: "t|order/O1".into(),
                version: 2,
                bytes: vec![5, 6]
            }
        );
        let no_keys = r#"{"eventName":"INSERT","dynamodb":{}}"#;
        let parsed: DynamoChangeRecord = serde_json::from_str(no_keys).expect("reads");
        assert!(matches!(
            parsed.change(),
            Change::Malformed {
                pk: None,
                version: None,
                ..
            }
        ));
    }
}
