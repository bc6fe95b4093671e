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
use ledger_core::digest::Digest;
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, UserId, VendorId};
use ledger_core::projection::dashboard::Granularity;
use ledger_core::time::Timestamp;
use ledger_store::dynamodb::DynamoConfig;
use rust_decimal::Decimal;
use std::process::ExitCode;
use tally::server::{Server, ServerConfig, StoreConfig};
use tally_replay::Ledger;
use tally_replay::progress::Progress;
use tally_sim::SimConfig;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Event-sourced ledger engine for multi-tenant point of sale",
    after_help = EXIT_CODES
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
    /// Fill a store with simulated tenants (`sim-0000`, ...): a log of any
    /// size to try the audit and replay tools on, and to measure them.
    /// Read models are not built: `tally replay rebuild` builds them (or
    /// `tally serve` on SQLite, from its start).
    #[command(after_help = "Examples:
  tally seed --data big --tenants 32 --days 150 --sales-per-day 150     # about 1 million events
  tally seed --store dynamodb --endpoint http://127.0.0.1:8000 --table-prefix big- --tenants 4 --days 60")]
    Seed(SeedArgs),
    /// Mint a bearer token signed with the data directory's key. The token
    /// is the last line printed.
    Token(TokenArgs),
    /// Load a running server with concurrent checkouts over HTTP, report
    /// throughput and latency, then verify every acknowledged sale and the
    /// balances. Exits non-zero when a check fails.
    Load(LoadArgs),
    /// Audit the log: hash chains, versions, postings, business invariants,
    /// read models and stream heads against the ledger, and optionally a
    /// digest taken earlier. Exits 1 on any finding.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Print the digest of the log at an instant: a short value to keep
    /// outside the system and audit the log against later.
    #[command(after_help = DIGEST_EXAMPLES)]
    Digest(DigestArgs),
    /// Write the log as JSON Lines, one event envelope per line
    /// (schemas/events/Envelope.json).
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Fold the log afresh: compare with the live read models, or read the
    /// figures as they stood at an instant.
    #[command(subcommand)]
    Replay(ReplayCmd),
    /// List the records the projector parked (poison, and the events
    /// waiting behind it), one JSON object per line.
    Parked(ParkedArgs),
}

const EXIT_CODES: &str = "Exit codes: 0 clean, 1 findings (or drift), 2 usage error, 3 could not run (store unreachable, unreadable file).";

const AUDIT_EXAMPLES: &str = "Examples:
  tally audit --data tally-data
  tally audit --data tally-data --tenant demo --json
  tally audit --data tally-data --against 'tally-digest/1/*/1234/2026-12-01T00:00:00.000000Z/9f2c...'
  tally audit --store dynamodb --endpoint http://127.0.0.1:8000 --table-prefix tally-

The read models and heads are compared with the ledger as they are when the
reading ends: while a projector is catching up, its newest events show as
drift. On SQLite the log is read up to its head at the start; on DynamoDB a
Scan sees appends made while it runs.

Exit codes: 0 clean, 1 findings, 2 usage error, 3 could not run.";

const DIGEST_EXAMPLES: &str = "Examples:
  tally digest --data tally-data
  tally digest --data tally-data --tenant demo --at 2026-12-01T00:00:00Z

A digest covers, for each stream, its events up to the first one recorded
after the instant (by default 30 s ago, so no command still in flight is
left out). `tally audit --against DIGEST` later proves that none of them was
changed, removed or reordered, and that none was inserted before them.";

const EXPORT_EXAMPLES: &str = "Examples:
  tally export --data tally-data > log.jsonl
  tally export --data tally-data --tenant demo --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z
  tally export --data tally-data --tenant demo --stream credit/E0001 --out E0001.jsonl

Lines come in commit order on SQLite, and sorted by tenant, stream and
version on DynamoDB (which has no commit order).";

#[derive(clap::Args)]
struct LedgerArgs {
    /// Where the ledger is: `sqlite` (ledger.db in --data) or `dynamodb`.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// The data directory of an embedded ledger.
    #[arg(long, default_value = "tally-data")]
    data: std::path::PathBuf,
    /// The DynamoDB endpoint (DynamoDB Local's URL); without it, the AWS
    /// service with credentials and region from the environment.
    #[arg(long, requires = "store")]
    endpoint: Option<String>,
    /// Prepended to the DynamoDB table names.
    #[arg(long, default_value = "tally-")]
    table_prefix: String,
}

