//! `tally load`: drives a running server over HTTP with realistic checkouts,
//! measures what it acknowledged and how fast, and then checks that the
//! server kept every acknowledged sale and that the money adds up.
//!
//! Three phases:
//!
//! 1. **Setup**: configures the tenant (PHP, `Asia/Manila`), registers the
//!    vendors, enrolls the employees with a semi-monthly top-up allowance
//!    and replenishes the current period, then reads every balance and the
//!    dashboard as a baseline (so a reused tenant still verifies).
//! 2. **Load**: `concurrency` tasks share one keep-alive HTTP/1.1 client
//!    and send checkouts (credit or cash, 1 to 4 lines from a small menu)
//!    and a few refunds of earlier acknowledged orders, each with its own
//!    `Idempotency-Key`, for `duration`; closed loop by default, open loop
//!    at `rate` requests/s in total when asked. A request that gets no
//!    definite answer (transport error, 408, 409, 503) is retried with the
//!    same key, so a retry can never record a sale twice.
//! 3. **Verification**: every acknowledged sale is read back as an order
//!    view at (at least) the highest position the load saw; every
//!    employee's balance equals the baseline minus what the generator's
//!    acknowledged credit sales spent plus what its refunds gave back; and
//!    the all-vendors dashboard moved by exactly the acknowledged gross,
//!    refunds and order count.
//!
//! The hot path is kept cheap because the generator shares the machine with
//! the server: request bodies are written into a reused buffer from a
//! precomputed menu, headers are prebuilt, and a response is only read for
//! its status and `Tally-Position` (its body is drained unread unless the
//! request was refused).

use crate::sim::Rng;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use command_api::auth::{Claims, LocalKey};
use command_api::http::POSITION_HEADER;
use command_api::http::extract::IDEMPOTENCY_KEY_HEADER;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use ledger_core::time::{Cadence, LocalDate, Period, TimeZone, Timestamp};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, StatusCode};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

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

/// The menu: item, unit price in centavos, and that price as the API wants it.
const MENU: [(&str, i64, &str); 10] = [
    ("ADOBO", 8500, "85.00"),
    ("SINIGANG", 9500, "95.00"),
    ("LUMPIA", 4500, "45.00"),
    ("PANCIT", 7000, "70.00"),
    ("RICE", 2000, "20.00"),
    ("SISIG", 11000, "110.00"),
    ("HALO-HALO", 6500, "65.00"),
    ("COFFEE", 3500, "35.00"),
    ("ICED-TEA", 2550, "25.50"),
    ("BOTTLED-WATER", 1575, "15.75"),
];

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
    /// Each employee's semi-monthly top-up allowance, in centavos.
    pub allowance_cents: i64,
    /// Seeds the request mix (order ids are fresh on every run).
    pub seed: u64,
    /// Read everything back at the end.
    pub verify: bool,
}

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
    pub max_position: u64,
    pub verification: Option<Verification>,
}

#[derive(Debug, Default)]
pub struct Verification {
    pub orders_checked: u64,
    /// Sales whose outcome was unknown and that the server turned out to hold.
    pub unknown_recorded: u64,
    pub unknown_absent: u64,
    pub employees_checked: u64,
    pub gross: Decimal,
    pub refunded: Decimal,
    pub elapsed: Duration,
    pub failures: Vec<String>,
    pub failures_total: u64,
}

