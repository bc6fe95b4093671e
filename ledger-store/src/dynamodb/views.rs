//! The read-model table on DynamoDB (`schemas/dynamodb/read-models.json`).
//!
//! Items:
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | order view | `tenant\|order/ID` | `view` | `v`, `b` (view bytes), `vendor` = `tenant\|VENDOR`, `listing` = `tenant\|orders`, `rank` = `at\|ID` (µs, 20 digits) |
//! | credit view | `tenant\|credit/ID` | `view` | `v`, `b`, `listing` = `tenant\|credit`, `rank` = `ID` |
//! | day sums | `tenant\|vendor/ID\|days` | local date | one number per total, `cur`, `listing` = `tenant\|days`, `rank` = `date\|VENDOR` |
//! | due sums | `tenant\|vendor/ID\|due` | due date | `amount`, `cur`, `listing` = `tenant\|due`, `rank` = `date\|VENDOR` |
//! | parked | `parked\|tenant\|stream` | version (20 digits) | `record`, `error`, `behind` |
//!
//! Two indexes answer the listings, both projecting every attribute so a
//! page is one `Query`: `listing` (`listing`, `rank`) holds a tenant's
//! order views by time, its credit views by employee and its sums by date
//! then vendor; `vendor-time` (`vendor`, `rank`) one vendor's order views
//! by time. One vendor's sums are a range of the table itself. Index reads
//! are eventually consistent: a listing may trail the last write by the
//! index's propagation, which read-your-writes waits out.
//!
//! A view write is a `Put` conditioned on the version it was folded onto
//! (`v = :expect`, or `attribute_not_exists(pk)` for a new view) that
//! returns the stored item when the condition fails
//! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`). A write with sums is one
//! `TransactWriteItems`: the gated `Put`s of its views and one `Update ...
//! ADD` per sum. A write of one view and no sums (a credit account) is a
//! plain conditional `PutItem`, half the cost of a transaction. Views are
//! loaded with a consistent `BatchGetItem`. A due sum a payment brings to
//! zero is then deleted (conditioned on still being zero), so the
//! receivables listings read what is outstanding, never the history.
//!
//! Cost per event (AWS's formula, index writes at the standard rate of 1
//! WCU per KB; items under 1 KB; `cargo test --test system streams --
//! --nocapture` prints the measured figures): an order view write is 2 WCU
//! inside a transaction plus 2 for its two indexes, shared by the order
//! events of one stream in a batch; a dashboard sum is 2 WCU plus 1 for
//! its index per distinct day or due date per transaction, shared by every
//! order event of that day in it; a credit view is 1 WCU (a single
//! conditional `PutItem`) plus 1 for its index, shared by the credit events
//! of one account in a batch; a parked record is 1 WCU. Reads: 1 RCU per
//! view loaded (a consistent read of up to 4 KB); a listing page is 0.5
//! RCU per 4 KB read from its index. A cash checkout (one order event)
//! costs at most 7 WCU to project before its activity entry, which adds
//! 1 WCU for the item and 1 for each of its two or three indexes; a credit
//! checkout adds its account's view (2) and a second entry. Measured end to
//! end through the server (`cargo test --test system cost -- --nocapture`,
//! checkouts one at a time, so no batch shares a sum): 9.5 WCU to project
//! a cash checkout, 13.5 a credit one; with the append, 13.5 and 21.5. A
//! [`DynamoTable::metered`] table counts its reads' calls and RCU
//! ([`ReadTotals`]); `cargo bench -p ledger-store --bench reads` prints
//! them per API query.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::item::{PK, SORT, VERSION, parse_pk};
use super::{DynamoConfig, backoff, item_size, transact_wcu, write_wcu};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::{
    EmployeeId, LocalDate, OrderId, StreamId, StreamKind, StreamVersion, TenantId, Timestamp,
    VendorId,
};
use rust_decimal::Decimal;

use ledger_core::projection::activity::{ActivityEntry, ActivityFilter, ActivityQuery};

use crate::views::{
    Cost, DayRange, DayRow, DueRow, Live, MemoryState, OrderIndex, OrderRow, Parked,
    QUERY_ROWS_MAX, StoredView, Sum, SumAdd, SumKey, TableError, ViewKey, ViewTable, ViewWrite,
    Write, WriteError, activity_rank,
};

const VIEW_SK: &str = "view";
const VIEW_BYTES: &str = "b";
const VENDOR: &str = "vendor";
/// What an item is listed under in the `listing` index, and its place there.
const LISTING: &str = "listing";
const RANK: &str = "rank";
/// The indexes (`schemas/dynamodb/read-models.json`).
const VENDOR_TIME: &str = "vendor-time";
const ACTOR: &str = "actor";
const ACTOR_TIME: &str = "actor-time";
/// An activity entry's sort key: this, then the version (20 digits).
const ACTIVITY_SK: &str = "a|";
const CURRENCY: &str = "cur";
const DUE_AMOUNT: &str = "amount";
const PARKED_PREFIX: &str = "parked|";
/// The generation pointer's key, in the first generation's table.
const GENERATION_PK: &str = "generation";
const GENERATION_SK: &str = "live";
const GENERATION_READ: &str = "read";
const GENERATION_WRITE: &str = "write";
/// Keys per `BatchGetItem` request.
const GET_BATCH_MAX: usize = 100;
/// Items per `BatchWriteItem` request.
const PUT_BATCH_MAX: usize = 25;
/// Attempts of a transaction cancelled by a transient reason.
const WRITE_ATTEMPTS_MAX: u32 = 4;

/// Which generation of the read-model table readers read and projectors
/// write. They differ only while a rebuild switches generations: writers
/// move first, readers once the new generation has caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Generations {
    pub read: u32,
    pub write: u32,
}

impl Default for Generations {
    fn default() -> Self {
        Self { read: 1, write: 1 }
    }
}

/// Follows the generation pointer: the tables readers read and projectors
/// write, as the pointer last said. The server re-reads it on a timer, a
/// Lambda function at most once a second, before it handles an invocation
/// ([`GenerationFollower::refresh_if_older`]).
#[derive(Debug, Clone)]
pub struct GenerationFollower {
    first: DynamoTable,
    /// The generations last read, and when; `None` before the first read.
    seen: Arc<std::sync::Mutex<Option<(Generations, std::time::Instant)>>>,
    /// The generation readers read.
    pub read: Live<DynamoTable>,
    /// The generation projectors write.
    pub write: Live<DynamoTable>,
}

impl GenerationFollower {
    /// Reads the pointer of `first`'s table once.
    ///
    /// # Errors
    /// The service's, or a pointer that is not one.
    pub async fn start(first: DynamoTable) -> Result<GenerationFollower, TableError> {
        let follower = GenerationFollower::unread(first);
        follower.refresh().await?;
        Ok(follower)
    }

