//! Write endpoints: request → ledger-core command → the command service.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger_core::codec;
use ledger_core::credit::{AdjustCredit, CreditCommand, OpenCreditAccount, ReplenishCredit};
use ledger_core::envelope::Envelope;
use ledger_core::envelope::Role;
use ledger_core::event::{Payment, Tender};
use ledger_core::id::{EmployeeId, OrderId, RefundId, StreamId, StreamVersion, TenantId, VendorId};
use ledger_core::memory::Command;
use ledger_core::money::CommissionRate;
use ledger_core::sale::{IssueRefund, LineInput, ReceivePayment, RecordSale, SaleCommand};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::Reason;
use ledger_core::time::{Period, Timestamp};
use ledger_core::vendor::{ChangeCommissionRate, RegisterVendor, VendorCommand};
use ledger_store::{EventStore, IdempotencyKey};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::app::{App, St};
use super::consistency::{TOKEN_HEADER, WaitParams, Written, visible};
use super::extract::Params;
use super::extract::{Auth, Body, Key, path_id, request_hash};
use super::handler::{now, require};
use super::problem::Problem;
use crate::auth::Principal;
use crate::service::{Caller, Decision, ExecuteError, Executed, Idempotency};
use ledger_store::views::{QUERY_ROWS_MAX, ViewTable};

/// Most sales one offline batch may carry.
pub const BATCH_SALES_MAX: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionRequest {
    pub commission_rate: CommissionRate,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// Signed: positive adds credit, negative removes it.
    #[schemars(with = "ledger_core::money::amount_text::Signed")]
    #[serde(with = "ledger_core::money::amount_text::signed")]
    pub amount: Decimal,
    pub reason: Reason,
}

/// A checkout. A cashier's token names the vendor; an admin names it here.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    pub order_id: OrderId,
    #[serde(default)]
    pub vendor_id: Option<VendorId>,
    pub lines: Vec<LineInput>,
    pub payment: Payment,
    /// When the sale happened, for sales recorded offline.
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
}

/// One sale of an offline batch, with its own idempotency key (by default
/// `order:<order_id>`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSale {
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub order_id: OrderId,
    #[serde(default)]
    pub vendor_id: Option<VendorId>,
    pub lines: Vec<LineInput>,
    pub payment: Payment,
    pub occurred_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub sales: Vec<BatchSale>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    #[schemars(with = "ledger_core::money::amount_text::Unsigned")]
    #[serde(with = "ledger_core::money::amount_text::unsigned")]
    pub amount: Decimal,
    pub tender: Tender,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub refund_id: RefundId,
    #[schemars(with = "ledger_core::money::amount_text::Unsigned")]
    #[serde(with = "ledger_core::money::amount_text::unsigned")]
    pub amount: Decimal,
    #[serde(default)]
    pub reason: Option<Reason>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplenishRequest {
    pub period: Period,
}

/// What a write stores under its key: the status as two big-endian bytes,
/// then either the JSON body as sent (`BODY_JSON`: rejections, summaries)
/// or, for accepted commands, references to the events (`BODY_EVENTS`:
/// stream and version each). Events are immutable, so a replay re-renders
/// the same body from the log; the record stays a few dozen bytes instead
/// of a kilobyte and a half of JSON per checkout.
const BODY_JSON: u8 = 0;
const BODY_EVENTS: u8 = 1;

fn stored(status: u16, body: &impl Serialize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&status.to_be_bytes());
    bytes.push(BODY_JSON);
    serde_json::to_writer(&mut bytes, body).expect("a response encodes");
    bytes
}

fn stored_events(status: u16, events: &[Envelope]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(3 + events.len() * 48);
    bytes.extend_from_slice(&status.to_be_bytes());
    bytes.push(BODY_EVENTS);
    for e in events {
        let stream = e.stream().to_string();
        let len = u8::try_from(stream.len()).expect("stream ids are short");
        bytes.push(len);
        bytes.extend_from_slice(stream.as_bytes());
        bytes.extend_from_slice(&e.version().get().to_be_bytes());
    }
    bytes
}

