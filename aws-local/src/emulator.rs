//! kinesalite, a Kinesis Data Streams emulator, for tests.
//!
//! [`Kinesalite::shared`] starts one emulator per process through
//! `scripts/kinesalite` (which installs it on first use) and hands out its
//! endpoint; tests isolate themselves by stream name. The script's watchdog
//! stops the emulator when the process exits, however it exits. A missing
//! Node.js or npm fails loudly with the script's reason: nothing skips.
//!
//! The emulator keeps streams in memory and moves them between CREATING,
//! UPDATING, DELETING and ACTIVE within milliseconds. It has no enhanced
//! fan-out and no resource-based policies; Put/GetRecords, shards and their
//! lineage behave as the service documents them.

use std::path::PathBuf;
use std::sync::OnceLock;

use aws_config::BehaviorVersion;

/// A running emulator.
#[derive(Debug)]
pub struct Kinesalite {
    endpoint: String,
}

impl Kinesalite {
    /// The process's emulator, started on first use.
    ///
    /// # Panics
    /// When the emulator cannot be installed or started, with the reason.
    pub fn shared() -> &'static Kinesalite {
        static SHARED: OnceLock<Kinesalite> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts an emulator that lives as long as this process.
    ///
    /// # Errors
    /// The script's reason when it cannot install or start the emulator.
    pub fn start() -> Result<Kinesalite, String> {
        Ok(Kinesalite {
            endpoint: ledger_store::dynamodb::local::start_emulator(&script(), "kinesalite")?,
        })
    }

    /// The emulator's URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A Kinesis client for this emulator.
    pub async fn client(&self) -> aws_sdk_kinesis::Client {
        kinesis_client(Some(&self.endpoint)).await
    }
}

/// A Kinesis client: for `endpoint` (an emulator) with test credentials in
/// `us-east-1`, or for the service with credentials and region from the
/// environment when `endpoint` is `None`.
pub async fn kinesis_client(endpoint: Option<&str>) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(endpoint).await)
}

/// The SDK configuration every client of this crate's runners uses: for
/// `endpoint` with test credentials in `us-east-1`, or from the environment.
pub(crate) async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .test_credentials()
            .region(aws_config::Region::new("us-east-1"));
    }
    loader.load().await
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("kinesalite")
}
