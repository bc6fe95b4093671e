//! The Lambda seam's AWS side, emulated: the Lambda Runtime API
//! (`GET /2018-06-01/runtime/invocation/next`, `POST
//! .../invocation/{id}/response`, `POST .../invocation/{id}/error`, `POST
//! .../init/error`) as a small axum server on loopback that hands out a
//! queue of event payloads and collects what the function answers per
//! request id; the functions themselves run as the real binaries, child
//! processes started exactly as Lambda starts a custom runtime
//! (`AWS_LAMBDA_RUNTIME_API` and the function's environment, nothing
//! inherited); and fresh tables on DynamoDB Local.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_local::emulator::{Emulator, Kind, unique_prefix};
use aws_local::mapping::RunnerHandle;
use aws_local::streams::{StreamsRunner, StreamsRunnerConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ledger_store::dynamodb::views::DynamoTable;
use ledger_store::dynamodb::{DynamoConfig, clients, create_tables};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

/// How long an invocation may take before the test gives up on it.
pub const INVOKE_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long a binary that should exit at once may take to do so.
pub const EXIT_WAIT_MAX: Duration = Duration::from_secs(20);

/// The time a function is given for an invocation unless a test says.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

pub const REGION: &str = "us-east-1";
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:tally-function";

// ---------------------------------------------------------------------------
// The Lambda Runtime API, emulated.
// ---------------------------------------------------------------------------

/// What the function answered to one invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`: the handler's JSON.
    Response(Value),
    /// `POST /runtime/invocation/{id}/error`: the error type header and the
    /// diagnostic (`errorType`, `errorMessage`).
    Error {
        error_type: Option<String>,
        body: Value,
    },
}

impl Outcome {
    /// The item identifiers of a partial-batch response, in its order.
    pub fn failures(&self) -> Vec<String> {
        let Outcome::Response(body) = self else {
            panic!("the invocation failed instead of answering: {self:?}");
        };
        let failures = body
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("no batchItemFailures array in {body}"));
        failures
            .iter()
            .map(|f| {
                f.get("itemIdentifier")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("a failure without itemIdentifier: {body}"))
                    .to_owned()
            })
            .collect()
    }
}

#[derive(Default)]
struct Rapid {
    /// Invocations not yet handed to the function: request id, payload and
    /// the time the function is given for it.
    queue: Mutex<VecDeque<(String, Vec<u8>, Duration)>>,
    queued: Notify,
    /// Invocations handed out or queued, waiting for an answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// `POST /runtime/init/error` bodies, with their error type header.
    init_errors: Mutex<Vec<(Option<String>, Value)>>,
    /// Requests to anything else, or answers for unknown request ids.
    unexpected: Mutex<Vec<String>>,
    next_calls: AtomicU64,
    next_id: AtomicU64,
}

/// The emulated Runtime API of one function instance.
pub struct RuntimeApi {
    addr: SocketAddr,
    rapid: Arc<Rapid>,
}

