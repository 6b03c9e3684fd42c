//! Command-line and environment configuration. Every option is also a `DAEF_*` variable; an
//! invalid value is a startup error that names the variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// DAEF control-plane gateway.
#[derive(Debug, Parser)]
#[command(name = "daef-gateway", version, about, rename_all = "kebab-case")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) queue: QueueArgs,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API and run the reconciler (the default).
    Serve,
    /// Apply pending Postgres migrations (needs DAEF_POSTGRES_DSN), print what was applied, exit.
    Migrate,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "HTTP")]
pub(crate) struct HttpArgs {
    /// Address to listen on.
    #[arg(long, env = "DAEF_LISTEN_ADDR", default_value = "127.0.0.1:8080", value_parser = parse_with::<SocketAddr>("DAEF_LISTEN_ADDR", "a socket address such as 127.0.0.1:8080"))]
    pub(crate) listen_addr: SocketAddr,
    /// Port to listen on; overrides only the port of the listen address.
    #[arg(long, env = "DAEF_GATEWAY_PORT", value_parser = parse_with::<u16>("DAEF_GATEWAY_PORT", "a port number (0-65535)"))]
    pub(crate) gateway_port: Option<u16>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "DAEF_MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = positive("DAEF_MAX_BODY_BYTES"))]
    pub(crate) max_body_bytes: u64,
    /// API tokens: `token:scope1|scope2,token2:scope`. Unset: auth off (every request allowed).
    #[arg(long, env = "DAEF_API_TOKENS", hide_env_values = true)]
    pub(crate) api_tokens: Option<String>,
}

