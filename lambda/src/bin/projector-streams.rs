//! The stream projector as a Lambda function on the event table's
//! DynamoDB Stream.

#[tokio::main]
async fn main() -> Result<(), tally_lambda::Error> {
    tally_lambda::projection::run(tally_lambda::projection::Source::DynamoDbStreams).await
}