const ERROR_TYPE: &str = "lambda-runtime-function-error-type";

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let rapid = Arc::new(Rapid::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(unexpected)
            .with_state(Arc::clone(&rapid));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi { addr, rapid }
    }

    /// `host:port`, as Lambda sets `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation whose deadline is `timeout` after the function
    /// receives it (`Lambda-Runtime-Deadline-Ms`).
    pub fn enqueue_with(
        &self,
        payload: &Value,
        timeout: Duration,
    ) -> (String, oneshot::Receiver<Outcome>) {
        let n = self.rapid.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("8476a536-e9f4-11e8-9739-{n:012x}");
        let (tx, rx) = oneshot::channel();
        self.rapid.waiting.lock().unwrap().insert(id.clone(), tx);
        self.rapid.queue.lock().unwrap().push_back((
            id.clone(),
            serde_json::to_vec(payload).unwrap(),
            timeout,
        ));
        self.rapid.queued.notify_one();
        (id, rx)
    }

    /// Invokes the function with `payload` and waits for its answer; fails
    /// fast, with the function's stderr, if the process dies meanwhile.
    pub async fn invoke(&self, function: &mut Function, payload: &Value) -> (String, Outcome) {
        self.invoke_with(function, payload, INVOCATION_TIMEOUT)
            .await
    }

    /// [`RuntimeApi::invoke`] with `timeout` for the function to answer in.
    pub async fn invoke_with(
        &self,
        function: &mut Function,
        payload: &Value,
        timeout: Duration,
    ) -> (String, Outcome) {
        let (id, mut rx) = self.enqueue_with(payload, timeout);
        let started = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(50), &mut rx).await {
                Ok(Ok(outcome)) => return (id, outcome),
                Ok(Err(_)) => panic!("the emulator dropped request {id}"),
                Err(_) => {
                    if let Some(status) = function.exited() {
                        panic!(
                            "the function exited ({status}) during request {id}; stderr:\n{}",
                            function.stderr().join("\n")
                        );
                    }
                    assert!(
                        started.elapsed() < INVOKE_WAIT_MAX,
                        "no answer to request {id} within {INVOKE_WAIT_MAX:?}; stderr:\n{}",
                        function.stderr().join("\n")
                    );
                }
            }
        }
    }

    /// How many times the function asked for its next invocation.
    pub fn next_calls(&self) -> u64 {
        self.rapid.next_calls.load(Ordering::Relaxed)
    }

    pub fn init_errors(&self) -> Vec<(Option<String>, Value)> {
        self.rapid.init_errors.lock().unwrap().clone()
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.rapid.unexpected.lock().unwrap().clone()
    }
}

/// `GET /runtime/invocation/next`: blocks until an invocation is queued, as
/// Lambda does, and answers its payload with the invocation's headers.
async fn next(State(rapid): State<Arc<Rapid>>) -> Response {
    rapid.next_calls.fetch_add(1, Ordering::Relaxed);
    loop {
        let notified = rapid.queued.notified();
        let item = rapid.queue.lock().unwrap().pop_front();
        if let Some((id, payload, timeout)) = item {
            let deadline = now_ms() + timeout.as_millis() as u64;
            let trace = format!(
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1;Lineage=a87bb{}",
                &id[id.len() - 3..]
            );
            let headers = [
                ("Lambda-Runtime-Aws-Request-Id", id),
                ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    FUNCTION_ARN.to_owned(),
                ),
                ("Lambda-Runtime-Trace-Id", trace),
                ("Content-Type", "application/json".to_owned()),
            ];
            return (StatusCode::OK, headers, payload).into_response();
        }
        notified.await;
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn answer(rapid: &Rapid, id: &str, outcome: Outcome) -> Response {
    match rapid.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            accepted()
        }
        None => {
            rapid
                .unexpected
                .lock()
                .unwrap()
                .push(format!("an answer for unknown request {id}: {outcome:?}"));
            (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
                ),
            )
                .into_response()
        }
    }
}

fn json_body(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(rapid): State<Arc<Rapid>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(&rapid, &id, Outcome::Response(json_body(&body)))
}

async fn error(
    State(rapid): State<Arc<Rapid>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error_type = headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    answer(
        &rapid,
        &id,
        Outcome::Error {
            error_type,
            body: json_body(&body),
        },
    )
}

async fn init_error(State(rapid): State<Arc<Rapid>>, headers: HeaderMap, body: Bytes) -> Response {
    let error_type = headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    rapid
        .init_errors
        .lock()
        .unwrap()
        .push((error_type, json_body(&body)));
    accepted()
}

async fn unexpected(State(rapid): State<Arc<Rapid>>, request: axum::extract::Request) -> Response {
    rapid
        .unexpected
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri()));
    StatusCode::NOT_FOUND.into_response()
}

// ---------------------------------------------------------------------------
// The function: a real binary as a child process.
// ---------------------------------------------------------------------------

