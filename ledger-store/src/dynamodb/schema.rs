//! The tables, as data: `schemas/dynamodb/*.json`, compiled in.
//!
//! The JSON uses CloudFormation's `AWS::DynamoDB::Table` property names, so
//! the deployment reads the very same files; tests and `tally serve --store
//! dynamodb` create tables from them with [`create_tables`]. Only the table
//! names differ, by a prefix.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};
use serde::Deserialize;

use crate::StoreError;

/// The event table's definition.
pub const EVENTS_JSON: &str = include_str!("../../../schemas/dynamodb/events.json");
/// The read-model table's definition.
pub const READ_MODELS_JSON: &str = include_str!("../../../schemas/dynamodb/read-models.json");

/// How long [`create_tables`] waits for a table to become active.
const ACTIVE_WAIT_MAX: Duration = Duration::from_secs(60);

/// One table, as `schemas/dynamodb/` defines it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TableDefinition {
    /// The name without the deployment's prefix.
    pub table_name: String,
    pub description: String,
    pub billing_mode: String,
    pub attribute_definitions: Vec<Attribute>,
    pub key_schema: Vec<Key>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<Index>,
    pub stream_specification: Option<Stream>,
    pub time_to_live_specification: Option<TimeToLive>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Attribute {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Key {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Index {
    pub index_name: String,
    pub key_schema: Vec<Key>,
    pub projection: IndexProjection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IndexProjection {
    pub projection_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Stream {
    pub stream_view_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TimeToLive {
    pub attribute_name: String,
    pub enabled: bool,
}

/// Both tables' definitions, parsed.
///
/// # Panics
/// Never on a build whose tests pass: the files are compiled in and a test
/// parses them.
pub fn definitions() -> [TableDefinition; 2] {
    let parse = |name: &str, json: &str| -> TableDefinition {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("schemas/dynamodb/{name}: {e}"))
    };
    [
        parse("events.json", EVENTS_JSON),
        parse("read-models.json", READ_MODELS_JSON),
    ]
}

/// Creates every table under `prefix` (an existing table is left as it is),
/// turns on TTL where defined, and waits until all are active.
///
/// # Errors
/// The service's, or a definition the SDK refuses.
pub async fn create_tables(client: &Client, prefix: &str) -> Result<(), StoreError> {
    for table in definitions() {
        let name = format!("{prefix}{}", table.table_name);
        create_table_ready(client, &name, &table).await?;
    }
    Ok(())
}

/// Creates (when missing) a read-model table named `name` from
/// `read-models.json`, with its TTL: another generation of the read models.
///
/// # Errors
/// The service's.
pub async fn create_read_model_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let [_, table] = definitions();
    create_table_ready(client, name, &table).await
}

/// Creates `name` from `table` when missing, waits until it is active,
/// and turns on its TTL when it was created.
async fn create_table_ready(
    client: &Client,
    name: &str,
    table: &TableDefinition,
) -> Result<(), StoreError> {
    let created = create_table(client, name, table).await?;
    wait_active(client, name).await?;
    if created && let Some(ttl) = &table.time_to_live_specification {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(&ttl.attribute_name)
            .enabled(ttl.enabled)
            .build()
            .map_err(schema_error)?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| backend("UpdateTimeToLive", e))?;
    }
    Ok(())
}

async fn create_table(
    client: &Client,
    name: &str,
    table: &TableDefinition,
) -> Result<bool, StoreError> {
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()))
        .set_attribute_definitions(Some(
            table
                .attribute_definitions
                .iter()
                .map(|a| {
                    AttributeDefinition::builder()
                        .attribute_name(&a.attribute_name)
                        .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                        .build()
                        .map_err(schema_error)
                })
                .collect::<Result<_, _>>()?,
        ))
        .set_key_schema(Some(key_schema(&table.key_schema)?));
    for index in &table.global_secondary_indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index.projection.projection_type.as_str(),
                        ))
                        .build(),
                )
                .build()
                .map_err(schema_error)?,
        );
    }
    if let Some(stream) = &table.stream_specification {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                .build()
                .map_err(schema_error)?,
        );
    }
    match create.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(backend("CreateTable", e)),
    }
}

fn key_schema(keys: &[Key]) -> Result<Vec<KeySchemaElement>, StoreError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(schema_error)
        })
        .collect()
}

async fn wait_active(client: &Client, name: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_WAIT_MAX;
    loop {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| backend("DescribeTable", e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::backend(
                format!("creating table {name}"),
                format!("not active within {ACTIVE_WAIT_MAX:?} (status {status:?})"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn schema_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(
        "reading a table definition",
        format!("the SDK refuses it: {e}"),
    )
}

pub(super) fn backend(
    operation: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::backend(format!("DynamoDB {operation}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_parse_and_key_what_the_adapter_writes() {
        let [events, read_models] = definitions();
        fn keys(t: &TableDefinition) -> Vec<&str> {
            t.key_schema
                .iter()
                .map(|k| k.attribute_name.as_str())
                .collect()
        }
        assert_eq!(keys(&events), [super::super::PK, super::super::VERSION]);
        assert_eq!(
            events
                .stream_specification
                .as_ref()
                .map(|s| s.stream_view_type.as_str()),
            Some("NEW_IMAGE"),
            "the projectors read new images"
        );
        assert_eq!(keys(&read_models), [super::super::PK, super::super::SORT]);
        let indexes: Vec<_> = read_models
            .global_secondary_indexes
            .iter()
            .map(|i| i.index_name.as_str())
            .collect();
        assert_eq!(indexes, ["listing", "vendor-time", "actor-time"]);
        for table in [&events, &read_models] {
            for key in table.key_schema.iter().chain(
                table
                    .global_secondary_indexes
                    .iter()
                    .flat_map(|i| &i.key_schema),
            ) {
                assert!(
                    table
                        .attribute_definitions
                        .iter()
                        .any(|a| a.attribute_name == key.attribute_name),
                    "{}: key {} has no attribute definition",
                    table.table_name,
                    key.attribute_name
                );
            }
        }
    }
}
