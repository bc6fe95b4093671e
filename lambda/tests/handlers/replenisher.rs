//! `tally-replenisher` on the committed EventBridge scheduled event,
//! through the real binary, on DynamoDB Local: every due account is
//! replenished exactly once, in its tenant's zone and by its cadence,
//! whether the run is cut off at its deadline and retried or runs twice.

use std::time::Duration;

use command_api::service::{Caller, CommandService, Decision};
use ledger_core::credit::{
    CreditCommand, CreditPolicyInput, OpenCreditAccount, SuspendCreditAccount,
};
use ledger_core::event::Event;
use ledger_core::memory::Command;
use ledger_core::policy::ReplenishMode;
use ledger_core::tenant::ConfigureTenant;
use ledger_core::text::{Name, Reason};
use ledger_core::{
    Actor, Cadence, Currency, EmployeeId, Period, Role, StreamId, TenantId, TimeZone, Timestamp,
    UserId,
};
use ledger_store::dynamodb::DynamoStore;
use ledger_store::read_stream_all;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::runtime::{Function, Outcome, RuntimeApi, event_items, fixture, project, tables};

const REPLENISHER_BIN: &str = env!("CARGO_BIN_EXE_tally-replenisher");

/// A credit account of the test: employee, cadence, suspended.
type Account = (String, Cadence, bool);

/// Where each tenant is and who holds credit there.
fn tenants() -> Vec<(&'static str, &'static str, Vec<Account>)> {
    let mut manila: Vec<Account> = (1..=12)
        .map(|i| (format!("E{i:02}"), Cadence::SemiMonthly, false))
        .collect();
    manila.push(("M01".to_owned(), Cadence::Monthly, false));
    manila.push(("S01".to_owned(), Cadence::SemiMonthly, true));
    vec![
        ("replenish-manila", "Asia/Manila", manila),
        (
            "replenish-la",
            "America/Los_Angeles",
            vec![("E01".to_owned(), Cadence::Monthly, false)],
        ),
    ]
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp::from_micros(since.as_micros() as i64)
}

async fn accept(service: &CommandService<DynamoStore>, tenant: TenantId, command: Command) {
    let caller = Caller {
        tenant_id: tenant,
        actor: Actor {
            user_id: UserId::new("admin"),
            role: Role::Admin,
        },
    };
    let executed = service
        .execute(caller, &command, now(), None, |_| Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    match executed.decision {
        Some(Decision::Accepted(events)) if !events.is_empty() => {}
        other => panic!("{command:?} was not accepted: {other:?}"),
    }
}

/// The periods an account's credit stream was replenished for.
async fn replenished(store: &DynamoStore, tenant: TenantId, employee: &str) -> Vec<Period> {
    let stream = StreamId::credit(EmployeeId::new(employee));
    read_stream_all(store, tenant, stream, ledger_core::id::StreamVersion::NONE)
        .await
        .unwrap()
        .iter()
        .filter_map(
            |r| match ledger_core::codec::decode(&r.bytes).unwrap().event {
                Event::CreditReplenished(e) => Some(e.period),
                _ => None,
            },
        )
        .collect()
}

fn error_message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Error { body, .. } => body["errorMessage"].as_str().unwrap_or_default().to_owned(),
        Outcome::Response(body) => panic!("expected the invocation to fail, it answered {body}"),
    }
}

