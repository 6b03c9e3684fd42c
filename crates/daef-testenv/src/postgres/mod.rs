//! Postgres for tests: which server to use, a fresh schema per test, and (for xtask) a
//! throwaway cluster.
//!
//! The server is `$DAEF_TEST_POSTGRES_DSN` when set, else a trust-auth server on
//! `127.0.0.1:5432` (user `postgres`, else the current user; database `postgres`, else the
//! user's own), else none. `cargo xtask` starts a [`Throwaway`] cluster when neither exists and
//! passes its DSN down in `DAEF_TEST_POSTGRES_DSN`.

mod throwaway;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

pub use throwaway::Throwaway;

/// The variable naming the server tests use.
pub const DSN_VAR: &str = "DAEF_TEST_POSTGRES_DSN";

/// Keep test schemas after the test instead of dropping them (for debugging).
pub const KEEP_VAR: &str = "DAEF_TEST_KEEP_SCHEMAS";

/// Every schema this crate creates starts with it; nothing else is ever dropped.
const SCHEMA_PREFIX: &str = "daef_test_";

/// Schemas older than this were left by a killed run; the first test of a run drops them.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

static SERVER: OnceCell<Result<String, String>> = OnceCell::const_new();
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A schema of its own for one test, in the test server's database.
///
/// Dropped (with everything in it) when this value is dropped, unless the test is panicking or
/// `DAEF_TEST_KEEP_SCHEMAS` is set: then its name is printed and it stays for inspection (a
/// later run removes it once it is stale).
#[derive(Debug)]
pub struct TestSchema {
    /// The server's DSN (without the schema: pass [`TestSchema::schema`] alongside it).
    pub dsn: String,
    /// The schema's name: `daef_test_<unix seconds>_<pid>_<n>`.
    pub schema: String,
}

impl TestSchema {
    /// The DSN with `search_path` set to the schema, for clients that only take a DSN.
    pub fn dsn_with_search_path(&self) -> String {
        format!("{} options='-c search_path={}'", self.dsn, self.schema)
    }

    /// Drops the schema now and reports failure (the `Drop` impl only tries).
    pub async fn drop_schema(&self) -> Result<(), tokio_postgres::Error> {
        drop_schema(&self.dsn, &self.schema).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_VAR).is_some() {
            eprintln!("kept Postgres schema {} for inspection", self.schema);
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime does the network round trip.
        let dsn = self.dsn.clone();
        let schema = self.schema.clone();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_schema(&dsn, &schema))
                .map_err(|e| e.to_string())
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop test schema {}: {err}", self.schema),
            Err(_) => eprintln!(
                "could not drop test schema {}: the cleanup panicked",
                self.schema
            ),
        }
    }
}

/// The DSN of the server tests should use, or why there is none. Resolved once per process.
///
/// Panics when `DAEF_TEST_POSTGRES_DSN` is set but does not connect: a server named
/// explicitly must not be skipped silently.
pub async fn server() -> Result<String, String> {
    SERVER
        .get_or_init(|| async {
            let found = resolve().await;
            if let Ok(dsn) = &found {
                sweep_stale_schemas(dsn).await;
            }
            found
        })
        .await
        .clone()
}

/// A fresh, empty schema for the calling test, or `None` (after saying why on stderr) when no
/// server is available and `DAEF_TEST_REQUIRE` does not name `postgres`.
pub async fn fresh_schema() -> Option<TestSchema> {
    let dsn = match server().await {
        Ok(dsn) => dsn,
        Err(why) => {
            crate::unavailable("postgres", &why);
            return None;
        }
    };
    let schema = format!(
        "{SCHEMA_PREFIX}{}_{}_{}",
        unix_seconds(),
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
    );
    let client = connect(&dsn)
        .await
        .unwrap_or_else(|e| panic!("test Postgres at {} stopped answering: {e}", redact(&dsn)));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create test schema {schema}: {e}"));
    Some(TestSchema { dsn, schema })
}

/// Connects to `dsn` without TLS, driving the connection on the current runtime.
pub async fn connect(dsn: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = dsn.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PROBE_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error then is of no interest to a test.
        let _ = connection.await;
    });
    Ok(client)
}

