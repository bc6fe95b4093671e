//! `tally digest`: the digest of the log (or of one tenant's part of it)
//! at an instant, taken in one reading with one entry of state per stream.
//! What a digest proves is in [`ledger_core::digest`].

use ledger_core::TenantId;
use ledger_core::digest::{Digest, Digester};
use ledger_core::time::Timestamp;

use crate::progress::Progress;
use crate::{Ledger, Reading};

/// How long before "now" a digest is taken by default: longer than any
/// command takes from being stamped to being committed, so no event
/// stamped before the digest's instant commits after it was taken.
pub const DIGEST_SETTLE_SECONDS: i64 = 30;

/// Takes the digest of `tenant`'s streams (every tenant's when `None`) at
/// `at`.
///
/// # Errors
/// The store's, or a record that does not decode.
pub async fn take(
    ledger: &Ledger,
    tenant: Option<TenantId>,
    at: Timestamp,
    progress: &Progress,
) -> anyhow::Result<(Digest, Reading)> {
    let mut digester = Digester::new(tenant, at);
    let reading = ledger
        .events(tenant, progress, |envelope| digester.event(&envelope))
        .await?;
    Ok((digester.finish(), reading))
}
