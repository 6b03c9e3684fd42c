//! Capped exponential backoff with jitter, for retrying calls to a gateway that is down.

use std::time::Duration;

/// Delays of `initial`, doubling up to `max`, each shortened by up to a fifth at random so a
/// fleet of workers that lost the gateway together does not come back in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next try.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000) as u32;
        base - base / 5 * jitter / 1_000
    }

    /// Back to the initial delay after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let expected = [100, 200, 400, 800, 1_000, 1_000];
        for ms in expected {
            let d = b.next_delay();
            let full = Duration::from_millis(ms);
            assert!(d <= full && d >= full - full / 5, "{d:?} for {full:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