impl LedgerArgs {
    fn location(&self) -> tally_replay::Location {
        match self.store {
            StoreKind::Sqlite => tally_replay::Location::Sqlite {
                database: self.data.join(tally::server::DATABASE_FILE),
            },
            StoreKind::Dynamodb => tally_replay::Location::Dynamo(DynamoConfig {
                endpoint: self.endpoint.clone(),
                table_prefix: self.table_prefix.clone(),
            }),
        }
    }
}

#[derive(clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Only this tenant's streams and read models.
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// A digest printed earlier by `tally digest`, to prove the log against.
    #[arg(long, value_parser = parse_digest)]
    against: Option<Digest>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct DigestArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Only this tenant's streams.
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// The instant (RFC 3339); 30 seconds ago by default.
    #[arg(long, value_parser = parse_instant)]
    at: Option<Timestamp>,
    /// Print the digest as a JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// Only this stream (`order/O-1`, `credit/E0001`, `vendor/V01`, `tenant/demo`).
    #[arg(long, value_parser = parse_stream)]
    stream: Option<ledger_core::StreamId>,
    /// Only events recorded at or after this instant (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    from: Option<Timestamp>,
    /// Only events recorded before this instant (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    to: Option<Timestamp>,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum ReplayCmd {
    /// Fold the log afresh and compare with the live read models; print
    /// each drift (key, expected, found). Exits 1 on any drift.
    #[command(after_help = "Examples:
  tally replay verify --data tally-data
  tally replay verify --data tally-data --tenant demo --projection credit --projection dashboard --json

Run it on a caught-up projector: read models trail the log by the events
still in flight.

Exit codes: 0 clean, 1 drift, 2 usage error, 3 could not run.")]
    Verify(VerifyArgs),
    /// Credit balances, vendor payables and dashboard totals as they stood
    /// at a past instant, by folding the log up to it.
    #[command(after_help = "Examples:
  tally replay as-of --data tally-data --at 2026-12-01T00:00:00Z
  tally replay as-of --data tally-data --at 2026-12-01T00:00:00Z --tenant demo --json

Each stream is folded up to its first event recorded after the instant,
the same cut a digest makes.")]
    AsOf(AsOfArgs),
    /// Fold the log into a fresh generation of the read models, catch up
    /// with what was appended meanwhile, and switch readers to it (a
    /// running server adopts it); the old generation is left for cleanup.
    #[command(after_help = "Examples:
  tally replay rebuild --data tally-data
  tally replay rebuild --data tally-data --no-switch    # build now, switch later
  tally replay rebuild --data tally-data --restart      # start an unfinished one over

An interrupted rebuild leaves the live generation untouched; run it again
to resume from its checkpoint. Every projection is rebuilt together: they
share one generation (and one transaction per page).

Exit codes: 0 rebuilt, 2 usage error, 3 could not run (another rebuild holds
the generation, the store failed).")]
    Rebuild(RebuildArgs),
    /// After a fix, apply the parked records again from the event table,
    /// in version order, and clear each parked entry once its event is
    /// applied. Exits 1 when a stream is still parked.
    #[command(after_help = "Examples:
  tally parked --data tally-data            # what is parked, and why
  tally replay redrive --data tally-data
  tally replay redrive --store dynamodb --endpoint http://127.0.0.1:8000 --json

Safe to run twice, or after one was cut off: an event already applied is a
duplicate at its view's gate, and its entry is cleared then.

Exit codes: 0 nothing left parked, 1 a stream is still parked, 2 usage
error, 3 could not run.")]
    Redrive(RedriveArgs),
}

#[derive(clap::Args)]
struct RedriveArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RebuildArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// Start the next generation over instead of resuming it.
    #[arg(long)]
    restart: bool,
    /// Build the next generation but leave readers on the live one.
    #[arg(long)]
    no_switch: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProjectionArg {
    All,
    Orders,
    Credit,
    Dashboard,
    Activity,
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    /// Which read models to compare (repeatable).
    #[arg(long, value_enum, default_value = "all")]
    projection: Vec<ProjectionArg>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct AsOfArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// The instant (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    at: Timestamp,
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<TenantId>,
    #[arg(long)]
    json: bool,
}

fn parse_tenant(text: &str) -> Result<TenantId, String> {
    TenantId::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_stream(text: &str) -> Result<ledger_core::StreamId, String> {
    ledger_core::StreamId::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_digest(text: &str) -> Result<Digest, String> {
    text.parse::<Digest>().map_err(|e| e.to_string())
}

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Timestamp::from_datetime(t.to_utc()))
        .map_err(|e| {
            format!("{text:?}: expected an RFC 3339 instant such as 2026-12-01T00:00:00Z ({e})")
        })
}

