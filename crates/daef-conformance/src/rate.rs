//! The rate-limiter suite: the sliding window every [`RateLimiter`] backend must keep (the
//! admin requeue limit, DESIGN.md §4).
//!
//! Each behaviour is a `pub async fn` taking the limiter under test; [`rate_limiter_suite!`]
//! turns them into one test each. The factory returns `None`, after printing why, when the
//! backend is not available. Every behaviour uses keys of its own, so a limiter shared between
//! tests would also do.
//!
//! Nothing here sleeps: each use is stamped with the `now` the test passes.
//!
//! [`rate_limiter_suite!`]: crate::rate_limiter_suite

use std::sync::Arc;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::JobId;
use daef_core::ports::{RateDecision, RateLimiter};

/// Turns every rate-limiter behaviour into a test for one backend.
///
/// `$make` is an `async fn() -> Option<std::sync::Arc<dyn RateLimiter>>`; `None` skips the
/// test (the factory prints why). Invoke it in a module of its own:
///
/// ```ignore
/// mod rate {
///     daef_conformance::rate_limiter_suite!(super::memory_rate_limiter);
/// }
/// ```
///
/// Adding a behaviour is one function in [`crate::rate`] plus one line here: under `borrowed`
/// when it takes `&dyn RateLimiter`, under `shared` when it takes an `Arc`.
#[macro_export]
macro_rules! rate_limiter_suite {
    ($make:path) => {
        $crate::rate_limiter_suite!(@tests $make;
            borrowed: [
                allows_up_to_limit_then_limits,
                retry_after_rounds_up_to_whole_seconds,
                window_slides,
                honours_the_window_it_is_given,
                limited_attempts_are_not_counted,
                keys_are_independent,
                zero_limit_is_unlimited,
            ]
            shared: [
                concurrent_acquires_never_exceed_limit,
            ]
        );
    };
    (@tests $make:path;
        borrowed: [$($borrowed:ident),* $(,)?]
        shared: [$($shared:ident),* $(,)?]
    ) => {
        $(
            #[test]
            fn $borrowed() {
                $crate::__private::run(async {
                    let Some(r) = $make().await else {
                        return;
                    };
                    $crate::rate::$borrowed(&*r).await;
                });
            }
        )*
        $(
            #[test]
            fn $shared() {
                $crate::__private::run(async {
                    let Some(r) = $make().await else {
                        return;
                    };
                    $crate::rate::$shared(r).await;
                });
            }
        )*
    };
}

// ---- helpers -------------------------------------------------------------------------------

/// The window the admin requeue limit uses.
const MINUTE: Duration = Duration::from_secs(60);

/// `millis` milliseconds after the suite's epoch, 2026-01-01T00:00:00Z.
fn at(millis: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_767_225_600_000_000).plus(Duration::from_millis(millis))
}

/// A key no other test uses.
fn key(name: &str) -> String {
    format!("{name}-{}", JobId::generate())
}

async fn acquire(
    r: &dyn RateLimiter,
    key: &str,
    limit: u32,
    window: Duration,
    now: Timestamp,
) -> RateDecision {
    r.acquire(key, limit, window, now).await.expect("acquire")
}

fn limited(retry_after_secs: u64) -> RateDecision {
    RateDecision::Limited { retry_after_secs }
}

// ---- behaviours ----------------------------------------------------------------------------

/// Up to `limit` uses within a window are allowed; the next is limited until the oldest use
/// leaves the window.
pub async fn allows_up_to_limit_then_limits(r: &dyn RateLimiter) {
    let k = key("limit");
    for s in 0..3 {
        assert_eq!(
            acquire(r, &k, 3, MINUTE, at(s * 1_000)).await,
            RateDecision::Allowed,
            "use {s}"
        );
    }
    // The use at 0 s leaves at 60 s.
    assert_eq!(acquire(r, &k, 3, MINUTE, at(3_000)).await, limited(57));
    assert_eq!(acquire(r, &k, 3, MINUTE, at(3_000)).await, limited(57));
}

