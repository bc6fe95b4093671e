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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ledger_store::sqlite::{SqliteViews, generation_path, live_generation, switch_generation};
use ledger_store::{AnyStore, CommitLog};
use projector::follow::ViewFollower;
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
    let (Location::Sqlite { database }, AnyStore::Sqlite(store)) = (location, &ledger.store) else {
        bail!(
            "rebuilding the DynamoDB read models is not built yet: its generations need a table per generation and a switch the stream projector reads"
        );
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
    })
}
