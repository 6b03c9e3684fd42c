//! The Redis backends, on the server `daef-testenv` finds: each test gets its own key prefix,
//! deleted when the test ends. Without a server the tests are skipped (or fail, when
//! `DAEF_TEST_REQUIRE` names `redis`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use daef_core::Result;
use daef_core::Timestamp;
use daef_core::model::TaskRef;
use daef_core::ports::{Claim, Dispatch, NackOutcome, Queue, RateDecision, RateLimiter};
use daef_queue::{RedisConfig, RedisQueue, RedisRateLimiter};
use daef_testenv::redis::RedisTest;

/// A backend under test and the test's share of the server, so that the prefix's keys are
/// deleted when the suite drops the backend.
#[derive(Debug)]
struct Guarded<T> {
    inner: T,
    _env: RedisTest,
}

fn config(env: &RedisTest, deadletter_max: u32) -> RedisConfig {
    RedisConfig {
        addr: env.addr().to_owned(),
        key: env.key().to_owned(),
        deadletter_max,
        ..RedisConfig::default()
    }
}

async fn redis_queue(deadletter_max: u32) -> Option<Arc<dyn Queue>> {
    let env = daef_testenv::redis::test()?;
    let inner = RedisQueue::connect(&config(&env, deadletter_max))
        .await
        .expect("connecting to the test redis");
    Some(Arc::new(Guarded { inner, _env: env }))
}

async fn redis_rate_limiter() -> Option<Arc<dyn RateLimiter>> {
    let env = daef_testenv::redis::test()?;
    let inner = RedisRateLimiter::connect(&config(&env, 0))
        .await
        .expect("connecting to the test redis");
    Some(Arc::new(Guarded { inner, _env: env }))
}

mod queue {
    daef_conformance::queue_suite!(super::redis_queue);
}

mod rate {
    daef_conformance::rate_limiter_suite!(super::redis_rate_limiter);
}

#[async_trait]
impl Queue for Guarded<RedisQueue> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn enqueue(&self, tasks: &[Dispatch]) -> Result<()> {
        self.inner.enqueue(tasks).await
    }

    async fn claim(&self, max: usize, now: Timestamp, visibility: Duration) -> Result<Vec<Claim>> {
        self.inner.claim(max, now, visibility).await
    }

    async fn ack(&self, receipts: &[String]) -> Result<()> {
        self.inner.ack(receipts).await
    }

    async fn nack(&self, claim: &Claim) -> Result<NackOutcome> {
        self.inner.nack(claim).await
    }

    async fn requeue_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        self.inner.requeue_expired(now, limit).await
    }

    async fn dead_letter(&self, task: &TaskRef) -> Result<()> {
        self.inner.dead_letter(task).await
    }

    async fn requeue_dead(&self, dead: &[TaskRef], enqueue: &[Dispatch]) -> Result<()> {
        self.inner.requeue_dead(dead, enqueue).await
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        self.inner.dead_letter_count().await
    }

    async fn pending_count(&self) -> Result<u64> {
        self.inner.pending_count().await
    }
}

#[async_trait]
impl RateLimiter for Guarded<RedisRateLimiter> {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<RateDecision> {
        self.inner.acquire(key, limit, window, now).await
    }
}
