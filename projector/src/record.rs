//! Change records as the transports deliver them, reduced to what the
//! projector reads.
//!
//! A DynamoDB Streams record (through Lambda or the local runner) and a
//! Kinesis Data Streams for DynamoDB record carry the same thing: the event
//! table's item keys and its new image. [`Record::from_image`] reads either;
//! nothing here trusts the image: a record that cannot be read becomes
//! [`Body::Malformed`] with the reason, never a panic.

use std::collections::HashMap;

use ledger_store::dynamodb::{BYTES, PK, VERSION};
use serde_dynamo::AttributeValue;

/// One delivered change record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What a batch item failure names: the DynamoDB stream record's or the
    /// Kinesis record's sequence number.
    pub id: String,
    /// When the change was written to the table (the record's approximate
    /// creation time), in milliseconds since the epoch, for lag.
    pub written_at_ms: Option<i64>,
    pub body: Body,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// An event item: its partition key (`tenant|stream`), its version and
    /// the codec's bytes, not yet decoded.
    Event {
        pk: String,
        version: u64,
        bytes: Vec<u8>,
    },
    /// Not an event: an idempotency item, or a removal. Acknowledged.
    Ignored,
    /// A record that is not a readable event item, with what is known of it.
    Malformed {
        pk: Option<String>,
        version: Option<u64>,
        reason: String,
    },
}

/// A DynamoDB item as the event formats carry it.
pub type Image = HashMap<String, AttributeValue>;

impl Record {
    /// Reads a change record of the event table: `event_name` is
    /// `INSERT`, `MODIFY` or `REMOVE`, `keys` the item's key and `new_image`
    /// its new image (empty for a removal).
    pub fn from_image(
        id: String,
        written_at_ms: Option<i64>,
        event_name: &str,
        keys: &Image,
        new_image: &Image,
    ) -> Record {
        let body = body(event_name, keys, new_image);
        Record {
            id,
            written_at_ms,
            body,
        }
    }
}

fn body(event_name: &str, keys: &Image, new_image: &Image) -> Body {
    let pk = match keys.get(PK) {
        Some(AttributeValue::S(pk)) => Some(pk.clone()),
        _ => None,
    };
    let version = match keys.get(VERSION) {
        Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
        _ => None,
    };
    let malformed = |reason: String| Body::Malformed {
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
        return Body::Ignored;
    }
    if event_name != "INSERT" {
        return malformed(format!(
            "event items are only ever inserted, but this record is a {event_name}"
        ));
    }
    match new_image.get(BYTES) {
        Some(AttributeValue::B(bytes)) => Body::Event {
            pk: pk_text.clone(),
            version,
            bytes: bytes.clone(),
        },
        _ => malformed(format!(
            "the new image has no binary attribute {BYTES} (is the stream's view type NEW_IMAGE?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let r = Record::from_image(
            "7".into(),
            Some(5),
            "INSERT",
            &keys("t|order/O1", "3"),
            &new,
        );
        assert_eq!(
            r.body,
            Body::Event {
                pk: "t|order/O1".into(),
                version: 3,
                bytes: vec![1, 2, 3]
            }
        );
        assert_eq!((r.id.as_str(), r.written_at_ms), ("7", Some(5)));
    }

    #[test]
    fn idempotency_items_and_removals_are_ignored() {
        let r = Record::from_image(
            "1".into(),
            None,
            "INSERT",
            &keys("t|key|K", "0"),
            &Image::new(),
        );
        assert_eq!(r.body, Body::Ignored);
        let r = Record::from_image(
            "2".into(),
            None,
            "REMOVE",
            &keys("t|order/O", "1"),
            &Image::new(),
        );
        assert_eq!(r.body, Body::Ignored);
    }

    #[test]
    fn unreadable_records_are_malformed_with_what_is_known() {
        let r = Record::from_image("1".into(), None, "INSERT", &Image::new(), &Image::new());
        assert!(matches!(
            r.body,
            Body::Malformed {
                pk: None,
                version: None,
                ..
            }
        ));
        let r = Record::from_image(
            "2".into(),
            None,
            "INSERT",
            &keys("t|order/O", "2"),
            &Image::new(),
        );
        assert!(
            matches!(&r.body, Body::Malformed { pk: Some(pk), version: Some(2), reason } if pk == "t|order/O" && reason.contains("NEW_IMAGE"))
        );
        let r = Record::from_image(
            "3".into(),
            None,
            "MODIFY",
            &keys("t|order/O", "2"),
            &Image::new(),
        );
        assert!(matches!(&r.body, Body::Malformed { reason, .. } if reason.contains("MODIFY")));
        let bad_version = image(&[
            (PK, AttributeValue::S("t|order/O".into())),
            (VERSION, AttributeValue::N("-1".into())),
        ]);
        let r = Record::from_image("4".into(), None, "INSERT", &bad_version, &Image::new());
        assert!(matches!(r.body, Body::Malformed { version: None, .. }));
    }
}
