//! Every endpoint's happy path, and that what the reads answer matches what
//! was written.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDate};
use ledger_core::envelope::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

on_both_stores! {
    tenant_settings_are_set_once_money_moves_and_read_by_every_role,
    vendors_register_and_change_commission_captured_by_later_sales,
    employees_enroll_and_admins_adjust_their_credit,
    sales_are_recorded_with_every_payment_method,
    an_invoice_is_paid_once,
    refunds_go_partial_then_full_and_give_credit_back,
    replenishment_tops_up_once_per_period,
    an_offline_batch_answers_each_sale,
    dashboards_add_up_what_was_sold,
    orders_list_newest_first_page_by_page,
    a_credit_statement_carries_the_running_balance,
    activity_is_filtered_by_vendor_or_by_actor,
    admins_read_a_stream_as_stored,
    health_and_the_document_need_no_token,
    a_token_with_two_roles_may_do_what_either_may,
}

/// The amount of a `{"amount": …, "currency": …}` value.
fn amount(v: &Value) -> &str {
    v["amount"]
        .as_str()
        .unwrap_or_else(|| panic!("not money: {v}"))
}

fn date(text: &Value) -> NaiveDate {
    text.as_str().expect("a date").parse().expect("an ISO date")
}

fn plus_days(d: NaiveDate, days: i64) -> String {
    let moved = if days >= 0 {
        d.checked_add_days(Days::new(days as u64))
    } else {
        d.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    moved.expect("in range").to_string()
}

/// The period after `period` (`YYYY-MM-H1` → `-H2` → next month's `-H1`).
fn next_period(period: &str) -> String {
    let (month, half) = period.rsplit_once('-').expect("a semi-monthly period");
    if half == "H1" {
        return format!("{month}-H2");
    }
    let first: NaiveDate = format!("{month}-01").parse().expect("a month");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("a month");
    format!("{}-H1", next.format("%Y-%m"))
}

async fn tenant_settings_are_set_once_money_moves_and_read_by_every_role(store: Backend) {
    let api = Api::empty(store).await;
    let admin = api.admin();
    check(api.get(&admin, "/v1/tenant"), 404, "not_found").await;
    // Credit is in the tenant's currency: not before there is one.
    api.rejected(
        T1,
        api.post(&admin, "/v1/employees", "too-early").json(&json!({
            "employee_id": E1,
            "name": "Early",
            "policy": {"allowance": "1.00", "cadence": "monthly", "mode": "top_up"},
        })),
        409,
        "tenant_not_configured",
        "too-early",
    )
    .await;

    let settings = json!({"currency": "PHP", "time_zone": ZONE});
    let r = ok(api.put(&admin, "/v1/tenant", "cfg-1").json(&settings), 200).await;
    assert_eq!(r.event_types(), ["TenantConfigured"]);
    assert_eq!(r.events()[0]["event"]["currency"], "PHP");
    assert_eq!(r.events()[0]["stream"], "tenant/t1");
    assert_eq!(api.stream_len(T1, "tenant/t1").await, 1);
    for token in [
        api.admin(),
        api.cashier(V1),
        api.vendor(V1),
        api.employee(E1),
        api.service(),
    ] {
        let r = ok(api.get(&token, "/v1/tenant"), 200).await;
        assert_eq!(
            r.body,
            json!({"tenant_id": T1, "currency": "PHP", "time_zone": ZONE})
        );
    }

    // The same settings again change nothing.
    let before = api.event_count().await;
    let r = ok(api.put(&admin, "/v1/tenant", "cfg-2").json(&settings), 200).await;
    assert!(r.events().is_empty(), "{r:?}");
    assert_eq!(api.event_count().await, before);

    // The zone may change; the currency only until money moves.
    let tokyo = json!({"currency": "PHP", "time_zone": "Asia/Tokyo"});
    ok(api.put(&admin, "/v1/tenant", "cfg-3").json(&tokyo), 200).await;
    let r = ok(api.get(&admin, "/v1/tenant"), 200).await;
    assert_eq!(r.body["time_zone"], "Asia/Tokyo");
    let usd = json!({"currency": "USD", "time_zone": ZONE});
    ok(api.put(&admin, "/v1/tenant", "cfg-4").json(&usd), 200).await;
    ok(api.put(&admin, "/v1/tenant", "cfg-5").json(&settings), 200).await;
    api.enroll(&admin, E1).await;
    api.rejected(
        T1,
        api.put(&admin, "/v1/tenant", "cfg-6").json(&usd),
        409,
        "currency_locked",
        "cfg-6",
    )
    .await;
    api.stop().await;
}

async fn vendors_register_and_change_commission_captured_by_later_sales(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    let r = ok(
        api.post(&admin, "/v1/vendors", "v3")
            .json(&json!({"vendor_id": "V3", "name": "Third", "commission_rate": 250})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["VendorRegistered"]);
    assert_eq!(r.events()[0]["stream"], "vendor/V3");
    let r = ok(
        api.post(&admin, "/v1/vendors/V3/commission", "v3-rate")
            .json(&json!({"commission_rate": 1500})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["CommissionRateChanged"]);
    assert_eq!(api.stream_len(T1, "vendor/V3").await, 2);

    let mut body = sale("O-V3", "200.00", cash());
    body["vendor_id"] = json!("V3");
    let r = api.sell(&admin, "sale-v3", body).await;
    let event = &r.events()[0]["event"];
    assert_eq!(event["commission_rate"], 1500);
    assert_eq!(amount(&event["commission"]), "30.00");
    let view = ok(api.get_at(&admin, "/v1/orders/O-V3", &r.token()), 200).await;
    assert_eq!(amount(&view.body["net"]), "170.00");
    api.stop().await;
}

async fn employees_enroll_and_admins_adjust_their_credit(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    let r = api.enroll(&admin, "E3").await;
    assert_eq!(r.event_types(), ["CreditAccountOpened"]);
    let view = ok(
        api.get_at(&admin, "/v1/employees/E3/credit", &r.token()),
        200,
    )
    .await;
    assert_eq!(amount(&view.body["balance"]), "0.00");
    assert_eq!(amount(&view.body["policy"]["allowance"]), ALLOWANCE);

    let r = ok(
        api.post(&admin, "/v1/employees/E3/credit/adjustments", "adj-1")
            .json(&json!({"amount": "250.00", "reason": "welcome"})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["CreditAdjusted"]);
    assert_eq!(amount(&r.events()[0]["event"]["balance_after"]), "250.00");
    let r = ok(
        api.post(&admin, "/v1/employees/E3/credit/adjustments", "adj-2")
            .json(&json!({"amount": "-50.5", "reason": "correction"})),
        201,
    )
    .await;
    assert_eq!(amount(&r.events()[0]["event"]["balance_after"]), "199.50");
    let view = ok(
        api.get_at(&api.employee("E3"), "/v1/employees/E3/credit", &r.token()),
        200,
    )
    .await;
    assert_eq!(amount(&view.body["balance"]), "199.50");
    assert_eq!(view.body["employee_id"], "E3");
    api.stop().await;
}

async fn sales_are_recorded_with_every_payment_method(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let admin = api.admin();

    let r = api
        .sell(&cashier, "s-credit", sale("S-CREDIT", "120.00", credit(E1)))
        .await;
    assert_eq!(r.event_types(), ["SaleRecorded", "CreditSpent"]);
    assert_eq!(r.events()[0]["stream"], "order/S-CREDIT");
    assert_eq!(r.events()[1]["stream"], "credit/E1");
    assert_eq!(amount(&r.events()[1]["event"]["balance_after"]), "880.00");
    let today = date(&r.events()[0]["event"]["business_date"]);
    let mut at = vec![r.token()];

    // Order, gross as stored (at the currency's scale), commission.
    let mut paid = vec![("S-CREDIT", "120.00", "12.00")];
    for (order, method, price, gross, commission) in [
        ("S-CASH", "cash", "50.00", "50.00", "5.00"),
        ("S-CARD", "card", "30.5", "30.50", "3.05"),
        ("S-MOMO", "mobile_money", "20", "20.00", "2.00"),
    ] {
        let r = api
            .sell(
                &cashier,
                order,
                sale(order, price, json!({"method": method})),
            )
            .await;
        assert_eq!(r.event_types(), ["SaleRecorded"]);
        let event = &r.events()[0]["event"];
        assert_eq!(event["vendor_id"], V1);
        assert_eq!(event["payment"]["method"], method);
        assert_eq!(event["commission_rate"], V1_RATE);
        assert_eq!(amount(&event["commission"]), commission);
        paid.push((order, gross, commission));
        at.push(r.token());
    }
    let due = plus_days(today, 14);
    let r = api
        .sell(
            &cashier,
            "s-invoice",
            sale(
                "S-INVOICE",
                "75.00",
                json!({"method": "invoice", "due_date": due}),
            ),
        )
        .await;
    assert_eq!(r.event_types(), ["SaleRecorded"]);
    at.push(r.token());

    // Several lines: 3 × 12.50 + 0.10 + 0.20, exactly.
    let r = api
        .sell(
            &cashier,
            "s-lines",
            json!({
                "order_id": "S-LINES",
                "lines": [
                    {"item": "RICE", "quantity": 3, "unit_price": "12.50"},
                    {"item": "A", "quantity": 1, "unit_price": "0.1"},
                    {"item": "B", "quantity": 1, "unit_price": "0.2"},
                ],
                "payment": cash(),
            }),
        )
        .await;
    assert_eq!(amount(&r.events()[0]["event"]["gross"]), "37.80");
    at.push(r.token());
    let at = all(&at);

    for (order, gross, commission) in paid {
        let v = ok(
            api.get_at(&cashier, &format!("/v1/orders/{order}"), &at),
            200,
        )
        .await;
        assert_eq!(v.body["status"], "paid", "{v:?}");
        assert_eq!(v.body["vendor_id"], V1);
        assert_eq!(amount(&v.body["gross"]), gross);
        assert_eq!(amount(&v.body["commission"]), commission);
    }
    let v = ok(api.get_at(&admin, "/v1/orders/S-INVOICE", &at), 200).await;
    assert_eq!(v.body["status"], "pending");
    assert_eq!(v.body["payment"]["due_date"], due);
    let v = ok(api.get_at(&admin, "/v1/orders/S-LINES", &at), 200).await;
    assert_eq!(v.body["lines"].as_array().unwrap().len(), 3);
    assert_eq!(amount(&v.body["commission"]), "3.78");

    let c = ok(
        api.get_at(&api.employee(E1), "/v1/employees/E1/credit", &at),
        200,
    )
    .await;
    assert_eq!(amount(&c.body["balance"]), "880.00");
    assert_eq!(amount(&c.body["lifetime_spent"]), "120.00");
    api.stop().await;
}

async fn an_invoice_is_paid_once(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let first = api
        .sell(&cashier, "warm-up", sale("WARM", "1.00", cash()))
        .await;
    let today = date(&first.events()[0]["event"]["business_date"]);
    let invoice = json!({"method": "invoice", "due_date": plus_days(today, 7)});
    api.sell(&cashier, "inv", sale("INV", "75.00", invoice))
        .await;

    // Not paid yet, so nothing to refund; and the amount must be the due.
    api.rejected(
        T1,
        api.post(&api.vendor(V1), "/v1/orders/INV/refunds", "inv-refund")
            .json(&json!({"refund_id": "R", "amount": "10.00"})),
        409,
        "order_not_refundable",
        "inv-refund",
    )
    .await;
    api.rejected(
        T1,
        api.post(&cashier, "/v1/orders/INV/payments", "pay-credit")
            .json(&json!({"amount": "75.00", "tender": credit(E1)})),
        400,
        "validation_failed",
        "pay-credit",
    )
    .await;
    api.rejected(
        T1,
        api.post(&cashier, "/v1/orders/INV/payments", "pay-short")
            .json(&json!({"amount": "70.00", "tender": {"method": "card"}})),
        422,
        "payment_amount_mismatch",
        "pay-short",
    )
    .await;

    let r = ok(
        api.post(&api.vendor(V1), "/v1/orders/INV/payments", "pay")
            .json(&json!({"amount": "75.00", "tender": {"method": "card"}})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["PaymentReceived"]);
    let v = ok(api.get_at(&cashier, "/v1/orders/INV", &r.token()), 200).await;
    assert_eq!(v.body["status"], "paid");
    assert!(v.body["paid_at"].is_string(), "{v:?}");

    api.rejected(
        T1,
        api.post(&api.admin(), "/v1/orders/INV/payments", "pay-again")
            .json(&json!({"amount": "75.00", "tender": {"method": "cash"}})),
        409,
        "order_not_pending",
        "pay-again",
    )
    .await;
    api.stop().await;
}

async fn refunds_go_partial_then_full_and_give_credit_back(store: Backend) {
    let api = Api::start(store).await;
    let vendor = api.vendor(V1);
    let r = api
        .sell(&api.cashier(V1), "sale", sale("R-1", "300.00", credit(E2)))
        .await;
    assert_eq!(amount(&r.events()[1]["event"]["balance_after"]), "700.00");

    let r = ok(
        api.post(&vendor, "/v1/orders/R-1/refunds", "refund-1")
            .json(&json!({"refund_id": "RF-1", "amount": "100.00", "reason": "cold soup"})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["RefundIssued", "CreditRefunded"]);
    let refund = &r.events()[0]["event"];
    assert_eq!(amount(&refund["commission_reversed"]), "10.00");
    assert_eq!(refund["completes_refund"], false);
    assert_eq!(amount(&r.events()[1]["event"]["balance_after"]), "800.00");
    let v = ok(api.get_at(&vendor, "/v1/orders/R-1", &r.token()), 200).await;
    assert_eq!(v.body["status"], "partially_refunded");
    assert_eq!(amount(&v.body["refunded"]), "100.00");
    let c = ok(
        api.get_at(&api.employee(E2), "/v1/employees/E2/credit", &r.token()),
        200,
    )
    .await;
    assert_eq!(amount(&c.body["balance"]), "800.00");

    // The same refund id and amount under another key: already done.
    let before = api.event_count().await;
    let again = ok(
        api.post(&vendor, "/v1/orders/R-1/refunds", "refund-1-again")
            .json(&json!({"refund_id": "RF-1", "amount": "100.00", "reason": "cold soup"})),
        201,
    )
    .await;
    assert!(again.events().is_empty(), "{again:?}");
    assert_eq!(api.event_count().await, before);

    let r = ok(
        api.post(&api.admin(), "/v1/orders/R-1/refunds", "refund-2")
            .json(&json!({"refund_id": "RF-2", "amount": "200.00"})),
        201,
    )
    .await;
    assert_eq!(r.event_types(), ["RefundIssued", "CreditRefunded"]);
    assert_eq!(r.events()[0]["event"]["completes_refund"], true);
    assert_eq!(
        amount(&r.events()[0]["event"]["commission_reversed"]),
        "20.00"
    );
    let v = ok(api.get_at(&vendor, "/v1/orders/R-1", &r.token()), 200).await;
    assert_eq!(v.body["status"], "refunded");
    assert_eq!(amount(&v.body["refunded"]), "300.00");
    assert_eq!(amount(&v.body["commission_reversed"]), "30.00");
    assert_eq!(v.body["refunds"].as_array().unwrap().len(), 2);
    let c = ok(
        api.get_at(&api.admin(), "/v1/employees/E2/credit", &r.token()),
        200,
    )
    .await;
    assert_eq!(amount(&c.body["balance"]), ALLOWANCE);

    api.rejected(
        T1,
        api.post(&vendor, "/v1/orders/R-1/refunds", "refund-3")
            .json(&json!({"refund_id": "RF-3", "amount": "0.01"})),
        422,
        "refund_exceeds_remaining",
        "refund-3",
    )
    .await;
    api.stop().await;
}

async fn replenishment_tops_up_once_per_period(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    let body = json!({"period": api.period});
    let r = api
        .sell(
            &api.cashier(V1),
            "spend",
            sale("SP-1", "100.00", credit(E1)),
        )
        .await;
    assert!(api.idempotency(T1, "setup-replenish").await.is_some());

    // A rerun of the period changes nothing, whoever runs it.
    let before = api.event_count().await;
    let rerun = ok(
        api.post(&admin, "/v1/credit/replenishments", "rerun")
            .json(&body),
        200,
    )
    .await;
    assert_eq!(
        rerun.body,
        json!({"period": api.period, "replenished": [], "unchanged": 2, "skipped": []})
    );
    let by_service = ok(
        api.post(&api.service(), "/v1/credit/replenishments", "cron-1")
            .json(&body),
        200,
    )
    .await;
    assert_eq!(by_service.body, rerun.body);
    assert_eq!(api.event_count().await, before);

    // A replay of the first run answers what the first run answered.
    let replay = ok(
        api.post(&admin, "/v1/credit/replenishments", "setup-replenish")
            .json(&body),
        200,
    )
    .await;
    assert!(replay.replayed());
    assert_eq!(
        replay.body,
        json!({"period": api.period, "replenished": [E1, E2], "unchanged": 0, "skipped": []})
    );
    assert_eq!(replay.maybe_token(), None, "a summary names no events");
    api.refused(
        api.post(&admin, "/v1/credit/replenishments", "setup-replenish")
            .json(&json!({"period": next_period(&api.period)})),
        422,
        "idempotency_key_reused",
        None,
    )
    .await;
    assert_eq!(api.event_count().await, before);
    let c = ok(
        api.get_at(&admin, "/v1/employees/E1/credit", &r.token()),
        200,
    )
    .await;
    assert_eq!(amount(&c.body["balance"]), "900.00");

    // Per employee: a new account is replenished, a wrong cadence or a
    // period not started yet is skipped with its reason.
    let enrolled = api.enroll(&admin, "E3").await;
    let r = ok(
        api.post(&admin, "/v1/credit/replenishments", "after-enrol")
            .query(&[("consistency_token", enrolled.token())])
            .json(&body),
        200,
    )
    .await;
    assert_eq!(r.body["replenished"], json!(["E3"]));
    assert_eq!(r.body["unchanged"], 2);
    let before = api.event_count().await;
    // This month overlaps the half just replenished: nothing to do.
    let r = ok(
        api.post(&admin, "/v1/credit/replenishments", "this-month")
            .json(&json!({"period": &api.period[..7]})),
        200,
    )
    .await;
    assert_eq!(r.body["unchanged"], 3, "{r:?}");
    let next_month = &next_period(&next_period(&api.period))[..7];
    let r = ok(
        api.post(&admin, "/v1/credit/replenishments", "monthly")
            .json(&json!({"period": next_month})),
        200,
    )
    .await;
    let codes: BTreeSet<&str> = r.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, BTreeSet::from(["period_cadence_mismatch"]), "{r:?}");
    let r = ok(
        api.post(&admin, "/v1/credit/replenishments", "future")
            .json(&json!({"period": next_period(&api.period)})),
        200,
    )
    .await;
    assert_eq!(r.body["skipped"].as_array().unwrap().len(), 3, "{r:?}");
    assert_eq!(r.body["skipped"][0]["code"], "period_not_started");
    assert_eq!(api.event_count().await, before);
    api.stop().await;
}

async fn an_offline_batch_answers_each_sale(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let earlier = days_ago(2, 0);
    let mut online = sale("B-1", "10.00", cash());
    online["occurred_at"] = json!(days_ago(0, -60));
    api.sell(&cashier, "order:B-1", online.clone()).await;

    let mut item2 = sale("B-2", "20.00", cash());
    item2["occurred_at"] = json!(earlier);
    let mut item3 = sale("B-3", "30.00", credit("NOBODY"));
    item3["occurred_at"] = json!(days_ago(1, 0));
    let mut item4 = sale("B-4", "40.00", json!({"method": "card"}));
    item4["occurred_at"] = json!(days_ago(1, 60));
    item4["idempotency_key"] = json!("pos-7:4");
    let batch = json!({"sales": [online, item2, item3, item4]});

    let before = api.event_count().await;
    let r = ok(
        api.http
            .post(api.url("/v1/sales/batch"))
            .bearer_auth(&cashier)
            .json(&batch),
        200,
    )
    .await;
    let results = r.body["results"].as_array().expect("results");
    let summary: Vec<(&str, &str, u64)> = results
        .iter()
        .map(|x| {
            (
                x["order_id"].as_str().unwrap(),
                x["result"].as_str().unwrap(),
                x["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("B-1", "duplicate", 201),
            ("B-2", "created", 201),
            ("B-3", "rejected", 404),
            ("B-4", "created", 201),
        ]
    );
    assert_eq!(results[2]["body"]["code"], "employee_not_found");
    assert_eq!(results[3]["idempotency_key"], "pos-7:4");
    assert_eq!(results[1]["idempotency_key"], "order:B-2");
    assert_eq!(api.event_count().await - before, 2);
    assert_eq!(r.maybe_token(), None, "each sale has its own token");
    let token = |i: usize| results[i]["consistency_token"].as_str().unwrap().to_owned();
    assert_eq!(
        results[2]["consistency_token"],
        Value::Null,
        "a refused sale wrote nothing"
    );
    assert!(
        results[0]["consistency_token"].is_string(),
        "a duplicate names the events it first wrote"
    );

    let v = ok(api.get_at(&cashier, "/v1/orders/B-2", &token(1)), 200).await;
    let occurred: ledger_core::time::Timestamp =
        v.body["occurred_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(occurred, earlier.parse().unwrap());
    assert_eq!(
        v.body["business_date"],
        occurred
            .local_date(ledger_core::time::TimeZone::new(ZONE))
            .to_string()
    );
    check(
        api.get_at(&cashier, "/v1/orders/B-3", &all(&[token(1), token(3)])),
        404,
        "not_found",
    )
    .await;

    // The whole batch again: every sale a duplicate, nothing written.
    let r = ok(
        api.http
            .post(api.url("/v1/sales/batch"))
            .bearer_auth(&cashier)
            .json(&batch),
        200,
    )
    .await;
    let results: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["duplicate"; 4]);
    assert_eq!(api.event_count().await - before, 2);
    api.stop().await;
}

/// The figures of one dashboard bucket or total.
fn figures(t: &Value) -> Vec<(&str, String)> {
    [
        "orders",
        "gross",
        "commission",
        "net",
        "refunds",
        "refunded_gross",
        "refunded_commission",
        "refunded_net",
        "gross_cash",
        "gross_card",
        "gross_mobile_money",
        "gross_credit",
        "gross_invoice",
    ]
    .into_iter()
    .map(|k| (k, t[k].to_string().trim_matches('"').to_owned()))
    .collect()
}

fn expect(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

async fn dashboards_add_up_what_was_sold(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    let r = api
        .sell(&cashier, "d-cash", sale("D-CASH", "100.00", cash()))
        .await;
    let mut at = vec![r.token()];
    let today = date(&r.events()[0]["event"]["business_date"]);
    let yesterday = plus_days(today, -1);
    at.push(
        api.sell(
            &cashier,
            "d-card",
            sale("D-CARD", "50.00", json!({"method": "card"})),
        )
        .await
        .token(),
    );
    at.push(
        api.sell(&cashier, "d-credit", sale("D-CREDIT", "40.00", credit(E1)))
            .await
            .token(),
    );
    at.push(
        api.sell(
            &cashier,
            "d-momo",
            sale("D-MOMO", "10.00", json!({"method": "mobile_money"})),
        )
        .await
        .token(),
    );
    at.push(
        api.sell(
            &cashier,
            "d-inv",
            sale(
                "D-INV",
                "30.00",
                json!({"method": "invoice", "due_date": plus_days(today, 1)}),
            ),
        )
        .await
        .token(),
    );
    let mut old = sale("D-OLD", "200.00", cash());
    old["occurred_at"] = json!(days_ago(1, 0));
    at.push(api.sell(&cashier, "d-old", old).await.token());
    let mut overdue = sale(
        "D-OVERDUE",
        "15.00",
        json!({"method": "invoice", "due_date": yesterday}),
    );
    overdue["occurred_at"] = json!(days_ago(1, 0));
    at.push(api.sell(&cashier, "d-overdue", overdue).await.token());
    at.push(
        api.sell(&api.cashier(V2), "d-v2", sale("D-V2", "60.00", cash()))
            .await
            .token(),
    );
    let r = ok(
        api.post(&api.vendor(V1), "/v1/orders/D-CASH/refunds", "d-refund")
            .json(&json!({"refund_id": "DR", "amount": "20.00"})),
        201,
    )
    .await;
    at.push(r.token());
    let at = all(&at);

    let today_figures = expect(&[
        ("orders", "5"),
        ("gross", "230.00"),
        ("commission", "23.00"),
        ("net", "207.00"),
        ("refunds", "1"),
        ("refunded_gross", "20.00"),
        ("refunded_commission", "2.00"),
        ("refunded_net", "18.00"),
        ("gross_cash", "100.00"),
        ("gross_card", "50.00"),
        ("gross_mobile_money", "10.00"),
        ("gross_credit", "40.00"),
        ("gross_invoice", "30.00"),
    ]);
    let yesterday_figures = expect(&[
        ("orders", "2"),
        ("gross", "215.00"),
        ("commission", "21.50"),
        ("net", "193.50"),
        ("refunds", "0"),
        ("refunded_gross", "0.00"),
        ("refunded_commission", "0.00"),
        ("refunded_net", "0.00"),
        ("gross_cash", "200.00"),
        ("gross_card", "0.00"),
        ("gross_mobile_money", "0.00"),
        ("gross_credit", "0.00"),
        ("gross_invoice", "15.00"),
    ]);
    let total_figures = expect(&[
        ("orders", "7"),
        ("gross", "445.00"),
        ("commission", "44.50"),
        ("net", "400.50"),
        ("refunds", "1"),
        ("refunded_gross", "20.00"),
        ("refunded_commission", "2.00"),
        ("refunded_net", "18.00"),
        ("gross_cash", "300.00"),
        ("gross_card", "50.00"),
        ("gross_mobile_money", "10.00"),
        ("gross_credit", "40.00"),
        ("gross_invoice", "45.00"),
    ]);

    let range = format!("/v1/dashboard?from={yesterday}&to={today}");
    let d = ok(api.get_at(&api.vendor(V1), &range, &at), 200).await;
    assert_eq!(d.body["currency"], "PHP");
    let series = d.body["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{d:?}");
    assert_eq!(series[0]["start"], yesterday);
    assert_eq!(figures(&series[0]["totals"]), yesterday_figures);
    assert_eq!(series[1]["start"], today.to_string());
    assert_eq!(figures(&series[1]["totals"]), today_figures);
    assert_eq!(figures(&d.body["totals"]), total_figures);
    assert_eq!(d.body["totals"]["net_payable"], "382.50");
    assert_eq!(d.body["receivables_pending"], "45.00");
    assert_eq!(d.body["receivables_overdue"], "15.00");

    // Weeks and months roll the same days up.
    for granularity in ["week", "month"] {
        let path = format!("{range}&granularity={granularity}&vendor_id={V1}");
        let d = ok(api.get_at(&api.admin(), &path, &at), 200).await;
        assert_eq!(figures(&d.body["totals"]), total_figures, "{granularity}");
        let orders: u64 = d.body["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["totals"]["orders"].as_u64().unwrap())
            .sum();
        assert_eq!(orders, 7, "{granularity}: {d:?}");
    }

    // An admin sees one vendor, or all of them.
    let d = ok(
        api.get_at(&api.admin(), &format!("{range}&vendor_id={V2}"), &at),
        200,
    )
    .await;
    assert_eq!(d.body["totals"]["gross"], "60.00");
    assert_eq!(d.body["totals"]["commission"], "3.00");
    let d = ok(api.get_at(&api.admin(), &range, &at), 200).await;
    assert_eq!(d.body["totals"]["gross"], "505.00");
    assert_eq!(d.body["totals"]["orders"], 8);
    assert_eq!(d.body["totals"]["commission"], "47.50");
    api.stop().await;
}

async fn orders_list_newest_first_page_by_page(store: Backend) {
    let api = Api::start(store).await;
    let v2 = api.cashier(V2);
    let mut expected = Vec::new();
    let mut at = Vec::new();
    for i in 0..7 {
        let order = format!("L-{i}");
        let mut body = sale(&order, "5.00", cash());
        body["occurred_at"] = json!(days_ago(0, -3600 * (i + 1)));
        at.push(api.sell(&v2, &order, body).await.token());
        expected.push(order);
    }
    // Three sales at the same instant, older than the rest: the cursor must
    // neither skip nor repeat one of them.
    let instant = days_ago(0, -3600 * 10);
    for suffix in ["b", "c", "a"] {
        let order = format!("T-{suffix}");
        let mut body = sale(&order, "5.00", cash());
        body["occurred_at"] = json!(instant);
        at.push(api.sell(&v2, &order, body).await.token());
    }
    let mut ties = vec!["T-a", "T-b", "T-c"];
    for i in 0..2 {
        let order = format!("M-{i}");
        at.push(
            api.sell(&api.cashier(V1), &order, sale(&order, "7.00", cash()))
                .await
                .token(),
        );
    }

    let at = all(&at);
    let at = at.as_str();
    let list = |token: String, query: &'static str| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut request = api.get_at(&token, &format!("/v1/orders?{query}"), at);
                if let Some(c) = &cursor {
                    request = request.query(&[("cursor", c)]);
                }
                let page = ok(request, 200).await;
                pages += 1;
                assert!(page.items().len() <= 3, "{page:?}");
                seen.extend(
                    page.items()
                        .iter()
                        .map(|o| o["order_id"].as_str().unwrap().to_owned()),
                );
                cursor = page.next_cursor();
                if cursor.is_none() {
                    break;
                }
                assert!(pages < 10, "pagination does not end");
            }
            (seen, pages)
        }
    };

    // L-0 is the newest (an hour ago), L-6 the oldest, then the ties.
    let (seen, pages) = list(api.vendor(V2), "limit=3").await;
    let mut seen_ties: Vec<&str> = seen[7..].iter().map(String::as_str).collect();
    seen_ties.sort_unstable();
    ties.sort_unstable();
    assert_eq!(seen_ties, ties, "{seen:?}");
    let ordered_ties = seen[7..].to_vec();
    expected.extend(ordered_ties);
    assert_eq!(seen, expected);
    assert!(pages >= 3);
    let (seen, _) = list(api.cashier(V2), "limit=3").await;
    assert_eq!(seen, expected);
    let (seen, _) = list(api.admin(), "limit=3&vendor_id=V2").await;
    assert_eq!(seen, expected);
    // Across the tenant: V1's sales of a moment ago come first.
    let (seen, _) = list(api.admin(), "limit=3").await;
    assert_eq!(seen.len(), 12);
    assert_eq!(
        seen[..2].iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"M-0".to_owned(), &"M-1".to_owned()])
    );
    assert_eq!(seen[2..], expected);

    // A time range: from inclusive, until exclusive.
    let from = days_ago(0, -3600 * 4 - 60);
    let until = days_ago(0, -3600 - 60);
    let page = ok(
        api.get_at(&api.vendor(V2), "/v1/orders", at)
            .query(&[("from", &from), ("until", &until)]),
        200,
    )
    .await;
    let ids: Vec<&str> = page
        .items()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["L-1", "L-2", "L-3"]);
    assert_eq!(page.body["next_cursor"], Value::Null);
    api.stop().await;
}

async fn a_credit_statement_carries_the_running_balance(store: Backend) {
    let api = Api::start(store).await;
    let cashier = api.cashier(V1);
    for (i, price) in ["10.00", "20.00", "30.00"].into_iter().enumerate() {
        let order = format!("C-{i}");
        api.sell(&cashier, &order, sale(&order, price, credit(E1)))
            .await;
    }
    ok(
        api.post(&api.admin(), "/v1/employees/E1/credit/adjustments", "adj")
            .json(&json!({"amount": "5.00", "reason": "birthday"})),
        201,
    )
    .await;
    let r = ok(
        api.post(&api.vendor(V1), "/v1/orders/C-1/refunds", "refund")
            .json(&json!({"refund_id": "CR", "amount": "20.00"})),
        201,
    )
    .await;
    let at = r.token();

    let me = api.employee(E1);
    let mut lines = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = api.get_at(&me, "/v1/employees/E1/credit/statement?limit=2", &at);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page = ok(request, 200).await;
        assert!(page.items().len() <= 2);
        lines.extend(page.items().iter().cloned());
        cursor = page.next_cursor();
        if cursor.is_none() {
            break;
        }
    }
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "replenished",
            "spent",
            "spent",
            "spent",
            "adjusted",
            "refunded"
        ]
    );
    let mut balance = rust_decimal::Decimal::ZERO;
    for line in &lines {
        let change: rust_decimal::Decimal = amount(&line["amount"]).parse().unwrap();
        balance += change;
        let after: rust_decimal::Decimal = amount(&line["balance_after"]).parse().unwrap();
        assert_eq!(after, balance, "{line}");
    }
    assert_eq!(balance.to_string(), "965.00");
    assert_eq!(lines[3]["order_id"], "C-2");
    assert_eq!(lines[4]["reason"], "birthday");
    assert_eq!(lines[5]["refund_id"], "CR");

    let view = ok(api.get_at(&me, "/v1/employees/E1/credit", &at), 200).await;
    assert_eq!(amount(&view.body["balance"]), "965.00");
    // Spent net of what was refunded.
    assert_eq!(amount(&view.body["lifetime_spent"]), "40.00");
    assert_eq!(view.body["last_period"], api.period);
    api.stop().await;
}

