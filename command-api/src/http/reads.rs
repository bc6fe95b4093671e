//! Read endpoints: queries over the projected read models, and admin reads
//! of the log itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger_core::codec;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, OrderId, StreamId, StreamVersion, TenantId, UserId, VendorId};
use ledger_core::projection::activity::{ActivityFilter, ActivityQuery, PAGE_ACTIVITY_MAX};
use ledger_core::projection::credit::{CreditView, PAGE_STATEMENT_MAX, StatementLine};
use ledger_core::projection::dashboard::{Dashboard, DashboardQuery, DayTotals, Granularity};
use ledger_core::projection::orders::{OrderListQuery, OrderView, PAGE_ORDERS_MAX};
use ledger_core::tenant::TenantSettings;
use ledger_core::time::{LocalDate, Timestamp};
use ledger_store::views::{DayRange, ViewKey, ViewTable};
use ledger_store::{EventStore, READ_PAGE_RECORDS_MAX};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::app::{App, AppState};
use super::consistency::{WaitParams, visible};
use super::cursor;
use super::extract::{Auth, Params, path_id};
use super::handler::{now, require, unavailable};
use super::problem::Problem;
use super::writes::problem_of;
use crate::auth::Principal;

/// A page size when the client names none.
pub const PAGE_DEFAULT: usize = 50;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardParams {
    pub from: LocalDate,
    /// Inclusive.
    pub to: LocalDate,
    #[serde(default = "day")]
    pub granularity: Granularity,
    /// One vendor; admins may omit it for every vendor of the tenant.
    #[serde(default)]
    pub vendor_id: Option<VendorId>,
    /// The Tally-Consistency-Token of a write this read must reflect (or up
    /// to 16, comma-separated).
    #[serde(default)]
    pub consistency_token: Option<String>,
}

fn day() -> Granularity {
    Granularity::Day
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderListParams {
    /// Admins may omit it to list across the tenant.
    #[serde(default)]
    pub vendor_id: Option<VendorId>,
    #[serde(default)]
    pub from: Option<Timestamp>,
    /// Exclusive.
    #[serde(default)]
    pub until: Option<Timestamp>,
    /// Opaque: the `next_cursor` of the previous page of this same query
    /// (same tenant and filters; `limit` may change). Any other is `400
    /// validation_failed`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size.
    #[schemars(range(min = 1, max = PAGE_ORDERS_MAX))]
    #[serde(default)]
    pub limit: Option<usize>,
    /// The Tally-Consistency-Token of a write this read must reflect (or up
    /// to 16, comma-separated).
    #[serde(default)]
    pub consistency_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    /// Opaque: the `next_cursor` of the previous page of this same query
    /// (same tenant and filters; `limit` may change). Any other is `400
    /// validation_failed`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size.
    #[schemars(range(min = 1, max = PAGE_STATEMENT_MAX))]
    #[serde(default)]
    pub limit: Option<usize>,
    /// The Tally-Consistency-Token of a write this read must reflect (or up
    /// to 16, comma-separated).
    #[serde(default)]
    pub consistency_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    #[serde(default)]
    pub vendor_id: Option<VendorId>,
    /// A user id: what that person did.
    #[serde(default)]
    pub actor: Option<UserId>,
    /// Opaque: the `next_cursor` of the previous page of this same query
    /// (same tenant and filters; `limit` may change). Any other is `400
    /// validation_failed`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size.
    #[schemars(range(min = 1, max = PAGE_ACTIVITY_MAX))]
    #[serde(default)]
    pub limit: Option<usize>,
    /// The Tally-Consistency-Token of a write this read must reflect (or up
    /// to 16, comma-separated).
    #[serde(default)]
    pub consistency_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Only events after this version.
    #[serde(default)]
    pub after: Option<u64>,
    /// Page size.
    #[schemars(range(min = 1, max = READ_PAGE_RECORDS_MAX))]
    #[serde(default)]
    pub limit: Option<usize>,
}

fn page_limit(limit: Option<usize>, max: usize) -> Result<usize, Problem> {
    match limit.unwrap_or(PAGE_DEFAULT.min(max)) {
        0 => Err(Problem::validation("limit must be at least 1")),
        n if n > max => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!("limit must be at most {max}"),
        )),
        n => Ok(n),
    }
}

pub async fn health<S: EventStore>(State(app): State<AppState<S>>) -> Response {
    let mut health = json!({"status": "ok"});
    if let serde_json::Value::Object(fields) = (app.projections)() {
        health.as_object_mut().expect("an object").extend(fields);
    }
    axum::Json(health).into_response()
}

