//! Snapshots of the read models, so a projector can checkpoint and resume
//! after a restart instead of refolding the whole log.
//!
//! ```text
//! format: u8 | checksum: [u8; 32] | body
//! checksum = SHA-256(format | body)
//! ```
//!
//! `body` is the dashboard, the order views, the credit views and statements,
//! then the activity log, each with its gates and versions, so events
//! redelivered after a restore are still
//! [`Outcome::Duplicate`](super::Outcome::Duplicate) and exactly-once holds
//! across the restart. Values are bincode 2 (standard
//! configuration), in the same binary forms the codec stores events in.
//!
//! The layout is written here by hand rather than derived:
//!
//! - Every map is written sorted by key, so equal states give equal bytes
//!   whatever their insertion history (a snapshot can be compared or
//!   deduplicated by its bytes).
//! - A tenant id is written in full once, then by its index: keys of every
//!   map and every activity entry start with one, and real ones are UUIDs.
//! - Reading never reserves room for more elements than the bytes left could
//!   hold, and checks the length of bounded text before reading it.
//!   bincode's own `Vec`, `String` and map decoders reserve whatever length
//!   prefix they read, so a corrupt length could abort the process on
//!   allocation.
//!
//! The checksum makes a truncated or corrupted snapshot an error instead of
//! silently different read models; the reader is still safe on any bytes.
//!
//! A snapshot holds the *result* of the folds. When a fold changes what it
//! computes (a new field, a fix), snapshots written before the change are
//! stale even if they still parse: bump [`SNAPSHOT_FORMAT_VERSION`] with it,
//! and a projector that gets [`SnapshotError::UnsupportedVersion`] refolds
//! from the log.

use std::hash::Hash;

use bincode::error::DecodeError;
use bincode::{Decode, Encode};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::credit::CreditView;
use super::orders::OrderView;
use super::{ActivityLog, CreditBalances, OrderViews, ReadModels, StreamGate, VendorDailyTotals};
use crate::id::TenantId;

/// The snapshot format this code writes and the only one it reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

const CHECKSUM_LEN: usize = 32;
const HEADER_LEN: usize = 1 + CHECKSUM_LEN;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Why bytes are not a snapshot this code can restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error(
        "snapshot format {found} is not supported (this code reads format \
         {SNAPSHOT_FORMAT_VERSION}); refold the read models from the log"
    )]
    UnsupportedVersion { found: u8 },
    #[error("snapshot checksum does not match its contents: it is truncated or corrupt")]
    ChecksumMismatch,
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the snapshot")]
    TrailingBytes(usize),
}

impl ReadModels {
    /// Encodes every read model, with its gates, as a snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut w = Writer {
            bytes: vec![0; HEADER_LEN],
            tenants: FxHashMap::default(),
            last_tenant: None,
        };
        w.bytes[0] = SNAPSHOT_FORMAT_VERSION;
        self.dashboard.write_snapshot(&mut w);
        self.orders.write_snapshot(&mut w);
        self.credit.write_snapshot(&mut w);
        self.activity.write_snapshot(&mut w);
        let checksum = checksum(&w.bytes);
        w.bytes[1..HEADER_LEN].copy_from_slice(&checksum);
        w.bytes
    }

    /// Restores read models from [`ReadModels::to_snapshot`]'s bytes. Never
    /// panics, whatever the bytes.
    ///
    /// # Errors
    /// [`SnapshotError`] for bytes that are not a whole, intact snapshot of
    /// [`SNAPSHOT_FORMAT_VERSION`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<ReadModels, SnapshotError> {
        // The version first: a snapshot of another format may lay out even
        // its header differently.
        let &found = bytes.first().ok_or(SnapshotError::Truncated(0))?;
        if found != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found });
        }
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated(bytes.len()));
        }
        if checksum(bytes) != bytes[1..HEADER_LEN] {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let mut r = Reader {
            rest: &bytes[HEADER_LEN..],
            tenants: Vec::new(),
        };
        let malformed = |e: DecodeError| {
            SnapshotError::Malformed(match e {
                DecodeError::Other(reason) => reason.to_owned(),
                other => other.to_string(),
            })
        };
        let models = ReadModels {
            dashboard: VendorDailyTotals::read_snapshot(&mut r).map_err(malformed)?,
            orders: OrderViews::read_snapshot(&mut r).map_err(malformed)?,
            credit: CreditBalances::read_snapshot(&mut r).map_err(malformed)?,
            activity: ActivityLog::read_snapshot(&mut r).map_err(malformed)?,
        };
        if !r.rest.is_empty() {
            return Err(SnapshotError::TrailingBytes(r.rest.len()));
        }
        Ok(models)
    }
}

