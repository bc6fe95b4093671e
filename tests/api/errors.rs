//! The error catalogue: each bad request gets its status and stable code,
//! as `application/problem+json`, and writes nothing.

use command_api::auth::{AUDIENCE, LocalKey};
use ledger_core::envelope::Role;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::harness::*;

on_both_stores! {
    tokens_that_do_not_prove_a_caller_are_unauthorized,
    bodies_that_do_not_parse_are_refused_before_anything_is_decided,
    amounts_and_limits_the_domain_refuses_are_remembered_without_events,
    regression_permissive_amounts_are_refused_on_every_route,
    rules_refuse_with_their_own_codes,
    idempotency_keys_replay_or_refuse,
    offline_batches_have_their_own_limits,
    routes_and_query_parameters_are_checked,
    every_answer_has_a_request_id_and_writes_name_what_they_wrote,
    concurrent_requests_neither_double_write_nor_overdraw [4],
}

/// A raw (possibly malformed) body sent as JSON.
fn raw(request: RequestBuilder, body: impl Into<String>) -> RequestBuilder {
    request
        .header(CONTENT_TYPE, "application/json")
        .body(body.into())
}

async fn tokens_that_do_not_prove_a_caller_are_unauthorized(store: Backend) {
    let api = Api::start(store).await;
    let other_key = LocalKey::generate().expect("a key");
    let valid = claims(T1, "cashier-x", &[Role::Cashier], Some(V1), None);
    let mut expired = valid.clone();
    expired.iat -= 7200;
    expired.exp = expired.iat + 3600;
    let mut wrong_audience = valid.clone();
    wrong_audience.aud = format!("{AUDIENCE}-elsewhere");
    let mut no_vendor = valid.clone();
    no_vendor.vendor = None;
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some("Basic YWRtaW46YWRtaW4=".to_owned())),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("garbage", Some("Bearer not.a.jwt".to_owned())),
        (
            "another key",
            Some(format!("Bearer {}", other_key.mint(&valid))),
        ),
        (
            "expired",
            Some(format!("Bearer {}", api.server.key.mint(&expired))),
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", api.server.key.mint(&wrong_audience))),
        ),
        (
            "cashier without vendor",
            Some(format!("Bearer {}", api.server.key.mint(&no_vendor))),
        ),
    ];
    for (what, header) in bad {
        let with = |request: RequestBuilder| match &header {
            Some(h) => request.header(AUTHORIZATION, h),
            None => request,
        };
        let read = with(api.anonymous(Method::GET, "/v1/orders"));
        let reply = check(read, 401, "unauthorized").await;
        assert!(!reply.body["detail"].as_str().unwrap().is_empty(), "{what}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer", "{what}");
        let key = format!("auth-{}", what.replace(' ', "-"));
        let write = with(api.anonymous(Method::POST, "/v1/sales"))
            .header("idempotency-key", &key)
            .json(&sale("UNAUTH", "1.00", cash()));
        api.refused(write, 401, "unauthorized", Some(&key)).await;
    }
    // The same token, properly signed, is fine.
    api.sell(
        &api.server.key.mint(&valid),
        "auth-ok",
        sale("AUTH-OK", "1.00", cash()),
    )
    .await;
    api.stop().await;
}

