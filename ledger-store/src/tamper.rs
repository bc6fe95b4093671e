//! Writes below every port's rules, for tests of the audit only: what
//! someone with write access to the tables could do. Built only with the
//! `tamper` feature, which only test builds turn on.

use ledger_core::codec;
use ledger_core::id::{StreamId, StreamVersion, TenantId};
use rusqlite::params;

use crate::dynamodb::item::{self, event_pk};
use crate::sqlite::write_stream_text;
use crate::{AnyStore, StoreError};

/// Replaces a stored record's bytes, or stores bytes under a key that had
/// none (after the log's last position, on SQLite). The bytes are stored
/// as given: they need not decode.
///
/// # Errors
/// The store's.
pub async fn put_record(
    store: &AnyStore,
    tenant_id: TenantId,
    stream: StreamId,
    version: StreamVersion,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    match store {
        AnyStore::Sqlite(s) => {
            let (conn, text) = (s.tamper_connection()?, stream_text(stream));
            let (tag, recorded_at) = codec::decode(&bytes).map_or((0, 0), |e| {
                (e.event.event_type().tag(), e.header.recorded_at.as_micros())
            });
            let updated = conn
                .execute(
                    "UPDATE events SET record = ?4 WHERE tenant_id = ?1 AND stream = ?2 AND version = ?3",
                    params![tenant_id.as_str(), text, version.get() as i64, bytes],
                )
                .map_err(|e| StoreError::backend("tampering", e))?;
            if updated == 0 {
                conn.execute(
                    "INSERT INTO events (position, tenant_id, stream, version, event_type, recorded_at, record) \
                     VALUES ((SELECT COALESCE(MAX(position), 0) + 1 FROM events), ?1, ?2, ?3, ?4, ?5, ?6)",
                    params![tenant_id.as_str(), text, version.get() as i64, tag, recorded_at, bytes],
                )
                .map_err(|e| StoreError::backend("tampering", e))?;
            }
            Ok(())
        }
        AnyStore::Dynamo(s) => {
            let envelope = codec::decode(&bytes).map_err(|e| {
                StoreError::backend("tampering: the item's attributes need decodable bytes", e)
            })?;
            let sealed = codec::Sealed { bytes, envelope };
            let item = item::event_item(tenant_id, &event_pk(tenant_id, stream), &sealed);
            s.tamper_put(item).await
        }
    }
}

fn stream_text(stream: StreamId) -> String {
    let mut text = String::new();
    write_stream_text(&mut text, stream);
    text
}

/// Deletes a stored record.
///
/// # Errors
/// The store's.
pub async fn delete_record(
    store: &AnyStore,
    tenant_id: TenantId,
    stream: StreamId,
    version: StreamVersion,
) -> Result<(), StoreError> {
    match store {
        AnyStore::Sqlite(s) => {
            let (conn, text) = (s.tamper_connection()?, stream_text(stream));
            conn.execute(
                "DELETE FROM events WHERE tenant_id = ?1 AND stream = ?2 AND version = ?3",
                params![tenant_id.as_str(), text, version.get() as i64],
            )
            .map_err(|e| StoreError::backend("tampering", e))?;
            Ok(())
        }
        AnyStore::Dynamo(s) => s.tamper_delete(&event_pk(tenant_id, stream), version).await,
    }
}
