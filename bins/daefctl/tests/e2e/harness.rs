//! Real processes for end-to-end tests: the gateway and workers as child processes (killed when
//! their guard drops, their output kept in a log shown when a test fails), daefctl run to
//! completion, and a scratch directory per test.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daef_client::{Client, ClientConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A binary built next to this test (`target/<profile>/<name>`).
pub(crate) fn bin(name: &str) -> PathBuf {
    if name == "daefctl" {
        return PathBuf::from(env!("CARGO_BIN_EXE_daefctl"));
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p {name}`; `cargo nextest run --workspace` builds every binary)",
        path.display()
    );
    path
}

/// A port nothing listens on right now (another process may take it before we do: callers
/// retry on a failed bind).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("address").port()
}

/// A scratch directory for one test, removed afterwards unless the test failed.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new(test: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "daef-e2e-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes an executable shell script and returns its path.
    pub(crate) fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod script");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A child process that is killed (SIGKILL) when dropped; its stdout and stderr go to a log
/// whose tail is printed if the test is failing.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `program` with only the `DAEF_*` variables given (none inherited from the test's
    /// environment, so a developer's shell cannot change what is tested).
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        vars: &[(&str, String)],
        log: PathBuf,
    ) -> Self {
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (key, _) in std::env::vars() {
            if key.starts_with("DAEF_") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in vars {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// Sends a signal (SIGTERM to ask it to stop, SIGKILL to kill it mid-work).
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// Whether it has exited, without waiting.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for it to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its output so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(40));
        }
    }
}

/// A gateway process on a loopback port.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Held so the process lives exactly as long as this value.
    _process: Proc,
    pub(crate) url: String,
}

/// Settings that make lease expiry a matter of seconds.
pub(crate) fn fast_leases() -> Vec<(&'static str, String)> {
    vec![
        ("DAEF_LEASE_SECONDS", "2".into()),
        ("DAEF_RECONCILE_INTERVAL_MS", "200".into()),
        ("DAEF_ORPHAN_REQUEUE_SECONDS", "2".into()),
    ]
}

impl Gateway {
    /// Starts a gateway with these variables and waits until it answers; panics if it cannot.
    pub(crate) async fn start(scratch: &Scratch, vars: &[(&str, String)]) -> Self {
        match Self::try_start(scratch, vars).await {
            Ok(gw) => gw,
            Err(log) => panic!("the gateway did not start:\n{log}"),
        }
    }

    /// Starts a gateway; `Err` with its output when it exits instead of serving.
    pub(crate) async fn try_start(
        scratch: &Scratch,
        vars: &[(&str, String)],
    ) -> Result<Self, String> {
        for attempt in 0..5 {
            let port = free_port();
            let mut all = vec![
                ("DAEF_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("DAEF_LOG", "info".to_owned()),
            ];
            all.extend(vars.iter().cloned());
            let log = scratch.path(&format!("gateway-{port}.log"));
            let mut proc = Proc::spawn("daef-gateway", &bin("daef-gateway"), &[], &all, log);
            let url = format!("http://127.0.0.1:{port}");
            let client = Client::new(ClientConfig {
                base_url: url.clone(),
                timeout: Duration::from_secs(2),
                ..ClientConfig::default()
            })
            .expect("client");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if client.health().await.is_ok() {
                    return Ok(Self {
                        _process: proc,
                        url,
                    });
                }
                if proc.exited().is_some() {
                    let log = proc.log();
                    // Someone took the port between our probe and the gateway's bind: try another.
                    if log.contains("cannot listen") && attempt < 4 {
                        break;
                    }
                    return Err(log);
                }
                if Instant::now() > deadline {
                    return Err(format!("no answer on {url} within 20s\n{}", proc.log()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err("no free port".to_owned())
    }

    /// Where it listens (plain HTTP).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("the gateway's URL is http://<ip>:<port>")
    }

    /// A client for assertions.
    pub(crate) fn client(&self, token: Option<&str>) -> Client {
        Client::connect(&self.url, token).expect("client")
    }

    /// Starts a worker against this gateway. Its output goes under the scratch directory.
    pub(crate) fn worker(&self, scratch: &Scratch, id: &str, vars: &[(&str, String)]) -> Proc {
        let mut all = vec![
            ("DAEF_CONTROL_PLANE_URL", self.url.clone()),
            ("DAEF_WORKER_ID", id.to_owned()),
            (
                "DAEF_OUTPUT_DIR",
                scratch.path(&format!("out-{id}")).display().to_string(),
            ),
            ("DAEF_POLL_INTERVAL_MS", "100".to_owned()),
            ("DAEF_LOG", "info".to_owned()),
        ];
        all.extend(vars.iter().cloned());
        Proc::spawn(
            id,
            &bin("daef-worker"),
            &[],
            &all,
            scratch.path(&format!("worker-{id}.log")),
        )
    }

    /// Runs daefctl against this gateway to completion.
    pub(crate) async fn daefctl(&self, token: Option<&str>, args: &[&str]) -> Out {
        daefctl_at(&self.url, token, args).await
    }

    /// Submits a `batch` job of the explicit DAG `tasks` (JSON) with `daefctl submit --tasks`
    /// and `extra` arguments, and returns its id.
    pub(crate) async fn submit_tasks(
        &self,
        scratch: &Scratch,
        tasks: &str,
        extra: &[&str],
    ) -> daef_core::model::JobId {
        let file = scratch.path("tasks.json");
        std::fs::write(&file, tasks).expect("tasks file");
        let path = file.to_str().expect("path");
        let mut args = vec!["submit", "--type", "batch", "--tasks", path];
        args.extend_from_slice(extra);
        let out = self.daefctl(None, &args).await.code(0);
        daef_core::model::JobId::new(out.stdout.trim())
    }
}

/// Runs daefctl against `url` to completion.
pub(crate) async fn daefctl_at(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    daefctl_with(url, token, &[], args).await
}

/// Runs daefctl against `url` to completion, with these `DAEF_*` variables too.
pub(crate) async fn daefctl_with(
    url: &str,
    token: Option<&str>,
    vars: &[(&str, String)],
    args: &[&str],
) -> Out {
    let mut cmd = tokio::process::Command::new(bin("daefctl"));
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("DAEF_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("DAEF_CONTROL_PLANE_URL", url);
    if let Some(token) = token {
        cmd.env("DAEF_API_TOKEN", token);
    }
    for (key, value) in vars {
        cmd.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("daefctl {args:?} did not finish within 120s"))
        .expect("run daefctl");
    Out {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What a daefctl run printed and how it exited.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) args: Vec<String>,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    /// Checks the exit code; returns self for more checks.
    #[track_caller]
    pub(crate) fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code, expected,
            "daefctl {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "daefctl {:?}: stdout is not JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
