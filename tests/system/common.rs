//! What the system tests share: a small HTTP client, tenant setup, a
//! deterministic random source, and reading, folding and auditing a log.

use std::collections::HashMap;
use std::time::Duration;

use ledger_core::codec;
use ledger_core::envelope::Envelope;
use ledger_core::event::{Event, Payment};
use ledger_core::projection::{Outcome, ReadModels};
use ledger_core::time::{Cadence, Period, TimeZone, Timestamp};
use ledger_store::{CommitLog, Position, Record};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

pub const ZONE: &str = "Asia/Manila";

/// One answer: status, `Tally-Consistency-Token`, JSON body (or `Null`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub token: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

impl Http {
    pub fn new(base: String) -> Http {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client builds");
        Http { client, base }
    }

    /// Sends one request; a transport failure is an `Err`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Result<Reply> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let token = response
            .headers()
            .get("tally-consistency-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            token,
            body,
        })
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(reqwest::Method::GET, path, token, None, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A setup write that must succeed.
    pub async fn must(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: &str,
        body: Value,
    ) -> Reply {
        let reply = self
            .send(method.clone(), path, token, Some(key), Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            reply.status.is_success(),
            "{method} {path} {body}: {} {}",
            reply.status,
            reply.body
        );
        reply
    }

    /// The JSON of `/healthz`.
    pub async fn health(&self) -> reqwest::Result<Value> {
        self.client
            .get(format!("{}/healthz", self.base))
            .send()
            .await?
            .json()
            .await
    }
}

/// Configures the tenant (PHP, Manila), registers `vendor`, enrolls every
/// employee with a semi-monthly top-up `allowance`, and replenishes the
/// current period.
pub async fn set_up_tenant(
    http: &Http,
    admin: &str,
    vendor: &str,
    employees: &[String],
    allowance: &str,
) {
    use reqwest::Method;
    http.must(
        Method::PUT,
        "/v1/tenant",
        admin,
        "setup-tenant",
        json!({"currency": "PHP", "time_zone": ZONE}),
    )
    .await;
    http.must(
        Method::POST,
        "/v1/vendors",
        admin,
        "setup-vendor",
        json!({"vendor_id": vendor, "name": "System test canteen", "commission_rate": 1000}),
    )
    .await;
    for id in employees {
        let enrolled = http
            .must(
                Method::POST,
                "/v1/employees",
                admin,
                &format!("setup-{id}"),
                json!({
                    "employee_id": id,
                    "name": format!("Employee {id}"),
                    "policy": {"allowance": allowance, "cadence": "semi_monthly", "mode": "top_up"},
                }),
            )
            .await;
        // The replenishment lists the accounts the read models hold: each
        // enrollment is read back with its token first.
        let token = enrolled.token.expect("an enrollment names its writes");
        let read = http
            .get(
                &format!("/v1/employees/{id}/credit?consistency_token={token}"),
                admin,
            )
            .await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    }
    let period = Period::containing(now(), TimeZone::new(ZONE), Cadence::SemiMonthly);
    let reply = http
        .must(
            Method::POST,
            "/v1/credit/replenishments",
            admin,
            "setup-replenish",
            json!({"period": period.to_string()}),
        )
        .await;
    assert_eq!(
        reply.body["replenished"].as_array().map(Vec::len),
        Some(employees.len()),
        "every employee is replenished: {}",
        reply.body
    );
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    Timestamp::from_micros(since.as_micros() as i64)
}

/// A checkout body of one line paid by `employee`'s credit.
pub fn credit_sale(order_id: &str, quantity: u64, unit_price: &str, employee: &str) -> Value {
    json!({
        "order_id": order_id,
        "lines": [{"item": "MEAL", "quantity": quantity, "unit_price": unit_price}],
        "payment": {"method": "credit", "employee_id": employee},
    })
}

/// Every record of the log, in commit order.
pub async fn read_all(store: &impl CommitLog) -> Vec<Record> {
    ledger_store::read_log_all(store, Position::ZERO)
        .await
        .expect("the log reads")
        .into_iter()
        .map(|r| r.record)
        .collect()
}

pub fn decode_all(records: &[Record]) -> Vec<Envelope> {
    records
        .iter()
        .map(|r| {
            codec::decode(&r.bytes).unwrap_or_else(|e| {
                panic!("record {}@{} does not decode: {e}", r.stream, r.version)
            })
        })
        .collect()
}

/// The read models folded from scratch; every record must apply.
pub fn fold(envelopes: &[Envelope]) -> ReadModels {
    let mut models = ReadModels::default();
    for e in envelopes {
        assert_eq!(
            models.apply(e),
            Outcome::Applied,
            "{}@{} applies once, in order",
            e.stream(),
            e.version()
        );
    }
    models
}

/// Audits the whole log and fails with the findings.
pub fn assert_audit_clean(records: &[Record]) {
    let report = ledger_core::audit::audit(records.iter().map(|r| r.bytes.as_slice()));
    assert!(
        report.is_clean(),
        "the audit of {} events found {} problems: {:#?}",
        report.events,
        report.findings_total,
        report.findings
    );
    assert_eq!(report.events, records.len() as u64);
}

/// The money facts of a log: sales by order and credit spends.
#[derive(Default)]
pub struct LogFacts {
    /// Order id → (gross, the employee when paid by credit).
    pub sales: HashMap<String, (Decimal, Option<String>)>,
    /// Order id → every CreditSpent naming it: (employee, amount).
    pub spends: HashMap<String, Vec<(String, Decimal)>>,
}

pub fn facts(envelopes: &[Envelope]) -> LogFacts {
    let mut facts = LogFacts::default();
    for e in envelopes {
        match &e.event {
            Event::SaleRecorded(sale) => {
                let payer = match &sale.payment {
                    Payment::Credit { employee_id } => Some(employee_id.as_str().to_owned()),
                    _ => None,
                };
                let order = e.stream().id().as_str().to_owned();
                let previous = facts
                    .sales
                    .insert(order.clone(), (sale.gross.amount(), payer));
                assert!(previous.is_none(), "order {order} is recorded twice");
            }
            Event::CreditSpent(spent) => {
                let employee = e.stream().id().as_str().to_owned();
                facts
                    .spends
                    .entry(spent.order_id.as_str().to_owned())
                    .or_default()
                    .push((employee, spent.amount.amount()));
            }
            _ => {}
        }
    }
    facts
}

impl LogFacts {
    /// No two-stream append is half-present: every credit sale has exactly
    /// one matching CreditSpent and every CreditSpent has its sale.
    pub fn assert_credit_pairs_whole(&self) {
        for (order, (gross, payer)) in &self.sales {
            let spends = self.spends.get(order).map_or(&[][..], Vec::as_slice);
            match payer {
                Some(employee) => assert_eq!(
                    spends,
                    &[(employee.clone(), *gross)][..],
                    "credit sale {order} has exactly one CreditSpent of its gross by its payer"
                ),
                None => assert!(spends.is_empty(), "cash sale {order} spent credit"),
            }
        }
        for order in self.spends.keys() {
            assert!(
                self.sales.contains_key(order),
                "CreditSpent names order {order}, which has no SaleRecorded"
            );
        }
    }
}
