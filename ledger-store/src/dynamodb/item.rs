//! The event table's items, encoded and decoded in one place.
//!
//! An event is one item: `pk = tenant|stream`, `v = version`, `b` = the
//! codec's bytes, and the few attributes a consumer filters on (tenant,
//! type, business time in µs, command id). An idempotency record is an
//! item of the same table at `v = 0`. Whichever SDK type carries an item
//! (the DynamoDB client's, the DynamoDB Streams client's, or serde_dynamo's
//! in Lambda's events and Kinesis records), it is read here through
//! [`Attribute`], so there is one decoder, not one per transport.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ledger_core::codec::Sealed;
use ledger_core::id::{StreamId, StreamVersion, TenantId};

// Attribute names. Short, because every byte of a name is billed.
/// The partition key of both tables: `tenant|stream` for events.
pub const PK: &str = "pk";
/// An event item's stream version (0 for idempotency items).
pub const VERSION: &str = "v";
/// The read-model table's sort key.
pub const SORT: &str = "sk";
/// An event item's record: the codec's bytes.
pub const BYTES: &str = "b";
const TENANT: &str = "tn";
const EVENT_TYPE: &str = "ty";
const OCCURRED_AT: &str = "at";
const COMMAND: &str = "cid";

/// An attribute value of any of the SDK types that carry items.
pub trait Attribute {
    fn as_s(&self) -> Option<&str>;
    fn as_n(&self) -> Option<&str>;
    fn as_b(&self) -> Option<&[u8]>;
}

/// The three SDK types spell the variants alike; only the binary's
/// payload differs (a `Blob` or a `Vec<u8>`), and both deref to bytes.
macro_rules! attribute {
    ($type:ty) => {
        impl Attribute for $type {
            fn as_s(&self) -> Option<&str> {
                match self {
                    Self::S(s) => Some(s),
                    _ => None,
                }
            }
            fn as_n(&self) -> Option<&str> {
                match self {
                    Self::N(n) => Some(n),
                    _ => None,
                }
            }
            fn as_b(&self) -> Option<&[u8]> {
                match self {
                    Self::B(b) => Some(b.as_ref()),
                    _ => None,
                }
            }
        }
    };
}

attribute!(AttributeValue);
attribute!(aws_sdk_dynamodbstreams::types::AttributeValue);
attribute!(serde_dynamo::AttributeValue);

/// Why an item is not what its table holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("item without {kind} attribute {name}")]
    Missing {
        name: &'static str,
        kind: &'static str,
    },
    #[error("attribute {name} = {value} is not a number this table stores")]
    Number { name: &'static str, value: String },
    #[error("key {pk}: {why}")]
    Key { pk: String, why: String },
}

impl From<ItemError> for crate::StoreError {
    fn from(e: ItemError) -> Self {
        crate::StoreError::Corrupt(e.to_string())
    }
}

/// The unsigned number attribute `name`.
///
/// # Errors
/// When it is missing, not a number, or not a `u64`.
pub fn number<A: Attribute>(
    item: &HashMap<String, A>,
    name: &'static str,
) -> Result<u64, ItemError> {
    let text = item.get(name).and_then(A::as_n).ok_or(ItemError::Missing {
        name,
        kind: "number",
    })?;
    text.parse().map_err(|_| ItemError::Number {
        name,
        value: text.to_owned(),
    })
}

/// The string attribute `name`.
///
/// # Errors
/// When it is missing or not a string.
pub fn string<'a, A: Attribute>(
    item: &'a HashMap<String, A>,
    name: &'static str,
) -> Result<&'a str, ItemError> {
    item.get(name).and_then(A::as_s).ok_or(ItemError::Missing {
        name,
        kind: "string",
    })
}

/// The binary attribute `name`.
///
/// # Errors
/// When it is missing or not binary.
pub fn binary<'a, A: Attribute>(
    item: &'a HashMap<String, A>,
    name: &'static str,
) -> Result<&'a [u8], ItemError> {
    item.get(name).and_then(A::as_b).ok_or(ItemError::Missing {
        name,
        kind: "binary",
    })
}

/// An event's partition key.
pub fn event_pk(tenant_id: TenantId, stream: StreamId) -> String {
    format!("{tenant_id}|{stream}")
}

/// Splits `tenant|kind/id` into the tenant and the stream.
///
/// # Errors
/// When `pk` is not an event's partition key.
pub fn parse_pk(pk: &str) -> Result<(TenantId, StreamId), ItemError> {
    let key = |why: String| ItemError::Key {
        pk: pk.to_owned(),
        why,
    };
    let (tenant, stream) = pk
        .split_once('|')
        .ok_or_else(|| key("no tenant".to_owned()))?;
    let tenant = TenantId::parse(tenant).map_err(|e| key(e.to_string()))?;
    let stream = StreamId::parse(stream).map_err(|e| key(e.to_string()))?;
    Ok((tenant, stream))
}

