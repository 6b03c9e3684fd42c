//! The in-memory sliding-window rate limiter.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use daef_core::Result;
use daef_core::Timestamp;
use daef_core::ports::{RateDecision, RateLimiter};

/// A [`RateLimiter`] held in process memory: exact sliding windows, one per key.
///
/// Its counts are not shared between processes, so it keeps the limit only for a single
/// gateway; replicas must share a backend-held limiter (DESIGN.md invariant 7).
#[derive(Default)]
pub struct MemoryRateLimiter {
    /// Key → times of the uses still inside the last window, oldest first. A key keeps at most
    /// `limit` entries; keys are principals, a bounded set.
    uses: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl MemoryRateLimiter {
    /// A limiter with no recorded uses.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemoryRateLimiter");
        // `try_lock` so that formatting can never deadlock against a caller holding the lock.
        match self.uses.try_lock() {
            Ok(uses) => s.field("keys", &uses.len()),
            Err(_) => s.field("keys", &"<locked>"),
        };
        s.finish()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
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
        // Nothing under the lock can panic short of an allocation failure (which aborts), so a
        // poisoned lock still guards consistent state.
        let mut map = self.uses.lock().unwrap_or_else(PoisonError::into_inner);
        let uses = map.entry(key.to_owned()).or_default();
        Ok(decide(uses, limit, window, now))
    }
}

/// The sliding-window rule on one key's uses (`limit > 0`).
fn decide(
    uses: &mut VecDeque<Timestamp>,
    limit: u32,
    window: Duration,
    now: Timestamp,
) -> RateDecision {
    // A use exactly one window ago has left the window.
    let cutoff = now.minus(window);
    while uses.front().is_some_and(|&t| t <= cutoff) {
        uses.pop_front();
    }
    if uses.len() < limit as usize {
        // Callers' clocks may step back; keep the list sorted so the pruning above holds.
        let at = uses.partition_point(|&t| t <= now);
        uses.insert(at, now);
        return RateDecision::Allowed;
    }
    let oldest = uses.front().copied().unwrap_or(now);
    RateDecision::Limited {
        retry_after_secs: now.seconds_until_ceil(oldest.plus(window)).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(millis: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_767_225_600_000_000 + millis * 1_000)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn keeps_at_most_limit_entries_per_key() {
        let mut uses = VecDeque::new();
        for i in 0..10 {
            decide(&mut uses, 3, MINUTE, t(i));
        }
        assert_eq!(uses.len(), 3);
    }

    #[test]
    fn a_use_stamped_earlier_than_the_last_still_leaves_the_window_on_time() {
        let mut uses = VecDeque::new();
        assert_eq!(
            decide(&mut uses, 2, MINUTE, t(10_000)),
            RateDecision::Allowed
        );
        // Another caller's clock is 9 s behind.
        assert_eq!(
            decide(&mut uses, 2, MINUTE, t(1_000)),
            RateDecision::Allowed
        );
        // The 1 s use leaves at 61 s, before the 10 s one.
        assert_eq!(
            decide(&mut uses, 2, MINUTE, t(20_000)),
            RateDecision::Limited {
                retry_after_secs: 41
            }
        );
        assert_eq!(
            decide(&mut uses, 2, MINUTE, t(61_000)),
            RateDecision::Allowed
        );
    }
}
