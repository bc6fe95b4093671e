//! The projector as a Lambda function on the event table's Kinesis Data
//! Streams for DynamoDB destination.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    projector::lambda::run(projector::lambda::Source::Kinesis).await
}