    /// A follower that has not read the pointer yet: it points at the first
    /// generation until its first [`refresh`](Self::refresh) succeeds, and
    /// [`GenerationFollower::known`] says whether one has.
    pub fn unread(first: DynamoTable) -> GenerationFollower {
        GenerationFollower {
            read: Live::new(first.clone()),
            write: Live::new(first.clone()),
            seen: Arc::new(std::sync::Mutex::new(None)),
            first,
        }
    }

    /// Whether the pointer has been read.
    pub fn known(&self) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The generations as last read (the first, before any reading).
    pub fn generations(&self) -> Generations {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(g, _)| g)
            .unwrap_or_default()
    }

    /// Reads the pointer and moves writers and readers where it says;
    /// `true` when it moved since the last reading.
    ///
    /// # Errors
    /// The service's, or a pointer that is not one; nothing moves then.
    pub async fn refresh(&self) -> Result<bool, TableError> {
        let now = self.first.generations().await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.map(|(g, _)| g).unwrap_or_default();
        *seen = Some((now, std::time::Instant::now()));
        if now.write != before.write {
            self.write.set(self.first.generation(now.write));
        }
        if now.read != before.read {
            self.read.set(self.first.generation(now.read));
        }
        Ok(now != before)
    }

    /// [`refresh`](Self::refresh) when the pointer was never read or was
    /// last read more than `max_age` ago; `false` without a read otherwise.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_if_older(&self, max_age: std::time::Duration) -> Result<bool, TableError> {
        let read_at = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(_, at)| at);
        if read_at.is_some_and(|at| at.elapsed() <= max_age) {
            return Ok(false);
        }
        self.refresh().await
    }
}

/// The read-model table on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    db: Client,
    table: String,
    /// The first generation's table, which holds the generation pointer.
    first: String,
    /// Set by [`DynamoTable::metered`]; shared by clones.
    reads: Option<Arc<ReadMeter>>,
}

/// What a [`DynamoTable::metered`] table has read so far: every `Query`,
/// `Scan` and `BatchGetItem` request it sent (a listing's every page, a
/// load's every batch and resend).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadTotals {
    /// Read requests sent.
    pub calls: u64,
    /// Items they returned.
    pub items: u64,
    /// Those items' bytes, by DynamoDB's item-size rules ([`item_size`]).
    pub bytes: u64,
    /// AWS's formula: a `Query` or `Scan` page costs the sum of its items'
    /// sizes rounded up to 4 KB once, a `BatchGetItem` each item's size
    /// rounded up to 4 KB (a key not found: one unit), and never less than
    /// one unit a request; a unit is 1 RCU read strongly consistent (the
    /// table), 0.5 eventually consistent (an index). The sizes are of the
    /// items as returned: a load's projection leaves out a few small
    /// attributes DynamoDB bills (under 4 KB it makes no difference).
    pub rcu_computed: f64,
    /// What the endpoint reported (`ReturnConsumedCapacity=TOTAL`).
    pub rcu_reported: f64,
}

impl ReadTotals {
    /// What was read after `before` (an earlier reading of the same meter).
    pub fn since(&self, before: &ReadTotals) -> ReadTotals {
        ReadTotals {
            calls: self.calls - before.calls,
            items: self.items - before.items,
            bytes: self.bytes - before.bytes,
            rcu_computed: self.rcu_computed - before.rcu_computed,
            rcu_reported: self.rcu_reported - before.rcu_reported,
        }
    }
}

/// [`ReadTotals`] being counted; capacity in thousandths of an RCU.
#[derive(Debug, Default)]
struct ReadMeter {
    calls: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    computed_milli: AtomicU64,
    reported_milli: AtomicU64,
}

/// Bytes a read unit covers.
const READ_UNIT_BYTES: usize = 4096;

/// RCU of `units` read units, read consistently or not.
fn read_rcu(units: usize, consistent: bool) -> f64 {
    if consistent {
        units as f64
    } else {
        units as f64 / 2.0
    }
}

/// Read units of one `Query` or `Scan` page of items of `sizes`: their
/// sum rounded up to 4 KB, at least one.
fn page_units(sizes: &[usize]) -> usize {
    sizes.iter().sum::<usize>().div_ceil(READ_UNIT_BYTES).max(1)
}

impl DynamoTable {
    /// The read-model table of `config` (the tables must exist).
    pub async fn connect(config: &DynamoConfig) -> DynamoTable {
        let (db, _) = super::clients(config).await;
        DynamoTable::new(db, config.table_names().1)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Generation `generation` of this table: the first is the table
    /// itself, the n-th `<first>-g<n>`.
    pub fn generation(&self, generation: u32) -> DynamoTable {
        let table = if generation <= 1 {
            self.first.clone()
        } else {
            format!("{}-g{generation}", self.first)
        };
        DynamoTable {
            db: self.db.clone(),
            table,
            first: self.first.clone(),
            reads: self.reads.clone(),
        }
    }

    /// Creates generation `generation`'s table when it is missing.
    ///
    /// # Errors
    /// The service's.
    pub async fn create_generation(&self, generation: u32) -> Result<DynamoTable, TableError> {
        let table = self.generation(generation);
        super::schema::create_read_model_table(&self.db, &table.table)
            .await
            .map_err(|e| TableError::backend(format!("creating {}", table.table), e))?;
        Ok(table)
    }

    /// Whether the table exists.
    ///
    /// # Errors
    /// The service's.
    pub async fn exists(&self) -> Result<bool, TableError> {
        match self
            .db
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(TableError::backend(format!("describing {}", self.table), e)),
        }
    }

