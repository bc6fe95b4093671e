//! Identifiers: text ids held inline (no allocation, `Copy`), UUID ids for
//! what the server mints, and the stream coordinates.

use std::fmt;
use std::str::FromStr;

use bincode::de::{Decoder, read::Reader};
use bincode::enc::{Encoder, write::Writer};
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::ID_LEN_MAX;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {ID_LEN_MAX} bytes")]
    TooLong,
    #[error("identifier may only contain ASCII letters, digits, '-', '_' and '.'")]
    BadChar,
}

/// Which bytes an identifier may hold: `[A-Za-z0-9._-]`. A table, because
/// ids are checked on every decode and a lookup per byte beats a chain of
/// range comparisons.
const ID_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// The text of an identifier: 1..=[`ID_LEN_MAX`] bytes of `[A-Za-z0-9._-]`,
/// stored inline and zero-padded.
///
/// Zero padding makes the derived `Eq`, `Hash` and `Ord` both correct and
/// cheap: no valid id contains a zero byte, so byte-wise order of the padded
/// array is the lexicographic order of the text, and hashing is a fixed-size
/// copy-free operation. Decoding an id is a bounded `memcpy`, never an
/// allocation, which is what keeps the fold fast.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdText {
    bytes: [u8; ID_LEN_MAX],
    len: u8,
}

impl IdText {
    /// Parses untrusted text.
    ///
    /// # Errors
    /// [`IdError`] when the text is empty, too long or has a forbidden byte.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        Self::from_bytes(text.as_bytes())
    }

    fn from_bytes(raw: &[u8]) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > ID_LEN_MAX {
            return Err(IdError::TooLong);
        }
        if !raw.iter().all(|&b| ID_BYTE[usize::from(b)]) {
            return Err(IdError::BadChar);
        }
        let mut bytes = [0u8; ID_LEN_MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Self {
            bytes,
            len: raw.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever admitted by `from_bytes`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("id text is ASCII")
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Encode for IdText {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encoder.writer().write(&[self.len])?;
        encoder.writer().write(&self.bytes[..usize::from(self.len)])
    }
}

impl<C> Decode<C> for IdText {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mut len = [0u8; 1];
        decoder.reader().read(&mut len)?;
        let len = usize::from(len[0]);
        if len == 0 || len > ID_LEN_MAX {
            return Err(DecodeError::Other("identifier length out of range"));
        }
        let mut raw = [0u8; ID_LEN_MAX];
        decoder.reader().read(&mut raw[..len])?;
        Self::from_bytes(&raw[..len])
            .map_err(|_| DecodeError::Other("identifier has a forbidden byte"))
    }
}
bincode::impl_borrow_decode!(IdText);

/// Declares a text identifier newtype with parsing, display, serde, bincode
/// and JSON Schema support.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
        pub struct $name(IdText);

        impl $name {
            /// Parses untrusted text.
            ///
            /// # Errors
            /// [`IdError`] when the text is not a valid identifier.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                IdText::parse(text).map(Self)
            }

            /// Builds an id from text the program itself wrote.
            ///
            /// # Panics
            /// When `text` is not a valid identifier: that is a programmer error.
            pub fn new(text: &str) -> Self {
                match Self::parse(text) {
                    Ok(id) => id,
                    Err(e) => panic!("invalid {} {text:?}: {e}", stringify!($name)),
                }
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            pub fn as_text(&self) -> IdText {
                self.0
            }

            /// The id whose text is `text`: free, the text is already valid.
            pub fn from_text(text: IdText) -> Self {
                Self(text)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": ID_LEN_MAX,
                    "pattern": "^[A-Za-z0-9._-]+$"
                })
            }
        }
    };
}

text_id!(
    /// A tenant: one business (a company's cafeterias, a marketplace).
    TenantId
);
text_id!(
    /// A vendor (concessionaire, stall) selling inside a tenant.
    VendorId
);
text_id!(
    /// An employee holding a credit account.
    EmployeeId
);
text_id!(
    /// An order, usually minted by the POS (offline sales need ids before sync).
    OrderId
);
text_id!(
    /// A refund, minted by the caller: it makes a refund idempotent.
    RefundId
);
text_id!(
    /// A user, as the identity provider names it (the token's subject).
    UserId
);
text_id!(
    /// An item code (SKU) on a sale line.
    ItemCode
);

/// Declares a UUID identifier newtype, minted outside the core and passed in.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub const fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }
            pub const fn from_u128(id: u128) -> Self {
                Self(uuid::Uuid::from_u128(id))
            }
            pub const fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Encode for $name {
            fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                encoder.writer().write(self.0.as_bytes())
            }
        }

        impl<C> Decode<C> for $name {
            fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
                let mut raw = [0u8; 16];
                decoder.reader().read(&mut raw)?;
                Ok(Self(uuid::Uuid::from_bytes(raw)))
            }
        }
        bincode::impl_borrow_decode!($name);
    };
}

uuid_id!(
    /// An event's own id.
    EventId
);
uuid_id!(
    /// The command that caused an event; all events of one decision share it.
    CommandId
);