/// The format of one view stored on its own, as a per-key read model keeps
/// it (an order view, a credit account): a version byte, then the view's
/// body as it appears in a snapshot. No checksum: the store that holds the
/// item vouches for its integrity, and the view is refolded from the log
/// if it ever does not decode.
pub const VIEW_FORMAT_VERSION: u8 = 1;

fn view_to_bytes(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer {
        bytes: vec![VIEW_FORMAT_VERSION],
        tenants: FxHashMap::default(),
        last_tenant: None,
    };
    write(&mut w);
    w.bytes
}

fn view_from_bytes<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, SnapshotError> {
    let (&found, body) = bytes.split_first().ok_or(SnapshotError::Truncated(0))?;
    if found != VIEW_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion { found });
    }
    let mut r = Reader {
        rest: body,
        tenants: Vec::new(),
    };
    let view = read(&mut r).map_err(|e| {
        SnapshotError::Malformed(match e {
            DecodeError::Other(reason) => reason.to_owned(),
            other => other.to_string(),
        })
    })?;
    if !r.rest.is_empty() {
        return Err(SnapshotError::TrailingBytes(r.rest.len()));
    }
    Ok(view)
}

impl OrderView {
    /// The view alone, in [`VIEW_FORMAT_VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        view_to_bytes(|w| self.write_snapshot(w))
    }

    /// A view from [`OrderView::to_bytes`]; never panics, whatever the bytes.
    ///
    /// # Errors
    /// When the bytes are not one whole view of [`VIEW_FORMAT_VERSION`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        view_from_bytes(bytes, OrderView::read_snapshot)
    }
}

impl CreditView {
    /// The view alone, in [`VIEW_FORMAT_VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        view_to_bytes(|w| self.write_snapshot(w))
    }

    /// A view from [`CreditView::to_bytes`]; never panics, whatever the bytes.
    ///
    /// # Errors
    /// When the bytes are not one whole view of [`VIEW_FORMAT_VERSION`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        view_from_bytes(bytes, CreditView::read_snapshot)
    }
}

/// SHA-256 of the version byte and the body: everything but the checksum.
fn checksum(snapshot: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(&snapshot[..1]);
    hasher.update(&snapshot[HEADER_LEN..]);
    hasher.finalize().into()
}

impl StreamGate {
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        w.map(&self.applied, |w, (tenant_id, stream), version| {
            w.tenant(*tenant_id);
            w.put(stream);
            w.put(version);
        });
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let applied = r.map(|r| Ok(((r.tenant()?, r.get()?), r.get()?)))?;
        Ok(Self { applied })
    }
}

/// Builds a snapshot's body.
pub(super) struct Writer {
    bytes: Vec<u8>,
    /// Each tenant id written so far, and its index.
    tenants: FxHashMap<TenantId, u64>,
    last_tenant: Option<(TenantId, u64)>,
}

impl Writer {
    /// Writes a domain value in its bincode form.
    pub(super) fn put<T: Encode + ?Sized>(&mut self, value: &T) {
        // Writing to a Vec cannot fail, and every domain value encodes: the
        // one fallible encoding, Money's mantissa into an i64, is in range
        // for any amount the domain admits.
        bincode::encode_into_std_write(value, &mut self.bytes, CONFIG)
            .expect("domain values always encode");
    }

    /// A collection's length.
    pub(super) fn count(&mut self, len: usize) {
        self.put(&(len as u64));
    }

    /// A tenant id: its index if it was written before, else the next index
    /// followed by the id itself.
    pub(super) fn tenant(&mut self, tenant_id: TenantId) {
        // Maps are written sorted, so runs of one tenant are the rule: the
        // last tenant is checked before hashing.
        let index = match self.last_tenant {
            Some((last, index)) if last == tenant_id => index,
            _ => {
                let next = self.tenants.len() as u64;
                let index = *self.tenants.entry(tenant_id).or_insert(next);
                self.last_tenant = Some((tenant_id, index));
                if index == next {
                    self.put(&index);
                    self.put(&tenant_id);
                    return;
                }
                index
            }
        };
        self.put(&index);
    }

