//! Issue 4: Redis goes away mid-run. While it is down the gateway says so (`/readyz` 503), keeps
//! serving what the store holds (jobs and tasks, 200), refuses what needs the queue (submits and
//! polls, 503 with a clear message, nothing stored); once an empty Redis is back, every job
//! completes.

use std::time::Duration;

use daef_client::Error;
use daef_client::model::{Registration, TaskFilter};
use daef_core::model::JobStatus;
use daef_system_tests::workload::{
    job_total, mixed_job, mixed_job_tasks, submit_all, wait_settled,
};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool, eventually};
use daef_testenv::postgres::fresh_schema;
use daef_testenv::redis::{RedisServer, private_server};

const JOBS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_reads_up_refuses_queue_work_and_recovers() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let Some(mut server) = private_server() else {
        return;
    };
    let config = GatewayConfig::fast()
        .postgres(&schema)
        .redis(&server.addr(), "daef-test:outage");
    let mut gateway = Gateway::start("gateway", config).await;
    let client = gateway.client();
    let ledger = Ledger::new();
    let submitted = submit_all(
        std::slice::from_ref(&client),
        (0..JOBS).map(mixed_job).collect(),
        4,
    )
    .await;
    // A worker of our own for probing polls directly.
    client
        .register_worker(&Registration {
            worker_id: "probe".into(),
            ..Registration::default()
        })
        .await
        .expect("register the probe");
    let pool = WorkerPool::start(
        std::slice::from_ref(&client),
        3,
        "worker",
        WorkerOptions::default(),
        ledger.clone(),
    );
    let total_tasks: usize = (0..JOBS).map(mixed_job_tasks).sum();
    eventually(
        Duration::from_secs(30),
        "some tasks to complete",
        async || match ledger.completed_tasks() {
            n if n >= 40 => Ok(()),
            n => Err(format!("{n} tasks completed")),
        },
    )
    .await;

    // A burst of pollers that never pause, so that queue commands are in flight when Redis
    // dies: each of those polls must be answered 503, never 500.
    let storm = WorkerPool::start(
        std::slice::from_ref(&client),
        24,
        "storm",
        WorkerOptions {
            max_tasks: 1,
            idle: Duration::ZERO,
            ..WorkerOptions::default()
        },
        ledger.clone(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    storm.stop().await;

    let why = eventually(
        Duration::from_secs(10),
        "/readyz to answer 503",
        async || match client.ready().await {
            Err(Error::Unavailable(message)) => Ok(message),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert!(why.contains("queue"), "readiness message: {why:?}");

    // Reads come from the store.
    for job_id in submitted.iter().step_by(10) {
        let job = client.job(job_id).await.expect("GET /v1/jobs/{id}");
        assert_eq!(&job.job_id, job_id);
        let tasks = client
            .tasks(job_id, &TaskFilter::default())
            .await
            .expect("GET /v1/jobs/{id}/tasks");
        assert!(tasks.total >= 1);
    }
    let before = job_total(&client).await.expect("GET /v1/jobs");
    assert_eq!(before, JOBS as u64);

    // Writes that need the queue are refused, clearly, and store nothing.
    for i in 0..5 {
        match client.submit_job(&mixed_job(JOBS + i)).await {
            Err(Error::Unavailable(message)) => assert!(
                message.contains("unavailable") && message.contains("redis"),
                "the 503 should say the queue backend is unavailable: {message:?}"
            ),
            other => panic!("a submit while Redis is down answered {other:?}"),
        }
    }
    assert_eq!(
        job_total(&client).await.expect("GET /v1/jobs"),
        before,
        "a refused submit stored a job"
    );
    match client.poll("probe", 1).await {
        Err(Error::Unavailable(message)) => assert!(message.contains("unavailable"), "{message}"),
        other => panic!("a poll while Redis is down answered {other:?}"),
    }

    // Long enough for leases to lapse and the reconciler to run against a dead queue.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(matches!(client.ready().await, Err(Error::Unavailable(_))));

    tokio::task::block_in_place(|| restart_on_same_port(&mut server));
    eventually(
        Duration::from_secs(15),
        "/readyz to answer 200 again",
        async || client.ready().await.map_err(|e| e.to_string()),
    )
    .await;

    let jobs = wait_settled(&client, JOBS, Duration::from_secs(60)).await;
    pool.stop().await;
    gateway.assert_alive();
    assert_eq!(jobs.len(), JOBS, "refused submits must not appear later");
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    }
    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    assert_eq!(record.completing_leases().len(), total_tasks);
    eprintln!(
        "Redis outage: {} worker calls answered 503 or failed and were retried; all {JOBS} jobs \
         completed after the restart",
        record.retried
    );
}

/// Restarts the (empty) server on its port. Another process's outgoing connection may hold the
/// port as its ephemeral local port for a moment, so a failed start is tried again.
fn restart_on_same_port(server: &mut RedisServer) {
    let mut last = None;
    for _ in 0..10 {
        match server.restart() {
            Ok(()) => return,
            Err(err) => last = Some(err),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "redis-server did not restart on {}: {last:?}",
        server.addr()
    );
}