/// `retry_after_secs` is the time until the oldest use leaves the window, rounded up to whole
/// seconds and never 0.
pub async fn retry_after_rounds_up_to_whole_seconds(r: &dyn RateLimiter) {
    let k = key("retry");
    assert_eq!(
        acquire(r, &k, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &k, 1, MINUTE, at(0)).await, limited(60));
    assert_eq!(acquire(r, &k, 1, MINUTE, at(250)).await, limited(60));
    assert_eq!(acquire(r, &k, 1, MINUTE, at(1_000)).await, limited(59));
    assert_eq!(acquire(r, &k, 1, MINUTE, at(59_500)).await, limited(1));
    assert_eq!(acquire(r, &k, 1, MINUTE, at(59_999)).await, limited(1));
}

/// The window slides: a use leaves it exactly one window later, freeing a slot, while newer
/// uses still count.
pub async fn window_slides(r: &dyn RateLimiter) {
    let k = key("slide");
    assert_eq!(
        acquire(r, &k, 2, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(
        acquire(r, &k, 2, MINUTE, at(30_000)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &k, 2, MINUTE, at(59_999)).await, limited(1));
    // The use at 0 s is exactly one window old: outside.
    assert_eq!(
        acquire(r, &k, 2, MINUTE, at(60_000)).await,
        RateDecision::Allowed
    );
    // Uses at 30 s and 60 s remain; the one at 30 s leaves at 90 s.
    assert_eq!(acquire(r, &k, 2, MINUTE, at(61_000)).await, limited(29));
    assert_eq!(
        acquire(r, &k, 2, MINUTE, at(90_000)).await,
        RateDecision::Allowed
    );
}

/// The `window` argument decides how long a use counts (not a fixed minute).
pub async fn honours_the_window_it_is_given(r: &dyn RateLimiter) {
    let k = key("window");
    let window = Duration::from_secs(5);
    assert_eq!(
        acquire(r, &k, 1, window, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &k, 1, window, at(2_000)).await, limited(3));
    assert_eq!(
        acquire(r, &k, 1, window, at(5_000)).await,
        RateDecision::Allowed
    );
}

/// A refused attempt is not a use: it does not push back when the next one is allowed.
pub async fn limited_attempts_are_not_counted(r: &dyn RateLimiter) {
    let k = key("refused");
    assert_eq!(
        acquire(r, &k, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &k, 1, MINUTE, at(10_000)).await, limited(50));
    assert_eq!(acquire(r, &k, 1, MINUTE, at(20_000)).await, limited(40));
    assert_eq!(
        acquire(r, &k, 1, MINUTE, at(60_000)).await,
        RateDecision::Allowed
    );
}

/// Each key has its own window.
pub async fn keys_are_independent(r: &dyn RateLimiter) {
    let a = key("a");
    let b = key("b");
    assert_eq!(
        acquire(r, &a, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(
        acquire(r, &b, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &a, 1, MINUTE, at(1_000)).await, limited(59));
    assert_eq!(acquire(r, &b, 1, MINUTE, at(1_000)).await, limited(59));
    let c = key("c");
    assert_eq!(
        acquire(r, &c, 1, MINUTE, at(1_000)).await,
        RateDecision::Allowed
    );
}

/// A limit of 0 means unlimited, and such uses are not recorded against a later real limit.
pub async fn zero_limit_is_unlimited(r: &dyn RateLimiter) {
    let k = key("zero");
    for n in 0..100 {
        assert_eq!(
            acquire(r, &k, 0, MINUTE, at(0)).await,
            RateDecision::Allowed,
            "use {n}"
        );
    }
    assert_eq!(
        acquire(r, &k, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
    assert_eq!(acquire(r, &k, 1, MINUTE, at(0)).await, limited(60));
}

/// Many parallel acquires on one key allow exactly `limit` of them (and leave another key
/// alone).
pub async fn concurrent_acquires_never_exceed_limit(r: Arc<dyn RateLimiter>) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 25;
    const LIMIT: u32 = 50;
    let k = Arc::new(key("concurrent"));

    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let r = Arc::clone(&r);
            let k = Arc::clone(&k);
            tokio::spawn(async move {
                let mut allowed = 0_u32;
                for _ in 0..PER_TASK {
                    if acquire(&*r, &k, LIMIT, MINUTE, at(0)).await == RateDecision::Allowed {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for handle in handles {
        allowed += handle.await.expect("acquiring task panicked");
    }

    assert_eq!(allowed, LIMIT);
    let other = key("other");
    assert_eq!(
        acquire(&*r, &other, 1, MINUTE, at(0)).await,
        RateDecision::Allowed
    );
}
