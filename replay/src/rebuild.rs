//! `tally replay rebuild`: the read models folded from the log into a
//! fresh generation, then switched in for readers (blue/green).
//!
//! On SQLite a generation is a read-model file beside the log's
//! (`<log>-views` is the first, `<log>-views-g<n>` the n-th) and the live
//! one is named by `<log>-views.generation`. A rebuild:
//!
//! 1. takes the next generation's lock (a second rebuild of it refuses to
//!    start: two rebuilders never share one progression);
//! 2. follows the log into the new file with the same [`ViewFollower`]
//!    the server runs: gated, exactly-once writes and a checkpoint after
//!    every page, so an interrupted rebuild resumes from its checkpoint
//!    and never counts an event twice (`--restart` starts it over);
//! 3. once it reaches the log's head, switches the live generation
//!    atomically (a rename). A running server adopts it within a
//!    fraction of a second: it folds the new generation from the
//!    rebuild's checkpoint to the head while its old follower goes on,
//!    then points readers at it. Nothing is lost (every event is folded
//!    into the new generation, by the rebuild or after it by the server)
//!    and nothing is counted twice (the gates). A server that is not
//!    running opens the new generation when it starts.
//!
//! The live generation is never written by a rebuild; the old file is
//! left for the operator to delete.
//!
//! On DynamoDB a generation is a read-model table (`<prefix>read-models`
//! the first, `<prefix>read-models-g<n>` the n-th) and the first table
//! holds a pointer to the generation readers read and the one projectors
//! write. A table has no commit order to checkpoint, so a rebuild folds a
//! parallel Scan of the event table (one handler per segment: a stream is
//! in one segment, in version order) through the same
//! [`StreamProjector::handle`], and:
//!
//! 1. folds the whole table into the new generation;
//! 2. points writers at it (projectors read the pointer at least every
//!    [`GENERATION_SETTLE`]'s fraction, so after that pause every batch
//!    writes the new generation);
//! 3. folds the table again: events appended before writers moved are
//!    applied, those folded already are duplicates at their gates;
//! 4. points readers at it.
//!
//! Cut off before 2, the live generations are untouched and a rerun
//! starts over (a new generation's table is created afresh with
//! `--restart`, or folded again: duplicates cost reads, not writes); cut
//! off after 2, a rerun finds writers ahead of readers and finishes
//! steps 3 and 4.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ledger_store::dynamodb::change::Change;
use ledger_store::dynamodb::views::{DynamoTable, Generations};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore, SCAN_PAGES_QUEUED};
use ledger_store::sqlite::{SqliteViews, generation_path, live_generation, switch_generation};
use ledger_store::{AnyStore, CommitLog, Record, SCAN_SEGMENTS};
use projector::StreamProjector;
use projector::follow::ViewFollower;
use projector::plan::pk_of;
use projector::record::ChangeRecord;
use serde::Serialize;

use crate::progress::Progress;
use crate::{Ledger, Location};

#[derive(Debug, Clone, Copy, Default)]
pub struct RebuildOptions {
    /// Start the next generation over instead of resuming it.
    pub restart: bool,
    /// Build it without switching readers to it (a later run resumes and
    /// switches).
    pub no_switch: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    /// The generation readers read before.
    pub live_before: u32,
    pub generation: u32,
    pub switched: bool,
    /// Records folded by this run (a resumed run folds only the rest).
    pub folded: u64,
    #[serde(serialize_with = "crate::seconds")]
    pub elapsed: Duration,
    pub path: PathBuf,
    /// The old generation's file, to delete once no reader uses it.
    pub old_path: PathBuf,
    pub peak_resident_kib: Option<u64>,
}

