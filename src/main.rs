//! `tally`: the one binary. Glue only: it parses arguments, wires the
//! library pieces together and prints.

// The server allocates per request (bodies, responses, events); glibc's
// malloc showed up as the top entry of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use command_api::auth::{Claims, LocalKey, TOKEN_TTL_DEFAULT};
use ledger_core::TenantId;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, UserId, VendorId};
use ledger_core::projection::dashboard::Granularity;
use ledger_store::dynamodb::DynamoConfig;
use rust_decimal::Decimal;
use tally::server::{Server, ServerConfig, StoreConfig};
use tally_sim::SimConfig;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Event-sourced ledger engine for multi-tenant point of sale"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Simulate a cafeteria tenant through the real deciders, fold its log
    /// into every projection, print the dashboard and credit figures, and
    /// audit the log.
    Demo(DemoArgs),
    /// Run the ledger server: embedded store, command API, live projections.
    Serve(ServeArgs),
    /// Mint a bearer token signed with the data directory's key. The token
    /// is the last line printed.
    Token(TokenArgs),
    /// Load a running server with concurrent checkouts over HTTP, report
    /// throughput and latency, then verify every acknowledged sale and the
    /// balances. Exits non-zero when a check fails.
    Load(LoadArgs),
    /// List the records the stream projector parked (poison, and the events
    /// waiting behind it) in a DynamoDB read-model table, one JSON object
    /// per line.
    Parked(ParkedArgs),
}

#[derive(clap::Args)]
struct ParkedArgs {
    /// The DynamoDB endpoint (DynamoDB Local's URL); without it, the AWS
    /// service with credentials and region from the environment.
    #[arg(long)]
    endpoint: Option<String>,
    /// Prepended to the DynamoDB table names.
    #[arg(long, default_value = "tally-")]
    table_prefix: String,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's data directory, to mint tokens with its key.
    #[arg(long, required_unless_present = "token")]
    data: Option<std::path::PathBuf>,
    /// An admin token of an existing tenant, instead of --data.
    #[arg(long, conflicts_with_all = ["data", "tenant"])]
    token: Option<String>,
    /// The tenant to set up and load (with --data); a fresh `load-<random>` by default.
    #[arg(long)]
    tenant: Option<String>,
    /// Concurrent connections, each sending one request at a time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Total requests per second, paced open loop (default: as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// Percent of checkouts paid by employee credit; the rest are cash.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    credit_percent: u8,
    /// Percent of requests that refund an earlier acknowledged order.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=100))]
    refund_percent: u8,
    #[arg(long, default_value_t = 8)]
    vendors: u32,
    #[arg(long, default_value_t = 200)]
    employees: u32,
    /// Each employee's semi-monthly top-up allowance.
    #[arg(long, default_value = "1000000.00")]
    allowance: Decimal,
    /// Seed of the request mix (random by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Skip reading everything back at the end.
    #[arg(long)]
    no_verify: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where the ledger, its projections' checkpoints and the token key live.
    #[arg(long, default_value = "tally-data")]
    data: std::path::PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// On an empty store, create the demo tenant `demo` with a few weeks of sales.
    #[arg(long)]
    demo: bool,
    /// Where events and projections live: `sqlite` (in the data directory)
    /// or `dynamodb` (tables created when missing).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// The DynamoDB endpoint (DynamoDB Local's URL); without it, the AWS
    /// service with credentials and region from the environment.
    #[arg(long, requires = "store")]
    endpoint: Option<String>,
    /// Prepended to the DynamoDB table names.
    #[arg(long, default_value = "tally-")]
    table_prefix: String,
    /// Log as JSON lines (the filter comes from RUST_LOG, default info).
    #[arg(long)]
    log_json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Dynamodb,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, default_value = "tally-data")]
    data: std::path::PathBuf,
    #[arg(long)]
    tenant: String,
    /// admin, vendor, cashier, employee or service.
    #[arg(long)]
    role: String,
    /// The vendor of a vendor or cashier token.
    #[arg(long, conflicts_with = "employee")]
    vendor: Option<String>,
    /// The employee of an employee token.
    #[arg(long)]
    employee: Option<String>,
    /// The user the token names (its events' actor); defaults to the role.
    #[arg(long)]
    user: Option<String>,
    #[arg(long, default_value_t = 12)]
    ttl_hours: u64,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Seed of the simulation: the same seed gives the same log, byte for byte.
    #[arg(long, default_value_t = SimConfig::default().seed)]
    seed: u64,
    /// Days of trading to simulate.
    #[arg(long, default_value_t = SimConfig::default().days)]
    days: u32,
    #[arg(long, default_value_t = SimConfig::default().vendors)]
    vendors: u32,
    #[arg(long, default_value_t = SimConfig::default().employees)]
    employees: u32,
    #[arg(long, default_value_t = SimConfig::default().sales_per_day)]
    sales_per_day: u32,
    /// Dashboard granularity: day, week or month.
    #[arg(long, default_value = "week", value_parser = parse_granularity)]
    granularity: Granularity,
    /// Also write the log as JSON Lines (one envelope per line) to this file.
    #[arg(long)]
    export: Option<std::path::PathBuf>,
}