pub async fn tenant<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
) -> Result<Response, Problem> {
    let settings = settings_of(&app, p.tenant_id).await?;
    let settings = settings.ok_or_else(|| Problem::not_found("tenant settings"))?;
    Ok(axum::Json(json!({
        "tenant_id": p.tenant_id,
        "currency": settings.currency,
        "time_zone": settings.time_zone,
    }))
    .into_response())
}

/// The tenant's settings, from its head.
async fn settings_of<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
) -> Result<Option<TenantSettings>, Problem> {
    let state = app
        .service
        .aggregates(tenant_id, &[StreamId::tenant(tenant_id)])
        .await
        .map_err(problem_of)?;
    Ok(state.settings())
}

/// The vendor a vendor-scoped read is about: the caller's own, or for
/// admins the one named (or all).
fn vendor_scope(p: &Principal, named: Option<VendorId>) -> Result<Option<VendorId>, Problem> {
    if p.has(Role::Admin) {
        return Ok(named);
    }
    let own = p.vendor_id.ok_or_else(Problem::forbidden)?;
    match named {
        Some(v) if v != own => Err(Problem::forbidden()),
        _ => Ok(Some(own)),
    }
}

pub async fn dashboard<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Params(q): Params<DashboardParams>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor])?;
    let vendor_id = vendor_scope(&p, q.vendor_id)?;
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let settings = settings_of(&app, p.tenant_id).await?;
    let settings = settings.ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "tenant_not_configured",
            "the tenant has no settings yet",
        )
    })?;
    let query = DashboardQuery {
        tenant_id: p.tenant_id,
        vendor_id,
        from: q.from,
        to: q.to,
        granularity: q.granularity,
        today: now().local_date(settings.time_zone),
    };
    query
        .check()
        .map_err(|e| Problem::validation(e.to_string()))?;
    let days = app
        .views
        .day_sums(&DayRange {
            tenant_id: p.tenant_id,
            vendor_id,
            from: query.from,
            to: query.to,
        })
        .await
        .map_err(unavailable)?;
    let dues = app
        .views
        .due_sums(p.tenant_id, vendor_id)
        .await
        .map_err(unavailable)?;
    let dashboard = Dashboard::assemble(
        &query,
        Some(settings.currency),
        days.iter().map(|d| (d.date, &d.totals)),
        dues.iter().map(|d| (d.due_date, d.amount)),
    );
    Ok(axum::Json(dashboard_json(&dashboard, settings.currency.scale())).into_response())
}

/// A dashboard as answered: every amount at the currency's scale (a sum of
/// nothing is `0.00`, not `0`), and beside the stored sums the net figures
/// derived from them: `net`, `refunded_net` and `net_payable`.
fn dashboard_json(d: &Dashboard, scale: u32) -> Value {
    let at_scale = |mut amount: Decimal| {
        amount.rescale(scale);
        Value::String(amount.to_string())
    };
    let totals = |value: &mut Value, t: &DayTotals| {
        let fields = value.as_object_mut().expect("totals encode as an object");
        for field in fields.values_mut() {
            if let Some(amount) = field.as_str().and_then(|s| s.parse::<Decimal>().ok()) {
                *field = at_scale(amount);
            }
        }
        fields.insert("net".into(), at_scale(t.net()));
        fields.insert("refunded_net".into(), at_scale(t.refunded_net()));
        fields.insert("net_payable".into(), at_scale(t.net_payable()));
    };
    let mut value = serde_json::to_value(d).expect("encodes");
    totals(&mut value["totals"], &d.totals);
    let series = value["series"].as_array_mut().expect("a series");
    for (bucket, b) in series.iter_mut().zip(&d.series) {
        totals(&mut bucket["totals"], &b.totals);
    }
    value["receivables_pending"] = at_scale(d.receivables_pending);
    value["receivables_overdue"] = at_scale(d.receivables_overdue);
    value
}

pub async fn order<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Params(q): Params<WaitParams>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor, Role::Cashier])?;
    let order_id = path_id(&id, "order id", OrderId::parse)?;
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let view = load_view(
        &app,
        p.tenant_id,
        StreamId::order(order_id),
        OrderView::from_bytes,
    )
    .await?
    .filter(|v| p.has(Role::Admin) || p.vendor_id == Some(v.vendor_id));
    view.map(|v| axum::Json(serde_json::to_value(&v).expect("encodes")).into_response())
        .ok_or_else(|| Problem::not_found("order"))
}