#[derive(clap::Args)]
struct SeedArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    #[arg(long, default_value_t = 4)]
    tenants: u32,
    /// Tenants simulated and appended at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// The simulation of each tenant (`--seed` is the first tenant's; the
    /// next ones count up).
    #[command(flatten)]
    sim: SimArgs,
}

/// A simulated tenant's shape.
#[derive(clap::Args)]
struct SimArgs {
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
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            days: self.days,
            vendors: self.vendors,
            employees: self.employees,
            sales_per_day: self.sales_per_day,
            ..SimConfig::default()
        }
    }
}

#[derive(clap::Args)]
struct ParkedArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
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
    #[command(flatten)]
    sim: SimArgs,
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

/// How a command ended, as its exit code says.
enum Verdict {
    /// 0: done, and everything checked holds.
    Clean,
    /// 1: done, and something checked does not hold.
    Findings,
}

/// A command that could not run: exit code 3.
const EXIT_FAILED: u8 = 3;

/// Lets a tool whose reader went away (`tally audit | head`) end quietly,
/// as Unix tools do, instead of failing on its next line. Not for the
/// server or the load generator: they write to sockets, where a closed
/// peer is an error to handle, not a reason to die.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Serve(_) | Cmd::Load(_)) {
        die_quietly_on_a_closed_pipe();
    }
    let outcome = match cli.command {
        Cmd::Demo(args) => demo(&args).map(|()| Verdict::Clean),
        Cmd::Serve(args) => serve(args).map(|()| Verdict::Clean),
        Cmd::Token(args) => token(&args).map(|()| Verdict::Clean),
        Cmd::Seed(args) => seed(&args).map(|()| Verdict::Clean),
        Cmd::Load(args) => load(args),
        Cmd::Parked(args) => parked(&args).map(|()| Verdict::Clean),
        Cmd::Audit(args) => audit(&args),
        Cmd::Digest(args) => digest(&args),
        Cmd::Export(args) => export(&args),
        Cmd::Replay(ReplayCmd::Verify(args)) => verify(&args),
        Cmd::Replay(ReplayCmd::AsOf(args)) => as_of(&args),
        Cmd::Replay(ReplayCmd::Rebuild(args)) => rebuild(&args),
        Cmd::Replay(ReplayCmd::Redrive(args)) => redrive(&args),
    };
    match outcome {
        Ok(Verdict::Clean) => ExitCode::SUCCESS,
        Ok(Verdict::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn audit(args: &AuditArgs) -> anyhow::Result<Verdict> {
    let runtime = tokio::runtime::Runtime::new()?;
    let run = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        let options = tally_replay::audit::AuditOptions {
            tenant: args.tenant,
            against: args.against,
        };
        tally_replay::audit::audit(&ledger, &options, &Progress::new("auditing")).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print_audit(&run);
    }
    Ok(if run.clean {
        Verdict::Clean
    } else {
        Verdict::Findings
    })
}

/// ", peak memory N MiB" where the platform says.
fn peak_memory() -> String {
    tally_replay::peak_resident_kib()
        .map(|kib| format!(", peak memory {:.0} MiB", kib as f64 / 1024.0))
        .unwrap_or_default()
}

fn print_audit(run: &tally_replay::audit::AuditRun) {
    let r = &run.report;
    let verdict = if run.clean { "CLEAN" } else { "FINDINGS" };
    println!(
        "Audit: {verdict}. {} events in {} streams of {} tenant(s), {} postings; read in {:.2} s ({:.0} events/s){}.",
        r.events,
        r.streams,
        r.tenants.len(),
        r.postings,
        run.reading.elapsed.as_secs_f64(),
        run.reading.per_second(),
        peak_memory()
    );
    println!(
        "Checked: every record decodes and sits under its key, hash chains, contiguous versions, postings sum to zero \
         per event, one currency per tenant, stated balances, no negative credit, one replenishment per account and \
         period, credit clearing nets to zero, refunds within gross and reconciled, read models and heads agree with \
         the ledger."
    );
    for (tenant, t) in &r.tenants {
        let currency = t.currency.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let at = |t: Option<ledger_core::time::Timestamp>| {
            t.map_or_else(|| "-".to_owned(), |t| t.to_datetime().to_rfc3339())
        };
        println!(
            "  {tenant} ({currency}): {} events, {} streams, recorded {} .. {}; gross sales {}, refunds {}, \
             commission {}, vendor payable {}, receivable {}, credit outstanding {}",
            t.events,
            t.streams,
            at(t.first_recorded_at),
            at(t.last_recorded_at),
            t.gross_sales,
            t.refunds,
            t.commission,
            t.vendor_payable,
            t.receivable,
            t.credit_outstanding
        );
    }
    if let Some(d) = &run.digest {
        let holds = if d.holds { "holds" } else { "DOES NOT HOLD" };
        println!(
            "Digest {holds}: given {}, the log now gives {}",
            d.expected, d.found
        );
    }
    if !run.clean {
        println!("Findings ({}):", r.findings_total);
        for finding in &r.findings {
            println!("  {}", serde_json::to_string(finding).unwrap_or_default());
        }
        if r.findings_total > r.findings.len() as u64 {
            println!(
                "  ... and {} more",
                r.findings_total - r.findings.len() as u64
            );
        }
    }
}

fn digest(args: &DigestArgs) -> anyhow::Result<Verdict> {
    let at = args.at.unwrap_or_else(|| {
        Timestamp::from_datetime(chrono::Utc::now())
            .plus_seconds(-tally_replay::digest::DIGEST_SETTLE_SECONDS)
    });
    let runtime = tokio::runtime::Runtime::new()?;
    let (digest, reading) = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        tally_replay::digest::take(&ledger, args.tenant, at, &Progress::new("digesting")).await
    })?;
    if args.json {
        let value = serde_json::json!({
            "digest": digest.to_string(),
            "tenant": digest.tenant.map(|t| t.to_string()),
            "at": digest.at,
            "events": digest.events,
            "reading": reading,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        eprintln!(
            "{} events covered; read {} records in {:.2} s ({:.0} events/s){}",
            digest.events,
            reading.read,
            reading.elapsed.as_secs_f64(),
            reading.per_second(),
            peak_memory()
        );
        println!("{digest}");
    }
    Ok(Verdict::Clean)
}

fn export(args: &ExportArgs) -> anyhow::Result<Verdict> {
    let ExportFormat::Jsonl = args.format;
    let filter = tally_replay::export::ExportFilter {
        tenant: args.tenant,
        stream: args.stream,
        from: args.from,
        to: args.to,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let exported = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        let progress = Progress::new("exporting");
        match &args.out {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut out = std::io::BufWriter::new(file);
                tally_replay::export::export(&ledger, &filter, &mut out, &progress).await
            }
            None => {
                let mut out = std::io::BufWriter::new(std::io::stdout());
                tally_replay::export::export(&ledger, &filter, &mut out, &progress).await
            }
        }
    })?;
    eprintln!(
        "{} events exported; read {} records in {:.2} s ({:.0} events/s)",
        exported.lines,
        exported.reading.read,
        exported.reading.elapsed.as_secs_f64(),
        exported.reading.per_second()
    );
    Ok(Verdict::Clean)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<Verdict> {
    use ledger_store::views::Projection;
    let projections: Vec<Projection> = if args.projection.contains(&ProjectionArg::All) {
        Projection::ALL.to_vec()
    } else {
        args.projection
            .iter()
            .map(|p| match p {
                ProjectionArg::Orders => Projection::Orders,
                ProjectionArg::Credit => Projection::Credit,
                ProjectionArg::Dashboard => Projection::Dashboard,
                ProjectionArg::Activity | ProjectionArg::All => Projection::Activity,
            })
            .collect()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let verified = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        tally_replay::fold::verify(
            &ledger,
            args.tenant,
            &projections,
            &Progress::new("folding"),
        )
        .await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verified)?);
    } else {
        let verdict = if verified.clean { "CLEAN" } else { "DRIFT" };
        println!(
            "Verify: {verdict}. {} drift(s); folded {} records in {:.2} s ({:.0} events/s){}.",
            verified.drift_total,
            verified.reading.records,
            verified.reading.elapsed.as_secs_f64(),
            verified.reading.per_second(),
            peak_memory()
        );
        for d in &verified.drift {
            println!(
                "  {} {}\n    expected {}\n    found    {}",
                d.projection.as_str(),
                d.key,
                d.expected,
                d.found
            );
        }
    }
    Ok(if verified.clean {
        Verdict::Clean
    } else {
        Verdict::Findings
    })
}