/// The kind of a stream: which aggregate it holds.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Tenant,
    Vendor,
    Credit,
    Order,
}

impl StreamKind {
    pub const ALL: [StreamKind; 4] = [Self::Tenant, Self::Vendor, Self::Credit, Self::Order];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Vendor => "vendor",
            Self::Credit => "credit",
            Self::Order => "order",
        }
    }

    const fn tag(self) -> u8 {
        match self {
            Self::Tenant => 1,
            Self::Vendor => 2,
            Self::Credit => 3,
            Self::Order => 4,
        }
    }
}

/// A stream: one consistency boundary, e.g. `order/7f3c…` or `credit/E042`.
/// The tenant is not part of it; every stored key begins with the tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    kind: StreamKind,
    id: IdText,
}

impl StreamId {
    pub fn tenant(id: TenantId) -> Self {
        Self {
            kind: StreamKind::Tenant,
            id: id.as_text(),
        }
    }
    pub fn vendor(id: VendorId) -> Self {
        Self {
            kind: StreamKind::Vendor,
            id: id.as_text(),
        }
    }
    pub fn credit(id: EmployeeId) -> Self {
        Self {
            kind: StreamKind::Credit,
            id: id.as_text(),
        }
    }
    pub fn order(id: OrderId) -> Self {
        Self {
            kind: StreamKind::Order,
            id: id.as_text(),
        }
    }

    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// The aggregate's id as text (the part after the `/`).
    pub fn id(&self) -> IdText {
        self.id
    }

    /// Parses `kind/id`.
    ///
    /// # Errors
    /// [`StreamIdError`] when the kind is unknown or the id invalid.
    pub fn parse(text: &str) -> Result<Self, StreamIdError> {
        let (kind, id) = text.split_once('/').ok_or(StreamIdError::NoSlash)?;
        let kind = StreamKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or(StreamIdError::UnknownKind)?;
        Ok(Self {
            kind,
            id: IdText::parse(id)?,
        })
    }
}

/// Why a string is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("a stream id reads kind/id")]
    NoSlash,
    #[error("unknown stream kind (tenant, vendor, credit or order)")]
    UnknownKind,
    #[error(transparent)]
    Id(#[from] IdError),
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.id)
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, StreamIdError> {
        Self::parse(s)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for StreamId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StreamId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(tenant|vendor|credit|order)/[A-Za-z0-9._-]{1,36}$"
        })
    }
}

impl Encode for StreamId {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encoder.writer().write(&[self.kind.tag()])?;
        self.id.encode(encoder)
    }
}

impl<C> Decode<C> for StreamId {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mut tag = [0u8; 1];
        decoder.reader().read(&mut tag)?;
        let kind = StreamKind::ALL
            .into_iter()
            .find(|k| k.tag() == tag[0])
            .ok_or(DecodeError::Other("unknown stream kind"))?;
        Ok(Self {
            kind,
            id: IdText::decode(decoder)?,
        })
    }
}
bincode::impl_borrow_decode!(StreamId);

/// A position inside one stream. Version 0 is "no events yet"; the first
/// event is version 1 and versions are contiguous.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct StreamVersion(u64);

impl StreamVersion {
    /// The version of a stream that has no events.
    pub const NONE: StreamVersion = StreamVersion(0);

    pub const fn new(version: u64) -> Self {
        Self(version)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The version the next event of this stream takes.
    ///
    /// # Panics
    /// On `u64` overflow, which no real stream reaches.
    pub const fn next(self) -> Self {
        Self(self.0.checked_add(1).expect("stream version overflow"))
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_text_rules() {
        assert_eq!(VendorId::parse("v-01.a_B").unwrap().as_str(), "v-01.a_B");
        assert_eq!(VendorId::parse(""), Err(IdError::Empty));
        assert_eq!(
            VendorId::parse(&"x".repeat(ID_LEN_MAX + 1)),
            Err(IdError::TooLong)
        );
        assert!(VendorId::parse(&"x".repeat(ID_LEN_MAX)).is_ok());
        assert_eq!(VendorId::parse("a/b"), Err(IdError::BadChar));
        assert_eq!(VendorId::parse("caf\u{e9}"), Err(IdError::BadChar));
    }

    #[test]
    fn id_order_is_lexicographic() {
        let mut ids = ["b", "ab", "a", "abc", "B"].map(VendorId::new);
        ids.sort();
        let texts: Vec<_> = ids.iter().map(VendorId::as_str).collect();
        assert_eq!(texts, ["B", "a", "ab", "abc", "b"]);
    }

    #[test]
    fn stream_id_round_trips_through_text() {
        let s = StreamId::order(OrderId::new("7f3c"));
        assert_eq!(s.to_string(), "order/7f3c");
        assert_eq!(StreamId::parse("order/7f3c").unwrap(), s);
        assert_eq!(
            StreamId::parse("orders/7f3c"),
            Err(StreamIdError::UnknownKind)
        );
        assert_eq!(StreamId::parse("order"), Err(StreamIdError::NoSlash));
    }
}