fn fail(v: &mut Verification, what: String) {
    v.failures_total += 1;
    if v.failures.len() < FAILURES_SHOWN_MAX {
        v.failures.push(what);
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
}

/// The `q`-quantile of sorted micros, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
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

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        )?;
        let from = if self.rate.is_some() {
            "checkout (from schedule)"
        } else {
            "checkout"
        };
        latency_line(f, from, &self.checkout_latency)?;
        if self.rate.is_some() {
            latency_line(f, "checkout (service)", &self.checkout_service)?;
        }
        latency_line(f, "refund", &self.refund_latency)?;
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(
            f,
            "  rejected                 {}",
            if rejected.is_empty() {
                "none".to_owned()
            } else {
                rejected.join(", ")
            }
        )?;
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        writeln!(
            f,
            "  errors                   {}",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            }
        )?;
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
        writeln!(f, "  highest position seen    {}", self.max_position)?;
        match &self.verification {
            None => writeln!(f, "Verification: skipped"),
            Some(v) => {
                let verdict = if v.failures_total == 0 {
                    "PASSED"
                } else {
                    "FAILED"
                };
                writeln!(
                    f,
                    "Verification {verdict} in {:.2} s: {} orders read back ({} of unknown outcome recorded, {} absent), \
                     {} credit balances, dashboard gross {} and refunds {} {CURRENCY}",
                    v.elapsed.as_secs_f64(),
                    v.orders_checked,
                    v.unknown_recorded,
                    v.unknown_absent,
                    v.employees_checked,
                    v.gross,
                    v.refunded
                )?;
                for failure in &v.failures {
                    writeln!(f, "  FAIL {failure}")?;
                }
                if v.failures_total > v.failures.len() as u64 {
                    writeln!(
                        f,
                        "  ... and {} more",
                        v.failures_total - v.failures.len() as u64
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// A seed for when none is given: different on every run.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// Formats centavos as the API's decimal text.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Parses the API's decimal text into centavos.
fn cents(text: &str) -> Option<i64> {
    let value: Decimal = text.parse().ok()?;
    i64::try_from((value * Decimal::ONE_HUNDRED).normalize().mantissa()).ok()
}

fn decimal(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// One vendor's identity and the headers that speak for it.
struct VendorAuth {
    id: String,
    /// Checkouts: a cashier token of the vendor (or the admin's).
    cashier: HeaderValue,
    /// Refunds: a vendor token of the vendor (or the admin's).
    refunds: HeaderValue,
}

/// What every worker shares.
struct Plan {
    base: String,
    admin: HeaderValue,
    vendors: Vec<VendorAuth>,
    employees: Vec<String>,
    /// Sales name their vendor (an admin token records them).
    name_vendor: bool,
    run: String,
    credit_percent: u8,
    refund_percent: u8,
    start: Instant,
    deadline: Instant,
    /// Time between one worker's requests when paced.
    interval: Option<Duration>,
    concurrency: usize,
}

impl Plan {
    fn order_id(&self, worker: u32, seq: u32) -> String {
        format!("O{}-{worker:x}-{seq:x}", self.run)
    }
}

/// A sale the generator sent, as it knows it.
#[derive(Debug, Clone, Copy)]
struct Sale {
    worker: u32,
    seq: u32,
    vendor: u16,
    /// Index into the employees, for a credit sale.
    employee: Option<u32>,
    gross: i64,
    /// Acknowledged refunds, in centavos.
    refunded: i64,
    /// A refund of this much got no definite answer.
    refund_unknown: i64,
}

#[derive(Default)]
struct WorkerResult {
    acked: Vec<Sale>,
    unknown: Vec<Sale>,
    checkouts_sent: u64,
    credit_acked: u64,
    refunds_sent: u64,
    refunds_acked: u64,
    rejected: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    retries: u64,
    checkout_latency: Vec<u32>,
    checkout_service: Vec<u32>,
    refund_latency: Vec<u32>,
    per_second: Vec<u64>,
    max_position: u64,
}

/// A request's answer, as far as the generator cares.
enum Answer {
    /// 2xx, with the position of the write.
    Acked(u64),
    /// A definite refusal, with its problem code.
    Refused(String),
    /// No definite answer: retry with the same key.
    Retry(String),
}

#[derive(Deserialize)]
struct ProblemCode {
    code: String,
}

/// Classifies a response by status; `body` is read only when refused.
fn answer(status: u16, position: u64, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Acked(position);
    }
    let code = serde_json::from_slice::<ProblemCode>(body)
        .map_or_else(|_| format!("http_{status}"), |p| p.code);
    match status {
        408 | 409 | 429 | 500..=599 => Answer::Retry(code),
        _ => Answer::Refused(code),
    }
}

/// Where the hot path connects: resolved once.
#[derive(Clone)]
struct Target {
    addr: std::net::SocketAddr,
    /// The `Host` header's value.
    host: String,
}

impl Target {
    async fn resolve(url: &reqwest::Url) -> anyhow::Result<Target> {
        if url.scheme() != "http" {
            bail!("{url}: the load generator speaks plain http only");
        }
        let host = url.host_str().context("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target {
            addr,
            host: format!("{host}:{port}"),
        })
    }
}

/// Why a request on a [`Conn`] got no response.
enum ConnError {
    Connect,
    Timeout,
    Transport,
}

impl ConnError {
    fn as_str(&self) -> &'static str {
        match self {
            ConnError::Connect => "connect",
            ConnError::Timeout => "timeout",
            ConnError::Transport => "transport",
        }
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
///
/// The hot path's client. A general client (reqwest, over hyper) hands each
/// request to a connection task through channels, builds a header map and
/// parses a URL per request: about 40 µs of CPU per checkout here, which on
/// two cores shared with the server caps what a run can measure. This one
/// writes the request with one `write_all` from reused buffers and reads
/// just the status line, `Content-Length`, `Tally-Position` and
/// `Connection`; a 2xx body is skipped unread.
struct Conn {
    target: Target,
    stream: Option<tokio::net::TcpStream>,
    out: Vec<u8>,
    input: Vec<u8>,
}

/// A response as the hot path sees it: status, position, and the body of a
/// non-2xx answer.
struct Response {
    status: u16,
    position: u64,
    body: Vec<u8>,
}

/// Most bytes of response head the client accepts.
const RESPONSE_HEAD_MAX: usize = 16 * 1024;

impl Conn {
    fn new(target: Target) -> Conn {
        Conn {
            target,
            stream: None,
            out: Vec::with_capacity(2048),
            input: Vec::with_capacity(4096),
        }
    }

    async fn post(
        &mut self,
        path: &str,
        auth: &HeaderValue,
        key: &str,
        body: &[u8],
    ) -> Result<Response, ConnError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, auth, key, body)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(ConnError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        auth: &HeaderValue,
        key: &str,
        body: &[u8],
    ) -> Result<Response, ConnError> {
        if self.stream.is_none() {
            let stream = tokio::net::TcpStream::connect(self.target.addr)
                .await
                .map_err(|_| ConnError::Connect)?;
            stream.set_nodelay(true).map_err(|_| ConnError::Connect)?;
            self.stream = Some(stream);
            self.input.clear();
        }
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.target.host.as_bytes());
        out.extend_from_slice(b"\r\nAuthorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: application/json\r\nIdempotency-Key: ");
        out.extend_from_slice(key.as_bytes());
        let _ = write!(Adapter(out), "\r\nContent-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
        let stream = self.stream.as_mut().expect("connected above");
        write_all(stream, &self.out)
            .await
            .map_err(|_| ConnError::Transport)?;

        // The head: up to the blank line.
        let head_end = loop {
            if let Some(i) = find(&self.input, b"\r\n\r\n") {
                break i + 4;
            }
            if self.input.len() > RESPONSE_HEAD_MAX {
                return Err(ConnError::Transport);
            }
            if read_more(stream, &mut self.input)
                .await
                .map_err(|_| ConnError::Transport)?
                == 0
            {
                return Err(ConnError::Transport);
            }
        };
        let head =
            std::str::from_utf8(&self.input[..head_end]).map_err(|_| ConnError::Transport)?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or(ConnError::Transport)?;
        let (mut length, mut position, mut close) = (None, 0, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case(POSITION_HEADER) {
                position = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Every answer of this API has a length; anything else is
                // read to the end of the connection.
                close = true;
            }
        }
        let body = match length {
            Some(n) => {
                while self.input.len() < head_end + n {
                    if read_more(stream, &mut self.input)
                        .await
                        .map_err(|_| ConnError::Transport)?
                        == 0
                    {
                        return Err(ConnError::Transport);
                    }
                }
                let body = if (200..300).contains(&status) {
                    Vec::new()
                } else {
                    self.input[head_end..head_end + n].to_vec()
                };
                self.input.drain(..head_end + n);
                body
            }
            None => {
                close = true;
                while read_more(stream, &mut self.input)
                    .await
                    .map_err(|_| ConnError::Transport)?
                    > 0
                {}
                self.input.split_off(head_end)
            }
        };
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            position,
            body,
        })
    }
}

async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends what the socket has to `into`; 0 at the end of the stream.
async fn read_more(stream: &tokio::net::TcpStream, into: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                into.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Adapter<'a>(&'a mut Vec<u8>);

impl fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn micros_since(at: Instant) -> u32 {
    u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX)
}

