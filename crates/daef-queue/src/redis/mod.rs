//! The Redis queue and rate limiter, on `fred`.
//!
//! Key layout under the configured key `<key>` (`DAEF_REDIS_KEY`, default `daef:tasks`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<key>:pending` | list | interactive references (`job_id\|task_id`), oldest first |
//! | `<key>:pending:batch` | list | batch references, oldest first |
//! | `<key>:claims` | hash | receipt → `i\|job_id\|task_id` or `b\|…` (priority tag + reference) |
//! | `<key>:visibility` | sorted set | receipt, scored by visible-at (Unix ms) |
//! | `<key>:nacks` | hash | reference → nacks since it was last acked or dead-lettered |
//! | `<key>:dead` | list | dead references, oldest first (`dead_letter_count`) |
//! | `<key>:dead:members` | set | the members of `<key>:dead`, so dead-lettering is idempotent without a list scan |
//! | `<key>:ratelimit:<name>` | sorted set | uses of one rate-limiter key, scored by time (Unix µs) |
//!
//! Claim, ack, nack, requeue-expired, dead-letter, requeue-dead and the rate-limit check are
//! each one Lua script (`scripts/*.lua` beside this module) sent with `EVALSHA`; enqueues from
//! concurrent callers are sent together, one pipelined `RPUSH` per priority (`send_enqueues`). Only the admin requeue-dead scans a list (`LREM` on the dead
//! list). The adapter talks to one server (no Cluster or Sentinel).

mod rate;
mod scripts;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use daef_core::model::{Priority, TaskRef};
use daef_core::ports::{Claim, Dispatch, NackOutcome, Queue};
use daef_core::{Error, Result, Timestamp};
use fred::prelude::{
    Client, ClientLike, Config, ConnectionConfig, ErrorKind, EventInterface, ListInterface,
    PerformanceConfig, ReconnectPolicy, ServerConfig,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};

pub use rate::RedisRateLimiter;
use scripts::{Op, Scripts};

const BACKEND: &str = "redis";

/// How to reach Redis and where the queue lives in it (`DAEF_REDIS_*`).
#[derive(Clone)]
pub struct RedisConfig {
    /// `host:port` (`[v6addr]:port` for IPv6).
    pub addr: String,
    /// Sent with `AUTH` when set; never logged or printed.
    pub password: Option<String>,
    /// The logical database `SELECT`ed on every (re)connection.
    pub db: u8,
    /// Prefix of every key the queue and the rate limiter use.
    pub key: String,
    /// A reference nacked this many times moves to the dead list; `0` means never.
    pub deadletter_max: u32,
    /// Bound on opening a connection (TCP, `AUTH`, `SELECT`), at startup and on reconnects.
    pub connect_timeout: Duration,
    /// Bound on every command, so callers get [`Error::Unavailable`] quickly when Redis hangs.
    pub command_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:6379".to_owned(),
            password: None,
            db: 0,
            key: "daef:tasks".to_owned(),
            deadletter_max: 5,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(3),
        }
    }
}

