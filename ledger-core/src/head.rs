//! Stream heads: one stream's folded decision state at its version, as bytes
//! a store keeps next to the stream, so a command handler loads the few heads
//! a command touches instead of folding the tenant's whole log.
//!
//! ```text
//! format: u8 | kind: u8 | stream | version | hash: [u8; 32] | state
//! ```
//!
//! `kind` says which state follows (tenant, vendor, credit or order) and
//! must be the kind of `stream`. `version` and `hash` are those of the
//! stream's last event, so the next event is sealed at `version + 1` and
//! links to `hash`. Values are bincode 2 (standard configuration), in the
//! binary forms the codec stores events in, written field by field with the
//! [`projection`](crate::projection) byte primitives.
//!
//! A head holds the *result* of a fold. When a fold changes what it computes
//! (a new field, a fix), heads written before the change are stale even if
//! they still parse: bump [`HEAD_FORMAT`] with it. A head of another format
//! is [`HeadError::UnknownFormat`], and the caller rebuilds it from its
//! stream. There is no checksum: the store that holds the head vouches for
//! its bytes, and reading is still safe on any bytes.

use bincode::error::DecodeError;

use crate::credit::{CreditAccount, CreditState, evolve_account};
use crate::decider::Decider;
use crate::envelope::{Envelope, Hash};
use crate::event::Event;
use crate::id::{StreamId, StreamKind, StreamVersion};
use crate::limits::{NAME_LEN_MAX, REFUNDS_PER_ORDER_MAX};
use crate::projection::bytes::{Reader, Writer};
use crate::projection::orders::{status_from_tag, status_tag};
use crate::sale::{Order, OrderState, evolve_order};
use crate::tenant::{TenantContext, TenantSettings, evolve_settings};
use crate::vendor::{RegisteredVendor, Vendor, VendorState};

/// The head format this code writes and the only one it reads.
pub const HEAD_FORMAT: u8 = 1;

/// Largest head [`StreamHead::from_bytes`] reads, in bytes. The largest head
/// is an order's: it holds every refund the order received, up to
/// [`REFUNDS_PER_ORDER_MAX`] of them, an id and an amount each, which comes
/// to about 6 KiB. The bound leaves room for heads that keep more, and
/// refuses a corrupt or hostile input before any of it is parsed.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Longest IANA zone name a tenant head holds. The longest in the database
/// is 32 bytes; the bound is checked before the name is read, since the
/// text decoder reserves whatever length it reads.
const ZONE_NAME_LEN_MAX: usize = 64;

/// Why an event does not move a head, or bytes are not a head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("an event of {event} cannot move the head of {head}")]
    WrongStream { head: StreamId, event: StreamId },
    #[error(
        "{stream}: the head is at version {head}, the event at {found}; heads move one version at a time"
    )]
    OutOfOrder {
        stream: StreamId,
        head: StreamVersion,
        found: StreamVersion,
    },
    #[error("{stream} v{version}: the event's prev_hash does not link to the head's hash")]
    BrokenLink {
        stream: StreamId,
        version: StreamVersion,
    },
    #[error(
        "head format {0} is not supported (this code reads format {HEAD_FORMAT}); \
         rebuild the head from its stream"
    )]
    UnknownFormat(u8),
    #[error("malformed head: {0}")]
    Malformed(String),
}

/// A stream's folded decision state: what the deciders read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadState {
    /// The settings, and whether any event of the tenant records an amount
    /// (see [`TenantContext`]). That fact is tenant-wide: the tenant stream
    /// alone never sets it, so the command handler marks it
    /// ([`StreamHead::mark_amounts_recorded`]) and writes the tenant head
    /// when it flips.
    Tenant(TenantContext),
    Vendor(VendorState),
    Credit(CreditState),
    Order(OrderState),
}

impl HeadState {
    /// The state of a stream of `kind` with no events.
    pub fn empty(kind: StreamKind) -> Self {
        match kind {
            StreamKind::Tenant => Self::Tenant(TenantContext::default()),
            StreamKind::Vendor => Self::Vendor(None),
            StreamKind::Credit => Self::Credit(None),
            StreamKind::Order => Self::Order(None),
        }
    }

    /// The kind of stream this is the state of.
    pub fn kind(&self) -> StreamKind {
        match self {
            Self::Tenant(_) => StreamKind::Tenant,
            Self::Vendor(_) => StreamKind::Vendor,
            Self::Credit(_) => StreamKind::Credit,
            Self::Order(_) => StreamKind::Order,
        }
    }

