//! `tally serve`: a store (embedded SQLite by default, or DynamoDB), the
//! command service, the projector writing the read-model table and the
//! HTTP API, wired together in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use aws_local::mapping::RunnerHandle;
use aws_local::streams::{StreamsRunner, StreamsRunnerConfig};
use command_api::auth::{LocalKey, Verifier};
use command_api::http::{self, App};
use command_api::service::CommandService;
use ledger_core::id::StreamId;
use ledger_store::Position;
use ledger_store::dynamodb::views::{DynamoTable, GenerationFollower};
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::{SqliteStore, SqliteViews, generation_path, live_generation};
use ledger_store::views::{AnyTable, Live};
use ledger_store::{AnyStore, CommitLog, EventStore};
use projector::follow::ViewFollower;
use projector::lambda::{dynamodb_records, dynamodb_response};

use tally_sim::SimConfig;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "ledger.db";
/// Held while a server runs, so two servers never share a data directory.
pub const LOCK_FILE: &str = "serve.lock";
/// Days of trading the demo tenant starts with, ending yesterday.
pub const DEMO_DAYS: u32 = 21;
pub const DEMO_SALES_PER_DAY: u32 = 150;

pub struct ServerConfig {
    /// The token key, the lock, and with SQLite the ledger itself.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub demo: bool,
    pub store: StoreConfig,
}

/// Which store the server runs on.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// `ledger.db` in the data directory.
    #[default]
    Sqlite,
    /// DynamoDB tables (created when missing). The stream projector, run
    /// on the event table's stream as Lambda would run it, writes the
    /// read-model table the API reads.
    Dynamo(DynamoConfig),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub key: LocalKey,
    pub demo_seeded: bool,
    app: http::AppState<AnyStore>,
    /// The embedded log's follower (SQLite) or the generation watcher
    /// (DynamoDB), and what stops it.
    follower: Option<Follower>,
    stream_projection: Option<RunnerHandle>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    _lock: std::fs::File,
}

impl Server {
    /// Opens the data directory, seeds the demo tenant when asked and the
    /// store is empty, and starts serving.
    ///
    /// # Errors
    /// Anything that keeps the server from starting, with its context.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let lock = lock_data_dir(&config.data_dir)?;
        let store = match &config.store {
            StoreConfig::Sqlite => AnyStore::Sqlite(
                SqliteStore::open(&config.data_dir.join(DATABASE_FILE))
                    .context("opening the event store")?,
            ),
            StoreConfig::Dynamo(dynamo) => AnyStore::Dynamo(
                DynamoStore::create_and_connect(dynamo)
                    .await
                    .with_context(|| format!("opening the DynamoDB tables ({dynamo:?})"))?,
            ),
        };
        let demo_seeded = config.demo && !demo_exists(&store).await?;
        if demo_seeded {
            seed_demo(&store).await.context("seeding the demo tenant")?;
        }
        let key = LocalKey::load_or_create(&config.data_dir).context("loading the token key")?;
        let verifier: Arc<dyn Verifier> = Arc::new(key.verifier());
        // Reads nothing: every command loads the heads it needs.
        let service = CommandService::new(store.clone());
        let (views, follower, stream_projection, report) = match (&store, &config.store) {
            (AnyStore::Sqlite(sqlite), _) => {
                let database = config.data_dir.join(DATABASE_FILE);
                let (views, follower, report) = start_follower(sqlite, &database).await?;
                (views, Some(follower), None, report)
            }
            (AnyStore::Dynamo(_), StoreConfig::Dynamo(dynamo)) => {
                let generations = GenerationFollower::start(DynamoTable::connect(dynamo).await)
                    .await
                    .context("reading the live read-model generation")?;
                let (runner, report) =
                    start_stream_projection(dynamo, generations.write.clone()).await?;
                let read = generations.read.clone();
                let watcher = watch_generations(generations);
                (
                    AnyTable::LiveDynamo(read),
                    Some(watcher),
                    Some(runner),
                    report,
                )
            }
            (AnyStore::Dynamo(_), StoreConfig::Sqlite) => {
                unreachable!("the store follows its config")
            }
        };
        let app = Arc::new(App {
            service,
            views,
            verifier,
            projections: report,
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(app.clone());
        let serving = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        });
        tracing::info!(%addr, "serving");
        Ok(Server {
            addr,
            key,
            demo_seeded,
            app,
            follower,
            stream_projection,
            shutdown,
            serving,
            _lock: lock,
        })
    }

    pub fn store(&self) -> &AnyStore {
        self.app.store()
    }

    /// The stream projector's runner, on DynamoDB.
    pub fn stream_projection(&self) -> Option<&RunnerHandle> {
        self.stream_projection.as_ref()
    }

    /// The read-model table the API reads.
    pub fn views(&self) -> &AnyTable {
        &self.app.views
    }

    /// Stops accepting requests, finishes those in flight, and stops the
    /// projector after the page it is on (its checkpoint is saved after
    /// every page).
    ///
    /// # Errors
    /// A failure of the server or the projector.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.serving.await.context("server task")??;
        if let Some(runner) = self.stream_projection {
            runner.stop().await;
        }
        if let Some((stop, task)) = self.follower {
            let _ = stop.send(true);
            task.await.context("projector task")?;
        }
        Ok(())
    }
}

