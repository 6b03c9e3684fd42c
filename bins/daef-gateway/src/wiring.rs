//! Turns configuration into adapters, an engine and an [`App`]: one `match` per port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use daef_auth::Authenticator;
use daef_core::model::RetryBackoff;
use daef_core::ports::{Queue, RateLimiter, Store};
use daef_core::transition::Timing;
use daef_core::{Engine, EngineConfig};
use daef_http::{AdminLimits, App, HttpConfig};
use daef_queue::redis::{RedisConfig, RedisQueue};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::{MemoryStore, PostgresStore};

use crate::cli::{Cli, QueueKind, StoreKind};

/// Builds the application from configuration, failing fast on anything invalid or unreachable.
pub(crate) async fn app(cli: &Cli) -> anyhow::Result<App> {
    let auth = authenticator(cli)?;
    let store = store(cli).await?;
    let (queue, rate_limiter) = queue(cli).await?;
    let config = EngineConfig {
        timing: Timing {
            lease: Duration::from_secs(cli.engine.lease_seconds),
            orphan_after: Duration::from_secs(cli.engine.orphan_requeue_seconds),
            retry_backoff: RetryBackoff {
                initial_ms: cli.engine.retry_backoff_initial_ms,
                max_ms: cli
                    .engine
                    .retry_backoff_max_ms
                    .max(cli.engine.retry_backoff_initial_ms),
            },
        },
        idempotency_ttl: Duration::from_secs(cli.engine.idempotency_ttl_seconds),
        retention: (cli.engine.retention_hours > 0)
            .then(|| Duration::from_secs(cli.engine.retention_hours.saturating_mul(3_600))),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, queue, config);
    engine.refresh_gauges().await;
    let http = HttpConfig {
        max_body_bytes: usize::try_from(cli.http.max_body_bytes).unwrap_or(usize::MAX),
        admin: AdminLimits {
            max_batch: cli.admin.admin_requeue_max_batch,
            rate_limit_per_min: cli.admin.admin_requeue_rate_limit_per_min,
            confirm_threshold: cli.admin.admin_requeue_confirm_threshold,
            confirm_token: cli
                .admin
                .admin_requeue_confirm_token
                .clone()
                .filter(|t| !t.is_empty()),
        },
    };
    Ok(App::new(engine, auth, rate_limiter, http))
}

fn authenticator(cli: &Cli) -> anyhow::Result<Authenticator> {
    // clap drops an empty variable; an empty DAEF_API_TOKENS is still "set" and must not mean
    // "auth off" (never fail open).
    let raw = cli
        .http
        .api_tokens
        .clone()
        .or_else(|| std::env::var("DAEF_API_TOKENS").ok());
    let auth = Authenticator::from_env_value(raw.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if auth.is_enabled() {
        tracing::info!(tenants = ?auth.configured_tenants(), "token auth enabled");
    } else {
        tracing::warn!(
            "DAEF_API_TOKENS is not set: authentication is OFF and every request is allowed"
        );
    }
    Ok(auth)
}

async fn store(cli: &Cli) -> anyhow::Result<Arc<dyn Store>> {
    match cli.store.kind {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreKind::Postgres => {
            let store = postgres(cli).await?;
            let applied = store
                .migrate()
                .await
                .context("applying Postgres migrations")?;
            if applied.is_empty() {
                tracing::info!("Postgres schema is up to date");
            } else {
                tracing::info!(applied = ?applied, "applied Postgres migrations");
            }
            Ok(Arc::new(store))
        }
    }
}

async fn queue(cli: &Cli) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn RateLimiter>)> {
    match cli.queue.kind {
        QueueKind::Memory => Ok((
            Arc::new(MemoryQueue::new(cli.queue.redis_deadletter_max)),
            Arc::new(MemoryRateLimiter::new()),
        )),
        QueueKind::Redis => {
            let config = RedisConfig {
                addr: cli.queue.redis_addr.clone(),
                password: cli.queue.redis_password.clone().filter(|p| !p.is_empty()),
                db: cli.queue.redis_db,
                key: cli.queue.redis_key.clone(),
                deadletter_max: cli.queue.redis_deadletter_max,
                ..RedisConfig::default()
            };
            let queue = RedisQueue::connect(&config)
                .await
                .map_err(|e| anyhow::anyhow!("DAEF_REDIS_ADDR: {e}{}", source_suffix(&e)))?;
            // The admin rate limit lives in Redis too, so every replica enforces one limit.
            let limiter = queue.rate_limiter();
            Ok((Arc::new(queue), Arc::new(limiter)))
        }
    }
}

/// Connects to Postgres (failing fast on a bad DSN or an unreachable server).
async fn postgres(cli: &Cli) -> anyhow::Result<PostgresStore> {
    let dsn = cli
        .store
        .postgres_dsn
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .context("DAEF_POSTGRES_DSN is required when DAEF_STORE=postgres (and for migrate)")?;
    PostgresStore::connect(dsn, None)
        .await
        .map_err(|e| anyhow::anyhow!("DAEF_POSTGRES_DSN: {e}{}", source_suffix(&e)))
}

/// The underlying cause, for startup errors (never shown to API clients).
fn source_suffix(err: &daef_core::Error) -> String {
    std::error::Error::source(err)
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// `daef-gateway migrate`: applies pending migrations and prints what it applied.
pub(crate) async fn migrate(cli: &Cli) -> anyhow::Result<()> {
    let store = postgres(cli).await?;
    let applied = store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}{}", source_suffix(&e)))?;
    if applied.is_empty() {
        println!("schema is up to date; nothing to apply");
    } else {
        for file in &applied {
            println!("applied {file}");
        }
        println!("{} migration(s) applied", applied.len());
    }
    Ok(())
}
