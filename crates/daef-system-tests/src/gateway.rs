//! [`Gateway`]: one `daef-gateway` child process on a port of its own, SIGKILLed when its guard
//! drops, with the last lines of its stderr kept and printed when the test fails.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use daef_client::{Client, ClientConfig};
use daef_testenv::postgres::TestSchema;

/// Names a `daef-gateway` binary to use instead of the one beside the test executable.
pub const BIN_VAR: &str = "DAEF_GATEWAY_BIN";

/// Overrides the gateways' `DAEF_LOG` filter (e.g. `debug` while chasing a failure).
pub const LOG_VAR: &str = "DAEF_SYSTEM_TEST_LOG";

/// Startup and lifecycle logs, without one access-log line per request (thousands per test).
const DEFAULT_LOG: &str = "info,daef_http::access=warn";

/// How long a gateway may take to answer `/healthz` (a loaded 2-core machine is slow).
const STARTUP: Duration = Duration::from_secs(30);

/// Lines of stderr kept per gateway for the failure report.
const LOG_LINES: usize = 300;

/// Bound on every request the test clients make, so a hung gateway fails the test instead of
/// hanging it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `daef-gateway` binary: `$DAEF_GATEWAY_BIN`, else `target/<profile>/daef-gateway` beside
/// this test executable (which lives in `target/<profile>/deps/`). Panics, saying how to build
/// it, when it is missing.
pub fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BIN_VAR) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{BIN_VAR}={} is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let name = format!("daef-gateway{}", std::env::consts::EXE_SUFFIX);
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(&name));
    match candidate {
        Some(path) if path.is_file() => path,
        other => panic!(
            "the daef-gateway binary is not built (looked for {}): run `cargo build -p \
             daef-gateway` first (`cargo nextest run --workspace` and `cargo test --workspace` \
             build it), or set {BIN_VAR}",
            other.map_or_else(|| name.clone(), |p| p.display().to_string())
        ),
    }
}

/// The `DAEF_*` variables a gateway starts with. Variables of the test's own environment never
/// reach it: each gateway sees exactly what its test chose (plus `DAEF_GATEWAY_PORT`).
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    vars: BTreeMap<String, String>,
}

impl GatewayConfig {
    /// Timings short enough for a test to finish in seconds: 2 s leases, a reconcile pass every
    /// 200 ms, a dispatchable task re-enqueued after 1 s unclaimed, and failed attempts retried
    /// at once (no back-off). Memory store and queue
    /// until [`GatewayConfig::postgres`] / [`GatewayConfig::redis`] say otherwise.
    pub fn fast() -> Self {
        Self::bare()
            .var("DAEF_LEASE_SECONDS", "2")
            .var("DAEF_RECONCILE_INTERVAL_MS", "200")
            .var("DAEF_ORPHAN_REQUEUE_SECONDS", "1")
            // Failed attempts retried at once, unless a test is about back-off.
            .var("DAEF_RETRY_BACKOFF_INITIAL_MS", "0")
            .var(
                "DAEF_LOG",
                &std::env::var(LOG_VAR).unwrap_or_else(|_| DEFAULT_LOG.to_owned()),
            )
    }

    /// No variable at all: the gateway's documented defaults apply to whatever the caller
    /// does not set.
    pub fn bare() -> Self {
        Self::default()
    }

    /// Sets one variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// `DAEF_STORE=postgres` on the test's schema.
    pub fn postgres(self, schema: &TestSchema) -> Self {
        self.var("DAEF_STORE", "postgres")
            .var("DAEF_POSTGRES_DSN", &search_path_dsn(schema))
    }

    /// `DAEF_QUEUE=redis` at `addr`, with every key under `key`.
    pub fn redis(self, addr: &str, key: &str) -> Self {
        self.var("DAEF_QUEUE", "redis")
            .var("DAEF_REDIS_ADDR", addr)
            .var("DAEF_REDIS_KEY", key)
    }

    /// The value of one variable, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A command running the gateway binary with `args` and exactly these variables (for the
    /// `migrate` subcommand and the like; [`Gateway::start`] serves).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(gateway_binary());
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("DAEF_")) {
                command.env_remove(&name);
            }
        }
        command.args(args).envs(&self.vars).stdin(Stdio::null());
        command
    }
}

/// The schema's DSN with `search_path` set to it, in the DSN's own form (URL or key=value), so
/// a gateway that only takes `DAEF_POSTGRES_DSN` works in the test's schema.
pub fn search_path_dsn(schema: &TestSchema) -> String {
    let dsn = schema.dsn.trim();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let separator = if dsn.contains('?') { '&' } else { '?' };
        format!(
            "{dsn}{separator}options=-c%20search_path%3D{}",
            schema.schema
        )
    } else {
        schema.dsn_with_search_path()
    }
}

