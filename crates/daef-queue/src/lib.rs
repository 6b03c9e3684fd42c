//! DAEF's queue adapters: dispatch hints (task references with claim/ack semantics) behind
//! [`daef_core::ports::Queue`], and the admin rate limiter behind
//! [`daef_core::ports::RateLimiter`].
//!
//! [`MemoryQueue`] and [`MemoryRateLimiter`] keep everything in process memory: the default
//! for a single gateway and for tests. Their behaviour is pinned by the suites in
//! `daef-conformance`, which every other backend must pass too.
//!
//! A queue must never be treated as the source of truth: it carries `job_id|task_id`
//! references only, and losing all of them delays work but loses none (the store knows what is
//! dispatchable). Adapters never read the clock: every deadline is computed from the `now`
//! argument.

mod memory;
mod rate;

pub use memory::MemoryQueue;
pub use rate::MemoryRateLimiter;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisQueue, RedisRateLimiter};
