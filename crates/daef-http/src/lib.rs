//! DAEF's HTTP API (v1) on hyper 1.x: routing ([`route::Route`]), authentication and scope
//! checks, request handlers, admin safety (dead-letter requeue limits and auditing), JSON and
//! Prometheus metrics, and the server loop with graceful shutdown.
//!
//! This is the only crate that knows HTTP. It must never decide a lifecycle rule (that is
//! `daef-core`'s) nor talk to a backend except through the engine and the rate-limiter port; it
//! must never define a body's wire shape (every response is a `daef-api` type); and it must
//! never put backend error text in a response body (a 5xx says `internal error` or names the
//! unavailable backend, and the cause goes to the log).

pub mod app;
mod auditing;
pub mod config;
mod ctx;
pub mod error;
mod handler;
pub mod json;
pub mod metrics;
mod pipeline;
pub mod response;
pub mod route;
pub mod server;

pub use app::App;
pub use config::{AdminLimits, EventStreamConfig, HttpConfig};
pub use metrics::Metrics;
pub use server::{Service, serve};
