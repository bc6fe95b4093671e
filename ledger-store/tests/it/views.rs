//! The read-model table's conformance suite, on the in-memory table, on
//! DynamoDB Local and on SQLite.

mod memory {
    use ledger_store::views::MemoryTable;

    async fn fresh_table() -> (MemoryTable, ()) {
        (MemoryTable::new(), ())
    }

    ledger_store::view_table_conformance_tests!(fresh_table);
}

mod dynamodb {
    use aws_local::emulator::{Emulator, Kind, unique_prefix};
    use ledger_store::dynamodb::views::DynamoTable;
    use ledger_store::dynamodb::{DynamoConfig, DynamoStore};

    /// One table per process, shared by every check (each in a tenant of
    /// its own), as one deployment's table is shared by every tenant.
    async fn fresh_table() -> (DynamoTable, ()) {
        static CONFIG: tokio::sync::OnceCell<DynamoConfig> = tokio::sync::OnceCell::const_new();
        let config = CONFIG
            .get_or_init(|| async {
                let endpoint = tokio::task::spawn_blocking(|| {
                    Emulator::shared(Kind::DynamoDb).endpoint().to_owned()
                })
                .await
                .expect("start DynamoDB Local");
                let config = DynamoConfig {
                    endpoint: Some(endpoint),
                    table_prefix: unique_prefix("views"),
                };
                DynamoStore::create_and_connect(&config)
                    .await
                    .expect("create tables on DynamoDB Local");
                config
            })
            .await;
        (DynamoTable::connect(config).await, ())
    }

    ledger_store::view_table_conformance_tests!(fresh_table);
}

mod sqlite {
    use ledger_store::sqlite::SqliteViews;

    /// One file per process, shared by every check (each in a tenant of its
    /// own); the guard keeps its directory.
    async fn fresh_table() -> (SqliteViews, std::sync::Arc<tempfile::TempDir>) {
        static TABLE: std::sync::OnceLock<(SqliteViews, std::sync::Arc<tempfile::TempDir>)> =
            std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let table =
                    SqliteViews::open(&dir.path().join("log-views")).expect("open the table");
                (table, std::sync::Arc::new(dir))
            })
            .clone()
    }

    ledger_store::view_table_conformance_tests!(fresh_table);
}
