//! Many checkouts at once against few employees: credit is never overdrawn,
//! every acknowledged sale is in the log, the log audits clean, and the live
//! projections equal a fresh fold of the log. On both stores:
//! `concurrency::sqlite::…` (SQLite on disk) and `concurrency::dynamodb::…`
//! (tables of its own on DynamoDB Local, started by
//! `scripts/dynamodb-local`, which fails loudly when it cannot be).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use command_api::auth::Claims;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use ledger_store::dynamodb::DynamoConfig;
use ledger_store::views::ViewTable;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use tally::server::{Server, ServerConfig, StoreConfig};

use crate::common::{self, Http};
use ledger_core::rng::SplitMix64;

const TASKS: usize = 64;
const REQUESTS: usize = 640;
const EMPLOYEES: usize = 3;
const ALLOWANCE: &str = "4000.00";
const SEED: u64 = 0x5EED_C0DE;

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_credit_checkouts_never_overdraw_and_the_log_agrees() {
        super::concurrent_credit_checkouts_never_overdraw_and_the_log_agrees(
            super::Backend::Sqlite,
        )
        .await;
    }
}

mod dynamodb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_credit_checkouts_never_overdraw_and_the_log_agrees() {
        super::concurrent_credit_checkouts_never_overdraw_and_the_log_agrees(
            super::Backend::Dynamo,
        )
        .await;
    }
}

/// The store a run's server uses.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Dynamo,
}

impl Backend {
    async fn config(self) -> StoreConfig {
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
                    table_prefix: unique_prefix("sys-concurrency"),
                })
            }
        }
    }
}

/// [`REQUESTS`] checkouts from [`TASKS`] tasks on a server on `backend`.
async fn concurrent_credit_checkouts_never_overdraw_and_the_log_agrees(backend: Backend) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        demo: false,
        store: backend.config().await,
    })
    .await
    .expect("the server starts");
    let http = Http::new(format!("http://{}", server.addr));
    let tenant = TenantId::new("sys-concurrency");
    let mint = |role: Role, vendor: Option<&str>| {
        server.key.mint(&Claims::new(
            tenant,
            UserId::new(&format!("sys-{role:?}").to_lowercase()),
            &[role],
            vendor.map(VendorId::new),
            None::<EmployeeId>,
            Duration::from_secs(600),
        ))
    };
    let admin = mint(Role::Admin, None);
    let cashier = Arc::new(mint(Role::Cashier, Some("V1")));
    let employees: Vec<String> = (1..=EMPLOYEES).map(|e| format!("E{e}")).collect();
    common::set_up_tenant(&http, &admin, "V1", &employees, ALLOWANCE).await;
    let allowance: Decimal = ALLOWANCE.parse().expect("a decimal");

    // Every task takes every TASKS-th request; amounts are random, so
    // checkouts race for the same few balances and most are refused.
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (http, cashier, employees) = (http.clone(), cashier.clone(), employees.clone());
        tasks.spawn(async move {
            let mut rng = SplitMix64::new(SEED ^ task as u64);
            let mut results = Vec::new();
            for n in (task..REQUESTS).step_by(TASKS) {
                let employee = employees[rng.below(EMPLOYEES as u64) as usize].clone();
                let quantity = 1 + rng.below(3);
                let cents = 500 + rng.below(5_500) as i64;
                let unit_price = Decimal::new(cents, 2);
                let order_id = format!("C{n:04}");
                let body =
                    common::credit_sale(&order_id, quantity, &unit_price.to_string(), &employee);
                let reply = http
                    .send(
                        Method::POST,
                        "/v1/sales",
                        &cashier,
                        Some(&order_id),
                        Some(&body),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("checkout {order_id}: {e}"));
                let gross = unit_price * Decimal::from(quantity);
                results.push((order_id, employee, gross, reply));
            }
            results
        });
    }
    let mut results = Vec::with_capacity(REQUESTS);
    while let Some(r) = tasks.join_next().await {
        results.extend(r.expect("a checkout task panicked"));
    }
    assert_eq!(results.len(), REQUESTS);

    // Every answer is an acknowledgement or an insufficient_credit refusal.
    let mut acked: HashMap<String, (String, Decimal)> = HashMap::new();
    let mut spent: HashMap<&str, Decimal> = HashMap::new();
    let mut refused = 0;
    for (order_id, employee, gross, reply) in &results {
        match (reply.status, reply.code()) {
            (StatusCode::CREATED, _) => {
                assert!(
                    reply.token.is_some(),
                    "an acknowledged checkout names its writes"
                );
                *spent.entry(employee.as_str()).or_default() += *gross;
                acked.insert(order_id.clone(), (employee.clone(), *gross));
            }
            (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_credit") => refused += 1,
            (status, _) => panic!("checkout {order_id}: unexpected {status} {}", reply.body),
        }
    }
    assert_eq!(acked.len() + refused, REQUESTS);
    assert!(
        !acked.is_empty() && refused > 0,
        "the load both spends and runs out: {} acknowledged, {refused} refused",
        acked.len()
    );

    // The log read back whole; the read-model table the API reads reaches
    // a fresh fold of it (polled: on DynamoDB the stream projector has no
    // position to wait on).
    let records = server.store().all_records().await.expect("the store reads");
    let envelopes = common::decode_all(&records);
    let fresh = common::fold(&envelopes);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let table = loop {
        let table = server.views().scan().await.expect("the table scans");
        let drift = table.drift(&fresh);
        if drift.is_empty() {
            break table;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the read models reach a fresh fold of the log; still {} apart, first: {:?}",
            drift.len(),
            drift.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let live_credit = |id: EmployeeId| {
        let key = ledger_store::views::ViewKey {
            tenant_id: tenant,
            stream: ledger_core::id::StreamId::credit(id),
        };
        ledger_core::projection::credit::CreditView::from_bytes(&table.views[&key].bytes)
            .expect("a credit view")
    };

    // Credit: never negative, live or fresh; spends within the allowance and
    // exactly what the balance lost.
    for employee in &employees {
        let id = EmployeeId::new(employee);
        let live_view = live_credit(id);
        let fresh_view = fresh.credit.get(tenant, id).expect("a fresh credit view");
        let spent = spent.get(employee.as_str()).copied().unwrap_or_default();
        assert!(
            live_view.balance.amount() >= Decimal::ZERO,
            "{employee} live balance"
        );
        assert!(
            fresh_view.balance.amount() >= Decimal::ZERO,
            "{employee} fresh balance"
        );
        assert!(
            spent <= allowance,
            "{employee} spent {spent} of {allowance}"
        );
        assert_eq!(
            live_view.balance.amount(),
            allowance - spent,
            "{employee}: balance is the allowance less the acknowledged spends"
        );
    }

    // Exactly the acknowledged sales are in the log (refusals write
    // nothing), each with its CreditSpent.
    let facts = common::facts(&envelopes);
    let logged: HashSet<&String> = facts.sales.keys().collect();
    let expected: HashSet<&String> = acked.keys().collect();
    assert_eq!(
        logged, expected,
        "the log holds exactly the acknowledged sales"
    );
    for (order_id, (employee, gross)) in &acked {
        assert_eq!(
            facts.sales[order_id],
            (*gross, Some(employee.clone())),
            "sale {order_id} as acknowledged"
        );
    }
    facts.assert_credit_pairs_whole();

    common::assert_audit_clean(&records);
    server.stop().await.expect("the server stops");
    eprintln!(
        "concurrency on {backend:?}: {} acknowledged, {refused} refused, {} events, in {:.2} s",
        acked.len(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
}
