//! The one place that knows how events become bytes and back.
//!
//! A stored record is
//!
//! ```text
//! format: u8 | prev_hash: [u8; 32] | hash: [u8; 32] | body
//! hash = SHA-256(prev_hash | format | body)
//! ```
//!
//! where `body` is the bincode 2 encoding (standard configuration: little
//! endian, variable-length integers) of the [`Header`] followed by the event's
//! type tag, its schema version and its payload. The chain can be verified
//! without decoding ([`verify_record`]); decoding never verifies it, because the
//! fold must be fast and the audit checks the chain.
//!
//! The hash covers the bytes as written, so a record keeps verifying after its
//! schema is upcast on read: upcasting changes the decoded value, never the bytes.

mod legacy;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::envelope::{Envelope, Hash, Header};
use crate::event::{Event, EventType};
use crate::limits::{EVENT_BYTES_MAX, LINES_PER_SALE_MAX, QUANTITY_MAX};

/// The record format this code writes (and the only one it reads so far).
pub const FORMAT_VERSION: u8 = 1;

const PREFIX_LEN: usize = 1 + 32 + 32;

type Config = Configuration<LittleEndian, Varint, Limit<EVENT_BYTES_MAX>>;
const CONFIG: Config = bincode::config::standard().with_limit::<EVENT_BYTES_MAX>();

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record is {0} bytes, shorter than its fixed prefix")]
    Truncated(usize),
    #[error("record is {0} bytes, beyond the limit of {EVENT_BYTES_MAX}")]
    TooLarge(usize),
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("unknown event type tag {0}")]
    UnknownEventType(u8),
    #[error("event type {event_type:?} has no schema version {schema_version}")]
    UnknownSchemaVersion {
        event_type: EventType,
        schema_version: u8,
    },
    #[error("{0} trailing bytes after the event")]
    TrailingBytes(usize),
    #[error("event violates a domain bound: {0}")]
    OutOfBounds(&'static str),
    #[error("malformed body: {0}")]
    Body(String),
    #[error("event could not be encoded: {0}")]
    Encode(String),
}

/// Why a record's hash or chain link does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("stored hash does not match the record's bytes")]
    HashMismatch,
    #[error("prev_hash does not match the previous event's hash")]
    BrokenLink,
}

/// An event sealed into its stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

/// Links `event` to its stream's previous hash, hashes it and encodes it.
///
/// # Errors
/// [`CodecError::TooLarge`] when the event encodes beyond [`EVENT_BYTES_MAX`];
/// [`CodecError::OutOfBounds`] for an event `decode` would refuse.
pub fn seal(header: Header, event: Event, prev_hash: Hash) -> Result<Sealed, CodecError> {
    check_event(&event).map_err(CodecError::OutOfBounds)?;
    if header.stream.kind() != event.stream_kind() {
        return Err(CodecError::OutOfBounds(
            "event type does not belong to its stream kind",
        ));
    }
    let mut bytes = vec![0u8; PREFIX_LEN];
    bytes[0] = FORMAT_VERSION;
    bytes[1..33].copy_from_slice(&prev_hash.0);
    bincode::encode_into_std_write((&header, &StoredEvent(&event)), &mut bytes, CONFIG)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if bytes.len() > EVENT_BYTES_MAX {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let hash = digest(&bytes);
    bytes[33..65].copy_from_slice(&hash.0);
    Ok(Sealed {
        envelope: Envelope {
            header,
            prev_hash,
            hash,
            event,
        },
        bytes,
    })
}

fn digest(record: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(&record[1..33]);
    hasher.update(&record[..1]);
    hasher.update(&record[PREFIX_LEN..]);
    Hash(hasher.finalize().into())
}

fn check_prefix(bytes: &[u8]) -> Result<(), CodecError> {
    if bytes.len() < PREFIX_LEN {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes.len() > EVENT_BYTES_MAX {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(CodecError::UnknownFormat(bytes[0]));
    }
    Ok(())
}

/// Checks a record's own hash and returns its `(prev_hash, hash)`, without
/// decoding the body. Linking to the previous record is the caller's part.
///
/// # Errors
/// [`ChainError::HashMismatch`] when any byte of the record was altered.
pub fn verify_record(bytes: &[u8]) -> Result<(Hash, Hash), ChainError> {
    check_prefix(bytes)?;
    let stored = Hash(bytes[33..65].try_into().expect("32 bytes"));
    if digest(bytes) != stored {
        return Err(ChainError::HashMismatch);
    }
    Ok((Hash(bytes[1..33].try_into().expect("32 bytes")), stored))
}

/// Decodes a record. Never panics, whatever the bytes.
///
/// # Errors
/// [`CodecError`] for anything that is not a well-formed record of a known
/// format, event type and schema version within the domain's bounds.
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    check_prefix(bytes)?;
    let body = &bytes[PREFIX_LEN..];
    let ((header, event), read): ((Header, DecodedEvent), usize) =
        bincode::decode_from_slice(body, CONFIG).map_err(map_decode_error)?;
    if read != body.len() {
        return Err(CodecError::TrailingBytes(body.len() - read));
    }
    let event = event.0;
    check_event(&event).map_err(CodecError::OutOfBounds)?;
    if header.stream.kind() != event.stream_kind() {
        return Err(CodecError::OutOfBounds(
            "event type does not belong to its stream kind",
        ));
    }
    Ok(Envelope {
        header,
        prev_hash: Hash(bytes[1..33].try_into().expect("32 bytes")),
        hash: Hash(bytes[33..65].try_into().expect("32 bytes")),
        event,
    })
}

fn map_decode_error(e: DecodeError) -> CodecError {
    match e {
        DecodeError::OtherString(s) if s.starts_with(UNKNOWN_TYPE) => {
            CodecError::UnknownEventType(s[UNKNOWN_TYPE.len()..].parse().unwrap_or(0))
        }
        DecodeError::OtherString(s) if s.starts_with(UNKNOWN_VERSION) => {
            let mut parts = s[UNKNOWN_VERSION.len()..].split(' ');
            let tag = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            let schema_version = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match EventType::from_tag(tag) {
                Some(event_type) => CodecError::UnknownSchemaVersion {
                    event_type,
                    schema_version,
                },
                None => CodecError::UnknownEventType(tag),
            }
        }
        DecodeError::Other(reason) if reason.starts_with(BOUND) => {
            CodecError::OutOfBounds(&reason[BOUND.len()..])
        }
        other => CodecError::Body(other.to_string()),
    }
}

const UNKNOWN_TYPE: &str = "unknown event type ";
const UNKNOWN_VERSION: &str = "unknown schema version ";
const BOUND: &str = "bound: ";

/// Encodes an event as `tag | schema_version | payload`.
struct StoredEvent<'a>(&'a Event);