pub async fn orders<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Params(q): Params<OrderListParams>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor, Role::Cashier])?;
    let vendor_id = vendor_scope(&p, q.vendor_id)?;
    let limit = page_limit(q.limit, PAGE_ORDERS_MAX)?;
    let from = q.from.unwrap_or(Timestamp::from_micros(i64::MIN));
    let until = q.until.unwrap_or(Timestamp::from_micros(i64::MAX));
    let scope = format!(
        "orders|{}|{}|{}",
        vendor_id.as_ref().map_or("", |v| v.as_str()),
        from.as_micros(),
        until.as_micros()
    );
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| parse_order_cursor(&cursor::open(p.tenant_id, &scope, c)?))
        .transpose()?;
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let query = OrderListQuery {
        tenant_id: p.tenant_id,
        vendor_id,
        from,
        until,
        cursor,
        limit,
    };
    let rows = app.views.orders(&query).await.map_err(unavailable)?;
    let page = rows
        .iter()
        .map(|row| OrderView::from_bytes(&row.view.bytes).map_err(undecodable))
        .collect::<Result<Vec<OrderView>, Problem>>()?;
    let next = (page.len() == limit)
        .then(|| {
            page.last().map(|v| {
                let at = format!("{}.{}", v.occurred_at.as_micros(), v.order_id.as_str());
                cursor::seal(p.tenant_id, &scope, &at)
            })
        })
        .flatten();
    Ok(axum::Json(json!({ "items": page, "next_cursor": next })).into_response())
}

fn parse_order_cursor(text: &str) -> Result<(Timestamp, OrderId), Problem> {
    let bad = || Problem::validation("bad cursor");
    let (micros, order) = text.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok((
        Timestamp::from_micros(micros),
        OrderId::parse(order).map_err(|_| bad())?,
    ))
}

fn employee_scope(p: &Principal, id: &str) -> Result<EmployeeId, Problem> {
    require(p, &[Role::Admin, Role::Employee])?;
    let employee_id = path_id(id, "employee id", EmployeeId::parse)?;
    if p.has(Role::Admin) || p.employee_id == Some(employee_id) {
        Ok(employee_id)
    } else {
        Err(Problem::not_found("employee"))
    }
}

pub async fn credit<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Params(q): Params<WaitParams>,
) -> Result<Response, Problem> {
    let employee_id = employee_scope(&p, &id)?;
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let view = load_view(
        &app,
        p.tenant_id,
        StreamId::credit(employee_id),
        CreditView::from_bytes,
    )
    .await?;
    view.map(|v| axum::Json(serde_json::to_value(&v).expect("encodes")).into_response())
        .ok_or_else(|| Problem::not_found("employee"))
}

pub async fn statement<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Params(q): Params<StatementParams>,
) -> Result<Response, Problem> {
    let employee_id = employee_scope(&p, &id)?;
    let limit = page_limit(q.limit, PAGE_STATEMENT_MAX)?;
    let scope = format!("statement|{employee_id}");
    let after = match q.cursor.as_deref() {
        None => StreamVersion::NONE,
        Some(c) => StreamVersion::new(
            cursor::open(p.tenant_id, &scope, c)?
                .parse()
                .map_err(|_| Problem::validation("bad cursor"))?,
        ),
    };
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let stream = StreamId::credit(employee_id);
    // The account as the read models show it: its statement goes as far.
    let Some(account) = load_view(&app, p.tenant_id, stream, CreditView::from_bytes).await? else {
        return Err(Problem::not_found("employee"));
    };
    let page = statement_page(&app, p.tenant_id, stream, after, account.version, limit).await?;
    let next = (page.len() == limit)
        .then(|| {
            page.last()
                .map(|l| cursor::seal(p.tenant_id, &scope, &l.version.get().to_string()))
        })
        .flatten();
    Ok(axum::Json(json!({ "items": page, "next_cursor": next })).into_response())
}