    /// Deletes generation `generation`'s table (never the first).
    ///
    /// # Errors
    /// The service's; a missing table is no error.
    pub async fn delete_generation(&self, generation: u32) -> Result<(), TableError> {
        if generation <= 1 {
            return Err(TableError::Corrupt(
                "the first generation holds the generation pointer and is never deleted".into(),
            ));
        }
        let table = self.generation(generation);
        match self.db.delete_table().table_name(&table.table).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(TableError::backend(format!("deleting {}", table.table), e)),
        }
        Ok(())
    }

    /// The live generations (both 1 until a rebuild switched one in), read
    /// strongly consistent from the first generation's table.
    ///
    /// # Errors
    /// The service's, or a pointer that is not one.
    pub async fn generations(&self) -> Result<Generations, TableError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.first)
            .consistent_read(true)
            .key(PK, s(GENERATION_PK))
            .key(SORT, s(GENERATION_SK))
            .send()
            .await
            .map_err(|e| TableError::backend("reading the generation pointer", e))?;
        let Some(item) = out.item() else {
            return Ok(Generations::default());
        };
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(n)) => n.parse::<u32>().ok(),
            _ => None,
        };
        match (number(GENERATION_READ), number(GENERATION_WRITE)) {
            (Some(read), Some(write)) => Ok(Generations { read, write }),
            _ => Err(TableError::Corrupt(format!(
                "the generation pointer of {} is not one: {item:?}",
                self.first
            ))),
        }
    }

    /// Moves the pointer from `from` to `to`, if it still says `from`.
    ///
    /// # Errors
    /// [`TableError::Corrupt`] when the pointer moved meanwhile (another
    /// rebuild), or the service's.
    pub async fn switch_generations(
        &self,
        from: Generations,
        to: Generations,
    ) -> Result<(), TableError> {
        let mut put = self
            .db
            .put_item()
            .table_name(&self.first)
            .item(PK, s(GENERATION_PK))
            .item(SORT, s(GENERATION_SK))
            .item(GENERATION_READ, n(to.read))
            .item(GENERATION_WRITE, n(to.write))
            .expression_attribute_names("#r", GENERATION_READ)
            .expression_attribute_names("#w", GENERATION_WRITE)
            .expression_attribute_values(":r", n(from.read))
            .expression_attribute_values(":w", n(from.write));
        put = if from == Generations::default() {
            put.expression_attribute_names("#pk", PK)
                .condition_expression("attribute_not_exists(#pk) OR (#r = :r AND #w = :w)")
        } else {
            put.condition_expression("#r = :r AND #w = :w")
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(TableError::Corrupt(format!(
                    "the generation pointer moved from {from:?} meanwhile: another rebuild?"
                )))
            }
            Err(e) => Err(TableError::backend("switching generations", e)),
        }
    }

    pub fn new(db: Client, table: String) -> DynamoTable {
        DynamoTable {
            db,
            first: table.clone(),
            table,
            reads: None,
        }
    }

    /// This table, counting what it reads from now on ([`DynamoTable::reads`]):
    /// its read requests ask for their consumed capacity. For benches and
    /// cost checks; an unmetered table asks for none and counts nothing.
    pub fn metered(self) -> DynamoTable {
        DynamoTable {
            reads: Some(Arc::default()),
            ..self
        }
    }

    /// What this table (and its clones) read since [`DynamoTable::metered`];
    /// zeros when unmetered.
    pub fn reads(&self) -> ReadTotals {
        let Some(meter) = &self.reads else {
            return ReadTotals::default();
        };
        let rcu = |milli: &AtomicU64| milli.load(Ordering::Relaxed) as f64 / 1000.0;
        ReadTotals {
            calls: meter.calls.load(Ordering::Relaxed),
            items: meter.items.load(Ordering::Relaxed),
            bytes: meter.bytes.load(Ordering::Relaxed),
            rcu_computed: rcu(&meter.computed_milli),
            rcu_reported: rcu(&meter.reported_milli),
        }
    }

    /// What a read request asks for of its consumed capacity.
    fn read_capacity(&self) -> Option<ReturnConsumedCapacity> {
        self.reads.as_ref().map(|_| ReturnConsumedCapacity::Total)
    }

    /// Counts one read request that returned items of `sizes` and cost
    /// `units` read units by the formula, and what the endpoint `reported`.
    fn meter_read(&self, sizes: &[usize], units: usize, consistent: bool, reported: f64) {
        let Some(meter) = &self.reads else { return };
        meter.calls.fetch_add(1, Ordering::Relaxed);
        meter.items.fetch_add(sizes.len() as u64, Ordering::Relaxed);
        meter
            .bytes
            .fetch_add(sizes.iter().sum::<usize>() as u64, Ordering::Relaxed);
        let milli = |rcu: f64| (rcu * 1000.0).round() as u64;
        meter
            .computed_milli
            .fetch_add(milli(read_rcu(units, consistent)), Ordering::Relaxed);
        meter
            .reported_milli
            .fetch_add(milli(reported), Ordering::Relaxed);
    }

    /// Counts one `Query` or `Scan` page.
    fn meter_page(
        &self,
        items: &[HashMap<String, AttributeValue>],
        consistent: bool,
        reported: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>,
    ) {
        if self.reads.is_none() {
            return;
        }
        let sizes: Vec<usize> = items.iter().map(item_size).collect();
        let reported = reported.and_then(|c| c.capacity_units()).unwrap_or(0.0);
        self.meter_read(&sizes, page_units(&sizes), consistent, reported);
    }

    /// A consistent scan of the items matching `filter` (an expression on
    /// `#pk` with one value `:parked`), read into a [`MemoryState`].
    async fn scan_where(
        &self,
        filter: Option<(&str, AttributeValue)>,
    ) -> Result<MemoryState, TableError> {
        let mut state = MemoryState::default();
        let mut start = None;
        loop {
            let mut request = self
                .db
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_return_consumed_capacity(self.read_capacity())
                .set_exclusive_start_key(start);
            if let Some((expression, value)) = &filter {
                request = request
                    .filter_expression(*expression)
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_values(":parked", value.clone());
            }
            let page = request
                .send()
                .await
                .map_err(|e| TableError::backend(format!("scanning {}", self.table), e))?;
            self.meter_page(page.items(), true, page.consumed_capacity());
            for item in page.items() {
                read_item(item, &mut state)?;
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(state),
            }
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn view_pk(key: &ViewKey) -> String {
    format!("{}|{}", key.tenant_id, key.stream)
}

fn sum_key(key: &SumKey) -> (String, String) {
    match key {
        SumKey::Day {
            tenant_id,
            vendor_id,
            date,
        } => (
            format!("{tenant_id}|{}|days", StreamId::vendor(*vendor_id)),
            date.to_string(),
        ),
        SumKey::Due {
            tenant_id,
            vendor_id,
            due_date,
        } => (
            format!("{tenant_id}|{}|due", StreamId::vendor(*vendor_id)),
            due_date.to_string(),
        ),
    }
}

/// Zero-padded so string order is numeric order.
fn padded(value: u64) -> String {
    format!("{value:020}")
}

fn view_item(w: &ViewWrite) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PK.to_owned(), s(view_pk(&w.key))),
        (SORT.to_owned(), s(VIEW_SK)),
        (VERSION.to_owned(), n(w.view.version.get())),
        (
            VIEW_BYTES.to_owned(),
            AttributeValue::B(w.view.bytes.clone().into()),
        ),
    ]);
    let tenant = w.key.tenant_id;
    if let Some(index) = &w.index {
        item.insert(
            VENDOR.to_owned(),
            s(format!("{tenant}|{}", index.vendor_id)),
        );
        item.insert(LISTING.to_owned(), s(format!("{tenant}|orders")));
        item.insert(
            RANK.to_owned(),
            s(format!(
                "{}|{}",
                padded(index.occurred_at.as_micros().max(0) as u64),
                w.key.stream.id()
            )),
        );
    } else if w.key.stream.kind() == StreamKind::Credit {
        item.insert(LISTING.to_owned(), s(format!("{tenant}|credit")));
        item.insert(RANK.to_owned(), s(w.key.stream.id().to_string()));
    }
    item
}

