//! The byte primitives every fold writes and reads its state with:
//! [`Writer`] and [`Reader`], bincode 2 in its standard configuration, keeping
//! the layout rules `snapshot` describes (maps sorted by key, a tenant id in
//! full once and then by its index, no reservation beyond the bytes left).
//! `snapshot` frames their bytes as a snapshot or a stored view, and
//! [`crate::head`] as a stream head.

use std::hash::Hash;

use bincode::error::DecodeError;
use bincode::{Decode, Encode};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::id::TenantId;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Builds a snapshot's, a stored view's or a stream head's body.
pub(crate) struct Writer {
    bytes: Vec<u8>,
    /// Each tenant id written so far, and its index.
    tenants: FxHashMap<TenantId, u64>,
    last_tenant: Option<(TenantId, u64)>,
}

impl Writer {
    /// A writer that appends to `prefix` (a header the caller fills in).
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        Self {
            bytes: prefix,
            tenants: FxHashMap::default(),
            last_tenant: None,
        }
    }

    /// The prefix and everything written after it.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Writes a domain value in its bincode form.
    pub(crate) fn put<T: Encode + ?Sized>(&mut self, value: &T) {
        // Writing to a Vec cannot fail, and every domain value encodes: the
        // one fallible encoding, Money's mantissa into an i64, is in range
        // for any amount the domain admits.
        bincode::encode_into_std_write(value, &mut self.bytes, CONFIG)
            .expect("domain values always encode");
    }

    /// A collection's length.
    pub(crate) fn count(&mut self, len: usize) {
        self.put(&(len as u64));
    }

    /// A tenant id: its index if it was written before, else the next index
    /// followed by the id itself.
    pub(crate) fn tenant(&mut self, tenant_id: TenantId) {
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
    pub(crate) fn decimal(&mut self, d: Decimal) {
        self.put(&(d.scale() as u8));
        self.put(&d.mantissa());
    }

    pub(crate) fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.put(&0u8),
            Some(v) => {
                self.put(&1u8);
                write(self, v);
            }
        }
    }

    pub(crate) fn seq<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.count(items.len());
        for item in items {
            write(self, item);
        }
    }

    /// A map's entries, sorted by key so equal maps give equal bytes.
    pub(crate) fn map<K: Ord, V>(
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

/// Reads a snapshot's, a stored view's or a stream head's body.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    tenants: Vec<TenantId>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self {
            rest: body,
            tenants: Vec::new(),
        }
    }

    /// How many bytes are left unread.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Reads a domain value from its bincode form. Only for values whose
    /// decoder allocates nothing: bounded text goes through [`Reader::text`].
    pub(crate) fn get<T: Decode<()>>(&mut self) -> Result<T, DecodeError> {
        let (value, read) = bincode::decode_from_slice(self.rest, CONFIG)?;
        self.rest = &self.rest[read..];
        Ok(value)
    }

    /// A collection's length. Every element takes at least one byte, so a
    /// length beyond the bytes left is corrupt; refusing it keeps a corrupt
    /// length from reserving memory the input could never fill.
    pub(crate) fn count(&mut self) -> Result<usize, DecodeError> {
        let len: u64 = self.get()?;
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.rest.len())
            .ok_or(DecodeError::Other("collection longer than the bytes left"))
    }

    pub(crate) fn tenant(&mut self) -> Result<TenantId, DecodeError> {
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

    pub(crate) fn decimal(&mut self) -> Result<Decimal, DecodeError> {
        let scale: u8 = self.get()?;
        let mantissa: i128 = self.get()?;
        Decimal::try_from_i128_with_scale(mantissa, u32::from(scale))
            .map_err(|_| DecodeError::Other("decimal out of range"))
    }

    /// Bounded text (a name, a reason): its length is checked against
    /// `max_len` before the text is read, since the text decoder reserves
    /// whatever length it reads.
    pub(crate) fn text<T: Decode<()>>(&mut self, max_len: usize) -> Result<T, DecodeError> {
        let (len, _): (u64, usize) = bincode::decode_from_slice(self.rest, CONFIG)?;
        if len > max_len as u64 {
            return Err(DecodeError::Other("text longer than its bound"));
        }
        self.get()
    }

    pub(crate) fn option<T>(
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
    pub(crate) fn seq<T>(
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
    pub(crate) fn map<K: Eq + Hash, V>(
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