pub async fn activity<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Params(q): Params<ActivityParams>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor])?;
    let filter = match (q.vendor_id, q.actor) {
        (Some(_), Some(_)) => {
            return Err(Problem::validation(
                "filter by vendor_id or by actor, not both",
            ));
        }
        (vendor, None) if !p.has(Role::Admin) || vendor.is_some() => {
            ActivityFilter::Vendor(vendor_scope(&p, vendor)?.expect("a vendor scope"))
        }
        (None, Some(actor)) if p.has(Role::Admin) => ActivityFilter::Actor(actor),
        (None, Some(_)) => return Err(Problem::forbidden()),
        (None, None) => ActivityFilter::All,
        (Some(_), None) => unreachable!("handled by the vendor arm"),
    };
    let limit = page_limit(q.limit, PAGE_ACTIVITY_MAX)?;
    let scope = match filter {
        ActivityFilter::Vendor(v) => format!("activity|vendor|{v}"),
        ActivityFilter::Actor(a) => format!("activity|actor|{a}"),
        ActivityFilter::All => "activity|all".to_owned(),
    };
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| parse_activity_cursor(&cursor::open(p.tenant_id, &scope, c)?))
        .transpose()?;
    visible(&app, p.tenant_id, q.consistency_token.as_deref()).await?;
    let page = app
        .views
        .activity(&ActivityQuery {
            tenant_id: p.tenant_id,
            filter,
            cursor,
            limit,
        })
        .await
        .map_err(unavailable)?;
    let body = {
        let next = (page.len() == limit)
            .then(|| {
                page.last().map(|e| {
                    let at = format!(
                        "{}.{}.{}",
                        e.recorded_at.as_micros(),
                        e.version.get(),
                        e.stream
                    );
                    cursor::seal(p.tenant_id, &scope, &at)
                })
            })
            .flatten();
        json!({ "items": page, "next_cursor": next })
    };
    Ok(axum::Json(body).into_response())
}

fn parse_activity_cursor(text: &str) -> Result<(Timestamp, StreamId, StreamVersion), Problem> {
    let bad = || Problem::validation("bad cursor");
    let mut parts = text.splitn(3, '.');
    let micros: i64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let version: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let stream = StreamId::parse(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((
        Timestamp::from_micros(micros),
        stream,
        StreamVersion::new(version),
    ))
}

pub async fn stream_events<S: EventStore>(
    State(app): State<AppState<S>>,
    Auth(p): Auth,
    Path((kind, id)): Path<(String, String)>,
    Params(q): Params<StreamParams>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let stream = path_id(&format!("{kind}/{id}"), "stream", StreamId::parse)?;
    let limit = page_limit(q.limit, READ_PAGE_RECORDS_MAX)?;
    let after = StreamVersion::new(q.after.unwrap_or(0));
    let records = app
        .store()
        .read_stream(p.tenant_id, stream, after, limit)
        .await
        .map_err(unavailable)?;
    let mut items = Vec::with_capacity(records.len());
    for r in &records {
        let envelope = codec::decode(&r.bytes).map_err(|e| {
            tracing::error!(error = %e, %stream, version = r.version.get(), "undecodable record");
            Problem::internal()
        })?;
        items.push(serde_json::to_value(&envelope).expect("encodes"));
    }
    if items.is_empty() && after == StreamVersion::NONE {
        return Err(Problem::not_found("stream"));
    }
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.version.get().to_string()))
        .flatten();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next })).into_response())
}

/// One view of the tenant's, decoded; `None` when it was never written.
async fn load_view<S: EventStore, T, E: std::fmt::Display>(
    app: &App<S>,
    tenant_id: TenantId,
    stream: StreamId,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<Option<T>, Problem> {
    let key = ViewKey { tenant_id, stream };
    let stored = app.views.load(&[key]).await.map_err(unavailable)?;
    match stored.into_iter().next().flatten() {
        Some(view) => decode(&view.bytes).map(Some).map_err(undecodable),
        None => Ok(None),
    }
}

/// A stored read model that does not decode: the projector's bug, never
/// the caller's.
fn undecodable(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "undecodable read model");
    Problem::internal()
}

/// Up to `limit` statement lines of a credit stream after version `after`
/// and up to `until` (what the account view shows), read from the stream
/// itself a page of events at a time: events that moved no money (a
/// policy change) have no line.
async fn statement_page<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
    stream: StreamId,
    mut after: StreamVersion,
    until: StreamVersion,
    limit: usize,
) -> Result<Vec<StatementLine>, Problem> {
    let mut lines = Vec::with_capacity(limit);
    while lines.len() < limit && after < until {
        let records = app
            .store()
            .read_stream(tenant_id, stream, after, READ_PAGE_RECORDS_MAX)
            .await
            .map_err(unavailable)?;
        let Some(last) = records.last() else { break };
        after = last.version;
        for r in records.iter().filter(|r| r.version <= until) {
            let envelope = codec::decode(&r.bytes).map_err(|e| {
                tracing::error!(error = %e, %stream, version = r.version.get(), "undecodable record");
                Problem::internal()
            })?;
            if let Some(line) = StatementLine::of(&envelope) {
                lines.push(line);
                if lines.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(lines)
}
