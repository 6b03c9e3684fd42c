//! [`App`]: the v1 API's shared state (the engine, authentication, limits, metrics, and the
//! signals long polls and event streams wait on). The request pipeline is `pipeline.rs`; the
//! handlers take an `&App`. Nothing here knows a route or a handler.

use std::sync::Arc;

use daef_auth::Authenticator;
use daef_core::Engine;
use daef_core::ports::RateLimiter;

use crate::config::{EventStreamConfig, HttpConfig};
use crate::metrics::Metrics;

/// Most long polls one enqueue wakes directly.
const MAX_WAKE_PER_ENQUEUE: usize = 16;

/// The v1 API over an [`Engine`].
#[derive(Debug)]
pub struct App {
    pub(crate) engine: Engine,
    pub(crate) auth: Authenticator,
    pub(crate) rate_limiter: Arc<dyn RateLimiter>,
    pub(crate) config: HttpConfig,
    pub(crate) metrics: Metrics,
    pub(crate) events: EventStreamConfig,
    /// Flips to true when the server stops accepting connections: open event streams end, so
    /// they do not hold the drain up.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// Signalled when this process enqueued work, to wake long polls (`wait_ms`) at once.
    pub(crate) work: tokio::sync::Notify,
}

impl App {
    /// The API over `engine`, authenticating with `auth` and rate-limiting admin requeues with
    /// `rate_limiter` (share one backend between replicas so they enforce one limit).
    pub fn new(
        engine: Engine,
        auth: Authenticator,
        rate_limiter: Arc<dyn RateLimiter>,
        config: HttpConfig,
    ) -> Self {
        Self {
            engine,
            auth,
            rate_limiter,
            config,
            metrics: Metrics::global(),
            events: EventStreamConfig::default(),
            closing: tokio::sync::watch::Sender::new(false),
            work: tokio::sync::Notify::new(),
        }
    }

    /// The same API with these event stream settings.
    pub fn with_event_streams(self, events: EventStreamConfig) -> Self {
        Self { events, ..self }
    }

    /// Ends every open event stream (and any opened later). The server calls it when it stops
    /// accepting connections.
    pub fn close_event_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Wakes up to `tasks` long polls waiting in this process: that many tasks were just
    /// enqueued here. (Work enqueued by another replica or the reconciler is found by the
    /// waiting polls' periodic re-checks.)
    pub(crate) fn work_enqueued(&self, tasks: usize) {
        // Each woken poll that fills its batch wakes the next one, so a few suffice.
        for _ in 0..tasks.min(MAX_WAKE_PER_ENQUEUE) {
            self.work.notify_one();
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Who the API's tokens are (the console logs in with the same tokens).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The HTTP settings (the console splits dead-letter requeues by the same max batch).
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The metrics handle (for the exporter's periodic upkeep).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
