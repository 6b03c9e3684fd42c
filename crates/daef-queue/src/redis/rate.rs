//! The Redis sliding-window rate limiter: one sorted set of use times per limiter key, checked
//! and updated by one script, so every gateway replica sharing the server enforces one limit.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use daef_core::Result;
use daef_core::Timestamp;
use daef_core::ports::{RateDecision, RateLimiter};

use super::scripts::Op;
use super::{Connection, RedisConfig, validate};

/// A [`RateLimiter`] in Redis: `<key>:ratelimit:<limiter key>` holds the uses inside the last
/// window, scored by time in microseconds; it expires one window after the last use.
pub struct RedisRateLimiter {
    conn: Arc<Connection>,
    prefix: String,
}

impl RedisRateLimiter {
    /// Connects on a connection of its own; [`super::RedisQueue::rate_limiter`] shares the
    /// queue's instead. Only `addr`, `password`, `db`, `key` and the timeouts of `cfg` matter.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        validate(cfg)?;
        let conn = Connection::open(cfg).await?;
        Ok(Self::with_connection(conn, &cfg.key))
    }

    pub(super) fn with_connection(conn: Arc<Connection>, key: &str) -> Self {
        Self {
            conn,
            prefix: format!("{key}:ratelimit:"),
        }
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("addr", &self.conn.addr)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<RateDecision> {
        if limit == 0 {
            return Ok(RateDecision::Allowed);
        }
        let now_us = now.unix_micros();
        let window_us = micros(window);
        // The set can go once its newest use has left the window.
        let ttl_ms = window.as_millis().clamp(1, i64::MAX as u128).to_string();
        // Unique even when two replicas record a use in the same microsecond.
        let member = format!("{now_us}-{}", uuid::Uuid::new_v4().simple());
        let retry_after: i64 = self
            .conn
            .eval(
                Op::RateLimit,
                vec![format!("{}{key}", self.prefix)],
                vec![
                    now_us.to_string(),
                    now_us.saturating_sub(window_us).to_string(),
                    limit.to_string(),
                    member,
                    ttl_ms,
                    window_us.to_string(),
                ],
            )
            .await?;
        // The script answers 0 for an allowed use and at least 1 otherwise.
        Ok(match u64::try_from(retry_after) {
            Ok(secs) if secs > 0 => RateDecision::Limited {
                retry_after_secs: secs,
            },
            _ => RateDecision::Allowed,
        })
    }
}
