//! A local `daef-gateway` for a benchmark run: memory mode, or Postgres + Redis in a schema and
//! key prefix of its own that are removed afterwards.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use daef_client::Client;
use daef_store::PostgresStore;
use daef_store::postgres::PostgresOptions;
use fred::prelude::{ClientLike, Config as RedisClientConfig, KeysInterface};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Which backends the gateway runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// `DAEF_STORE=memory`, `DAEF_QUEUE=memory`.
    Memory,
    /// `DAEF_STORE=postgres`, `DAEF_QUEUE=redis`.
    Postgres,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Postgres => "postgres+redis",
        }
    }
}

/// Where the backends of Postgres mode are.
#[derive(Clone, Debug)]
pub(crate) struct Backends {
    pub(crate) postgres_dsn: String,
    pub(crate) redis_addr: String,
}

/// The Postgres schema and Redis key prefix one run owns.
#[derive(Clone, Debug)]
pub(crate) struct Namespace {
    pub(crate) schema: String,
    pub(crate) redis_key: String,
}

impl Namespace {
    /// A fresh name: `daef_bench_<unix seconds>_<pid>`.
    pub(crate) fn fresh() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = format!("{secs}_{}", std::process::id());
        Self {
            schema: format!("daef_bench_{id}"),
            redis_key: format!("daef-bench:{id}"),
        }
    }
}

/// `dsn` with `-c <setting>` options added, in whichever DSN form it is written.
pub(crate) fn dsn_with_options(dsn: &str, settings: &[String]) -> anyhow::Result<String> {
    let dsn = dsn.trim();
    if dsn.contains("options=") {
        bail!("the Postgres DSN must not set `options` (the benchmark sets search_path itself)");
    }
    let options: Vec<String> = settings.iter().map(|s| format!("-c {s}")).collect();
    let options = options.join(" ");
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let encoded = options
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace('=', "%3D");
        let sep = if dsn.contains('?') { '&' } else { '?' };
        Ok(format!("{dsn}{sep}options={encoded}"))
    } else {
        Ok(format!("{dsn} options='{options}'"))
    }
}

