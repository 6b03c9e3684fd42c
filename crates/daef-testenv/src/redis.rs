//! The Redis server for tests, and a key prefix per test.
//!
//! [`test`] resolves a server, in this order: `DAEF_TEST_REDIS_ADDR` (which must answer), else
//! `127.0.0.1:6379` when it answers `PING`, else a throwaway `redis-server` from `PATH` on a free
//! port ([`RedisServer`], shared by the tests of one process while any of them runs). It hands
//! each test a [`RedisTest`] with a key prefix of its own (`daef-test:<uuid>`), so tests run in
//! parallel against one server, and deletes the prefix's keys when the test drops it.
//!
//! Everything here is synchronous std code (a few lines of RESP over a `TcpStream`), so xtask
//! can start a server without an async runtime.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The variable naming the test server's `host:port`.
pub const ADDR_VAR: &str = "DAEF_TEST_REDIS_ADDR";

/// Where a local Redis usually listens.
pub const LOCAL_ADDR: &str = "127.0.0.1:6379";

/// The backend name `DAEF_TEST_REQUIRE` uses.
const BACKEND: &str = "redis";

/// How long a throwaway server may take to answer its first `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// Bound on every step of a test's own commands (connect, write, read).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---- RESP ----------------------------------------------------------------------------------

/// A Redis reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:1`
    Int(i64),
    /// A bulk string; `None` is nil.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` is nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for simple and bulk strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// A blocking connection speaking just enough RESP for test setup and cleanup.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) within a few seconds.
    pub fn open(addr: &str) -> io::Result<Self> {
        let resolved: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let mut last = io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to nothing"),
        );
        for target in resolved {
            match TcpStream::connect_timeout(&target, IO_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(IO_TIMEOUT))?;
                    stream.set_write_timeout(Some(IO_TIMEOUT))?;
                    return Ok(Self {
                        reader: BufReader::new(stream),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one command and reads its reply. A server-side error is [`Reply::Error`].
    pub fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        read_reply(&mut self.reader)
    }
}

fn protocol_error(what: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad RESP reply: {what}"),
    )
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| protocol_error("empty line"))?;
    let number = || rest.parse::<i64>().map_err(|_| protocol_error(&line));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data)?;
                data.truncate(len);
                Reply::Bulk(Some(data))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(len) => Reply::Array(Some(
                (0..len)
                    .map(|_| read_reply(reader))
                    .collect::<io::Result<_>>()?,
            )),
        },
        _ => return Err(protocol_error(&line)),
    })
}

/// Sends one command to `addr` on a fresh connection.
pub fn command(addr: &str, args: &[&str]) -> io::Result<Reply> {
    Connection::open(addr)?.call(args)
}

/// Whether `addr` answers `PING` with `PONG`; the error says why not.
pub fn ping(addr: &str) -> Result<(), String> {
    match command(addr, &["PING"]) {
        Ok(Reply::Simple(pong)) if pong == "PONG" => Ok(()),
        Ok(other) => Err(format!("{addr} answered PING with {other:?}")),
        Err(e) => Err(format!("{addr} does not answer: {e}")),
    }
}

/// Deletes every key matching `pattern` (a `SCAN MATCH` glob); returns how many went.
pub fn delete_matching(addr: &str, pattern: &str) -> io::Result<u64> {
    let mut conn = Connection::open(addr)?;
    let mut cursor = "0".to_owned();
    let mut deleted = 0;
    loop {
        let reply = conn.call(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])?;
        let Reply::Array(Some(parts)) = reply else {
            return Err(protocol_error(format!("SCAN answered {reply:?}")));
        };
        let [next, Reply::Array(Some(keys))] = parts.as_slice() else {
            return Err(protocol_error("SCAN reply is not [cursor, keys]"));
        };
        let keys: Vec<String> = keys.iter().filter_map(Reply::as_text).collect();
        if !keys.is_empty() {
            let mut args = vec!["DEL"];
            args.extend(keys.iter().map(String::as_str));
            deleted += conn.call(&args)?.as_int().unwrap_or(0).unsigned_abs();
        }
        cursor = next
            .as_text()
            .ok_or_else(|| protocol_error("SCAN cursor"))?;
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}

// ---- a throwaway server ---------------------------------------------------------------------

