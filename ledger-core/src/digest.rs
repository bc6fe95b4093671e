//! Ledger digests: a short value an auditor keeps outside the system, and
//! later proves the log against.
//!
//! A digest is taken at an instant `at`. Each stream contributes its
//! *prefix at `at`*: its events from version 1 up to (not including) the
//! first one recorded after `at`. The digest is SHA-256 over the instant,
//! the number of events in those prefixes, and every stream's last
//! (tenant, stream, version, hash) in a canonical order (tenant, then
//! stream, as text), written out as
//! `tally-digest/1/<tenant or *>/<events>/<at>/<sha256 hex>`.
//!
//! What a digest proves, audited later against the same log: that every
//! event in those prefixes is still there, unchanged, at the same version
//! of the same stream, and that nothing was added to them. Each stream's
//! last hash commits to its whole prefix through the hash chain, so
//! changing, removing, reordering or inserting any event there changes the
//! digest, even for someone who can write the tables and recompute every
//! chain (short of a SHA-256 collision).
//!
//! What it cannot prove: anything about events recorded after `at`; that
//! the log was sound when the digest was taken (audit it then); which
//! stream changed (it is one hash: the audit says that something did, the
//! chains and an older export say where). It also relies on appends
//! committing soon after they are stamped: an event stamped before `at`
//! but committed after the digest was taken joins a prefix later and reads
//! as a change, which is why digests are taken a settling time in the past.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat};
use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};

use crate::envelope::{Envelope, Hash};
use crate::id::{StreamId, StreamVersion, TenantId};
use crate::time::Timestamp;

/// The digest format this code writes and reads.
pub const DIGEST_FORMAT: &str = "tally-digest/1";

/// A digest of a log (or of one tenant's part of it) at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub tenant: Option<TenantId>,
    pub at: Timestamp,
    /// Events in the prefixes.
    pub events: u64,
    pub hash: Hash,
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenant = self
            .tenant
            .map_or_else(|| "*".to_owned(), |t| t.to_string());
        let at = self
            .at
            .to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        write!(
            f,
            "{DIGEST_FORMAT}/{tenant}/{}/{at}/{}",
            self.events,
            self.hash.to_hex()
        )
    }
}

/// Why a text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a digest ({0}): expected {DIGEST_FORMAT}/<tenant or *>/<events>/<RFC 3339 instant>/<64 hex digits>"
)]
pub struct DigestParseError(&'static str);

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .trim()
            .strip_prefix(DIGEST_FORMAT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(DigestParseError("unknown format"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [tenant, events, at, hash] = parts[..] else {
            return Err(DigestParseError("wrong number of parts"));
        };
        let tenant = match tenant {
            "*" => None,
            t => Some(TenantId::parse(t).map_err(|_| DigestParseError("bad tenant"))?),
        };
        let events = events
            .parse()
            .map_err(|_| DigestParseError("bad event count"))?;
        let at = DateTime::parse_from_rfc3339(at)
            .map_err(|_| DigestParseError("bad instant"))?
            .to_utc();
        let hash = Hash::from_hex(hash).map_err(|_| DigestParseError("bad hash"))?;
        Ok(Digest {
            tenant,
            at: Timestamp::from_datetime(at),
            events,
            hash,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Prefix {
    version: StreamVersion,
    hash: Hash,
    events: u64,
    /// An event recorded after the instant was seen: the prefix ended.
    closed: bool,
}

/// Takes a digest: feed it every event (each stream's in version order;
/// streams may interleave), then [`Digester::finish`]. Its state is one
/// entry per stream.
#[derive(Debug, Clone)]
pub struct Digester {
    tenant: Option<TenantId>,
    at: Timestamp,
    streams: FxHashMap<(TenantId, StreamId), Prefix>,
}

impl Digester {
    /// A digest of `tenant` (every tenant when `None`) at `at`.
    pub fn new(tenant: Option<TenantId>, at: Timestamp) -> Self {
        Self {
            tenant,
            at,
            streams: FxHashMap::default(),
        }
    }

    /// To recompute `digest` over the log as it is now.
    pub fn again(digest: &Digest) -> Self {
        Self::new(digest.tenant, digest.at)
    }

    pub fn event(&mut self, envelope: &Envelope) {
        let tenant_id = envelope.tenant_id();
        if self.tenant.is_some_and(|t| t != tenant_id) {
            return;
        }
        let prefix = self
            .streams
            .entry((tenant_id, envelope.stream()))
            .or_insert(Prefix {
                version: StreamVersion::NONE,
                hash: Hash::GENESIS,
                events: 0,
                closed: false,
            });
        if prefix.closed {
            return;
        }
        if envelope.header.recorded_at > self.at {
            prefix.closed = true;
            return;
        }
        prefix.version = envelope.version();
        prefix.hash = envelope.hash;
        prefix.events += 1;
    }

    pub fn finish(self) -> Digest {
        let mut streams: Vec<(String, String, Prefix)> = self
            .streams
            .into_iter()
            .filter(|(_, p)| p.events > 0)
            .map(|((t, s), p)| (t.to_string(), s.to_string(), p))
            .collect();
        streams.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let events: u64 = streams.iter().map(|(_, _, p)| p.events).sum();
        let mut sha = Sha256::new();
        sha.update(DIGEST_FORMAT.as_bytes());
        sha.update(self.at.as_micros().to_be_bytes());
        sha.update(events.to_be_bytes());
        for (tenant, stream, prefix) in &streams {
            for text in [tenant, stream] {
                sha.update((text.len() as u64).to_be_bytes());
                sha.update(text.as_bytes());
            }
            sha.update(prefix.version.get().to_be_bytes());
            sha.update(prefix.hash.0);
        }
        Digest {
            tenant: self.tenant,
            at: self.at,
            events,
            hash: Hash(sha.finalize().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_reads_back_what_it_writes() {
        let digest = Digest {
            tenant: Some(TenantId::new("t-1")),
            at: Timestamp::from_micros(1_765_000_000_123_456),
            events: 42,
            hash: Hash([7; 32]),
        };
        let text = digest.to_string();
        assert!(text.starts_with("tally-digest/1/t-1/42/2025-"), "{text}");
        assert_eq!(text.parse::<Digest>(), Ok(digest));
        let all = Digest {
            tenant: None,
            ..digest
        };
        assert_eq!(all.to_string().parse::<Digest>(), Ok(all));
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "tally-digest/2/*/1/2026-01-01T00:00:00Z/00",
            "tally-digest/1/*/1/2026-01-01T00:00:00Z",
            "tally-digest/1/*/x/2026-01-01T00:00:00Z/0000000000000000000000000000000000000000000000000000000000000000",
            "tally-digest/1/*/1/yesterday/0000000000000000000000000000000000000000000000000000000000000000",
            "tally-digest/1/*/1/2026-01-01T00:00:00Z/zz",
        ] {
            assert!(text.parse::<Digest>().is_err(), "{text}");
        }
    }
}