fn rebuild(args: &RebuildArgs) -> anyhow::Result<Verdict> {
    let location = args.ledger.location();
    let runtime = tokio::runtime::Runtime::new()?;
    let rebuilt = runtime.block_on(async {
        let ledger = Ledger::open(&location).await?;
        let options = tally_replay::rebuild::RebuildOptions {
            restart: args.restart,
            no_switch: args.no_switch,
        };
        tally_replay::rebuild::rebuild(&location, &ledger, options, &Progress::new("rebuilding"))
            .await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rebuilt)?);
    } else {
        println!(
            "Rebuilt generation {} ({}): folded {} records in {:.2} s ({:.0} events/s){}.",
            rebuilt.generation,
            rebuilt.path.display(),
            rebuilt.folded,
            rebuilt.elapsed.as_secs_f64(),
            rebuilt.per_second(),
            peak_memory()
        );
        if rebuilt.switched {
            println!(
                "Readers switched from generation {} to {}; a running server adopts it within a second. \
                 Delete {} once no reader uses it.",
                rebuilt.live_before,
                rebuilt.generation,
                rebuilt.old_path.display()
            );
        } else {
            println!(
                "Readers stay on generation {}: run again without --no-switch to switch.",
                rebuilt.live_before
            );
        }
    }
    Ok(Verdict::Clean)
}