/// Health of the projector as `/healthz` shows it: a JSON object whose
/// fields join the answer's.
type ProjectionReport = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// A running follower, and what stops it.
type Follower = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// How often the embedded projector looks for a rebuilt generation of the
/// read models to adopt.
pub const GENERATION_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts the embedded projector: a `ViewFollower` of the SQLite log into
/// the live generation of the read models beside `database`. It reads only
/// its checkpoint (a position, whatever the log's length) before serving.
/// Its report gives the log head, the position projected, the lag between
/// them (which `tally load` waits on before it verifies) and the
/// generation readers read.
///
/// When `tally replay rebuild` switches in a new generation, the projector
/// adopts it (see [`follow_generations`]).
async fn start_follower(
    store: &SqliteStore,
    database: &Path,
) -> anyhow::Result<(AnyTable, Follower, ProjectionReport)> {
    let generation = live_generation(database).context("reading the live read-model generation")?;
    let views = open_views(database, generation)?;
    let live = Live::new(views.clone());
    let follower = ViewFollower::resume(store.clone(), views.clone(), views)
        .await
        .context("starting the projector")?;
    let projected = Arc::new(tokio::sync::watch::Sender::new(
        *follower.position().borrow(),
    ));
    let live_generation = Arc::new(std::sync::atomic::AtomicU32::new(generation));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follow_generations(
        Generations {
            store: store.clone(),
            database: database.to_owned(),
            live: live.clone(),
            projected: Arc::clone(&projected),
            generation: Arc::clone(&live_generation),
        },
        follower,
        stopped,
    ));
    let log = store.clone();
    let report: ProjectionReport = Arc::new(move || {
        let head = log.head().0;
        let projected = projected.borrow().0;
        serde_json::json!({
            "log_position": head,
            "projected_position": projected,
            "projection_lag_records": head.saturating_sub(projected),
            "read_model_generation": live_generation.load(std::sync::atomic::Ordering::Relaxed),
        })
    });
    Ok((AnyTable::Live(live), (stop, task), report))
}

fn open_views(database: &Path, generation: u32) -> anyhow::Result<SqliteViews> {
    let path = generation_path(database, generation);
    SqliteViews::open(&path)
        .with_context(|| format!("opening the read models ({})", path.display()))
}

/// Watches the DynamoDB generation pointer every [`GENERATION_POLL`] and
/// points the projector's writes and the API's reads where it says: a
/// rebuild moves writers first and readers once the new generation has
/// caught up (see `tally replay rebuild`).
fn watch_generations(generations: GenerationFollower) -> Follower {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(GENERATION_POLL) => {}
            }
            match generations.refresh().await {
                Ok(true) => {
                    let now = generations.generations();
                    tracing::info!(
                        read = now.read,
                        write = now.write,
                        "read-model generations switched"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading the generation pointer failed"),
            }
        }
    });
    (stop, task)
}

/// What the embedded projector shares with the server.
struct Generations {
    store: SqliteStore,
    database: PathBuf,
    /// The generation readers read.
    live: Live<SqliteViews>,
    /// The position the live generation is folded to.
    projected: Arc<tokio::sync::watch::Sender<Position>>,
    generation: Arc<std::sync::atomic::AtomicU32>,
}

/// Runs `follower` on the live generation until `stop`; every
/// [`GENERATION_POLL`] looks whether a rebuild switched in another one,
/// and adopts it: it folds the new generation from the rebuild's
/// checkpoint up to the log's head while the old follower goes on, then
/// points readers at the new one and stops the old follower. Readers never
/// see a generation behind the one they read before; the old file is left
/// for the operator to delete.
async fn follow_generations(
    shared: Generations,
    mut follower: ViewFollower<SqliteStore, SqliteViews, SqliteViews>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut generation = shared.generation.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let mut position = follower.position();
        let (halt, halted) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(follower.run(halted));
        let (adopted, next) = loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = halt.send(true);
                    let _ = run.await;
                    return;
                }
                Ok(()) = position.changed() => {
                    shared.projected.send_replace(*position.borrow_and_update());
                }
                () = tokio::time::sleep(GENERATION_POLL) => {
                    match live_generation(&shared.database) {
                        Ok(g) if g != generation => {
                            match adopt(&shared, g).await {
                                Ok(next) => break (g, next),
                                Err(e) => tracing::warn!(error = %e, generation = g, "adopting a rebuilt generation failed; trying again"),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "reading the live generation failed"),
                    }
                }
            }
        };
        shared.live.set(next.table().clone());
        let _ = halt.send(true);
        let _ = run.await;
        generation = adopted;
        shared.projected.send_replace(*next.position().borrow());
        shared
            .generation
            .store(generation, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            generation,
            "readers switched to a rebuilt generation of the read models"
        );
        follower = next;
    }
}

