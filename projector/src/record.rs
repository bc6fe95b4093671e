//! Change records as the transports deliver them, reduced to what the
//! projector reads: which record it is (for batch item failures), when its
//! change was written (for lag), and the change itself, read by the
//! store's one decoder of event items (`ledger_store::dynamodb::change`).

use std::collections::HashMap;

use ledger_store::dynamodb::change::{Change, read_change};
use ledger_store::dynamodb::item::Attribute;

/// One delivered change record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// What a batch item failure names: the DynamoDB stream record's or the
    /// Kinesis record's sequence number.
    pub id: String,
    /// When the change was written to the table (the record's approximate
    /// creation time), in milliseconds since the epoch, for lag.
    pub written_at_ms: Option<i64>,
    pub change: Change,
}

impl ChangeRecord {
    /// Reads a change record of the event table: `event_name` is `INSERT`,
    /// `MODIFY` or `REMOVE`, `keys` the item's key and `new_image` its new
    /// image (empty for a removal), in whichever SDK's attribute type
    /// carried them.
    pub fn read<A: Attribute>(
        id: String,
        written_at_ms: Option<i64>,
        event_name: &str,
        keys: &HashMap<String, A>,
        new_image: &HashMap<String, A>,
    ) -> ChangeRecord {
        ChangeRecord {
            id,
            written_at_ms,
            change: read_change(event_name, keys, new_image),
        }
    }
}