/// The status and JSON body of an answer: rendered from the decision when
/// it is fresh, from the stored record (and the events it names) when it
/// is a replay.
async fn answer<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
    executed: &Executed,
) -> Result<(StatusCode, Vec<u8>), Problem> {
    let bytes = &executed.response;
    let corrupt = || {
        tracing::error!("an idempotency record does not decode");
        Problem::internal()
    };
    let (head, rest) = bytes.split_at_checked(3).ok_or_else(corrupt)?;
    let status =
        StatusCode::from_u16(u16::from_be_bytes([head[0], head[1]])).map_err(|_| corrupt())?;
    match (head[2], &executed.decision) {
        (BODY_JSON, _) => Ok((status, rest.to_vec())),
        (BODY_EVENTS, Some(Decision::Accepted(events))) => Ok((status, events_json(events))),
        (BODY_EVENTS, _) => {
            let events = read_events(app, tenant_id, rest).await?;
            Ok((status, events_json(&events)))
        }
        _ => Err(corrupt()),
    }
}

fn events_json(events: &[Envelope]) -> Vec<u8> {
    serde_json::to_vec(&AcceptedBody { events }).expect("events encode")
}

/// The events a stored answer names (`BODY_EVENTS`), stream and version
/// each.
fn event_refs(mut refs: &[u8]) -> Result<Vec<(StreamId, StreamVersion)>, Problem> {
    let corrupt = || {
        tracing::error!("an idempotency record names events it cannot");
        Problem::internal()
    };
    let mut named = Vec::new();
    while let Some((&len, rest)) = refs.split_first() {
        let (stream, rest) = rest
            .split_at_checked(usize::from(len))
            .ok_or_else(corrupt)?;
        let (version, rest) = rest.split_at_checked(8).ok_or_else(corrupt)?;
        refs = rest;
        let stream = std::str::from_utf8(stream)
            .ok()
            .and_then(|s| StreamId::parse(s).ok())
            .ok_or_else(corrupt)?;
        let version = u64::from_be_bytes(version.try_into().expect("eight bytes"));
        named.push((stream, StreamVersion::new(version)));
    }
    Ok(named)
}

async fn read_events<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
    refs: &[u8],
) -> Result<Vec<Envelope>, Problem> {
    let corrupt = || {
        tracing::error!("an idempotency record names events that do not read back");
        Problem::internal()
    };
    let mut events = Vec::new();
    for (stream, version) in event_refs(refs)? {
        let after = StreamVersion::new(version.get().checked_sub(1).ok_or_else(corrupt)?);
        let records = app
            .store()
            .read_stream(tenant_id, stream, after, 1)
            .await
            .map_err(|e| problem_of(ExecuteError::Store(e)))?;
        let record = records.first().ok_or_else(corrupt)?;
        events.push(codec::decode(&record.bytes).map_err(|_| corrupt())?);
    }
    Ok(events)
}

/// What a command's answer wrote, for its consistency token: the events of
/// a fresh decision, or those its stored answer names.
fn written(executed: &Executed) -> Result<Written, Problem> {
    let mut written = Written::default();
    match &executed.decision {
        Some(Decision::Accepted(events)) => {
            for e in events {
                written.push(e.stream(), e.version());
            }
        }
        Some(Decision::Rejected(_)) => {}
        None => {
            if let Some((&[_, _, BODY_EVENTS], refs)) = executed.response.split_at_checked(3) {
                for (stream, version) in event_refs(refs)? {
                    written.push(stream, version);
                }
            }
        }
    }
    Ok(written)
}

#[derive(Serialize)]
struct AcceptedBody<'a> {
    events: &'a [Envelope],
}

fn render(decision: &Decision, success: StatusCode) -> Vec<u8> {
    match decision {
        Decision::Accepted(events) => stored_events(success.as_u16(), events),
        Decision::Rejected(rejection) => {
            let problem = Problem::from(rejection);
            stored(problem.status, &problem)
        }
    }
}

/// A single-command write: the caller's key and request, one command.
async fn write<S: EventStore>(
    app: &App<S>,
    p: &Principal,
    key: Key,
    request_hash: [u8; 32],
    command: Command,
    success: StatusCode,
) -> Response {
    run(app, p, command, idem(p, key.0, request_hash), success).await
}

/// A write that creates something (most do): answered 201 when accepted.
async fn create<S: EventStore>(
    app: &App<S>,
    p: &Principal,
    key: Key,
    request_hash: [u8; 32],
    command: Command,
) -> Response {
    write(app, p, key, request_hash, command, StatusCode::CREATED).await
}

/// Runs one command and answers with its (possibly replayed) response.
async fn run<S: EventStore>(
    app: &App<S>,
    principal: &Principal,
    command: Command,
    idempotency: Idempotency,
    success: StatusCode,
) -> Response {
    match execute(app, principal, command, idempotency, success).await {
        Ok(executed) => respond(app, principal.tenant_id, &executed).await,
        Err(problem) => problem.into_response(),
    }
}

