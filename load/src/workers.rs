//! The load itself: one worker per connection sending checkouts and
//! refunds, paced or as fast as answered, each remembering what was
//! acknowledged; and the merge of their results into the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_core::rng::SplitMix64;
use ledger_core::{Currency, Money};
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::http::{Conn, Target};
use crate::money::{self, Item};
use crate::setup::{Setup, VendorAuth};
use crate::{ATTEMPTS_MAX, LoadConfig, LoadReport, RETRY_PAUSE};

/// What every worker shares.
pub struct Plan {
    pub base: String,
    /// The tenant's name as the report shows it.
    pub tenant: String,
    pub admin: HeaderValue,
    pub vendors: Vec<VendorAuth>,
    pub employees: Vec<String>,
    pub currency: Currency,
    menu: Vec<Item>,
    /// Sales name their vendor (an admin token records them).
    name_vendor: bool,
    pub run: String,
    credit_percent: u8,
    refund_percent: u8,
    start: Instant,
    deadline: Instant,
    /// Time between one worker's requests when paced.
    interval: Option<Duration>,
    rate: Option<f64>,
    concurrency: usize,
}

impl Plan {
    /// The plan of a load that starts now.
    pub fn new(config: &LoadConfig, setup: Setup, base: String, run: String) -> Plan {
        let start = Instant::now() + Duration::from_millis(10);
        Plan {
            base,
            tenant: setup.auth.tenant,
            admin: setup.auth.admin,
            vendors: setup.auth.vendors,
            employees: setup.employees,
            currency: setup.currency,
            menu: money::menu(setup.currency),
            name_vendor: setup.auth.name_vendor,
            run,
            credit_percent: config.credit_percent.min(100),
            refund_percent: config.refund_percent.min(100),
            start,
            deadline: start + config.duration,
            interval: config
                .rate
                .map(|r| Duration::from_secs_f64(config.concurrency as f64 / r)),
            rate: config.rate,
            concurrency: config.concurrency,
        }
    }

    pub fn order_id(&self, worker: u32, seq: u32) -> String {
        format!("O{}-{worker:x}-{seq:x}", self.run)
    }
}

/// A sale the generator sent, as it knows it.
#[derive(Debug, Clone, Copy)]
pub struct Sale {
    pub worker: u32,
    pub seq: u32,
    pub vendor: u16,
    /// Index into the employees, for a credit sale.
    pub employee: Option<u32>,
    pub gross: Money,
    /// Acknowledged refunds.
    pub refunded: Money,
    /// A refund of this much got no definite answer.
    pub refund_unknown: Money,
}

#[derive(Default)]
pub struct WorkerResult {
    acked: Vec<Sale>,
    unknown: Vec<Sale>,
    checkouts_sent: u64,
    credit_acked: u64,
    refunds_sent: u64,
    refunds_acked: u64,
    rejected: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    retries: u64,
    checkout_latency: Vec<u32>,
    checkout_service: Vec<u32>,
    refund_latency: Vec<u32>,
    per_second: Vec<u64>,
}

/// Runs one worker per connection until the plan's deadline.
pub async fn load(
    plan: &Arc<Plan>,
    target: &Target,
    seed: u64,
) -> anyhow::Result<Vec<WorkerResult>> {
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..plan.concurrency as u32 {
        let worker = Worker {
            id,
            plan: plan.clone(),
            conn: Conn::new(target.clone()),
            rng: SplitMix64::new(seed ^ (u64::from(id) + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
            seq: 0,
            body: String::with_capacity(512),
            out: WorkerResult::default(),
        };
        workers.spawn(worker.run());
    }
    let mut results = Vec::with_capacity(plan.concurrency);
    while let Some(result) = workers.join_next().await {
        results.push(result.context("a load worker panicked")?);
    }
    Ok(results)
}

/// The report of the workers' results (its verification still to come),
/// and the sales acknowledged and of unknown outcome.
pub fn merge(plan: &Plan, results: Vec<WorkerResult>) -> (LoadReport, Vec<Sale>, Vec<Sale>) {
    let mut report = LoadReport {
        tenant: plan.tenant.clone(),
        run: plan.run.clone(),
        concurrency: plan.concurrency,
        rate: plan.rate,
        elapsed: plan.start.elapsed(),
        ..LoadReport::default()
    };
    let mut acked = Vec::new();
    let mut unknown = Vec::new();
    for r in results {
        report.checkouts_sent += r.checkouts_sent;
        report.checkouts_acked += r.acked.len() as u64;
        report.credit_acked += r.credit_acked;
        report.refunds_sent += r.refunds_sent;
        report.refunds_acked += r.refunds_acked;
        report.retries += r.retries;
        if report.per_second.len() < r.per_second.len() {
            report.per_second.resize(r.per_second.len(), 0);
        }
        for (total, n) in report.per_second.iter_mut().zip(&r.per_second) {
            *total += n;
        }
        for (code, n) in r.rejected {
            *report.rejected.entry(code).or_default() += n;
        }
        for (why, n) in r.errors {
            *report.errors.entry(why).or_default() += n;
        }
        report.checkout_latency.extend(r.checkout_latency);
        report.checkout_service.extend(r.checkout_service);
        report.refund_latency.extend(r.refund_latency);
        acked.extend(r.acked);
        unknown.extend(r.unknown);
    }
    report.checkout_latency.sort_unstable();
    report.checkout_service.sort_unstable();
    report.refund_latency.sort_unstable();
    (report, acked, unknown)
}

/// A request's answer, as far as the generator cares.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// 2xx.
    Acked,
    /// A definite refusal, with its problem code.
    Refused(String),
    /// No definite answer: retry with the same key.
    Retry(String),
}

#[derive(Deserialize)]
struct ProblemCode {
    code: String,
}

/// Classifies a response by status; `body` is read only when refused.
fn answer(status: u16, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Acked;
    }
    let code = serde_json::from_slice::<ProblemCode>(body)
        .map_or_else(|_| format!("http_{status}"), |p| p.code);
    match status {
        408 | 409 | 429 | 500..=599 => Answer::Retry(code),
        _ => Answer::Refused(code),
    }
}

