//! The scenario's setup: who speaks for whom, the tenant configured
//! ([`CURRENCY`](crate::CURRENCY), [`TIME_ZONE`]), the vendors registered, the employees
//! enrolled and replenished for the current period, and the baseline
//! (balances and dashboard) the verification measures the load against.

use std::sync::Arc;

use anyhow::{Context, bail};
use command_api::auth::{Claims, LocalKey};
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use ledger_core::time::{Cadence, LocalDate, Period, TimeZone, Timestamp};
use ledger_core::{Currency, Money};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api::{self, Api, Totals, bearer, bounded, create_each};
use crate::{Credentials, LoadConfig, TIME_ZONE, TOKEN_TTL, VERIFY_CONCURRENCY_MAX, money};

/// One vendor's identity and the headers that speak for it.
pub struct VendorAuth {
    pub id: String,
    /// Checkouts: a cashier token of the vendor (or the admin's).
    pub cashier: HeaderValue,
    /// Refunds: a vendor token of the vendor (or the admin's).
    pub refunds: HeaderValue,
}

/// Who the load speaks as.
pub struct Auth {
    /// The tenant's name as the report shows it.
    pub tenant: String,
    pub admin: HeaderValue,
    pub vendors: Vec<VendorAuth>,
    /// Sales name their vendor (an admin token records them).
    pub name_vendor: bool,
}

/// What setup leaves for the load and the verification.
pub struct Setup {
    pub auth: Auth,
    /// The tenant's currency, as setup configured it.
    pub currency: Currency,
    pub employees: Vec<String>,
    pub baseline: Baseline,
}

/// The balances and dashboard totals before the load.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub balances: Vec<Money>,
    pub totals: Totals,
    pub first_day: LocalDate,
}

/// Sets the tenant up for the load. The tenant's currency is `allowance`'s
/// ([`CURRENCY`](crate::CURRENCY), from [`LoadConfig::check`]).
pub async fn setup(
    config: &LoadConfig,
    allowance: Money,
    api: &Arc<Api>,
    run: &str,
) -> anyhow::Result<Setup> {
    check_health(api).await?;
    let vendor_ids: Vec<String> = (1..=config.vendors).map(|v| format!("LV{v:02}")).collect();
    let employees: Vec<String> = (1..=config.employees)
        .map(|e| format!("LE{e:05}"))
        .collect();
    let auth = authorize(&config.credentials, &vendor_ids)?;
    let currency = allowance.currency();
    configure_tenant(api, &auth.admin, run, currency).await?;
    register_vendors(api, &auth.admin, &vendor_ids).await?;
    let allowance = money::text(allowance);
    enroll_employees(api, &auth.admin, &employees, &allowance).await?;
    let zone = TimeZone::new(TIME_ZONE);
    let period = Period::containing(now(), zone, Cadence::SemiMonthly);
    // The replenishment lists the accounts the read models hold.
    api::caught_up(api).await?;
    replenish(api, &auth.admin, run, period).await?;
    api::caught_up(api).await?;
    let baseline = read_baseline(api, &auth.admin, currency, &employees).await?;
    println!(
        "Set up tenant {}: {} vendors, {} employees with {allowance} {currency} each for {period}",
        auth.tenant,
        auth.vendors.len(),
        employees.len()
    );
    Ok(Setup {
        auth,
        currency,
        employees,
        baseline,
    })
}

async fn check_health(api: &Api) -> anyhow::Result<()> {
    let health = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {}", api.base))?;
    if !health.status().is_success() {
        bail!("{}/healthz answered {}", api.base, health.status());
    }
    Ok(())
}

/// The headers of the admin and of each vendor: the given token for all, or
/// tokens minted with the server's key.
fn authorize(credentials: &Credentials, vendor_ids: &[String]) -> anyhow::Result<Auth> {
    match credentials {
        Credentials::Token(token) => {
            let admin = bearer(token)?;
            let vendors = vendor_ids
                .iter()
                .map(|id| VendorAuth {
                    id: id.clone(),
                    cashier: admin.clone(),
                    refunds: admin.clone(),
                })
                .collect();
            Ok(Auth {
                tenant: "(from the token)".to_owned(),
                admin,
                vendors,
                name_vendor: true,
            })
        }
        Credentials::Key { key, tenant } => mint_all(key, *tenant, vendor_ids),
    }
}

