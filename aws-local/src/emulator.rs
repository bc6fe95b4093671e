//! The emulators tests and the local server run against, started through
//! `scripts/emulator` (which installs them on first use).
//!
//! [`Emulator::shared`] starts one emulator of a kind per process and hands
//! out its endpoint; tests isolate themselves by table prefix or stream
//! name. The script's watchdog stops the emulator when the process exits,
//! however it exits. A missing Java, Node.js or npm fails loudly with the
//! script's reason: nothing skips.
//!
//! - **DynamoDB Local** (the official emulator) supports Streams,
//!   transactions with their limits and cancellation reasons, conditional
//!   writes, TTL, paging and parallel scans; it keeps one stream shard and
//!   ignores throughput limits.
//! - **kinesalite** keeps Kinesis streams in memory and moves them between
//!   CREATING, UPDATING, DELETING and ACTIVE within milliseconds. It has no
//!   enhanced fan-out; Put/GetRecords, shards and their lineage behave as
//!   the service documents them.
//! - **cognito-local** holds Cognito user pools and signs RS256 tokens
//!   with a JWKS of its own; [`crate::cognito`] fills a pool.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DynamoDB Local, for DynamoDB and DynamoDB Streams.
    DynamoDb,
    /// kinesalite, for Kinesis Data Streams.
    Kinesis,
    /// cognito-local, for Cognito user pools and their tokens.
    Cognito,
}

impl Kind {
    /// The script's name for it.
    fn arg(self) -> &'static str {
        match self {
            Kind::DynamoDb => "dynamodb",
            Kind::Kinesis => "kinesis",
            Kind::Cognito => "cognito",
        }
    }
}

/// Why an emulator did not start: the script's own reason (a missing Java,
/// Node.js or npm, a failed install, no answer on its port).
#[derive(Debug, thiserror::Error)]
#[error("the {kind:?} emulator did not start: {reason}")]
pub struct EmulatorError {
    pub kind: Kind,
    pub reason: String,
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
}

impl Emulator {
    /// The process's emulator of `kind`, started on first use.
    ///
    /// # Panics
    /// When the emulator cannot be installed or started, with the reason.
    pub fn shared(kind: Kind) -> &'static Emulator {
        static DYNAMODB: OnceLock<Emulator> = OnceLock::new();
        static KINESIS: OnceLock<Emulator> = OnceLock::new();
        static COGNITO: OnceLock<Emulator> = OnceLock::new();
        let cell = match kind {
            Kind::DynamoDb => &DYNAMODB,
            Kind::Kinesis => &KINESIS,
            Kind::Cognito => &COGNITO,
        };
        cell.get_or_init(|| Self::start(kind).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts an emulator that lives as long as this process: runs
    /// `scripts/emulator KIND start --watch-pid <this process>` and keeps
    /// the endpoint it printed.
    ///
    /// # Errors
    /// The script's reason when it cannot install or start the emulator.
    pub fn start(kind: Kind) -> Result<Emulator, EmulatorError> {
        let failed = |reason: String| EmulatorError { kind, reason };
        let script = script();
        let output = Command::new(&script)
            .args([kind.arg(), "start", "--watch-pid"])
            .arg(std::process::id().to_string())
            .output()
            .map_err(|e| failed(format!("running {}: {e}", script.display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(failed(format!(
                "{} ({}):\n{}{}",
                script.display(),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let endpoint = stdout
            .lines()
            .find_map(|line| line.strip_prefix("endpoint="))
            .map(str::to_owned)
            .ok_or_else(|| {
                failed(format!(
                    "{} printed no endpoint:\n{stdout}",
                    script.display()
                ))
            })?;
        Ok(Emulator { endpoint })
    }

    /// The emulator's URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A name prefix (for tables or streams) no other test of any process on
/// the same emulator uses.
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
        .join("emulator")
}
