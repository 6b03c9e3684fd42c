//! DAEF's process-level tests (one integration-test binary, one module per scenario). Each test
//! starts real `daef-gateway` processes (see `daef_system_tests::gateway`) on its own Postgres
//! schema and Redis key prefix or private Redis server, drives them through `daef-client` (the
//! wire-level tests through raw HTTP/1.1, see `daef_system_tests::raw`), and asserts the
//! DESIGN.md §2 invariants and §4 contract from the outside. Each is bounded in time (short
//! leases and reconcile intervals; every wait has a deadline).
//!
//! Needs the gateway binary built (`cargo build -p daef-gateway`; workspace-wide test runs build
//! it). Skips, saying why, when Postgres or Redis is missing, unless `DAEF_TEST_REQUIRE` names it.

mod bad_input;
mod console_browser;
mod idempotent_submit;
mod kill_loop;
mod postgres_restart;
mod postgres_server_restart;
mod redis_flush;
mod redis_outage;
mod replicas;
mod seed_command;
mod seed_protocol;
mod wire;