/// A running binary; killed when dropped, so a failing test leaves nothing
/// behind.
pub struct Function {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// What a function printed, line by line.
#[derive(Debug)]
pub struct Printed {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

fn read_lines(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            into.lock().unwrap().push(line);
        }
    })
}

impl Function {
    /// Starts `bin` with exactly `env` (nothing inherited, as in Lambda's
    /// execution environment, where the runtime sets every variable).
    pub fn spawn(bin: &str, env: &[(&str, String)]) -> Function {
        let mut child = Process::new(bin)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            read_lines(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            read_lines(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Function {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Starts `bin` as Lambda would, against `api`, on `config`'s tables,
    /// with `extra` variables of the function's own configuration.
    pub fn start(
        bin: &str,
        api: &RuntimeApi,
        config: &DynamoConfig,
        extra: &[(&'static str, String)],
    ) -> Function {
        let mut env = lambda_env(function_name(bin), Some(api), config);
        env.extend(extra.iter().cloned());
        Function::spawn(bin, &env)
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the process and returns everything it printed.
    pub fn stop(mut self) -> Printed {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.collect()
    }

    /// Waits for the process to exit by itself (killing it after `max`).
    pub fn wait(mut self, max: Duration) -> (Option<ExitStatus>, Printed) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if started.elapsed() > max {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        (status, self.collect())
    }

    fn collect(&mut self) -> Printed {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Printed {
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment Lambda gives a custom runtime, and the function's own
/// configuration.
pub fn lambda_env(
    function: &str,
    api: Option<&RuntimeApi>,
    config: &DynamoConfig,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/16/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_REGION", REGION.to_owned()),
        ("TALLY_TABLE_PREFIX", config.table_prefix.clone()),
        ("RUST_LOG", "info".to_owned()),
    ];
    if let Some(api) = api {
        env.push(("AWS_LAMBDA_RUNTIME_API", api.endpoint()));
    }
    if let Some(endpoint) = &config.endpoint {
        env.push(("TALLY_DYNAMODB_ENDPOINT", endpoint.clone()));
    }
    env
}

// ---------------------------------------------------------------------------
// DynamoDB Local.
// ---------------------------------------------------------------------------

/// Fresh tables on the shared DynamoDB Local, and the read-model table.
pub async fn tables(label: &str) -> (DynamoConfig, DynamoTable) {
    let endpoint =
        tokio::task::spawn_blocking(|| Emulator::shared(Kind::DynamoDb).endpoint().to_owned())
            .await
            .unwrap();
    let config = DynamoConfig {
        endpoint: Some(endpoint),
        table_prefix: unique_prefix(label),
    };
    let (db, _) = clients(&config).await;
    create_tables(&db, &config.table_prefix)
        .await
        .expect("create the tables on DynamoDB Local");
    let table = DynamoTable::new(db, config.table_names().1);
    (config, table)
}
/// The function's name: its binary's file name.
pub fn function_name(bin: &str) -> &str {
    std::path::Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The stream projector, run in this process on the event table's stream
/// by the local runner (as `tally serve --store dynamodb` runs it), so
/// what a function appends reaches the read models the others read.
pub async fn project(config: &DynamoConfig) -> RunnerHandle {
    let projector = Arc::new(projector::StreamProjector::new(
        DynamoTable::connect(config).await,
    ));
    let handler = move |event| {
        let projector = Arc::clone(&projector);
        async move { projector::lambda::handle_dynamodb(&projector, event).await }
    };
    StreamsRunner::start(
        StreamsRunnerConfig::new(config.endpoint.clone(), config.table_names().0),
        handler,
    )
    .await
    .expect("the stream projector starts on DynamoDB Local")
}

/// Every item of the event table (events, keys and heads): what a refused
/// request must leave as it was.
pub async fn event_items(config: &DynamoConfig) -> usize {
    let (db, _) = clients(config).await;
    let mut count = 0;
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(config.table_names().0)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scanning the event table");
        count += page.items().len();
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return count,
        }
    }
}

/// A committed fixture of `tests/fixtures/aws/`.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/aws/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}