async fn activity_is_filtered_by_vendor_or_by_actor(store: Backend) {
    let api = Api::start(store).await;
    let mut at = Vec::new();
    for i in 0..5 {
        let order = format!("A-{i}");
        at.push(
            api.sell(&api.cashier(V1), &order, sale(&order, "3.00", credit(E1)))
                .await
                .token(),
        );
    }
    at.push(
        api.sell(&api.cashier(V2), "A-V2", sale("A-V2", "4.00", cash()))
            .await
            .token(),
    );
    let r = ok(
        api.post(&api.vendor(V1), "/v1/orders/A-0/refunds", "a-refund")
            .json(&json!({"refund_id": "AR", "amount": "1.00"})),
        201,
    )
    .await;
    at.push(r.token());
    let at = all(&at);

    // A vendor sees its own vendor's log, newest first.
    let page = ok(
        api.get_at(&api.vendor(V1), "/v1/activity?limit=100", &at),
        200,
    )
    .await;
    let types: Vec<&str> = page
        .items()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "RefundIssued", "{page:?}");
    assert_eq!(types.iter().filter(|t| **t == "SaleRecorded").count(), 5);
    assert!(
        page.items().iter().all(|e| e["vendor_id"] == V1),
        "{page:?}"
    );
    let v2 = ok(
        api.get_at(&api.admin(), &format!("/v1/activity?vendor_id={V2}"), &at),
        200,
    )
    .await;
    let streams: Vec<&str> = v2
        .items()
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["order/A-V2", "vendor/V2"], "{v2:?}");

    // What one person did, page by page, equals the one-page answer.
    let all = ok(
        api.get_at(&api.admin(), "/v1/activity?actor=cashier-V1&limit=100", &at),
        200,
    )
    .await;
    assert_eq!(all.items().len(), 10, "{all:?}");
    assert!(
        all.items()
            .iter()
            .all(|e| e["actor"]["user_id"] == "cashier-V1")
    );
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = api.get_at(&api.admin(), "/v1/activity?actor=cashier-V1&limit=3", &at);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page = ok(request, 200).await;
        paged.extend(page.items().iter().cloned());
        cursor = page.next_cursor();
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(&paged, all.items());

    // An admin without a filter sees the whole tenant.
    let everything = ok(api.get_at(&api.admin(), "/v1/activity?limit=100", &at), 200).await;
    assert!(everything.items().len() > all.items().len());
    let admin_did = ok(
        api.get_at(
            &api.admin(),
            &format!("/v1/activity?actor={ADMIN_USER}&limit=100"),
            &at,
        ),
        200,
    )
    .await;
    assert!(
        admin_did
            .items()
            .iter()
            .any(|e| e["event_type"] == "TenantConfigured")
    );
    api.stop().await;
}

