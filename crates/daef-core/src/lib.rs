//! DAEF's domain core: ids, jobs and their task DAGs, the planner, the lifecycle rules
//! (leases, attempts, dead letters, retry back-off), periodic schedules, the audit hash chain,
//! the ports ([`ports::Store`], [`ports::Queue`], [`ports::RateLimiter`]) and the
//! [`engine::Engine`] that drives them.
//!
//! It is embeddable on its own: pair it with the memory adapters of `daef-store` and
//! `daef-queue` (see `examples/in_process.rs`) and a job runs end to end in one process.
//!
//! This crate must never open a socket, speak SQL or HTTP, or read the clock inside a
//! transition: the current time is always passed in as `now`, so every rule is testable without
//! sleeping.

pub mod audit;
pub mod engine;
pub mod error;
pub mod metric;
pub mod model;
pub mod planner;
pub mod ports;
pub mod schedule;
pub mod time;
pub mod transition;

pub use engine::{Engine, EngineConfig};
pub use error::{Error, Resource, Result};
pub use time::Timestamp;