struct Worker {
    id: u32,
    plan: Arc<Plan>,
    conn: Conn,
    rng: Rng,
    seq: u32,
    body: String,
    out: WorkerResult,
}

impl Worker {
    async fn run(mut self) -> WorkerResult {
        let plan = self.plan.clone();
        // Paced workers start staggered across one interval.
        let mut next = plan
            .interval
            .map(|i| plan.start + i.mul_f64(f64::from(self.id) / plan.concurrency as f64));
        loop {
            let now = Instant::now();
            if now >= plan.deadline {
                break;
            }
            // Where a request's latency counts from. A worker behind its
            // schedule counts from the scheduled time, so that waiting for
            // a slow server is not hidden (coordinated omission); one on
            // time counts from when its timer fired, so that the timer's
            // millisecond granularity is not charged to the server.
            let scheduled = match (&mut next, plan.interval) {
                (Some(at), Some(interval)) => {
                    if *at >= plan.deadline {
                        break;
                    }
                    let scheduled = *at;
                    *at += interval;
                    if scheduled > now {
                        tokio::time::sleep_until(scheduled.into()).await;
                        Instant::now()
                    } else {
                        scheduled
                    }
                }
                _ => now,
            };
            if !self.out.acked.is_empty() && self.rng.chance(u64::from(plan.refund_percent)) {
                let index = self.rng.below(self.out.acked.len() as u64) as usize;
                let sale = self.out.acked[index];
                if sale.refunded == 0 && sale.refund_unknown == 0 {
                    self.refund(index, scheduled).await;
                    continue;
                }
            }
            self.checkout(scheduled).await;
        }
        self.out
    }