impl HttpArgs {
    /// The listen address with DAEF_GATEWAY_PORT applied.
    pub(crate) fn listen(&self) -> SocketAddr {
        let mut addr = self.listen_addr;
        if let Some(port) = self.gateway_port {
            addr.set_port(port);
        }
        addr
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// In-process; state is lost on exit.
    Memory,
    /// PostgreSQL (DAEF_POSTGRES_DSN).
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum QueueKind {
    /// In-process.
    Memory,
    /// Redis (DAEF_REDIS_*).
    Redis,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Store")]
pub(crate) struct StoreArgs {
    /// Where state lives.
    #[arg(
        long = "store",
        id = "store",
        env = "DAEF_STORE",
        value_enum,
        default_value = "memory"
    )]
    pub(crate) kind: StoreKind,
    /// Postgres connection string (required when DAEF_STORE=postgres).
    #[arg(long, global = true, env = "DAEF_POSTGRES_DSN", hide_env_values = true)]
    pub(crate) postgres_dsn: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Queue")]
pub(crate) struct QueueArgs {
    /// How tasks are dispatched.
    #[arg(
        long = "queue",
        id = "queue",
        env = "DAEF_QUEUE",
        value_enum,
        default_value = "memory"
    )]
    pub(crate) kind: QueueKind,
    /// Redis address (host:port).
    #[arg(long, env = "DAEF_REDIS_ADDR", default_value = "127.0.0.1:6379")]
    pub(crate) redis_addr: String,
    /// Redis password.
    #[arg(long, env = "DAEF_REDIS_PASSWORD", hide_env_values = true)]
    pub(crate) redis_password: Option<String>,
    /// Redis database number.
    #[arg(long, env = "DAEF_REDIS_DB", default_value_t = 0, allow_hyphen_values = true, value_parser = parse_with::<u8>("DAEF_REDIS_DB", "a database number (0-255)"))]
    pub(crate) redis_db: u8,
    /// Prefix of every Redis key.
    #[arg(long, env = "DAEF_REDIS_KEY", default_value = "daef:tasks")]
    pub(crate) redis_key: String,
    /// Nacks after which a queue reference moves to the dead list (0: never).
    #[arg(long, env = "DAEF_REDIS_DEADLETTER_MAX", default_value_t = 5, value_parser = parse_with::<u32>("DAEF_REDIS_DEADLETTER_MAX", "a non-negative integer"))]
    pub(crate) redis_deadletter_max: u32,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Scheduling")]
pub(crate) struct EngineArgs {
    /// Lease length in seconds; workers heartbeat three times per lease.
    #[arg(long, env = "DAEF_LEASE_SECONDS", default_value_t = 15, value_parser = positive("DAEF_LEASE_SECONDS"))]
    pub(crate) lease_seconds: u64,
    /// How often the reconciler runs, in milliseconds.
    #[arg(long, env = "DAEF_RECONCILE_INTERVAL_MS", default_value_t = 1000, value_parser = positive("DAEF_RECONCILE_INTERVAL_MS"))]
    pub(crate) reconcile_interval_ms: u64,
    /// Seconds a dispatchable task may wait unclaimed before it is enqueued again.
    #[arg(long, env = "DAEF_ORPHAN_REQUEUE_SECONDS", default_value_t = 10, value_parser = positive("DAEF_ORPHAN_REQUEUE_SECONDS"))]
    pub(crate) orphan_requeue_seconds: u64,
    /// A failed attempt's retry waits up to this long (ms), doubling with each attempt, with
    /// full jitter; 0 retries at once. A task's own `retry_backoff` overrides it.
    #[arg(long, env = "DAEF_RETRY_BACKOFF_INITIAL_MS", default_value_t = 1_000, value_parser = parse_with::<u32>("DAEF_RETRY_BACKOFF_INITIAL_MS", "a non-negative integer"))]
    pub(crate) retry_backoff_initial_ms: u32,
    /// The longest wait before a retry, in milliseconds.
    #[arg(long, env = "DAEF_RETRY_BACKOFF_MAX_MS", default_value_t = 300_000, value_parser = parse_with::<u32>("DAEF_RETRY_BACKOFF_MAX_MS", "a non-negative integer"))]
    pub(crate) retry_backoff_max_ms: u32,
    /// Finished jobs (and expired idempotency keys) are deleted this many hours after they last
    /// changed, by the reconciler in bounded batches; 0 keeps everything.
    #[arg(long, env = "DAEF_RETENTION_HOURS", default_value_t = 168, value_parser = parse_with::<u64>("DAEF_RETENTION_HOURS", "a non-negative integer"))]
    pub(crate) retention_hours: u64,
    /// Seconds a submit's Idempotency-Key names its job; a repeat within it creates nothing.
    #[arg(long, env = "DAEF_IDEMPOTENCY_TTL_SECONDS", default_value_t = 86_400, value_parser = positive("DAEF_IDEMPOTENCY_TTL_SECONDS"))]
    pub(crate) idempotency_ttl_seconds: u64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Admin safety (a value <= 0 disables a limit)")]
pub(crate) struct AdminArgs {
    /// Most tasks in one dead-letter requeue.
    #[arg(long, env = "DAEF_ADMIN_REQUEUE_MAX_BATCH", default_value_t = 100, allow_negative_numbers = true, value_parser = parse_with::<i64>("DAEF_ADMIN_REQUEUE_MAX_BATCH", "an integer"))]
    pub(crate) admin_requeue_max_batch: i64,
    /// Non-dry-run requeues per principal per minute, shared by all replicas.
    #[arg(long, env = "DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN", default_value_t = 30, allow_negative_numbers = true, value_parser = parse_with::<i64>("DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN", "an integer"))]
    pub(crate) admin_requeue_rate_limit_per_min: i64,
    /// Batch size from which X-DAEF-Confirm must carry the confirmation token.
    #[arg(long, env = "DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD", default_value_t = 20, allow_negative_numbers = true, value_parser = parse_with::<i64>("DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD", "an integer"))]
    pub(crate) admin_requeue_confirm_threshold: i64,
    /// Confirmation token for large requeues (unset: no confirmation asked).
    #[arg(long, env = "DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN", hide_env_values = true)]
    pub(crate) admin_requeue_confirm_token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub(crate) struct LogArgs {
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `daef_http=debug`).
    #[arg(long, global = true, env = "DAEF_LOG", default_value = "info")]
    pub(crate) log: String,
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "DAEF_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
}

/// A value parser whose error names the environment variable and what it expects.
fn parse_with<T: std::str::FromStr>(
    var: &'static str,
    expected: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        raw.trim()
            .parse::<T>()
            .map_err(|_| format!("{var} must be {expected} (got {raw:?})"))
    }
}

/// A parser for integers that must be at least 1.
fn positive(
    var: &'static str,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |raw: &str| match raw.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{var} must be a positive integer (got {raw:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_seed_document() {
        let cli = Cli::try_parse_from(["daef-gateway"]).unwrap();
        assert_eq!(cli.http.listen().to_string(), "127.0.0.1:8080");
        assert_eq!(cli.store.kind, StoreKind::Memory);
        assert_eq!(cli.queue.kind, QueueKind::Memory);
        assert_eq!(cli.queue.redis_addr, "127.0.0.1:6379");
        assert_eq!(cli.queue.redis_db, 0);
        assert_eq!(cli.queue.redis_key, "daef:tasks");
        assert_eq!(cli.queue.redis_deadletter_max, 5);
        assert_eq!(cli.engine.lease_seconds, 15);
        assert_eq!(cli.engine.reconcile_interval_ms, 1000);
        assert_eq!(cli.engine.orphan_requeue_seconds, 10);
        assert_eq!(cli.engine.idempotency_ttl_seconds, 86_400);
        assert_eq!(cli.engine.retention_hours, 168);
        assert_eq!(
            (
                cli.engine.retry_backoff_initial_ms,
                cli.engine.retry_backoff_max_ms
            ),
            (1_000, 300_000)
        );
        assert_eq!(cli.admin.admin_requeue_max_batch, 100);
        assert_eq!(cli.admin.admin_requeue_rate_limit_per_min, 30);
        assert_eq!(cli.admin.admin_requeue_confirm_threshold, 20);
        assert_eq!(cli.http.max_body_bytes, 1_048_576);
    }