fn micros_since(at: Instant) -> u32 {
    u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX)
}

struct Worker {
    id: u32,
    plan: Arc<Plan>,
    conn: Conn,
    rng: SplitMix64,
    seq: u32,
    body: String,
    out: WorkerResult,
}

impl Worker {
    async fn run(mut self) -> WorkerResult {
        let plan = self.plan.clone();
        // Paced workers start staggered across one interval.
        let mut next = plan
            .interval
            .map(|i| plan.start + i.mul_f64(f64::from(self.id) / plan.concurrency as f64));
        loop {
            let now = Instant::now();
            if now >= plan.deadline {
                break;
            }
            // Where a request's latency counts from. A worker behind its
            // schedule counts from the scheduled time, so that waiting for
            // a slow server is not hidden (coordinated omission); one on
            // time counts from when its timer fired, so that the timer's
            // millisecond granularity is not charged to the server.
            let scheduled = match (&mut next, plan.interval) {
                (Some(at), Some(interval)) => {
                    if *at >= plan.deadline {
                        break;
                    }
                    let scheduled = *at;
                    *at += interval;
                    if scheduled > now {
                        tokio::time::sleep_until(scheduled.into()).await;
                        Instant::now()
                    } else {
                        scheduled
                    }
                }
                _ => now,
            };
            if !self.out.acked.is_empty() && self.rng.chance_percent(u64::from(plan.refund_percent))
            {
                let index = self.rng.below(self.out.acked.len() as u64) as usize;
                let sale = self.out.acked[index];
                if sale.refunded.is_zero() && sale.refund_unknown.is_zero() {
                    self.refund(index, scheduled).await;
                    continue;
                }
            }
            self.checkout(scheduled).await;
        }
        self.out
    }

