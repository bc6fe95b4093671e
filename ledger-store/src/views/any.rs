//! [`AnyTable`]: whichever read-model table a server runs on, as one type,
//! so the HTTP API is built once; each call is one match away from its
//! adapter.

use std::sync::Arc;

use ledger_core::projection::activity::{ActivityEntry, ActivityQuery};
use ledger_core::projection::orders::OrderListQuery;
use ledger_core::{EmployeeId, StreamId, StreamVersion, TenantId, VendorId};

use super::{
    Cost, DayRange, DayRow, DueRow, Live, MemoryState, MemoryTable, OrderRow, Parked, StoredView,
    TableError, ViewKey, ViewTable, Write, WriteError,
};
use crate::dynamodb::views::DynamoTable;
use crate::sqlite::SqliteViews;

#[derive(Debug, Clone)]
pub enum AnyTable {
    Memory(Arc<MemoryTable>),
    Sqlite(SqliteViews),
    /// Whichever generation of the SQLite read models is live.
    Live(Live<SqliteViews>),
    Dynamo(DynamoTable),
    /// Whichever generation of the DynamoDB read-model table is live.
    LiveDynamo(Live<DynamoTable>),
}

/// Runs `$call` on whichever adapter `$table` holds.
macro_rules! on_adapter {
    ($table:expr, $t:ident => $call:expr) => {
        match $table {
            AnyTable::Memory($t) => $call,
            AnyTable::Sqlite($t) => $call,
            AnyTable::Live(live) => {
                let current = live.current();
                let $t = &current;
                $call
            }
            AnyTable::LiveDynamo(live) => {
                let current = live.current();
                let $t = &current;
                $call
            }
            AnyTable::Dynamo($t) => $call,
        }
    };
}

impl ViewTable for AnyTable {
    async fn load(&self, keys: &[ViewKey]) -> Result<Vec<Option<StoredView>>, TableError> {
        on_adapter!(self, t => t.load(keys).await)
    }

    async fn parked_from(&self, pk: &str) -> Result<Option<u64>, TableError> {
        on_adapter!(self, t => t.parked_from(pk).await)
    }

    async fn write(&self, write: &Write) -> Result<Cost, WriteError> {
        on_adapter!(self, t => t.write(write).await)
    }

    async fn write_many(&self, writes: &[Write]) -> Vec<Result<Cost, WriteError>> {
        on_adapter!(self, t => t.write_many(writes).await)
    }

    async fn park(&self, parked: &[Parked]) -> Result<Cost, TableError> {
        on_adapter!(self, t => t.park(parked).await)
    }

    async fn parked(&self) -> Result<Vec<Parked>, TableError> {
        on_adapter!(self, t => t.parked().await)
    }

    async fn unpark(&self, pk: &str, through: u64) -> Result<(), TableError> {
        on_adapter!(self, t => t.unpark(pk, through).await)
    }

    async fn record_activity(&self, entries: &[ActivityEntry]) -> Result<Cost, TableError> {
        on_adapter!(self, t => t.record_activity(entries).await)
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<ActivityEntry>, TableError> {
        on_adapter!(self, t => t.activity(query).await)
    }

    async fn seen(
        &self,
        tenant_id: TenantId,
        events: &[(StreamId, StreamVersion)],
    ) -> Result<bool, TableError> {
        on_adapter!(self, t => t.seen(tenant_id, events).await)
    }

    async fn scan(&self) -> Result<MemoryState, TableError> {
        on_adapter!(self, t => t.scan().await)
    }

    async fn orders(&self, query: &OrderListQuery) -> Result<Vec<OrderRow>, TableError> {
        on_adapter!(self, t => t.orders(query).await)
    }

    async fn day_sums(&self, range: &DayRange) -> Result<Vec<DayRow>, TableError> {
        on_adapter!(self, t => t.day_sums(range).await)
    }

    async fn due_sums(
        &self,
        tenant_id: TenantId,
        vendor_id: Option<VendorId>,
    ) -> Result<Vec<DueRow>, TableError> {
        on_adapter!(self, t => t.due_sums(tenant_id, vendor_id).await)
    }

    async fn credit_views(
        &self,
        tenant_id: TenantId,
        after: Option<EmployeeId>,
        limit: usize,
    ) -> Result<Vec<(EmployeeId, StoredView)>, TableError> {
        on_adapter!(self, t => t.credit_views(tenant_id, after, limit).await)
    }
}