/// The item of a sealed event of `tenant_id`'s stream with key `pk`.
pub fn event_item(
    tenant_id: TenantId,
    pk: &str,
    sealed: &Sealed,
) -> HashMap<String, AttributeValue> {
    let header = &sealed.envelope.header;
    let event_type = sealed.envelope.event.event_type();
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk.to_owned())),
        (
            VERSION.to_owned(),
            AttributeValue::N(header.version.to_string()),
        ),
        (
            BYTES.to_owned(),
            AttributeValue::B(Blob::new(sealed.bytes.clone())),
        ),
        (
            TENANT.to_owned(),
            AttributeValue::S(tenant_id.as_str().to_owned()),
        ),
        (
            EVENT_TYPE.to_owned(),
            AttributeValue::S(event_type.as_str().to_owned()),
        ),
        (
            OCCURRED_AT.to_owned(),
            AttributeValue::N(header.occurred_at.as_micros().to_string()),
        ),
        (
            COMMAND.to_owned(),
            AttributeValue::S(header.command_id.to_string()),
        ),
    ])
}

/// An event item, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventItem<'a> {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub version: StreamVersion,
    /// The codec's bytes, not yet decoded.
    pub bytes: &'a [u8],
}

/// Reads an item of the event table: `None` for an idempotency record.
///
/// # Errors
/// When the item is neither an event nor an idempotency record.
pub fn read_event<A: Attribute>(
    item: &HashMap<String, A>,
) -> Result<Option<EventItem<'_>>, ItemError> {
    let version = number(item, VERSION)?;
    if version == 0 {
        return Ok(None);
    }
    let (tenant_id, stream) = parse_pk(string(item, PK)?)?;
    Ok(Some(EventItem {
        tenant_id,
        stream,
        version: StreamVersion::new(version),
        bytes: binary(item, BYTES)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let tenant = TenantId::parse("t-1").unwrap();
        let stream = StreamId::parse("order/o.1").unwrap();
        assert_eq!(parse_pk(&event_pk(tenant, stream)), Ok((tenant, stream)));
        assert!(parse_pk("t-1|key|k").is_err(), "a key item is not an event");
    }

    #[test]
    fn every_sdk_type_reads_the_same_event() {
        let sdk = HashMap::from([
            (PK.to_owned(), AttributeValue::S("t|order/o1".into())),
            (VERSION.to_owned(), AttributeValue::N("3".into())),
            (BYTES.to_owned(), AttributeValue::B(Blob::new(vec![1, 2]))),
        ]);
        use aws_sdk_dynamodbstreams::types::AttributeValue as S;
        let streams = HashMap::from([
            (PK.to_owned(), S::S("t|order/o1".into())),
            (VERSION.to_owned(), S::N("3".into())),
            (
                BYTES.to_owned(),
                S::B(aws_sdk_dynamodbstreams::primitives::Blob::new(vec![1, 2])),
            ),
        ]);
        use serde_dynamo::AttributeValue as D;
        let lambda = HashMap::from([
            (PK.to_owned(), D::S("t|order/o1".into())),
            (VERSION.to_owned(), D::N("3".into())),
            (BYTES.to_owned(), D::B(vec![1, 2])),
        ]);
        let want = Some(EventItem {
            tenant_id: TenantId::parse("t").unwrap(),
            stream: StreamId::parse("order/o1").unwrap(),
            version: StreamVersion::new(3),
            bytes: &[1, 2],
        });
        assert_eq!(read_event(&sdk), Ok(want));
        assert_eq!(read_event(&streams), Ok(want));
        assert_eq!(read_event(&lambda), Ok(want));
    }

    #[test]
    fn idempotency_items_are_not_events_and_broken_items_say_why() {
        let key = HashMap::from([
            (PK.to_owned(), AttributeValue::S("t|key|k".into())),
            (VERSION.to_owned(), AttributeValue::N("0".into())),
        ]);
        assert_eq!(read_event(&key), Ok(None));
        let no_bytes = HashMap::from([
            (PK.to_owned(), AttributeValue::S("t|order/o1".into())),
            (VERSION.to_owned(), AttributeValue::N("1".into())),
        ]);
        assert_eq!(
            read_event(&no_bytes),
            Err(ItemError::Missing {
                name: BYTES,
                kind: "binary"
            })
        );
        let negative = HashMap::from([(VERSION.to_owned(), AttributeValue::N("-1".into()))]);
        assert!(matches!(
            read_event(&negative),
            Err(ItemError::Number { .. })
        ));
    }
}
