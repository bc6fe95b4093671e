//! One real server per test, on the store the test is given, a real HTTP
//! client, and the checks every test shares: the status, the problem
//! `code`, the headers every answer carries, and that a refused request
//! wrote nothing.
//!
//! A test is written once, as `async fn name(store: Backend)`, and listed
//! in its file's [`on_both_stores!`], which makes it a `sqlite::name` and a
//! `dynamodb::name` test.

use std::time::Duration;

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use command_api::auth::Claims;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, StreamId, StreamVersion, TenantId, UserId, VendorId};
use ledger_core::time::{Cadence, Period, TimeZone, Timestamp};
use ledger_store::dynamodb::DynamoConfig;
use ledger_store::{EventStore, IdempotencyKey, IdempotencyRecord};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tally::server::{Server, ServerConfig, StoreConfig};

/// The store a test's server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: `ledger.db` in the test's temporary directory.
    Sqlite,
    /// Tables of their own on the process's DynamoDB Local, which is
    /// installed and started on first use (and fails the test loudly when
    /// it cannot be).
    Dynamo,
}

impl Backend {
    /// The server's store configuration: for DynamoDB, the shared emulator
    /// and a table prefix no other server uses.
    pub async fn config(self) -> StoreConfig {
        match self {
            Backend::Sqlite => StoreConfig::Sqlite,
            Backend::Dynamo => {
                // Starting the emulator blocks (once per process).
                let endpoint = tokio::task::spawn_blocking(|| {
                    Emulator::shared(Kind::DynamoDb).endpoint().to_owned()
                })
                .await
                .expect("DynamoDB Local starts");
                StoreConfig::Dynamo(DynamoConfig {
                    endpoint: Some(endpoint),
                    table_prefix: unique_prefix("api"),
                })
            }
        }
    }
}

/// Makes each listed `async fn name(store: Backend)` of the calling module
/// two tests, `sqlite::name` and `dynamodb::name`, each on a multi-threaded
/// runtime of two workers (`name [4]` for another count).
macro_rules! on_both_stores {
    ($($name:ident $([$workers:tt])?),* $(,)?) => {
        mod sqlite {
            $($crate::harness::store_test!(Sqlite, $name $(, $workers)?);)*
        }
        mod dynamodb {
            $($crate::harness::store_test!(Dynamo, $name $(, $workers)?);)*
        }
    };
}
pub(crate) use on_both_stores;

/// One test of [`on_both_stores!`]: `super::$name` on `Backend::$backend`.
macro_rules! store_test {
    ($backend:ident, $name:ident) => {
        $crate::harness::store_test!($backend, $name, 2);
    };
    ($backend:ident, $name:ident, $workers:tt) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
        async fn $name() {
            super::$name($crate::harness::Backend::$backend).await
        }
    };
}
pub(crate) use store_test;

/// The tenant most tests work in, and a second one to prove isolation.
pub const T1: &str = "t1";
pub const T2: &str = "t2";
pub const ZONE: &str = "Asia/Manila";
/// Every employee's semi-monthly top-up allowance.
pub const ALLOWANCE: &str = "1000.00";
/// The vendors of a tenant the harness sets up, with their commission
/// rates in basis points.
pub const V1: &str = "V1";
pub const V2: &str = "V2";
pub const V1_RATE: u16 = 1000;
pub const V2_RATE: u16 = 500;
pub const E1: &str = "E1";
pub const E2: &str = "E2";
/// The user ids the harness's tokens name (the events' actors).
pub const ADMIN_USER: &str = "admin-1";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A running server, its data directory, and a client.
pub struct Api {
    pub server: Server,
    pub http: reqwest::Client,
    pub base: String,
    /// The current semi-monthly period in the tenants' zone.
    pub period: String,
    _dir: tempfile::TempDir,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `Tally-Consistency-Token` header of a write that appended events.
    pub fn token(&self) -> String {
        self.maybe_token()
            .unwrap_or_else(|| panic!("no tally-consistency-token header: {self:?}"))
    }

    /// The `Tally-Consistency-Token` header, when there is one.
    pub fn maybe_token(&self) -> Option<String> {
        self.headers
            .get("tally-consistency-token")
            .map(|v| v.to_str().expect("text").to_owned())
    }

    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `events` of a write's answer.
    pub fn events(&self) -> &Vec<Value> {
        self.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events: {}", self.body))
    }

    /// The event types of a write's answer, in order.
    pub fn event_types(&self) -> Vec<&str> {
        self.events()
            .iter()
            .map(|e| e["event"]["type"].as_str().expect("a type"))
            .collect()
    }

    pub fn items(&self) -> &Vec<Value> {
        self.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items: {}", self.body))
    }

    pub fn next_cursor(&self) -> Option<String> {
        self.body["next_cursor"].as_str().map(str::to_owned)
    }
}

/// Sends a request and reads the answer. Every answer, whatever its
/// status, must carry an `x-request-id`.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    let reply = Reply {
        status,
        headers,
        body,
    };
    assert!(
        reply
            .headers
            .get("x-request-id")
            .is_some_and(|v| !v.is_empty()),
        "no x-request-id: {reply:?}"
    );
    reply
}