async fn bodies_that_do_not_parse_are_refused_before_anything_is_decided(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let good = sale("GOOD", "1.00", cash());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        f(&mut body);
        body.to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("truncated", r#"{"order_id": "GOOD", "lines": ["#.to_owned()),
        ("not an object", "[1, 2, 3]".to_owned()),
        ("empty", String::new()),
        ("trailing", format!("{good} x")),
        (
            "quantity as text",
            with(&|b| b["lines"][0]["quantity"] = json!("two")),
        ),
        (
            "negative quantity",
            with(&|b| b["lines"][0]["quantity"] = json!(-1)),
        ),
        ("order id as number", with(&|b| b["order_id"] = json!(5))),
        ("bad id characters", with(&|b| b["order_id"] = json!("a b"))),
        (
            "id too long",
            with(&|b| b["order_id"] = json!("x".repeat(37))),
        ),
        ("unknown field", with(&|b| b["discount"] = json!("1.00"))),
        (
            "unknown line field",
            with(&|b| b["lines"][0]["tax"] = json!("1.00")),
        ),
        (
            "missing lines",
            with(&|b| {
                b.as_object_mut().unwrap().remove("lines");
            }),
        ),
        (
            "unknown method",
            with(&|b| b["payment"] = json!({"method": "barter"})),
        ),
        (
            "credit without employee",
            with(&|b| b["payment"] = json!({"method": "credit"})),
        ),
        (
            "bad due date",
            with(&|b| b["payment"] = json!({"method": "invoice", "due_date": "2026-13-01"})),
        ),
        (
            "bad occurred_at",
            with(&|b| b["occurred_at"] = json!("yesterday")),
        ),
        (
            "amount not a number",
            with(&|b| b["lines"][0]["unit_price"] = json!("ten")),
        ),
        // A JSON number may already have lost digits in the client's
        // float; amounts travel as decimal strings only.
        (
            "amount as a JSON number",
            with(&|b| b["lines"][0]["unit_price"] = json!(0.1)),
        ),
    ];
    for (what, body) in cases {
        let key = format!("parse-{}", what.replace(' ', "-"));
        let reply = api
            .refused(
                raw(api.post(&cashier, "/v1/sales", &key), body),
                400,
                "validation_failed",
                Some(&key),
            )
            .await;
        assert!(reply.body["detail"].is_string(), "{what}");
    }

    // Settings and other writes parse strictly too.
    let admin = api.admin();
    for (i, (path, body)) in [
        ("/v1/tenant", json!({"currency": "XYZ", "time_zone": ZONE})),
        ("/v1/tenant", json!({"currency": "PHP", "time_zone": "Mars/Olympus"})),
        ("/v1/tenant", json!({"currency": "PHP"})),
        ("/v1/vendors", json!({"vendor_id": "V9", "name": "", "commission_rate": 10})),
        ("/v1/vendors", json!({"vendor_id": "V9", "name": "N", "commission_rate": 10001})),
        ("/v1/vendors/V1/commission", json!({"commission_rate": -1})),
        ("/v1/employees", json!({"employee_id": "E9", "name": "N", "policy": {"allowance": "1", "cadence": "weekly", "mode": "top_up"}})),
        ("/v1/employees/E1/credit/adjustments", json!({"amount": "1.00", "reason": ""})),
        ("/v1/employees/E1/credit/adjustments", json!({"amount": 1.5, "reason": "float"})),
        ("/v1/employees", json!({"employee_id": "E9", "name": "N", "policy": {"allowance": 100, "cadence": "monthly", "mode": "top_up"}})),
        ("/v1/credit/replenishments", json!({"period": "2026-13-H1"})),
        ("/v1/orders/X/refunds", json!({"refund_id": "R", "amount": 1, "extra": true})),
        ("/v1/orders/X/payments", json!({"amount": "1.00", "tender": {"method": "invoice"}})),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("strict-{i}");
        let method = if path == "/v1/tenant" { Method::PUT } else { Method::POST };
        let request = api
            .http
            .request(method, api.url(path))
            .bearer_auth(&admin)
            .header("idempotency-key", &key)
            .json(&body);
        api.refused(request, 400, "validation_failed", None).await;
        assert!(api.idempotency(T1, &key).await.is_none(), "{path} {body}");
    }

    // Only JSON is accepted.
    // Regression: by prefix, `application/jsonfoo` and
    // `application/json-patch+json` were taken as JSON.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonfoo"),
        Some("application/json-patch+json"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        let mut request = api
            .post(&cashier, "/v1/sales", "media")
            .body(good.to_string());
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        api.refused(request, 415, "unsupported_media_type", Some("media"))
            .await;
    }
    ok(
        api.post(&cashier, "/v1/sales", "media")
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(good.to_string()),
        201,
    )
    .await;
    // Regression: of two Idempotency-Key headers, the first silently won.
    let reply = api
        .refused(
            api.post(&cashier, "/v1/sales", "two-keys-a")
                .header("idempotency-key", "two-keys-b")
                .json(&sale("TWO-KEYS", "1.00", cash())),
            400,
            "validation_failed",
            Some("two-keys-a"),
        )
        .await;
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("one Idempotency-Key")
    );
    assert!(api.idempotency(T1, "two-keys-b").await.is_none());
    assert_eq!(api.stream_len(T1, "order/TWO-KEYS").await, 0);
    // Regression: media types are case-insensitive; this was a 415.
    let mut upper = good.clone();
    upper["order_id"] = json!("MEDIA-UPPER");
    ok(
        api.post(&cashier, "/v1/sales", "media-upper")
            .header(CONTENT_TYPE, "Application/JSON")
            .body(upper.to_string()),
        201,
    )
    .await;

    // Bodies have a size limit.
    let mut huge = good.clone();
    huge["lines"][0]["item"] = json!("x".repeat(70 * 1024));
    api.refused(
        raw(api.post(&cashier, "/v1/sales", "huge"), huge.to_string()),
        413,
        "payload_too_large",
        Some("huge"),
    )
    .await;
    api.stop().await;
}

