//! Support for the wire-level tests (`seed_protocol`, `bad_input`): the three backend pairs a
//! gateway can run on, each with the test's own schema and key prefix, and a [`Session`] that
//! sends raw requests to one gateway, keeps every check that failed (request and response
//! printed) and every 5xx it saw, and reports them all at the end, so that one run shows every
//! broken answer rather than the first.

use std::fmt;
use std::time::{Duration, Instant};

use daef_system_tests::raw::{self, Request, Response};
use daef_system_tests::{Gateway, GatewayConfig};
use daef_testenv::postgres::{TestSchema, fresh_schema};
use daef_testenv::redis::RedisTest;

/// Which store and queue a gateway runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pair {
    /// Memory store, memory queue (the gateway's defaults).
    Memory,
    /// Postgres store, memory queue.
    PostgresMemory,
    /// Postgres store, Redis queue.
    PostgresRedis,
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pair::Memory => "memory+memory",
            Pair::PostgresMemory => "postgres+memory",
            Pair::PostgresRedis => "postgres+redis",
        })
    }
}

/// A gateway on one backend pair, with the backends it was given (held until the gateway is
/// gone: fields drop in order, so the process dies before its schema and keys are removed).
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) gateway: Gateway,
    _redis: Option<RedisTest>,
    _schema: Option<TestSchema>,
}

impl Env {
    /// Starts a gateway named `name` on `pair` with `config` plus the pair's backends, or
    /// `None` (the test is skipped, saying why) when a backend it needs is missing and
    /// `DAEF_TEST_REQUIRE` does not name it.
    pub(crate) async fn start(pair: Pair, name: &str, config: GatewayConfig) -> Option<Env> {
        let (config, schema, redis) = match pair {
            Pair::Memory => (config, None, None),
            Pair::PostgresMemory => {
                let schema = fresh_schema().await?;
                (config.postgres(&schema), Some(schema), None)
            }
            Pair::PostgresRedis => {
                let schema = fresh_schema().await?;
                let redis = daef_testenv::redis::test()?;
                (
                    config.postgres(&schema).redis(redis.addr(), redis.key()),
                    Some(schema),
                    Some(redis),
                )
            }
        };
        let gateway = Gateway::start(&format!("{name}-{pair}"), config).await;
        Some(Env {
            gateway,
            _redis: redis,
            _schema: schema,
        })
    }

    /// A session against this gateway.
    pub(crate) fn session(&self) -> Session {
        Session {
            addr: self.gateway.addr(),
            label: self.gateway.name().to_owned(),
            failures: Vec::new(),
            server_errors: Vec::new(),
            sent: 0,
        }
    }
}

/// A request and the response it got.
#[derive(Clone, Debug)]
pub(crate) struct Exchange {
    pub(crate) request: Request,
    pub(crate) response: Response,
}

impl Exchange {
    pub(crate) fn status(&self) -> u16 {
        self.response.status
    }

    /// The body as JSON, `null` when it is not JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        self.response.json().unwrap_or_default()
    }

    /// The `error` message of the body, empty when there is none.
    pub(crate) fn error(&self) -> String {
        self.response.error_message().unwrap_or_default()
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "    > {}\n    < {}",
            indent(&self.request.to_string()),
            indent(&self.response.to_string())
        )
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n      ")
}

/// Raw requests to one gateway, and the checks that failed so far.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) addr: String,
    label: String,
    failures: Vec<String>,
    server_errors: Vec<String>,
    sent: usize,
}

impl Session {
    /// Sends `request` on a connection of its own. A response that never came (the gateway
    /// reset, closed or hung) ends the test at once, with every failure so far.
    pub(crate) async fn send(&mut self, request: Request) -> Exchange {
        self.sent += 1;
        match raw::once(&self.addr, &request).await {
            Ok(response) => {
                let exchange = Exchange { request, response };
                self.saw(&exchange);
                exchange
            }
            Err(err) => self.abort(format!("no response: {err}\n    > {request}")),
        }
    }

    /// Records a 5xx (never acceptable, whatever the test expected).
    pub(crate) fn saw(&mut self, exchange: &Exchange) {
        if exchange.status() >= 500 {
            self.server_errors.push(exchange.to_string());
        }
    }

    /// Records a failed check unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            self.failures.push(what());
        }
        ok
    }

    /// Checks the status; on failure records `what`, the expected status and the exchange.
    pub(crate) fn expect_status(&mut self, exchange: &Exchange, status: u16, what: &str) -> bool {
        self.check(exchange.status() == status, || {
            format!(
                "{what}: expected {status}, got {}\n{exchange}",
                exchange.status()
            )
        })
    }

    /// Checks the status and that the `error` message contains every one of `words`.
    pub(crate) fn expect_error(
        &mut self,
        exchange: &Exchange,
        status: u16,
        words: &[&str],
        what: &str,
    ) -> bool {
        let message = exchange.error();
        let missing: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !message.to_lowercase().contains(&w.to_lowercase()))
            .collect();
        self.check(exchange.status() == status && missing.is_empty(), || {
            format!(
                "{what}: expected {status} with an error naming {words:?}, got {} (missing \
                 {missing:?})\n{exchange}",
                exchange.status()
            )
        })
    }

    /// Like [`Session::expect_status`], but later steps depend on it: on failure the test ends
    /// now, with every failure so far.
    pub(crate) fn require_status(&mut self, exchange: &Exchange, status: u16, what: &str) {
        if !self.expect_status(exchange, status, what) {
            self.abort(format!("{what} is needed for the rest of the test"));
        }
    }

    /// Ends the test now with `why` and every failure so far.
    pub(crate) fn abort(&mut self, why: String) -> ! {
        self.failures.push(format!("ABORTED: {why}"));
        panic!("{}", self.report());
    }

    /// Fails the test when a check failed or a response was a 5xx.
    pub(crate) fn finish(self) {
        if !self.failures.is_empty() || !self.server_errors.is_empty() {
            panic!("{}", self.report());
        }
        eprintln!("{}: {} requests, every check passed", self.label, self.sent);
    }

    fn report(&self) -> String {
        let mut out = format!(
            "{}: {} check(s) failed and {} response(s) were 5xx (of {} requests)",
            self.label,
            self.failures.len(),
            self.server_errors.len(),
            self.sent
        );
        for (i, failure) in self.failures.iter().enumerate() {
            out.push_str(&format!("\n\n{}. {failure}", i + 1));
        }
        if !self.server_errors.is_empty() {
            out.push_str("\n\nEvery 5xx seen:");
            for exchange in &self.server_errors {
                out.push_str(&format!("\n{exchange}"));
            }
        }
        out
    }

    /// Sends `request` until `done` finds what it waits for (`Ok(Some)`), for at most
    /// `timeout`; `Ok(None)` means not yet, `Err` that waiting is pointless (the test ends).
    pub(crate) async fn poll_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        request: Request,
        mut done: impl FnMut(&Exchange) -> Result<Option<T>, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let exchange = self.send(request.clone()).await;
            match done(&exchange) {
                Ok(Some(value)) => return value,
                Ok(None) if Instant::now() >= deadline => {
                    self.abort(format!("{what}: not done after {timeout:?}\n{exchange}"))
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(why) => self.abort(format!("{what}: {why}\n{exchange}")),
            }
        }
    }
}

/// Now, in whole seconds since the Unix epoch (the seed worker's `timestamp_unix`).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The JSON text of a string value, quotes included.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
