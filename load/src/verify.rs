//! The verification: every sale read back, every balance and the
//! dashboard checked against what the load was acknowledged for.

use std::sync::Arc;
use std::time::Instant;

use ledger_core::time::{LocalDate, TimeZone};
use ledger_core::{Currency, Money};
use reqwest::StatusCode;

use crate::api::{self, Api, Totals, bounded};
use crate::money::{self, add, sub};
use crate::setup::{Baseline, today};
use crate::workers::{Plan, Sale};
use crate::{TIME_ZONE, VERIFY_CONCURRENCY_MAX, Verification};

/// One order as the server shows it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Present { refunded: Money },
    Absent,
    Wrong(String),
}

/// A sale the load sent, as read back: whether it was acknowledged, its
/// order id, and what the server shows.
type ReadBack = (bool, Sale, String, Seen);

/// Reads everything back, once the server's read models have caught up
/// with every write the load made, and checks it.
pub async fn verify(
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    baseline: &Baseline,
    acked: Vec<Sale>,
    unknown: Vec<Sale>,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    let mut v = Verification::new(plan.currency);
    println!(
        "Verifying {} acknowledged and {} unknown sales...",
        acked.len(),
        unknown.len()
    );
    // Sales of unknown outcome may be committed without the load knowing
    // which: only a projector caught up with the whole log shows them all.
    api::caught_up(api).await?;
    let seen = read_orders(api, plan, acked, unknown).await;
    let mut spent = vec![Money::zero(plan.currency); baseline.balances.len()];
    let mut totals = baseline.totals;
    for read_back in seen {
        check_order(&mut v, &mut spent, &mut totals, read_back);
    }
    check_balances(&mut v, api, plan, baseline, &spent).await;
    check_dashboard(&mut v, api, plan, baseline, totals).await?;
    v.elapsed = started.elapsed();
    Ok(v)
}

/// Every sale's order view, a few at a time.
async fn read_orders(
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    acked: Vec<Sale>,
    unknown: Vec<Sale>,
) -> Vec<ReadBack> {
    let items: Vec<(bool, Sale)> = acked
        .into_iter()
        .map(|s| (true, s))
        .chain(unknown.into_iter().map(|s| (false, s)))
        .collect();
    bounded(items, VERIFY_CONCURRENCY_MAX, {
        let (api, plan) = (api.clone(), plan.clone());
        move |(was_acked, sale): (bool, Sale)| {
            let (api, plan) = (api.clone(), plan.clone());
            async move {
                let order_id = plan.order_id(sale.worker, sale.seq);
                let path = format!("/v1/orders/{order_id}");
                let seen = match api.get(&path, &plan.admin).await {
                    Err(e) => Seen::Wrong(format!("{e:#}")),
                    Ok(reply) if reply.status == StatusCode::NOT_FOUND => Seen::Absent,
                    Ok(reply) if !reply.status.is_success() => {
                        Seen::Wrong(format!("GET {path}: {}", reply.describe()))
                    }
                    Ok(reply) => order_matches(&reply.body, &plan, &sale),
                };
                (was_acked, sale, order_id, seen)
            }
        }
    })
    .await
}

/// Checks one order read back, and counts what it spent and moved.
fn check_order(v: &mut Verification, spent: &mut [Money], totals: &mut Totals, read: ReadBack) {
    let (was_acked, mut sale, order_id, seen) = read;
    match seen {
        Seen::Wrong(why) => v.fail(format!("order {order_id}: {why}")),
        Seen::Absent if was_acked => v.fail(format!(
            "order {order_id} was acknowledged (201) but the server does not have it"
        )),
        Seen::Absent => v.unknown_absent += 1,
        Seen::Present { refunded } => {
            if !was_acked {
                v.unknown_recorded += 1;
            }
            if refunded == add(sale.refunded, sale.refund_unknown) {
                sale.refunded = refunded;
            } else if refunded != sale.refunded {
                v.fail(format!(
                    "order {order_id}: refunded {} but the generator's refunds were acknowledged for {}",
                    money::text(refunded),
                    money::text(sale.refunded)
                ));
            }
            if let Some(e) = sale.employee {
                let e = e as usize;
                spent[e] = add(spent[e], sub(sale.gross, sale.refunded));
            }
            totals.gross = add(totals.gross, sale.gross);
            totals.refunded = add(totals.refunded, sale.refunded);
            totals.orders += 1;
            v.gross = add(v.gross, sale.gross);
            v.refunded = add(v.refunded, sale.refunded);
        }
    }
    v.orders_checked += 1;
}