fn parse_granularity(text: &str) -> Result<Granularity, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?}: expected day, week or month"))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo(args) => demo(&args),
        Cmd::Serve(args) => serve(args),
        Cmd::Token(args) => token(&args),
        Cmd::Load(args) => load(args),
        Cmd::Parked(args) => parked(&args),
    }
}

fn parked(args: &ParkedArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let parked = runtime.block_on(async {
        let table = ledger_store::dynamodb::views::DynamoTable::connect(&DynamoConfig {
            endpoint: args.endpoint.clone(),
            table_prefix: args.table_prefix.clone(),
        })
        .await;
        table.parked().await
    })?;
    for p in &parked {
        println!(
            "{}",
            serde_json::json!({
                "stream": p.pk,
                "version": p.version,
                "record": p.record,
                "error": p.error,
                "behind": p.behind,
            })
        );
    }
    eprintln!("{} parked record(s)", parked.len());
    Ok(())
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logs(args.log_json);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = match args.store {
            StoreKind::Sqlite => StoreConfig::Sqlite,
            StoreKind::Dynamodb => StoreConfig::Dynamo(DynamoConfig {
                endpoint: args.endpoint.clone(),
                table_prefix: args.table_prefix.clone(),
            }),
        };
        let server = Server::start(ServerConfig {
            data_dir: args.data.clone(),
            listen: args.listen,
            demo: args.demo,
            store,
        })
        .await?;
        let base = format!("http://{}", server.addr);
        println!(
            "tally is serving on {base} (data in {})",
            args.data.display()
        );
        if args.demo {
            print_demo_help(&server, &base);
        }
        wait_for_signal().await;
        println!("shutting down");
        server.stop().await
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print_demo_help(server: &Server, base: &str) {
    let mint = |role: Role, vendor: Option<&str>, employee: Option<&str>| {
        let claims = Claims::new(
            TenantId::new("demo"),
            UserId::new(&format!("demo-{}", role_name(role))),
            &[role],
            vendor.map(VendorId::new),
            employee.map(EmployeeId::new),
            TOKEN_TTL_DEFAULT,
        );
        server.key.mint(&claims)
    };
    let admin = mint(Role::Admin, None, None);
    let cashier = mint(Role::Cashier, Some("V01"), None);
    let employee = mint(Role::Employee, None, Some("E0001"));
    if server.demo_seeded {
        println!(
            "demo tenant `demo` created: vendors V01.., employees E0001.., {} days of sales",
            tally::server::DEMO_DAYS
        );
    } else {
        println!("the store was not empty: the demo tenant was not re-created");
    }
    println!(
        r#"
Tokens (valid 12 h; mint more with `tally token --data DIR --tenant demo --role ROLE`):
  ADMIN={admin}
  CASHIER={cashier}
  EMPLOYEE={employee}

Try:
  curl -s {base}/healthz
  curl -s -H "Authorization: Bearer $ADMIN" "{base}/v1/dashboard?from=2026-01-01&to=2026-12-31&granularity=week"
  curl -s -H "Authorization: Bearer $EMPLOYEE" {base}/v1/employees/E0001/credit
  curl -s -X POST {base}/v1/sales -H "Authorization: Bearer $CASHIER" \
       -H "Content-Type: application/json" -H "Idempotency-Key: first-sale" \
       -d '{{"order_id":"O-first","lines":[{{"item":"ADOBO","quantity":2,"unit_price":"85.00"}}],"payment":{{"method":"credit","employee_id":"E0001"}}}}'
  curl -s -H "Authorization: Bearer $ADMIN" "{base}/v1/orders?vendor_id=V01&limit=5"
  curl -s {base}/openapi.json
"#
    );
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Vendor => "vendor",
        Role::Cashier => "cashier",
        Role::Employee => "employee",
        Role::Service => "service",
    }
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let role: Role =
        serde_json::from_value(serde_json::Value::String(args.role.clone())).map_err(|_| {
            anyhow::anyhow!(
                "{:?}: expected admin, vendor, cashier, employee or service",
                args.role
            )
        })?;
    let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let vendor = args
        .vendor
        .as_deref()
        .map(VendorId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--vendor: {e}"))?;
    let employee = args
        .employee
        .as_deref()
        .map(EmployeeId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--employee: {e}"))?;
    match role {
        Role::Vendor | Role::Cashier if vendor.is_none() => {
            bail!("a {} token needs --vendor", args.role)
        }
        Role::Employee if employee.is_none() => bail!("an employee token needs --employee"),
        _ => {}
    }
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| role_name(role).to_owned());
    let user = UserId::parse(&user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let key = LocalKey::load_or_create(&args.data)
        .with_context(|| format!("reading the key in {}", args.data.display()))?;
    let claims = Claims::new(
        tenant,
        user,
        &[role],
        vendor,
        employee,
        std::time::Duration::from_secs(args.ttl_hours * 3600),
    );
    println!("{}", key.mint(&claims));
    Ok(())
}

fn load(args: LoadArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(tally_load::fresh_seed);
    let credentials = match (args.token, &args.data) {
        (Some(token), _) => tally_load::Credentials::Token(token),
        (None, Some(dir)) => {
            let tenant = args
                .tenant
                .unwrap_or_else(|| format!("load-{:08x}", tally_load::fresh_seed() as u32));
            tally_load::Credentials::Key {
                key: LocalKey::load_or_create(dir)
                    .with_context(|| format!("reading the key in {}", dir.display()))?,
                tenant: TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?,
            }
        }
        (None, None) => bail!("give --data DIR or --token TOKEN"),
    };
    let duration = std::time::Duration::try_from_secs_f64(args.duration)
        .context("--duration must be a number of seconds")?;
    let config = tally_load::LoadConfig {
        url: args.url,
        credentials,
        concurrency: args.concurrency,
        duration,
        rate: args.rate,
        credit_percent: args.credit_percent,
        refund_percent: args.refund_percent,
        vendors: args.vendors,
        employees: args.employees,
        allowance: args.allowance,
        seed,
        verify: !args.no_verify,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(tally_load::run(config))?;
    print!("{report}");
    if !report.passed() {
        bail!("the verification failed: the server lost or miscounted acknowledged work");
    }
    Ok(())
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let demo = tally_sim::demo::Demo {
        config: SimConfig {
            seed: args.seed,
            days: args.days,
            vendors: args.vendors,
            employees: args.employees,
            sales_per_day: args.sales_per_day,
            ..SimConfig::default()
        },
        granularity: args.granularity,
        export: args.export.clone(),
    };
    tally_sim::demo::run(&demo, &mut std::io::stdout().lock())
}