/// An activity entry's key: beside its stream's view.
fn activity_key(tenant_id: TenantId, stream: StreamId, version: StreamVersion) -> (String, String) {
    (
        format!("{tenant_id}|{stream}"),
        format!("{ACTIVITY_SK}{}", padded(version.get())),
    )
}

fn activity_item(e: &ActivityEntry) -> HashMap<String, AttributeValue> {
    let tenant = e.tenant_id;
    let (pk, sk) = activity_key(tenant, e.stream, e.version);
    let mut item = HashMap::from([
        (PK.to_owned(), s(pk)),
        (SORT.to_owned(), s(sk)),
        (
            VIEW_BYTES.to_owned(),
            AttributeValue::B(e.to_bytes().into()),
        ),
        (LISTING.to_owned(), s(format!("{tenant}|activity"))),
        (
            RANK.to_owned(),
            s(activity_rank(e.recorded_at, e.stream, e.version)),
        ),
        (ACTOR.to_owned(), s(format!("{tenant}|{}", e.actor.user_id))),
    ]);
    if let Some(vendor) = e.vendor_id {
        item.insert(VENDOR.to_owned(), s(format!("{tenant}|{vendor}|activity")));
    }
    item
}

/// Indexes a view item is written to: an order view's two, a credit
/// view's one.
fn view_indexes(w: &ViewWrite) -> u64 {
    if w.index.is_some() {
        2
    } else {
        u64::from(w.key.stream.kind() == StreamKind::Credit)
    }
}

/// Where a sum is listed: the tenant's days or dues, by date then vendor.
fn sum_listing(key: &SumKey) -> (String, String) {
    match key {
        SumKey::Day {
            tenant_id,
            vendor_id,
            date,
        } => (format!("{tenant_id}|days"), format!("{date}|{vendor_id}")),
        SumKey::Due {
            tenant_id,
            vendor_id,
            due_date,
        } => (
            format!("{tenant_id}|due"),
            format!("{due_date}|{vendor_id}"),
        ),
    }
}

/// The condition of a view's gate and its values.
fn gate(w: &ViewWrite) -> (String, Option<(String, AttributeValue)>) {
    if w.expect == StreamVersion::NONE {
        (format!("attribute_not_exists({PK})"), None)
    } else {
        (
            format!("{VERSION} = :expect"),
            Some((":expect".to_owned(), n(w.expect.get()))),
        )
    }
}

/// The numbers of a sum, by attribute name.
fn sum_fields(sum: &Sum) -> Vec<(&'static str, String)> {
    match sum {
        Sum::Day(t) => {
            let DayTotals {
                orders,
                gross,
                commission,
                refunds,
                refunded_gross,
                refunded_commission,
                gross_cash,
                gross_card,
                gross_mobile_money,
                gross_credit,
                gross_invoice,
                payments,
                payments_received,
            } = t;
            vec![
                ("orders", orders.to_string()),
                ("gross", gross.to_string()),
                ("commission", commission.to_string()),
                ("refunds", refunds.to_string()),
                ("refunded_gross", refunded_gross.to_string()),
                ("refunded_commission", refunded_commission.to_string()),
                ("gross_cash", gross_cash.to_string()),
                ("gross_card", gross_card.to_string()),
                ("gross_mobile_money", gross_mobile_money.to_string()),
                ("gross_credit", gross_credit.to_string()),
                ("gross_invoice", gross_invoice.to_string()),
                ("payments", payments.to_string()),
                ("payments_received", payments_received.to_string()),
            ]
        }
        Sum::Due(amount) => vec![(DUE_AMOUNT, amount.to_string())],
    }
}

/// An `Update ... ADD` of one sum, and the item's size after it.
fn sum_update(table: &str, add: &SumAdd) -> (Update, usize) {
    let (pk, sk) = sum_key(&add.key);
    let fields = sum_fields(&add.add);
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        names.insert(format!("#f{i}"), (*name).to_owned());
        values.insert(format!(":f{i}"), AttributeValue::N(value.clone()));
        adds.push(format!("#f{i} :f{i}"));
    }
    let (listing, rank) = sum_listing(&add.key);
    names.insert("#listing".to_owned(), LISTING.to_owned());
    names.insert("#rank".to_owned(), RANK.to_owned());
    values.insert(":listing".to_owned(), s(listing.clone()));
    values.insert(":rank".to_owned(), s(rank.clone()));
    let mut expression = format!(
        "ADD {} SET #listing = :listing, #rank = :rank",
        adds.join(", ")
    );
    if let Some(currency) = add.currency {
        names.insert("#cur".to_owned(), CURRENCY.to_owned());
        values.insert(":cur".to_owned(), s(currency.code()));
        expression.push_str(", #cur = :cur");
    }
    // The item as it stands after the update (its billed size): the key,
    // every total, and the currency when the sum carries one.
    let mut sized: HashMap<String, AttributeValue> = HashMap::from([
        (PK.to_owned(), s(pk.clone())),
        (SORT.to_owned(), s(sk.clone())),
        (LISTING.to_owned(), s(listing)),
        (RANK.to_owned(), s(rank)),
    ]);
    if let Some(currency) = add.currency {
        sized.insert(CURRENCY.to_owned(), s(currency.code()));
    }
    for (name, value) in &fields {
        sized.insert((*name).to_owned(), AttributeValue::N(value.clone()));
    }
    let update = Update::builder()
        .table_name(table)
        .key(PK, s(pk))
        .key(SORT, s(sk))
        .update_expression(expression)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .expect("table, key and expression are set");
    (update, item_size(&sized))
}

impl DynamoTable {
    /// Deletes each due sum that `sums` took down (a payment) if it now
    /// stands at zero: a settled receivable leaves the table and its
    /// `listing` index, so the dashboard reads what is outstanding, not
    /// the tenant's history. A `DeleteItem` conditioned on the amount
    /// being zero, after the write that added: an invoice adding to the
    /// same due date meanwhile fails the condition and keeps the item, and
    /// a delete lost to a crash leaves a zero the listing drops. Costs 1
    /// WCU a payment, and 1 more for the index when it deletes.
    async fn delete_settled(&self, sums: &[SumAdd]) -> Result<Cost, TableError> {
        let mut cost = Cost::default();
        for add in sums {
            let Sum::Due(amount) = add.add else { continue };
            if !amount.is_sign_negative() {
                continue;
            }
            let (pk, sk) = sum_key(&add.key);
            let deleted = self
                .db
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(pk))
                .key(SORT, s(sk))
                .condition_expression("#amount = :zero")
                .expression_attribute_names("#amount", DUE_AMOUNT)
                .expression_attribute_values(":zero", n(0))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            cost.dashboard += 1.0;
            match deleted {
                Ok(out) => {
                    cost.dashboard += 1.0;
                    cost.reported += out
                        .consumed_capacity()
                        .and_then(|c| c.capacity_units())
                        .unwrap_or(0.0);
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(TableError::backend("deleting a settled receivable", e)),
            }
        }
        Ok(cost)
    }
}

