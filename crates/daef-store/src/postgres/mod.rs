//! The Postgres store (feature `postgres`): [`PostgresStore`] over a deadpool-postgres pool, and
//! the [`migrate`] runner for the embedded `migrations/*.sql`.
//!
//! Every state change is one transaction that locks the rows it decides on and changes them
//! only while they still hold what was decided on (`UPDATE … WHERE status = … `), never a
//! blind read-modify-write (DESIGN.md invariant 2); the rules are those of
//! `daef_core::transition`, so it behaves exactly like the memory store, which applies the same
//! functions under a lock. Submits, poll assignments and reports, the hot path, go through
//! `batch`: concurrent ones share a transaction and its commit, each with its own outcome.
//!
//! Locking protocol, so concurrent transactions never deadlock one another: a transaction that
//! locks a job row locks it before any of its task rows, job rows in id order and task rows in
//! `(job_id, task_id)` order. The reconciler's scans (`expire_leases`, `take_orphans`) use
//! `SKIP LOCKED`, so replicas running them at once split the work instead of waiting. Should
//! Postgres still pick a deadlock victim, the whole transaction is retried.

mod batch;
pub mod migrate;
#[cfg(test)]
mod plans;
mod rows;
mod sql;
mod store;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use daef_core::{Error, Result};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use self::batch::Batcher;
use tokio_postgres::error::SqlState;

/// The `backend` of every error this module returns.
const BACKEND: &str = "postgres";

/// Batches of submits in flight at once (see [`Batcher::start`]). One: while it commits, the
/// next batch gathers; measured against two, it makes batches twice as large and the store
/// faster (docs/benchmarks.md).
const SUBMIT_WRITERS: usize = 1;
/// Batches of reports and assignments in flight at once; one, for the same reason.
const UPDATE_WRITERS: usize = 1;

/// How a [`PostgresStore`] connects, beyond the DSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Use this schema (first in `search_path` on every connection) instead of the server's
    /// default; tests give each run its own. Letters, digits and `_` only.
    pub schema: Option<String>,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long to wait for a new connection, or for a free one when all are busy; also the
    /// TCP connect timeout unless the DSN sets `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The Postgres [`daef_core::ports::Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where it connects, for messages: never includes the password.
    target: Arc<str>,
    /// The batched write path of submits: they lock nothing, so they never wait behind the
    /// locks of reports and assignments.
    submits: Batcher,
    /// The batched write path of reports and assignments.
    updates: Batcher,
    /// Workers known to be registered. A worker is never deleted, so one seen once needs no
    /// query on each of its polls.
    known_workers: Arc<RwLock<HashSet<String>>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database named by `dsn` (a `postgres://` URL or `key=value` pairs;
    /// `sslmode=disable` is accepted), optionally inside `schema`. Fails fast, with a message that
    /// names the server but never the password, when the database cannot be reached.
    pub async fn connect(dsn: &str, schema: Option<&str>) -> Result<Self> {
        let options = PostgresOptions {
            schema: schema.map(str::to_owned),
            ..PostgresOptions::default()
        };
        Self::connect_with(dsn, &options).await
    }

    /// [`PostgresStore::connect`] with every option.
    pub async fn connect_with(dsn: &str, options: &PostgresOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config = dsn
            .parse()
            .map_err(|e| Error::invalid(format!("invalid Postgres DSN: {e}")))?;
        // Custom plans for every execution of a prepared statement: a generic plan made while a
        // table was small (or never analysed: autovacuum may be off) is kept until something
        // invalidates it, and a sequential scan chosen then would stay as the table grows.
        let mut session = vec!["-c plan_cache_mode=force_custom_plan".to_owned()];
        if let Some(schema) = &options.schema {
            if !is_plain_identifier(schema) {
                return Err(Error::invalid(format!(
                    "invalid Postgres schema name {schema:?}: use letters, digits and '_'"
                )));
            }
            session.push(format!("-c search_path={schema}"));
        }
        if let Some(existing) = config.get_options().filter(|o| !o.is_empty()) {
            session.insert(0, existing.to_owned());
        }
        config.options(session.join(" "));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("daef");
        }
        let target = describe(&config, options.schema.as_deref());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| Error::backend(BACKEND, e))?;
        let target: Arc<str> = Arc::from(target);
        let submits = Batcher::start(pool.clone(), Arc::clone(&target), SUBMIT_WRITERS);
        let updates = Batcher::start(pool.clone(), Arc::clone(&target), UPDATE_WRITERS);
        let store = Self {
            pool,
            target,
            submits,
            updates,
            known_workers: Arc::default(),
        };
        // Creating the pool never connects; one checkout makes a bad DSN fail here, at startup.
        drop(store.client().await?);
        Ok(store)
    }

    /// Where the store connects (`host:port/database as user`, plus the schema), without the
    /// password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Applies the migrations this database lacks (see [`migrate::run`]) and returns their file
    /// names.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let mut client = self.client().await?;
        let outcome = migrate::run(&mut client).await;
        if outcome.is_err() {
            // The runner unlocks its advisory lock on every path it controls; a connection that
            // failed mid-way may still hold it, so it is closed rather than reused.
            drop(Object::take(client));
        }
        outcome
    }

    /// A pooled connection; failing to get one means Postgres is unavailable.
    async fn client(&self) -> Result<Object> {
        checkout(&self.pool, &self.target).await
    }
}

