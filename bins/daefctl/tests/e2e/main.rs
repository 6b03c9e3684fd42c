//! End to end with real processes: a `daef-gateway`, `daef-worker`s and `daefctl`, as an
//! operator would run them. The binaries are the ones built next to this test
//! (`cargo nextest run --workspace` builds them all).

mod auth;
mod cancel;
mod flow;
mod harness;
mod lease;
mod postgres;
mod requeue;
mod schedule;
mod tls;