    /// Sends one request until it gets a definite answer or runs out of attempts.
    async fn send(&mut self, path: &str, auth: &HeaderValue, key: &str) -> Result<Answer, String> {
        let mut why = String::new();
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                self.out.retries += 1;
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
            }
            let answer = match self.conn.post(path, auth, key, self.body.as_bytes()).await {
                Ok(r) => answer(r.status, r.position, &r.body),
                Err(e) => Answer::Retry(e.as_str().to_owned()),
            };
            match answer {
                Answer::Retry(reason) => why = reason,
                definite => return Ok(definite),
            }
        }
        Err(why)
    }

    async fn checkout(&mut self, scheduled: Instant) {
        let plan = self.plan.clone();
        self.seq += 1;
        let seq = self.seq;
        let vendor = self.rng.below(plan.vendors.len() as u64) as u16;
        let employee = self
            .rng
            .chance(u64::from(plan.credit_percent))
            .then(|| self.rng.below(plan.employees.len() as u64) as u32);
        let order_id = plan.order_id(self.id, seq);
        let body = &mut self.body;
        body.clear();
        let _ = write!(body, r#"{{"order_id":"{order_id}","#);
        if plan.name_vendor {
            let _ = write!(
                body,
                r#""vendor_id":"{}","#,
                plan.vendors[vendor as usize].id
            );
        }
        body.push_str(r#""lines":["#);
        let mut gross = 0;
        for line in 0..=self.rng.below(4) {
            let (item, price, text) = MENU[self.rng.below(MENU.len() as u64) as usize];
            let quantity = 1 + self.rng.below(3) as i64;
            gross += price * quantity;
            if line > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"item":"{item}","quantity":{quantity},"unit_price":"{text}"}}"#
            );
        }
        match employee {
            Some(e) => {
                let _ = write!(
                    body,
                    r#"],"payment":{{"method":"credit","employee_id":"{}"}}}}"#,
                    plan.employees[e as usize]
                );
            }
            None => body.push_str(r#"],"payment":{"method":"cash"}}"#),
        }
        let sent = Instant::now();
        self.out.checkouts_sent += 1;
        let auth = &plan.vendors[vendor as usize].cashier;
        let outcome = self.send("/v1/sales", auth, &order_id).await;
        self.out.checkout_latency.push(micros_since(scheduled));
        if plan.interval.is_some() {
            self.out.checkout_service.push(micros_since(sent));
        }
        let sale = Sale {
            worker: self.id,
            seq,
            vendor,
            employee,
            gross,
            refunded: 0,
            refund_unknown: 0,
        };
        match outcome {
            Ok(Answer::Acked(position)) => {
                self.out.max_position = self.out.max_position.max(position);
                self.out.credit_acked += u64::from(employee.is_some());
                self.out.acked.push(sale);
                let second = plan.start.elapsed().as_secs() as usize;
                if self.out.per_second.len() <= second {
                    self.out.per_second.resize(second + 1, 0);
                }
                self.out.per_second[second] += 1;
            }
            Ok(Answer::Refused(code)) => *self.out.rejected.entry(code).or_default() += 1,
            Ok(Answer::Retry(_)) => unreachable!("send retries these"),
            Err(why) => {
                *self.out.errors.entry(why).or_default() += 1;
                self.out.unknown.push(sale);
            }
        }
    }

    async fn refund(&mut self, index: usize, scheduled: Instant) {
        let plan = self.plan.clone();
        self.seq += 1;
        let sale = self.out.acked[index];
        let amount = if self.rng.chance(50) {
            sale.gross
        } else {
            (sale.gross / 2).max(1)
        };
        let order_id = plan.order_id(sale.worker, sale.seq);
        let refund_id = format!("R{}-{:x}-{:x}", plan.run, self.id, self.seq);
        self.body.clear();
        let _ = write!(
            self.body,
            r#"{{"refund_id":"{refund_id}","amount":"{}"}}"#,
            money(amount)
        );
        let path = format!("/v1/orders/{order_id}/refunds");
        let auth = &plan.vendors[sale.vendor as usize].refunds;
        self.out.refunds_sent += 1;
        let outcome = self.send(&path, auth, &refund_id).await;
        self.out.refund_latency.push(micros_since(scheduled));
        match outcome {
            Ok(Answer::Acked(position)) => {
                self.out.max_position = self.out.max_position.max(position);
                self.out.refunds_acked += 1;
                self.out.acked[index].refunded += amount;
            }
            Ok(Answer::Refused(code)) => *self.out.rejected.entry(code).or_default() += 1,
            Ok(Answer::Retry(_)) => unreachable!("send retries these"),
            Err(why) => {
                *self.out.errors.entry(why).or_default() += 1;
                self.out.acked[index].refund_unknown = amount;
            }
        }
    }
}

/// A small JSON client for setup and verification (not the hot path).
struct Api {
    client: Client,
    base: String,
}

