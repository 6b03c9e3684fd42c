//! DAEF's process-level tests: they start the real `daef-gateway` binary (one or several
//! replicas) against real Postgres and Redis, drive it through `daef-client` as workers and
//! clients would, and break things underneath it — SIGKILL the gateway, FLUSHALL or stop Redis,
//! run three replicas on one schema — then check the DESIGN.md §2 invariants from the outside:
//! nothing lost, nothing assigned twice, one audit chain, one shared rate limit.
//!
//! This library holds the shared plumbing ([`gateway`]: the process guard, [`workload`]: worker
//! loops and the ledger of what they saw, [`wait`]: bounded waiting, [`raw`]: HTTP/1.1 written
//! by hand on a socket, for the wire-level tests); the tests themselves are the `it`
//! integration-test binary. The gateway binary must already be built (`cargo nextest run
//! --workspace` and `cargo test --workspace` build it; otherwise `cargo build -p daef-gateway`).
//!
//! Backends come from `daef-testenv`: each gateway gets a Postgres schema of its test and a Redis
//! key prefix (or a private `redis-server` when the test flushes or stops it). A missing backend
//! skips the test, saying so, unless `DAEF_TEST_REQUIRE` names it.
//!
//! This crate must never be a dependency of a shipped crate, never add a second HTTP client (all
//! requests go through `daef-client`, except those of the wire-level tests, which send through
//! [`raw`] what no client should be able to send: exact bytes written by hand, header values that
//! are not UTF-8, a second request on a connection the server may have given up), and never
//! touch a server, schema or key prefix it did not get from `daef-testenv` for the running test.
//! Every child process it starts is killed when its guard drops.

pub mod gateway;
pub mod raw;
pub mod wait;
pub mod workload;

pub use gateway::{Gateway, GatewayConfig, gateway_binary};
pub use wait::{eventually, retry};
pub use workload::{Ledger, WorkerOptions, WorkerPool};
