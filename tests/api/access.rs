//! Who may do what: the role table, scoping to one's own vendor or
//! employee, and tenants that never see each other.

use std::collections::BTreeMap;

use ledger_core::envelope::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

on_both_stores! {
    every_route_refuses_the_roles_the_table_does_not_name,
    vendors_cashiers_and_employees_see_only_their_own,
    tenants_never_see_each_other,
    a_key_reused_by_another_vendor_is_not_the_same_request,
    cursors_open_only_for_their_tenant_and_query,
}

const ROLES: [&str; 5] = ["admin", "vendor", "cashier", "employee", "service"];

/// One route of the role table: a request that is valid for a permitted
/// caller, and the roles that are permitted.
struct Route {
    method: Method,
    /// The documented path, and the path requested.
    template: &'static str,
    path: String,
    body: Option<Value>,
    allowed: &'static [&'static str],
}

fn route(
    method: Method,
    template: &'static str,
    path: &str,
    body: Option<Value>,
    allowed: &'static [&'static str],
) -> Route {
    Route {
        method,
        template,
        path: path.to_owned(),
        body,
        allowed,
    }
}

async fn every_route_refuses_the_roles_the_table_does_not_name(store: Backend) {
    let api = Api::start(store).await;
    let r = api
        .sell(
            &api.cashier(V1),
            "paid",
            sale("PAID", "10.00", json!({"method": "card"})),
        )
        .await;
    let today = r.events()[0]["event"]["business_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = api
        .sell(
            &api.cashier(V1),
            "inv",
            sale(
                "INV",
                "10.00",
                json!({"method": "invoice", "due_date": today}),
            ),
        )
        .await
        .token();
    let tokens: BTreeMap<&str, String> = BTreeMap::from([
        ("admin", api.admin()),
        ("vendor", api.vendor(V1)),
        ("cashier", api.cashier(V1)),
        ("employee", api.employee(E1)),
        ("service", api.service()),
    ]);

    use Method as M;
    let routes = [
        route(
            M::PUT,
            "/v1/tenant",
            "/v1/tenant",
            Some(json!({"currency": "PHP", "time_zone": "Asia/Tokyo"})),
            &["admin"],
        ),
        route(M::GET, "/v1/tenant", "/v1/tenant", None, &ROLES),
        route(
            M::POST,
            "/v1/vendors",
            "/v1/vendors",
            Some(json!({"vendor_id": "V9", "name": "Nine", "commission_rate": 0})),
            &["admin"],
        ),
        route(
            M::POST,
            "/v1/vendors/{id}/commission",
            "/v1/vendors/V1/commission",
            Some(json!({"commission_rate": 0})),
            &["admin"],
        ),
        route(
            M::POST,
            "/v1/employees",
            "/v1/employees",
            Some(json!({
                "employee_id": "E9",
                "name": "Nine",
                "policy": {"allowance": "1.00", "cadence": "monthly", "mode": "accumulate"},
            })),
            &["admin"],
        ),
        route(
            M::POST,
            "/v1/employees/{id}/credit/adjustments",
            "/v1/employees/E1/credit/adjustments",
            Some(json!({"amount": "1.00", "reason": "why not"})),
            &["admin"],
        ),
        route(
            M::POST,
            "/v1/sales",
            "/v1/sales",
            Some(sale("NEW", "1.00", cash())),
            &["admin", "cashier"],
        ),
        route(
            M::POST,
            "/v1/sales/batch",
            "/v1/sales/batch",
            Some(json!({"sales": [{
                "order_id": "NEW-B",
                "lines": [{"item": "A", "quantity": 1, "unit_price": "1.00"}],
                "payment": cash(),
                "occurred_at": days_ago(1, 0),
            }]})),
            &["admin", "cashier"],
        ),
        route(
            M::POST,
            "/v1/orders/{id}/payments",
            "/v1/orders/INV/payments",
            Some(json!({"amount": "10.00", "tender": cash()})),
            &["admin", "vendor", "cashier"],
        ),
        route(
            M::POST,
            "/v1/orders/{id}/refunds",
            "/v1/orders/PAID/refunds",
            Some(json!({"refund_id": "RR", "amount": "1.00"})),
            &["admin", "vendor"],
        ),
        route(
            M::POST,
            "/v1/credit/replenishments",
            "/v1/credit/replenishments",
            Some(json!({"period": api.period})),
            &["admin", "service"],
        ),
        route(
            M::GET,
            "/v1/dashboard",
            &format!("/v1/dashboard?from={today}&to={today}&consistency_token={at}"),
            None,
            &["admin", "vendor"],
        ),
        route(
            M::GET,
            "/v1/orders/{id}",
            &format!("/v1/orders/PAID?consistency_token={at}"),
            None,
            &["admin", "vendor", "cashier"],
        ),
        route(
            M::GET,
            "/v1/orders",
            &format!("/v1/orders?consistency_token={at}"),
            None,
            &["admin", "vendor", "cashier"],
        ),
        route(
            M::GET,
            "/v1/employees/{id}/credit",
            &format!("/v1/employees/E1/credit?consistency_token={at}"),
            None,
            &["admin", "employee"],
        ),
        route(
            M::GET,
            "/v1/employees/{id}/credit/statement",
            &format!("/v1/employees/E1/credit/statement?consistency_token={at}"),
            None,
            &["admin", "employee"],
        ),
        route(
            M::GET,
            "/v1/activity",
            &format!("/v1/activity?consistency_token={at}"),
            None,
            &["admin", "vendor"],
        ),
        route(
            M::GET,
            "/v1/streams/{kind}/{id}/events",
            "/v1/streams/order/PAID/events",
            None,
            &["admin"],
        ),
    ];

    // The table is the documented one.
    let doc = ok(api.anonymous(M::GET, "/openapi.json"), 200).await.body;
    for r in &routes {
        let documented: Vec<&str> =
            doc["paths"][r.template][r.method.as_str().to_lowercase()]["x-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{} {} is not documented", r.method, r.template))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
        let mut documented = if documented == ["any"] {
            ROLES.to_vec()
        } else {
            documented
        };
        documented.sort_unstable();
        let mut allowed = r.allowed.to_vec();
        allowed.sort_unstable();
        assert_eq!(documented, allowed, "{} {}", r.method, r.template);
    }

    for (i, r) in routes.iter().enumerate() {
        for role in ROLES {
            let token = &tokens[role];
            let key = format!("roles-{i}-{role}");
            let mut request = api
                .http
                .request(r.method.clone(), api.url(&r.path))
                .bearer_auth(token);
            if let Some(body) = &r.body {
                request = request.header("idempotency-key", &key).json(body);
            }
            if r.allowed.contains(&role) {
                if r.method == M::GET {
                    ok(request, 200).await;
                }
                continue;
            }
            let reply = api
                .refused(
                    request,
                    403,
                    "forbidden",
                    r.body.as_ref().map(|_| key.as_str()),
                )
                .await;
            assert!(
                !reply.body.to_string().contains("PAID\""),
                "a refusal leaked data: {reply:?}"
            );
        }
    }
    api.stop().await;
}