impl Rebuilt {
    pub fn per_second(&self) -> f64 {
        self.folded as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Rebuilds the read models into the next generation.
///
/// # Errors
/// When another rebuild holds the generation, or the store or the new
/// file fails; the live generation is untouched either way.
pub async fn rebuild(
    location: &Location,
    ledger: &Ledger,
    options: RebuildOptions,
    progress: &Progress,
) -> anyhow::Result<Rebuilt> {
    let (database, store) = match (location, &ledger.store) {
        (Location::Sqlite { database }, AnyStore::Sqlite(store)) => (database, store),
        (Location::Dynamo(config), AnyStore::Dynamo(store)) => {
            return rebuild_dynamo(config, store, options, progress).await;
        }
        _ => bail!("the location and the store disagree"),
    };
    let started = Instant::now();
    let live_before = live_generation(database)?;
    let generation = live_before + 1;
    let path = generation_path(database, generation);
    let mut lock_name = path.clone().into_os_string();
    lock_name.push(".lock");
    let lock = std::fs::File::create(&lock_name)
        .with_context(|| format!("creating {}", PathBuf::from(&lock_name).display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another rebuild of generation {generation} is running (it holds {})",
            PathBuf::from(&lock_name).display()
        );
    }
    if options.restart {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            match std::fs::remove_file(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("removing the unfinished generation"),
            }
        }
    }
    let views = SqliteViews::open(&path).with_context(|| format!("opening {}", path.display()))?;
    views.bulk(true).await?;
    let mut follower = ViewFollower::resume(store.clone(), views.clone(), views)
        .await
        .context("resuming the rebuild")?;
    let from = *follower.position().borrow();
    progress.start(store.head().0.saturating_sub(from.0));
    let mut folded = 0u64;
    // Fold until a page comes back short: the head, as of that page.
    // Whatever is appended after it the server folds when it adopts the
    // generation (or on its next start).
    loop {
        let n = follower.step().await.context("folding the log")?;
        folded += n as u64;
        progress.advance(n as u64);
        if n < ledger_store::READ_PAGE_RECORDS_MAX {
            break;
        }
    }
    progress.finish();
    follower.table().bulk(false).await?;
    let switched = !options.no_switch;
    if switched {
        switch_generation(database, generation)?;
    }
    drop(lock);
    Ok(Rebuilt {
        live_before,
        generation,
        switched,
        folded,
        elapsed: started.elapsed(),
        path,
        old_path: generation_path(database, live_before),
        peak_resident_kib: crate::peak_resident_kib(),
    })
}

/// How long a rebuild waits after moving writers before folding again:
/// longer than a projector takes to see the pointer move (the server polls
/// it every 200 ms) and to finish a batch it started before.
pub const GENERATION_SETTLE: Duration = Duration::from_secs(3);

async fn rebuild_dynamo(
    config: &DynamoConfig,
    store: &DynamoStore,
    options: RebuildOptions,
    progress: &Progress,
) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let first = DynamoTable::connect(config).await;
    let live = first.generations().await?;
    let resuming = live.write > live.read;
    let generation = if resuming {
        live.write
    } else {
        live.read.max(live.write) + 1
    };
    if options.restart && !resuming {
        first.delete_generation(generation).await?;
        // DynamoDB deletes a table in the background; wait until it is gone.
        for _ in 0..120 {
            if !first.generation(generation).exists().await? {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let table = first.create_generation(generation).await?;
    let approximate = store.approximate_items().await.unwrap_or(0);
    let mut folded = 0;
    if !resuming {
        progress.start(approximate);
        folded += fold_table(store, &table, progress).await?;
        progress.finish();
    }
    let switched = !options.no_switch;
    if switched {
        let writers = Generations {
            read: live.read,
            write: generation,
        };
        if !resuming {
            first.switch_generations(live, writers).await?;
        }
        tokio::time::sleep(GENERATION_SETTLE).await;
        progress.start(approximate);
        folded += fold_table(store, &table, progress).await?;
        progress.finish();
        first
            .switch_generations(
                writers,
                Generations {
                    read: generation,
                    write: generation,
                },
            )
            .await?;
    }
    Ok(Rebuilt {
        live_before: live.read,
        generation,
        switched,
        folded,
        elapsed: started.elapsed(),
        path: PathBuf::from(table.name()),
        old_path: PathBuf::from(first.generation(live.read).name()),
        peak_resident_kib: crate::peak_resident_kib(),
    })
}

/// Folds every event of the table into `table`, one handler per Scan
/// segment; returns the records handed over.
async fn fold_table(
    store: &DynamoStore,
    table: &DynamoTable,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for segment in 0..SCAN_SEGMENTS {
        let mut pages = store.scan_segment_pages(segment, SCAN_SEGMENTS, SCAN_PAGES_QUEUED);
        let projector = StreamProjector::new(table.clone());
        let bar = progress.clone();
        tasks.spawn(async move {
            let mut folded = 0u64;
            while let Some(page) = pages.recv().await {
                let page = page.context("scanning the event table")?;
                let n = page.len() as u64;
                hand_over(&projector, page).await?;
                folded += n;
                bar.advance(n);
            }
            anyhow::Ok(folded)
        });
    }
    let mut folded = 0;
    while let Some(done) = tasks.join_next().await {
        folded += done.context("a segment's fold")??;
    }
    Ok(folded)
}

/// Attempts at handing one page over before the rebuild gives up.
const HAND_OVER_ATTEMPTS_MAX: u32 = 20;

/// Hands a page to the projector until none of it fails (a failure is a
/// throttle or a moved gate; the gates make a retried record exact).
async fn hand_over(
    projector: &StreamProjector<DynamoTable>,
    page: Vec<Record>,
) -> anyhow::Result<()> {
    let records: Vec<ChangeRecord> = page
        .into_iter()
        .map(|r| ChangeRecord {
            id: format!("{}|{}|{}", r.tenant_id, r.stream, r.version),
            written_at_ms: None,
            change: Change::Event {
                pk: pk_of(r.tenant_id, r.stream),
                version: r.version.get(),
                bytes: r.bytes,
            },
        })
        .collect();
    let mut attempt = 0u32;
    loop {
        let report = projector.handle(records.clone()).await;
        if report.failed.is_empty() {
            return Ok(());
        }
        attempt += 1;
        if attempt >= HAND_OVER_ATTEMPTS_MAX {
            bail!(
                "{} record(s) of a page failed {attempt} times to project into {}",
                report.failed.len(),
                projector.table().name()
            );
        }
        let pause = Duration::from_millis(10 << attempt.min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
    }
}
