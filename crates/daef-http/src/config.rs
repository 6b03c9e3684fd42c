//! The HTTP layer's settings, as plain structs: the binary fills them from its configuration;
//! this crate never reads the environment.

use std::time::Duration;

/// Settings of `GET /v1/jobs/{id}/events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventStreamConfig {
    /// How often a stream reads the job and its tasks from the store to find changes. Reading
    /// the store (not an in-process signal) is what makes a stream see changes made through
    /// any replica.
    pub poll_interval: Duration,
    /// How long a stream may stay silent before a keep-alive comment is sent, so proxies and
    /// clients can tell an idle stream from a dead one.
    pub keep_alive: Duration,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Admin safety limits for dead-letter requeues (DESIGN.md §4). A value ≤ 0 disables a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Most tasks in one requeue request (`DAEF_ADMIN_REQUEUE_MAX_BATCH`).
    pub max_batch: i64,
    /// Non-dry-run requeues per principal per minute (`DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN`).
    pub rate_limit_per_min: i64,
    /// Batch size from which `X-DAEF-Confirm` is required (`DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD`).
    pub confirm_threshold: i64,
    /// The confirmation token; unset means no confirmation is asked (`DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN`).
    pub confirm_token: Option<String>,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_batch: 100,
            rate_limit_per_min: 30,
            confirm_threshold: 20,
            confirm_token: None,
        }
    }
}

/// HTTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest accepted request body (`DAEF_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Dead-letter requeue safety.
    pub admin: AdminLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            admin: AdminLimits::default(),
        }
    }
}
