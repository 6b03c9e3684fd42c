//! The Postgres store: each test gets its own schema (so tests run in parallel), migrated from
//! scratch by the real runner. Skipped when no Postgres is reachable unless `DAEF_TEST_REQUIRE`
//! names `postgres`.

use std::sync::Arc;

use daef_core::ports::Store;
use daef_store::PostgresStore;
use daef_testenv::postgres::{TestSchema, fresh_schema};

/// The store and its schema; the schema is dropped after the store (tuple fields drop in order).
async fn postgres_store() -> Option<(Arc<dyn Store>, TestSchema)> {
    let schema = fresh_schema().await?;
    let store = PostgresStore::connect(&schema.dsn, Some(&schema.schema))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrations failed: {e}"));
    Some((Arc::new(store), schema))
}

mod store {
    daef_conformance::store_suite!(super::postgres_store);
}
