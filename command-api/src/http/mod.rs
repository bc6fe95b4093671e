//! The HTTP surface: one route table builds both the axum `Router` and the
//! OpenAPI document, so the two cannot drift apart.
//!
//! This module only assembles: the state handlers share is `app`, what they
//! share beyond it is `handler`, and the handlers are `writes` and `reads`.

mod app;
pub mod consistency;
pub mod cursor;
pub mod extract;
pub(crate) mod handler;
pub mod openapi;
pub mod problem;
mod reads;
mod writes;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use ledger_store::EventStore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use openapi::{Doc, RouteDoc};

pub use app::{App, AppState};
pub use consistency::{READ_WAIT_MAX, TOKEN_HEADER};

/// Largest request body, in bytes (a sale of the most lines fits easily).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest offline batch body, in bytes.
pub const BATCH_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Longest a request may take before the server answers 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// One route: its documentation and its handler.
type Route<S> = (RouteDoc, MethodRouter<AppState<S>>);

/// Every route, by resource. The document lists paths in sorted order, so
/// the order here is for the reader only.
fn routes<S: EventStore>() -> Vec<Route<S>> {
    [
        system::<S>(),
        tenant::<S>(),
        vendors::<S>(),
        employees::<S>(),
        sales::<S>(),
        reports::<S>(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The service itself: health and this document.
fn system<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r(
                "GET",
                "/healthz",
                "Liveness, log head and projection lag",
                &[],
            ),
            get(reads::health::<S>),
        ),
        (
            r("GET", "/openapi.json", "This document", &[]),
            get(openapi_json::<S>),
        ),
    ]
}

fn tenant<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r(
                "PUT",
                "/v1/tenant",
                "Set the tenant's currency and time zone",
                &["admin"],
            )
            .body::<ledger_core::tenant::ConfigureTenant>(),
            put(writes::configure_tenant::<S>),
        ),
        (
            r("GET", "/v1/tenant", "The tenant's settings", &["any"]),
            get(reads::tenant::<S>),
        ),
    ]
}

fn vendors<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r("POST", "/v1/vendors", "Register a vendor", &["admin"])
                .body::<ledger_core::vendor::RegisterVendor>(),
            post(writes::register_vendor::<S>),
        ),
        (
            r(
                "POST",
                "/v1/vendors/{id}/commission",
                "Change a vendor's commission rate",
                &["admin"],
            )
            .body::<writes::CommissionRequest>(),
            post(writes::change_commission::<S>),
        ),
    ]
}

/// Employees and their credit.
fn employees<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r(
                "POST",
                "/v1/employees",
                "Enroll an employee with a credit policy",
                &["admin"],
            )
            .body::<ledger_core::credit::OpenCreditAccount>(),
            post(writes::enroll_employee::<S>),
        ),
        (
            r(
                "POST",
                "/v1/employees/{id}/credit/adjustments",
                "Adjust an employee's credit, with a reason",
                &["admin"],
            )
            .body::<writes::AdjustmentRequest>(),
            post(writes::adjust_credit::<S>),
        ),
        (
            r(
                "POST",
                "/v1/credit/replenishments",
                "Replenish every enrolled employee for a period",
                &["admin", "service"],
            )
            .body::<writes::ReplenishRequest>()
            .query::<consistency::WaitParams>(),
            post(writes::replenish::<S>),
        ),
        (
            r(
                "GET",
                "/v1/employees/{id}/credit",
                "An employee's credit balance",
                &["admin", "employee"],
            )
            .query::<consistency::WaitParams>(),
            get(reads::credit::<S>),
        ),
        (
            r(
                "GET",
                "/v1/employees/{id}/credit/statement",
                "An employee's credit movements with running balance",
                &["admin", "employee"],
            )
            .query::<reads::StatementParams>(),
            get(reads::statement::<S>),
        ),
    ]
}

/// Sales and the orders they make.
fn sales<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r(
                "POST",
                "/v1/sales",
                "Checkout: record a sale",
                &["cashier", "admin"],
            )
            .body::<writes::SaleRequest>(),
            post(writes::record_sale::<S>),
        ),
        (
            r(
                "POST",
                "/v1/sales/batch",
                "Sync sales recorded offline; one result per sale",
                &["cashier", "admin"],
            )
            .body::<writes::BatchRequest>()
            .keys_per_item(),
            post(writes::record_sales_batch::<S>)
                .layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX)),
        ),
        (
            r(
                "POST",
                "/v1/orders/{id}/payments",
                "Receive payment of an invoiced order",
                &["admin", "vendor", "cashier"],
            )
            .body::<writes::PaymentRequest>(),
            post(writes::receive_payment::<S>),
        ),
        (
            r(
                "POST",
                "/v1/orders/{id}/refunds",
                "Refund part or all of a paid order",
                &["admin", "vendor"],
            )
            .body::<writes::RefundRequest>(),
            post(writes::issue_refund::<S>),
        ),
        (
            r(
                "GET",
                "/v1/orders/{id}",
                "One order",
                &["admin", "vendor", "cashier"],
            )
            .query::<consistency::WaitParams>(),
            get(reads::order::<S>),
        ),
        (
            r(
                "GET",
                "/v1/orders",
                "A vendor's orders in a time range, newest first",
                &["admin", "vendor", "cashier"],
            )
            .query::<reads::OrderListParams>(),
            get(reads::orders::<S>),
        ),
    ]
}

/// What the log adds up to: totals, the activity log, the raw streams.
fn reports<S: EventStore>() -> Vec<Route<S>> {
    use openapi::route as r;
    vec![
        (
            r(
                "GET",
                "/v1/dashboard",
                "A vendor's (or, for admins, every vendor's) totals by day, week or month",
                &["admin", "vendor"],
            )
            .query::<reads::DashboardParams>(),
            get(reads::dashboard::<S>),
        ),
        (
            r(
                "GET",
                "/v1/activity",
                "The activity log by vendor or by actor, newest first",
                &["admin", "vendor"],
            )
            .query::<reads::ActivityParams>(),
            get(reads::activity::<S>),
        ),
        (
            r(
                "GET",
                "/v1/streams/{kind}/{id}/events",
                "A stream's events as stored",
                &["admin"],
            )
            .query::<reads::StreamParams>(),
            get(reads::stream_events::<S>),
        ),
    ]
}

/// The API's documentation, from the route table.
pub fn document<S: EventStore>() -> serde_json::Value {
    Doc::new(routes::<S>().into_iter().map(|(doc, _)| doc).collect()).to_json()
}

async fn openapi_json<S: EventStore>() -> Response {
    axum::Json(document::<S>()).into_response()
}

/// The whole API as a `Router`, with its middleware.
pub fn router<S: EventStore>(app: AppState<S>) -> Router {
    let mut router = Router::new();
    for (doc, handler) in routes::<S>() {
        // axum and OpenAPI spell path parameters the same way: `{id}`.
        router = router.route(doc.path, handler);
    }
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .fallback(|| async { problem::Problem::not_found("route") })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not answer this method; see the Allow header",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(app)
}
