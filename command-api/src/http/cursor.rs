//! Page cursors: opaque to clients, bound to the tenant and the query that
//! made them, and checked.
//!
//! A cursor is base64url of the page position (the last row's sort key, as
//! text) followed by a digest of that position with the tenant and the
//! query's filters. A cursor presented for another tenant, for a query with
//! other filters, truncated or altered fails the digest and is a `400
//! validation_failed`; it never reaches a store. The digest is not keyed:
//! a cursor carries no authority (the token decides the tenant and the
//! vendor a query may read), so a client able to forge one can only skip
//! around in what it may already read. The page size is not bound: a
//! client may change `limit` between pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger_core::id::TenantId;
use sha2::{Digest as _, Sha256};

use super::problem::Problem;

/// Bytes of the digest a cursor ends with.
const DIGEST_BYTES: usize = 12;
/// Longest cursor accepted, before any decoding.
pub const CURSOR_CHARS_MAX: usize = 512;

fn digest(tenant_id: TenantId, query: &str, position: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"tally cursor v1\0");
    hasher.update(tenant_id.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(query.as_bytes());
    hasher.update(b"\0");
    hasher.update(position);
    let full = hasher.finalize();
    let mut out = [0u8; DIGEST_BYTES];
    out.copy_from_slice(&full[..DIGEST_BYTES]);
    out
}

/// The cursor of `position` for `query` (its filters, as text) of
/// `tenant_id`.
pub fn seal(tenant_id: TenantId, query: &str, position: &str) -> String {
    let mut bytes = position.as_bytes().to_vec();
    bytes.extend_from_slice(&digest(tenant_id, query, position.as_bytes()));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position a cursor names, if it was made for `query` of
/// `tenant_id`.
///
/// # Errors
/// `400 validation_failed` for anything else.
pub fn open(tenant_id: TenantId, query: &str, cursor: &str) -> Result<String, Problem> {
    let bad = || Problem::validation("bad cursor: not one this query made; start without it");
    if cursor.len() > CURSOR_CHARS_MAX {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let split = bytes.len().checked_sub(DIGEST_BYTES).ok_or_else(bad)?;
    let (position, sum) = bytes.split_at(split);
    if sum != digest(tenant_id, query, position) {
        return Err(bad());
    }
    String::from_utf8(position.to_vec()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(text: &str) -> TenantId {
        TenantId::parse(text).unwrap()
    }

    #[test]
    fn a_cursor_opens_only_for_its_tenant_and_query() {
        let c = seal(tenant("a"), "orders|V1", "17.O9");
        assert_eq!(open(tenant("a"), "orders|V1", &c).unwrap(), "17.O9");
        assert!(open(tenant("b"), "orders|V1", &c).is_err());
        assert!(open(tenant("a"), "orders|V2", &c).is_err());
        assert!(open(tenant("a"), "orders|V1", &c[..c.len() - 1]).is_err());
        assert!(open(tenant("a"), "orders|V1", "").is_err());
        assert!(open(tenant("a"), "orders|V1", "!!!").is_err());
        let mut flipped = URL_SAFE_NO_PAD.decode(&c).unwrap();
        flipped[0] ^= 1;
        assert!(open(tenant("a"), "orders|V1", &URL_SAFE_NO_PAD.encode(flipped)).is_err());
        assert!(open(tenant("a"), "orders|V1", &"A".repeat(CURSOR_CHARS_MAX + 1)).is_err());
    }
}
