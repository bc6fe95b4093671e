//! The real binary, stopped gracefully and killed with SIGKILL mid-load,
//! then restarted on its data directory: no acknowledged checkout is lost,
//! no two-stream append is half-present, the log audits clean, the
//! projector resumes from its checkpoint, and the restarted projections
//! agree with a fresh fold of the database file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ledger_core::id::{EmployeeId, TenantId};
use ledger_store::CommitLog;
use ledger_store::sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::{self, Http};
use ledger_core::rng::SplitMix64;

const TENANT: &str = "sys-durability";
const EMPLOYEES: usize = 20;
const ALLOWANCE: &str = "100000.00";
const LOAD_TASKS: usize = 32;
/// Checkouts acknowledged before the graceful stop.
const BEFORE_STOP: usize = 200;
/// Checkouts acknowledged before the SIGKILL (then it lands mid-flight).
const BEFORE_KILL: usize = 400;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One run of `tally serve`, logging JSON lines to a file.
struct Serve {
    child: Child,
    log: PathBuf,
    http: Http,
}

impl Serve {
    /// Starts `tally serve` on a free port and waits until it answers. A
    /// port taken between choosing and binding it costs another try.
    async fn start(data: &Path, logs: &Path, name: &str) -> Serve {
        for attempt in 0..3 {
            let port = free_port();
            let log = logs.join(format!("{name}-{attempt}.log"));
            let out = File::create(&log).expect("a log file");
            let child = tally()
                .args(["serve", "--log-json", "--data"])
                .arg(data)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("a log handle"))
                .stderr(out)
                .spawn()
                .expect("tally serve starts");
            let mut serve = Serve {
                child,
                log,
                http: Http::new(format!("http://127.0.0.1:{port}")),
            };
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if let Some(status) = serve.child.try_wait().expect("the child is waitable") {
                    let text = serve.log_text();
                    assert!(
                        text.contains("listening on"),
                        "{name} exited with {status}:\n{text}"
                    );
                    break;
                }
                if serve.http.health().await.is_ok() {
                    return serve;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not come up:\n{}",
                    serve.log_text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("{name} found no free port in three tries");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The position the projector said it restored its read models at.
    fn restored_position(&self) -> u64 {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v["fields"]["message"] == "read models restored")
            .map(|v| match &v["fields"]["position"] {
                Value::String(s) => s.parse().expect("a position"),
                other => other.as_u64().expect("a position"),
            })
            .unwrap_or_else(|| panic!("no \"read models restored\" line in:\n{}", self.log_text()))
    }

    /// SIGTERM, and the exit it leads to.
    async fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("the child is waitable") {
                assert!(
                    status.success(),
                    "graceful stop exits 0, not {status}:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no final checkpoint.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL is sent");
        self.child.wait().expect("the child is reaped");
    }

    async fn converged(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self.http.health().await.expect("healthz answers");
            let (log, projected) = (
                health["log_position"].as_u64().expect("log_position"),
                health["projected_position"]
                    .as_u64()
                    .expect("projected_position"),
            );
            if log == projected {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "projections stuck at {projected} of {log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn token(data: &Path, role: &str, vendor: Option<&str>) -> String {
    let mut command = tally();
    command
        .args(["token", "--data"])
        .arg(data)
        .args(["--tenant", TENANT, "--role", role]);
    if let Some(v) = vendor {
        command.args(["--vendor", v]);
    }
    let out = command.output().expect("tally token runs");
    assert!(
        out.status.success(),
        "tally token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("text")
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_owned()
}

/// What the load saw of one checkout.
#[derive(Debug, Clone)]
enum Seen {
    Acked {
        employee: String,
        gross: Decimal,
    },
    /// No answer (the server died under it): it may or may not be recorded.
    Unknown,
}

/// Credit checkouts from `LOAD_TASKS` tasks until `stop` or the server dies.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: tokio::task::JoinSet<Vec<(String, Seen)>>,
}

impl Load {
    fn start(http: &Http, cashier: &str, employees: &[String], prefix: &str, seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..LOAD_TASKS {
            let (http, cashier, employees) = (http.clone(), cashier.to_owned(), employees.to_vec());
            let (stop, acked, prefix) = (stop.clone(), acked.clone(), prefix.to_owned());
            tasks.spawn(async move {
                let mut rng = SplitMix64::new(seed ^ (task as u64 + 1));
                let mut seen = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let employee = employees[rng.below(employees.len() as u64) as usize].clone();
                    let unit_price = Decimal::new(1_000 + rng.below(9_000) as i64, 2);
                    let quantity = 1 + rng.below(2);
                    let order_id = format!("{prefix}-{task}-{n}");
                    let body = common::credit_sale(
                        &order_id,
                        quantity,
                        &unit_price.to_string(),
                        &employee,
                    );
                    match http
                        .send(
                            Method::POST,
                            "/v1/sales",
                            &cashier,
                            Some(&order_id),
                            Some(&body),
                        )
                        .await
                    {
                        Ok(reply) if reply.status == StatusCode::CREATED => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            let gross = unit_price * Decimal::from(quantity);
                            seen.push((order_id, Seen::Acked { employee, gross }));
                        }
                        Ok(reply) => panic!("checkout {order_id}: {} {}", reply.status, reply.body),
                        Err(_) => {
                            // The server is gone; the sale may have landed.
                            seen.push((order_id, Seen::Unknown));
                            break;
                        }
                    }
                }
                seen
            });
        }
        Load { stop, acked, tasks }
    }

    async fn wait_for_acks(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the load got stuck");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(mut self) -> Vec<(String, Seen)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            all.extend(r.expect("a load task panicked"));
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_checkouts_survive_sigkill_and_restart() {
    let started = Instant::now();
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let logs = tempfile::tempdir().expect("a temporary directory");
    let data = data_dir.path();
    let employees: Vec<String> = (1..=EMPLOYEES).map(|e| format!("E{e:02}")).collect();

    // First run: set up, load, stop gracefully (a final checkpoint).
    let first = Serve::start(data, logs.path(), "first").await;
    assert_eq!(
        first.restored_position(),
        0,
        "an empty store restores nothing"
    );
    let admin = token(data, "admin", None);
    let cashier = token(data, "cashier", Some("V1"));
    common::set_up_tenant(&first.http, &admin, "V1", &employees, ALLOWANCE).await;
    let load = Load::start(&first.http, &cashier, &employees, "A", 1);
    load.wait_for_acks(BEFORE_STOP).await;
    let mut seen = load.finish().await;
    let head_at_stop = first.converged().await;
    first.stop().await;

    // Second run: resumes from the checkpoint; killed mid-load.
    let second = Serve::start(data, logs.path(), "second").await;
    let restored = second.restored_position();
    assert!(
        restored > 0 && restored <= head_at_stop,
        "the restart resumes from the final checkpoint ({restored}), not from 0 (head was {head_at_stop})"
    );
    let load = Load::start(&second.http, &cashier, &employees, "B", 2);
    load.wait_for_acks(BEFORE_KILL).await;
    second.kill();
    seen.extend(load.finish().await);

    // Third run: on whatever the kill left.
    let third = Serve::start(data, logs.path(), "third").await;
    assert!(
        third.restored_position() >= restored,
        "checkpoints only move forward"
    );
    let head = third.converged().await;
    let mut served = HashMap::new();
    for employee in &employees {
        let reply = third
            .http
            .get(&format!("/v1/employees/{employee}/credit"), &admin)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let balance: Decimal = reply.body["balance"]["amount"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a balance");
        served.insert(employee.clone(), balance);
    }
    third.stop().await;

    // The database file itself.
    let store =
        SqliteStore::open(&data.join(tally::server::DATABASE_FILE)).expect("the store opens");
    assert_eq!(
        store.head().0,
        head,
        "the served log position is the file's head"
    );
    let records = common::read_all(&store).await;
    let envelopes = common::decode_all(&records);
    let facts = common::facts(&envelopes);
    let (mut acked, mut unknown, mut unknown_recorded) = (0, 0, 0);
    for (order_id, outcome) in &seen {
        match outcome {
            Seen::Acked { employee, gross } => {
                acked += 1;
                assert_eq!(
                    facts.sales.get(order_id),
                    Some(&(*gross, Some(employee.clone()))),
                    "acknowledged checkout {order_id} is in the log as acknowledged"
                );
                assert_eq!(
                    facts.spends.get(order_id).map(Vec::as_slice),
                    Some(&[(employee.clone(), *gross)][..]),
                    "acknowledged checkout {order_id} has its CreditSpent"
                );
            }
            Seen::Unknown => {
                unknown += 1;
                unknown_recorded += usize::from(facts.sales.contains_key(order_id));
            }
        }
    }
    assert_eq!(
        facts.sales.len(),
        acked + unknown_recorded,
        "the log holds the acknowledged sales and only those whose answer was lost"
    );
    facts.assert_credit_pairs_whole();
    common::assert_audit_clean(&records);

    let fresh = common::fold(&envelopes);
    let tenant = TenantId::new(TENANT);
    let allowance: Decimal = ALLOWANCE.parse().expect("a decimal");
    for employee in &employees {
        let view = fresh
            .credit
            .get(tenant, EmployeeId::new(employee))
            .expect("a credit view");
        let spent: Decimal = facts
            .spends
            .values()
            .flatten()
            .filter(|(e, _)| e == employee)
            .map(|(_, amount)| *amount)
            .sum();
        assert_eq!(
            view.balance.amount(),
            allowance - spent,
            "{employee} in the fresh fold"
        );
        assert_eq!(
            served[employee],
            view.balance.amount(),
            "{employee}: the restarted server serves the fresh fold's balance"
        );
    }
    eprintln!(
        "durability: {acked} acknowledged, {unknown} unanswered ({unknown_recorded} of them recorded), \
         {} events, restored at {restored}, in {:.2} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
}