fn seed(args: &SeedArgs) -> anyhow::Result<()> {
    let base = args.sim.config();
    let runtime = tokio::runtime::Runtime::new()?;
    let started = std::time::Instant::now();
    let seeded = runtime.block_on(async {
        let store = match args.ledger.location() {
            tally_replay::Location::Sqlite { database } => {
                std::fs::create_dir_all(&args.ledger.data)
                    .with_context(|| format!("creating {}", args.ledger.data.display()))?;
                ledger_store::AnyStore::Sqlite(
                    ledger_store::sqlite::SqliteStore::open(&database)
                        .with_context(|| format!("opening {}", database.display()))?,
                )
            }
            tally_replay::Location::Dynamo(config) => ledger_store::AnyStore::Dynamo(
                ledger_store::dynamodb::DynamoStore::create_and_connect(&config)
                    .await
                    .context("opening the DynamoDB tables")?,
            ),
        };
        let progress = Progress::new("seeding");
        progress.start(u64::from(args.tenants));
        tally::seed::seed_tenants(&store, base, args.tenants, args.parallel, |_| {
            progress.advance(1);
        })
        .await
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "seeded {} tenant(s): {} events from {} commands in {seconds:.1} s ({:.0} events/s)",
        args.tenants,
        seeded.events,
        seeded.commands,
        seeded.events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn redrive(args: &RedriveArgs) -> anyhow::Result<Verdict> {
    let runtime = tokio::runtime::Runtime::new()?;
    let redriven = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        tally_replay::redrive::redrive(&ledger).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&redriven)?);
    } else if redriven.streams.is_empty() {
        println!("Nothing is parked.");
    } else {
        for s in &redriven.streams {
            match &s.still_parked {
                None => println!(
                    "{}: {} parked, {} events handed over, {} applied, {} cleared",
                    s.stream, s.parked, s.handed, s.applied, s.cleared
                ),
                Some(why) => println!("{}: STILL PARKED: {why}", s.stream),
            }
        }
    }
    Ok(if redriven.clean {
        Verdict::Clean
    } else {
        Verdict::Findings
    })
}

fn as_of(args: &AsOfArgs) -> anyhow::Result<Verdict> {
    let runtime = tokio::runtime::Runtime::new()?;
    let figures = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        tally_replay::fold::as_of(&ledger, args.tenant, args.at, &Progress::new("folding")).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("As of {}:", figures.at.to_datetime().to_rfc3339());
        for (tenant, t) in &figures.tenants {
            println!("  tenant {tenant}: {} events", t.events);
            for (vendor, d) in &t.dashboard {
                let payable = t.payable.get(vendor).copied().unwrap_or_default();
                println!(
                    "    vendor {vendor}: {} orders, gross {}, commission {}, net {}, refunded {}, payable {payable}",
                    d.orders,
                    d.gross,
                    d.commission,
                    d.net(),
                    d.refunded_gross
                );
            }
            for (employee, balance) in &t.credit {
                println!("    employee {employee}: credit {balance}");
            }
        }
    }
    Ok(Verdict::Clean)
}

fn parked(args: &ParkedArgs) -> anyhow::Result<()> {
    use ledger_store::views::ViewTable;
    let runtime = tokio::runtime::Runtime::new()?;
    let parked = runtime.block_on(async {
        let ledger = Ledger::open(&args.ledger.location()).await?;
        ledger
            .views
            .parked()
            .await
            .map_err(|e| anyhow::anyhow!("reading parked records: {e}"))
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

fn load(args: LoadArgs) -> anyhow::Result<Verdict> {
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
        eprintln!("the verification failed: the server lost or miscounted acknowledged work");
        return Ok(Verdict::Findings);
    }
    Ok(Verdict::Clean)
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let demo = tally_sim::demo::Demo {
        config: args.sim.config(),
        granularity: args.granularity,
        export: args.export.clone(),
    };
    tally_sim::demo::run(&demo, &mut std::io::stdout().lock())
}