async fn execute<S: EventStore>(
    app: &App<S>,
    principal: &Principal,
    command: Command,
    idempotency: Idempotency,
    success: StatusCode,
) -> Result<Executed, Problem> {
    let caller = Caller {
        tenant_id: principal.tenant_id,
        actor: principal.actor(),
    };
    app.service
        .execute(caller, &command, now(), Some(idempotency), |d| {
            render(d, success)
        })
        .await
        .map_err(problem_of)
}

pub(super) fn problem_of(error: ExecuteError) -> Problem {
    match error {
        ExecuteError::KeyReused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used before with a different request",
        ),
        ExecuteError::Conflict => Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "the streams changed while the command was decided; retry with the same key",
        ),
        ExecuteError::Store(e) => {
            tracing::error!(error = %e, "store failure");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store failed; retry with the same key",
            )
        }
        ExecuteError::Corrupt(e) => {
            tracing::error!(error = %e, "corrupt record");
            Problem::internal()
        }
    }
}

async fn respond<S: EventStore>(
    app: &App<S>,
    tenant_id: TenantId,
    executed: &Executed,
) -> Response {
    let answered = match answer(app, tenant_id, executed).await {
        Ok(answer) => written(executed).map(|w| (answer, w)),
        Err(problem) => Err(problem),
    };
    let ((status, body), written) = match answered {
        Ok(answered) => answered,
        Err(problem) => return problem.into_response(),
    };
    let content_type = if status.is_client_error() || status.is_server_error() {
        super::problem::PROBLEM_CONTENT_TYPE
    } else {
        "application/json"
    };
    let mut response = (status, axum::body::Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !written.is_empty() {
        let token = HeaderValue::from_str(&written.seal(tenant_id)).expect("tokens are base64url");
        headers.insert(TOKEN_HEADER, token);
    }
    if executed.replayed() {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn idem(p: &Principal, key: IdempotencyKey, request_hash: [u8; 32]) -> Idempotency {
    let mut h = Sha256::new();
    h.update(request_hash);
    match p.vendor_id {
        Some(vendor) => {
            h.update([1]);
            h.update(vendor.as_str().as_bytes());
        }
        None => h.update([0]),
    }
    Idempotency {
        key,
        request_hash: h.finalize().into(),
    }
}

/// The hash of a write addressed by path parameters: the path is part of it.
fn hash_of(path: &str, body: &impl Serialize) -> [u8; 32] {
    request_hash(path, &serde_json::to_vec(body).expect("a body encodes"))
}

pub async fn configure_tenant<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    key: Key,
    body: Body<ConfigureTenant>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let command = Command::Tenant(body.value);
    Ok(write(&app, &p, key, body.request_hash, command, StatusCode::OK).await)
}

pub async fn register_vendor<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    key: Key,
    body: Body<RegisterVendor>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let command = Command::Vendor(VendorCommand::Register(body.value));
    Ok(create(&app, &p, key, body.request_hash, command).await)
}

pub async fn change_commission<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    key: Key,
    body: Body<CommissionRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let vendor_id = path_id(&id, "vendor id", VendorId::parse)?;
    let hash = hash_of(&format!("/v1/vendors/{id}/commission"), &body.value);
    let command = Command::Vendor(VendorCommand::ChangeCommissionRate(ChangeCommissionRate {
        vendor_id,
        commission_rate: body.value.commission_rate,
    }));
    Ok(create(&app, &p, key, hash, command).await)
}

pub async fn enroll_employee<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    key: Key,
    body: Body<OpenCreditAccount>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let command = Command::Credit(CreditCommand::Open(body.value));
    Ok(create(&app, &p, key, body.request_hash, command).await)
}

pub async fn adjust_credit<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    key: Key,
    body: Body<AdjustmentRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin])?;
    let employee_id = path_id(&id, "employee id", EmployeeId::parse)?;
    let hash = hash_of(
        &format!("/v1/employees/{id}/credit/adjustments"),
        &body.value,
    );
    let command = Command::Credit(CreditCommand::Adjust(AdjustCredit {
        employee_id,
        amount: body.value.amount,
        reason: body.value.reason,
    }));
    Ok(create(&app, &p, key, hash, command).await)
}