fn report(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(body) => body,
        Outcome::Error { body, .. } => panic!("the run failed: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replenisher_replenishes_every_due_account_once_even_when_cut_off() {
    let (config, _) = tables("lambda-replenish").await;
    let projection = project(&config).await;
    let store = DynamoStore::connect(&config).await.unwrap();
    let service = CommandService::new(store.clone());
    for (tenant, zone, accounts) in tenants() {
        let tenant = TenantId::new(tenant);
        accept(
            &service,
            tenant,
            Command::Tenant(ConfigureTenant {
                currency: Currency::new("PHP"),
                time_zone: TimeZone::new(zone),
            }),
        )
        .await;
        for (employee, cadence, suspended) in accounts {
            let employee_id = EmployeeId::new(&employee);
            accept(
                &service,
                tenant,
                Command::Credit(CreditCommand::Open(OpenCreditAccount {
                    employee_id,
                    name: Name::new(&format!("Employee {employee}")),
                    policy: CreditPolicyInput {
                        allowance: Decimal::new(1500, 0),
                        cadence,
                        mode: ReplenishMode::TopUp,
                        cap: None,
                    },
                })),
            )
            .await;
            if suspended {
                accept(
                    &service,
                    tenant,
                    Command::Credit(CreditCommand::Suspend(SuspendCreditAccount {
                        employee_id,
                        reason: Reason::new("on leave"),
                    })),
                )
                .await;
            }
        }
    }
    projection
        .caught_up(Duration::from_secs(60))
        .await
        .expect("the credit views are projected");

    // The schedule fired now (a fixture's instant in the future would ask
    // for periods not started yet).
    let fired = now();
    let mut event = fixture("eventbridge-scheduled-event.json");
    event["time"] = json!(fired.to_datetime().to_rfc3339());
    let api = RuntimeApi::start().await;
    let mut function = Function::start(REPLENISHER_BIN, &api, &config, &[]);

    // Given less than its margin, a run takes on no account and fails, so
    // Lambda retries it; it wrote nothing.
    let before = event_items(&config).await;
    let (_, cut) = api
        .invoke_with(&mut function, &event, Duration::from_millis(500))
        .await;
    assert!(
        error_message(&cut).contains("stopped at the deadline"),
        "{cut:?}"
    );
    assert_eq!(
        event_items(&config).await,
        before,
        "a run cut off at once writes nothing"
    );

    // Given a little more, it may do part of the work before it stops.
    let short = tally_lambda::replenisher::DEADLINE_MARGIN + Duration::from_millis(150);
    let (_, partial) = api.invoke_with(&mut function, &event, short).await;
    let partly = match &partial {
        Outcome::Error { .. } => {
            assert!(error_message(&partial).contains("stopped at the deadline"));
            true
        }
        Outcome::Response(_) => false,
    };

    // The retry does the rest.
    let (_, full) = api.invoke(&mut function, &event).await;
    let full = report(full);
    assert_eq!(full["tenants"], 2, "{full}");
    assert_eq!(full["accounts"], 15, "{full}");
    assert_eq!(full["unfinished"], false, "{full}");
    assert_eq!(
        full["refused"],
        json!([{"tenant_id": "replenish-manila", "employee_id": "S01", "code": "credit_account_suspended"}]),
        "{full}"
    );
    let done = full["replenished"].as_u64().unwrap() + full["up_to_date"].as_u64().unwrap();
    assert_eq!(
        done, 14,
        "every account but the suspended one is replenished: {full}"
    );
    if !partly {
        assert_eq!(
            full["replenished"], 0,
            "the second run finished the job: {full}"
        );
    }

    // Run again (EventBridge may deliver twice): nothing more is written.
    projection
        .caught_up(Duration::from_secs(60))
        .await
        .expect("the replenishments are projected");
    let before = event_items(&config).await;
    let (_, again) = api.invoke(&mut function, &event).await;
    let again = report(again);
    assert_eq!(again["replenished"], 0, "{again}");
    assert_eq!(again["up_to_date"], 14, "{again}");
    assert_eq!(
        event_items(&config).await,
        before,
        "a second run writes nothing"
    );
    function.stop();
    projection.stop().await;

    // Each account holds exactly one replenishment, for the period of its
    // cadence that contains the instant the schedule fired, in its zone.
    for (tenant, zone, accounts) in tenants() {
        for (employee, cadence, suspended) in accounts {
            let periods = replenished(&store, TenantId::new(tenant), &employee).await;
            let expected = if suspended {
                vec![]
            } else {
                vec![Period::containing(fired, TimeZone::new(zone), cadence)]
            };
            assert_eq!(periods, expected, "{tenant}/{employee}");
        }
    }
}
