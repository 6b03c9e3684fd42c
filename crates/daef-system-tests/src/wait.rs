//! Bounded waiting: every wait in these tests has a deadline and says, when it gives up, what it
//! was waiting for and what it saw last.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(50);

/// Checks `check` every 50 ms until it returns `Ok`, and returns that value. `Err` carries the
/// latest observation; after `timeout` the test fails with `what` and it.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(INTERVAL).await,
        }
    }
}

/// Whether a failed call may succeed if sent again unchanged: the gateway was unreachable (not
/// started yet, killed, restarting), too slow, or had a backend down (503). A 500 is not in this
/// set: it is never expected, so the tests report it.
pub fn is_retryable(err: &daef_client::Error) -> bool {
    matches!(
        err,
        daef_client::Error::Transport(_)
            | daef_client::Error::Timeout(_)
            | daef_client::Error::Unavailable(_)
    )
}

/// Repeats `call` while it fails with a [retryable](is_retryable) error, for at most `timeout`;
/// returns the first other outcome, or the last error when time runs out. Only for calls that
/// are safe to repeat (reads, registrations, reports with an idempotency key).
pub async fn retry<T>(
    timeout: Duration,
    mut call: impl AsyncFnMut() -> daef_client::Result<T>,
) -> daef_client::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match call().await {
            Err(err) if is_retryable(&err) && Instant::now() < deadline => {
                tokio::time::sleep(INTERVAL).await;
            }
            outcome => return outcome,
        }
    }
}