async fn amounts_and_limits_the_domain_refuses_are_remembered_without_events(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let admin = api.admin();
    let line = |quantity: u32, price: &str| json!({"item": "A", "quantity": quantity, "unit_price": price});
    let with_lines = |order: &str, lines: Vec<Value>| json!({"order_id": order, "lines": lines, "payment": cash()});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "zero",
            with_lines("N-2", vec![line(1, "0")]),
            "validation_failed",
        ),
        (
            "over-precise",
            with_lines("N-3", vec![line(1, "1.005")]),
            "validation_failed",
        ),
        (
            "zero quantity",
            with_lines("N-4", vec![line(0, "1.00")]),
            "validation_failed",
        ),
        ("no lines", with_lines("N-5", vec![]), "validation_failed"),
        (
            "too many lines",
            with_lines("N-6", vec![line(1, "1.00"); 101]),
            "limit_exceeded",
        ),
        (
            "too many items",
            with_lines("N-7", vec![line(10_001, "1.00")]),
            "limit_exceeded",
        ),
        (
            "too much money",
            with_lines("N-8", vec![line(10_000, "999999999.00")]),
            "limit_exceeded",
        ),
        (
            "price too high",
            with_lines("N-9", vec![line(1, "1000000000.01")]),
            "limit_exceeded",
        ),
    ];
    for (what, body, code) in cases {
        let key = format!("amount-{}", what.replace(' ', "-"));
        api.rejected(
            T1,
            api.post(&cashier, "/v1/sales", &key).json(&body),
            400,
            code,
            &key,
        )
        .await;
    }
    // The limits themselves are fine.
    api.sell(
        &cashier,
        "at-limits",
        with_lines("AT-LIMITS", vec![line(10_000, "0.01"); 100]),
    )
    .await;

    let mut offline = sale("OLD", "1.00", cash());
    offline["occurred_at"] = json!(days_ago(31, 0));
    api.rejected(
        T1,
        api.post(&cashier, "/v1/sales", "too-old").json(&offline),
        400,
        "validation_failed",
        "too-old",
    )
    .await;
    offline["occurred_at"] = json!(days_ago(0, 3600));
    api.rejected(
        T1,
        api.post(&cashier, "/v1/sales", "future").json(&offline),
        400,
        "validation_failed",
        "future",
    )
    .await;

    api.sell(&cashier, "paid", sale("PAID", "50.00", cash()))
        .await;
    for (what, amount) in [("zero", "0.00"), ("precise", "0.001")] {
        let key = format!("refund-{what}");
        api.rejected(
            T1,
            api.post(&admin, "/v1/orders/PAID/refunds", &key)
                .json(&json!({"refund_id": key, "amount": amount})),
            400,
            "validation_failed",
            &key,
        )
        .await;
    }
    api.rejected(
        T1,
        api.post(&admin, "/v1/employees/E1/credit/adjustments", "adj-precise")
            .json(&json!({"amount": "0.005", "reason": "rounding"})),
        400,
        "validation_failed",
        "adj-precise",
    )
    .await;
    api.stop().await;
}

/// A request body built around one amount text.
type BodyOf = Box<dyn Fn(&str) -> Value>;

