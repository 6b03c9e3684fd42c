//! The migration runner against a real server.

use daef_core::Error;
use daef_core::ports::Store;
use daef_store::PostgresStore;
use daef_store::postgres::migrate::{self, Migration};
use daef_testenv::postgres::{TestSchema, connect, fresh_schema};
use tokio_postgres::Client;

use crate::common::{at, job, task_ref, timing};

async fn client(schema: &TestSchema) -> Client {
    connect(&schema.dsn_with_search_path())
        .await
        .expect("connect to the test schema")
}

fn all_names() -> Vec<String> {
    migrate::embedded()
        .iter()
        .map(|m| m.name.to_owned())
        .collect()
}

async fn recorded(client: &Client) -> Vec<(String, Option<String>)> {
    client
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn a_fresh_schema_gets_every_file_and_a_second_run_applies_nothing() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut client = client(&schema).await;

    let applied = migrate::run(&mut client).await.expect("first run");
    assert_eq!(applied, all_names());
    let rows = recorded(&client).await;
    assert_eq!(rows.len(), applied.len());
    for (row, migration) in rows.iter().zip(migrate::embedded()) {
        assert_eq!(row.0, migration.name);
        assert_eq!(row.1.as_deref(), Some(migration.checksum().as_str()));
    }

    let again = migrate::run(&mut client).await.expect("second run");
    assert!(again.is_empty(), "second run applied {again:?}");
    assert_eq!(recorded(&client).await, rows);
}

#[tokio::test]
async fn two_runners_at_once_both_succeed_and_apply_each_file_once() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut first = client(&schema).await;
    let mut second = client(&schema).await;

    let (a, b) = tokio::join!(migrate::run(&mut first), migrate::run(&mut second));
    let (a, b) = (a.expect("first runner"), b.expect("second runner"));
    let mut together: Vec<String> = a.iter().chain(&b).cloned().collect();
    together.sort();
    assert_eq!(
        together,
        all_names(),
        "each file applied by exactly one runner"
    );
    assert!(
        a.is_empty() || b.is_empty(),
        "the lock serializes whole runs: {a:?} / {b:?}"
    );
    assert_eq!(recorded(&first).await.len(), all_names().len());
}

#[tokio::test]
async fn replicas_starting_together_through_the_store_agree() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let connect = || PostgresStore::connect(&schema.dsn, Some(&schema.schema));
    let (a, b, c) = (connect().await, connect().await, connect().await);
    let (a, b, c) = (a.expect("store"), b.expect("store"), c.expect("store"));
    let runs = tokio::join!(a.migrate(), b.migrate(), c.migrate());
    let mut applied: Vec<String> = Vec::new();
    for run in [runs.0, runs.1, runs.2] {
        applied.extend(run.expect("every replica starts"));
    }
    applied.sort();
    assert_eq!(applied, all_names());
    for store in [&a, &b, &c] {
        store.ping().await.expect("ping");
        assert_eq!(store.backend(), "postgres");
    }
}

#[tokio::test]
async fn a_changed_file_is_refused_naming_it() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut client = client(&schema).await;
    migrate::run(&mut client).await.expect("first run");
    client
        .execute(
            "UPDATE schema_migrations SET checksum = 'not-the-real-checksum' WHERE version = $1",
            &[&"0003_task_leases.sql"],
        )
        .await
        .expect("tamper");

    let err = migrate::run(&mut client)
        .await
        .expect_err("a changed file must be refused");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("0003_task_leases.sql"), "{text}");
    // The runner let go of its lock: another run (after the file is restored) proceeds.
    client
        .execute(
            "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
            &[&"0003_task_leases.sql", &migrate::embedded()[2].checksum()],
        )
        .await
        .expect("restore");
    assert!(
        migrate::run(&mut client)
            .await
            .expect("runs again")
            .is_empty()
    );
}