struct Reply {
    status: StatusCode,
    position: u64,
    body: serde_json::Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    fn describe(&self) -> String {
        format!("{} {}", self.status.as_u16(), self.body)
    }
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &HeaderValue,
        key: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Reply> {
        let mut last = None;
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
            }
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .header(AUTHORIZATION, auth.clone());
            if let Some(key) = key {
                request = request.header(IDEMPOTENCY_KEY_HEADER, key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(anyhow::Error::new(e).context(format!("{method} {path}")));
                    continue;
                }
            };
            let status = response.status();
            let position = response
                .headers()
                .get(POSITION_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let bytes = response.bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let reply = Reply {
                status,
                position,
                body,
            };
            let retry = matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT)
                || status.is_server_error();
            if !retry {
                return Ok(reply);
            }
            last = Some(anyhow::anyhow!("{method} {path}: {}", reply.describe()));
        }
        Err(last.expect("at least one attempt"))
    }

    async fn get(&self, path: &str, auth: &HeaderValue) -> anyhow::Result<Reply> {
        self.call(reqwest::Method::GET, path, auth, None, None)
            .await
    }
}

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not header text")
}

fn client(concurrency: usize) -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency.max(VERIFY_CONCURRENCY_MAX))
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// Runs `each` over `items` with at most `width` at once; results in any order.
/// POSTs each `(key, body)` to `path`, a few at a time; `exists` (the code
/// for "already there", from an earlier run on the same tenant) is fine.
async fn create_each(
    api: &Arc<Api>,
    admin: &HeaderValue,
    path: &'static str,
    exists: &'static str,
    items: Vec<(String, serde_json::Value)>,
) -> anyhow::Result<()> {
    let admin = admin.clone();
    let api = api.clone();
    let results = bounded(
        items,
        VERIFY_CONCURRENCY_MAX,
        move |(key, body): (String, serde_json::Value)| {
            let (api, admin) = (api.clone(), admin.clone());
            async move {
                let reply = api
                    .call(reqwest::Method::POST, path, &admin, Some(&key), Some(&body))
                    .await?;
                if !(reply.status.is_success() || reply.code() == exists) {
                    bail!("POST {path} ({key}): {}", reply.describe());
                }
                Ok(())
            }
        },
    )
    .await;
    results.into_iter().collect()
}

async fn bounded<T, R, F, Fut>(items: Vec<T>, width: usize, each: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let width = width.max(1);
    let mut lanes: Vec<Vec<T>> = (0..width).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        lanes[i % width].push(item);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
        let each = each.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(lane.len());
            for item in lane {
                out.push(each(item).await);
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(lane) = tasks.join_next().await {
        all.extend(lane.expect("a verification task panicked"));
    }
    all
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    Timestamp::from_micros(since.as_micros() as i64)
}

fn today(zone: TimeZone) -> LocalDate {
    now().local_date(zone)
}

/// The all-vendors dashboard totals that the load moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    gross: i64,
    refunded: i64,
    orders: u64,
}

async fn dashboard_totals(
    api: &Api,
    admin: &HeaderValue,
    from: LocalDate,
    to: LocalDate,
    min_position: u64,
) -> anyhow::Result<Totals> {
    let path =
        format!("/v1/dashboard?from={from}&to={to}&granularity=day&min_position={min_position}");
    let reply = api.get(&path, admin).await?;
    if !reply.status.is_success() {
        bail!("GET {path}: {}", reply.describe());
    }
    let totals = &reply.body["totals"];
    let amount = |field: &str| {
        totals[field]
            .as_str()
            .and_then(cents)
            .with_context(|| format!("dashboard totals.{field} in {}", reply.body))
    };
    Ok(Totals {
        gross: amount("gross")?,
        refunded: amount("refunded_gross")?,
        orders: totals["orders"].as_u64().unwrap_or(0),
    })
}

async fn balance(
    api: &Api,
    admin: &HeaderValue,
    employee: &str,
    min_position: u64,
) -> anyhow::Result<i64> {
    let path = format!("/v1/employees/{employee}/credit?min_position={min_position}");
    let reply = api.get(&path, admin).await?;
    if !reply.status.is_success() {
        bail!("GET {path}: {}", reply.describe());
    }
    reply.body["balance"]["amount"]
        .as_str()
        .and_then(cents)
        .with_context(|| format!("GET {path}: no balance in {}", reply.body))
}

/// What setup leaves for the load and the verification.
struct Setup {
    tenant: String,
    admin: HeaderValue,
    vendors: Vec<VendorAuth>,
    name_vendor: bool,
    employees: Vec<String>,
    baseline: Baseline,
}

