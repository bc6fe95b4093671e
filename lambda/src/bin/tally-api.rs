//! The HTTP API as a Lambda function behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), tally_lambda::Error> {
    tally_lambda::api::run().await
}
