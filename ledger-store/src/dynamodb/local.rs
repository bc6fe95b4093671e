//! DynamoDB Local, the official emulator, for tests and benchmarks.
//!
//! [`DynamoLocal::shared`] starts one emulator per process through
//! `scripts/dynamodb-local` (which installs it on first use) and hands out
//! its endpoint; tests isolate themselves by table prefix. The script's
//! watchdog stops the emulator when the process exits, however it exits.
//! A missing Java or npm fails loudly with the script's reason: nothing
//! skips.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A running emulator.
#[derive(Debug)]
pub struct DynamoLocal {
    endpoint: String,
}

impl DynamoLocal {
    /// The process's emulator, started on first use.
    ///
    /// # Panics
    /// When the emulator cannot be installed or started, with the reason.
    pub fn shared() -> &'static DynamoLocal {
        static SHARED: OnceLock<DynamoLocal> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts an emulator that lives as long as this process.
    ///
    /// # Errors
    /// The script's reason when it cannot install or start the emulator.
    pub fn start() -> Result<DynamoLocal, String> {
        Ok(DynamoLocal {
            endpoint: start_emulator(&script(), "DynamoDB Local")?,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Runs an emulator's `scripts/…` `start --watch-pid <this process>`, so the
/// emulator lives as long as this process, and returns the endpoint it
/// printed.
///
/// # Errors
/// The script's reason when it cannot install or start the emulator.
pub fn start_emulator(script: &std::path::Path, name: &str) -> Result<String, String> {
    let output = Command::new(script)
        .arg("start")
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{name} did not start ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("endpoint="))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} printed no endpoint:\n{stdout}", script.display()))
}

/// A table prefix no other test of any process on this emulator uses.
pub fn unique_prefix(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{label}-{}-{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("dynamodb-local")
}