fn stored_view(item: &HashMap<String, AttributeValue>) -> Option<StoredView> {
    let version = match item.get(VERSION) {
        Some(AttributeValue::N(v)) => v.parse().ok()?,
        _ => return None,
    };
    let bytes = match item.get(VIEW_BYTES) {
        Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
        _ => return None,
    };
    Some(StoredView {
        version: StreamVersion::new(version),
        bytes,
    })
}

impl ViewTable for DynamoTable {
    /// A consistent, paged `Scan`; an item that is not one the projector
    /// writes fails it.
    async fn orders(&self, query: &OrderListQuery) -> Result<Vec<OrderRow>, TableError> {
        let limit = query.limit.min(QUERY_ROWS_MAX);
        let from = padded(query.from.as_micros().max(0) as u64);
        // Every rank of an instant sorts above the instant alone, so the
        // bare instant bounds a range exclusively from above.
        let (until, cursor) = match query.cursor {
            Some((at, order)) if at < query.until => (
                format!("{}|{order}", padded(at.as_micros().max(0) as u64)),
                true,
            ),
            _ => (padded(query.until.as_micros().max(0) as u64), false),
        };
        if limit == 0 || until <= from {
            return Ok(Vec::new());
        }
        let (index, hash) = match query.vendor_id {
            Some(vendor) => (
                VENDOR_TIME,
                (VENDOR, format!("{}|{vendor}", query.tenant_id)),
            ),
            None => (LISTING, (LISTING, format!("{}|orders", query.tenant_id))),
        };
        let items = self
            .query(Listing {
                index: Some(index),
                hash,
                range: Range::Between(from, until.clone()),
                newest_first: true,
                limit,
                // The cursor's own row is the upper bound, inclusive.
                skip: cursor.then_some(until),
            })
            .await?;
        items.iter().map(order_row).collect()
    }

    async fn day_sums(&self, range: &DayRange) -> Result<Vec<DayRow>, TableError> {
        if range.to < range.from {
            return Ok(Vec::new());
        }
        let (from, to) = (range.from.to_string(), range.to.to_string());
        let listing = match range.vendor_id {
            Some(vendor_id) => {
                let key = SumKey::Day {
                    tenant_id: range.tenant_id,
                    vendor_id,
                    date: range.from,
                };
                Listing {
                    index: None,
                    hash: (PK, sum_key(&key).0),
                    range: Range::Between(from, to),
                    newest_first: false,
                    limit: usize::MAX,
                    skip: None,
                }
            }
            // `~` sorts above every byte of an identifier.
            None => Listing {
                index: Some(LISTING),
                hash: (LISTING, format!("{}|days", range.tenant_id)),
                range: Range::Between(from, format!("{to}|~")),
                newest_first: false,
                limit: usize::MAX,
                skip: None,
            },
        };
        let mut rows = Vec::new();
        for item in self.query(listing).await? {
            match sum_of(&item)? {
                Some((
                    SumKey::Day {
                        vendor_id, date, ..
                    },
                    Sum::Day(totals),
                )) => rows.push(DayRow {
                    vendor_id,
                    date,
                    totals,
                }),
                _ => return Err(corrupt(&item, "not a day sum")),
            }
        }
        Ok(rows)
    }

    async fn due_sums(
        &self,
        tenant_id: TenantId,
        vendor_id: Option<VendorId>,
    ) -> Result<Vec<DueRow>, TableError> {
        let listing = match vendor_id {
            Some(vendor_id) => Listing {
                index: None,
                hash: (
                    PK,
                    format!("{tenant_id}|{}|due", StreamId::vendor(vendor_id)),
                ),
                range: Range::All,
                newest_first: false,
                limit: usize::MAX,
                skip: None,
            },
            None => Listing {
                index: Some(LISTING),
                hash: (LISTING, format!("{tenant_id}|due")),
                range: Range::All,
                newest_first: false,
                limit: usize::MAX,
                skip: None,
            },
        };
        let mut rows = Vec::new();
        for item in self.query(listing).await? {
            match sum_of(&item)? {
                Some((
                    SumKey::Due {
                        vendor_id,
                        due_date,
                        ..
                    },
                    Sum::Due(amount),
                )) if !amount.is_zero() => rows.push(DueRow {
                    vendor_id,
                    due_date,
                    amount,
                }),
                // Settled: its delete was lost to a crash.
                Some((SumKey::Due { .. }, Sum::Due(_))) => {}
                _ => return Err(corrupt(&item, "not a due sum")),
            }
        }
        Ok(rows)
    }

