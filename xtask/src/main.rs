//! `cargo xtask <command>`: the project's automation, so that a local run matches CI.
//!
//! - `test`: finds Postgres and Redis (DAEF_TEST_POSTGRES_DSN / DAEF_TEST_REDIS_ADDR, else the
//!   local defaults, else throwaway servers it starts and removes), then runs the embedding
//!   example, the doc tests, and every test with cargo-nextest (its summary is the last line).
//! - `migrate`: applies Postgres migrations (`daef-gateway migrate`).
//! - `ci`: `cargo fmt --check`, clippy with `-D warnings`, then `test`.
//! - `bench [--quick]`: builds daef-bench and daef-gateway in release mode, measures the HTTP,
//!   Redis and Postgres ceilings and the gateway in memory and Postgres + Redis mode, and writes
//!   the table into docs/benchmarks.md (see `bench.rs`).

mod bench;

use std::env;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("migrate") => migrate(&args[1..]),
        Some("ci") => ci(),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test [nextest args…] | migrate | ci | bench [--quick] [--no-docs] [-- <daef-bench run options>]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(project_root());
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs the whole test suite against real backends.
/// Installs `console-test/`'s npm packages (playwright-core, which drives the machine's own
/// Chromium and downloads no browser) when npm is here and they are not. Without them the
/// console's browser tests skip, saying so, unless `DAEF_TEST_REQUIRE` names `browser`.
fn browser_test_deps() {
    let dir = project_root().join("console-test");
    if dir.join("node_modules/playwright-core").is_dir() {
        return;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir);
    if let Err(err) = run(npm, "npm ci in console-test/ (the console's browser test)") {
        eprintln!("xtask: {err}; the console's browser tests will be skipped");
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let services = Services::find_or_start()?;
    let envs = services.env.clone();

    let mut doc = cargo();
    doc.args(["test", "--doc", "--workspace", "--all-features"])
        .envs(envs.clone());
    run(doc, "cargo test --doc")?;

    let mut example = cargo();
    example.args([
        "run",
        "--quiet",
        "-p",
        "daef-core",
        "--example",
        "in_process",
    ]);
    run(
        example,
        "the embedding example (daef-core/examples/in_process.rs)",
    )?;
    browser_test_deps();
    // Process-level tests (system, end-to-end, deploy checks) run the workspace's binaries;
    // test builds do not produce them, so build them first.
    let mut bins = cargo();
    bins.args(["build", "--workspace", "--bins", "--all-features"]);
    run(bins, "cargo build --bins")?;

    let mut tests = cargo();
    if nextest_available() {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]);
    } else {
        // A fresh machine may have only the Rust toolchain; cargo's own runner works too.
        eprintln!("xtask: cargo-nextest not found (cargo install cargo-nextest); using cargo test");
        tests.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    }
    tests.args(extra).envs(envs.clone());
    run(tests, "the test suite")?;

    drop(services);
    Ok(())
}

fn nextest_available() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The backends the tests talk to: the ones named by `DAEF_TEST_*`, else the local defaults when
/// they answer, else throwaway servers started here (stopped and removed on drop).
struct Services {
    env: Vec<(String, String)>,
    _postgres: Option<daef_testenv::postgres::Throwaway>,
    _redis: Option<daef_testenv::redis::RedisServer>,
}

impl Services {
    fn find_or_start() -> Result<Self, String> {
        let mut env = Vec::new();
        let postgres = match env::var("DAEF_TEST_POSTGRES_DSN") {
            Ok(dsn) if !dsn.is_empty() => {
                eprintln!("xtask: Postgres from DAEF_TEST_POSTGRES_DSN");
                None
            }
            _ if reachable("127.0.0.1:5432") => {
                eprintln!("xtask: Postgres at 127.0.0.1:5432");
                None
            }
            _ => match daef_testenv::postgres::Throwaway::start() {
                Ok(cluster) => {
                    eprintln!(
                        "xtask: started a throwaway Postgres on port {}",
                        cluster.port()
                    );
                    env.push(("DAEF_TEST_POSTGRES_DSN".to_owned(), cluster.dsn()));
                    Some(cluster)
                }
                Err(err) => {
                    eprintln!(
                        "xtask: no Postgres (none running, none startable: {err}); Postgres tests skip unless DAEF_TEST_REQUIRE names postgres"
                    );
                    None
                }
            },
        };
        let redis = match env::var("DAEF_TEST_REDIS_ADDR") {
            Ok(addr) if !addr.is_empty() => {
                eprintln!("xtask: Redis from DAEF_TEST_REDIS_ADDR");
                None
            }
            _ if daef_testenv::redis::ping("127.0.0.1:6379").is_ok() => {
                eprintln!("xtask: Redis at 127.0.0.1:6379");
                None
            }
            _ => match daef_testenv::redis::RedisServer::start() {
                Ok(server) => {
                    eprintln!("xtask: started a throwaway Redis at {}", server.addr());
                    env.push(("DAEF_TEST_REDIS_ADDR".to_owned(), server.addr()));
                    Some(server)
                }
                Err(err) => {
                    eprintln!(
                        "xtask: no Redis (none running, none startable: {err}); Redis tests skip unless DAEF_TEST_REQUIRE names redis"
                    );
                    None
                }
            },
        };
        Ok(Self {
            env,
            _postgres: postgres,
            _redis: redis,
        })
    }
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Applies Postgres migrations through the gateway binary, so there is one runner.
fn migrate(extra: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "daef-gateway", "--", "migrate"])
        .args(extra);
    run(cmd, "daef-gateway migrate")
}

/// What CI runs: formatting, lints, then every test.
fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy, "cargo clippy -D warnings")?;
    test(&[])
}
