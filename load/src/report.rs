//! What a run did and what its verification found, the latency
//! percentiles, and the report as the CLI prints it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ledger_core::{Currency, Money};

use crate::FAILURES_SHOWN_MAX;

/// What a run did and what its verification found.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub tenant: String,
    pub run: String,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub elapsed: Duration,
    pub checkouts_sent: u64,
    pub checkouts_acked: u64,
    pub credit_acked: u64,
    pub refunds_sent: u64,
    pub refunds_acked: u64,
    /// Refusals by problem code (e.g. `insufficient_credit`).
    pub rejected: BTreeMap<String, u64>,
    /// Requests that got no definite answer after every attempt, by cause.
    pub errors: BTreeMap<String, u64>,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Checkout latency in microseconds, sorted. Paced, it counts from the
    /// scheduled send time when the worker was behind schedule (so a slow
    /// server cannot hide queueing), else from the send.
    pub checkout_latency: Vec<u32>,
    /// Checkout latency from the actual send, sorted (paced runs only).
    pub checkout_service: Vec<u32>,
    pub refund_latency: Vec<u32>,
    /// Acknowledged checkouts in each second of the run: a stall shows here.
    pub per_second: Vec<u64>,
    pub verification: Option<Verification>,
}

#[derive(Debug)]
pub struct Verification {
    pub orders_checked: u64,
    /// Sales whose outcome was unknown and that the server turned out to hold.
    pub unknown_recorded: u64,
    pub unknown_absent: u64,
    pub employees_checked: u64,
    /// The gross and refunds of the sales read back, in the tenant's currency.
    pub gross: Money,
    pub refunded: Money,
    pub elapsed: Duration,
    pub failures: Vec<String>,
    pub failures_total: u64,
}

impl Verification {
    /// Nothing checked yet, amounts in `currency`.
    pub fn new(currency: Currency) -> Verification {
        Verification {
            orders_checked: 0,
            unknown_recorded: 0,
            unknown_absent: 0,
            employees_checked: 0,
            gross: Money::zero(currency),
            refunded: Money::zero(currency),
            elapsed: Duration::ZERO,
            failures: Vec::new(),
            failures_total: 0,
        }
    }

    /// Counts a failed check; the first [`FAILURES_SHOWN_MAX`] are kept.
    pub fn fail(&mut self, what: String) {
        self.failures_total += 1;
        if self.failures.len() < FAILURES_SHOWN_MAX {
            self.failures.push(what);
        }
    }
}

impl LoadReport {
    /// Whether the verification ran and found nothing wrong.
    pub fn passed(&self) -> bool {
        self.verification
            .as_ref()
            .is_none_or(|v| v.failures_total == 0)
    }

