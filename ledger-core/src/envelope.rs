//! The envelope every stored event travels in, and its hash chain link.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Event;
use crate::id::{CommandId, EventId, StreamId, StreamVersion, TenantId, UserId};
use crate::time::Timestamp;

/// What a caller may do; the token, never a request body, says which.
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
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Vendor,
    Cashier,
    Employee,
    Service,
}

/// Who caused an event.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
    schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub user_id: UserId,
    pub role: Role,
}

/// A SHA-256 digest: an event's `hash` and the next event's `prev_hash`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of a stream's first event.
    pub const GENESIS: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// # Errors
    /// When `text` is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, &'static str> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err("a hash is 64 hex digits");
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or("a hash is 64 hex digits");
            out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?)
                .expect("two hex digits fit a byte");
        }
        Ok(Self(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..12])
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Hash {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hash".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-f]{64}$" })
    }
}

/// Everything about an event except the event itself and its chain link.
/// The command handler fills it in; [`crate::codec::seal`] links and hashes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub event_id: EventId,
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub version: StreamVersion,
    /// Business time: when it happened (the POS may set it for offline sales).
    pub occurred_at: Timestamp,
    /// When the store accepted it.
    pub recorded_at: Timestamp,
    pub command_id: CommandId,
    pub actor: Actor,
}

/// A stored event: header, chain link and the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(flatten)]
    pub header: Header,
    /// The hash of the previous event of this stream ([`Hash::GENESIS`] for version 1).
    pub prev_hash: Hash,
    /// SHA-256 over `prev_hash` and this event's canonical bytes.
    pub hash: Hash,
    pub event: Event,
}

impl Envelope {
    pub fn stream(&self) -> StreamId {
        self.header.stream
    }
    pub fn version(&self) -> StreamVersion {
        self.header.version
    }
    pub fn tenant_id(&self) -> TenantId {
        self.header.tenant_id
    }
}