/// Sends a request that must succeed with `status`.
pub async fn ok(request: RequestBuilder, status: u16) -> Reply {
    let reply = send(request).await;
    assert_eq!(
        reply.status.as_u16(),
        status,
        "unexpected answer: {reply:?}"
    );
    if reply.status.is_success() {
        assert!(
            reply.content_type().starts_with("application/json"),
            "{reply:?}"
        );
    }
    reply
}

/// Sends a request that must fail with `status` and the problem `code`,
/// as `application/problem+json`.
pub async fn check(request: RequestBuilder, status: u16, code: &str) -> Reply {
    let reply = send(request).await;
    assert_eq!(
        reply.status.as_u16(),
        status,
        "unexpected answer: {reply:?}"
    );
    assert_eq!(reply.content_type(), PROBLEM_JSON, "{reply:?}");
    assert_eq!(reply.body["code"], code, "{reply:?}");
    assert_eq!(reply.body["status"], status, "{reply:?}");
    assert_eq!(
        reply.body["type"],
        format!("urn:tally:problem:{code}"),
        "{reply:?}"
    );
    reply
}

/// A token's claims, built from text.
pub fn claims(
    tenant: &str,
    user: &str,
    roles: &[Role],
    vendor: Option<&str>,
    employee: Option<&str>,
) -> Claims {
    Claims::new(
        TenantId::new(tenant),
        UserId::new(user),
        roles,
        vendor.map(VendorId::new),
        employee.map(EmployeeId::new),
        Duration::from_secs(3600),
    )
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    Timestamp::from_micros(since.as_micros() as i64)
}

/// `days` days ago, as RFC 3339 text (an offline sale's `occurred_at`).
/// The consistency tokens of several writes, as one `consistency_token`.
pub fn all(tokens: &[String]) -> String {
    tokens.join(",")
}

pub fn days_ago(days: i64, plus_seconds: i64) -> String {
    now()
        .plus_seconds(-days * 86_400 + plus_seconds)
        .to_string()
}

/// A sale body with one line of `quantity × price` paid by `payment`.
pub fn sale(order_id: &str, price: &str, payment: Value) -> Value {
    json!({
        "order_id": order_id,
        "lines": [{"item": "ITEM", "quantity": 1, "unit_price": price}],
        "payment": payment,
    })
}

pub fn cash() -> Value {
    json!({"method": "cash"})
}

pub fn credit(employee: &str) -> Value {
    json!({"method": "credit", "employee_id": employee})
}

