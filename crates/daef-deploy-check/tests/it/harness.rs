//! Test plumbing: the gateway and worker binaries (built fresh by cargo), a gateway child
//! process on a port of its own, and a minimal HTTP/1.1 client.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Names a prebuilt `daef-gateway` to use instead of building one.
pub(crate) const GATEWAY_BIN_VAR: &str = "DAEF_GATEWAY_BIN";
/// Names a prebuilt `daef-worker` to use instead of building one.
pub(crate) const WORKER_BIN_VAR: &str = "DAEF_WORKER_BIN";

/// How long a gateway may take to start listening (a loaded 2-core machine is slow).
const STARTUP: Duration = Duration::from_secs(60);
/// Bound on every request, so a hung gateway fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of a gateway's log kept for the failure report.
const LOG_LINES: usize = 200;

/// The `daef-gateway` binary.
pub(crate) fn gateway_bin() -> PathBuf {
    binary(GATEWAY_BIN_VAR, "daef-gateway")
}

/// The `daef-worker` binary.
pub(crate) fn worker_bin() -> PathBuf {
    binary(WORKER_BIN_VAR, "daef-worker")
}

/// `$var` when set, else `name` from the target directory this test was built in, after
/// `cargo build -p daef-gateway -p daef-worker` with the same profile — a binary left over from
/// an older build would make every check here vouch for stale code. Cargo does nothing when
/// they are up to date.
fn binary(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return path;
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build_binaries)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn build_binaries() -> Result<PathBuf, String> {
    // This executable is target/<profile-dir>/deps/it-<hash>.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory from the test executable")?
        .to_path_buf();
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => return Err("unreadable profile directory".to_owned()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "daef-gateway",
            "-p",
            "daef-worker",
            "--profile",
            &profile,
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(daef_deploy_check::assets::workspace_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p daef-gateway -p daef-worker failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(profile_dir)
}

/// `<binary> --help`, and the variables it lists.
pub(crate) fn help_vars(bin: &Path) -> BTreeSet<String> {
    let output = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} --help: {e}", bin.display()));
    assert!(output.status.success(), "{} --help failed", bin.display());
    let vars = daef_deploy_check::help::env_vars(&String::from_utf8_lossy(&output.stdout));
    assert!(
        vars.len() >= 10,
        "{} --help lists only {vars:?}",
        bin.display()
    );
    vars
}

/// A command running `bin` with exactly `vars` as its `DAEF_*` environment: variables of the
/// test's own environment never reach it.
pub(crate) fn command(bin: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("DAEF_")) {
            command.env_remove(&name);
        }
    }
    command.envs(vars.iter().copied()).stdin(Stdio::null());
    command
}

/// A running gateway, SIGKILLed when dropped; its log is printed if the test is failing.
pub(crate) struct Gateway {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Gateway {
    /// Starts a gateway with `vars` on a free loopback port and waits until it listens.
    pub(crate) fn start(vars: &[(&str, &str)]) -> Gateway {
        let mut all: Vec<(&str, &str)> = vec![
            ("DAEF_LISTEN_ADDR", "127.0.0.1:0"),
            ("DAEF_LOG", "info,daef_http::access=warn"),
            ("DAEF_LOG_FORMAT", "json"),
        ];
        all.extend_from_slice(vars);
        let mut child = command(&gateway_bin(), &all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daef-gateway");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("daef-gateway listening")
                    && let Some(addr) = listening_addr(&line)
                {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap_or_else(PoisonError::into_inner);
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let addr = match rx.recv_timeout(STARTUP) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().unwrap_or_else(PoisonError::into_inner);
                panic!(
                    "daef-gateway did not start listening within {STARTUP:?}; its log:\n{}",
                    log.iter().cloned().collect::<Vec<_>>().join("\n")
                );
            }
        };
        Gateway { child, addr, log }
    }

    /// Sends a request; `token` goes in `Authorization: Bearer`.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        request(
            self.addr,
            method,
            path,
            token,
            body.map(Value::to_string).as_deref(),
        )
    }

    /// A request that must answer `status`; returns its JSON body (`null` when not JSON).
    #[track_caller]
    pub(crate) fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let response = self.call(method, path, token, body.as_ref());
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        serde_json::from_str(&response.body).unwrap_or(Value::Null)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("--- daef-gateway log (last {} lines) ---", log.len());
            for line in log.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// The `addr` field of the JSON "listening" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.pointer("/fields/addr")?.as_str()?.parse().ok()
}

/// An HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Header names (lower-case) and values.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (de-chunked), as text.
    pub(crate) body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body.as_bytes()).expect("write body");
    let started = Instant::now();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: reading the response after {:?}: {e}",
            started.elapsed()
        )
    });
    parse_response(&raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| "the body is not UTF-8")?,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".to_owned());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
#[track_caller]
pub(crate) fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
