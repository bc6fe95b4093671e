//! Tally's audit and replay tools, for auditors and operators: what
//! `tally audit`, `tally digest`, `tally export` and `tally replay` run.
//!
//! Every tool reads the log through [`Ledger::records`]: the embedded log
//! in commit order up to its head at the start, or a parallel Scan of the
//! DynamoDB event table, a few pages ahead at most. Each stream arrives in
//! version order, streams interleaved, and every tool keeps only compact
//! per-key state (see each module), so memory does not grow with the
//! number of events, only with the number of streams and read-model keys.
//!
//! - [`audit`]: chains, versions, postings, invariants, read models and
//!   heads against the ledger, and optionally a digest taken earlier.
//! - [`digest`]: the short value an auditor keeps.
//! - [`export`]: the log as JSON Lines.
//! - [`fold`]: the projections folded afresh, to compare with the live
//!   read models (`replay verify`) or as they stood at an instant
//!   (`replay as-of`).
//! - [`rebuild`]: the read models folded into a new generation and
//!   switched in for readers.

pub mod audit;
pub mod digest;
pub mod export;
pub mod fold;
pub mod progress;
pub mod rebuild;
pub mod redrive;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ledger_core::TenantId;
use ledger_core::codec;
use ledger_core::envelope::Envelope;
use ledger_store::dynamodb::views::DynamoTable;
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::{SqliteStore, SqliteViews, generation_path, live_generation};
use ledger_store::views::AnyTable;
use ledger_store::{AnyStore, Record};
use serde::Serialize;

use progress::Progress;

/// Where a ledger lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// The embedded store's database file (its read models beside it).
    Sqlite { database: PathBuf },
    /// The DynamoDB event and read-model tables.
    Dynamo(DynamoConfig),
}

/// A ledger opened for the tools: its events and its read models.
#[derive(Clone)]
pub struct Ledger {
    pub store: AnyStore,
    pub views: AnyTable,
}

impl Ledger {
    /// Opens an existing ledger; never creates one.
    ///
    /// # Errors
    /// When there is no ledger there, or its store cannot be reached.
    pub async fn open(location: &Location) -> anyhow::Result<Ledger> {
        match location {
            Location::Sqlite { database } => {
                if !database.is_file() {
                    bail!("no ledger at {}", database.display());
                }
                let store = SqliteStore::open(database)
                    .with_context(|| format!("opening {}", database.display()))?;
                let views_file = generation_path(database, live_generation(database)?);
                let views = SqliteViews::open(&views_file)
                    .with_context(|| format!("opening {}", views_file.display()))?;
                Ok(Ledger {
                    store: AnyStore::Sqlite(store),
                    views: AnyTable::Sqlite(views),
                })
            }
            Location::Dynamo(config) => {
                let store = DynamoStore::connect(config)
                    .await
                    .with_context(|| format!("opening the DynamoDB event table ({config:?})"))?;
                let first = DynamoTable::connect(config).await;
                let generations = first
                    .generations()
                    .await
                    .context("reading the live read-model generation")?;
                let views = first.generation(generations.read);
                Ok(Ledger {
                    store: AnyStore::Dynamo(store),
                    views: AnyTable::Dynamo(views),
                })
            }
        }
    }

    /// Feeds every record of `tenant` (every tenant's when `None`) to
    /// `each`, each stream's in version order, showing progress.
    ///
    /// # Errors
    /// The store's.
    pub async fn records(
        &self,
        tenant: Option<TenantId>,
        progress: &Progress,
        mut each: impl FnMut(Record),
    ) -> anyhow::Result<Reading> {
        let started = Instant::now();
        let estimate = self.store.records_estimate().await.unwrap_or(0);
        progress.start(estimate);
        let mut pages = self.store.pages();
        let mut reading = Reading::default();
        while let Some(page) = pages.recv().await {
            let page = page.context("reading the log")?;
            progress.advance(page.len() as u64);
            reading.read += page.len() as u64;
            for record in page {
                if tenant.is_none_or(|t| t == record.tenant_id) {
                    reading.records += 1;
                    each(record);
                }
            }
        }
        reading.elapsed = started.elapsed();
        reading.peak_resident_kib = peak_resident_kib();
        progress.finish();
        Ok(reading)
    }
}

impl Ledger {
    /// Feeds every event of `tenant` (every tenant's when `None`) to
    /// `each`, decoded, as [`Ledger::records`] reads them. The tools that
    /// fold are about events: a record that does not decode stops them,
    /// naming it (the audit is the tool that reports it among the rest).
    ///
    /// # Errors
    /// The store's, or the first record that does not decode.
    pub async fn events(
        &self,
        tenant: Option<TenantId>,
        progress: &Progress,
        mut each: impl FnMut(Envelope),
    ) -> anyhow::Result<Reading> {
        let mut undecodable = None;
        let reading = self
            .records(tenant, progress, |record| {
                if undecodable.is_some() {
                    return;
                }
                match codec::decode(&record.bytes) {
                    Ok(envelope) => each(envelope),
                    Err(e) => {
                        undecodable = Some((record.tenant_id, record.stream, record.version, e));
                    }
                }
            })
            .await?;
        if let Some((tenant, stream, version, e)) = undecodable {
            bail!("{tenant}|{stream} version {version} does not decode ({e}): run `tally audit`");
        }
        Ok(reading)
    }
}

/// What one reading of the log did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Reading {
    /// Records read from the store.
    pub read: u64,
    /// Records of the tenant asked for (all of them without one).
    pub records: u64,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// The process's peak resident memory when the reading ended, in KiB
    /// (Linux only).
    pub peak_resident_kib: Option<u64>,
}

impl Reading {
    /// Records read per second.
    pub fn per_second(&self) -> f64 {
        self.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The process's peak resident memory so far, in KiB (`VmHWM`; Linux only).
pub fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