    /// A decimal as its scale and signed mantissa: a few bytes for sums of
    /// amounts, and the scale survives (`0` and `0.00` serialize differently).
    pub(super) fn decimal(&mut self, d: Decimal) {
        self.put(&(d.scale() as u8));
        self.put(&d.mantissa());
    }

    pub(super) fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.put(&0u8),
            Some(v) => {
                self.put(&1u8);
                write(self, v);
            }
        }
    }

    pub(super) fn seq<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.count(items.len());
        for item in items {
            write(self, item);
        }
    }

    /// A map's entries, sorted by key so equal maps give equal bytes.
    pub(super) fn map<K: Ord, V>(
        &mut self,
        map: &FxHashMap<K, V>,
        mut write: impl FnMut(&mut Self, &K, &V),
    ) {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.count(entries.len());
        for (k, v) in entries {
            write(self, k, v);
        }
    }
}

/// Reads a snapshot's body.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
    tenants: Vec<TenantId>,
}

impl Reader<'_> {
    /// Reads a domain value from its bincode form. Only for values whose
    /// decoder allocates nothing: bounded text goes through [`Reader::text`].
    pub(super) fn get<T: Decode<()>>(&mut self) -> Result<T, DecodeError> {
        let (value, read) = bincode::decode_from_slice(self.rest, CONFIG)?;
        self.rest = &self.rest[read..];
        Ok(value)
    }

    /// A collection's length. Every element takes at least one byte, so a
    /// length beyond the bytes left is corrupt; refusing it keeps a corrupt
    /// length from reserving memory the input could never fill.
    pub(super) fn count(&mut self) -> Result<usize, DecodeError> {
        let len: u64 = self.get()?;
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.rest.len())
            .ok_or(DecodeError::Other("collection longer than the bytes left"))
    }

    pub(super) fn tenant(&mut self) -> Result<TenantId, DecodeError> {
        let index: u64 = self.get()?;
        let known = self.tenants.len() as u64;
        if index < known {
            // In range: `index` is below a `usize` length.
            Ok(self.tenants[index as usize])
        } else if index == known {
            let tenant_id: TenantId = self.get()?;
            self.tenants.push(tenant_id);
            Ok(tenant_id)
        } else {
            Err(DecodeError::Other("tenant index out of order"))
        }
    }

    pub(super) fn decimal(&mut self) -> Result<Decimal, DecodeError> {
        let scale: u8 = self.get()?;
        let mantissa: i128 = self.get()?;
        Decimal::try_from_i128_with_scale(mantissa, u32::from(scale))
            .map_err(|_| DecodeError::Other("decimal out of range"))
    }

    /// Bounded text (a name, a reason): its length is checked against
    /// `max_len` before the text is read, since the text decoder reserves
    /// whatever length it reads.
    pub(super) fn text<T: Decode<()>>(&mut self, max_len: usize) -> Result<T, DecodeError> {
        let (len, _): (u64, usize) = bincode::decode_from_slice(self.rest, CONFIG)?;
        if len > max_len as u64 {
            return Err(DecodeError::Other("text longer than its bound"));
        }
        self.get()
    }

    pub(super) fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.get::<u8>()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(DecodeError::Other("invalid option tag")),
        }
    }

    /// A sequence of at most `max_len` items.
    pub(super) fn seq<T>(
        &mut self,
        max_len: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.count()?;
        if len > max_len {
            return Err(DecodeError::Other("sequence longer than its bound"));
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(read(self)?);
        }
        Ok(items)
    }

    /// A map's entries; a key that appears twice is corrupt.
    pub(super) fn map<K: Eq + Hash, V>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<(K, V), DecodeError>,
    ) -> Result<FxHashMap<K, V>, DecodeError> {
        let len = self.count()?;
        let mut map = FxHashMap::with_capacity_and_hasher(len, Default::default());
        for _ in 0..len {
            let (k, v) = read(self)?;
            if map.insert(k, v).is_some() {
                return Err(DecodeError::Other("duplicate key"));
            }
        }
        Ok(map)
    }
}
