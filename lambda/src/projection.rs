//! The stream projector's functions: a DynamoDB Streams batch or a Kinesis
//! batch in, the partial-batch response out (`ReportBatchItemFailures`).
//! The mappings must be configured with `ReportBatchItemFailures`,
//! `ParallelizationFactor` 1 and `TRIM_HORIZON` (`infra/cdk` does).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use ledger_store::dynamodb::views::{DynamoTable, GenerationFollower};
use ledger_store::views::AnyTable;
use projector::StreamProjector;
use projector::lambda::{dynamodb_records, dynamodb_response, kinesis_records, kinesis_response};

use crate::{Calls, Error, GENERATION_MAX_AGE, config_from_env, init};

/// Which event source a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DynamoDbStreams,
    Kinesis,
}

struct Projection {
    projector: StreamProjector<AnyTable>,
    generations: GenerationFollower,
}

impl Projection {
    /// Projects one batch's records into the generation projectors write.
    async fn handle(&self, records: Vec<projector::record::ChangeRecord>) -> projector::Report {
        let calls = Calls::start();
        if let Err(e) = self.generations.refresh_if_older(GENERATION_MAX_AGE).await {
            tracing::warn!(error = %e, "reading the generation pointer failed");
            if !self.generations.known() {
                // Not knowing where to write, write nowhere: every record
                // is failed, so the mapping delivers it again.
                return projector::Report {
                    records: records.len(),
                    failed: records.into_iter().map(|r| r.id).collect(),
                    ..projector::Report::default()
                };
            }
            // Otherwise the generation last read stays in use (a rebuild
            // moves writers only once they can have read it) and the next
            // batch reads again.
        }
        let report = self.projector.handle(records).await;
        // The batch's own line ("batch projected") is the projector's.
        tracing::info!(
            store_calls = calls.made(),
            generation = self.generations.generations().write,
            "invocation"
        );
        report
    }
}

/// The function's main: serves invocations of `source` until the runtime
/// stops it.
///
/// # Errors
/// When the Lambda environment is missing or the runtime fails.
pub async fn run(source: Source) -> Result<(), Error> {
    init()?;
    let cold = Calls::start();
    // The pointer is read with the first batch: a table out of reach then
    // fails the batch's records, and the mapping delivers them again.
    let generations = GenerationFollower::unread(DynamoTable::connect(&config_from_env()).await);
    let projection = Arc::new(Projection {
        projector: StreamProjector::new(AnyTable::LiveDynamo(generations.write.clone())),
        generations,
    });
    tracing::info!(store_calls = cold.made(), "cold start");
    match source {
        Source::DynamoDbStreams => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<DynamoDbEvent>| {
                let projection = Arc::clone(&projection);
                async move {
                    let report = projection.handle(dynamodb_records(event.payload)).await;
                    Ok::<_, Error>(dynamodb_response(&report))
                }
            }))
            .await
        }
        Source::Kinesis => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
                let projection = Arc::clone(&projection);
                async move {
                    let report = projection.handle(kinesis_records(event.payload)).await;
                    Ok::<_, Error>(kinesis_response(&report))
                }
            }))
            .await
        }
    }
}
