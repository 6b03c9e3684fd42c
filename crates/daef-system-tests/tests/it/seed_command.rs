//! The seed document's commands, as written: the gateway with exactly the four variables of
//! "Run gateway with persistent backends", and `daef-gateway migrate`.

use std::time::Duration;

use daef_client::model::{JobSubmission, TaskFilter};
use daef_core::model::{JobStatus, TaskStatus};
use daef_system_tests::gateway::search_path_dsn;
use daef_system_tests::workload::wait_settled;
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool};
use daef_testenv::postgres::{TestSchema, fresh_schema};
use daef_testenv::redis::{Reply, private_server};
use tokio_postgres::config::Host;

/// The test schema's DSN in the seed document's URL form
/// (`postgres://user:password@host:port/db?sslmode=disable`), with the schema as `search_path`.
/// Falls back to the key=value form for a server reached through a Unix socket.
fn seed_style_dsn(schema: &TestSchema) -> String {
    let config: tokio_postgres::Config = schema.dsn.parse().expect("the test server's DSN");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => return search_path_dsn(schema),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = encode(config.get_user().unwrap_or("postgres"));
    let password = config
        .get_password()
        .map(|p| format!(":{}", encode(&String::from_utf8_lossy(p))))
        .unwrap_or_default();
    let dbname = encode(config.get_dbname().unwrap_or("postgres"));
    format!(
        "postgres://{user}{password}@{host}:{port}/{dbname}?sslmode=disable&options=-c%20search_path%3D{}",
        schema.schema
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_command_serves_a_job_end_to_end() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    // The command uses the default key (`daef:tasks`): a Redis of the test's own.
    let Some(server) = private_server() else {
        return;
    };
    // Exactly the seed's variables; the port is the one addition, so that the test does not
    // depend on 8080 being free. Every other setting is the gateway's default.
    let config = GatewayConfig::bare()
        .var("DAEF_STORE", "postgres")
        .var("DAEF_POSTGRES_DSN", &seed_style_dsn(&schema))
        .var("DAEF_QUEUE", "redis")
        .var("DAEF_REDIS_ADDR", &server.addr());
    let mut gateway = Gateway::start("seed-gateway", config).await;
    let client = gateway.client();
    let ready = client.ready().await.expect("/readyz");
    assert_eq!(ready.store.as_deref(), Some("postgres"));
    assert_eq!(ready.queue.as_deref(), Some("redis"));

    let job_id = client
        .submit_job(&JobSubmission::new(
            "batch_analysis",
            "analyze the quarterly numbers",
        ))
        .await
        .expect("submit")
        .job_id;
    // Dispatch goes through the seed's default key: the chain's first task waits there.
    assert_eq!(
        daef_testenv::redis::command(&server.addr(), &["LLEN", "daef:tasks:pending"])
            .expect("LLEN"),
        Reply::Int(1)
    );
    let ledger = Ledger::new();
    let pool = WorkerPool::start(
        std::slice::from_ref(&client),
        1,
        "seed-worker",
        WorkerOptions::default(),
        ledger.clone(),
    );
    let jobs = wait_settled(&client, 1, Duration::from_secs(30)).await;
    pool.stop().await;
    gateway.assert_alive();

    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.status, JobStatus::Completed);
    let tasks = client
        .tasks(&job_id, &TaskFilter::default())
        .await
        .expect("tasks")
        .tasks;
    let ids: Vec<_> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["t1-split", "t2-embed", "t3-summarize"]);
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));
    // The job's result is the sink task's output.
    assert_eq!(job.result_artifact_uri, tasks[2].output_artifact_uri);
    assert!(job.result_artifact_uri.is_some());
    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    assert_eq!(record.assignments.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_every_file_once_then_nothing() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
            .expect("the migrations directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".sql"))
            .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");

    let config = GatewayConfig::bare().var("DAEF_POSTGRES_DSN", &search_path_dsn(&schema));
    let run = || {
        let output = config
            .command(&["migrate"])
            .output()
            .expect("run daef-gateway migrate");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "migrate failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };

    let first = tokio::task::block_in_place(run);
    let applied: Vec<&str> = first
        .lines()
        .filter_map(|l| l.strip_prefix("applied "))
        .collect();
    assert_eq!(applied, files, "first run:\n{first}");
    assert!(
        first.contains(&format!("{} migration(s) applied", files.len())),
        "{first}"
    );

    let second = tokio::task::block_in_place(run);
    assert!(
        !second.lines().any(|l| l.starts_with("applied ")),
        "second run applied something:\n{second}"
    );
    assert!(second.contains("nothing to apply"), "{second}");

    // Both runs worked in the test's schema, where every file is recorded once.
    let db = daef_testenv::postgres::connect(&schema.dsn)
        .await
        .expect("connect");
    let recorded: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {}.schema_migrations", schema.schema),
            &[],
        )
        .await
        .expect("schema_migrations in the test schema")
        .get(0);
    assert_eq!(recorded, files.len() as i64);
}