/// A pooled connection to `target`; failing to get one means Postgres is unavailable.
async fn checkout(pool: &Pool, target: &str) -> Result<Object> {
    pool.get().await.map_err(|e| pool_error(target, e))
}

/// `host:port/dbname as user` from a parsed config; the password is never part of it.
fn describe(config: &tokio_postgres::Config, schema: Option<&str>) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let mut out = format!(
        "{}/{} as {}",
        if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)"),
    );
    if let Some(schema) = schema {
        out.push_str(&format!(" (schema {schema})"));
    }
    out
}

/// A schema name we can put into `-c search_path=…` without quoting.
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn pool_error(target: &str, err: PoolError) -> Error {
    Error::unavailable(
        BACKEND,
        format!("cannot get a connection to {target}: {err}"),
    )
}

/// Maps a driver error: lost or refused connections are [`Error::Unavailable`], anything else
/// [`Error::Backend`].
fn db_error(err: tokio_postgres::Error) -> Error {
    let connection_level = match err.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
        None => {
            err.is_closed()
                || std::error::Error::source(&err)
                    .is_some_and(|source| source.is::<std::io::Error>())
        }
    };
    if connection_level {
        Error::unavailable(BACKEND, err)
    } else {
        Error::backend(BACKEND, err)
    }
}

/// A driver error as text, including the server's message (its `Display` alone often says
/// only "db error").
fn error_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.to_string(),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// Postgres aborted the transaction to break a deadlock or a serialization conflict: running it
/// again is safe and will usually succeed.
fn is_transient(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_server_but_not_the_password() {
        let config: tokio_postgres::Config =
            "postgres://daef:s3cret@db.example:6543/daef?sslmode=disable"
                .parse()
                .expect("valid url");
        let text = describe(&config, Some("t1"));
        assert_eq!(text, "db.example:6543/daef as daef (schema t1)");
        assert!(!text.contains("s3cret"));
        let config: tokio_postgres::Config = "host=127.0.0.1 user=postgres password=pw dbname=test"
            .parse()
            .expect("valid key=value");
        assert_eq!(describe(&config, None), "127.0.0.1:5432/test as postgres");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_plain_identifier("daef_test_1"));
        assert!(is_plain_identifier("_x"));
        for bad in ["", "1abc", "Abc", "a-b", "a;drop", "a b", &"x".repeat(64)] {
            assert!(!is_plain_identifier(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_dsn_is_invalid_and_never_echoes_the_password() {
        let err = PostgresStore::connect("postgres://u:hunter2@host:notaport/db", None)
            .await
            .expect_err("bad port");
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_quickly() {
        // Port 1 on loopback refuses at once; nothing listens there.
        let options = PostgresOptions {
            connect_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        };
        let err = PostgresStore::connect_with(
            "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable",
            &options,
        )
        .await
        .expect_err("nothing listens on port 1");
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    backend: "postgres",
                    ..
                }
            ),
            "{err:?}"
        );
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(chain.contains("127.0.0.1:1/db as u"), "{chain}");
        assert!(!chain.contains("hunter2"), "{chain}");
    }
}