/// A running (or deliberately killed) gateway process. Dropping it SIGKILLs the process; when
/// the test is failing, the last lines of every incarnation's stderr are printed first.
#[derive(Debug)]
pub struct Gateway {
    name: String,
    config: GatewayConfig,
    port: u16,
    child: Option<Child>,
    /// Copies the current incarnation's stderr into `log`; ends when the process dies.
    reader: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<VecDeque<String>>>,
    starts: u32,
}

impl Gateway {
    /// Starts a gateway on a free port and waits until it answers `/healthz`. Panics (printing
    /// its stderr) when it exits or does not answer in time.
    pub async fn start(name: &str, config: GatewayConfig) -> Gateway {
        let mut last = String::new();
        // The free port is free when we look; another process may bind it before the gateway
        // does, so a "cannot listen" exit is retried on another port.
        for _ in 0..3 {
            let mut gateway = Gateway {
                name: name.to_owned(),
                config: config.clone(),
                port: free_port(),
                child: None,
                reader: None,
                log: Arc::new(Mutex::new(VecDeque::new())),
                starts: 0,
            };
            match gateway.launch().await {
                Ok(()) => return gateway,
                Err(why) if gateway.log_tail().contains("cannot listen") => {
                    last = why;
                    gateway.discard_log();
                }
                Err(why) => panic!("{name}: {why}"),
            }
        }
        panic!("{name}: no free port worked: {last}")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`, for a raw socket ([`crate::raw`]).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The name given at start (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// A client without a token.
    pub fn client(&self) -> Client {
        self.client_with(None)
    }

    /// A client presenting `token`.
    pub fn client_with(&self, token: Option<&str>) -> Client {
        Client::new(ClientConfig {
            base_url: self.url(),
            token: token.map(str::to_owned),
            timeout: CLIENT_TIMEOUT,
            ..ClientConfig::default()
        })
        .expect("a client for a local gateway")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the process (no graceful shutdown: whatever it was doing is cut off) and reaps
    /// it. Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // The pipe closed with the process: the reader ends after its last line.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            self.note(&format!("--- {}#{} SIGKILLed ---", self.name, self.starts));
        }
    }

    /// Kills the process if it runs and starts a new one with the same configuration on the
    /// same port, waiting until it answers. Panics when it does not come up.
    pub async fn restart(&mut self) {
        self.kill();
        let mut tries = 0;
        loop {
            match self.launch().await {
                Ok(()) => return,
                // An outgoing connection of any process may hold the port as its ephemeral
                // local port for a moment; the clients need this port, so wait it out.
                Err(why) if tries < 10 && self.last_incarnation_could_not_listen() => {
                    tries += 1;
                    self.note(&format!(
                        "--- port {} busy ({why}); retrying ---",
                        self.port
                    ));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(why) => panic!("{}: restart failed: {why}", self.name),
            }
        }
    }

    fn last_incarnation_could_not_listen(&self) -> bool {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let tag = format!("[{}#{}]", self.name, self.starts);
        log.iter()
            .rev()
            .take_while(|line| !line.starts_with("--- "))
            .any(|line| line.starts_with(&tag) && line.contains("cannot listen"))
    }

    /// Panics when the process exited without being killed by this guard (a crash).
    pub fn assert_alive(&mut self) {
        let name = self.name.clone();
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{name} exited on its own ({status})");
        }
    }

    /// The stderr lines kept so far, oldest first.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn discard_log(&self) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn note(&self, line: &str) {
        push_line(&self.log, line.to_owned());
    }

    /// Spawns the process and waits for `/healthz`; the error says why it did not come up.
    async fn launch(&mut self) -> Result<(), String> {
        let mut command = self.config.command(&[]);
        command
            .env("DAEF_GATEWAY_PORT", self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", gateway_binary().display()))?;
        self.starts += 1;
        let tag = format!("{}#{}", self.name, self.starts);
        self.note(&format!(
            "--- {tag} started, pid {}, port {} ---",
            child.id(),
            self.port
        ));
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            let tag = tag.clone();
            // Drained continuously so the gateway never blocks on a full pipe; ends at EOF,
            // when the process dies.
            self.reader = Some(std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    push_line(&log, format!("[{tag}] {line}"));
                }
            }));
        }
        self.child = Some(child);
        self.wait_healthy(&tag).await
    }

    async fn wait_healthy(&mut self, tag: &str) -> Result<(), String> {
        let client = Client::new(ClientConfig {
            base_url: self.url(),
            timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                // Its last words (why it exited) must be in the log before anyone reads it.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Err(format!("{tag} exited during startup ({status})"));
            }
            if client.health().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{tag} did not answer /healthz within {STARTUP:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== stderr of {} (last {LOG_LINES} lines) =====\n{}\n===== end of {} =====",
                self.name,
                self.log_tail(),
                self.name
            );
        }
    }
}

fn push_line(log: &Mutex<VecDeque<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    if log.len() == LOG_LINES {
        log.pop_front();
    }
    log.push_back(line);
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}
