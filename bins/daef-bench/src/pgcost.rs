//! What the measured rounds cost Postgres, per task: the CPU of the server's processes (from
//! /proc, so only when the server runs on this machine, as `--spawn postgres` assumes), its
//! commits and WAL bytes, and the share of the benchmark schema's row updates that were HOT
//! (rewrote no index).
//!
//! The closing sample is taken after the gateway stopped: a backend reports its statistics at
//! most once a second while it lives, but always when it exits, and the postmaster then holds
//! its CPU time.

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

/// One reading of the server's counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PgSample {
    commits: i64,
    wal_bytes: i64,
    cpu_ticks: Option<u64>,
    updates: i64,
    hot_updates: i64,
}

/// The difference of two samples, per task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PgCost {
    /// Milliseconds of Postgres CPU per task (`None` when no server process is visible).
    pub(crate) cpu_ms_per_task: Option<f64>,
    pub(crate) commits_per_task: f64,
    pub(crate) wal_bytes_per_task: f64,
    /// HOT updates ÷ all row updates in the schema (`None` without updates).
    pub(crate) hot_share: Option<f64>,
}

/// A connection that reads the counters of one server and one schema.
pub(crate) struct PgProbe {
    client: Client,
    schema: String,
}

impl PgProbe {
    pub(crate) async fn connect(dsn: &str, schema: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(dsn, NoTls)
            .await
            .context("connecting to Postgres to read its counters")?;
        tokio::spawn(connection);
        Ok(Self {
            client,
            schema: schema.to_owned(),
        })
    }

    pub(crate) async fn sample(&self) -> anyhow::Result<PgSample> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT sum(xact_commit) FROM pg_stat_database)::bigint AS commits, \
                     (pg_current_wal_lsn() - '0/0')::bigint AS wal_bytes, \
                     (SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables \
                      WHERE schemaname = $1)::bigint AS updates, \
                     (SELECT coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables \
                      WHERE schemaname = $1)::bigint AS hot_updates",
                &[&self.schema],
            )
            .await
            .context("reading pg_stat_database and pg_stat_user_tables")?;
        Ok(PgSample {
            commits: row.try_get("commits")?,
            wal_bytes: row.try_get("wal_bytes")?,
            cpu_ticks: server_cpu_ticks(),
            updates: row.try_get("updates")?,
            hot_updates: row.try_get("hot_updates")?,
        })
    }
}

/// CPU time of every process named `postgres`, in clock ticks: user and system time, plus
/// those of reaped children (exited backends, for the postmaster).
fn server_cpu_ticks() -> Option<u64> {
    let mut total = 0;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let is_postgres = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if !is_postgres {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        if let Some(ticks) = stat_cpu_ticks(&stat) {
            total += ticks;
            seen = true;
        }
    }
    seen.then_some(total)
}

/// utime + stime + cutime + cstime of a `/proc/<pid>/stat` line (fields 14 to 17; the name in
/// parentheses may hold spaces, so counting starts after its closing parenthesis).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state), so field n is at index n - 3.
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// The cost of `tasks` tasks between two samples.
pub(crate) fn cost(before: PgSample, after: PgSample, tasks: u64) -> Option<PgCost> {
    if tasks == 0 {
        return None;
    }
    let per_task = |d: i64| d as f64 / tasks as f64;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let updates = after.updates - before.updates;
    Some(PgCost {
        cpu_ms_per_task: match (before.cpu_ticks, after.cpu_ticks) {
            (Some(b), Some(a)) => {
                Some(a.saturating_sub(b) as f64 / ticks_per_sec * 1000.0 / tasks as f64)
            }
            _ => None,
        },
        commits_per_task: per_task(after.commits - before.commits),
        wal_bytes_per_task: per_task(after.wal_bytes - before.wal_bytes),
        hot_share: (updates > 0)
            .then(|| (after.hot_updates - before.hot_updates) as f64 / updates as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_counted_after_the_name() {
        let stat = "42 (postgres: x) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(13));
    }

    #[test]
    fn costs_are_per_task() {
        let before = PgSample {
            commits: 10,
            wal_bytes: 1_000,
            cpu_ticks: Some(100),
            updates: 0,
            hot_updates: 0,
        };
        let after = PgSample {
            commits: 60,
            wal_bytes: 101_000,
            cpu_ticks: Some(150),
            updates: 200,
            hot_updates: 50,
        };
        let cost = cost(before, after, 100).expect("tasks");
        assert_eq!(cost.commits_per_task, 0.5);
        assert_eq!(cost.wal_bytes_per_task, 1_000.0);
        assert_eq!(cost.cpu_ms_per_task, Some(5.0));
        assert_eq!(cost.hot_share, Some(0.25));
    }
}
