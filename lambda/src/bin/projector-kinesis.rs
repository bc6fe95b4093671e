//! The stream projector as a Lambda function on the event table's
//! Kinesis Data Streams for DynamoDB destination.

#[tokio::main]
async fn main() -> Result<(), tally_lambda::Error> {
    tally_lambda::projection::run(tally_lambda::projection::Source::Kinesis).await
}