/// Regression: `"1e2"` and `"1_000"` were recorded as prices (gross 100.00
/// and 1000.00), and `"+1.00"`, `".5"`, `"5."`, `"0001.00"`, `"1E-2"` were
/// accepted too. Every money field of every route has one grammar; text
/// outside it is refused at the edge, naming the field, writing nothing and
/// storing no key. Digits beyond the tenant currency's minor unit are the
/// decider's to refuse, naming the field too.
async fn regression_permissive_amounts_are_refused_on_every_route(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let admin = api.admin();
    api.sell(
        &cashier,
        "grammar-paid",
        sale("GRAMMAR-PAID", "50.00", cash()),
    )
    .await;
    let mut invoice = sale(
        "GRAMMAR-INVOICE",
        "50.00",
        json!({"method": "invoice", "due_date": "2099-01-01"}),
    );
    invoice["vendor_id"] = json!(V1);
    ok(
        api.post(&admin, "/v1/sales", "grammar-invoice")
            .json(&invoice),
        201,
    )
    .await;
    let routes: Vec<(&str, &str, BodyOf)> = vec![
        (
            "/v1/sales",
            "lines[0].unit_price",
            Box::new(|a: &str| {
                let mut body = sale("GRAMMAR-NEW", a, cash());
                body["vendor_id"] = json!(V1);
                body
            }),
        ),
        (
            "/v1/orders/GRAMMAR-PAID/refunds",
            "amount",
            Box::new(|a: &str| json!({"refund_id": "R-GRAMMAR", "amount": a})),
        ),
        (
            "/v1/orders/GRAMMAR-INVOICE/payments",
            "amount",
            Box::new(|a: &str| json!({"amount": a, "tender": {"method": "cash"}})),
        ),
        (
            "/v1/employees/E1/credit/adjustments",
            "amount",
            Box::new(|a: &str| json!({"amount": a, "reason": "grammar"})),
        ),
        (
            "/v1/employees",
            "policy.allowance",
            Box::new(
                |a: &str| json!({"employee_id": "E-GRAMMAR", "name": "N", "policy": {"allowance": a, "cadence": "monthly", "mode": "top_up"}}),
            ),
        ),
        (
            "/v1/employees",
            "policy.cap",
            Box::new(
                |a: &str| json!({"employee_id": "E-GRAMMAR", "name": "N", "policy": {"allowance": "1.00", "cadence": "monthly", "mode": "accumulate", "cap": a}}),
            ),
        ),
    ];
    let bad = [
        "1e2", "1_000", "+1.00", ".5", "5.", "0001.00", "1E-2", "1.23456", " 1", "1,00", "",
    ];
    for (path, field, body) in &routes {
        let bad_here: Vec<&str> = match *path {
            // A negative adjustment means something; elsewhere it is refused.
            "/v1/employees/E1/credit/adjustments" => bad.to_vec(),
            _ => bad.iter().copied().chain(["-1.00"]).collect(),
        };
        for (i, amount) in bad_here.into_iter().enumerate() {
            let key = format!("grammar{}-{field}-{i}", path.replace('/', "-"));
            let reply = api
                .refused(
                    api.post(&admin, path, &key).json(&body(amount)),
                    400,
                    "validation_failed",
                    Some(&key),
                )
                .await;
            let detail = reply.body["detail"].as_str().unwrap();
            assert!(detail.contains(field), "{path} {amount:?}: {detail}");
            assert!(
                detail.contains("is not an amount"),
                "{path} {amount:?}: {detail}"
            );
        }
        // Digits beyond PHP's two: the decider refuses, naming the field.
        let key = format!("grammar{}-{field}-scale", path.replace('/', "-"));
        let before = api.event_count().await;
        let reply = check(
            api.post(&admin, path, &key).json(&body("1.500")),
            400,
            "validation_failed",
        )
        .await;
        let detail = reply.body["detail"].as_str().unwrap();
        let domain_field = field.replace("[0]", "").replace("policy.", "");
        assert!(detail.contains(&domain_field), "{path}: {detail}");
        assert!(detail.contains("decimal places"), "{path}: {detail}");
        assert_eq!(
            api.event_count().await,
            before,
            "{path}: 1.500 wrote events"
        );
    }
    // A signed adjustment is still signed; the grammar itself is fine.
    ok(
        api.post(
            &admin,
            "/v1/employees/E1/credit/adjustments",
            "grammar-negative",
        )
        .json(&json!({"amount": "-0.50", "reason": "grammar"})),
        201,
    )
    .await;
    ok(
        api.post(&cashier, "/v1/sales", "grammar-ok")
            .json(&sale("GRAMMAR-OK", "0.5", cash())),
        201,
    )
    .await;
    api.stop().await;
}

