//! `tally export`: the log as JSON Lines, one event envelope per line in
//! the published schema (`schemas/events/Envelope.json`), streaming.
//!
//! Order: on SQLite, commit order. A DynamoDB table has none, and its
//! parallel Scan interleaves streams differently from run to run, so there
//! the lines are sorted by tenant, stream and version, by an external merge
//! sort (runs of at most [`RUN_BYTES_MAX`] in memory, spilled to temporary
//! files): the same table exports to the same bytes, and memory stays
//! bounded whatever its size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::Context;
use ledger_core::id::{StreamId, TenantId};
use ledger_core::time::Timestamp;
use ledger_store::AnyStore;

use crate::progress::Progress;
use crate::{Ledger, Reading};

/// Bytes of lines sorted in memory at once before a run is spilled.
pub const RUN_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Which events to export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub tenant: Option<TenantId>,
    pub stream: Option<StreamId>,
    /// Recorded at or after.
    pub from: Option<Timestamp>,
    /// Recorded before.
    pub to: Option<Timestamp>,
}

impl ExportFilter {
    fn admits(&self, tenant: TenantId, stream: StreamId, recorded_at: Timestamp) -> bool {
        self.tenant.is_none_or(|t| t == tenant)
            && self.stream.is_none_or(|s| s == stream)
            && self.from.is_none_or(|from| recorded_at >= from)
            && self.to.is_none_or(|to| recorded_at < to)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Exported {
    pub lines: u64,
    pub reading: Reading,
}

/// Writes the events `filter` admits to `out`, one JSON envelope per line.
///
/// # Errors
/// The store's, writing's, or a record that does not decode (audit the
/// log: an export is of events, and an undecodable record is none).
pub async fn export(
    ledger: &Ledger,
    filter: &ExportFilter,
    out: &mut (impl Write + Send),
    progress: &Progress,
) -> anyhow::Result<Exported> {
    let sorted = matches!(ledger.store, AnyStore::Dynamo(_));
    let mut runs = Runs::default();
    let mut lines = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    let reading = ledger
        .events(filter.tenant, progress, |envelope| {
            if failure.is_some()
                || !filter.admits(
                    envelope.tenant_id(),
                    envelope.stream(),
                    envelope.header.recorded_at,
                )
            {
                return;
            }
            let result = (|| -> anyhow::Result<()> {
                let mut line = serde_json::to_vec(&envelope)?;
                line.push(b'\n');
                lines += 1;
                if sorted {
                    let key = format!(
                        "{}\u{0}{}\u{0}{:020}",
                        envelope.tenant_id(),
                        envelope.stream(),
                        envelope.version().get()
                    );
                    runs.push(key.into_bytes(), line)?;
                } else {
                    out.write_all(&line)?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                failure = Some(e);
            }
        })
        .await?;
    if let Some(e) = failure {
        return Err(e);
    }
    if sorted {
        runs.merge_into(out)?;
    }
    out.flush()?;
    Ok(Exported { lines, reading })
}

/// Sorted runs of (key, line), in memory until they grow too large.
#[derive(Default)]
struct Runs {
    memory: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    spilled: Vec<std::fs::File>,
}

impl Runs {
    fn push(&mut self, key: Vec<u8>, line: Vec<u8>) -> anyhow::Result<()> {
        self.bytes += key.len() + line.len();
        self.memory.push((key, line));
        if self.bytes >= RUN_BYTES_MAX {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> anyhow::Result<()> {
        self.memory.sort_unstable();
        let mut file = tempfile::tempfile().context("creating a sort run")?;
        {
            let mut w = BufWriter::new(&mut file);
            for (key, line) in self.memory.drain(..) {
                w.write_all(&(key.len() as u32).to_le_bytes())?;
                w.write_all(&key)?;
                w.write_all(&(line.len() as u32).to_le_bytes())?;
                w.write_all(&line)?;
            }
            w.flush()?;
        }
        std::io::Seek::rewind(&mut file)?;
        self.spilled.push(file);
        self.bytes = 0;
        Ok(())
    }

    fn merge_into(mut self, out: &mut impl Write) -> anyhow::Result<()> {
        if self.spilled.is_empty() {
            self.memory.sort_unstable();
            for (_, line) in &self.memory {
                out.write_all(line)?;
            }
            return Ok(());
        }
        if !self.memory.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<BufReader<std::fs::File>> =
            self.spilled.into_iter().map(BufReader::new).collect();
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some((key, line)) = next_entry(r)? {
                heap.push(Reverse((key, i, line)));
            }
        }
        while let Some(Reverse((_, i, line))) = heap.pop() {
            out.write_all(&line)?;
            if let Some((key, line)) = next_entry(&mut readers[i])? {
                heap.push(Reverse((key, i, line)));
            }
        }
        Ok(())
    }
}

fn next_entry(r: &mut impl BufRead) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut read = || -> anyhow::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let key = read()?;
    let line = read()?;
    Ok(Some((key, line)))
}