async fn vendors_cashiers_and_employees_see_only_their_own(store: Backend) {
    let api = Api::start(store).await;
    let (v1, c1) = (api.vendor(V1), api.cashier(V1));
    let own = api.sell(&c1, "own", sale("OWN", "10.00", cash())).await;
    let r = api
        .sell(&api.cashier(V2), "theirs", sale("THEIRS", "10.00", cash()))
        .await;
    let theirs = r.token();
    let today = r.events()[0]["event"]["business_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = api
        .sell(
            &api.cashier(V2),
            "their-inv",
            sale(
                "THEIR-INV",
                "10.00",
                json!({"method": "invoice", "due_date": today}),
            ),
        )
        .await
        .token();
    let at = all(&[own.token(), theirs, at]);

    // Another vendor's order does not exist for a vendor or a cashier.
    for token in [&v1, &c1] {
        check(
            api.get_at(token, "/v1/orders/THEIRS", &at),
            404,
            "not_found",
        )
        .await;
        let list = ok(api.get_at(token, "/v1/orders", &at), 200).await;
        let ids: Vec<&Value> = list.items().iter().map(|o| &o["order_id"]).collect();
        assert_eq!(ids, [&json!("OWN")]);
        check(
            api.get_at(token, &format!("/v1/orders?vendor_id={V2}"), &at),
            403,
            "forbidden",
        )
        .await;
    }
    api.refused(
        api.post(&v1, "/v1/orders/THEIRS/refunds", "steal-refund")
            .json(&json!({"refund_id": "X", "amount": "1.00"})),
        404,
        "order_not_found",
        Some("steal-refund"),
    )
    .await;
    api.refused(
        api.post(&c1, "/v1/orders/THEIR-INV/payments", "steal-pay")
            .json(&json!({"amount": "10.00", "tender": cash()})),
        404,
        "order_not_found",
        Some("steal-pay"),
    )
    .await;
    // Which looks exactly like an order that does not exist at all.
    api.refused(
        api.post(&v1, "/v1/orders/NO-SUCH/refunds", "ghost-refund")
            .json(&json!({"refund_id": "X", "amount": "1.00"})),
        404,
        "order_not_found",
        Some("ghost-refund"),
    )
    .await;
    let mut for_v2 = sale("FOR-V2", "1.00", cash());
    for_v2["vendor_id"] = json!(V2);
    api.refused(
        api.post(&c1, "/v1/sales", "sell-for-v2").json(&for_v2),
        403,
        "forbidden",
        Some("sell-for-v2"),
    )
    .await;
    let range = format!("from={today}&to={today}");
    for path in [
        format!("/v1/dashboard?{range}&vendor_id={V2}"),
        format!("/v1/activity?vendor_id={V2}"),
        "/v1/activity?actor=cashier-V2".to_owned(),
    ] {
        check(api.get_at(&v1, &path, &at), 403, "forbidden").await;
    }
    let own = ok(api.get_at(&v1, &format!("/v1/dashboard?{range}"), &at), 200).await;
    assert_eq!(own.body["totals"]["orders"], 1);

    // An employee sees its own credit only.
    let e1 = api.employee(E1);
    ok(api.get_at(&e1, "/v1/employees/E1/credit", &at), 200).await;
    for path in [
        "/v1/employees/E2/credit",
        "/v1/employees/E2/credit/statement",
    ] {
        check(api.get_at(&e1, path, &at), 404, "not_found").await;
    }

    // An admin sees everything.
    let admin = api.admin();
    ok(api.get_at(&admin, "/v1/orders/THEIRS", &at), 200).await;
    ok(api.get_at(&admin, "/v1/employees/E2/credit", &at), 200).await;
    let all = ok(api.get_at(&admin, "/v1/orders", &at), 200).await;
    assert_eq!(all.items().len(), 3);
    api.stop().await;
}

async fn tenants_never_see_each_other(store: Backend) {
    let api = Api::start(store).await;
    api.set_up_tenant(T2).await;
    let r = api
        .sell(
            &api.cashier(V1),
            "shared-key",
            sale("X-1", "10.00", credit(E1)),
        )
        .await;
    let today = r.events()[0]["event"]["business_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let enrolled = api.enroll(&api.admin(), "ONLY-T1").await;
    // Tenant 1's writes are projected before tenant 2 looks for them (a
    // token is its tenant's, so tenant 2 cannot pass tenant 1's).
    let at = all(&[r.token(), enrolled.token()]);
    ok(api.get_at(&api.admin(), "/v1/orders/X-1", &at), 200).await;
    let order_stream_len = api.stream_len(T1, "order/X-1").await;

    let admin2 = api.token_in(T2, "admin-2", &[Role::Admin], None, None);
    let vendor2 = api.token_in(T2, "owner-2", &[Role::Vendor], Some(V1), None);
    let cashier2 = api.token_in(T2, "cashier-2", &[Role::Cashier], Some(V1), None);
    let employee2 = api.token_in(T2, "user-2", &[Role::Employee], None, Some("ONLY-T1"));

    for (token, path) in [
        (&admin2, "/v1/orders/X-1"),
        (&vendor2, "/v1/orders/X-1"),
        (&cashier2, "/v1/orders/X-1"),
        (&admin2, "/v1/employees/ONLY-T1/credit"),
        (&admin2, "/v1/employees/ONLY-T1/credit/statement"),
        (&employee2, "/v1/employees/ONLY-T1/credit"),
    ] {
        let reply = check(api.get(token, path), 404, "not_found").await;
        assert!(!reply.body.to_string().contains("10.00"), "{reply:?}");
    }
    check(
        api.get(&admin2, "/v1/streams/order/X-1/events"),
        404,
        "not_found",
    )
    .await;
    check(
        api.get(&admin2, "/v1/streams/credit/ONLY-T1/events"),
        404,
        "not_found",
    )
    .await;

    // The same ids name different things in each tenant.
    let e1 = ok(api.get(&admin2, "/v1/employees/E1/credit"), 200).await;
    assert_eq!(e1.body["balance"]["amount"], ALLOWANCE);
    for token in [&admin2, &vendor2] {
        let list = ok(api.get(token, "/v1/orders"), 200).await;
        assert!(list.items().is_empty(), "{list:?}");
        let activity = ok(api.get(token, "/v1/activity?limit=500"), 200).await;
        assert!(
            activity.items().iter().all(|e| e["tenant_id"] == T2),
            "{activity:?}"
        );
        let dashboard = ok(
            api.get(token, &format!("/v1/dashboard?from={today}&to={today}")),
            200,
        )
        .await;
        assert_eq!(dashboard.body["totals"]["orders"], 0);
    }

    // Writes addressed at another tenant's order find nothing.
    let before = api.event_count().await;
    check(
        api.post(&admin2, "/v1/orders/X-1/refunds", "t2-refund")
            .json(&json!({"refund_id": "X", "amount": "1.00"})),
        404,
        "order_not_found",
    )
    .await;
    check(
        api.post(&vendor2, "/v1/orders/X-1/refunds", "t2-refund-v")
            .json(&json!({"refund_id": "X", "amount": "1.00"})),
        404,
        "order_not_found",
    )
    .await;
    check(
        api.post(&cashier2, "/v1/orders/X-1/payments", "t2-pay")
            .json(&json!({"amount": "10.00", "tender": cash()})),
        404,
        "order_not_found",
    )
    .await;
    assert_eq!(api.event_count().await, before);
    assert_eq!(api.stream_len(T1, "order/X-1").await, order_stream_len);
    assert_eq!(api.stream_len(T2, "order/X-1").await, 0);

    // Idempotency keys are the tenant's own: the same key and body in
    // another tenant is a new sale, not a replay of the first one's.
    let r = api
        .sell(&cashier2, "shared-key", sale("X-1", "10.00", credit(E1)))
        .await;
    assert!(!r.replayed());
    assert_eq!(r.events()[0]["tenant_id"], T2);
    assert_eq!(api.stream_len(T1, "order/X-1").await, order_stream_len);
    api.stop().await;
}

async fn a_key_reused_by_another_vendor_is_not_the_same_request(store: Backend) {
    let api = Api::start(store).await;
    let mut body = sale("K-1", "10.00", cash());
    body["occurred_at"] = json!(days_ago(0, -60));
    let first = api.sell(&api.cashier(V1), "pos-key", body.clone()).await;
    // The same cashier retrying gets its answer back.
    let retry = ok(
        api.post(&api.cashier(V1), "/v1/sales", "pos-key")
            .json(&body),
        201,
    )
    .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    // Another vendor's cashier with the same key and body is a different
    // request (the token names the vendor): it must not be answered with
    // the first vendor's sale.
    let reply = api
        .refused(
            api.post(&api.cashier(V2), "/v1/sales", "pos-key")
                .json(&body),
            422,
            "idempotency_key_reused",
            None,
        )
        .await;
    assert!(!reply.body.to_string().contains(V1), "{reply:?}");
    // In a batch too, where the same sale and key would be a duplicate.
    let mut item = body.clone();
    item["idempotency_key"] = json!("pos-key");
    let before = api.event_count().await;
    let r = ok(
        api.http
            .post(api.url("/v1/sales/batch"))
            .bearer_auth(api.cashier(V2))
            .json(&json!({"sales": [item]})),
        200,
    )
    .await;
    assert_eq!(r.body["results"][0]["result"], "rejected", "{r:?}");
    assert!(!r.body.to_string().contains(&format!("\"{V1}\"")), "{r:?}");
    assert_eq!(api.event_count().await, before);
    api.stop().await;
}

/// A cursor pages on for the query and tenant that made it, and is a `400
/// validation_failed` anywhere else: another tenant (which has orders of
/// its own to page), another filter, another listing, truncated, altered.
async fn cursors_open_only_for_their_tenant_and_query(store: Backend) {
    let api = Api::start(store).await;
    api.set_up_tenant(T2).await;
    let mut mine = Vec::new();
    for id in ["C-1", "C-2", "C-3"] {
        mine.push(
            api.sell(&api.cashier(V1), id, sale(id, "1.00", cash()))
                .await
                .token(),
        );
    }
    let admin = api.admin();
    let admin2 = api.token_in(T2, "admin-2", &[Role::Admin], None, None);
    let cashier2 = api.token_in(T2, "cashier-2", &[Role::Cashier], Some(V1), None);
    let mut theirs = Vec::new();
    for id in ["D-1", "D-2"] {
        theirs.push(
            api.sell(&cashier2, id, sale(id, "1.00", cash()))
                .await
                .token(),
        );
    }
    // Both tenants' sales are projected before any page is read.
    ok(api.get_at(&admin2, "/v1/orders", &all(&theirs)), 200).await;
    let first = ok(api.get_at(&admin, "/v1/orders?limit=1", &all(&mine)), 200).await;
    let cursor = first.next_cursor().expect("a next page");
    assert!(
        !cursor.contains("C-"),
        "a cursor is opaque, not the last order's id: {cursor}"
    );
    let page = |token: &str, query: &str, cursor: &str| {
        api.get(token, &format!("{query}&cursor={cursor}"))
    };
    let second = ok(page(&admin, "/v1/orders?limit=1", &cursor), 200).await;
    assert_ne!(second.items()[0]["order_id"], first.items()[0]["order_id"]);
    // The page size may change between pages.
    let rest = ok(page(&admin, "/v1/orders?limit=5", &cursor), 200).await;
    assert_eq!(rest.items().len(), 2);

    let mut truncated = cursor.clone();
    truncated.pop();
    let mut altered: Vec<char> = cursor.chars().collect();
    altered[0] = if altered[0] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let statement = {
        let enrolled = api.enroll(&admin, "E9").await.token();
        let r = ok(
            api.get_at(
                &admin,
                "/v1/employees/E9/credit/statement?limit=1",
                &enrolled,
            ),
            200,
        )
        .await;
        r.next_cursor()
    };
    let mut refused: Vec<(String, String)> = vec![
        (
            admin2.clone(),
            format!("/v1/orders?limit=1&cursor={cursor}"),
        ),
        (
            admin.clone(),
            format!("/v1/orders?limit=1&vendor_id={V1}&cursor={cursor}"),
        ),
        (
            admin.clone(),
            format!("/v1/activity?limit=1&cursor={cursor}"),
        ),
        (
            admin.clone(),
            format!("/v1/employees/E9/credit/statement?cursor={cursor}"),
        ),
        (
            admin.clone(),
            format!("/v1/orders?limit=1&cursor={truncated}"),
        ),
        (
            admin.clone(),
            format!("/v1/orders?limit=1&cursor={altered}"),
        ),
        (admin.clone(), "/v1/orders?limit=1&cursor=1.C-1".to_owned()),
    ];
    if let Some(statement) = statement {
        refused.push((admin.clone(), format!("/v1/orders?cursor={statement}")));
    }
    for (token, path) in refused {
        let reply = check(api.get(&token, &path), 400, "validation_failed").await;
        assert!(
            !reply.body.to_string().contains("C-"),
            "a refused cursor leaks nothing: {path} {reply:?}"
        );
    }
    api.stop().await;
}