/// Every employee's balance is the baseline less what the load spent.
async fn check_balances(
    v: &mut Verification,
    api: &Arc<Api>,
    plan: &Arc<Plan>,
    baseline: &Baseline,
    spent: &[Money],
) {
    let currency = plan.currency;
    let balances = bounded(
        plan.employees.iter().cloned().enumerate().collect(),
        VERIFY_CONCURRENCY_MAX,
        {
            let (api, plan) = (api.clone(), plan.clone());
            move |(i, id): (usize, String)| {
                let (api, plan) = (api.clone(), plan.clone());
                async move {
                    let balance = api::balance(&api, &plan.admin, currency, &id);
                    (i, id.clone(), balance.await)
                }
            }
        },
    )
    .await;
    for (i, id, result) in balances {
        v.employees_checked += 1;
        match result {
            Err(e) => v.fail(format!("employee {id}: {e:#}")),
            Ok(b) => check_balance(v, &id, b, baseline.balances[i], spent[i]),
        }
    }
}

fn check_balance(v: &mut Verification, id: &str, balance: Money, baseline: Money, spent: Money) {
    let expected = sub(baseline, spent);
    if balance.is_negative() {
        v.fail(format!(
            "employee {id}: negative balance {}",
            money::text(balance)
        ));
    }
    if balance != expected {
        v.fail(format!(
            "employee {id}: balance {} but the acknowledged load leaves {} ({} - {} net spent)",
            money::text(balance),
            money::text(expected),
            money::text(baseline),
            money::text(spent)
        ));
    }
}

/// The all-vendors dashboard moved by exactly what the load was acknowledged for.
async fn check_dashboard(
    v: &mut Verification,
    api: &Api,
    plan: &Plan,
    baseline: &Baseline,
    totals: Totals,
) -> anyhow::Result<()> {
    let last_day = today(TimeZone::new(TIME_ZONE))
        .as_naive()
        .max(baseline.first_day.as_naive() + chrono::Duration::days(1));
    let days = (baseline.first_day, LocalDate::new(last_day));
    let served = api::dashboard_totals(api, &plan.admin, plan.currency, days).await?;
    if served != totals {
        v.fail(format!(
            "dashboard (all vendors, {}..{last_day}): gross {}, refunds {}, {} orders; \
             the acknowledged load makes it gross {}, refunds {}, {} orders",
            baseline.first_day,
            money::text(served.gross),
            money::text(served.refunded),
            served.orders,
            money::text(totals.gross),
            money::text(totals.refunded),
            totals.orders
        ));
    }
    Ok(())
}

/// Whether an order view is the sale the load sent; its refunded amount
/// when it is.
fn order_matches(body: &serde_json::Value, plan: &Plan, sale: &Sale) -> Seen {
    let currency: Currency = plan.currency;
    let amount = |field: &str| {
        body[field]["amount"]
            .as_str()
            .and_then(|text| money::parse(text, currency))
    };
    let vendor = &plan.vendors[sale.vendor as usize].id;
    if body["vendor_id"].as_str() != Some(vendor.as_str()) {
        return Seen::Wrong(format!("vendor {} instead of {vendor}", body["vendor_id"]));
    }
    if amount("gross") != Some(sale.gross) {
        return Seen::Wrong(format!(
            "gross {} instead of {}",
            body["gross"],
            money::text(sale.gross)
        ));
    }
    let method = body["payment"]["method"].as_str();
    let payer = body["payment"]["employee_id"].as_str();
    let expected = sale.employee.map(|e| plan.employees[e as usize].as_str());
    match (method, expected) {
        (Some("credit"), Some(e)) if payer == Some(e) => {}
        (Some("cash"), None) => {}
        _ => {
            return Seen::Wrong(format!(
                "payment {} instead of {}",
                body["payment"],
                expected.map_or("cash".to_owned(), |e| format!("credit by {e}"))
            ));
        }
    }
    match amount("refunded") {
        Some(refunded) => Seen::Present { refunded },
        None => Seen::Wrong(format!("no refunded amount in {body}")),
    }
}