/// The vendor a sale is recorded for: the cashier's own, or the one an
/// admin names.
fn sale_vendor(p: &Principal, named: Option<VendorId>) -> Result<VendorId, Problem> {
    if p.has(Role::Admin) {
        return named.ok_or_else(|| Problem::validation("vendor_id is required for an admin"));
    }
    require(p, &[Role::Cashier])?;
    let own = p.vendor_id.ok_or_else(Problem::forbidden)?;
    match named {
        Some(v) if v != own => Err(Problem::forbidden()),
        _ => Ok(own),
    }
}

fn record_sale_command(
    p: &Principal,
    sale: SaleRequest,
    now: Timestamp,
) -> Result<Command, Problem> {
    let vendor_id = sale_vendor(p, sale.vendor_id)?;
    Ok(Command::Sale(SaleCommand::Record(RecordSale {
        order_id: sale.order_id,
        vendor_id,
        lines: sale.lines,
        payment: sale.payment,
        occurred_at: sale.occurred_at,
        now,
    })))
}

pub async fn record_sale<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    key: Key,
    body: Body<SaleRequest>,
) -> Result<Response, Problem> {
    let command = record_sale_command(&p, body.value, now())?;
    Ok(create(&app, &p, key, body.request_hash, command).await)
}

/// Each sale of the batch is its own command with its own key: one result
/// per sale, in order. A sale first tried online and then synced in a batch
/// with the same key is recognised as the same request.
pub async fn record_sales_batch<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    body: Body<BatchRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Cashier])?;
    let sales = body.value.sales;
    let keys = batch_keys(&sales)?;
    let mut results = Vec::with_capacity(sales.len());
    for (sale, key) in sales.into_iter().zip(keys) {
        results.push(batch_sale(&app, &p, sale, key).await?);
    }
    Ok(axum::Json(json!({ "results": results })).into_response())
}

/// The key of every sale of a batch of the right size: the sale's own, or
/// `order:<order_id>`.
fn batch_keys(sales: &[BatchSale]) -> Result<Vec<IdempotencyKey>, Problem> {
    if sales.is_empty() || sales.len() > BATCH_SALES_MAX {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!("a batch holds 1 to {BATCH_SALES_MAX} sales"),
        ));
    }
    sales
        .iter()
        .map(|sale| {
            match &sale.idempotency_key {
                Some(k) => IdempotencyKey::parse(k),
                None => IdempotencyKey::parse(&format!("order:{}", sale.order_id.as_str())),
            }
            .map_err(|e| Problem::validation(format!("sale {}: {e}", sale.order_id.as_str())))
        })
        .collect()
}

/// One sale of a batch, run as the checkout it would have been online: its
/// result, with the consistency token of what it wrote (`null` when it
/// wrote nothing).
async fn batch_sale<S: EventStore>(
    app: &App<S>,
    p: &Principal,
    sale: BatchSale,
    key: IdempotencyKey,
) -> Result<Value, Problem> {
    let order_id = sale.order_id;
    let single = SaleRequest {
        order_id: sale.order_id,
        vendor_id: sale.vendor_id,
        lines: sale.lines,
        payment: sale.payment,
        occurred_at: Some(sale.occurred_at),
    };
    let hash = hash_of("/v1/sales", &single);
    let outcome = match record_sale_command(p, single, now()) {
        Err(problem) => Err(problem),
        Ok(command) => {
            let idempotency = idem(p, key.clone(), hash);
            execute(app, p, command, idempotency, StatusCode::CREATED).await
        }
    };
    let executed = match outcome {
        Ok(executed) => executed,
        Err(problem) => {
            let result = json!({
                "idempotency_key": key.as_str(),
                "order_id": order_id,
                "result": "rejected",
                "status": problem.status,
                "consistency_token": null,
                "body": problem,
            });
            return Ok(result);
        }
    };
    let (status, body) = answer(app, p.tenant_id, &executed).await?;
    let written = written(&executed)?;
    let token = (!written.is_empty()).then(|| written.seal(p.tenant_id));
    let body: Value = serde_json::from_slice(&body).expect("answers are JSON");
    let result = match (executed.replayed(), status.is_success()) {
        (true, _) => "duplicate",
        (false, true) => "created",
        (false, false) => "rejected",
    };
    let result = json!({
        "idempotency_key": key.as_str(),
        "order_id": order_id,
        "result": result,
        "status": status.as_u16(),
        "consistency_token": token,
        "body": body,
    });
    Ok(result)
}

