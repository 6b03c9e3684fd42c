//! The memory backends: always available.

use std::sync::Arc;

use daef_core::ports::{Queue, RateLimiter, Store};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;

async fn memory_queue(deadletter_max: u32) -> Option<Arc<dyn Queue>> {
    Some(Arc::new(MemoryQueue::new(deadletter_max)))
}

async fn memory_rate_limiter() -> Option<Arc<dyn RateLimiter>> {
    Some(Arc::new(MemoryRateLimiter::new()))
}

mod queue {
    daef_conformance::queue_suite!(super::memory_queue);
}

mod rate {
    daef_conformance::rate_limiter_suite!(super::memory_rate_limiter);
}

async fn memory_store() -> Option<Arc<dyn Store>> {
    Some(Arc::new(MemoryStore::new()))
}

mod store {
    daef_conformance::store_suite!(super::memory_store);
}
