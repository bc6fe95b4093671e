//! `tally load`: drives a running server over HTTP with realistic checkouts,
//! measures what it acknowledged and how fast, and then checks that the
//! server kept every acknowledged sale and that the money adds up.
//!
//! Three phases:
//!
//! 1. **Setup** (module `setup`): configures the tenant ([`CURRENCY`],
//!    [`TIME_ZONE`]), registers the vendors, enrolls the employees with a
//!    semi-monthly top-up allowance and replenishes the current period,
//!    then reads every balance and the dashboard as a baseline (so a reused
//!    tenant still verifies).
//! 2. **Load** (`workers`): `concurrency` tasks, each on its own keep-alive
//!    HTTP/1.1 connection (`http`), send checkouts (credit or cash, 1 to 4
//!    lines from a small menu) and a few refunds of earlier acknowledged
//!    orders, each with its own `Idempotency-Key`, for `duration`; closed
//!    loop by default, open loop at `rate` requests/s in total when asked.
//!    A request that gets no definite answer (transport error, 408, 409,
//!    503) is retried with the same key, so a retry can never record a sale
//!    twice.
//! 3. **Verification** (`verify`): once `/healthz` says the read models
//!    have caught up with the log (so with every write of the load, whether
//!    or not its answer arrived), every acknowledged sale is read back as
//!    an order view; every
//!    employee's balance equals the baseline minus what the generator's
//!    acknowledged credit sales spent plus what its refunds gave back; and
//!    the all-vendors dashboard moved by exactly the acknowledged gross,
//!    refunds and order count.
//!
//! Amounts are ledger-core [`Money`](ledger_core::Money) in the tenant's
//! currency, at its minor-unit scale (`money`). The report, [`LoadReport`],
//! renders as the CLI prints it (`report`).
//!
//! The hot path is kept cheap because the generator shares the machine with
//! the server: request bodies are written into a reused buffer from a
//! precomputed menu, headers are prebuilt, and a response is only read for
//! its status (its body is drained unread unless the
//! request was refused).

mod api;
mod config;
mod http;
mod money;
mod report;
mod setup;
mod verify;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ledger_core::rng::SplitMix64;

pub use config::{Credentials, LoadConfig};
pub use report::{LoadReport, Verification};

/// The tenant's currency and zone when the generator configures it.
pub const CURRENCY: &str = "PHP";
pub const TIME_ZONE: &str = "Asia/Manila";
/// Most attempts at one request that gets no definite answer.
pub const ATTEMPTS_MAX: u32 = 5;
/// Pause before retrying a request that got no definite answer.
pub const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Longest the generator waits for one response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the tokens the generator mints live.
pub const TOKEN_TTL: Duration = Duration::from_hours(2);
/// Most concurrent requests during setup and verification.
pub const VERIFY_CONCURRENCY_MAX: usize = 32;
/// Most failed checks a report lists one by one.
pub const FAILURES_SHOWN_MAX: usize = 20;

/// A seed for when none is given: different on every run.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    SplitMix64::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// Sets up, loads, and verifies. The report says what happened; an error
/// means the run could not be carried out at all.
///
/// # Errors
/// An invalid configuration, an unreachable server, a refused token, a
/// failed setup step.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    let allowance = config.check()?;
    let base = config.url.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base).with_context(|| format!("{base:?} is not a URL"))?;
    let target = http::Target::resolve(&url).await?;
    // Fresh on every run, whatever the seed: a rerun on the same tenant
    // must not replay the last run's idempotency keys.
    let run = format!("{:08x}", fresh_seed() as u32);
    let api = Arc::new(api::Api::new(base.clone(), config.concurrency)?);
    let setup = setup::setup(&config, allowance, &api, &run).await?;
    let baseline = setup.baseline.clone();
    let plan = Arc::new(workers::Plan::new(&config, setup, base, run));
    println!(
        "Loading {} for {:.0} s with {} connections...",
        plan.base,
        config.duration.as_secs_f64(),
        config.concurrency
    );
    let results = workers::load(&plan, &target, config.seed).await?;
    let (mut report, acked, unknown) = workers::merge(&plan, results);
    if config.verify {
        let verification = verify::verify(&api, &plan, &baseline, acked, unknown);
        report.verification = Some(verification.await?);
    }
    Ok(report)
}
