//! What a run is asked to do, and the checks made before it touches the
//! network.

use std::time::Duration;

use anyhow::{Context, bail};
use command_api::auth::LocalKey;
use ledger_core::id::TenantId;
use ledger_core::{Currency, Money};
use rust_decimal::Decimal;

use crate::{CURRENCY, money};

/// How the generator authenticates.
pub enum Credentials {
    /// An admin token of the tenant to load: every request carries it, and
    /// sales name their vendor in the body.
    Token(String),
    /// The server's signing key (from its data directory): the generator
    /// mints an admin token for `tenant`, a cashier token per vendor for
    /// checkouts and a vendor token per vendor for refunds.
    Key { key: LocalKey, tenant: TenantId },
}

pub struct LoadConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub credentials: Credentials,
    /// Concurrent request loops.
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests per second in total, paced open loop; `None` runs closed
    /// loop as fast as the server answers.
    pub rate: Option<f64>,
    /// Share of checkouts paid by credit (the rest cash), 0..=100.
    pub credit_percent: u8,
    /// Share of requests that refund an earlier acknowledged order, 0..=100.
    pub refund_percent: u8,
    pub vendors: u32,
    pub employees: u32,
    /// Each employee's semi-monthly top-up allowance, in major units of the
    /// tenant's currency; digits below its minor unit are dropped.
    pub allowance: Decimal,
    /// Seeds the request mix (order ids are fresh on every run).
    pub seed: u64,
    /// Read everything back at the end.
    pub verify: bool,
}

impl LoadConfig {
    /// Checks the numbers, and returns the allowance as money in the
    /// currency setup configures ([`CURRENCY`]).
    ///
    /// # Errors
    /// A zero count, a rate that is not a positive number, an allowance out
    /// of range.
    pub(crate) fn check(&self) -> anyhow::Result<Money> {
        if self.concurrency == 0 || self.vendors == 0 || self.employees == 0 {
            bail!("--concurrency, --vendors and --employees must be at least 1");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            bail!("--rate must be a positive number of requests per second");
        }
        money::truncated(self.allowance, Currency::new(CURRENCY))
            .context("--allowance is out of range")
    }
}
