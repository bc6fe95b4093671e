//! Tally's AWS Lambda entries. Glue only: every rule lives in ledger-core,
//! the stores in ledger-store, the HTTP API in command-api and the stream
//! projector in projector; a function here reads its configuration from
//! the environment, connects, and hands each invocation to them.
//!
//! | binary | event | does |
//! |---|---|---|
//! | `tally-api` | API Gateway (REST and HTTP API) | [`api`]: the axum `Router` of `tally serve`, on DynamoDB |
//! | `projector-streams` | DynamoDB Streams batch | [`projection`]: folds the batch into the read models |
//! | `projector-kinesis` | Kinesis batch (Kinesis Data Streams for DynamoDB) | [`projection`]: the same |
//! | `tally-replenisher` | EventBridge schedule | [`replenisher`]: replenishes the credit accounts that are due |
//!
//! Every function follows the read models' generation pointer (a rebuild
//! switches it) by reading it at most once per [`GENERATION_MAX_AGE`], and
//! logs one JSON line per invocation with the DynamoDB calls it made.

pub mod api;
pub mod projection;
pub mod replenisher;

use std::time::Duration;

use ledger_store::dynamodb::views::{DynamoTable, GenerationFollower};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};

/// How stale a function's idea of the live read-model generation may be:
/// the pointer is read again before an invocation once this has passed.
pub const GENERATION_MAX_AGE: Duration = Duration::from_secs(1);

/// Environment variables the Lambda runtime sets; the runtime library
/// panics without them, so each entry checks first.
const RUNTIME_ENV: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// The error every entry returns: the runtime reports it as an init error.
pub type Error = lambda_runtime::Error;

/// Where the function's tables are: `TALLY_TABLE_PREFIX` (default
/// `tally-`), and `TALLY_DYNAMODB_ENDPOINT` for a DynamoDB-compatible
/// endpoint instead of the service.
pub fn config_from_env() -> DynamoConfig {
    DynamoConfig {
        endpoint: std::env::var("TALLY_DYNAMODB_ENDPOINT").ok(),
        table_prefix: std::env::var("TALLY_TABLE_PREFIX").unwrap_or_else(|_| "tally-".into()),
    }
}

/// A required variable of the function's configuration.
///
/// # Errors
/// Naming the variable, when it is unset or empty.
pub fn required_env(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("{name} is not set: the function's configuration must name it").into()),
    }
}

/// Structured JSON logs, one object per line, level from `RUST_LOG`
/// (default `info`), then checks that the process runs inside Lambda's
/// runtime. Every entry's first step.
///
/// # Errors
/// Naming the first missing or malformed runtime variable.
pub fn init() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
    if let Some(missing) = RUNTIME_ENV.iter().find(|v| std::env::var(v).is_err()) {
        return Err(
            format!("{missing} is not set: this binary runs inside AWS Lambda's runtime").into(),
        );
    }
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(
            format!("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is {memory:?}, not a number of MB").into(),
        );
    }
    Ok(())
}

/// What a function that runs commands needs: the event table (one
/// `DescribeTable`) and the read models' live generations (one read of the
/// pointer). Nothing of the log is read.
///
/// # Errors
/// Naming the table or the pointer that could not be reached.
pub async fn connect_command_side() -> Result<(DynamoStore, GenerationFollower), Error> {
    let config = config_from_env();
    let store = DynamoStore::connect(&config)
        .await
        .map_err(|e| format!("connecting to the event table: {e}"))?;
    let generations = GenerationFollower::start(DynamoTable::connect(&config).await)
        .await
        .map_err(|e| format!("reading the read models' generation pointer: {e}"))?;
    Ok((store, generations))
}

/// Counts the DynamoDB calls of one stretch of work (an invocation, a cold
/// start): the process handles one invocation at a time, so the difference
/// of the process's counter is that invocation's.
#[derive(Debug, Clone, Copy)]
pub struct Calls(u64);

impl Calls {
    pub fn start() -> Calls {
        Calls(ledger_store::dynamodb::requests_sent())
    }

    /// Calls made since [`Calls::start`].
    pub fn made(self) -> u64 {
        ledger_store::dynamodb::requests_sent() - self.0
    }
}
