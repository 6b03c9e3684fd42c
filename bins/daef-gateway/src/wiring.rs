//! Turns configuration into adapters, an engine and an [`App`]: one `match` per port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use daef_auth::Authenticator;
use daef_core::ports::{Queue, RateLimiter, Store};
use daef_core::transition::Timing;
use daef_core::{Engine, EngineConfig};
use daef_http::{AdminLimits, App, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;

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
        },
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
            confirm_token: cli.admin.admin_requeue_confirm_token.clone().filter(|t| !t.is_empty()),
        },
    };
    Ok(App::new(engine, auth, rate_limiter, http))
}

fn authenticator(cli: &Cli) -> anyhow::Result<Authenticator> {
    // clap drops an empty variable; an empty DAEF_API_TOKENS is still "set" and must not mean
    // "auth off" (never fail open).
    let raw = cli.http.api_tokens.clone().or_else(|| std::env::var("DAEF_API_TOKENS").ok());
    let auth = Authenticator::from_env_value(raw.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if auth.is_enabled() {
        tracing::info!(tenants = ?auth.configured_tenants(), "token auth enabled");
    } else {
        tracing::warn!("DAEF_API_TOKENS is not set: authentication is OFF and every request is allowed");
    }
    Ok(auth)
}

async fn store(cli: &Cli) -> anyhow::Result<Arc<dyn Store>> {
    match cli.store.kind {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreKind::Postgres => bail!("DAEF_STORE=postgres is not available in this build yet"),
    }
}

async fn queue(cli: &Cli) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn RateLimiter>)> {
    match cli.queue.kind {
        QueueKind::Memory => Ok((
            Arc::new(MemoryQueue::new(cli.queue.redis_deadletter_max)),
            Arc::new(MemoryRateLimiter::new()),
        )),
        QueueKind::Redis => bail!("DAEF_QUEUE=redis is not available in this build yet"),
    }
}

/// `daef-gateway migrate`.
pub(crate) async fn migrate(cli: &Cli) -> anyhow::Result<()> {
    let _dsn = cli.store.postgres_dsn.as_deref().context("DAEF_POSTGRES_DSN is required for migrate")?;
    bail!("migrations are not available in this build yet")
}