/// The order a payment or refund addresses. Another vendor may own it:
/// outside the caller's vendor it does not exist.
async fn addressed_order<S: EventStore>(
    app: &App<S>,
    p: &Principal,
    id: &str,
) -> Result<OrderId, Problem> {
    let order_id = path_id(id, "order id", OrderId::parse)?;
    if p.has(Role::Admin) {
        return Ok(order_id);
    }
    let state = app
        .service
        .aggregates(p.tenant_id, &[StreamId::order(order_id)])
        .await
        .map_err(problem_of)?;
    let vendor = state.order_state(order_id).map(|o| o.vendor_id);
    match vendor {
        Some(v) if p.vendor_id == Some(v) => Ok(order_id),
        _ => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "no such order",
        )),
    }
}

pub async fn receive_payment<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    key: Key,
    body: Body<PaymentRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor, Role::Cashier])?;
    let order_id = addressed_order(&app, &p, &id).await?;
    let hash = hash_of(&format!("/v1/orders/{id}/payments"), &body.value);
    let command = Command::Sale(SaleCommand::ReceivePayment(ReceivePayment {
        order_id,
        amount: body.value.amount,
        tender: body.value.tender,
        now: now(),
    }));
    Ok(create(&app, &p, key, hash, command).await)
}

pub async fn issue_refund<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    key: Key,
    body: Body<RefundRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Vendor])?;
    let order_id = addressed_order(&app, &p, &id).await?;
    let hash = hash_of(&format!("/v1/orders/{id}/refunds"), &body.value);
    let command = Command::Sale(SaleCommand::Refund(IssueRefund {
        order_id,
        refund_id: body.value.refund_id,
        amount: body.value.amount,
        reason: body.value.reason,
        now: now(),
    }));
    Ok(create(&app, &p, key, hash, command).await)
}

/// Replenishes every enrolled employee for the period. Each employee's
/// replenishment is idempotent by period on its own, so a rerun after a
/// crash finishes the job; the summary is remembered under the key.
pub async fn replenish<S: EventStore>(
    axum::extract::State(app): St<S>,
    Auth(p): Auth,
    Params(wait): Params<WaitParams>,
    key: Key,
    body: Body<ReplenishRequest>,
) -> Result<Response, Problem> {
    require(&p, &[Role::Admin, Role::Service])?;
    let caller = Caller {
        tenant_id: p.tenant_id,
        actor: p.actor(),
    };
    let idempotency = idem(&p, key.0, body.request_hash);
    if let Some(replayed) = app
        .service
        .replay(caller, &idempotency)
        .await
        .map_err(problem_of)?
    {
        return Ok(respond(&app, p.tenant_id, &replayed).await);
    }
    let period = body.value.period;
    // Every account the credit projection lists, once it reflects the
    // writes the caller's token names (its last enrollment, say). An account
    // opened moments before and not named may not be listed yet; the next
    // run for the period replenishes it, and no account twice.
    visible(&app, p.tenant_id, wait.consistency_token.as_deref()).await?;
    let mut employees: Vec<EmployeeId> = Vec::new();
    loop {
        let page = app
            .views
            .credit_views(p.tenant_id, employees.last().copied(), QUERY_ROWS_MAX)
            .await
            .map_err(super::handler::unavailable)?;
        let full = page.len() == QUERY_ROWS_MAX;
        employees.extend(page.into_iter().map(|(id, _)| id));
        if !full {
            break;
        }
    }
    let (mut replenished, mut unchanged, mut skipped) = (Vec::new(), 0u64, Vec::new());
    for employee_id in employees {
        let command = Command::Credit(CreditCommand::Replenish(ReplenishCredit {
            employee_id,
            period,
            now: now(),
        }));
        let executed = app
            .service
            .execute(caller, &command, now(), None, |_| Vec::new())
            .await
            .map_err(problem_of)?;
        match executed.decision {
            Some(Decision::Accepted(events)) if events.is_empty() => unchanged += 1,
            Some(Decision::Accepted(_)) => replenished.push(employee_id),
            Some(Decision::Rejected(r)) => skipped.push(
                json!({"employee_id": employee_id, "code": r.code(), "detail": r.to_string()}),
            ),
            None => unreachable!("unkeyed commands are never replays"),
        }
    }
    let body = json!({
        "period": period,
        "replenished": replenished,
        "unchanged": unchanged,
        "skipped": skipped,
    });
    let executed = app
        .service
        .remember(caller, idempotency, stored(200, &body))
        .await
        .map_err(problem_of)?;
    Ok(respond(&app, p.tenant_id, &executed).await)
}
