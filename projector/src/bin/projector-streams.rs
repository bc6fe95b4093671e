//! The projector as a Lambda function on the event table's DynamoDB Stream.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    projector::lambda::run(projector::lambda::Source::DynamoDbStreams).await
}