impl fmt::Debug for RedisConfig {
    /// The password shows only as set or not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("key", &self.key)
            .field("deadletter_max", &self.deadletter_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// Splits `host:port` (or `[v6]:port`). An IPv6 host keeps its brackets: the client's
/// resolver joins host and port with a colon.
fn parse_addr(addr: &str) -> Result<(String, u16)> {
    let bad = || Error::invalid(format!("redis address `{addr}` is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let bracketed = host.len() > 2 && host.starts_with('[') && host.ends_with(']');
    let needs_brackets = host.contains([':', '[', ']']);
    if host.is_empty() || (needs_brackets && !bracketed) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Maps a driver error: connection trouble is [`Error::Unavailable`] (retrying later may
/// work), anything else [`Error::Backend`].
pub(crate) fn map_err(e: fred::error::Error) -> Error {
    let transient_reply = ["LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN"]
        .iter()
        .any(|prefix| e.details().starts_with(prefix));
    // fred reports these two as `Unknown`, but both mean the connection went away under the
    // command: it found no connection to write to (dropped a moment before the health watcher
    // noticed), or it would have to be resent and `max_command_attempts` is 1.
    let lost_connection = e.kind() == &ErrorKind::Unknown
        && ["Failed to route command", "Too many failed write attempts"]
            .iter()
            .any(|prefix| e.details().starts_with(prefix));
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Routing
        | ErrorKind::Auth => Error::unavailable(BACKEND, e),
        _ if transient_reply || lost_connection => Error::unavailable(BACKEND, e),
        _ => Error::backend(BACKEND, e),
    }
}

/// One client shared by a queue and its rate limiter, with the scripts loaded.
pub(crate) struct Connection {
    client: Client,
    addr: String,
    scripts: Scripts,
    /// False from the moment the client reports a connection error until it reports a new
    /// connection. The client's own state stays `Connected` for a moment after a drop (until
    /// its first reconnect attempt), and a command sent then would wait for its timeout.
    healthy: Arc<AtomicBool>,
}

/// Keeps `healthy` in step with the client's connection events until the client quits.
fn watch_health(client: &Client, healthy: Arc<AtomicBool>) {
    let mut errors = client.error_rx();
    let mut connects = client.reconnect_rx();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // Errors first: a drop and the reconnect after it may both be waiting, and
                // the reconnect must win.
                biased;
                error = errors.recv() => match error {
                    Ok(_) | Err(RecvError::Lagged(_)) => healthy.store(false, Ordering::Release),
                    Err(RecvError::Closed) => return,
                },
                connect = connects.recv() => match connect {
                    Ok(_) | Err(RecvError::Lagged(_)) => healthy.store(true, Ordering::Release),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
}

impl Connection {
    /// Connects, within `connect_timeout`, and loads the scripts. The client then reconnects
    /// by itself for as long as it lives.
    async fn open(cfg: &RedisConfig) -> Result<Arc<Self>> {
        let (host, port) = parse_addr(&cfg.addr)?;
        let addr = cfg.addr.clone();
        // Never the password: errors name the address only.
        let failed = |e: &dyn fmt::Display| {
            Error::unavailable(BACKEND, format!("cannot connect to redis at {addr}: {e}"))
        };
        let config = Config {
            // The first connection's error goes to the caller (startup fails fast); later
            // drops are retried by the reconnect policy.
            fail_fast: true,
            password: cfg.password.clone(),
            database: (cfg.db != 0).then_some(cfg.db),
            server: ServerConfig::new_centralized(host, port),
            ..Config::default()
        };
        let perf = PerformanceConfig {
            default_command_timeout: cfg.command_timeout,
            ..PerformanceConfig::default()
        };
        let mut connection = ConnectionConfig {
            connection_timeout: cfg.connect_timeout,
            internal_command_timeout: cfg.connect_timeout,
            // A command whose connection dropped is not resent: a script that ran but whose
            // reply was lost must not run twice (a claim would pop more references).
            max_command_attempts: 1,
            ..ConnectionConfig::default()
        };
        // A connection that stops answering (a paused server, a silent network drop) is
        // closed and reconnected instead of stalling every command until its timeout.
        connection.unresponsive.max_timeout =
            Some(cfg.command_timeout.max(Duration::from_secs(1)) * 2);
        connection.unresponsive.interval = Duration::from_millis(500);
        // Unlimited attempts, 100 ms doubling to at most 2 s between them.
        let policy = ReconnectPolicy::new_exponential(0, 100, 2_000, 2);
        let client = Client::new(config, Some(perf), Some(connection), Some(policy));
        // Subscribed before connecting, so no event is missed.
        let healthy = Arc::new(AtomicBool::new(false));
        watch_health(&client, Arc::clone(&healthy));

        let connect = async {
            client.init().await.map_err(|e| failed(&e))?;
            Scripts::load(&client).await.map_err(|e| failed(&e))
        };
        // `connection_timeout` bounds each step; this bounds the whole, DNS included.
        let budget = cfg.connect_timeout + cfg.command_timeout;
        let scripts = match tokio::time::timeout(budget, connect).await {
            Ok(Ok(scripts)) => scripts,
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(e);
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err(failed(&format!("no answer within {budget:?}")));
            }
        };
        healthy.store(true, Ordering::Release);
        Ok(Arc::new(Self {
            client,
            addr: cfg.addr.clone(),
            scripts,
            healthy,
        }))
    }

    /// Fails at once while the client is reconnecting, instead of queueing the command until
    /// Redis is back.
    fn ensure_connected(&self) -> Result<()> {
        if self.client.is_connected() && self.healthy.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::unavailable(
                BACKEND,
                format!("not connected to redis at {} (reconnecting)", self.addr),
            ))
        }
    }

    async fn ping(&self) -> Result<()> {
        self.ensure_connected()?;
        let _: String = self.client.ping(None).await.map_err(map_err)?;
        Ok(())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("connected", &self.client.is_connected())
            .finish()
    }
}

impl Drop for Connection {
    /// Stops the client's reconnect loop, which would otherwise outlive the queue.
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// The queue's key names.
#[derive(Clone, Debug)]
struct Keys {
    pending: String,
    pending_batch: String,
    claims: String,
    visibility: String,
    nacks: String,
    dead: String,
    dead_members: String,
}

impl Keys {
    fn new(key: &str) -> Self {
        Self {
            pending: format!("{key}:pending"),
            pending_batch: format!("{key}:pending:batch"),
            claims: format!("{key}:claims"),
            visibility: format!("{key}:visibility"),
            nacks: format!("{key}:nacks"),
            dead: format!("{key}:dead"),
            dead_members: format!("{key}:dead:members"),
        }
    }

    fn pending(&self, priority: Priority) -> &str {
        match priority {
            Priority::Interactive => &self.pending,
            Priority::Batch => &self.pending_batch,
        }
    }
}

/// The one-letter priority tag stored with a claim and passed to scripts.
fn tag(priority: Priority) -> &'static str {
    match priority {
        Priority::Interactive => "i",
        Priority::Batch => "b",
    }
}

fn untag(tag: &str) -> Option<Priority> {
    match tag {
        "i" => Some(Priority::Interactive),
        "b" => Some(Priority::Batch),
        _ => None,
    }
}

/// Checks the parts of the config both the queue and the limiter use.
fn validate(cfg: &RedisConfig) -> Result<()> {
    if cfg.key.is_empty() {
        return Err(Error::invalid("redis key prefix must not be empty"));
    }
    parse_addr(&cfg.addr).map(|_| ())
}

/// A [`Queue`] in Redis, shared by every gateway replica that uses the same server and key.
///
/// The client reconnects by itself after Redis restarts; meanwhile every operation (and
/// [`Queue::ping`]) fails at once with [`Error::Unavailable`], and a command that gets no
/// answer fails after `command_timeout`.
pub struct RedisQueue {
    conn: Arc<Connection>,
    key: String,
    keys: Keys,
    deadletter_max: u32,
    /// Receipts acked and not yet sent to Redis. The next claim carries them in its own script
    /// call, so a poll costs one script call (its claims and the previous polls' acks); every
    /// other script that reads claims or nack counts sends them first. A late ack is safe: a
    /// claim that returns after its visibility lapsed is refused by the store and dropped.
    unsent_acks: Mutex<Vec<String>>,
    /// The enqueue sender: concurrent enqueues go out together (see [`send_enqueues`]).
    enqueues: mpsc::UnboundedSender<PendingEnqueue>,
}

/// One enqueue call waiting to be sent, and where its outcome goes.
type PendingEnqueue = (
    Vec<Dispatch>,
    oneshot::Sender<std::result::Result<(), fred::error::Error>>,
);

/// Most enqueue calls one pipeline carries.
const MAX_ENQUEUES_PER_SEND: usize = 1_000;

/// Sends enqueues for as long as the queue lives. When free it takes every enqueue call
/// waiting (at most [`MAX_ENQUEUES_PER_SEND`]) and sends their references as one pipeline, one
/// `RPUSH` per priority, in arrival order. There is no timer: an enqueue alone goes at once;
/// under load, the enqueues of the submits and reports that finished during one send share the
/// next. Each caller gets the pipeline's outcome.
async fn send_enqueues(
    mut waiting: mpsc::UnboundedReceiver<PendingEnqueue>,
    conn: Arc<Connection>,
    keys: Keys,
) {
    while let Some(first) = waiting.recv().await {
        let mut calls = vec![first];
        while calls.len() < MAX_ENQUEUES_PER_SEND {
            match waiting.try_recv() {
                Ok(call) => calls.push(call),
                Err(_) => break,
            }
        }
        let outcome = push_pending(&conn, &keys, calls.iter().flat_map(|(refs, _)| refs)).await;
        for (_, answer) in calls {
            let _ = answer.send(outcome.clone());
        }
    }
}

/// One round trip: one `RPUSH` per priority that has references, pipelined.
async fn push_pending<'a>(
    conn: &Connection,
    keys: &Keys,
    tasks: impl Iterator<Item = &'a Dispatch> + Clone,
) -> std::result::Result<(), fred::error::Error> {
    let pipeline = conn.client.pipeline();
    let mut pushes = 0;
    for priority in Priority::ALL {
        let refs: Vec<String> = tasks
            .clone()
            .filter(|(_, p)| *p == priority)
            .map(|(task, _)| task.encode())
            .collect();
        if !refs.is_empty() {
            let () = pipeline.rpush(keys.pending(priority), refs).await?;
            pushes += 1;
        }
    }
    if pushes > 0 {
        let _: Vec<i64> = pipeline.all().await?;
    }
    Ok(())
}

impl RedisQueue {
    /// Connects to Redis (failing within about `connect_timeout` with an error naming the
    /// address) and loads the scripts.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        validate(cfg)?;
        let conn = Connection::open(cfg).await?;
        let keys = Keys::new(&cfg.key);
        let (enqueues, waiting) = mpsc::unbounded_channel();
        tokio::spawn(send_enqueues(waiting, Arc::clone(&conn), keys.clone()));
        Ok(Self {
            conn,
            key: cfg.key.clone(),
            keys,
            deadletter_max: cfg.deadletter_max,
            unsent_acks: Mutex::new(Vec::new()),
            enqueues,
        })
    }

    /// A rate limiter on this queue's connection, keyed under the same prefix.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::with_connection(Arc::clone(&self.conn), &self.key)
    }

