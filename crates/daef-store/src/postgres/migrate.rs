//! The migration runner: applies the embedded `migrations/NNNN_name.sql` files a database lacks.
//!
//! - Each applied file is recorded by name in `schema_migrations(version, applied_at)`, with a
//!   `checksum` column the runner adds when a database (one migrated by the seed system) lacks it.
//!   A row recorded without the `.sql` suffix names the same file; a row without a checksum gets
//!   one filled in rather than being treated as changed.
//! - Unapplied files run in name order, each in its own transaction together with its record, so
//!   a failure leaves the database at the last good file.
//! - A Postgres advisory lock (one per schema) is held for the whole run, so replicas that start
//!   together apply every file once: the others wait, then find nothing left to do.
//! - An applied file whose text changed is refused with an error naming it: migrations are
//!   forward-only, a change goes into a new file.

use std::collections::HashMap;

use daef_core::{Error, Result};
use tokio_postgres::Client;

use super::{BACKEND, db_error, error_text};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// First key of the runner's `pg_advisory_lock(key1, key2)`; the second is derived from the
/// schema, so runs on different schemas of one database do not wait for each other.
const LOCK_NAMESPACE: i32 = 0x0DAE_F001;

/// One migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The file name, `NNNN_name.sql`; the key in `schema_migrations`.
    pub name: &'static str,
    /// The file's SQL.
    pub sql: &'static str,
}

impl Migration {
    /// Hex blake3 of the SQL text, recorded when the file is applied.
    pub fn checksum(&self) -> String {
        blake3::hash(self.sql.as_bytes()).to_hex().to_string()
    }

    /// The name without `.sql`, as the seed system may have recorded it.
    pub fn stem(&self) -> &'static str {
        self.name.strip_suffix(".sql").unwrap_or(self.name)
    }
}

/// Every migration embedded in this build, in the order they apply.
pub fn embedded() -> Vec<Migration> {
    MIGRATIONS
        .iter()
        .map(|&(name, sql)| Migration { name, sql })
        .collect()
}

/// Applies every embedded migration the database lacks; returns the names of the files applied
/// (empty when it was up to date).
///
/// Works in the connection's current schema (the first existing one of its `search_path`).
pub async fn run(client: &mut Client) -> Result<Vec<String>> {
    apply(client, &embedded()).await
}

/// [`run`] with an explicit list of migrations, which must be in name order. Tools and tests
/// use it; the gateway uses [`run`].
pub async fn apply(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    let schema: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(db_error)?
        .try_get(0)
        .map_err(db_error)?;
    let schema = schema.ok_or_else(|| {
        Error::invalid("cannot migrate: no schema of the connection's search_path exists")
    })?;
    let key = schema_lock_key(&schema);
    client
        .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_NAMESPACE, &key])
        .await
        .map_err(db_error)?;
    let outcome = apply_locked(client, migrations).await;
    // A failed unlock means the session is broken; its end releases the lock anyway.
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_NAMESPACE, &key],
        )
        .await;
    let applied = outcome?;
    unlocked.map_err(db_error)?;
    Ok(applied)
}

async fn apply_locked(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    TEXT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT;
             RESET client_min_messages;",
        )
        .await
        .map_err(db_error)?;
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(db_error)?;
    let mut recorded: HashMap<String, Option<String>> = HashMap::with_capacity(rows.len());
    for row in rows {
        recorded.insert(
            row.try_get(0).map_err(db_error)?,
            row.try_get(1).map_err(db_error)?,
        );
    }

    let mut applied = Vec::new();
    for migration in migrations {
        let checksum = migration.checksum();
        let version = [migration.name, migration.stem()]
            .into_iter()
            .find(|v| recorded.contains_key(*v));
        match version.map(|v| (v, &recorded[v])) {
            Some((_, Some(previous))) if *previous == checksum => {}
            Some((_, Some(previous))) => {
                return Err(Error::conflict(format!(
                    "migration {} was changed after it was applied (recorded checksum {previous}, \
                     file now {checksum}); migrations are forward-only: restore the file and put \
                     the change in a new one",
                    migration.name
                )));
            }
            Some((version, None)) => {
                client
                    .execute(
                        "UPDATE schema_migrations SET checksum = $2 \
                         WHERE version = $1 AND checksum IS NULL",
                        &[&version, &checksum],
                    )
                    .await
                    .map_err(db_error)?;
            }
            None => {
                apply_one(client, migration, &checksum).await?;
                applied.push(migration.name.to_owned());
            }
        }
    }
    let known: Vec<&str> = migrations.iter().flat_map(|m| [m.name, m.stem()]).collect();
    for version in recorded.keys().filter(|v| !known.contains(&v.as_str())) {
        // A newer build applied it (a rolling upgrade); this build simply does not know it.
        tracing::warn!(
            version,
            "schema_migrations records a migration this build does not have"
        );
    }
    Ok(applied)
}

async fn apply_one(client: &mut Client, migration: &Migration, checksum: &str) -> Result<()> {
    let failed = |err: tokio_postgres::Error| {
        let detail = error_text(&err);
        match db_error(err) {
            unavailable @ Error::Unavailable { .. } => unavailable,
            _ => Error::backend(
                BACKEND,
                format!("migration {} failed: {detail}", migration.name),
            ),
        }
    };
    let tx = client.transaction().await.map_err(db_error)?;
    // Defensive files say "already exists, skipping" a lot; that is expected, not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(failed)?;
    tx.batch_execute(migration.sql).await.map_err(failed)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, applied_at, checksum) VALUES ($1, now(), $2)",
        &[&migration.name, &checksum],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    tracing::info!(migration = migration.name, "applied migration");
    Ok(())
}

fn schema_lock_key(schema: &str) -> i32 {
    let hash = blake3::hash(schema.as_bytes());
    let bytes = hash.as_bytes();
    i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_seed_files_first_and_in_order() {
        let names: Vec<&str> = embedded().iter().map(|m| m.name).collect();
        assert_eq!(
            &names[..5],
            [
                "0001_init.sql",
                "0002_indexes.sql",
                "0003_task_leases.sql",
                "0004_audit_events.sql",
                "0005_tenant_and_audit_chain.sql",
            ]
        );
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(embedded().iter().all(|m| !m.sql.trim().is_empty()));
    }

    #[test]
    fn embeds_every_file_of_the_migrations_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = embedded().iter().map(|m| m.name.to_owned()).collect();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn stem_and_checksum() {
        let m = Migration {
            name: "0001_init.sql",
            sql: "CREATE TABLE t ();",
        };
        assert_eq!(m.stem(), "0001_init");
        assert_eq!(m.checksum().len(), 64);
        assert_ne!(
            m.checksum(),
            Migration {
                sql: "CREATE TABLE u ();",
                ..m
            }
            .checksum()
        );
    }
}