/// Creates `schema` and applies the migrations in it.
pub(crate) async fn create_schema(dsn: &str, schema: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .context("connecting to Postgres (--postgres-dsn / DAEF_BENCH_POSTGRES_DSN)")?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .with_context(|| format!("creating schema {schema}"))?;
    drop(client);
    let _ = conn.await;
    let store = PostgresStore::connect_with(
        dsn,
        &PostgresOptions {
            schema: Some(schema.to_owned()),
            max_connections: 1,
            ..PostgresOptions::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrating {schema}: {e}"))?;
    Ok(())
}

/// Drops `schema` and everything in it.
/// `ANALYZE` of the benchmark schema's tables.
pub(crate) async fn analyze_schema(dsn: &str, schema: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("ANALYZE {schema}.jobs, {schema}.tasks"))
        .await
        .with_context(|| format!("ANALYZE in schema {schema}"))?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

pub(crate) async fn drop_schema(dsn: &str, schema: &str) -> anyhow::Result<()> {
    if !schema.starts_with("daef_bench_") {
        bail!("refusing to drop schema {schema}: not one of the benchmark's");
    }
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// Deletes every Redis key under `prefix:`.
pub(crate) async fn delete_redis_keys(addr: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = fred::prelude::Client::new(
        RedisClientConfig::from_url(&format!("redis://{addr}"))?,
        None,
        None,
        None,
    );
    client.init().await?;
    let mut deleted = 0;
    let mut cursor = "0".to_owned();
    loop {
        let (next, keys): (String, Vec<String>) = client
            .custom(
                fred::cmd!("SCAN"),
                vec![
                    cursor.clone(),
                    "MATCH".into(),
                    format!("{prefix}:*"),
                    "COUNT".into(),
                    "1000".into(),
                ],
            )
            .await?;
        if !keys.is_empty() {
            let n: u64 = client.del(keys).await?;
            deleted += n;
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let _ = client.quit().await;
    Ok(deleted)
}

/// A gateway process this run started; killed if dropped without [`LocalGateway::stop`].
#[derive(Debug)]
pub(crate) struct LocalGateway {
    child: Child,
    pid: u32,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    /// `VmRSS`: resident now, KiB.
    pub(crate) rss_kib: u64,
    /// `VmHWM`: the peak, KiB.
    pub(crate) peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub(crate) fn rss_of(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status(&status))
}

fn parse_status(status: &str) -> Rss {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Rss {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    }
}

/// The `daef-gateway` next to this executable (both are built into the same target directory).
pub(crate) fn default_gateway_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("daef-gateway")))
        .unwrap_or_else(|| PathBuf::from("daef-gateway"))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener.local_addr()?.port())
}

impl LocalGateway {
    /// Starts `bin` in `mode` (Postgres mode in `namespace`, whose schema must exist) on a free
    /// local port, logging at `log_level` to `log_dir`, and waits until it answers.
    pub(crate) async fn start(
        bin: &Path,
        mode: Mode,
        backends: &Backends,
        namespace: Option<&Namespace>,
        log_level: &str,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!(
                "{} does not exist: build it (cargo build --release -p daef-gateway) or pass --gateway-bin",
                bin.display()
            );
        }
        let port = free_port()?;
        std::fs::create_dir_all(log_dir)?;
        let log = log_dir.join(format!("gateway-{}-{port}.log", mode.as_str()));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        // Only what this run sets: an operator's own DAEF_* settings must not leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DAEF_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("DAEF_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DAEF_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        match mode {
            Mode::Memory => {
                cmd.env("DAEF_STORE", "memory").env("DAEF_QUEUE", "memory");
            }
            Mode::Postgres => {
                let ns = namespace.context("Postgres mode needs a schema")?;
                let dsn = dsn_with_options(
                    &backends.postgres_dsn,
                    &[format!("search_path={}", ns.schema)],
                )?;
                cmd.env("DAEF_STORE", "postgres")
                    .env("DAEF_QUEUE", "redis")
                    .env("DAEF_POSTGRES_DSN", dsn)
                    .env("DAEF_REDIS_ADDR", &backends.redis_addr)
                    .env("DAEF_REDIS_KEY", &ns.redis_key);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        let mut gateway = Self {
            child,
            pid,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = Client::connect(&self.url, None)?;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the gateway exited ({status}) before answering; see {}",
                    self.log.display()
                );
            }
            if client.ready().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!(
                    "the gateway did not become ready within 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gateway's resident memory now.
    pub(crate) fn rss(&self) -> anyhow::Result<Rss> {
        rss_of(self.pid)
    }

    /// Stops the gateway (SIGTERM, then SIGKILL after 15 s).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        if kill(pid, Signal::SIGTERM).is_ok()
            && tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_ok()
        {
            return Ok(());
        }
        self.child.kill().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_into_either_dsn_form() {
        let settings = ["search_path=daef_bench_1".to_owned()];
        assert_eq!(
            dsn_with_options("postgres://u@h:5432/db", &settings).unwrap(),
            "postgres://u@h:5432/db?options=-c%20search_path%3Ddaef_bench_1"
        );
        assert_eq!(
            dsn_with_options("postgres://u@h/db?sslmode=disable", &settings).unwrap(),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ddaef_bench_1"
        );
        assert_eq!(
            dsn_with_options("host=h user=u", &settings).unwrap(),
            "host=h user=u options='-c search_path=daef_bench_1'"
        );
        assert!(dsn_with_options("host=h options='-c x=y'", &settings).is_err());
    }

    #[test]
    fn url_options_parse_back() {
        let dsn = dsn_with_options(
            "postgres://u@h/db",
            &[
                "search_path=s1".to_owned(),
                "synchronous_commit=off".to_owned(),
            ],
        )
        .unwrap();
        let config: tokio_postgres::Config = dsn.parse().unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c search_path=s1 -c synchronous_commit=off")
        );
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tdaef-gateway\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(
            parse_status(status),
            Rss {
                rss_kib: 102_400,
                peak_kib: 204_800
            }
        );
    }
}
