//! Every Lambda function of `tally-lambda` from both sides of its seam,
//! with the real binaries: AWS Lambda cannot run here, so only the piece
//! that is AWS, the Runtime API, is emulated ([`runtime`]); the functions
//! talk to DynamoDB Local. Payloads are the shapes AWS delivers, some
//! committed as fixtures under `tests/fixtures/aws/`.

mod api;
mod projector;
mod replenisher;
mod runtime;
