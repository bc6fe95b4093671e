//! Two command services on one store stand for two API instances (two
//! Lambdas) with nothing shared but the store: credit is never overdrawn,
//! every acknowledged sale is in the log, the log audits clean, a sale
//! after an acknowledged suspension is refused, and no sale is ever
//! decided in another currency than the tenant's. On SQLite (two stores
//! open on one file) and on DynamoDB Local (two clients of one table).

use std::sync::Arc;

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use command_api::service::{Caller, CommandService, Decision, ExecuteError};
use ledger_core::credit::{CreditCommand, CreditPolicyInput, OpenCreditAccount, ReplenishCredit};
use ledger_core::event::{Event, Payment};
use ledger_core::id::{
    EmployeeId, ItemCode, OrderId, StreamId, StreamVersion, TenantId, UserId, VendorId,
};
use ledger_core::memory::Command;
use ledger_core::policy::ReplenishMode;
use ledger_core::rng::SplitMix64;
use ledger_core::sale::{LineInput, RecordSale, SaleCommand};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::time::Period;
use ledger_core::vendor::{RegisterVendor, SuspendVendor, VendorCommand};
use ledger_core::{
    Actor, Cadence, CommissionRate, Currency, Rejection, Role, TimeZone, Timestamp, codec,
};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::SqliteStore;
use ledger_store::{EventStore, read_stream_all};
use rust_decimal::Decimal;
use tempfile::TempDir;