    /// Closes the connection (after commands in flight finish, and the acks not yet sent) and
    /// stops reconnecting; every later operation fails. Also happens, without waiting, when the
    /// last user drops it.
    pub async fn close(&self) {
        if let Err(err) = self.send_acks().await {
            tracing::warn!(error = %err, "acks not sent before closing; their claims will return and be dropped");
        }
        let _ = self.conn.client.quit().await;
    }

    fn take_unsent_acks(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .unsent_acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Puts receipts whose script call failed back, to go with the next one.
    fn keep_unsent_acks(&self, receipts: Vec<String>) {
        let mut unsent = self
            .unsent_acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if unsent.len() < MAX_UNSENT_ACKS {
            unsent.extend(receipts);
        }
    }

    /// Sends the acks not yet sent, on their own.
    async fn send_acks(&self) -> Result<()> {
        let receipts = self.take_unsent_acks();
        if receipts.is_empty() {
            return Ok(());
        }
        let sent: Result<i64> = self
            .conn
            .eval(
                Op::Ack,
                vec![
                    self.keys.claims.clone(),
                    self.keys.visibility.clone(),
                    self.keys.nacks.clone(),
                ],
                receipts.clone(),
            )
            .await;
        if let Err(err) = sent {
            self.keep_unsent_acks(receipts);
            return Err(err);
        }
        Ok(())
    }

    fn claim_keys(&self) -> Vec<String> {
        vec![
            self.keys.pending.clone(),
            self.keys.pending_batch.clone(),
            self.keys.claims.clone(),
            self.keys.visibility.clone(),
        ]
    }
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("addr", &self.conn.addr)
            .field("key", &self.key)
            .field("deadletter_max", &self.deadletter_max)
            .finish()
    }
}