impl Api {
    /// A server on `store` with nothing in it.
    pub async fn empty(store: Backend) -> Api {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = Server::start(ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            demo: false,
            store: store.config().await,
        })
        .await
        .expect("the server starts");
        let base = format!("http://{}", server.addr);
        let period = Period::containing(now(), TimeZone::new(ZONE), Cadence::SemiMonthly);
        Api {
            server,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
            base,
            period: period.to_string(),
            _dir: dir,
        }
    }

    /// A server on `store` with tenant [`T1`] set up: see
    /// [`Api::set_up_tenant`].
    pub async fn start(store: Backend) -> Api {
        let api = Api::empty(store).await;
        api.set_up_tenant(T1).await;
        api
    }

    /// Configures `tenant` (PHP, Asia/Manila), registers [`V1`] and [`V2`],
    /// enrolls [`E1`] and [`E2`] with a semi-monthly top-up of
    /// [`ALLOWANCE`], and replenishes them for the current period.
    pub async fn set_up_tenant(&self, tenant: &str) {
        let admin = self.token_in(tenant, ADMIN_USER, &[Role::Admin], None, None);
        let r = ok(
            self.put(&admin, "/v1/tenant", &format!("setup-tenant-{tenant}"))
                .json(&json!({"currency": "PHP", "time_zone": ZONE})),
            200,
        )
        .await;
        assert_eq!(r.event_types(), ["TenantConfigured"]);
        for (vendor, rate) in [(V1, V1_RATE), (V2, V2_RATE)] {
            ok(
                self.post(&admin, "/v1/vendors", &format!("setup-{vendor}"))
                    .json(&json!({"vendor_id": vendor, "name": format!("Vendor {vendor}"), "commission_rate": rate})),
                201,
            )
            .await;
        }
        let mut enrolled = Vec::new();
        for employee in [E1, E2] {
            enrolled.push(self.enroll(&admin, employee).await.token());
        }
        // The replenishment lists the accounts the read models hold: it
        // waits for the enrollments to be among them.
        let r = ok(
            self.post(&admin, "/v1/credit/replenishments", "setup-replenish")
                .query(&[("consistency_token", all(&enrolled))])
                .json(&json!({"period": self.period})),
            200,
        )
        .await;
        assert_eq!(r.body["replenished"], json!([E1, E2]), "{r:?}");
    }

    /// Enrolls `employee` with the harness's policy (no replenishment).
    pub async fn enroll(&self, admin: &str, employee: &str) -> Reply {
        ok(
            self.post(admin, "/v1/employees", &format!("enroll-{employee}"))
                .json(&json!({
                    "employee_id": employee,
                    "name": format!("Employee {employee}"),
                    "policy": {"allowance": ALLOWANCE, "cadence": "semi_monthly", "mode": "top_up"},
                })),
            201,
        )
        .await
    }

    pub fn token_in(
        &self,
        tenant: &str,
        user: &str,
        roles: &[Role],
        vendor: Option<&str>,
        employee: Option<&str>,
    ) -> String {
        self.server
            .key
            .mint(&claims(tenant, user, roles, vendor, employee))
    }

    pub fn admin(&self) -> String {
        self.token_in(T1, ADMIN_USER, &[Role::Admin], None, None)
    }

    pub fn cashier(&self, vendor: &str) -> String {
        let user = format!("cashier-{vendor}");
        self.token_in(T1, &user, &[Role::Cashier], Some(vendor), None)
    }

    pub fn vendor(&self, vendor: &str) -> String {
        let user = format!("owner-{vendor}");
        self.token_in(T1, &user, &[Role::Vendor], Some(vendor), None)
    }

    pub fn employee(&self, employee: &str) -> String {
        let user = format!("user-{employee}");
        self.token_in(T1, &user, &[Role::Employee], None, Some(employee))
    }

    pub fn service(&self) -> String {
        self.token_in(T1, "scheduler", &[Role::Service], None, None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with no token.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub fn get(&self, token: &str, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token)
    }

    /// A read that waits until the writes `at` names (one consistency
    /// token, or several joined by `all`) are projected.
    pub fn get_at(&self, token: &str, path: &str, at: &str) -> RequestBuilder {
        self.get(token, path).query(&[("consistency_token", at)])
    }

    pub fn post(&self, token: &str, path: &str, key: &str) -> RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header("idempotency-key", key)
    }

    pub fn put(&self, token: &str, path: &str, key: &str) -> RequestBuilder {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .header("idempotency-key", key)
    }

    /// Records a sale that must be accepted.
    pub async fn sell(&self, token: &str, key: &str, body: Value) -> Reply {
        let r = ok(self.post(token, "/v1/sales", key).json(&body), 201).await;
        assert!(!r.token().is_empty());
        r
    }

    /// How many events the store holds, under every tenant: the whole log
    /// on SQLite, a parallel Scan of the event table on DynamoDB (which has
    /// no log head to compare). The log only grows, so an unchanged count
    /// means nothing was written, and a difference is what was.
    pub async fn event_count(&self) -> usize {
        self.server
            .store()
            .all_records()
            .await
            .expect("the store answers")
            .len()
    }

    pub async fn idempotency(&self, tenant: &str, key: &str) -> Option<IdempotencyRecord> {
        self.server
            .store()
            .idempotency(
                TenantId::new(tenant),
                &IdempotencyKey::parse(key).expect("a key"),
            )
            .await
            .expect("the store answers")
    }

    /// How many events `stream` of `tenant` holds.
    pub async fn stream_len(&self, tenant: &str, stream: &str) -> usize {
        self.server
            .store()
            .read_stream(
                TenantId::new(tenant),
                StreamId::parse(stream).expect("a stream id"),
                StreamVersion::NONE,
                1000,
            )
            .await
            .expect("the store answers")
            .len()
    }

    /// Sends a request that must be refused with `status` and `code`
    /// before any decision: no events, and no idempotency record under
    /// `key` (when the request carried one).
    pub async fn refused(
        &self,
        request: RequestBuilder,
        status: u16,
        code: &str,
        key: Option<&str>,
    ) -> Reply {
        let before = self.event_count().await;
        let reply = check(request, status, code).await;
        assert_eq!(
            self.event_count().await,
            before,
            "a refused request wrote events"
        );
        if let Some(key) = key {
            assert!(
                self.idempotency(T1, key).await.is_none(),
                "a refused request stored its key {key}"
            );
        }
        reply
    }

    /// Sends a request the domain must reject with `status` and `code`:
    /// no events, the rejection remembered under `key`, and a retry with
    /// the same key answered with the same rejection, still writing nothing.
    pub async fn rejected(
        &self,
        tenant: &str,
        request: RequestBuilder,
        status: u16,
        code: &str,
        key: &str,
    ) -> Reply {
        let before = self.event_count().await;
        let retry = request.try_clone().expect("a cloneable request");
        let first = check(request, status, code).await;
        assert!(!first.replayed(), "{first:?}");
        assert_eq!(
            self.event_count().await,
            before,
            "a rejected command wrote events"
        );
        self.idempotency(tenant, key)
            .await
            .unwrap_or_else(|| panic!("the rejection under {key} is not remembered"));
        let again = check(retry, status, code).await;
        assert!(again.replayed(), "the retry was decided again: {again:?}");
        assert_eq!(again.body, first.body);
        assert_eq!(
            self.event_count().await,
            before,
            "a replayed rejection wrote events"
        );
        first
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.server.stop().await.expect("the server stops cleanly");
    }
}