impl Encode for StoredEvent<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        let event_type = self.0.event_type();
        event_type.tag().encode(encoder)?;
        event_type.schema_version().encode(encoder)?;
        match self.0 {
            Event::TenantConfigured(e) => e.encode(encoder),
            Event::VendorRegistered(e) => e.encode(encoder),
            Event::CommissionRateChanged(e) => e.encode(encoder),
            Event::VendorSuspended(e) => e.encode(encoder),
            Event::VendorReinstated(e) => e.encode(encoder),
            Event::CreditAccountOpened(e) => e.encode(encoder),
            Event::CreditPolicyChanged(e) => e.encode(encoder),
            Event::CreditAccountSuspended(e) => e.encode(encoder),
            Event::CreditAccountReinstated(e) => e.encode(encoder),
            Event::CreditReplenished(e) => e.encode(encoder),
            Event::CreditSpent(e) => e.encode(encoder),
            Event::CreditRefunded(e) => e.encode(encoder),
            Event::CreditAdjusted(e) => e.encode(encoder),
            Event::SaleRecorded(e) => e.encode(encoder),
            Event::PaymentReceived(e) => e.encode(encoder),
            Event::RefundIssued(e) => e.encode(encoder),
        }
    }
}

/// Decodes `tag | schema_version | payload`, upcasting old schema versions.
struct DecodedEvent(Event);

impl<C> Decode<C> for DecodedEvent {
    fn decode<D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        let tag = u8::decode(d)?;
        let schema_version = u8::decode(d)?;
        let event_type = EventType::from_tag(tag)
            .ok_or_else(|| DecodeError::OtherString(format!("{UNKNOWN_TYPE}{tag}")))?;
        if schema_version != event_type.schema_version() {
            return legacy::decode(event_type, schema_version, d)?
                .map(DecodedEvent)
                .ok_or_else(|| {
                    DecodeError::OtherString(format!("{UNKNOWN_VERSION}{tag} {schema_version}"))
                });
        }
        let event = match event_type {
            EventType::TenantConfigured => Event::TenantConfigured(Decode::decode(d)?),
            EventType::VendorRegistered => Event::VendorRegistered(Decode::decode(d)?),
            EventType::CommissionRateChanged => Event::CommissionRateChanged(Decode::decode(d)?),
            EventType::VendorSuspended => Event::VendorSuspended(Decode::decode(d)?),
            EventType::VendorReinstated => Event::VendorReinstated(Decode::decode(d)?),
            EventType::CreditAccountOpened => Event::CreditAccountOpened(Decode::decode(d)?),
            EventType::CreditPolicyChanged => Event::CreditPolicyChanged(Decode::decode(d)?),
            EventType::CreditAccountSuspended => Event::CreditAccountSuspended(Decode::decode(d)?),
            EventType::CreditAccountReinstated => {
                Event::CreditAccountReinstated(Decode::decode(d)?)
            }
            EventType::CreditReplenished => Event::CreditReplenished(Decode::decode(d)?),
            EventType::CreditSpent => Event::CreditSpent(Decode::decode(d)?),
            EventType::CreditRefunded => Event::CreditRefunded(Decode::decode(d)?),
            EventType::CreditAdjusted => Event::CreditAdjusted(Decode::decode(d)?),
            EventType::SaleRecorded => Event::SaleRecorded(Decode::decode(d)?),
            EventType::PaymentReceived => Event::PaymentReceived(Decode::decode(d)?),
            EventType::RefundIssued => Event::RefundIssued(Decode::decode(d)?),
        };
        Ok(DecodedEvent(event))
    }
}

