//! `tally`: the one binary. Glue only: it parses arguments, wires the
//! library pieces together and prints.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ledger_core::audit::Auditor;
use ledger_core::codec;
use ledger_core::projection::ReadModels;
use ledger_core::projection::dashboard::{DashboardQuery, DayTotals, Granularity};
use ledger_core::{LocalDate, TenantId};
use rust_decimal::Decimal;
use tally::sim::{SimConfig, simulate};

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
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        days: args.days,
        vendors: args.vendors,
        employees: args.employees,
        sales_per_day: args.sales_per_day,
        ..SimConfig::default()
    };
    let (tenant_id, first_day) = (config.tenant_id, config.first_day);
    println!(
        "Simulating tenant {tenant_id}: {} days from {first_day}, {} vendors, {} employees, {} sales a day (seed {})",
        config.days, config.vendors, config.employees, config.sales_per_day, config.seed
    );
    let started = Instant::now();
    let (ledger, stats) = simulate(config);
    let records = ledger.into_records();
    let bytes: usize = records.iter().map(Vec::len).sum();
    println!(
        "  {} commands, {} rejected {:?}\n  {} events, {:.1} MB, {} bytes/event on average, in {:.2} s",
        stats.commands,
        stats.rejected,
        stats.rejected_by_code,
        records.len(),
        bytes as f64 / 1e6,
        bytes / records.len().max(1),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut models = ReadModels::default();
    for record in &records {
        models.apply(&codec::decode(record).context("the simulated log must decode")?);
    }
    let fold = started.elapsed();
    println!(
        "Decoded and folded into every projection in {:.1} ms ({:.2} M events/s on one core)\n",
        fold.as_secs_f64() * 1e3,
        records.len() as f64 / fold.as_secs_f64() / 1e6
    );

    let last_day = LocalDate::new(
        first_day.as_naive() + chrono::Duration::days(i64::from(args.days.max(1)) - 1),
    );
    print_dashboard(&models, tenant_id, first_day, last_day, args.granularity)?;
    print_credit(&models, tenant_id);

    if let Some(path) = &args.export {
        export(&records, path)?;
        println!(
            "Exported {} events as JSON Lines to {}",
            records.len(),
            path.display()
        );
    }

    let started = Instant::now();
    let mut auditor = Auditor::new();
    for record in &records {
        auditor.record(record);
    }
    let report = auditor.finish();
    let verdict = if report.is_clean() {
        "CLEAN"
    } else {
        "FINDINGS"
    };
    println!(
        "\nAudit: {verdict}: {} events in {} streams, {} postings, in {:.2} s. Hash chains and versions verified, \
         postings sum to zero, credit never negative, refunds reconcile, projections agree with the ledger.",
        report.events,
        report.streams,
        report.postings,
        started.elapsed().as_secs_f64()
    );
    if !report.is_clean() {
        for finding in &report.findings {
            println!("  {}", serde_json::to_string(finding)?);
        }
        bail!("the audit found {} problems", report.findings_total);
    }
    Ok(())
}

fn print_dashboard(
    models: &ReadModels,
    tenant_id: TenantId,
    from: LocalDate,
    to: LocalDate,
    granularity: Granularity,
) -> anyhow::Result<()> {
    let query = DashboardQuery {
        tenant_id,
        vendor_id: None,
        from,
        to,
        granularity,
        today: to,
    };
    let dashboard = models.dashboard.query(&query)?;
    let currency = dashboard.currency.map_or(String::new(), |c| c.to_string());
    println!("Dashboard, all vendors, {from}..{to}, {currency}:");
    println!(
        "  {:<10} {:>7} {:>14} {:>12} {:>14} {:>8} {:>12} {:>14}",
        "bucket", "orders", "gross", "commission", "net", "refunds", "refunded", "net payable"
    );
    let row = |label: &str, t: &DayTotals| {
        println!(
            "  {:<10} {:>7} {:>14} {:>12} {:>14} {:>8} {:>12} {:>14}",
            label,
            t.orders,
            t.gross,
            t.commission,
            t.net(),
            t.refunds,
            t.refunded_gross,
            t.net_payable()
        );
    };
    for bucket in &dashboard.series {
        row(&bucket.label, &bucket.totals);
    }
    row("total", &dashboard.totals);
    let t = &dashboard.totals;
    println!(
        "  by payment: credit {} | cash {} | card {} | mobile money {} | invoice {}",
        t.gross_credit, t.gross_cash, t.gross_card, t.gross_mobile_money, t.gross_invoice
    );
    println!(
        "  invoices: {} paid ({}), pending {}, overdue {}\n",
        t.payments,
        t.payments_received,
        dashboard.receivables_pending,
        dashboard.receivables_overdue
    );
    Ok(())
}

fn print_credit(models: &ReadModels, tenant_id: TenantId) {
    let (mut accounts, mut balance, mut spent, mut replenished) =
        (0, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for view in models.credit.accounts(tenant_id) {
        accounts += 1;
        balance += view.balance.amount();
        spent += view.lifetime_spent.amount();
        replenished += view.lifetime_replenished.amount();
    }
    println!(
        "Employee credit: {accounts} accounts, balance {balance}, spent {spent}, replenished {replenished}; \
         activity log holds {} entries",
        models.activity.len()
    );
}

fn export(records: &[Vec<u8>], path: &std::path::Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for record in records {
        serde_json::to_writer(&mut out, &codec::decode(record)?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
