//! `tally serve`: a store (embedded SQLite by default, or DynamoDB), the
//! command service, the live projector and the HTTP API, wired together in
//! one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use command_api::auth::{LocalKey, Verifier};
use command_api::http::{self, App};
use command_api::service::CommandService;
use ledger_core::codec;
use ledger_core::id::StreamId;
use ledger_store::dynamodb::{DynamoConfig, DynamoStore};
use ledger_store::sqlite::SqliteStore;
use ledger_store::{AppendRequest, EventStore, Position, StreamAppend};
use projector::live::Projector;

use crate::sim::{SimConfig, simulate};
use crate::store::Store;

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
    /// DynamoDB tables (created when missing), projections fed by the
    /// event table's stream.
    Dynamo(DynamoConfig),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub key: LocalKey,
    pub demo_seeded: bool,
    app: http::AppState<Store>,
    projector: Projector,
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
            StoreConfig::Sqlite => Store::Sqlite(
                SqliteStore::open(&config.data_dir.join(DATABASE_FILE))
                    .context("opening the event store")?,
            ),
            StoreConfig::Dynamo(dynamo) => Store::Dynamo(
                DynamoStore::create_and_connect(dynamo)
                    .await
                    .with_context(|| format!("opening the DynamoDB tables ({dynamo:?})"))?,
            ),
        };
        let demo_seeded = config.demo && store.head() == Position::ZERO;
        if demo_seeded {
            seed_demo(&store).await.context("seeding the demo tenant")?;
        }
        let key = LocalKey::load_or_create(&config.data_dir).context("loading the token key")?;
        let verifier: Arc<dyn Verifier> = Arc::new(key.verifier());
        let service = CommandService::open(store.clone())
            .await
            .context("loading the command side's state")?;
        let projector = Projector::start(store.clone(), store.clone())
            .await
            .context("starting the projector")?;
        let app = Arc::new(App {
            service,
            read_side: projector.read_side.clone(),
            verifier,
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
            projector,
            shutdown,
            serving,
            _lock: lock,
        })
    }

    pub fn store(&self) -> &Store {
        self.app.store()
    }

    pub fn read_side(&self) -> &projector::live::ReadSide {
        &self.app.read_side
    }

    /// Stops accepting requests, finishes those in flight, and saves a
    /// final projection checkpoint.
    ///
    /// # Errors
    /// A failure of the server or the projector.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.serving.await.context("server task")??;
        self.projector.shutdown().await?;
        Ok(())
    }
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
async fn seed_demo(store: &Store) -> anyhow::Result<()> {
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
    let tenant_id = config.tenant_id;
    let (ledger, stats) = simulate(config);
    let mut request = AppendRequest {
        tenant_id,
        streams: Vec::new(),
        idempotency: None,
    };
    let mut appended = 0usize;
    for bytes in ledger.records() {
        let envelope = codec::decode(bytes)?;
        let stream: StreamId = envelope.stream();
        let full = request.event_count() >= ledger_store::APPEND_EVENTS_MAX
            || request.streams.len() >= ledger_store::APPEND_STREAMS_MAX;
        let repeats = request.streams.iter().any(|s| s.stream == stream);
        if full || repeats {
            appended += request.event_count();
            store
                .append(std::mem::replace(
                    &mut request,
                    AppendRequest {
                        tenant_id,
                        streams: Vec::new(),
                        idempotency: None,
                    },
                ))
                .await?;
        }
        let expected = ledger_core::id::StreamVersion::new(envelope.version().get() - 1);
        request.streams.push(StreamAppend {
            stream,
            expected,
            events: vec![codec::Sealed {
                envelope,
                bytes: bytes.clone(),
            }],
        });
    }
    if !request.streams.is_empty() {
        appended += request.event_count();
        store.append(request).await?;
    }
    tracing::info!(
        events = appended,
        commands = stats.commands,
        "demo tenant seeded"
    );
    Ok(())
}
