//! The Postgres store against a real server, in what is Postgres's own: the migration runner,
//! agreement with the memory store, and behaviour under concurrency across connections. The
//! behaviour every `Store` backend shares is `daef-conformance`'s store suite, which runs
//! against this store too.
//!
//! Each test works in a schema of its own (`daef_testenv::postgres::fresh_schema`), so they run
//! in parallel. Without a server they are skipped, unless `DAEF_TEST_REQUIRE` names `postgres`.

mod common;
mod concurrency;
mod differential;
mod migrate;