async fn resolve() -> Result<String, String> {
    if let Ok(dsn) = std::env::var(DSN_VAR) {
        return match probe(&dsn).await {
            Ok(()) => Ok(dsn),
            Err(err) => panic!(
                "{DSN_VAR} is set to {} but does not connect: {err}",
                redact(&dsn)
            ),
        };
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u != "postgres");
    let mut candidates = vec![("postgres".to_owned(), "postgres".to_owned())];
    if let Some(user) = user {
        candidates.push((user.clone(), "postgres".to_owned()));
        candidates.push((user.clone(), user));
    }
    let mut last_error = String::new();
    for (user, dbname) in candidates {
        let dsn = format!("host=127.0.0.1 port=5432 user={user} dbname={dbname}");
        match probe(&dsn).await {
            Ok(()) => return Ok(dsn),
            Err(err) => last_error = format!("{dsn}: {err}"),
        }
    }
    Err(format!(
        "{DSN_VAR} is not set and no trust-auth server answers on 127.0.0.1:5432 ({last_error})"
    ))
}

async fn probe(dsn: &str) -> Result<(), String> {
    let client = connect(dsn).await.map_err(|e| error_text(&e))?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| error_text(&e))?;
    Ok(())
}

async fn drop_schema(dsn: &str, schema: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect(dsn).await?;
    // A test that left a transaction open holds locks; give up rather than hang.
    client
        .batch_execute(&format!(
            "SET lock_timeout = '5s'; SET client_min_messages = warning; \
             DROP SCHEMA IF EXISTS {schema} CASCADE"
        ))
        .await
}

/// Drops `daef_test_*` schemas old enough to have been left by a killed run.
async fn sweep_stale_schemas(dsn: &str) {
    let Ok(client) = connect(dsn).await else {
        return;
    };
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&SCHEMA_PREFIX],
        )
        .await
    else {
        return;
    };
    let cutoff = unix_seconds().saturating_sub(STALE_AFTER.as_secs());
    for row in rows {
        let Ok(name) = row.try_get::<_, String>(0) else {
            continue;
        };
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs < cutoff) && is_plain(&name) {
            let _ = drop_schema(dsn, &name).await;
        }
    }
}

fn is_plain(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A driver error with its cause (the bare `Display` often says only "db error").
fn error_text(err: &tokio_postgres::Error) -> String {
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// The DSN with any password replaced, for messages.
pub fn redact(dsn: &str) -> String {
    match dsn.parse::<tokio_postgres::Config>() {
        Ok(config) if config.get_password().is_some() => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "host={} port={} user={} dbname={} password=…",
                hosts.join(","),
                config.get_ports().first().copied().unwrap_or(5432),
                config.get_user().unwrap_or(""),
                config.get_dbname().unwrap_or(""),
            )
        }
        Ok(_) => dsn.to_owned(),
        Err(_) => "(unparsable DSN)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        let plain = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
        assert_eq!(redact(plain), plain);
        let secret = redact("postgres://daef:s3cret@db:6000/daef?sslmode=disable");
        assert!(!secret.contains("s3cret"), "{secret}");
        assert!(
            secret.contains("host=db port=6000 user=daef dbname=daef"),
            "{secret}"
        );
    }

    #[tokio::test]
    async fn fresh_schemas_are_distinct_empty_and_dropped_afterwards() {
        let Some(first) = fresh_schema().await else {
            return;
        };
        let Some(second) = fresh_schema().await else {
            return;
        };
        assert_ne!(first.schema, second.schema);
        assert!(first.schema.starts_with(SCHEMA_PREFIX));

        let client = connect(&first.dsn_with_search_path())
            .await
            .expect("connect");
        let row = client
            .query_one("SELECT current_schema()", &[])
            .await
            .expect("current_schema");
        assert_eq!(
            row.get::<_, Option<String>>(0).as_deref(),
            Some(first.schema.as_str())
        );
        client
            .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            .await
            .expect("the schema is writable");
        let exists = "SELECT count(*) FROM pg_namespace WHERE nspname = $1";
        let name = first.schema.clone();
        drop(first);
        let n: i64 = client
            .query_one(exists, &[&name])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "schema {name} is dropped with its TestSchema");
        let n: i64 = client
            .query_one(exists, &[&second.schema])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 1);
    }
}