async fn rules_refuse_with_their_own_codes(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let admin = api.admin();

    let mut unknown_vendor = sale("U-1", "1.00", cash());
    unknown_vendor["vendor_id"] = json!("NOPE");
    api.rejected(
        T1,
        api.post(&admin, "/v1/sales", "unknown-vendor")
            .json(&unknown_vendor),
        404,
        "vendor_not_found",
        "unknown-vendor",
    )
    .await;
    api.rejected(
        T1,
        api.post(&api.cashier("V9"), "/v1/sales", "unregistered-vendor")
            .json(&sale("U-2", "1.00", cash())),
        404,
        "vendor_not_found",
        "unregistered-vendor",
    )
    .await;
    api.rejected(
        T1,
        api.post(&cashier, "/v1/sales", "unknown-employee")
            .json(&sale("U-3", "1.00", credit("NOBODY"))),
        404,
        "employee_not_found",
        "unknown-employee",
    )
    .await;
    api.rejected(
        T1,
        api.post(
            &admin,
            "/v1/employees/NOBODY/credit/adjustments",
            "adj-nobody",
        )
        .json(&json!({"amount": "1.00", "reason": "x"})),
        404,
        "employee_not_found",
        "adj-nobody",
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/vendors/NOPE/commission", "rate-nope")
            .json(&json!({"commission_rate": 1})),
        404,
        "vendor_not_found",
        "rate-nope",
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/orders/NOPE/refunds", "refund-nope")
            .json(&json!({"refund_id": "R", "amount": "1.00"})),
        404,
        "order_not_found",
        "refund-nope",
    )
    .await;

    // Not enough credit: refused and remembered, even once there is enough.
    let big = sale("BIG", "1000.01", credit(E1));
    api.rejected(
        T1,
        api.post(&cashier, "/v1/sales", "big").json(&big),
        422,
        "insufficient_credit",
        "big",
    )
    .await;
    assert_eq!(api.stream_len(T1, "order/BIG").await, 0);
    ok(
        api.post(&admin, "/v1/employees/E1/credit/adjustments", "top-up")
            .json(&json!({"amount": "0.01", "reason": "just enough"})),
        201,
    )
    .await;
    let again = check(
        api.post(&cashier, "/v1/sales", "big").json(&big),
        422,
        "insufficient_credit",
    )
    .await;
    assert!(again.replayed());
    let r = api.sell(&cashier, "big-2", big).await;
    assert_eq!(r.event_types(), ["SaleRecorded", "CreditSpent"]);
    api.rejected(
        T1,
        api.post(&admin, "/v1/employees/E1/credit/adjustments", "overdraw")
            .json(&json!({"amount": "-0.01", "reason": "too much"})),
        422,
        "insufficient_credit",
        "overdraw",
    )
    .await;

    // Over-refund, and the refund id is the refund's own key.
    api.sell(&cashier, "o-1", sale("O-1", "80.00", cash()))
        .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/orders/O-1/refunds", "over")
            .json(&json!({"refund_id": "OR-1", "amount": "80.01"})),
        422,
        "refund_exceeds_remaining",
        "over",
    )
    .await;
    ok(
        api.post(&admin, "/v1/orders/O-1/refunds", "part")
            .json(&json!({"refund_id": "OR-1", "amount": "30.00"})),
        201,
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/orders/O-1/refunds", "part-other-amount")
            .json(&json!({"refund_id": "OR-1", "amount": "31.00"})),
        422,
        "idempotency_key_reused",
        "part-other-amount",
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/orders/O-1/refunds", "over-2")
            .json(&json!({"refund_id": "OR-2", "amount": "50.01"})),
        422,
        "refund_exceeds_remaining",
        "over-2",
    )
    .await;

    // Things that exist already.
    api.rejected(
        T1,
        api.post(&cashier, "/v1/sales", "o-1-again")
            .json(&sale("O-1", "80.00", cash())),
        409,
        "order_exists",
        "o-1-again",
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/vendors", "v1-again")
            .json(&json!({"vendor_id": V1, "name": "Again", "commission_rate": 0})),
        409,
        "vendor_exists",
        "v1-again",
    )
    .await;
    api.rejected(
        T1,
        api.post(&admin, "/v1/employees", "e1-again").json(&json!({
            "employee_id": E1,
            "name": "Again",
            "policy": {"allowance": "1.00", "cadence": "monthly", "mode": "top_up"},
        })),
        409,
        "credit_account_exists",
        "e1-again",
    )
    .await;

    // An admin's sale must name its vendor.
    api.refused(
        api.post(&admin, "/v1/sales", "no-vendor")
            .json(&sale("NV", "1.00", cash())),
        400,
        "validation_failed",
        Some("no-vendor"),
    )
    .await;
    api.stop().await;
}

