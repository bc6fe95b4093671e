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

use bincode::error::DecodeError;
use sha2::{Digest, Sha256};

use super::activity::ActivityEntry;
use super::bytes::{Reader, Writer};
use super::credit::CreditView;
use super::orders::OrderView;
use super::{ActivityLog, CreditBalances, OrderViews, ReadModels, StreamGate, VendorDailyTotals};

/// The snapshot format this code writes and the only one it reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

const CHECKSUM_LEN: usize = 32;
const HEADER_LEN: usize = 1 + CHECKSUM_LEN;

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
        let mut header = vec![0; HEADER_LEN];
        header[0] = SNAPSHOT_FORMAT_VERSION;
        let mut w = Writer::new(header);
        self.dashboard.write_snapshot(&mut w);
        self.orders.write_snapshot(&mut w);
        self.credit.write_snapshot(&mut w);
        self.activity.write_snapshot(&mut w);
        let mut bytes = w.into_bytes();
        let checksum = checksum(&bytes);
        bytes[1..HEADER_LEN].copy_from_slice(&checksum);
        bytes
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
        let mut r = Reader::new(&bytes[HEADER_LEN..]);
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
        if r.remaining() != 0 {
            return Err(SnapshotError::TrailingBytes(r.remaining()));
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
    let mut w = Writer::new(vec![VIEW_FORMAT_VERSION]);
    write(&mut w);
    w.into_bytes()
}

fn view_from_bytes<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, SnapshotError> {
    let (&found, body) = bytes.split_first().ok_or(SnapshotError::Truncated(0))?;
    if found != VIEW_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion { found });
    }
    let mut r = Reader::new(body);
    let view = read(&mut r).map_err(|e| {
        SnapshotError::Malformed(match e {
            DecodeError::Other(reason) => reason.to_owned(),
            other => other.to_string(),
        })
    })?;
    if r.remaining() != 0 {
        return Err(SnapshotError::TrailingBytes(r.remaining()));
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

impl ActivityEntry {
    /// The entry alone, in [`VIEW_FORMAT_VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        view_to_bytes(|w| self.write_snapshot(w))
    }

    /// An entry from [`ActivityEntry::to_bytes`]; never panics, whatever the
    /// bytes.
    ///
    /// # Errors
    /// When the bytes are not one whole entry of [`VIEW_FORMAT_VERSION`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        view_from_bytes(bytes, ActivityEntry::read_snapshot)
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
