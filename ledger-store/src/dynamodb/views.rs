//! The read-model table on DynamoDB (`schemas/dynamodb/read-models.json`).
//!
//! Items:
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | order view | `tenant\|order/ID` | `view` | `v`, `b` (view bytes), `vendor` = `tenant\|VENDOR`, `at` (µs, 20 digits), `order` |
//! | credit view | `tenant\|credit/ID` | `view` | `v`, `b` |
//! | day sums | `tenant\|vendor/ID\|days` | local date | one number per total, `cur` |
//! | due sums | `tenant\|vendor/ID\|due` | due date | `amount`, `cur` |
//! | parked | `parked\|tenant\|stream` | version (20 digits) | `record`, `error`, `behind` |
//!
//! A view write is a `Put` conditioned on the version it was folded onto
//! (`v = :expect`, or `attribute_not_exists(pk)` for a new view) that
//! returns the stored item when the condition fails
//! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`). A write with sums is one
//! `TransactWriteItems`: the gated `Put`s of its views and one `Update ...
//! ADD` per sum. A write of one view and no sums (a credit account) is a
//! plain conditional `PutItem`, half the cost of a transaction. Views are
//! loaded with a consistent `BatchGetItem`.
//!
//! Cost per event (AWS's formula; items under 1 KB; `cargo test --test
//! system streams -- --nocapture` prints the measured figures): an order
//! view write is 2 WCU (inside a transaction), shared by the order events
//! of one stream in a batch; a dashboard sum is 2 WCU per distinct day or
//! due date per transaction, shared by every order event of that day in
//! it; a credit view is 1 WCU (a single conditional `PutItem`), shared by
//! the credit events of one account in a batch; a parked record is 1 WCU.
//! Reads: 1 RCU per view loaded (a consistent read of up to 4 KB). A cash
//! checkout (one order event) costs at most 4 WCU to project and about 3 in
//! practice; a credit checkout adds 1.

use std::collections::HashMap;
use std::str::FromStr;

use super::item::{PK, SORT, VERSION, parse_pk};
use super::{DynamoConfig, backoff, item_size, transact_wcu, write_wcu};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use ledger_core::projection::dashboard::DayTotals;
use ledger_core::{LocalDate, StreamId, StreamVersion, TenantId, VendorId};
use rust_decimal::Decimal;

use crate::views::{
    Cost, MemoryState, Parked, StoredView, Sum, SumAdd, SumKey, TableError, ViewKey, ViewTable,
    ViewWrite, Write, WriteError,
};

const VIEW_SK: &str = "view";
const VIEW_BYTES: &str = "b";
const VENDOR: &str = "vendor";
const AT: &str = "at";
const ORDER: &str = "order";
const CURRENCY: &str = "cur";
const DUE_AMOUNT: &str = "amount";
const PARKED_PREFIX: &str = "parked|";
/// Keys per `BatchGetItem` request.
const GET_BATCH_MAX: usize = 100;
/// Items per `BatchWriteItem` request.
const PUT_BATCH_MAX: usize = 25;
/// Attempts of a transaction cancelled by a transient reason.
const WRITE_ATTEMPTS_MAX: u32 = 4;

/// The read-model table on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    db: Client,
    table: String,
}

impl DynamoTable {
    /// The read-model table of `config` (the tables must exist).
    pub async fn connect(config: &DynamoConfig) -> DynamoTable {
        let (db, _) = super::clients(config).await;
        DynamoTable::new(db, config.table_names().1)
    }

    pub fn new(db: Client, table: String) -> DynamoTable {
        DynamoTable { db, table }
    }

    /// Every parked record, by stream and version: what operators look at
    /// and redrive from. A filtered scan: an operator's tool, not a hot
    /// path.
    ///
    /// # Errors
    /// When the scan fails.
    pub async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        let state = self
            .scan_where(Some(("begins_with(#pk, :parked)", s(PARKED_PREFIX))))
            .await?;
        Ok(state.parked.into_values().collect())
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
    if let Some(index) = &w.index {
        item.insert(
            VENDOR.to_owned(),
            s(format!("{}|{}", w.key.tenant_id, index.vendor_id)),
        );
        item.insert(
            AT.to_owned(),
            s(padded(index.occurred_at.as_micros().max(0) as u64)),
        );
        item.insert(ORDER.to_owned(), s(w.key.stream.id().to_string()));
    }
    item
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
    let mut expression = format!("ADD {}", adds.join(", "));
    if let Some(currency) = add.currency {
        names.insert("#cur".to_owned(), CURRENCY.to_owned());
        values.insert(":cur".to_owned(), s(currency.code()));
        expression.push_str(" SET #cur = :cur");
    }
    // The item as it stands after the update (its billed size): the key,
    // every total, and the currency when the sum carries one.
    let mut sized: HashMap<String, AttributeValue> = HashMap::from([
        (PK.to_owned(), s(pk.clone())),
        (SORT.to_owned(), s(sk.clone())),
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
    async fn scan(&self) -> Result<MemoryState, TableError> {
        self.scan_where(None).await
    }

    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        let mut found: HashMap<String, StoredView> = HashMap::new();
        for chunk in keys.chunks(GET_BATCH_MAX) {
            let mut request = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression("#pk, #v, #b")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_names("#b", VIEW_BYTES);
            for key in chunk {
                request = request.keys(HashMap::from([
                    (PK.to_owned(), s(view_pk(key))),
                    (SORT.to_owned(), s(VIEW_SK)),
                ]));
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| TableError::backend("building a BatchGetItem", e))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let out = self
                    .db
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| TableError::backend("loading views", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let (Some(AttributeValue::S(pk)), Some(view)) =
                        (item.get(PK), stored_view(item))
                    {
                        found.insert(pk.clone(), view);
                    }
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(keys.iter().map(|k| found.remove(&view_pk(k))).collect())
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
            .send()
            .await
            .map_err(|e| TableError::backend(format!("reading parked records of {pk}"), e))?;
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
        self.transact(&actions, write.views.len(), cost).await
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
                    .map_err(|e| TableError::backend("parking", e))?;
                cost.reported += out
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
        Ok(cost)
    }
}

impl DynamoTable {
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
            let wcu = transact_wcu(item_size(&item)) as f64;
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
            cost.dashboard += transact_wcu(size) as f64;
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
        let wcu = write_wcu(item_size(&item)) as f64;
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
    let item = Item { item, pk, sk };
    if let Some(stream_pk) = pk.strip_prefix(PARKED_PREFIX) {
        let parked = item.parked(stream_pk)?;
        state
            .parked
            .insert((stream_pk.to_owned(), parked.version), parked);
        return Ok(());
    }
    if sk == VIEW_SK {
        let (key, view) = item.view()?;
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

impl Item<'_> {
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
