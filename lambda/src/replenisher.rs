//! The scheduled credit replenishment: an EventBridge schedule invokes the
//! function (hourly, so every time zone's midnight on the 1st and the 16th
//! is followed within the hour), and it replenishes every account whose
//! period, at the instant the schedule fired, has not been replenished
//! (`command_api::schedule::replenish_due`).
//!
//! Safe to run twice, and to be cut off: it stops short of its deadline
//! ([`DEADLINE_MARGIN`]) and then fails the invocation, so Lambda retries
//! the same event (asynchronous invocations are retried twice), and the
//! retry, asking for the same periods, does only what is left. A retry
//! after the 1st still replenishes the periods of the instant the schedule
//! fired, never the next ones.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use command_api::schedule::replenish_due;
use command_api::service::CommandService;
use lambda_runtime::{LambdaEvent, service_fn};
use ledger_core::time::Timestamp;
use ledger_store::dynamodb::DynamoStore;
use ledger_store::dynamodb::views::GenerationFollower;
use ledger_store::views::AnyTable;
use serde_json::Value;

use crate::{Calls, Error, GENERATION_MAX_AGE, connect_command_side, init};

/// Time left before the invocation's deadline when the run stops taking
/// on accounts: an account's replenishment is a few store calls.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

struct Replenisher {
    service: CommandService<DynamoStore>,
    generations: GenerationFollower,
}

/// The function's main: serves scheduled invocations until the runtime
/// stops it.
///
/// # Errors
/// When the Lambda environment is missing, the tables cannot be reached,
/// or the runtime fails.
pub async fn run() -> Result<(), Error> {
    init()?;
    let cold = Calls::start();
    let (store, generations) = connect_command_side().await?;
    let replenisher = Arc::new(Replenisher {
        service: CommandService::new(store),
        generations,
    });
    tracing::info!(store_calls = cold.made(), "cold start");
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| {
            let replenisher = Arc::clone(&replenisher);
            async move { replenisher.handle(event).await }
        },
    ))
    .await
}

impl Replenisher {
    async fn handle(&self, event: LambdaEvent<EventBridgeEvent<Value>>) -> Result<Value, Error> {
        let calls = Calls::start();
        if let Err(e) = self.generations.refresh_if_older(GENERATION_MAX_AGE).await {
            tracing::warn!(error = %e, "reading the generation pointer failed");
        }
        let fired = event
            .payload
            .time
            .map_or_else(clock_now, Timestamp::from_datetime);
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let deadline = Instant::now() + left.saturating_sub(DEADLINE_MARGIN);
        let views = AnyTable::LiveDynamo(self.generations.read.clone());
        let report = replenish_due(&self.service, &views, fired, Some(deadline))
            .await
            .map_err(|e| format!("replenishing: {e}"))?;
        tracing::info!(
            fired = %fired,
            tenants = report.tenants,
            accounts = report.accounts,
            replenished = report.replenished,
            up_to_date = report.up_to_date,
            refused = report.refused.len(),
            unfinished = report.unfinished,
            store_calls = calls.made(),
            "replenishment run"
        );
        if report.unfinished {
            return Err(format!(
                "stopped at the deadline after {} accounts ({} replenished); the retry does the rest",
                report.accounts, report.replenished
            )
            .into());
        }
        Ok(serde_json::to_value(&report)?)
    }
}

fn clock_now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_micros(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}