async fn setup(config: &LoadConfig, api: &Arc<Api>, run: &str) -> anyhow::Result<Setup> {
    let health = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {}", api.base))?;
    if !health.status().is_success() {
        bail!("{}/healthz answered {}", api.base, health.status());
    }
    let vendor_ids: Vec<String> = (1..=config.vendors).map(|v| format!("LV{v:02}")).collect();
    let employees: Vec<String> = (1..=config.employees)
        .map(|e| format!("LE{e:05}"))
        .collect();
    let (tenant, admin, vendors, name_vendor) = match &config.credentials {
        Credentials::Token(token) => {
            let admin = bearer(token)?;
            let vendors = vendor_ids
                .iter()
                .map(|id| VendorAuth {
                    id: id.clone(),
                    cashier: admin.clone(),
                    refunds: admin.clone(),
                })
                .collect();
            ("(from the token)".to_owned(), admin, vendors, true)
        }
        Credentials::Key { key, tenant } => {
            let mint = |role: Role, user: &str, vendor: Option<&str>| {
                let claims = Claims::new(
                    *tenant,
                    UserId::new(user),
                    &[role],
                    vendor.map(VendorId::new),
                    None::<EmployeeId>,
                    TOKEN_TTL,
                );
                bearer(&key.mint(&claims))
            };
            let admin = mint(Role::Admin, "load-admin", None)?;
            let mut vendors = Vec::new();
            for id in &vendor_ids {
                vendors.push(VendorAuth {
                    id: id.clone(),
                    cashier: mint(Role::Cashier, &format!("load-cashier-{id}"), Some(id))?,
                    refunds: mint(Role::Vendor, &format!("load-vendor-{id}"), Some(id))?,
                });
            }
            (tenant.as_str().to_owned(), admin, vendors, false)
        }
    };

    let reply = api
        .call(
            reqwest::Method::PUT,
            "/v1/tenant",
            &admin,
            Some(&format!("{run}-tenant")),
            Some(&json!({ "currency": CURRENCY, "time_zone": TIME_ZONE })),
        )
        .await?;
    if reply.status == StatusCode::UNAUTHORIZED {
        bail!(
            "the server refused the admin token ({}): with --data, name the server's own data directory",
            reply.describe()
        );
    }
    if !reply.status.is_success() {
        bail!("configuring the tenant: {}", reply.describe());
    }

    let vendors_to_register = vendor_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let body = json!({
                "vendor_id": id,
                "name": format!("Load vendor {id}"),
                "commission_rate": 500 + 100 * (i % 10),
            });
            (format!("setup-vendor-{id}"), body)
        })
        .collect();
    create_each(
        api,
        &admin,
        "/v1/vendors",
        "vendor_exists",
        vendors_to_register,
    )
    .await?;

    let allowance = money(config.allowance_cents);
    let employees_to_enroll = employees
        .iter()
        .map(|id| {
            let body = json!({
                "employee_id": id,
                "name": format!("Load employee {id}"),
                "policy": {"allowance": allowance, "cadence": "semi_monthly", "mode": "top_up"},
            });
            (format!("setup-employee-{id}-{allowance}"), body)
        })
        .collect();
    create_each(
        api,
        &admin,
        "/v1/employees",
        "credit_account_exists",
        employees_to_enroll,
    )
    .await?;

    let zone = TimeZone::new(TIME_ZONE);
    let period = Period::containing(now(), zone, Cadence::SemiMonthly);
    let reply = api
        .call(
            reqwest::Method::POST,
            "/v1/credit/replenishments",
            &admin,
            Some(&format!("{run}-replenish-{period}")),
            Some(&json!({ "period": period.to_string() })),
        )
        .await?;
    if !reply.status.is_success() {
        bail!("replenishing {period}: {}", reply.describe());
    }
    let skipped = reply.body["skipped"].as_array().map_or(0, Vec::len);
    if skipped > 0 {
        bail!(
            "replenishing {period} skipped {skipped} employees: {}",
            reply.body
        );
    }
    let position = reply.position;

    let admin_ = admin.clone();
    let balances = bounded(
        employees.iter().cloned().enumerate().collect(),
        VERIFY_CONCURRENCY_MAX,
        {
            let api = api.clone();
            move |(i, id): (usize, String)| {
                let (api, admin) = (api.clone(), admin_.clone());
                async move { balance(&api, &admin, &id, position).await.map(|b| (i, b)) }
            }
        },
    )
    .await;
    let mut baseline_balances = vec![0; employees.len()];
    for result in balances {
        let (i, b) = result?;
        baseline_balances[i] = b;
    }
    let first_day = today(zone);
    let next_day = LocalDate::new(first_day.as_naive() + chrono::Duration::days(1));
    let baseline_totals = dashboard_totals(api, &admin, first_day, next_day, position).await?;
    println!(
        "Set up tenant {tenant}: {} vendors, {} employees with {allowance} {CURRENCY} each for {period}",
        vendors.len(),
        employees.len()
    );
    Ok(Setup {
        tenant,
        admin,
        vendors,
        name_vendor,
        employees,
        baseline: Baseline {
            balances: baseline_balances,
            totals: baseline_totals,
            first_day,
        },
    })
}

