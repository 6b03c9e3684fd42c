//! Issue 4: Redis loses everything (FLUSHALL) half-way through 1,000 jobs; the store still holds
//! the truth and the reconciler re-enqueues what the queue forgot, so every job completes.

use std::time::Duration;

use daef_core::metric::ORPHANS_REQUEUED_TOTAL;
use daef_system_tests::workload::{
    assert_exactly_accepted_and_completed, mixed_job, mixed_job_tasks, submit_all, wait_settled,
};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool, eventually};
use daef_testenv::postgres::fresh_schema;
use daef_testenv::redis::{self, Reply, private_server};

const JOBS: usize = 1_000;
const KEY: &str = "daef-test:flush";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_completes_when_redis_is_flushed_midway() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let Some(server) = private_server() else {
        return;
    };
    let addr = server.addr();
    let config = GatewayConfig::fast().postgres(&schema).redis(&addr, KEY);
    let mut gateway = Gateway::start("gateway", config).await;
    let client = gateway.client();
    let ledger = Ledger::new();

    // Submitting while the workers run keeps the backlog (and the reconciler's back-off on
    // long-waiting tasks) short.
    let submitter = {
        let client = client.clone();
        tokio::spawn(
            async move { submit_all(&[client], (0..JOBS).map(mixed_job).collect(), 4).await },
        )
    };
    let pool = WorkerPool::start(
        std::slice::from_ref(&client),
        4,
        "worker",
        WorkerOptions {
            max_tasks: 10,
            ..WorkerOptions::default()
        },
        ledger.clone(),
    );
    let total_tasks: usize = (0..JOBS).map(mixed_job_tasks).sum();
    eventually(
        Duration::from_secs(60),
        "half the tasks to complete",
        async || match ledger.completed_tasks() {
            n if n >= total_tasks / 2 => Ok(()),
            n => Err(format!("{n} of {total_tasks} tasks completed")),
        },
    )
    .await;

    // Hold the workers so references are waiting in Redis when it loses them: those tasks can
    // only come back through the reconciler.
    let paused = pool.pause().await;
    let pending_key = format!("{KEY}:pending");
    let waiting = eventually(
        Duration::from_secs(10),
        "task references waiting in Redis",
        async || match redis::command(&addr, &["LLEN", &pending_key]) {
            Ok(Reply::Int(n)) if n > 0 => Ok(n),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let orphans_before = client
        .metrics()
        .await
        .expect("metrics")
        .counter_sum(ORPHANS_REQUEUED_TOTAL, &[]);
    // Only the flush itself is checked: the submitter goes on enqueuing, so Redis may hold new
    // keys a moment later. That the flush mattered is checked at the end, by the reconciler's
    // re-enqueues.
    assert_eq!(
        redis::command(&addr, &["FLUSHALL"]).expect("FLUSHALL"),
        Reply::Simple("OK".into())
    );
    let completed_at_flush = ledger.completed_tasks();
    drop(paused);

    let submitted = submitter.await.expect("the submitter");
    let jobs = wait_settled(&client, JOBS, Duration::from_secs(90)).await;
    pool.stop().await;
    gateway.assert_alive();

    assert_eq!(jobs.len(), JOBS);
    assert_exactly_accepted_and_completed(&jobs, &submitted);

    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    assert_eq!(record.completing_leases().len(), total_tasks);
    let orphans_after = client
        .metrics()
        .await
        .expect("metrics")
        .counter_sum(ORPHANS_REQUEUED_TOTAL, &[]);
    assert!(
        orphans_after > orphans_before,
        "the reconciler re-enqueued nothing after the flush ({orphans_before} → {orphans_after})"
    );
    eprintln!(
        "FLUSHALL dropped {waiting} waiting references with {completed_at_flush} of \
         {total_tasks} tasks done; the reconciler re-enqueued {} tasks afterwards and all {JOBS} \
         jobs completed",
        orphans_after - orphans_before
    );
}