/// A follower of generation `generation`, caught up with the log.
async fn adopt(
    shared: &Generations,
    generation: u32,
) -> anyhow::Result<ViewFollower<SqliteStore, SqliteViews, SqliteViews>> {
    let views = open_views(&shared.database, generation)?;
    let mut follower = ViewFollower::resume(shared.store.clone(), views.clone(), views).await?;
    follower.catch_up().await?;
    Ok(follower)
}

/// Whether the demo tenant is there already (its settings stream has an
/// event): one read of one stream, whatever the store holds.
async fn demo_exists(store: &AnyStore) -> anyhow::Result<bool> {
    let tenant_id = SimConfig::default().tenant_id;
    let settings = store
        .read_stream(
            tenant_id,
            StreamId::tenant(tenant_id),
            ledger_core::id::StreamVersion::NONE,
            1,
        )
        .await
        .context("looking for the demo tenant")?;
    Ok(!settings.is_empty())
}

/// What the stream projector has done: its last batch, and the write
/// capacity of every batch so far (AWS's formula, and as reported).
#[derive(Clone, Default)]
struct Projected {
    last: Option<(projector::Report, std::time::SystemTime)>,
    cost: ledger_store::views::Cost,
}

/// Runs the stream projector on the event table's stream through the local
/// runner, with the handler Lambda runs, writing the read-model table.
async fn start_stream_projection(
    dynamo: &DynamoConfig,
    write: Live<DynamoTable>,
) -> anyhow::Result<(RunnerHandle, ProjectionReport)> {
    let projector = Arc::new(projector::StreamProjector::new(AnyTable::LiveDynamo(write)));
    let last: Arc<std::sync::Mutex<Projected>> = Arc::default();
    let handler = {
        let last = Arc::clone(&last);
        move |event| {
            let projector = Arc::clone(&projector);
            let last = Arc::clone(&last);
            async move {
                let report = projector.handle(dynamodb_records(event)).await;
                let response = dynamodb_response(&report);
                let mut projected = last.lock().unwrap_or_else(|e| e.into_inner());
                projected.cost.add(&report.cost);
                projected.last = Some((report, std::time::SystemTime::now()));
                response
            }
        }
    };
    let (events, _) = dynamo.table_names();
    let runner = StreamsRunner::start(
        StreamsRunnerConfig::new(dynamo.endpoint.clone(), events),
        handler,
    )
    .await
    .context("starting the stream projector")?;
    let stats = runner.subscribe();
    let report: ProjectionReport = Arc::new(move || {
        let s = stats.borrow().clone();
        let Projected { last, cost } = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        serde_json::json!({"stream_projection": {
            "records_acknowledged": s.records_acknowledged,
            "write_units": {
                "computed": cost.total(),
                "reported": cost.reported,
            },
            "batches": s.batches_delivered,
            "redeliveries": s.redeliveries,
            "last_batch": last.map(|(r, at)| serde_json::json!({
                "records": r.records,
                "applied": r.applied,
                "failed": r.failed.len(),
                "parked": r.parked,
                "lag_max_ms": r.lag_max_ms,
                "seconds_ago": at.elapsed().map_or(0, |d| d.as_secs()),
            })),
        }})
    });
    Ok((runner, report))
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.try_lock()
        .map_err(|_| anyhow::anyhow!("{} is in use by another tally server", dir.display()))?;
    Ok(file)
}

/// Writes the demo tenant's log: a few weeks up to yesterday, simulated
/// through the real deciders, appended through the store's port in
/// batches that respect each stream's order.
async fn seed_demo(store: &AnyStore) -> anyhow::Result<()> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = ledger_core::time::Timestamp::from_micros(since_epoch.as_micros() as i64);
    let today = now.local_date(ledger_core::time::TimeZone::new("Asia/Manila"));
    let first_day = today.as_naive() - chrono::Duration::days(i64::from(DEMO_DAYS));
    let config = SimConfig {
        first_day: ledger_core::time::LocalDate::new(first_day),
        days: DEMO_DAYS,
        sales_per_day: DEMO_SALES_PER_DAY,
        ..SimConfig::default()
    };
    let seeded = crate::seed::seed_tenant(store, config).await?;
    tracing::info!(
        events = seeded.events,
        commands = seeded.commands,
        "demo tenant seeded"
    );
    Ok(())
}