/// Tasks checking out at once, alternating between the two instances.
const TASKS: usize = 64;
/// Checkouts each task attempts.
const CHECKOUTS_PER_TASK: usize = 4;
const EMPLOYEES: usize = 3;
/// Each employee's allowance, in whole pesos: less than the checkouts would
/// spend, so that some must be refused.
const ALLOWANCE: i64 = 600;
/// Rounds of the currency race, each in a tenant of its own.
const CURRENCY_ROUNDS: usize = 12;
const NOW: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_never_overdraw() {
        let (a, b, _dir) = super::sqlite_pair().await;
        super::two_instances_never_overdraw(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acknowledged_suspension_refuses_the_other_instance_s_sale() {
        let (a, b, _dir) = super::sqlite_pair().await;
        super::an_acknowledged_suspension_refuses_the_other_instance_s_sale(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_sale_is_decided_in_a_currency_the_tenant_left() {
        let (a, b, _dir) = super::sqlite_pair().await;
        super::no_sale_is_decided_in_a_currency_the_tenant_left(a, b).await;
    }
}

mod dynamodb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_never_overdraw() {
        let (a, b) = super::dynamo_pair().await;
        super::two_instances_never_overdraw(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acknowledged_suspension_refuses_the_other_instance_s_sale() {
        let (a, b) = super::dynamo_pair().await;
        super::an_acknowledged_suspension_refuses_the_other_instance_s_sale(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_sale_is_decided_in_a_currency_the_tenant_left() {
        let (a, b) = super::dynamo_pair().await;
        super::no_sale_is_decided_in_a_currency_the_tenant_left(a, b).await;
    }
}

async fn sqlite_pair() -> (
    CommandService<SqliteStore>,
    CommandService<SqliteStore>,
    TempDir,
) {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join("tally.db");
    let a = SqliteStore::open(&path).expect("the first store opens");
    let b = SqliteStore::open(&path).expect("the second store opens the same file");
    (CommandService::new(a), CommandService::new(b), dir)
}

async fn dynamo_pair() -> (CommandService<DynamoStore>, CommandService<DynamoStore>) {
    let endpoint =
        tokio::task::spawn_blocking(|| Emulator::shared(Kind::DynamoDb).endpoint().to_owned())
            .await
            .expect("DynamoDB Local starts");
    let config = DynamoConfig {
        endpoint: Some(endpoint),
        table_prefix: unique_prefix("sys-instances"),
    };
    let a = DynamoStore::create_and_connect(&config)
        .await
        .expect("tables");
    let b = DynamoStore::connect(&config)
        .await
        .expect("a second client");
    (CommandService::new(a), CommandService::new(b))
}

fn caller(tenant_id: TenantId) -> Caller {
    Caller {
        tenant_id,
        actor: Actor {
            user_id: UserId::new("admin"),
            role: Role::Admin,
        },
    }
}

async fn run<S: EventStore>(
    service: &CommandService<S>,
    tenant: TenantId,
    command: Command,
) -> Decision {
    service
        .execute(caller(tenant), &command, NOW, None, |_| Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{command:?} failed: {e}"))
        .decision
        .expect("an unkeyed command is never a replay")
}

/// Most times a checkout is sent again after the service answered
/// `Conflict` (as a POS does on a 409: the same command, nothing written).
const CLIENT_RETRIES_MAX: usize = 20;

/// `run` as a client runs a checkout: again after a conflict, which the
/// service answers having written nothing when instances kept beating it
/// to an account.
async fn run_as_client<S: EventStore>(
    service: &CommandService<S>,
    tenant: TenantId,
    command: Command,
) -> Decision {
    for _ in 0..CLIENT_RETRIES_MAX {
        match service
            .execute(caller(tenant), &command, NOW, None, |_| Vec::new())
            .await
        {
            Ok(executed) => {
                return executed
                    .decision
                    .expect("an unkeyed command is never a replay");
            }
            Err(ExecuteError::Conflict) => continue,
            Err(e) => panic!("{command:?} failed: {e}"),
        }
    }
    panic!("{command:?} conflicted {CLIENT_RETRIES_MAX} times in a row")
}

async fn accepted<S: EventStore>(service: &CommandService<S>, tenant: TenantId, command: Command) {
    let decision = run(service, tenant, command).await;
    assert!(
        matches!(decision, Decision::Accepted(ref e) if !e.is_empty()),
        "{decision:?}"
    );
}

fn vendor() -> VendorId {
    VendorId::new("V1")
}

fn employee(n: usize) -> EmployeeId {
    EmployeeId::new(&format!("E{n}"))
}

fn sale(order: &str, pesos: i64, payment: Payment) -> Command {
    Command::Sale(SaleCommand::Record(RecordSale {
        order_id: OrderId::new(order),
        vendor_id: vendor(),
        lines: vec![LineInput {
            item: ItemCode::new("A"),
            quantity: 1,
            unit_price: Decimal::new(pesos, 0),
        }],
        payment,
        occurred_at: None,
        now: NOW,
    }))
}

/// A tenant in `currency` with one vendor.
async fn tenant_with_vendor<S: EventStore>(
    service: &CommandService<S>,
    name: &str,
    currency: &str,
) -> TenantId {
    let tenant = TenantId::new(&unique_prefix(name));
    let configure = Command::Tenant(ConfigureTenant {
        currency: Currency::new(currency),
        time_zone: TimeZone::new("Asia/Manila"),
    });
    accepted(service, tenant, configure).await;
    let register = Command::Vendor(VendorCommand::Register(RegisterVendor {
        vendor_id: vendor(),
        name: Name::new("Stall"),
        commission_rate: CommissionRate::from_basis_points(1000).expect("a rate"),
    }));
    accepted(service, tenant, register).await;
    tenant
}

async fn two_instances_never_overdraw<S: EventStore>(a: CommandService<S>, b: CommandService<S>) {
    let tenant = tenant_with_vendor(&a, "instances", "PHP").await;
    for n in 0..EMPLOYEES {
        let open = Command::Credit(CreditCommand::Open(OpenCreditAccount {
            employee_id: employee(n),
            name: Name::new("Employee"),
            policy: CreditPolicyInput {
                allowance: Decimal::new(ALLOWANCE, 0),
                cadence: Cadence::Monthly,
                mode: ReplenishMode::TopUp,
                cap: None,
            },
        }));
        accepted(&b, tenant, open).await;
        let replenish = Command::Credit(CreditCommand::Replenish(ReplenishCredit {
            employee_id: employee(n),
            period: Period::containing(NOW, TimeZone::new("Asia/Manila"), Cadence::Monthly),
            now: NOW,
        }));
        accepted(&a, tenant, replenish).await;
    }
    let services = Arc::new((a, b));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let services = Arc::clone(&services);
        tasks.spawn(async move {
            let mut rng = SplitMix64::new(task as u64 + 1);
            let mut acknowledged = Vec::new();
            for n in 0..CHECKOUTS_PER_TASK {
                let service = if (task + n) % 2 == 0 {
                    &services.0
                } else {
                    &services.1
                };
                let who = (rng.next_u64() % EMPLOYEES as u64) as usize;
                let pesos = 5 + (rng.next_u64() % 20) as i64;
                let order = format!("O-{task}-{n}");
                let payment = Payment::Credit {
                    employee_id: employee(who),
                };
                match run_as_client(service, tenant, sale(&order, pesos, payment)).await {
                    Decision::Accepted(_) => acknowledged.push((order, who, pesos)),
                    Decision::Rejected(Rejection::InsufficientCredit { .. }) => {}
                    Decision::Rejected(other) => panic!("an unexpected refusal: {other}"),
                }
            }
            acknowledged
        });
    }
    let mut spent = [0i64; EMPLOYEES];
    let mut acknowledged = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        for (order, who, pesos) in joined.expect("a checkout task panicked") {
            spent[who] += pesos;
            acknowledged.push(order);
        }
    }
    let (a, _) = &*services;
    assert!(
        acknowledged.len() < TASKS * CHECKOUTS_PER_TASK,
        "the allowances must run out for the test to mean anything"
    );
    for order in &acknowledged {
        let stream = StreamId::order(OrderId::new(order));
        let records = read_stream_all(a.store(), tenant, stream, StreamVersion::NONE)
            .await
            .expect("reads");
        assert_eq!(
            records.len(),
            1,
            "acknowledged sale {order} is in the log once"
        );
    }
    let mut records = Vec::new();
    for (n, &spent) in spent.iter().enumerate() {
        let stream = StreamId::credit(employee(n));
        let credit = read_stream_all(a.store(), tenant, stream, StreamVersion::NONE)
            .await
            .expect("reads");
        let state = a
            .aggregates(tenant, &[stream])
            .await
            .expect("the head loads");
        let balance = state.credit_state(employee(n)).expect("an account").balance;
        assert_eq!(
            balance.amount(),
            Decimal::new(ALLOWANCE - spent, 0),
            "E{n}: the head's balance is the allowance less what was acknowledged"
        );
        assert!(
            spent <= ALLOWANCE,
            "E{n} overdrawn: {spent} spent of {ALLOWANCE}"
        );
        records.extend(credit.into_iter().map(|r| r.bytes));
    }
    for order in &acknowledged {
        let stream = StreamId::order(OrderId::new(order));
        let order = read_stream_all(a.store(), tenant, stream, StreamVersion::NONE)
            .await
            .expect("reads");
        records.extend(order.into_iter().map(|r| r.bytes));
    }
    let report = ledger_core::audit::audit(records.iter().map(Vec::as_slice));
    assert!(report.is_clean(), "the log audits clean: {report:?}");
}

async fn an_acknowledged_suspension_refuses_the_other_instance_s_sale<S: EventStore>(
    a: CommandService<S>,
    b: CommandService<S>,
) {
    let tenant = tenant_with_vendor(&a, "suspend", "PHP").await;
    accepted(&b, tenant, sale("O-before", 10, Payment::Cash)).await;
    let suspend = Command::Vendor(VendorCommand::Suspend(SuspendVendor {
        vendor_id: vendor(),
        reason: Reason::new("audit"),
    }));
    accepted(&a, tenant, suspend).await;
    let decision = run(&b, tenant, sale("O-after", 10, Payment::Cash)).await;
    assert!(
        matches!(decision, Decision::Rejected(Rejection::VendorSuspended)),
        "{decision:?}"
    );
    let stream = StreamId::order(OrderId::new("O-after"));
    let written = read_stream_all(b.store(), tenant, stream, StreamVersion::NONE)
        .await
        .expect("reads");
    assert!(written.is_empty(), "the refused sale wrote nothing");
}

async fn no_sale_is_decided_in_a_currency_the_tenant_left<S: EventStore>(
    a: CommandService<S>,
    b: CommandService<S>,
) {
    let services = Arc::new((a, b));
    for round in 0..CURRENCY_ROUNDS {
        let tenant = tenant_with_vendor(&services.0, &format!("currency-{round}"), "PHP").await;
        let change = {
            let services = Arc::clone(&services);
            tokio::spawn(async move {
                let configure = Command::Tenant(ConfigureTenant {
                    currency: Currency::new("USD"),
                    time_zone: TimeZone::new("Asia/Manila"),
                });
                run(&services.0, tenant, configure).await
            })
        };
        let first_sale = run(&services.1, tenant, sale("O-1", 10, Payment::Cash)).await;
        let change = change.await.expect("the configuring task");
        let settings = services
            .0
            .aggregates(tenant, &[StreamId::tenant(tenant)])
            .await
            .expect("loads");
        let currency = settings.settings().expect("configured").currency;
        if let Decision::Accepted(events) = &first_sale {
            for envelope in events {
                if let Event::SaleRecorded(e) = &envelope.event {
                    assert_eq!(
                        e.gross.currency(),
                        currency,
                        "round {round}: a sale in a currency the tenant left"
                    );
                }
            }
        }
        let stream = StreamId::order(OrderId::new("O-1"));
        for record in read_stream_all(services.0.store(), tenant, stream, StreamVersion::NONE)
            .await
            .expect("reads")
        {
            let envelope = codec::decode(&record.bytes).expect("decodes");
            assert_eq!(
                envelope.event.currency(),
                Some(currency),
                "round {round}: a stored sale in another currency"
            );
        }
        // Either may win a round (the change, then a sale in USD; or the
        // sale, then the change refused): never a sale kept in PHP under a
        // tenant now in USD, which the assertions above check.
        let _ = change;
    }
}