    #[test]
    fn gateway_port_overrides_only_the_port() {
        let cli = Cli::try_parse_from([
            "daef-gateway",
            "--listen-addr",
            "0.0.0.0:9000",
            "--gateway-port",
            "9100",
        ])
        .unwrap();
        assert_eq!(cli.http.listen().to_string(), "0.0.0.0:9100");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (flag, value, var) in [
            ("--lease-seconds", "0", "DAEF_LEASE_SECONDS"),
            ("--lease-seconds", "abc", "DAEF_LEASE_SECONDS"),
            ("--redis-db", "-1", "DAEF_REDIS_DB"),
            (
                "--admin-requeue-max-batch",
                "x",
                "DAEF_ADMIN_REQUEUE_MAX_BATCH",
            ),
            ("--listen-addr", "nowhere", "DAEF_LISTEN_ADDR"),
            ("--reconcile-interval-ms", "0", "DAEF_RECONCILE_INTERVAL_MS"),
        ] {
            let err = Cli::try_parse_from(["daef-gateway", flag, value])
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{flag}={value}: {err}");
        }
        let err = Cli::try_parse_from(["daef-gateway", "--store", "mysql"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory") && err.contains("postgres"), "{err}");
    }

    #[test]
    fn migrate_takes_the_dsn_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["daef-gateway", "migrate", "--postgres-dsn", "postgres://x"])
                .unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert_eq!(cli.store.postgres_dsn.as_deref(), Some("postgres://x"));
    }

    #[test]
    fn negative_admin_limits_disable_them() {
        let cli = Cli::try_parse_from(["daef-gateway", "--admin-requeue-rate-limit-per-min", "-1"])
            .unwrap();
        assert_eq!(cli.admin.admin_requeue_rate_limit_per_min, -1);
    }

    #[test]
    fn help_lists_every_variable() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "DAEF_LISTEN_ADDR",
            "DAEF_GATEWAY_PORT",
            "DAEF_MAX_BODY_BYTES",
            "DAEF_API_TOKENS",
            "DAEF_STORE",
            "DAEF_POSTGRES_DSN",
            "DAEF_QUEUE",
            "DAEF_REDIS_ADDR",
            "DAEF_REDIS_PASSWORD",
            "DAEF_REDIS_DB",
            "DAEF_REDIS_KEY",
            "DAEF_REDIS_DEADLETTER_MAX",
            "DAEF_LEASE_SECONDS",
            "DAEF_RECONCILE_INTERVAL_MS",
            "DAEF_ORPHAN_REQUEUE_SECONDS",
            "DAEF_IDEMPOTENCY_TTL_SECONDS",
            "DAEF_RETRY_BACKOFF_INITIAL_MS",
            "DAEF_RETRY_BACKOFF_MAX_MS",
            "DAEF_RETENTION_HOURS",
            "DAEF_ADMIN_REQUEUE_MAX_BATCH",
            "DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN",
            "DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD",
            "DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN",
            "DAEF_LOG",
            "DAEF_LOG_FORMAT",
        ] {
            assert!(help.contains(var), "--help does not mention {var}");
        }
    }
}
