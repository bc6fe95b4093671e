//! A small JSON client for setup and verification (not the hot path), and
//! the reads both make: credit balances and dashboard totals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use command_api::http::extract::IDEMPOTENCY_KEY_HEADER;
use ledger_core::time::LocalDate;
use ledger_core::{Currency, Money};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, Method, StatusCode};

use crate::{ATTEMPTS_MAX, REQUEST_TIMEOUT, RETRY_PAUSE, VERIFY_CONCURRENCY_MAX, money};

pub struct Api {
    pub client: Client,
    pub base: String,
}

/// An answer: status and the JSON body (`Null`
/// when it is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Reply {
    /// The problem code of a refusal, `""` when there is none.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.status.as_u16(), self.body)
    }
}

impl Api {
    /// A client for `base` that keeps enough idle connections for
    /// `concurrency` requests.
    pub fn new(base: String, concurrency: usize) -> anyhow::Result<Api> {
        let client = Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(concurrency.max(VERIFY_CONCURRENCY_MAX))
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Api { client, base })
    }

    /// Sends a request until it gets a definite answer (not a transport
    /// error, 408, 409 or 5xx), at most [`ATTEMPTS_MAX`] times.
    pub async fn call(
        &self,
        method: Method,
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
            let reply = Reply::read(response).await;
            let retry = matches!(
                reply.status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT
            ) || reply.status.is_server_error();
            if !retry {
                return Ok(reply);
            }
            last = Some(anyhow::anyhow!("{method} {path}: {}", reply.describe()));
        }
        Err(last.expect("at least one attempt"))
    }

    pub async fn get(&self, path: &str, auth: &HeaderValue) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, auth, None, None).await
    }
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply { status, body }
    }
}

/// Longest the load waits for the server's read models to catch up.
const CATCH_UP_MAX: Duration = Duration::from_secs(120);

/// Waits until the server's `/healthz` reports its read models caught up
/// with its log (`projection_lag_records` 0): then they reflect every write
/// committed before the call.
pub async fn caught_up(api: &Api) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + CATCH_UP_MAX;
    loop {
        let url = format!("{}/healthz", api.base);
        let response = api.client.get(&url).send().await;
        let reply = Reply::read(response.with_context(|| format!("GET {url}"))?).await;
        let lag = reply.body["projection_lag_records"].as_u64();
        if lag == Some(0) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the server's read models did not catch up with its log within {} s (/healthz: {})",
                CATCH_UP_MAX.as_secs(),
                reply.body
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not header text")
}

/// POSTs each `(key, body)` to `path`, a few at a time; `exists` (the code
/// for "already there", from an earlier run on the same tenant) is fine.
pub async fn create_each(
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
                    .call(Method::POST, path, &admin, Some(&key), Some(&body))
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

/// Runs `each` over `items` with at most `width` at once; results in any order.
pub async fn bounded<T, R, F, Fut>(items: Vec<T>, width: usize, each: F) -> Vec<R>
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

/// The all-vendors dashboard totals that the load moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub gross: Money,
    pub refunded: Money,
    pub orders: u64,
}

/// The all-vendors dashboard totals over `from..=to`, by day.
pub async fn dashboard_totals(
    api: &Api,
    admin: &HeaderValue,
    currency: Currency,
    (from, to): (LocalDate, LocalDate),
) -> anyhow::Result<Totals> {
    let path = format!("/v1/dashboard?from={from}&to={to}&granularity=day");
    let reply = api.get(&path, admin).await?;
    if !reply.status.is_success() {
        bail!("GET {path}: {}", reply.describe());
    }
    let totals = &reply.body["totals"];
    let amount = |field: &str| {
        totals[field]
            .as_str()
            .and_then(|text| money::parse(text, currency))
            .with_context(|| format!("dashboard totals.{field} in {}", reply.body))
    };
    Ok(Totals {
        gross: amount("gross")?,
        refunded: amount("refunded_gross")?,
        orders: totals["orders"].as_u64().unwrap_or(0),
    })
}

/// An employee's credit balance.
pub async fn balance(
    api: &Api,
    admin: &HeaderValue,
    currency: Currency,
    employee: &str,
) -> anyhow::Result<Money> {
    let path = format!("/v1/employees/{employee}/credit");
    let reply = api.get(&path, admin).await?;
    if !reply.status.is_success() {
        bail!("GET {path}: {}", reply.describe());
    }
    reply.body["balance"]["amount"]
        .as_str()
        .and_then(|text| money::parse(text, currency))
        .with_context(|| format!("GET {path}: no balance in {}", reply.body))
}