    /// Folds one event of the stream in: the one place that knows which
    /// evolve function each kind of stream folds with, for
    /// [`StreamHead::evolve`] and [`Aggregates`](crate::memory::Aggregates)
    /// alike. Events of another kind of stream change nothing.
    pub(crate) fn evolve(&mut self, e: &Event) {
        match self {
            Self::Tenant(t) => {
                t.settings = evolve_settings(t.settings, e);
                t.amounts_recorded |= e.currency().is_some();
            }
            Self::Vendor(v) => *v = Vendor::evolve(v.take(), e),
            Self::Credit(c) => *c = evolve_account(c.take(), e),
            Self::Order(o) => *o = evolve_order(o.take(), e),
        }
    }
}

/// One stream's head: its state as folded up to `version`, whose event's
/// hash is `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub stream: StreamId,
    pub version: StreamVersion,
    pub hash: Hash,
    /// Of `stream`'s kind.
    pub state: HeadState,
}

impl StreamHead {
    /// The head of a stream with no events: version 0, the genesis hash
    /// the first event links to, and the kind's empty state.
    pub fn empty(stream: StreamId) -> Self {
        Self {
            stream,
            version: StreamVersion::NONE,
            hash: Hash::GENESIS,
            state: HeadState::empty(stream.kind()),
        }
    }

    /// Folds the stream's next event in and moves to its version and hash.
    /// For a tenant head, an event that carries a currency also marks
    /// amounts as recorded.
    ///
    /// # Errors
    /// [`HeadError::WrongStream`] for an event of another stream,
    /// [`HeadError::OutOfOrder`] unless the event is at `version + 1`,
    /// [`HeadError::BrokenLink`] unless its `prev_hash` is the head's hash.
    /// The head is unchanged then.
    pub fn evolve(&mut self, envelope: &Envelope) -> Result<(), HeadError> {
        let (stream, found) = (envelope.stream(), envelope.version());
        if stream != self.stream {
            return Err(HeadError::WrongStream {
                head: self.stream,
                event: stream,
            });
        }
        // Compared as `found - 1` so that no version overflows.
        if found.get().checked_sub(1) != Some(self.version.get()) {
            return Err(HeadError::OutOfOrder {
                stream,
                head: self.version,
                found,
            });
        }
        if envelope.prev_hash != self.hash {
            return Err(HeadError::BrokenLink {
                stream,
                version: found,
            });
        }
        self.state.evolve(&envelope.event);
        self.version = found;
        self.hash = envelope.hash;
        Ok(())
    }

    /// Marks that an event of the tenant records an amount, wherever it is:
    /// the command handler calls it on the tenant head when a command's
    /// events carry a currency. Does nothing to a head of another kind.
    pub fn mark_amounts_recorded(&mut self) {
        if let HeadState::Tenant(t) = &mut self.state {
            t.amounts_recorded = true;
        }
    }

    /// The head in [`HEAD_FORMAT`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = self.state.kind();
        debug_assert_eq!(kind, self.stream.kind(), "a head of another kind's state");
        let mut w = Writer::new(vec![HEAD_FORMAT, kind_tag(kind)]);
        w.put(&self.stream);
        w.put(&self.version);
        w.put(&self.hash.0);
        write_state(&mut w, &self.state);
        w.into_bytes()
    }

    /// A head from [`StreamHead::to_bytes`]; never panics, whatever the bytes.
    ///
    /// # Errors
    /// [`HeadError::UnknownFormat`] for a head of another format (rebuild it
    /// from its stream); [`HeadError::Malformed`] for anything else that is
    /// not one whole head of at most [`HEAD_BYTES_MAX`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeadError> {
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| HeadError::Malformed("no bytes".to_owned()))?;
        if format != HEAD_FORMAT {
            return Err(HeadError::UnknownFormat(format));
        }
        if bytes.len() > HEAD_BYTES_MAX {
            return Err(HeadError::Malformed(format!(
                "{} bytes, beyond the limit of {HEAD_BYTES_MAX}",
                bytes.len()
            )));
        }
        let mut r = Reader::new(body);
        let head = read_head(&mut r).map_err(|e| {
            HeadError::Malformed(match e {
                DecodeError::Other(reason) => reason.to_owned(),
                other => other.to_string(),
            })
        })?;
        if r.remaining() != 0 {
            return Err(HeadError::Malformed(format!(
                "{} trailing bytes after the head",
                r.remaining()
            )));
        }
        Ok(head)
    }
}

/// Tags are part of the head format: add new ones, never renumber.
fn kind_tag(kind: StreamKind) -> u8 {
    match kind {
        StreamKind::Tenant => 1,
        StreamKind::Vendor => 2,
        StreamKind::Credit => 3,
        StreamKind::Order => 4,
    }
}

