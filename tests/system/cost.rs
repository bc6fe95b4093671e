//! What a checkout costs on DynamoDB, in write capacity units, measured on
//! the real server over HTTP against DynamoDB Local.
//!
//! DynamoDB Local's `ReturnConsumedCapacity` figures are not the service's
//! bill (it reports 2 WCU for a transaction of any number of small items),
//! so the store meters both: Local's figure and AWS's formula over the
//! items it wrote. The assertions hold the formula's figures; the report
//! prints both (`cargo test --test system cost -- --nocapture`).

use std::time::Duration;

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use command_api::auth::Claims;
use ledger_core::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use ledger_store::AnyStore;
use ledger_store::dynamodb::{CapacityTotals, DynamoConfig};
use reqwest::Method;
use serde_json::json;
use tally::server::{Server, ServerConfig, StoreConfig};

use crate::common::{self, Http};

/// Checkouts measured of each kind.
const CHECKOUTS: u32 = 20;
/// The budget set for a credit checkout all in (append and projection),
/// printed beside the measure: not met while activity entries are items
/// of their own with their indexes (see `dynamodb::views`).
const CREDIT_CHECKOUT_WCU_MAX: f64 = 12.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_cost_what_the_table_design_says() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        demo: false,
        store: StoreConfig::Dynamo(DynamoConfig {
            endpoint: Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned()),
            table_prefix: unique_prefix("cost"),
        }),
    })
    .await
    .expect("the server starts on DynamoDB Local");
    let AnyStore::Dynamo(dynamo) = server.store().clone() else {
        panic!("the server runs on DynamoDB");
    };
    let http = Http::new(format!("http://{}", server.addr));
    let tenant = TenantId::new("sys-cost");
    let mint = |role: Role| {
        server.key.mint(&Claims::new(
            tenant,
            UserId::new("sys-cost"),
            &[role],
            (role == Role::Cashier).then(|| VendorId::new("V1")),
            None::<EmployeeId>,
            Duration::from_secs(600),
        ))
    };
    let (admin, cashier) = (mint(Role::Admin), mint(Role::Cashier));
    common::set_up_tenant(&http, &admin, "V1", &["E1".to_owned()], "100000.00").await;

    let checkout = |kind: &'static str, count: u32| {
        let (http, cashier) = (&http, &cashier);
        async move {
            let mut last = None;
            for n in 0..count {
                let order_id = format!("{kind}-{n:03}");
                let payment = match kind {
                    "cash" => json!({"method": "cash"}),
                    _ => json!({"method": "credit", "employee_id": "E1"}),
                };
                let reply = http
                    .must(
                        Method::POST,
                        "/v1/sales",
                        cashier,
                        &order_id,
                        json!({
                            "order_id": order_id,
                            "lines": [
                                {"item": "ADOBO-RICE-BOWL", "quantity": 2, "unit_price": "85.00"},
                                {"item": "ICED-TEA", "quantity": 1, "unit_price": "35.00"},
                            ],
                            "payment": payment,
                        }),
                    )
                    .await;
                last = Some((order_id, reply.token.expect("a write's consistency token")));
            }
            last.expect("at least one checkout")
        }
    };
    // What the stream projector has written so far, once it has projected
    // the checkout `last` (one shard: everything before it too).
    let projected = |(order_id, token): (String, String)| {
        let (http, admin) = (&http, &admin);
        async move {
            let read = http
                .get(
                    &format!("/v1/orders/{order_id}?consistency_token={token}"),
                    admin,
                )
                .await;
            assert_eq!(read.status, reqwest::StatusCode::OK, "{}", read.body);
            let health = http.health().await.expect("/healthz answers");
            health["stream_projection"]["write_units"]["computed"]
                .as_f64()
                .expect("the stream projector reports its write units")
        }
    };
    // One checkout first, so the tenant's one-off writes (its first sale)
    // are behind the measurement.
    let warm = checkout("warm", 1).await;
    let projected_start = projected(warm).await;
    let start = dynamo.capacity();
    let last_cash = checkout("cash", CHECKOUTS).await;
    let after_cash = dynamo.capacity();
    let projected_cash = projected(last_cash).await;
    let last_credit = checkout("credit", CHECKOUTS).await;
    let after_credit = dynamo.capacity();
    let projected_credit = projected(last_credit).await;
    server.stop().await.expect("the server stops");
    let after_stop = dynamo.capacity();

    let per = |from: &CapacityTotals, to: &CapacityTotals| {
        let n = f64::from(CHECKOUTS);
        (
            (to.appends.computed - from.appends.computed) / n,
            (to.appends.reported - from.appends.reported) / n,
            (to.transactions - from.transactions) as f64 / n,
        )
    };
    let (cash, cash_local, cash_tx) = per(&start, &after_cash);
    let (credit, credit_local, credit_tx) = per(&after_cash, &after_credit);
    let n = f64::from(CHECKOUTS);
    let cash_projection = (projected_cash - projected_start) / n;
    let credit_projection = (projected_credit - projected_cash) / n;
    let checkpoint = after_stop.checkpoints.computed - after_credit.checkpoints.computed;
    eprintln!(
        "write capacity per checkout (formula; DynamoDB Local's figure):\n\
         \x20 cash   append {cash:.1} WCU ({cash_local:.1})\n\
         \x20 credit append {credit:.1} WCU ({credit_local:.1})\n\
         \x20 cash   projection {cash_projection:.1} WCU, all in {:.1} WCU\n\
         \x20 credit projection {credit_projection:.1} WCU, all in {:.1} WCU \
         (the issue's budget: {CREDIT_CHECKOUT_WCU_MAX})\n\
         \x20 the server's own checkpoints: {checkpoint:.0} WCU ({:.0} by Local) \
         (the read models are the stream projector's: see the streams test)",
        cash + cash_projection,
        credit + credit_projection,
        after_stop.checkpoints.reported - after_credit.checkpoints.reported,
    );

    assert_eq!(
        (cash_tx, credit_tx),
        (1.0, 1.0),
        "one transaction per checkout"
    );
    assert_eq!(
        cash, 4.0,
        "a cash checkout writes the sale and the key: two items under 1 KB, 2 WCU each"
    );
    assert_eq!(
        credit, 8.0,
        "a credit checkout writes the sale, the credit spend, the credit head (whose \
         condition replaces a check of the stream's version) and the key: four items \
         under 1 KB, 2 WCU each"
    );
    // The projection: an order view and its day sum for every checkout,
    // an activity entry per event, and for credit the account's view.
    assert!(
        cash_projection > 0.0 && credit_projection > cash_projection,
        "the projection's writes are counted: cash {cash_projection}, credit {credit_projection}"
    );
    assert_eq!(
        checkpoint, 0.0,
        "the server keeps no state of its own to checkpoint: queries read the read-model table"
    );
}
