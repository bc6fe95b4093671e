//! The scheduled credit replenishment as a Lambda function on an
//! EventBridge schedule.

#[tokio::main]
async fn main() -> Result<(), tally_lambda::Error> {
    tally_lambda::replenisher::run().await
}