/// Acks held back until a claim carries them, at most; more are sent on their own.
const ACKS_PER_SEND: usize = 1_000;

/// Receipts kept for a retry after a failed send, at most (their claims return and are dropped
/// by the store anyway).
const MAX_UNSENT_ACKS: usize = 100_000;

/// Clamps a count for a script argument.
fn count_arg(n: usize) -> String {
    i64::try_from(n).unwrap_or(i64::MAX).to_string()
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        self.conn.ping().await
    }

    async fn enqueue(&self, tasks: &[Dispatch]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        self.conn.ensure_connected()?;
        let (answer, outcome) = oneshot::channel();
        let gone = || Error::unavailable(BACKEND, "the enqueue sender stopped");
        self.enqueues
            .send((tasks.to_vec(), answer))
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?.map_err(map_err)
    }

    async fn claim(&self, max: usize, now: Timestamp, visibility: Duration) -> Result<Vec<Claim>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let visible_at = now.plus(visibility).unix_millis();
        let base = uuid::Uuid::new_v4().to_string();
        let acks = self.take_unsent_acks();
        let mut args = vec![visible_at.to_string(), count_arg(max), base];
        args.extend(acks.iter().cloned());
        let mut keys = self.claim_keys();
        keys.push(self.keys.nacks.clone());
        let flat: Vec<String> = match self.conn.eval(Op::Claim, keys, args).await {
            Ok(flat) => flat,
            Err(err) => {
                self.keep_unsent_acks(acks);
                return Err(err);
            }
        };
        let mut claims = Vec::with_capacity(flat.len() / 3);
        let mut malformed = Vec::new();
        for triple in flat.chunks(3) {
            let [receipt, tag, encoded] = triple else {
                return Err(Error::backend(
                    BACKEND,
                    "claim script returned a partial claim",
                ));
            };
            match (untag(tag), TaskRef::decode(encoded)) {
                (Some(priority), Some(task)) => claims.push(Claim {
                    receipt: receipt.clone(),
                    task,
                    priority,
                }),
                _ => {
                    tracing::warn!(reference = %encoded, "dropping a malformed queue reference");
                    malformed.push(receipt.clone());
                }
            }
        }
        if !malformed.is_empty() {
            // Settle them now, or they would come back after every visibility timeout.
            self.ack(&malformed).await?;
        }
        Ok(claims)
    }

    async fn ack(&self, receipts: &[String]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        // Held back or not, an ack while Redis is known to be down fails like every operation.
        self.conn.ensure_connected()?;
        let due = {
            let mut unsent = self
                .unsent_acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            unsent.extend_from_slice(receipts);
            unsent.len() >= ACKS_PER_SEND
        };
        if due {
            self.send_acks().await?;
        }
        Ok(())
    }

    async fn nack(&self, claim: &Claim) -> Result<NackOutcome> {
        self.send_acks().await?;
        let outcome: i64 = self
            .conn
            .eval(
                Op::Nack,
                vec![
                    self.keys.pending.clone(),
                    self.keys.pending_batch.clone(),
                    self.keys.claims.clone(),
                    self.keys.visibility.clone(),
                    self.keys.nacks.clone(),
                    self.keys.dead.clone(),
                    self.keys.dead_members.clone(),
                ],
                vec![claim.receipt.clone(), self.deadletter_max.to_string()],
            )
            .await?;
        // 0 is an unknown receipt (acked already, or lapsed and pending again): nothing
        // changed, and like the memory queue it reports the reference as still queued.
        Ok(if outcome == 2 {
            NackOutcome::DeadLettered
        } else {
            NackOutcome::Requeued
        })
    }

    async fn requeue_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        if limit == 0 {
            return Ok(0);
        }
        self.send_acks().await?;
        let returned: i64 = self
            .conn
            .eval(
                Op::RequeueExpired,
                self.claim_keys(),
                vec![now.unix_millis().to_string(), count_arg(limit)],
            )
            .await?;
        Ok(u64::try_from(returned).unwrap_or(0))
    }

    async fn dead_letter(&self, task: &TaskRef) -> Result<()> {
        self.send_acks().await?;
        let _: i64 = self
            .conn
            .eval(
                Op::DeadLetter,
                vec![
                    self.keys.nacks.clone(),
                    self.keys.dead.clone(),
                    self.keys.dead_members.clone(),
                ],
                vec![task.encode()],
            )
            .await?;
        Ok(())
    }

    async fn requeue_dead(&self, dead: &[TaskRef], enqueue: &[Dispatch]) -> Result<()> {
        if dead.is_empty() && enqueue.is_empty() {
            return Ok(());
        }
        self.send_acks().await?;
        let mut args = Vec::with_capacity(1 + dead.len() + 2 * enqueue.len());
        args.push(dead.len().to_string());
        args.extend(dead.iter().map(TaskRef::encode));
        for (task, priority) in enqueue {
            args.push(tag(*priority).to_owned());
            args.push(task.encode());
        }
        let _: i64 = self
            .conn
            .eval(
                Op::RequeueDead,
                vec![
                    self.keys.pending.clone(),
                    self.keys.pending_batch.clone(),
                    self.keys.nacks.clone(),
                    self.keys.dead.clone(),
                    self.keys.dead_members.clone(),
                ],
                args,
            )
            .await?;
        Ok(())
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        self.conn.ensure_connected()?;
        self.conn
            .client
            .llen(&self.keys.dead)
            .await
            .map_err(map_err)
    }

    async fn pending_count(&self) -> Result<u64> {
        self.conn.ensure_connected()?;
        let pipeline = self.conn.client.pipeline();
        for priority in Priority::ALL {
            let () = pipeline
                .llen(self.keys.pending(priority))
                .await
                .map_err(map_err)?;
        }
        let lens: Vec<u64> = pipeline.all().await.map_err(map_err)?;
        Ok(lens.iter().sum())
    }
}
