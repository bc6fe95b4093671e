//! `tally replay redrive`: after a fix, the parked records applied again
//! from the event table, and each parked entry cleared once its event is
//! applied.
//!
//! Per parked stream, in stream order: its events are read from the event
//! table (not the parked copies, which may be what was broken) from the
//! lowest parked version to the stream's end, and handed to the same
//! [`StreamProjector::handle`] the live projector runs, as one batch that
//! starts right after the stored view, so the projector's gates apply it
//! as an ordinary run. Then the stream's parked entries up to the last
//! version handed over are deleted, unless the batch failed or parked
//! something again (the fix did not fix it: the entries stay, with the new
//! error). Applying comes before clearing, so a redrive cut off between
//! the two leaves entries whose events are applied; the next redrive finds
//! them duplicates at the gates and clears them. Events the live projector
//! parked behind the stream meanwhile are picked up by a second pass.

use std::collections::BTreeMap;

use anyhow::Context;
use ledger_core::id::StreamVersion;
use ledger_store::dynamodb::change::Change;
use ledger_store::dynamodb::item::parse_pk;
use ledger_store::views::{Parked, ViewTable};
use ledger_store::{EventStore, READ_PAGE_RECORDS_MAX};
use projector::StreamProjector;
use projector::record::ChangeRecord;
use serde::Serialize;

use crate::Ledger;

/// Passes over a stream's parked records before its leftovers are
/// reported as still parked.
pub const REDRIVE_PASSES_MAX: usize = 3;

/// What a redrive did to one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRedrive {
    /// The stream key (`tenant|stream`).
    pub stream: String,
    /// Parked entries it had.
    pub parked: usize,
    /// Events handed to the projector.
    pub handed: usize,
    /// Events applied (the rest were duplicates at their gates).
    pub applied: usize,
    /// Parked entries cleared.
    pub cleared: usize,
    /// Why it is still parked, when it is.
    pub still_parked: Option<String>,
}

/// What `replay redrive` did.
#[derive(Debug, Clone, Serialize)]
pub struct Redriven {
    pub clean: bool,
    pub streams: Vec<StreamRedrive>,
}

/// Redrives every parked stream of the ledger's live read models.
///
/// # Errors
/// The store's or the table's.
pub async fn redrive(ledger: &Ledger) -> anyhow::Result<Redriven> {
    let projector = StreamProjector::new(ledger.views.clone());
    let mut streams: BTreeMap<String, StreamRedrive> = BTreeMap::new();
    for _ in 0..REDRIVE_PASSES_MAX {
        let parked = ledger
            .views
            .parked()
            .await
            .map_err(|e| anyhow::anyhow!("reading parked records: {e}"))?;
        let mut by_stream: BTreeMap<String, Vec<Parked>> = BTreeMap::new();
        for p in parked {
            by_stream.entry(p.pk.clone()).or_default().push(p);
        }
        let progress = by_stream
            .keys()
            .any(|pk| streams.get(pk).is_none_or(|s| s.still_parked.is_none()));
        if by_stream.is_empty() || !progress {
            break;
        }
        for (pk, parked) in by_stream {
            let entry = streams.entry(pk.clone()).or_insert(StreamRedrive {
                stream: pk.clone(),
                parked: 0,
                handed: 0,
                applied: 0,
                cleared: 0,
                still_parked: None,
            });
            if entry.still_parked.is_some() {
                continue;
            }
            entry.parked += parked.len();
            redrive_stream(ledger, &projector, &pk, &parked, entry).await?;
        }
    }
    let streams: Vec<StreamRedrive> = streams.into_values().collect();
    Ok(Redriven {
        clean: streams.iter().all(|s| s.still_parked.is_none()),
        streams,
    })
}

async fn redrive_stream(
    ledger: &Ledger,
    projector: &StreamProjector<ledger_store::views::AnyTable>,
    pk: &str,
    parked: &[Parked],
    out: &mut StreamRedrive,
) -> anyhow::Result<()> {
    let (tenant_id, stream) =
        parse_pk(pk).map_err(|e| anyhow::anyhow!("parked stream key {pk:?}: {e}"))?;
    let lowest = parked.iter().map(|p| p.version).min().unwrap_or(1);
    let mut after = StreamVersion::new(lowest.saturating_sub(1));
    let mut records = Vec::new();
    loop {
        let page = ledger
            .store
            .read_stream(tenant_id, stream, after, READ_PAGE_RECORDS_MAX)
            .await
            .with_context(|| format!("reading {pk}"))?;
        let Some(last) = page.last() else { break };
        after = last.version;
        let full = page.len() == READ_PAGE_RECORDS_MAX;
        records.extend(page);
        if !full {
            break;
        }
    }
    let Some(through) = records.last().map(|r| r.version.get()) else {
        out.still_parked = Some("the event table has none of its parked versions".to_owned());
        return Ok(());
    };
    let batch: Vec<ChangeRecord> = records
        .into_iter()
        .map(|r| ChangeRecord {
            id: format!("redrive:{pk}:{}", r.version),
            written_at_ms: None,
            change: Change::Event {
                pk: pk.to_owned(),
                version: r.version.get(),
                bytes: r.bytes,
            },
        })
        .collect();
    out.handed += batch.len();
    let report = projector.handle(batch).await;
    out.applied += report.applied;
    if !report.failed.is_empty() {
        out.still_parked = Some(format!(
            "{} record(s) failed to project; run the redrive again",
            report.failed.len()
        ));
        return Ok(());
    }
    if report.parked > 0 {
        let again = ledger
            .views
            .parked()
            .await
            .map_err(|e| anyhow::anyhow!("reading parked records: {e}"))?;
        let error = again
            .into_iter()
            .find(|p| p.pk == pk)
            .map_or_else(|| "parked again".to_owned(), |p| p.error);
        out.still_parked = Some(error);
        return Ok(());
    }
    ledger
        .views
        .unpark(pk, through)
        .await
        .map_err(|e| anyhow::anyhow!("clearing parked records of {pk}: {e}"))?;
    out.cleared += parked.iter().filter(|p| p.version <= through).count();
    Ok(())
}