    async fn credit_views(
        &self,
        tenant_id: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(EmployeeId, StoredView)>, TableError> {
        let limit = limit.min(QUERY_ROWS_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query(Listing {
                index: Some(LISTING),
                hash: (LISTING, format!("{tenant_id}|credit")),
                range: after.map_or(Range::All, |a| Range::Above(a.to_string())),
                newest_first: false,
                limit,
                skip: None,
            })
            .await?;
        items
            .iter()
            .map(|item| {
                let (key, view) = Item::of(item)?.view()?;
                if key.tenant_id != tenant_id || key.stream.kind() != StreamKind::Credit {
                    return Err(corrupt(item, "not a credit view of the tenant"));
                }
                Ok((EmployeeId::from_text(key.stream.id()), view))
            })
            .collect()
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        self.scan_where(None).await
    }

    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        let wanted = keys
            .iter()
            .map(|k| (view_pk(k), VIEW_SK.to_owned()))
            .collect();
        let items = self
            .batch_get(wanted, &[PK, VERSION, VIEW_BYTES], "loading views")
            .await?;
        let mut found: HashMap<String, StoredView> = HashMap::new();
        for item in &items {
            if let (Some(AttributeValue::S(pk)), Some(view)) = (item.get(PK), stored_view(item)) {
                found.insert(pk.clone(), view);
            }
        }
        Ok(keys.iter().map(|k| found.remove(&view_pk(k))).collect())
    }

    /// One `BatchWriteItem` per 25 entries. Each entry is one item written
    /// to the table and to two or three indexes (`listing`, `actor-time`,
    /// and `vendor-time` when it has a vendor): under 1 KB, 3 or 4 WCU.
    async fn record_activity(&self, entries: &[ActivityEntry]) -> Result<Cost, TableError> {
        let mut cost = Cost::default();
        let mut requests = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        for e in entries {
            // A batch may not write one item twice.
            if !seen.insert((e.tenant_id, e.stream, e.version)) {
                continue;
            }
            let item = activity_item(e);
            let indexes = 2 + u64::from(e.vendor_id.is_some());
            cost.activity += ((1 + indexes) * write_wcu(item_size(&item))) as f64;
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| TableError::backend("building an activity entry", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        cost.reported += self.batch_put(requests, "writing activity entries").await?;
        Ok(cost)
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, TableError> {
        let limit = query.limit.min(QUERY_ROWS_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let tenant = query.tenant_id;
        let (index, hash) = match query.filter {
            ActivityFilter::All => (LISTING, (LISTING, format!("{tenant}|activity"))),
            ActivityFilter::Vendor(v) => (VENDOR_TIME, (VENDOR, format!("{tenant}|{v}|activity"))),
            ActivityFilter::Actor(a) => (ACTOR_TIME, (ACTOR, format!("{tenant}|{a}"))),
        };
        // Ranks start with digits; a space sorts below every one of them.
        let below = query.cursor.map_or_else(
            || "~".to_owned(),
            |(at, stream, version)| activity_rank(at, stream, version),
        );
        let items = self
            .query(Listing {
                index: Some(index),
                hash,
                range: Range::Between(" ".to_owned(), below.clone()),
                newest_first: true,
                limit,
                skip: query.cursor.is_some().then_some(below),
            })
            .await?;
        items
            .iter()
            .map(|item| {
                let entry = Item::of(item)?.activity()?;
                if entry.tenant_id != tenant || !query.filter.matches(&entry) {
                    return Err(corrupt(item, "an activity entry listed under another key"));
                }
                Ok(entry)
            })
            .collect()
    }

    async fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> Result<bool, TableError> {
        let mut wanted: Vec<(String, String)> = events
            .iter()
            .map(|(stream, version)| activity_key(tenant_id, *stream, *version))
            .collect();
        wanted.sort();
        wanted.dedup();
        let found = self
            .batch_get(wanted.clone(), &[PK], "reading activity entries")
            .await?;
        Ok(found.len() == wanted.len())
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        let out = self
            .db
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(format!("{PARKED_PREFIX}{pk}")))
            .limit(1)
            .set_return_consumed_capacity(self.read_capacity())
            .send()
            .await
            .map_err(|e| TableError::backend(format!("reading parked records of {pk}"), e))?;
        self.meter_page(out.items(), true, out.consumed_capacity());
        Ok(out.items().first().and_then(|item| match item.get(SORT) {
            Some(AttributeValue::S(sk)) => sk.parse().ok(),
            _ => None,
        }))
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        if let ([view], []) = (write.views.as_slice(), write.sums.as_slice()) {
            return self.put_view(view).await;
        }
        let (actions, cost) = self.transact_actions(write)?;
        let mut cost = self.transact(&actions, write.views.len(), cost).await?;
        cost.add(&self.delete_settled(&write.sums).await?);
        Ok(cost)
    }

    /// A filtered scan: an operator's tool, not a hot path.
    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        let state = self
            .scan_where(Some(("begins_with(#pk, :parked)", s(PARKED_PREFIX))))
            .await?;
        Ok(state.parked.into_values().collect())
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        let key = s(format!("{PARKED_PREFIX}{pk}"));
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND #sk <= :through")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SORT)
                .expression_attribute_values(":pk", key.clone())
                .expression_attribute_values(":through", s(padded(through)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| TableError::backend(format!("reading parked records of {pk}"), e))?;
            for item in page.items() {
                let Some(sk) = item.get(SORT) else { continue };
                self.db
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, key.clone())
                    .key(SORT, sk.clone())
                    .send()
                    .await
                    .map_err(|e| TableError::backend(format!("unparking {pk}"), e))?;
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        let mut cost = Cost::default();
        let mut requests: Vec<WriteRequest> = Vec::with_capacity(parked.len());
        let mut seen = std::collections::HashSet::new();
        for p in parked {
            // A batch may not write one item twice.
            if !seen.insert((p.pk.as_str(), p.version)) {
                continue;
            }
            let mut item = HashMap::from([
                (PK.to_owned(), s(format!("{PARKED_PREFIX}{}", p.pk))),
                (SORT.to_owned(), s(padded(p.version))),
                ("record".to_owned(), s(p.record.clone())),
                ("error".to_owned(), s(p.error.clone())),
            ]);
            if let Some(behind) = p.behind {
                item.insert("behind".to_owned(), n(behind));
            }
            cost.parked += write_wcu(item_size(&item)) as f64;
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| TableError::backend("building a parked record", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        cost.reported += self.batch_put(requests, "parking").await?;
        Ok(cost)
    }
}

impl DynamoTable {
    /// Writes `requests` with `BatchWriteItem`, 25 at a time, resending
    /// what comes back unprocessed; returns the capacity reported.
    async fn batch_put(&self, requests: Vec<WriteRequest>, doing: &str) -> Result<f64, TableError> {
        let mut reported = 0.0;
        for chunk in requests.chunks(PUT_BATCH_MAX) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let out = self
                    .db
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| TableError::backend(doing.to_owned(), e))?;
                reported += out
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum::<f64>();
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(reported)
    }

    /// A consistent `BatchGetItem` of `keys` (pk, sk), reading the
    /// attributes named in `projection`; returns the items found.
    async fn batch_get(
        &self,
        keys: Vec<(String, String)>,
        projection: &[&str],
        doing: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, TableError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(GET_BATCH_MAX) {
            let names: Vec<String> = (0..projection.len()).map(|i| format!("#a{i}")).collect();
            let mut request = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression(names.join(", "));
            for (name, attribute) in names.iter().zip(projection) {
                request = request.expression_attribute_names(name, *attribute);
            }
            for (pk, sk) in chunk {
                request = request.keys(HashMap::from([
                    (PK.to_owned(), s(pk.clone())),
                    (SORT.to_owned(), s(sk.clone())),
                ]));
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| TableError::backend("building a BatchGetItem", e))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let asked = request.keys().len();
                let out = self
                    .db
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .set_return_consumed_capacity(self.read_capacity())
                    .send()
                    .await
                    .map_err(|e| TableError::backend(doing.to_owned(), e))?;
                let items = out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if self.reads.is_some() {
                    // Each item is rounded up alone; a key not found costs
                    // one unit, a key left unprocessed nothing.
                    let sizes: Vec<usize> = items.iter().map(item_size).collect();
                    let unprocessed = pending.as_ref().map_or(0, |k| k.keys().len());
                    let missing = asked.saturating_sub(items.len() + unprocessed);
                    let units = sizes
                        .iter()
                        .map(|size| size.div_ceil(READ_UNIT_BYTES).max(1))
                        .sum::<usize>()
                        + missing;
                    let reported = out
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .sum();
                    self.meter_read(&sizes, units.max(1), true, reported);
                }
                found.extend(items.iter().cloned());
                if pending.is_some() {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(found)
    }

    /// A write's transaction: the gated `Put` of each view, then one
    /// `Update ... ADD` per sum; and its cost by the formula.
    fn transact_actions(
        &self,
        write: &Write,
    ) -> Result<(Vec<TransactWriteItem>, Cost), WriteError> {
        let mut cost = Cost::default();
        let mut actions = Vec::with_capacity(write.actions());
        for w in &write.views {
            let item = view_item(w);
            let size = item_size(&item);
            let wcu = (transact_wcu(size) + view_indexes(w) * write_wcu(size)) as f64;
            if w.index.is_some() {
                cost.orders += wcu;
            } else {
                cost.credit += wcu;
            }
            let (condition, value) = gate(w);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_values(value.map(|v| HashMap::from([v])))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| TableError::backend("building a gated Put", e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for add in &write.sums {
            let (update, size) = sum_update(&self.table, add);
            cost.dashboard += (transact_wcu(size) + write_wcu(size)) as f64;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        Ok((actions, cost))
    }

    /// Sends a transaction whose first `views` actions are gated views,
    /// retrying a transient cancellation; `cost` is its cost by the
    /// formula, returned with what the endpoint reported added.
    async fn transact(
        &self,
        actions: &[TransactWriteItem],
        views: usize,
        mut cost: Cost,
    ) -> Result<Cost, WriteError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let mut attempt = 0;
        loop {
            let result = self
                .db
                .transact_write_items()
                .set_transact_items(Some(actions.to_vec()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let error = match result {
                Ok(out) => {
                    cost.reported += out
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .sum::<f64>();
                    return Ok(cost);
                }
                Err(e) => e,
            };
            let Some(reasons) = (match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Some(c.cancellation_reasons())
                }
                _ => None,
            }) else {
                return Err(TableError::backend("writing views and sums", error).into());
            };
            attempt += 1;
            if let Some(error) = cancelled(reasons, views, attempt) {
                return Err(error);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// One view alone: a conditional `PutItem`.
    async fn put_view(&self, w: &ViewWrite) -> Result<Cost, WriteError> {
        let item = view_item(w);
        let wcu = ((1 + view_indexes(w)) * write_wcu(item_size(&item))) as f64;
        let (condition, value) = gate(w);
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(value.map(|v| HashMap::from([v])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                let mut cost = Cost {
                    reported: out
                        .consumed_capacity()
                        .and_then(|c| c.capacity_units())
                        .unwrap_or(0.0),
                    ..Cost::default()
                };
                if w.index.is_some() {
                    cost.orders = wcu;
                } else {
                    cost.credit = wcu;
                }
                Ok(cost)
            }
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let current = match service {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().and_then(stored_view)
                        }
                        _ => None,
                    };
                    Err(WriteError::Conflict(vec![(0, current)]))
                }
                _ => Err(TableError::backend("writing a view", e).into()),
            },
        }
    }
}

/// Why a transaction cancelled for `reasons` on its `attempt`-th attempt
/// stops: a gate that did not hold among its first `views` actions, or
/// reasons that are not transient, or too many attempts. `None`: try again.
fn cancelled(reasons: &[CancellationReason], views: usize, attempt: u32) -> Option<WriteError> {
    let conflicts: Vec<(usize, Option<StoredView>)> = reasons
        .iter()
        .enumerate()
        .take(views)
        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
        .map(|(i, r)| (i, r.item().and_then(stored_view)))
        .collect();
    if !conflicts.is_empty() {
        return Some(WriteError::Conflict(conflicts));
    }
    let transient = reasons.iter().all(|r| {
        matches!(
            r.code(),
            None | Some(
                "None"
                    | "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
            )
        )
    });
    if !transient || attempt >= WRITE_ATTEMPTS_MAX {
        let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
        return Some(
            TableError::backend(
                "writing views and sums",
                format!("transaction cancelled after {attempt} attempt(s): {codes:?}"),
            )
            .into(),
        );
    }
    None
}

/// Reads one item of the table into `state`; items the projector does not
/// write (checkpoints) are skipped.
fn read_item(
    item: &HashMap<String, AttributeValue>,
    state: &mut MemoryState,
) -> Result<(), TableError> {
    let (Some(pk), Some(sk)) = (text(item, PK), text(item, SORT)) else {
        return Ok(());
    };
    if pk == GENERATION_PK {
        return Ok(());
    }
    let item = Item { item, pk, sk };
    if let Some(stream_pk) = pk.strip_prefix(PARKED_PREFIX) {
        let parked = item.parked(stream_pk)?;
        state
            .parked
            .insert((stream_pk.to_owned(), parked.version), parked);
        return Ok(());
    }
    if sk.starts_with(ACTIVITY_SK) {
        let e = item.activity()?;
        state.activity.insert((e.tenant_id, e.stream, e.version), e);
        return Ok(());
    }
    if sk == VIEW_SK {
        let (key, view) = item.view()?;
        if let Some(index) = item.order_index()? {
            state.indexes.insert(key, index);
        }
        state.views.insert(key, view);
        return Ok(());
    }
    if let Some((key, sum)) = item.sum()? {
        state.sums.insert(key, sum);
    }
    Ok(())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// One scanned item with its key.
struct Item<'a> {
    item: &'a HashMap<String, AttributeValue>,
    pk: &'a str,
    sk: &'a str,
}

impl<'a> Item<'a> {
    /// An item read back, with its key.
    fn of(item: &'a HashMap<String, AttributeValue>) -> Result<Item<'a>, TableError> {
        match (text(item, PK), text(item, SORT)) {
            (Some(pk), Some(sk)) => Ok(Item { item, pk, sk }),
            _ => Err(TableError::Corrupt("an item without its key".to_owned())),
        }
    }

    /// An order view's index, from its `vendor` and `rank`; `None` for
    /// a view without them (a credit view).
    fn order_index(&self) -> Result<Option<OrderIndex>, TableError> {
        let Some(vendor) = self.text(VENDOR) else {
            return Ok(None);
        };
        let vendor_id = vendor
            .split_once('|')
            .and_then(|(_, v)| VendorId::parse(v).ok())
            .ok_or_else(|| self.bad("vendor"))?;
        let at: i64 = self
            .text(RANK)
            .and_then(|r| r.split_once('|'))
            .and_then(|(at, _)| at.parse().ok())
            .ok_or_else(|| self.bad("rank"))?;
        Ok(Some(OrderIndex {
            vendor_id,
            occurred_at: Timestamp::from_micros(at),
        }))
    }

    fn bad(&self, why: &str) -> TableError {
        TableError::Corrupt(format!("{} / {}: {why}", self.pk, self.sk))
    }

    fn text(&self, name: &str) -> Option<&str> {
        text(self.item, name)
    }

    /// A decimal attribute; absent reads as zero.
    fn number(&self, name: &str) -> Result<Decimal, TableError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => Decimal::from_str(v).map_err(|_| self.bad(name)),
            _ => Ok(Decimal::ZERO),
        }
    }

    /// A count attribute; absent reads as zero.
    fn count(&self, name: &str) -> Result<u64, TableError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| self.bad(name)),
            _ => Ok(0),
        }
    }

    /// A parked record of the stream `stream_pk`.
    fn parked(&self, stream_pk: &str) -> Result<Parked, TableError> {
        let version = self.sk.parse().map_err(|_| self.bad("version"))?;
        Ok(Parked {
            pk: stream_pk.to_owned(),
            version,
            record: self.text("record").unwrap_or_default().to_owned(),
            error: self.text("error").unwrap_or_default().to_owned(),
            behind: match self.item.get("behind") {
                Some(AttributeValue::N(b)) => b.parse().ok(),
                _ => None,
            },
        })
    }

    /// An order or credit view.
    fn view(&self) -> Result<(ViewKey, StoredView), TableError> {
        let (tenant_id, stream) = parse_pk(self.pk).map_err(|e| self.bad(&e.to_string()))?;
        let view =
            stored_view(self.item).ok_or_else(|| self.bad("view without version or bytes"))?;
        Ok((ViewKey { tenant_id, stream }, view))
    }

    /// An activity entry.
    fn activity(&self) -> Result<ActivityEntry, TableError> {
        match self.item.get(VIEW_BYTES) {
            Some(AttributeValue::B(b)) => {
                ActivityEntry::from_bytes(b.as_ref()).map_err(|e| self.bad(&e.to_string()))
            }
            _ => Err(self.bad("an activity entry without its bytes")),
        }
    }

    /// A day's or a due date's sums; `None` for an item that is neither.
    fn sum(&self) -> Result<Option<(SumKey, Sum)>, TableError> {
        if let Some(vendor_pk) = self.pk.strip_suffix("|days") {
            let (tenant_id, vendor_id, date) = self.sum_owner(vendor_pk)?;
            let key = SumKey::Day {
                tenant_id,
                vendor_id,
                date,
            };
            Ok(Some((key, Sum::Day(self.day_totals()?))))
        } else if let Some(vendor_pk) = self.pk.strip_suffix("|due") {
            let (tenant_id, vendor_id, due_date) = self.sum_owner(vendor_pk)?;
            let key = SumKey::Due {
                tenant_id,
                vendor_id,
                due_date,
            };
            Ok(Some((key, Sum::Due(self.number(DUE_AMOUNT)?))))
        } else {
            Ok(None)
        }
    }

    /// The vendor of a sum item (`vendor_pk`, its pk less the suffix) and
    /// its date.
    fn sum_owner(&self, vendor_pk: &str) -> Result<(TenantId, VendorId, LocalDate), TableError> {
        let (tenant_id, stream) = parse_pk(vendor_pk).map_err(|e| self.bad(&e.to_string()))?;
        let vendor_id = VendorId::from_text(stream.id());
        let date =
            LocalDate::new(chrono::NaiveDate::from_str(self.sk).map_err(|_| self.bad("date"))?);
        Ok((tenant_id, vendor_id, date))
    }

    fn day_totals(&self) -> Result<DayTotals, TableError> {
        Ok(DayTotals {
            orders: self.count("orders")?,
            gross: self.number("gross")?,
            commission: self.number("commission")?,
            refunds: self.count("refunds")?,
            refunded_gross: self.number("refunded_gross")?,
            refunded_commission: self.number("refunded_commission")?,
            gross_cash: self.number("gross_cash")?,
            gross_card: self.number("gross_card")?,
            gross_mobile_money: self.number("gross_mobile_money")?,
            gross_credit: self.number("gross_credit")?,
            gross_invoice: self.number("gross_invoice")?,
            payments: self.count("payments")?,
            payments_received: self.number("payments_received")?,
        })
    }
}

/// One listing query: an index's (or the table's) partition, a range of
/// its sort key, in one direction.
struct Listing {
    /// `None`: the table itself, read consistently.
    index: Option<&'static str>,
    /// The partition key's attribute and value.
    hash: (&'static str, String),
    range: Range,
    newest_first: bool,
    /// Rows wanted; pages are read until this many or the range ends.
    limit: usize,
    /// A sort key to leave out (an inclusive bound that is exclusive).
    skip: Option<String>,
}

/// A condition on a listing's sort key.
enum Range {
    All,
    /// Inclusive at both ends.
    Between(String, String),
    Above(String),
}

impl DynamoTable {
    /// Reads a listing page by page.
    async fn query(
        &self,
        listing: Listing,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, TableError> {
        let sort = match listing.index {
            Some(_) => RANK,
            None => SORT,
        };
        let (condition, bounds) = match &listing.range {
            Range::All => ("#h = :h".to_owned(), Vec::new()),
            Range::Between(lo, hi) => (
                "#h = :h AND #s BETWEEN :lo AND :hi".to_owned(),
                vec![(":lo", lo.clone()), (":hi", hi.clone())],
            ),
            Range::Above(lo) => ("#h = :h AND #s > :lo".to_owned(), vec![(":lo", lo.clone())]),
        };
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let want = listing.limit - rows.len() + usize::from(listing.skip.is_some());
            let mut request = self
                .db
                .query()
                .table_name(&self.table)
                .set_index_name(listing.index.map(str::to_owned))
                .consistent_read(listing.index.is_none())
                .key_condition_expression(&condition)
                .expression_attribute_names("#h", listing.hash.0)
                .expression_attribute_values(":h", s(listing.hash.1.clone()))
                .scan_index_forward(!listing.newest_first)
                .set_limit(i32::try_from(want).ok().filter(|w| *w < 1_000))
                .set_return_consumed_capacity(self.read_capacity())
                .set_exclusive_start_key(start);
            if !bounds.is_empty() {
                request = request.expression_attribute_names("#s", sort);
            }
            for (name, value) in &bounds {
                request = request.expression_attribute_values(*name, s(value.clone()));
            }
            let page = request
                .send()
                .await
                .map_err(|e| TableError::backend(format!("listing {}", listing.hash.1), e))?;
            self.meter_page(
                page.items(),
                listing.index.is_none(),
                page.consumed_capacity(),
            );
            for item in page.items() {
                if rows.len() == listing.limit {
                    return Ok(rows);
                }
                if listing.skip.is_some() && text(item, sort) == listing.skip.as_deref() {
                    continue;
                }
                rows.push(item.clone());
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() && rows.len() < listing.limit => {
                    start = Some(key.clone());
                }
                _ => return Ok(rows),
            }
        }
    }
}

/// A listed order view as a row.
fn order_row(item: &HashMap<String, AttributeValue>) -> Result<OrderRow, TableError> {
    let item = Item::of(item)?;
    let (key, view) = item.view()?;
    let index = item
        .order_index()?
        .ok_or_else(|| item.bad("an order view without its index"))?;
    if key.stream.kind() != StreamKind::Order {
        return Err(item.bad("not an order view"));
    }
    Ok(OrderRow {
        order_id: OrderId::from_text(key.stream.id()),
        index,
        view,
    })
}

fn sum_of(item: &HashMap<String, AttributeValue>) -> Result<Option<(SumKey, Sum)>, TableError> {
    Item::of(item)?.sum()
}

fn corrupt(item: &HashMap<String, AttributeValue>, why: &str) -> TableError {
    match Item::of(item) {
        Ok(item) => item.bad(why),
        Err(e) => e,
    }
}