/// Sets up, loads, and verifies. The report says what happened; an error
/// means the run could not be carried out at all.
///
/// # Errors
/// An unreachable server, a refused token, a failed setup step.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    if config.concurrency == 0 || config.vendors == 0 || config.employees == 0 {
        bail!("--concurrency, --vendors and --employees must be at least 1");
    }
    if config.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of requests per second");
    }
    let base = config.url.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base).with_context(|| format!("{base:?} is not a URL"))?;
    let target = Target::resolve(&url).await?;
    // Fresh on every run, whatever the seed: a rerun on the same tenant
    // must not replay the last run's idempotency keys.
    let run = format!("{:08x}", fresh_seed() as u32);
    let client = client(config.concurrency)?;
    let api = Arc::new(Api {
        client: client.clone(),
        base: base.clone(),
    });
    let Setup {
        tenant,
        admin,
        vendors,
        name_vendor,
        employees,
        baseline,
    } = setup(&config, &api, &run).await?;

    let start = Instant::now() + Duration::from_millis(10);
    let plan = Arc::new(Plan {
        base,
        admin,
        vendors,
        employees,
        name_vendor,
        run: run.clone(),
        credit_percent: config.credit_percent.min(100),
        refund_percent: config.refund_percent.min(100),
        start,
        deadline: start + config.duration,
        interval: config
            .rate
            .map(|r| Duration::from_secs_f64(config.concurrency as f64 / r)),
        concurrency: config.concurrency,
    });
    println!(
        "Loading {} for {:.0} s with {} connections...",
        plan.base,
        config.duration.as_secs_f64(),
        config.concurrency
    );
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..config.concurrency as u32 {
        let worker = Worker {
            id,
            plan: plan.clone(),
            conn: Conn::new(target.clone()),
            rng: Rng(config.seed ^ (u64::from(id) + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
            seq: 0,
            body: String::with_capacity(512),
            out: WorkerResult::default(),
        };
        workers.spawn(worker.run());
    }
    let mut results = Vec::with_capacity(config.concurrency);
    while let Some(result) = workers.join_next().await {
        results.push(result.context("a load worker panicked")?);
    }
    let elapsed = start.elapsed();

    let mut report = LoadReport {
        tenant,
        run,
        concurrency: config.concurrency,
        rate: config.rate,
        elapsed,
        ..LoadReport::default()
    };
    let mut acked = Vec::new();
    let mut unknown = Vec::new();
    for r in results {
        report.checkouts_sent += r.checkouts_sent;
        report.checkouts_acked += r.acked.len() as u64;
        report.credit_acked += r.credit_acked;
        report.refunds_sent += r.refunds_sent;
        report.refunds_acked += r.refunds_acked;
        report.retries += r.retries;
        report.max_position = report.max_position.max(r.max_position);
        if report.per_second.len() < r.per_second.len() {
            report.per_second.resize(r.per_second.len(), 0);
        }
        for (total, n) in report.per_second.iter_mut().zip(&r.per_second) {
            *total += n;
        }
        for (code, n) in r.rejected {
            *report.rejected.entry(code).or_default() += n;
        }
        for (why, n) in r.errors {
            *report.errors.entry(why).or_default() += n;
        }
        report.checkout_latency.extend(r.checkout_latency);
        report.checkout_service.extend(r.checkout_service);
        report.refund_latency.extend(r.refund_latency);
        acked.extend(r.acked);
        unknown.extend(r.unknown);
    }
    report.checkout_latency.sort_unstable();
    report.checkout_service.sort_unstable();
    report.refund_latency.sort_unstable();
    if config.verify {
        let verification = verify(&api, &plan, &baseline, acked, unknown, report.max_position);
        report.verification = Some(verification.await?);
    }
    Ok(report)
}

/// The balances and dashboard totals before the load.
struct Baseline {
    balances: Vec<i64>,
    totals: Totals,
    first_day: LocalDate,
}

/// One order as the server shows it.
enum Seen {
    Present { refunded: i64 },
    Absent,
    Wrong(String),
}

async fn verify(
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    baseline: &Baseline,
    acked: Vec<Sale>,
    unknown: Vec<Sale>,
    max_position: u64,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    let mut v = Verification::default();
    println!(
        "Verifying {} acknowledged and {} unknown sales at position {max_position}...",
        acked.len(),
        unknown.len()
    );
    let items: Vec<(bool, Sale)> = acked
        .into_iter()
        .map(|s| (true, s))
        .chain(unknown.into_iter().map(|s| (false, s)))
        .collect();
    let seen = bounded(items, VERIFY_CONCURRENCY_MAX, {
        let (api, plan) = (api.clone(), plan.clone());
        move |(was_acked, sale): (bool, Sale)| {
            let (api, plan) = (api.clone(), plan.clone());
            async move {
                let order_id = plan.order_id(sale.worker, sale.seq);
                let path = format!("/v1/orders/{order_id}?min_position={max_position}");
                let seen = match api.get(&path, &plan.admin).await {
                    Err(e) => Seen::Wrong(format!("{e:#}")),
                    Ok(reply) if reply.status == StatusCode::NOT_FOUND => Seen::Absent,
                    Ok(reply) if !reply.status.is_success() => {
                        Seen::Wrong(format!("GET {path}: {}", reply.describe()))
                    }
                    Ok(reply) => order_matches(&reply.body, &plan, &sale),
                };
                (was_acked, sale, order_id, seen)
            }
        }
    })
    .await;

    let mut spent = vec![0i64; baseline.balances.len()];
    let mut totals = baseline.totals;
    for (was_acked, mut sale, order_id, seen) in seen {
        match seen {
            Seen::Wrong(why) => fail(&mut v, format!("order {order_id}: {why}")),
            Seen::Absent if was_acked => fail(
                &mut v,
                format!("order {order_id} was acknowledged (201) but the server does not have it"),
            ),
            Seen::Absent => v.unknown_absent += 1,
            Seen::Present { refunded } => {
                if !was_acked {
                    v.unknown_recorded += 1;
                }
                if refunded == sale.refunded + sale.refund_unknown {
                    sale.refunded = refunded;
                } else if refunded != sale.refunded {
                    fail(
                        &mut v,
                        format!(
                            "order {order_id}: refunded {} but the generator's refunds were acknowledged for {}",
                            money(refunded),
                            money(sale.refunded)
                        ),
                    );
                }
                if let Some(e) = sale.employee {
                    spent[e as usize] += sale.gross - sale.refunded;
                }
                totals.gross += sale.gross;
                totals.refunded += sale.refunded;
                totals.orders += 1;
                v.gross += decimal(sale.gross);
                v.refunded += decimal(sale.refunded);
            }
        }
        v.orders_checked += 1;
    }

    let balances = bounded(
        plan.employees.iter().cloned().enumerate().collect(),
        VERIFY_CONCURRENCY_MAX,
        {
            let (api, plan) = (api.clone(), plan.clone());
            move |(i, id): (usize, String)| {
                let (api, plan) = (api.clone(), plan.clone());
                async move {
                    (
                        i,
                        id.clone(),
                        balance(&api, &plan.admin, &id, max_position).await,
                    )
                }
            }
        },
    )
    .await;
    for (i, id, result) in balances {
        v.employees_checked += 1;
        match result {
            Err(e) => fail(&mut v, format!("employee {id}: {e:#}")),
            Ok(b) => {
                let expected = baseline.balances[i] - spent[i];
                if b < 0 {
                    fail(
                        &mut v,
                        format!("employee {id}: negative balance {}", money(b)),
                    );
                }
                if b != expected {
                    fail(
                        &mut v,
                        format!(
                            "employee {id}: balance {} but the acknowledged load leaves {} ({} - {} net spent)",
                            money(b),
                            money(expected),
                            money(baseline.balances[i]),
                            money(spent[i])
                        ),
                    );
                }
            }
        }
    }

    let zone = TimeZone::new(TIME_ZONE);
    let last_day = today(zone)
        .as_naive()
        .max(baseline.first_day.as_naive() + chrono::Duration::days(1));
    let served = dashboard_totals(
        api,
        &plan.admin,
        baseline.first_day,
        LocalDate::new(last_day),
        max_position,
    )
    .await?;
    if served != totals {
        fail(
            &mut v,
            format!(
                "dashboard (all vendors, {}..{last_day}): gross {}, refunds {}, {} orders; \
                 the acknowledged load makes it gross {}, refunds {}, {} orders",
                baseline.first_day,
                money(served.gross),
                money(served.refunded),
                served.orders,
                money(totals.gross),
                money(totals.refunded),
                totals.orders
            ),
        );
    }
    v.elapsed = started.elapsed();
    Ok(v)
}

fn order_matches(body: &serde_json::Value, plan: &Plan, sale: &Sale) -> Seen {
    let amount = |field: &str| body[field]["amount"].as_str().and_then(cents);
    let vendor = &plan.vendors[sale.vendor as usize].id;
    if body["vendor_id"].as_str() != Some(vendor.as_str()) {
        return Seen::Wrong(format!("vendor {} instead of {vendor}", body["vendor_id"]));
    }
    if amount("gross") != Some(sale.gross) {
        return Seen::Wrong(format!(
            "gross {} instead of {}",
            body["gross"],
            money(sale.gross)
        ));
    }
    let method = body["payment"]["method"].as_str();
    let payer = body["payment"]["employee_id"].as_str();
    let expected = sale.employee.map(|e| plan.employees[e as usize].as_str());
    match (method, expected) {
        (Some("credit"), Some(e)) if payer == Some(e) => {}
        (Some("cash"), None) => {}
        _ => {
            return Seen::Wrong(format!(
                "payment {} instead of {}",
                body["payment"],
                expected.map_or("cash".to_owned(), |e| format!("credit by {e}"))
            ));
        }
    }
    match amount("refunded") {
        Some(refunded) => Seen::Present { refunded },
        None => Seen::Wrong(format!("no refunded amount in {body}")),
    }
}