async fn idempotency_keys_replay_or_refuse(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let body = sale("I-1", "12.34", credit(E1));

    // Every write needs a usable key.
    for (what, key) in [
        ("missing", None),
        ("empty", Some(String::new())),
        ("too long", Some("k".repeat(129))),
        ("not printable", Some("a key".to_owned())),
    ] {
        let mut request = api
            .http
            .post(api.url("/v1/sales"))
            .bearer_auth(&cashier)
            .json(&body);
        if let Some(k) = key {
            request = request.header("idempotency-key", k);
        }
        let reply = api.refused(request, 400, "validation_failed", None).await;
        assert!(reply.body["detail"].is_string(), "{what}");
    }

    let first = api.sell(&cashier, "i-1", body.clone()).await;
    assert!(!first.replayed());
    let before = api.event_count().await;

    // The same request again, however it is spelled: the same answer.
    let respelled = format!(
        "{{ \"payment\": {{\"employee_id\": \"{E1}\", \"method\": \"credit\"}},\n  \"lines\": [{{\"unit_price\": \"12.34\", \"quantity\": 1, \"item\": \"ITEM\"}}], \"order_id\": \"I-1\" }}"
    );
    for request in [
        api.post(&cashier, "/v1/sales", "i-1").json(&body),
        raw(api.post(&cashier, "/v1/sales", "i-1"), respelled),
    ] {
        let again = ok(request, 201).await;
        assert!(again.replayed(), "{again:?}");
        assert_eq!(again.body, first.body);
        assert_eq!(again.token(), first.token());
        assert_eq!(api.event_count().await, before);
    }

    // The same key with another request: refused, nothing written.
    let mut changed = body.clone();
    changed["lines"][0]["quantity"] = json!(2);
    let mut other_order = body.clone();
    other_order["order_id"] = json!("I-2");
    for request in [
        api.post(&cashier, "/v1/sales", "i-1").json(&changed),
        api.post(&cashier, "/v1/sales", "i-1").json(&other_order),
        api.post(&api.admin(), "/v1/vendors", "i-1")
            .json(&json!({"vendor_id": "V9", "name": "N", "commission_rate": 0})),
        api.post(&api.admin(), "/v1/orders/I-1/refunds", "i-1")
            .json(&json!({"refund_id": "R", "amount": "1.00"})),
    ] {
        api.refused(request, 422, "idempotency_key_reused", None)
            .await;
    }
    assert_eq!(api.stream_len(T1, "order/I-1").await, 1);
    assert_eq!(api.stream_len(T1, "order/I-2").await, 0);
    let view = ok(api.get_at(&cashier, "/v1/orders/I-1", &first.token()), 200).await;
    assert_eq!(view.body["gross"]["amount"], "12.34");

    // A key is bound to its path too: the same body on another order.
    ok(
        api.post(&api.admin(), "/v1/orders/I-1/refunds", "refund-key")
            .json(&json!({"refund_id": "R", "amount": "1.00"})),
        201,
    )
    .await;
    api.sell(&cashier, "i-3", sale("I-3", "5.00", cash())).await;
    api.refused(
        api.post(&api.admin(), "/v1/orders/I-3/refunds", "refund-key")
            .json(&json!({"refund_id": "R", "amount": "1.00"})),
        422,
        "idempotency_key_reused",
        None,
    )
    .await;
    api.stop().await;
}

async fn offline_batches_have_their_own_limits(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let batch = |sales: Vec<Value>| {
        api.http
            .post(api.url("/v1/sales/batch"))
            .bearer_auth(&cashier)
            .json(&json!({"sales": sales}))
    };
    let item = |i: usize, lines: usize| {
        json!({
            "order_id": format!("OB-{i}"),
            "lines": vec![json!({"item": "ITEM-WITH-A-LONGER-CODE", "quantity": 1, "unit_price": "1.00"}); lines],
            "payment": cash(),
            "occurred_at": days_ago(1, i as i64),
        })
    };
    api.refused(batch(vec![]), 400, "limit_exceeded", None)
        .await;
    // Over 100 sales, in a body larger than a single sale may be.
    let many: Vec<Value> = (0..101).map(|i| item(i, 10)).collect();
    assert!(json!(many).to_string().len() > 64 * 1024);
    api.refused(batch(many), 400, "limit_exceeded", None).await;
    // A bad key refuses the whole batch.
    let mut bad_key = item(1, 1);
    bad_key["idempotency_key"] = json!("");
    api.refused(
        batch(vec![item(0, 1), bad_key]),
        400,
        "validation_failed",
        None,
    )
    .await;
    assert_eq!(api.stream_len(T1, "order/OB-0").await, 0);
    api.refused(
        raw(
            api.http
                .post(api.url("/v1/sales/batch"))
                .bearer_auth(&cashier),
            "{\"sales\": [",
        ),
        400,
        "validation_failed",
        None,
    )
    .await;
    let huge: Vec<Value> = (0..200).map(|i| item(i, 100)).collect();
    assert!(json!(huge).to_string().len() > 1024 * 1024);
    api.refused(batch(huge), 413, "payload_too_large", None)
        .await;

    // The largest batch that fits is accepted.
    let full: Vec<Value> = (0..100).map(|i| item(i, 10)).collect();
    let before = api.event_count().await;
    let r = ok(batch(full), 200).await;
    assert_eq!(r.body["results"].as_array().unwrap().len(), 100);
    assert_eq!(api.event_count().await - before, 100);
    api.stop().await;
}