/// Checks that a decoded event is well formed: within the domain's bounds
/// and internally consistent (one currency per event, signs and orderings
/// that `decide` guarantees). Everything downstream (postings, projections,
/// the audit) relies on it, so a record that decodes can never make them
/// panic, whoever wrote its bytes: the hash chain is not a signature.
fn check_event(event: &Event) -> Result<(), &'static str> {
    use crate::money::Money;
    let ok = |cond: bool, what: &'static str| if cond { Ok(()) } else { Err(what) };
    let same = |a: &Money, b: &Money| a.currency() == b.currency();
    let positive_movement = |amount: &Money, after: &Money| {
        ok(
            same(amount, after) && !after.is_negative(),
            "credit movement currency or balance",
        )
    };
    match event {
        Event::SaleRecorded(e) => {
            ok(
                !e.lines.is_empty() && e.lines.len() <= LINES_PER_SALE_MAX,
                "sale line count",
            )?;
            ok(
                e.lines
                    .iter()
                    .all(|l| (1..=QUANTITY_MAX).contains(&l.quantity)),
                "line quantity",
            )?;
            ok(
                e.lines
                    .iter()
                    .all(|l| same(&l.unit_price, &e.gross) && l.unit_price.is_positive()),
                "line price",
            )?;
            ok(
                e.gross.is_positive() && same(&e.commission, &e.gross),
                "sale gross or currency",
            )?;
            ok(
                !e.commission.is_negative() && e.commission.amount() <= e.gross.amount(),
                "commission outside 0..=gross",
            )
        }
        Event::PaymentReceived(e) => ok(e.amount.is_positive(), "payment amount"),
        Event::RefundIssued(e) => {
            ok(
                e.amount.is_positive() && same(&e.commission_reversed, &e.amount),
                "refund amount or currency",
            )?;
            ok(
                !e.commission_reversed.is_negative()
                    && e.commission_reversed.amount() <= e.amount.amount(),
                "commission reversed outside 0..=refund",
            )
        }
        Event::CreditReplenished(e) => positive_movement(&e.amount, &e.balance_after),
        Event::CreditSpent(e) => ok(e.amount.is_positive(), "credit spent")
            .and(positive_movement(&e.amount, &e.balance_after)),
        Event::CreditRefunded(e) => ok(e.amount.is_positive(), "credit refunded")
            .and(positive_movement(&e.amount, &e.balance_after)),
        Event::CreditAdjusted(e) => ok(!e.amount.is_zero(), "credit adjusted")
            .and(positive_movement(&e.amount, &e.balance_after)),
        Event::CreditAccountOpened(crate::event::CreditAccountOpened { policy, .. })
        | Event::CreditPolicyChanged(crate::event::CreditPolicyChanged { policy }) => {
            check_policy(policy)
        }
        Event::TenantConfigured(_)
        | Event::VendorRegistered(_)
        | Event::CommissionRateChanged(_)
        | Event::VendorSuspended(_)
        | Event::VendorReinstated(_)
        | Event::CreditAccountSuspended(_)
        | Event::CreditAccountReinstated(_) => Ok(()),
    }
}

fn check_policy(policy: &crate::policy::CreditPolicy) -> Result<(), &'static str> {
    use crate::policy::ReplenishMode;
    if !policy.allowance.is_positive() {
        return Err("allowance must be positive");
    }
    match (policy.mode, policy.cap) {
        (_, None) => Ok(()),
        (ReplenishMode::Accumulate, Some(cap))
            if cap.currency() == policy.allowance.currency()
                && cap.amount() >= policy.allowance.amount() =>
        {
            Ok(())
        }
        _ => Err("cap must be an accumulate account's, in its currency, at least the allowance"),
    }
}

/// Encodes a record whose payload is written at an older schema version.
/// Only golden-fixture tests need this: production code writes current versions.
#[doc(hidden)]
pub fn seal_legacy_credit_account_opened_v1(
    header: Header,
    name: crate::text::Name,
    allowance: crate::money::Money,
    cadence: crate::time::Cadence,
    prev_hash: Hash,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = vec![0u8; PREFIX_LEN];
    bytes[0] = FORMAT_VERSION;
    bytes[1..33].copy_from_slice(&prev_hash.0);
    let payload = legacy::CreditAccountOpenedV1 {
        name,
        allowance,
        cadence,
    };
    let tagged = (EventType::CreditAccountOpened.tag(), 1u8, payload);
    bincode::encode_into_std_write((&header, &tagged), &mut bytes, CONFIG)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let hash = digest(&bytes);
    bytes[33..65].copy_from_slice(&hash.0);
    Ok(bytes)
}
