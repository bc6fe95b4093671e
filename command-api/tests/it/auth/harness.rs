//! What the auth tests share: a ledger on a real SQLite store holding two
//! tenants, the API's router over it with whichever verifier a test gives,
//! requests sent through that router, and the check that a refused request
//! wrote nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use command_api::auth::{AuthError, Authenticated, Principal, RoleSet, Verifier, VerifyFuture};
use command_api::http::{self, App};
use command_api::service::CommandService;
use ledger_core::envelope::Role;
use ledger_core::id::{TenantId, UserId, VendorId};
use ledger_store::sqlite::{SqliteStore, SqliteViews};
use ledger_store::views::AnyTable;
use ledger_store::{CommitLog, EventStore, IdempotencyKey};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The tenant a test's caller belongs to, and another one, each with one
/// vendor of its own.
pub const T1: &str = "t1";
pub const T2: &str = "t2";
pub const V1: &str = "V1";
pub const V2: &str = "V2";
/// A vendor no tenant has, which an admin's write registers.
pub const NEW_VENDOR: &str = "V9";

/// A real store with both tenants configured and their vendors registered.
pub struct Ledger {
    pub store: SqliteStore,
    views: SqliteViews,
    _dir: tempfile::TempDir,
}

impl Ledger {
    pub async fn new() -> Ledger {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("the store opens");
        let views = SqliteViews::open(&dir.path().join("ledger.db-views")).expect("the views open");
        let ledger = Ledger {
            store,
            views,
            _dir: dir,
        };
        // Seeded as each tenant's admin, handed over as an entry point
        // would: no token is involved.
        let seed = ledger.router(Arc::new(RefuseAll));
        for (tenant, vendor) in [(T1, V1), (T2, V2)] {
            let admin = admin_of(tenant);
            let reply = send(
                &seed,
                put(
                    "/v1/tenant",
                    json!({"currency": "PHP", "time_zone": "Asia/Manila"}),
                )
                .authenticated(admin),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            let reply = send(&seed, register_vendor(vendor).authenticated(admin)).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        }
        ledger
    }

    /// The API over this ledger, verifying tokens with `verifier`.
    pub fn router(&self, verifier: Arc<dyn Verifier>) -> Router {
        http::router(Arc::new(App {
            service: CommandService::new(self.store.clone()),
            views: AnyTable::Sqlite(self.views.clone()),
            verifier,
            projections: Arc::new(|| json!({})),
        }))
    }

    /// Sends `call` and checks that it appended no event and stored no
    /// idempotency record under its key in either tenant.
    pub async fn refused(&self, router: &Router, call: Call) -> Reply {
        let head = self.store.head();
        let key = call.key.clone();
        let reply = send(router, call).await;
        let written = self.store.read_log(head, 10).await.expect("the log reads");
        assert!(
            written.is_empty(),
            "{reply:?} wrote {} records",
            written.len()
        );
        if let Some(key) = key {
            let key = IdempotencyKey::parse(&key).expect("a key");
            for tenant in [T1, T2] {
                let record = self
                    .store
                    .idempotency(TenantId::new(tenant), &key)
                    .await
                    .expect("the store reads");
                assert!(record.is_none(), "{reply:?} stored its answer in {tenant}");
            }
        }
        reply
    }
}

/// A verifier that refuses every token, for routers that should only ever
/// see principals handed over.
pub struct RefuseAll;

impl Verifier for RefuseAll {
    fn verify<'a>(&'a self, _: &'a str) -> VerifyFuture<'a> {
        Box::pin(std::future::ready(Err(AuthError::BadSignature)))
    }
}

pub fn admin_of(tenant: &str) -> Principal {
    Principal::try_new(
        TenantId::new(tenant),
        UserId::new("admin-1"),
        RoleSet::of(&[Role::Admin]),
        None,
        None,
    )
    .expect("an admin")
}

pub fn vendor_of(tenant: &str, vendor: &str) -> Principal {
    Principal::try_new(
        TenantId::new(tenant),
        UserId::new("vendor-1"),
        RoleSet::of(&[Role::Vendor]),
        Some(VendorId::new(vendor)),
        None,
    )
    .expect("a vendor")
}

/// One request, before it is sent.
#[derive(Debug)]
pub struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    bearer: Option<String>,
    authenticated: Option<Principal>,
    /// The `Idempotency-Key` of a write.
    pub key: Option<String>,
}

pub fn get(path: &str) -> Call {
    Call {
        method: Method::GET,
        path: path.to_owned(),
        body: None,
        bearer: None,
        authenticated: None,
        key: None,
    }
}

pub fn post(path: &str, body: Value) -> Call {
    write(Method::POST, path, body)
}

pub fn put(path: &str, body: Value) -> Call {
    write(Method::PUT, path, body)
}

fn write(method: Method, path: &str, body: Value) -> Call {
    Call {
        method,
        body: Some(body),
        key: Some(format!("auth-test-{}", uuid::Uuid::new_v4())),
        ..get(path)
    }
}

/// An admin's write: registers [`NEW_VENDOR`] or another.
pub fn register_vendor(vendor: &str) -> Call {
    post(
        "/v1/vendors",
        json!({"vendor_id": vendor, "name": "A stall", "commission_rate": 1000}),
    )
}

impl Call {
    pub fn bearer(mut self, token: &str) -> Call {
        self.bearer = Some(token.to_owned());
        self
    }

    /// With the principal an entry point would have put in the request's
    /// extensions.
    pub fn authenticated(mut self, principal: Principal) -> Call {
        self.authenticated = Some(principal);
        self
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The problem's stable `code`.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// The problem's `detail`, which for a refused token names the check.
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

/// Sends `call` through `router`, as a server would hand it over.
pub async fn send(router: &Router, call: Call) -> Reply {
    let mut request = Request::builder().method(call.method).uri(&call.path);
    if let Some(token) = &call.bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = &call.key {
        request = request.header("idempotency-key", key);
    }
    let body = match &call.body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(body).expect("JSON"))
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).expect("a request");
    if let Some(principal) = call.authenticated {
        request.extensions_mut().insert(Authenticated(principal));
    }
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply { status, body }
}