async fn routes_and_query_parameters_are_checked(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    for path in [
        "/nope",
        "/v1",
        "/v1/nope",
        "/v1/orders/X/nope",
        "/v2/orders",
    ] {
        check(api.get(&admin, path), 404, "not_found").await;
        check(api.anonymous(Method::GET, path), 404, "not_found").await;
    }
    for (method, path) in [
        (Method::DELETE, "/v1/tenant"),
        (Method::GET, "/v1/sales"),
        (Method::PUT, "/v1/orders/X"),
        (Method::POST, "/healthz"),
    ] {
        let before = api.event_count().await;
        let reply = check(
            api.http
                .request(method.clone(), api.url(path))
                .bearer_auth(&admin),
            405,
            "method_not_allowed",
        )
        .await;
        assert!(
            reply.headers.get("allow").is_some(),
            "{method} {path}: {reply:?}"
        );
        assert_eq!(api.event_count().await, before);
    }

    let r = api
        .sell(&api.cashier(V1), "q", sale("Q", "1.00", cash()))
        .await;
    let today = r.events()[0]["event"]["business_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let range = format!("from={today}&to={today}");
    let bad: Vec<(String, &str)> = vec![
        ("/v1/orders?bogus=1".into(), "validation_failed"),
        ("/v1/orders?limit=0".into(), "validation_failed"),
        ("/v1/orders?limit=201".into(), "limit_exceeded"),
        ("/v1/orders?limit=-1".into(), "validation_failed"),
        ("/v1/orders?limit=ten".into(), "validation_failed"),
        ("/v1/orders?cursor=garbage".into(), "validation_failed"),
        ("/v1/orders?from=yesterday".into(), "validation_failed"),
        ("/v1/orders?vendor_id=a%20b".into(), "validation_failed"),
        (
            "/v1/orders?consistency_token=garbage".into(),
            "validation_failed",
        ),
        ("/v1/orders?consistency_token=".into(), "validation_failed"),
        ("/v1/orders/Q?bogus=1".into(), "validation_failed"),
        ("/v1/orders/a%20b".into(), "validation_failed"),
        ("/v1/dashboard".into(), "validation_failed"),
        (format!("/v1/dashboard?from={today}"), "validation_failed"),
        (
            "/v1/dashboard?from=2026-02-30&to=2026-03-01".into(),
            "validation_failed",
        ),
        (
            format!("/v1/dashboard?{range}&granularity=year"),
            "validation_failed",
        ),
        (
            format!("/v1/dashboard?{range}&extra=1"),
            "validation_failed",
        ),
        (
            "/v1/dashboard?from=2026-03-02&to=2026-03-01".into(),
            "validation_failed",
        ),
        (
            "/v1/dashboard?from=2020-01-01&to=2026-01-01".into(),
            "validation_failed",
        ),
        ("/v1/activity?limit=0".into(), "validation_failed"),
        ("/v1/activity?limit=501".into(), "limit_exceeded"),
        ("/v1/activity?cursor=1.2".into(), "validation_failed"),
        (
            format!("/v1/activity?vendor_id={V1}&actor=x"),
            "validation_failed",
        ),
        (
            "/v1/employees/E1/credit/statement?cursor=x".into(),
            "validation_failed",
        ),
        (
            "/v1/employees/E1/credit/statement?limit=501".into(),
            "limit_exceeded",
        ),
        (
            "/v1/employees/E1/credit?since=1".into(),
            "validation_failed",
        ),
        (
            "/v1/streams/order/Q/events?limit=1001".into(),
            "limit_exceeded",
        ),
        (
            "/v1/streams/order/Q/events?after=x".into(),
            "validation_failed",
        ),
    ];
    for (path, code) in bad {
        let reply = check(api.get(&admin, &path), 400, code).await;
        assert!(reply.body["detail"].is_string(), "{path}");
    }
    api.stop().await;
}

async fn every_answer_has_a_request_id_and_writes_name_what_they_wrote(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    // The client's request id is kept.
    let r = ok(
        api.anonymous(Method::GET, "/healthz")
            .header("x-request-id", "trace-me-123"),
        200,
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "trace-me-123");
    let a = ok(api.anonymous(Method::GET, "/healthz"), 200).await;
    let b = ok(api.anonymous(Method::GET, "/healthz"), 200).await;
    assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);

    // An accepted write names what it wrote; its replay names the same;
    // a rejection wrote nothing and names nothing.
    let created = api
        .sell(&cashier, "p-1", sale("P-1", "1.00", credit(E1)))
        .await;
    let replayed = ok(
        api.post(&cashier, "/v1/sales", "p-1")
            .json(&sale("P-1", "1.00", credit(E1))),
        201,
    )
    .await;
    assert!(replayed.replayed());
    assert_eq!(replayed.token(), created.token());
    let rejected = check(
        api.post(&cashier, "/v1/sales", "p-2")
            .json(&sale("P-1", "1.00", cash())),
        409,
        "order_exists",
    )
    .await;
    assert_eq!(rejected.maybe_token(), None);
    // A read given the token reflects both streams the checkout wrote.
    let order = ok(
        api.get_at(&cashier, "/v1/orders/P-1", &created.token()),
        200,
    )
    .await;
    assert_eq!(order.body["status"], "paid");
    let account = ok(
        api.get_at(&api.admin(), "/v1/employees/E1/credit", &created.token()),
        200,
    )
    .await;
    assert_eq!(account.body["balance"]["amount"], "999.00");
    assert!(
        account.headers.get("tally-consistency-token").is_none(),
        "reads name no writes"
    );

    // A token is its tenant's and checked; another tenant's, an altered or
    // a truncated one is refused before any store is asked.
    api.set_up_tenant(T2).await;
    let theirs = api
        .sell(
            &api.token_in(T2, "cashier-2", &[Role::Cashier], Some(V1), None),
            "t2-sale",
            sale("T2-SALE", "1.00", cash()),
        )
        .await
        .token();
    let mine = created.token();
    let mut altered = mine.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [
        theirs.clone(),
        altered,
        mine[..mine.len() - 2].to_owned(),
        format!("{mine},{theirs}"),
    ] {
        check(
            api.get_at(&cashier, "/v1/orders/P-1", &bad),
            400,
            "validation_failed",
        )
        .await;
    }
    // A few writes' tokens together, but not without limit.
    let many = vec![mine.clone(); command_api::http::consistency::TOKENS_MAX];
    ok(api.get_at(&cashier, "/v1/orders/P-1", &all(&many)), 200).await;
    let too_many = vec![mine; command_api::http::consistency::TOKENS_MAX + 1];
    check(
        api.get_at(&cashier, "/v1/orders/P-1", &all(&too_many)),
        400,
        "limit_exceeded",
    )
    .await;
    // A version the projector will not reach in time (sealed as the server
    // would, so only the wait can refuse it).
    let mut ahead = command_api::http::consistency::Written::default();
    ahead.push(
        ledger_core::id::StreamId::parse("order/P-1").unwrap(),
        ledger_core::id::StreamVersion::new(99),
    );
    let started = std::time::Instant::now();
    check(
        api.get_at(
            &cashier,
            "/v1/orders/P-1",
            &ahead.seal(ledger_core::id::TenantId::new(T1)),
        ),
        503,
        "not_yet_visible",
    )
    .await;
    assert!(started.elapsed() >= command_api::http::READ_WAIT_MAX);
    api.stop().await;
}