    /// Acknowledged checkouts per second.
    pub fn throughput(&self) -> f64 {
        self.checkouts_acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn requests(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let pacing = match self.rate {
            Some(r) => format!("open loop at {r:.0} requests/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "Load on tenant {} (run {}): {} connections, {pacing}, {:.2} s",
            self.tenant, self.run, self.concurrency, secs
        )?;
        writeln!(
            f,
            "  requests                 {} ({} checkouts, {} refunds), {:.0}/s; {} retries",
            self.checkouts_sent + self.refunds_sent,
            self.checkouts_sent,
            self.refunds_sent,
            (self.checkouts_sent + self.refunds_sent) as f64 / secs,
            self.retries
        )?;
        writeln!(
            f,
            "  acknowledged             {} checkouts ({} by credit), {} refunds",
            self.checkouts_acked, self.credit_acked, self.refunds_acked
        )?;
        writeln!(
            f,
            "  throughput               {:.0} acknowledged checkouts/s ({:.0} by credit)",
            self.throughput(),
            self.credit_acked as f64 / secs
        )
    }

    fn latencies(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = if self.rate.is_some() {
            "checkout (from schedule)"
        } else {
            "checkout"
        };
        latency_line(f, from, &self.checkout_latency)?;
        if self.rate.is_some() {
            latency_line(f, "checkout (service)", &self.checkout_service)?;
        }
        latency_line(f, "refund", &self.refund_latency)
    }

    fn outcomes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  rejected                 {}", counts(&self.rejected))?;
        writeln!(f, "  errors                   {}", counts(&self.errors))?;
        // Whole seconds only: the last one is cut short by the deadline.
        let mut seconds: Vec<u64> = self
            .per_second
            .iter()
            .copied()
            .take(self.elapsed.as_secs() as usize)
            .collect();
        seconds.sort_unstable();
        if let (Some(min), Some(max)) = (seconds.first(), seconds.last()) {
            writeln!(
                f,
                "  per second               min {min}, median {}, max {max} acknowledged checkouts",
                seconds[seconds.len() / 2]
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.requests(f)?;
        self.latencies(f)?;
        self.outcomes(f)?;
        match &self.verification {
            None => writeln!(f, "Verification: skipped"),
            Some(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.failures_total == 0 {
            "PASSED"
        } else {
            "FAILED"
        };
        writeln!(
            f,
            "Verification {verdict} in {:.2} s: {} orders read back ({} of unknown outcome recorded, {} absent), \
             {} credit balances, dashboard gross {} and refunds {} {}",
            self.elapsed.as_secs_f64(),
            self.orders_checked,
            self.unknown_recorded,
            self.unknown_absent,
            self.employees_checked,
            self.gross.amount(),
            self.refunded.amount(),
            self.gross.currency()
        )?;
        for failure in &self.failures {
            writeln!(f, "  FAIL {failure}")?;
        }
        if self.failures_total > self.failures.len() as u64 {
            writeln!(
                f,
                "  ... and {} more",
                self.failures_total - self.failures.len() as u64
            )?;
        }
        Ok(())
    }
}

/// `code n, code n`, or `none`.
fn counts(by: &BTreeMap<String, u64>) -> String {
    if by.is_empty() {
        return "none".to_owned();
    }
    let each: Vec<String> = by.iter().map(|(what, n)| format!("{what} {n}")).collect();
    each.join(", ")
}

/// The `q`-quantile of sorted micros, in milliseconds (nearest rank; 0 when
/// there are none).
pub fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1e3
}

fn latency_line(f: &mut fmt::Formatter<'_>, label: &str, sorted: &[u32]) -> fmt::Result {
    writeln!(
        f,
        "  {label:<24} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  ({} samples)",
        quantile_ms(sorted, 0.50),
        quantile_ms(sorted, 0.95),
        quantile_ms(sorted, 0.99),
        quantile_ms(sorted, 1.0),
        sorted.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
        assert_eq!(quantile_ms(&[1500], 0.0), 1.5);
        assert_eq!(quantile_ms(&[1500], 0.99), 1.5);
        let hundred: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(quantile_ms(&hundred, 0.50), 50.0);
        assert_eq!(quantile_ms(&hundred, 0.95), 95.0);
        assert_eq!(quantile_ms(&hundred, 0.99), 99.0);
        assert_eq!(quantile_ms(&hundred, 1.0), 100.0);
        assert_eq!(quantile_ms(&[10, 20, 30], 0.5), 0.02);
    }

    fn report() -> LoadReport {
        LoadReport {
            tenant: "load-1".to_owned(),
            run: "abcd".to_owned(),
            concurrency: 8,
            rate: None,
            elapsed: Duration::from_millis(2_500),
            checkouts_sent: 100,
            checkouts_acked: 90,
            credit_acked: 60,
            refunds_sent: 10,
            refunds_acked: 9,
            rejected: BTreeMap::from([("insufficient_credit".to_owned(), 10)]),
            retries: 2,
            checkout_latency: vec![1_000, 2_000, 3_000, 4_000],
            refund_latency: vec![5_000],
            per_second: vec![40, 45, 5],
            ..LoadReport::default()
        }
    }

    #[test]
    fn a_closed_loop_report_renders_as_the_cli_prints_it() {
        let text = report().to_string();
        let expected = "\
Load on tenant load-1 (run abcd): 8 connections, closed loop, 2.50 s
  requests                 110 (100 checkouts, 10 refunds), 44/s; 2 retries
  acknowledged             90 checkouts (60 by credit), 9 refunds
  throughput               36 acknowledged checkouts/s (24 by credit)
  checkout                 p50    2.00 ms  p95    4.00 ms  p99    4.00 ms  max     4.00 ms  (4 samples)
  refund                   p50    5.00 ms  p95    5.00 ms  p99    5.00 ms  max     5.00 ms  (1 samples)
  rejected                 insufficient_credit 10
  errors                   none
  per second               min 40, median 45, max 45 acknowledged checkouts
Verification: skipped
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_paced_report_shows_both_latencies() {
        let mut report = report();
        report.rate = Some(200.0);
        report.checkout_service = vec![500];
        report.errors = BTreeMap::from([("timeout".to_owned(), 1), ("connect".to_owned(), 2)]);
        let text = report.to_string();
        assert!(!text.contains("closed loop"), "{text}");
        assert!(
            text.starts_with("Load on tenant load-1 (run abcd): 8 connections, open loop at 200 requests/s, 2.50 s\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  checkout (from schedule) p50    2.00 ms"),
            "{text}"
        );
        assert!(
            text.contains("\n  checkout (service)       p50    0.50 ms"),
            "{text}"
        );
        assert!(
            text.contains("\n  errors                   connect 2, timeout 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_verification_shows_its_verdict_amounts_and_failures() {
        let php = Currency::new("PHP");
        let mut v = Verification::new(php);
        v.orders_checked = 3;
        v.employees_checked = 2;
        v.gross = Money::parse("170.5".parse().unwrap(), php).unwrap();
        v.elapsed = Duration::from_millis(250);
        let mut report = report();
        report.verification = Some(v);
        assert!(report.passed());
        assert!(report.to_string().ends_with(
            "Verification PASSED in 0.25 s: 3 orders read back (0 of unknown outcome recorded, 0 absent), \
             2 credit balances, dashboard gross 170.50 and refunds 0.00 PHP\n"
        ));

        let mut v = Verification::new(Currency::new("JPY"));
        for n in 0..FAILURES_SHOWN_MAX + 2 {
            v.fail(format!("order {n}: missing"));
        }
        report.verification = Some(v);
        assert!(!report.passed());
        let text = report.to_string();
        assert!(text.contains("Verification FAILED in 0.00 s"), "{text}");
        assert!(
            text.contains("dashboard gross 0 and refunds 0 JPY\n  FAIL order 0: missing\n"),
            "{text}"
        );
        assert!(!text.contains("FAIL order 20:"), "{text}");
        assert!(
            text.ends_with("  FAIL order 19: missing\n  ... and 2 more\n"),
            "{text}"
        );
    }
}
