//! DAEF's conformance suites: the behaviour the engine relies on from every backend of a port,
//! written once and run against each one (object_store's `integration.rs` plus Quickwit's
//! `metastore_test_suite!`).
//!
//! Each suite module holds plain `pub async fn <behaviour>(port: &dyn Port)` functions named
//! after the behaviour they pin (the store suite, the largest, in one file per area under
//! `store/`), and a `#[macro_export]` macro that turns each into a test for one backend:
//! [`queue_suite!`] for [`daef_core::ports::Queue`], [`rate_limiter_suite!`] for
//! [`daef_core::ports::RateLimiter`], [`store_suite!`] for [`daef_core::ports::Store`]. The
//! suites are instantiated per backend in this crate's `tests/it/` (the adapters are
//! dev-dependencies, so no adapter crate depends on this one and no dependency cycle arises).
//!
//! A behaviour must hold for every backend: this crate never contains backend-specific
//! expectations, never sleeps (time is passed in as `now`), and never relies on tests running
//! one at a time: each test gets its own store, queue or limiter from the factory.

pub mod queue;
pub mod rate;
// The store suite is test code through and through; a failed unwrap is a failed test.
#[allow(clippy::unwrap_used)]
pub mod store;

/// What a backend factory hands a suite: the port, plus anything that must live exactly as long
/// as it (a test schema, a key prefix to clean up), dropped after the behaviour ran.
pub trait Fixture<P: ?Sized> {
    /// The port under test.
    fn port(&self) -> &std::sync::Arc<P>;
}

impl<P: ?Sized> Fixture<P> for std::sync::Arc<P> {
    fn port(&self) -> &std::sync::Arc<P> {
        self
    }
}

impl<P: ?Sized, Guard> Fixture<P> for (std::sync::Arc<P>, Guard) {
    fn port(&self) -> &std::sync::Arc<P> {
        &self.0
    }
}

/// What the suite macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    /// Runs one behaviour on a fresh two-worker runtime, so that concurrent behaviours really
    /// run in parallel. (What `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`
    /// does, without the macro's callers needing `tokio` themselves.)
    pub fn run<F: Future<Output = ()>>(behaviour: F) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the test runtime")
            .block_on(behaviour);
    }
}