async fn concurrent_requests_neither_double_write_nor_overdraw(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);

    // A POS retrying one sale many times at once: one sale, one answer.
    let before = api.event_count().await;
    let body = sale("DUP", "10.00", credit(E1));
    let tasks: Vec<_> = (0..12)
        .map(|_| tokio::spawn(send(api.post(&cashier, "/v1/sales", "dup").json(&body))))
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("the request task"));
    }
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    assert_eq!(replies.iter().filter(|r| !r.replayed()).count(), 1);
    assert!(replies.iter().all(|r| r.body == replies[0].body));
    assert_eq!(api.event_count().await - before, 2);

    // Many checkouts on one employee at once: exactly what the balance
    // covers goes through (990.00 left: nine of 110.00), never more.
    let tasks: Vec<_> = (0..15)
        .map(|i| {
            let order = format!("RUSH-{i}");
            tokio::spawn(send(
                api.post(
                    &api.cashier(if i % 2 == 0 { V1 } else { V2 }),
                    "/v1/sales",
                    &order,
                )
                .json(&sale(&order, "110.00", credit(E1))),
            ))
        })
        .collect();
    let mut statuses = Vec::new();
    let mut accepted = Vec::new();
    for task in tasks {
        let reply = task.await.expect("the request task");
        if reply.status == 422 {
            assert_eq!(reply.body["code"], "insufficient_credit");
        }
        if reply.status == 201 {
            accepted.push(reply.token());
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        9,
        "{statuses:?}"
    );
    let at = all(&accepted);
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        6,
        "{statuses:?}"
    );
    let view = ok(
        api.get_at(&api.admin(), "/v1/employees/E1/credit", &at),
        200,
    )
    .await;
    assert_eq!(view.body["balance"]["amount"], "0.00");
    api.stop().await;
}