#[tokio::test]
async fn a_file_added_later_is_applied_on_the_next_run() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut client = client(&schema).await;
    let all = migrate::embedded();
    let first = migrate::apply(&mut client, &all[..6])
        .await
        .expect("older build");
    assert_eq!(first.len(), 6);
    let rest = migrate::apply(&mut client, &all)
        .await
        .expect("newer build");
    assert_eq!(rest, all_names()[6..].to_vec());
    // A newer build's file is tolerated by an older build (rolling upgrade).
    assert!(
        migrate::apply(&mut client, &all[..6])
            .await
            .expect("older build again")
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_file_is_rolled_back_and_named() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut client = client(&schema).await;
    let mut list = migrate::embedded();
    list.push(Migration {
        name: "9999_broken.sql",
        sql: "CREATE TABLE half_done (x INT); SELECT no_such_function();",
    });
    let err = migrate::apply(&mut client, &list)
        .await
        .expect_err("broken file");
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(chain.contains("9999_broken.sql"), "{chain}");
    assert!(chain.contains("no_such_function"), "{chain}");
    let exists: bool = client
        .query_one("SELECT to_regclass('half_done') IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0);
    assert!(!exists, "the failed file's transaction was rolled back");
    let rows = recorded(&client).await;
    assert_eq!(
        rows.len(),
        all_names().len(),
        "everything before it stays applied"
    );
    assert!(!rows.iter().any(|(v, _)| v == "9999_broken.sql"));
}

#[tokio::test]
async fn a_database_migrated_by_the_seed_system_is_accepted_and_upgraded() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut client = client(&schema).await;
    // What the seed system leaves: its five files applied, recorded by name without `.sql`
    // (one with it), in a table without a checksum column.
    let all = migrate::embedded();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .expect("seed bookkeeping");
    for migration in &all[..5] {
        client
            .batch_execute(migration.sql)
            .await
            .expect("seed file");
        let recorded_as = if migration.name.starts_with("0002") {
            migration.name
        } else {
            migration.stem()
        };
        client
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&recorded_as],
            )
            .await
            .expect("seed record");
    }
    // And some of its data: a running job whose second task waits for the first.
    client
        .batch_execute(
            "INSERT INTO jobs (job_id, job_type, status, created_at, updated_at, tenant) \
             VALUES ('job-seed', 'chat', 'Running', now(), now(), 'acme'); \
             INSERT INTO tasks (job_id, task_id, task_type, dependencies, max_retries, \
                 timeout_sec, status, created_at, updated_at) VALUES \
             ('job-seed', 't1', 'llm_inference', '{}', 2, 60, 'Completed', now(), now()), \
             ('job-seed', 't2', 'llm_inference', '{t1}', 2, 60, 'Queued', now(), now()); \
             INSERT INTO audit_events (id, created_at, action, actor, result, event_hash) \
             VALUES (1, now(), 'dead_letter_list', 'tok-1', 'ok', 'seedhash')",
        )
        .await
        .expect("seed data");

    let applied = migrate::run(&mut client).await.expect("upgrade");
    assert_eq!(
        applied,
        all_names()[5..].to_vec(),
        "only the files the seed lacks"
    );
    let rows = recorded(&client).await;
    assert_eq!(rows.len(), all_names().len());
    assert!(
        rows.iter().all(|(_, sum)| sum.is_some()),
        "checksums filled in: {rows:?}"
    );
    assert!(
        rows.iter().any(|(v, _)| v == "0001_init"),
        "seed rows keep their names"
    );
    assert!(
        migrate::run(&mut client)
            .await
            .expect("steady state")
            .is_empty()
    );

    // The store works on the upgraded database, including what the seed left behind.
    let store = PostgresStore::connect(&schema.dsn, Some(&schema.schema))
        .await
        .expect("store");
    let seed_job = store
        .job(&daef_core::model::JobId::new("job-seed"))
        .await
        .expect("read")
        .expect("the seed's job");
    assert_eq!((seed_job.task_count, seed_job.completed_tasks), (2, 1));
    assert_eq!(seed_job.sink_task_id, "t2");
    let orphans = store
        .take_orphans(at(1_000_000_000), 10, timing())
        .await
        .expect("orphans");
    assert_eq!(
        orphans.len(),
        1,
        "the seed's waiting task is dispatched again"
    );
    let assigned = store
        .assign(&task_ref("job-seed", "t2"), "w1", "n1", at(0), timing())
        .await
        .expect("assign");
    assert!(assigned.is_some());
    let (job, tasks) = job("job-new", "acme", &[("a", &[], 2, 60)], at(0), timing());
    store
        .insert_job(&job, &tasks)
        .await
        .expect("insert into the upgraded schema");
    let event = store
        .append_audit(
            daef_core::audit::AuditDraft {
                action: "job_cancel".into(),
                actor: "tok-2".into(),
                tenant: "acme".into(),
                remote_addr: "127.0.0.1:1".into(),
                resource: "/v1/jobs/job-new".into(),
                payload_hash: String::new(),
                requested: 1,
                result: "ok".into(),
                details: String::new(),
            },
            at(0),
        )
        .await
        .expect("append after the seed's events");
    assert_eq!((event.id, event.prev_hash.as_str()), (2, "seedhash"));
}

/// The seed document's DSN form: a `postgres://` URL with `sslmode=disable`.
#[tokio::test]
async fn a_url_dsn_with_sslmode_disable_connects() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let config: tokio_postgres::Config = schema.dsn.parse().expect("test DSN");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return eprintln!("skipped: the test server is reached through a Unix socket"),
    };
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let auth = password
        .as_ref()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let url = format!(
        "postgres://{}{auth}@{host}:{}/{}?sslmode=disable",
        config.get_user().unwrap_or("postgres"),
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("postgres"),
    );
    let store = PostgresStore::connect(&url, Some(&schema.schema))
        .await
        .expect("URL DSN connects");
    assert_eq!(
        store.migrate().await.expect("migrate").len(),
        all_names().len()
    );
    store.ping().await.expect("ping");
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        assert!(
            !store.target().contains(&password),
            "the target never shows the password"
        );
    }
}