    /// Sends one request until it gets a definite answer or runs out of attempts.
    async fn send(&mut self, path: &str, auth: &HeaderValue, key: &str) -> Result<Answer, String> {
        let mut why = String::new();
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                self.out.retries += 1;
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
            }
            let answer = match self.conn.post(path, auth, key, self.body.as_bytes()).await {
                Ok(r) => answer(r.status, &r.body),
                Err(e) => Answer::Retry(e.as_str().to_owned()),
            };
            match answer {
                Answer::Retry(reason) => why = reason,
                definite => return Ok(definite),
            }
        }
        Err(why)
    }

    async fn checkout(&mut self, scheduled: Instant) {
        let plan = self.plan.clone();
        self.seq += 1;
        let vendor = self.rng.below(plan.vendors.len() as u64) as u16;
        let employee = self
            .rng
            .chance_percent(u64::from(plan.credit_percent))
            .then(|| self.rng.below(plan.employees.len() as u64) as u32);
        let order_id = plan.order_id(self.id, self.seq);
        let gross = self.write_checkout(&order_id, vendor, employee);
        let sent = Instant::now();
        self.out.checkouts_sent += 1;
        let auth = &plan.vendors[vendor as usize].cashier;
        let outcome = self.send("/v1/sales", auth, &order_id).await;
        self.out.checkout_latency.push(micros_since(scheduled));
        if plan.interval.is_some() {
            self.out.checkout_service.push(micros_since(sent));
        }
        let zero = Money::zero(plan.currency);
        let sale = Sale {
            worker: self.id,
            seq: self.seq,
            vendor,
            employee,
            gross,
            refunded: zero,
            refund_unknown: zero,
        };
        match outcome {
            Ok(Answer::Acked) => self.acked(sale),
            Ok(Answer::Refused(code)) => *self.out.rejected.entry(code).or_default() += 1,
            Ok(Answer::Retry(_)) => unreachable!("send retries these"),
            Err(why) => {
                *self.out.errors.entry(why).or_default() += 1;
                self.out.unknown.push(sale);
            }
        }
    }

    /// Writes a checkout's body (1 to 4 lines from the menu); returns its gross.
    fn write_checkout(&mut self, order_id: &str, vendor: u16, employee: Option<u32>) -> Money {
        let plan = &self.plan;
        let body = &mut self.body;
        body.clear();
        let _ = write!(body, r#"{{"order_id":"{order_id}","#);
        if plan.name_vendor {
            let _ = write!(
                body,
                r#""vendor_id":"{}","#,
                plan.vendors[vendor as usize].id
            );
        }
        body.push_str(r#""lines":["#);
        let mut gross = Money::zero(plan.currency);
        for line in 0..=self.rng.below(4) {
            let item = &plan.menu[self.rng.below(plan.menu.len() as u64) as usize];
            let quantity = 1 + self.rng.below(3) as u32;
            let total = item
                .price
                .times(quantity)
                .expect("a line of the menu is in range");
            gross = money::add(gross, total);
            if line > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"item":"{}","quantity":{quantity},"unit_price":"{}"}}"#,
                item.code, item.price_text
            );
        }
        match employee {
            Some(e) => {
                let _ = write!(
                    body,
                    r#"],"payment":{{"method":"credit","employee_id":"{}"}}}}"#,
                    plan.employees[e as usize]
                );
            }
            None => body.push_str(r#"],"payment":{"method":"cash"}}"#),
        }
        gross
    }

    /// Counts an acknowledged checkout.
    fn acked(&mut self, sale: Sale) {
        self.out.credit_acked += u64::from(sale.employee.is_some());
        self.out.acked.push(sale);
        let second = self.plan.start.elapsed().as_secs() as usize;
        if self.out.per_second.len() <= second {
            self.out.per_second.resize(second + 1, 0);
        }
        self.out.per_second[second] += 1;
    }

    async fn refund(&mut self, index: usize, scheduled: Instant) {
        let plan = self.plan.clone();
        self.seq += 1;
        let sale = self.out.acked[index];
        let amount = if self.rng.chance_percent(50) {
            sale.gross
        } else {
            money::half(sale.gross)
        };
        let order_id = plan.order_id(sale.worker, sale.seq);
        let refund_id = format!("R{}-{:x}-{:x}", plan.run, self.id, self.seq);
        self.body.clear();
        let _ = write!(
            self.body,
            r#"{{"refund_id":"{refund_id}","amount":"{}"}}"#,
            money::text(amount)
        );
        let path = format!("/v1/orders/{order_id}/refunds");
        let auth = &plan.vendors[sale.vendor as usize].refunds;
        self.out.refunds_sent += 1;
        let outcome = self.send(&path, auth, &refund_id).await;
        self.out.refund_latency.push(micros_since(scheduled));
        match outcome {
            Ok(Answer::Acked) => {
                self.out.refunds_acked += 1;
                let refunded = &mut self.out.acked[index].refunded;
                *refunded = money::add(*refunded, amount);
            }
            Ok(Answer::Refused(code)) => *self.out.rejected.entry(code).or_default() += 1,
            Ok(Answer::Retry(_)) => unreachable!("send retries these"),
            Err(why) => {
                *self.out.errors.entry(why).or_default() += 1;
                self.out.acked[index].refund_unknown = amount;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_is_acknowledged() {
        assert_eq!(answer(201, b""), Answer::Acked);
        assert_eq!(answer(200, b"not read"), Answer::Acked);
    }

    #[test]
    fn a_refusal_carries_its_problem_code() {
        let body = br#"{"type":"about:blank","code":"insufficient_credit","status":422}"#;
        assert_eq!(
            answer(422, body),
            Answer::Refused("insufficient_credit".to_owned())
        );
        assert_eq!(
            answer(404, b"<html>"),
            Answer::Refused("http_404".to_owned())
        );
    }

    #[test]
    fn no_definite_answer_is_retried() {
        for status in [408, 409, 429, 500, 503, 599] {
            assert!(matches!(answer(status, b""), Answer::Retry(_)), "{status}");
        }
        assert_eq!(
            answer(409, br#"{"code":"version_conflict"}"#),
            Answer::Retry("version_conflict".to_owned())
        );
    }
}