fn mint_all(key: &LocalKey, tenant: TenantId, vendor_ids: &[String]) -> anyhow::Result<Auth> {
    let mint = |role: Role, user: &str, vendor: Option<&str>| {
        let claims = Claims::new(
            tenant,
            UserId::new(user),
            &[role],
            vendor.map(VendorId::new),
            None::<EmployeeId>,
            TOKEN_TTL,
        );
        bearer(&key.mint(&claims))
    };
    let admin = mint(Role::Admin, "load-admin", None)?;
    let mut vendors = Vec::new();
    for id in vendor_ids {
        vendors.push(VendorAuth {
            id: id.clone(),
            cashier: mint(Role::Cashier, &format!("load-cashier-{id}"), Some(id))?,
            refunds: mint(Role::Vendor, &format!("load-vendor-{id}"), Some(id))?,
        });
    }
    Ok(Auth {
        tenant: tenant.as_str().to_owned(),
        admin,
        vendors,
        name_vendor: false,
    })
}

/// Sets the tenant's currency and zone.
async fn configure_tenant(
    api: &Api,
    admin: &HeaderValue,
    run: &str,
    currency: Currency,
) -> anyhow::Result<()> {
    let reply = api
        .call(
            Method::PUT,
            "/v1/tenant",
            admin,
            Some(&format!("{run}-tenant")),
            Some(&json!({ "currency": currency.code(), "time_zone": TIME_ZONE })),
        )
        .await?;
    if reply.status == StatusCode::UNAUTHORIZED {
        bail!(
            "the server refused the admin token ({}): with --data, name the server's own data directory",
            reply.describe()
        );
    }
    if !reply.status.is_success() {
        bail!("configuring the tenant: {}", reply.describe());
    }
    Ok(())
}

async fn register_vendors(
    api: &Arc<Api>,
    admin: &HeaderValue,
    vendor_ids: &[String],
) -> anyhow::Result<()> {
    let vendors = vendor_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let body = json!({
                "vendor_id": id,
                "name": format!("Load vendor {id}"),
                "commission_rate": 500 + 100 * (i % 10),
            });
            (format!("setup-vendor-{id}"), body)
        })
        .collect();
    create_each(api, admin, "/v1/vendors", "vendor_exists", vendors).await
}

async fn enroll_employees(
    api: &Arc<Api>,
    admin: &HeaderValue,
    employees: &[String],
    allowance: &str,
) -> anyhow::Result<()> {
    let employees = employees
        .iter()
        .map(|id| {
            let body = json!({
                "employee_id": id,
                "name": format!("Load employee {id}"),
                "policy": {"allowance": allowance, "cadence": "semi_monthly", "mode": "top_up"},
            });
            (format!("setup-employee-{id}-{allowance}"), body)
        })
        .collect();
    create_each(
        api,
        admin,
        "/v1/employees",
        "credit_account_exists",
        employees,
    )
    .await
}

/// Replenishes every employee for `period`.
async fn replenish(
    api: &Api,
    admin: &HeaderValue,
    run: &str,
    period: Period,
) -> anyhow::Result<()> {
    let reply = api
        .call(
            Method::POST,
            "/v1/credit/replenishments",
            admin,
            Some(&format!("{run}-replenish-{period}")),
            Some(&json!({ "period": period.to_string() })),
        )
        .await?;
    if !reply.status.is_success() {
        bail!("replenishing {period}: {}", reply.describe());
    }
    let skipped = reply.body["skipped"].as_array().map_or(0, Vec::len);
    if skipped > 0 {
        bail!(
            "replenishing {period} skipped {skipped} employees: {}",
            reply.body
        );
    }
    Ok(())
}

/// Every balance, and today's and tomorrow's dashboard.
async fn read_baseline(
    api: &Arc<Api>,
    admin: &HeaderValue,
    currency: Currency,
    employees: &[String],
) -> anyhow::Result<Baseline> {
    let balances = bounded(
        employees.iter().cloned().enumerate().collect(),
        VERIFY_CONCURRENCY_MAX,
        {
            let (api, admin) = (api.clone(), admin.clone());
            move |(i, id): (usize, String)| {
                let (api, admin) = (api.clone(), admin.clone());
                async move {
                    let balance = api::balance(&api, &admin, currency, &id).await;
                    balance.map(|b| (i, b))
                }
            }
        },
    )
    .await;
    let mut baseline_balances = vec![Money::zero(currency); employees.len()];
    for result in balances {
        let (i, b) = result?;
        baseline_balances[i] = b;
    }
    let first_day = today(TimeZone::new(TIME_ZONE));
    let next_day = LocalDate::new(first_day.as_naive() + chrono::Duration::days(1));
    let days = (first_day, next_day);
    let totals = api::dashboard_totals(api, admin, currency, days).await?;
    Ok(Baseline {
        balances: baseline_balances,
        totals,
        first_day,
    })
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    Timestamp::from_micros(since.as_micros() as i64)
}

pub fn today(zone: TimeZone) -> LocalDate {
    now().local_date(zone)
}
