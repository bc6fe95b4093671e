//! The command service against a real SQLite store, where another writer
//! moves a stream behind the service's cached state.

use command_api::service::{Caller, CommandService, Decision, Idempotency};
use ledger_core::credit::{AdjustCredit, CreditCommand, CreditPolicyInput, OpenCreditAccount};
use ledger_core::event::Payment;
use ledger_core::id::StreamVersion;
use ledger_core::id::{EmployeeId, ItemCode, OrderId, StreamId, TenantId, UserId, VendorId};
use ledger_core::memory::Command;
use ledger_core::policy::ReplenishMode;
use ledger_core::sale::{LineInput, RecordSale, SaleCommand};
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::vendor::{RegisterVendor, VendorCommand};
use ledger_core::{Actor, Cadence, CommissionRate, Currency, Rejection, Role, TimeZone, Timestamp};
use ledger_store::sqlite::SqliteStore;
use ledger_store::{CommitLog, EventStore, IdempotencyKey};
use rust_decimal::Decimal;

const NOW: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);

fn caller() -> Caller {
    Caller {
        tenant_id: TenantId::new("t"),
        actor: Actor {
            user_id: UserId::new("admin"),
            role: Role::Admin,
        },
    }
}

fn credit_sale(order: &str, cents: i64) -> Command {
    Command::Sale(SaleCommand::Record(RecordSale {
        order_id: OrderId::new(order),
        vendor_id: VendorId::new("V1"),
        lines: vec![LineInput {
            item: ItemCode::new("A"),
            quantity: 1,
            unit_price: Decimal::new(cents, 2),
        }],
        payment: Payment::Credit {
            employee_id: EmployeeId::new("E1"),
        },
        occurred_at: None,
        now: NOW,
    }))
}

async fn run(service: &CommandService<SqliteStore>, command: Command, key: &str) -> Decision {
    let idempotency = Idempotency {
        key: IdempotencyKey::parse(key).unwrap(),
        request_hash: [key.len() as u8; 32],
    };
    let executed = service
        .execute(caller(), &command, NOW, Some(idempotency), |_| {
            b"r".to_vec()
        })
        .await
        .expect("executes");
    executed.decision.expect("a first request, not a replay")
}

/// Two services on one store stand for two writers (two Lambdas): neither
/// holds state of the log, so each decides on the heads as the other left
/// them.
#[tokio::test]
async fn two_writers_decide_on_each_other_s_heads() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
    let first = CommandService::new(store.clone());
    let setup = [
        Command::Tenant(ConfigureTenant {
            currency: Currency::new("PHP"),
            time_zone: TimeZone::new("Asia/Manila"),
        }),
        Command::Vendor(VendorCommand::Register(RegisterVendor {
            vendor_id: VendorId::new("V1"),
            name: Name::new("Stall"),
            commission_rate: CommissionRate::from_basis_points(1000).unwrap(),
        })),
        Command::Credit(CreditCommand::Open(OpenCreditAccount {
            employee_id: EmployeeId::new("E1"),
            name: Name::new("Employee"),
            policy: CreditPolicyInput {
                allowance: Decimal::new(100, 0),
                cadence: Cadence::SemiMonthly,
                mode: ReplenishMode::TopUp,
                cap: None,
            },
        })),
        Command::Credit(CreditCommand::Adjust(AdjustCredit {
            employee_id: EmployeeId::new("E1"),
            amount: Decimal::new(100, 0),
            reason: Reason::new("opening balance"),
        })),
    ];
    for (i, command) in setup.into_iter().enumerate() {
        let decision = run(&first, command, &format!("setup-{i}")).await;
        assert!(matches!(decision, Decision::Accepted(e) if !e.is_empty()));
    }

    let second = CommandService::new(store.clone());
    assert!(matches!(
        run(&second, credit_sale("O-1", 80_00), "sale-1").await,
        Decision::Accepted(_)
    ));
    let head = store.head();

    // The first loads the credit head the second moved: 20 is left.
    let decision = run(&first, credit_sale("O-2", 50_00), "sale-2").await;
    assert!(
        matches!(
            decision,
            Decision::Rejected(Rejection::InsufficientCredit { .. })
        ),
        "{decision:?}"
    );
    let tenant = TenantId::new("t");
    let order = store
        .read_stream(
            tenant,
            StreamId::order(OrderId::new("O-2")),
            StreamVersion::NONE,
            10,
        )
        .await
        .unwrap();
    assert!(order.is_empty(), "the refused sale wrote no order");
    assert!(
        store.read_log(head, 10).await.unwrap().is_empty(),
        "the refused sale wrote no event (only its remembered rejection)"
    );

    // What is left can be spent.
    assert!(matches!(
        run(&first, credit_sale("O-3", 20_00), "sale-3").await,
        Decision::Accepted(_)
    ));
    let employee = EmployeeId::new("E1");
    let state = second
        .aggregates(tenant, &[StreamId::credit(employee)])
        .await
        .unwrap();
    let balance = state.credit_state(employee).map(|c| c.balance);
    assert_eq!(balance.map(|b| b.is_zero()), Some(true), "{balance:?}");
}