async fn admins_read_a_stream_as_stored(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    api.sell(&api.cashier(V1), "st", sale("ST", "9.00", credit(E1)))
        .await;
    ok(
        api.post(&admin, "/v1/orders/ST/refunds", "st-refund")
            .json(&json!({"refund_id": "STR", "amount": "9.00"})),
        201,
    )
    .await;

    let r = ok(api.get(&admin, "/v1/streams/order/ST/events"), 200).await;
    let items = r.items();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[1]["version"], 2);
    assert_eq!(items[0]["event"]["type"], "SaleRecorded");
    assert_eq!(items[1]["prev_hash"], items[0]["hash"]);
    assert_eq!(r.next_cursor(), None);

    // The credit stream: opened, replenished, spent, refunded; page by page.
    let r = ok(api.get(&admin, "/v1/streams/credit/E1/events?limit=3"), 200).await;
    assert_eq!(r.items().len(), 3);
    assert_eq!(r.next_cursor().as_deref(), Some("3"));
    let r = ok(
        api.get(&admin, "/v1/streams/credit/E1/events?limit=3&after=3"),
        200,
    )
    .await;
    assert_eq!(r.items().len(), 1);
    assert_eq!(r.items()[0]["event"]["type"], "CreditRefunded");
    assert_eq!(r.items()[0]["version"], 4);
    let r = ok(api.get(&admin, "/v1/streams/vendor/V1/events"), 200).await;
    assert_eq!(r.items()[0]["event"]["type"], "VendorRegistered");
    let r = ok(api.get(&admin, "/v1/streams/tenant/t1/events"), 200).await;
    assert_eq!(r.items().len(), 1);

    check(
        api.get(&admin, "/v1/streams/order/NOPE/events"),
        404,
        "not_found",
    )
    .await;
    check(
        api.get(&admin, "/v1/streams/bogus/ST/events"),
        400,
        "validation_failed",
    )
    .await;
    api.stop().await;
}