fn kind_from_tag(tag: u8) -> Result<StreamKind, DecodeError> {
    Ok(match tag {
        1 => StreamKind::Tenant,
        2 => StreamKind::Vendor,
        3 => StreamKind::Credit,
        4 => StreamKind::Order,
        _ => return Err(DecodeError::Other("unknown head kind")),
    })
}

fn read_head(r: &mut Reader<'_>) -> Result<StreamHead, DecodeError> {
    let kind = kind_from_tag(r.get()?)?;
    let stream: StreamId = r.get()?;
    if stream.kind() != kind {
        return Err(DecodeError::Other("head kind is not its stream's kind"));
    }
    Ok(StreamHead {
        stream,
        version: r.get()?,
        hash: Hash(r.get()?),
        state: read_state(r, kind)?,
    })
}

fn write_state(w: &mut Writer, state: &HeadState) {
    match state {
        HeadState::Tenant(TenantContext {
            settings,
            amounts_recorded,
        }) => {
            w.option(settings.as_ref(), |w, s| {
                let TenantSettings {
                    currency,
                    time_zone,
                } = s;
                w.put(currency);
                w.put(time_zone);
            });
            w.put(amounts_recorded);
        }
        HeadState::Vendor(vendor) => w.option(vendor.as_ref(), write_vendor),
        HeadState::Credit(account) => w.option(account.as_ref(), write_account),
        HeadState::Order(order) => w.option(order.as_ref(), write_order),
    }
}

fn read_state(r: &mut Reader<'_>, kind: StreamKind) -> Result<HeadState, DecodeError> {
    Ok(match kind {
        StreamKind::Tenant => HeadState::Tenant(TenantContext {
            settings: r.option(|r| {
                Ok(TenantSettings {
                    currency: r.get()?,
                    time_zone: r.text(ZONE_NAME_LEN_MAX)?,
                })
            })?,
            amounts_recorded: r.get()?,
        }),
        StreamKind::Vendor => HeadState::Vendor(r.option(read_vendor)?),
        StreamKind::Credit => HeadState::Credit(r.option(read_account)?),
        StreamKind::Order => HeadState::Order(r.option(read_order)?),
    })
}

fn write_vendor(w: &mut Writer, vendor: &RegisteredVendor) {
    // Destructured so that a field added to the state cannot be left out.
    let RegisteredVendor {
        name,
        commission_rate,
        suspended,
    } = vendor;
    w.put(name);
    w.put(commission_rate);
    w.put(suspended);
}

fn read_vendor(r: &mut Reader<'_>) -> Result<RegisteredVendor, DecodeError> {
    Ok(RegisteredVendor {
        name: r.text(NAME_LEN_MAX)?,
        commission_rate: r.get()?,
        suspended: r.get()?,
    })
}

fn write_account(w: &mut Writer, account: &CreditAccount) {
    // Destructured so that a field added to the state cannot be left out.
    let CreditAccount {
        name,
        policy,
        balance,
        suspended,
        last_period,
    } = account;
    w.put(name);
    w.put(policy);
    w.put(balance);
    w.put(suspended);
    w.put(last_period);
}

fn read_account(r: &mut Reader<'_>) -> Result<CreditAccount, DecodeError> {
    Ok(CreditAccount {
        name: r.text(NAME_LEN_MAX)?,
        policy: r.get()?,
        balance: r.get()?,
        suspended: r.get()?,
        last_period: r.get()?,
    })
}

fn write_order(w: &mut Writer, order: &Order) {
    // Destructured so that a field added to the state cannot be left out.
    let Order {
        vendor_id,
        payment,
        gross,
        commission,
        status,
        settled_by,
        refunded,
        commission_reversed,
        refunds,
    } = order;
    w.put(vendor_id);
    w.put(payment);
    w.put(gross);
    w.put(commission);
    w.put(&status_tag(*status));
    w.put(settled_by);
    w.put(refunded);
    w.put(commission_reversed);
    w.seq(refunds, |w, (refund_id, amount)| {
        w.put(refund_id);
        w.put(amount);
    });
}

fn read_order(r: &mut Reader<'_>) -> Result<Order, DecodeError> {
    Ok(Order {
        vendor_id: r.get()?,
        payment: r.get()?,
        gross: r.get()?,
        commission: r.get()?,
        status: status_from_tag(r.get()?)?,
        settled_by: r.get()?,
        refunded: r.get()?,
        commission_reversed: r.get()?,
        refunds: r.seq(REFUNDS_PER_ORDER_MAX, |r| Ok((r.get()?, r.get()?)))?,
    })
}