/// A `redis-server` child process on a free local port, with no persistence, in a temporary
/// directory; killed and its directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` from `PATH` and waits until it answers `PING`.
    pub fn start() -> io::Result<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "daef-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port: 0,
            dir,
        };
        // The free port is free when we look; another process may take it before the server
        // binds it, so try a few.
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (data is lost: there is no persistence). [`RedisServer::restart`]
    /// brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = self.dir.join("redis.log");
        let port = self.port.to_string();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = self.addr();
        let deadline = Instant::now() + STARTUP;
        loop {
            if ping(&addr).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.try_wait()?;
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(io::Error::other(format!(
                    "redis-server on port {port} did not answer ({}); log: {}",
                    exited.map_or("timed out".to_owned(), |status| status.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---- resolution and per-test prefixes -------------------------------------------------------

/// Where a resolved server came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `DAEF_TEST_REDIS_ADDR`.
    Env,
    /// A server already listening on `127.0.0.1:6379`.
    Local,
    /// A throwaway `redis-server` this process started.
    Spawned,
}

/// A server the tests of this process share.
#[derive(Debug)]
pub struct Target {
    addr: String,
    source: Source,
    /// Kept alive while any test holds the target.
    _server: Option<RedisServer>,
}

impl Target {
    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Where it came from.
    pub fn source(&self) -> Source {
        self.source
    }
}

/// Finds or starts the server (see the module docs); the error says why there is none. A
/// started server is shared with every caller while any of them holds it, and stops when the
/// last one drops it.
pub fn resolve() -> Result<Arc<Target>, String> {
    static SHARED: Mutex<Weak<Target>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(target) = shared.upgrade() {
        return Ok(target);
    }
    let target = Arc::new(find()?);
    *shared = Arc::downgrade(&target);
    Ok(target)
}

fn find() -> Result<Target, String> {
    if let Ok(addr) = std::env::var(ADDR_VAR) {
        // A server named explicitly must be there: falling back would test something else.
        ping(&addr).map_err(|e| format!("{ADDR_VAR}={addr}: {e}"))?;
        return Ok(Target {
            addr,
            source: Source::Env,
            _server: None,
        });
    }
    let local = match ping(LOCAL_ADDR) {
        Ok(()) => {
            return Ok(Target {
                addr: LOCAL_ADDR.to_owned(),
                source: Source::Local,
                _server: None,
            });
        }
        Err(e) => e,
    };
    match RedisServer::start() {
        Ok(server) => Ok(Target {
            addr: server.addr(),
            source: Source::Spawned,
            _server: Some(server),
        }),
        Err(e) => Err(format!(
            "{ADDR_VAR} is unset, {local}, and no redis-server could be started from PATH: {e}"
        )),
    }
}

/// One test's share of a server: a key prefix no other test uses. Dropping it deletes the
/// prefix's keys (best effort).
#[derive(Debug)]
pub struct RedisTest {
    target: Arc<Target>,
    key: String,
}

impl RedisTest {
    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        self.target.addr()
    }

    /// The test's key prefix, `daef-test:<uuid>`: use it as the queue's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The shared server.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Sends one command to the server.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        command(self.addr(), args)
    }
}

impl Drop for RedisTest {
    fn drop(&mut self) {
        if let Err(e) = delete_matching(self.addr(), &format!("{}:*", self.key)) {
            eprintln!(
                "could not delete the test's redis keys under {}: {e}",
                self.key
            );
        }
    }
}

/// A server and a fresh key prefix for the running test, or `None` when there is no server:
/// then the test is skipped with a message on stderr, or fails when `DAEF_TEST_REQUIRE` names
/// `redis`.
pub fn test() -> Option<RedisTest> {
    match resolve() {
        Ok(target) => Some(RedisTest {
            target,
            key: format!("daef-test:{}", uuid::Uuid::new_v4()),
        }),
        Err(why) => {
            crate::unavailable(BACKEND, &why);
            None
        }
    }
}

/// A throwaway server of the test's own, for tests that flush, restart or kill it (never the
/// shared one); `None`, with the same skip-or-fail rule as [`test`], when `redis-server` cannot
/// be started.
pub fn private_server() -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(server) => Some(server),
        Err(e) => {
            crate::unavailable(
                BACKEND,
                &format!("cannot start redis-server from PATH: {e}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_kind() {
        let wire = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let mut reader = BufReader::new(&wire[..]);
        let mut next = || read_reply(&mut reader).expect("reply");
        assert_eq!(next(), Reply::Simple("OK".into()));
        assert_eq!(next(), Reply::Error("ERR no".into()));
        assert_eq!(next(), Reply::Int(42));
        assert_eq!(next(), Reply::Bulk(Some(b"abc".to_vec())));
        assert_eq!(next(), Reply::Bulk(None));
        assert_eq!(
            next(),
            Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(Vec::new()))]))
        );
        assert_eq!(next(), Reply::Array(None));
    }

    #[test]
    fn rejects_garbage() {
        let mut reader = BufReader::new(&b"?what\r\n"[..]);
        assert!(read_reply(&mut reader).is_err());
    }

    #[test]
    fn prefix_keys_are_deleted_when_the_test_ends() {
        let Some(test) = test() else { return };
        let key = format!("{}:probe", test.key());
        assert_eq!(
            test.command(&["SET", &key, "1"]).expect("SET"),
            Reply::Simple("OK".into())
        );
        let addr = test.addr().to_owned();
        drop(test);
        assert_eq!(
            command(&addr, &["EXISTS", &key]).expect("EXISTS"),
            Reply::Int(0)
        );
    }

    #[test]
    fn a_private_server_restarts_empty_on_the_same_port() {
        let Some(mut server) = private_server() else {
            return;
        };
        let addr = server.addr();
        assert_eq!(
            command(&addr, &["SET", "k", "v"]).expect("SET"),
            Reply::Simple("OK".into())
        );
        server.stop();
        assert!(ping(&addr).is_err());
        server.restart().expect("restart");
        assert_eq!(server.addr(), addr);
        assert_eq!(
            command(&addr, &["EXISTS", "k"]).expect("EXISTS"),
            Reply::Int(0)
        );
        let dir = server.dir.clone();
        drop(server);
        assert!(ping(&addr).is_err());
        assert!(!dir.exists());
    }
}