async fn health_and_the_document_need_no_token(store: Backend) {
    let api = Api::start(store).await;
    let r = ok(api.anonymous(Method::GET, "/healthz"), 200).await;
    assert_eq!(r.body["status"], "ok");
    match store {
        // The embedded log has a head, gap-free from 1, and the follower's lag.
        Backend::Sqlite => {
            assert_eq!(r.body["log_position"], api.event_count().await);
            assert!(r.body["projection_lag_records"].is_u64());
        }
        // A DynamoDB table has no head: the stream projector reports.
        Backend::Dynamo => {
            assert!(r.body["stream_projection"]["records_acknowledged"].is_u64());
            assert!(r.body.get("log_position").is_none());
        }
    }
    let r = ok(api.anonymous(Method::GET, "/openapi.json"), 200).await;
    assert_eq!(r.body["openapi"], "3.1.0");
    assert!(r.body["paths"]["/v1/sales"]["post"].is_object());
    api.stop().await;
}

async fn a_token_with_two_roles_may_do_what_either_may(store: Backend) {
    let api = Api::start(store).await;
    let both = api.token_in(T1, "both", &[Role::Cashier, Role::Vendor], Some(V1), None);
    let s = api
        .sell(&both, "both-sale", sale("BOTH", "1.00", cash()))
        .await;
    ok(
        api.post(&both, "/v1/orders/BOTH/refunds", "both-refund")
            .json(&json!({"refund_id": "BR", "amount": "1.00"})),
        201,
    )
    .await;
    ok(api.get_at(&both, "/v1/orders/BOTH", &s.token()), 200).await;
    api.stop().await;
}
