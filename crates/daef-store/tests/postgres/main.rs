//! The Postgres store against a real server: the migration runner, every `Store` method, its
//! agreement with the memory store, and its behaviour under concurrency.
//!
//! Each test works in a schema of its own (`daef_testenv::postgres::fresh_schema`), so they run
//! in parallel. Without a server they are skipped, unless `DAEF_TEST_REQUIRE` names `postgres`.

mod common;
mod concurrency;
mod differential;
mod migrate;
mod store;
