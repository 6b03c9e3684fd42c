//! Issue 12: Postgres itself restarts while a gateway on Postgres + Redis is busy submitting,
//! assigning and reporting through its batched write path. Batches in flight are aborted; every
//! job accepted before or after completes, none is lost or run twice under one lease, and the
//! gateway needs no restart of its own.

use std::time::Duration;

use daef_system_tests::workload::{
    assert_exactly_accepted_and_completed, mixed_job, mixed_job_tasks, submit_all, wait_settled,
};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool, eventually};
use daef_testenv::postgres::Throwaway;
use daef_testenv::redis::private_server;

const JOBS: usize = 300;
const KEY: &str = "daef-test:pg-restart";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_batch_loses_no_accepted_job() {
    let postgres = match Throwaway::start() {
        Ok(server) => server,
        Err(err) => {
            daef_testenv::unavailable("postgres", &format!("cannot start a private server: {err}"));
            return;
        }
    };
    let Some(redis) = private_server() else {
        return;
    };
    let config = GatewayConfig::fast()
        .var("DAEF_STORE", "postgres")
        .var("DAEF_POSTGRES_DSN", &postgres.dsn())
        .redis(&redis.addr(), KEY);
    let mut gateway = Gateway::start("gateway", config).await;
    let client = gateway.client();
    let ledger = Ledger::new();
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
    let mut submitted = submit_all(
        std::slice::from_ref(&client),
        (0..JOBS / 2).map(mixed_job).collect(),
        4,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the workers to complete some tasks",
        async || match ledger.completed_tasks() {
            n if n >= 50 => Ok(()),
            n => Err(format!("{n} tasks completed")),
        },
    )
    .await;

    // The workers are polling and reporting all along, so batches are in flight when it stops.
    let completed_at_restart = ledger.completed_tasks();
    let restart = tokio::task::spawn_blocking(move || {
        postgres.restart().expect("restart postgres");
        postgres
    });
    let _postgres = restart.await.expect("the restart");

    // The gateway's pool reconnects by itself: submits are accepted again.
    eventually(
        Duration::from_secs(30),
        "the gateway to accept a submit after the restart",
        async || match client.submit_job(&mixed_job(JOBS / 2)).await {
            Ok(job) => {
                submitted.push(job.job_id);
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        },
    )
    .await;
    submitted.extend(
        submit_all(
            std::slice::from_ref(&client),
            (JOBS / 2 + 1..JOBS).map(mixed_job).collect(),
            4,
        )
        .await,
    );

    let jobs = wait_settled(&client, JOBS, Duration::from_secs(120)).await;
    pool.stop().await;
    gateway.assert_alive();

    assert_exactly_accepted_and_completed(&jobs, &submitted);
    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    let total_tasks: usize = (0..JOBS).map(mixed_job_tasks).sum();
    assert_eq!(record.completing_leases().len(), total_tasks);
    eprintln!(
        "Postgres restarted with {completed_at_restart} of {total_tasks} tasks done; the workers \
         retried {} calls and all {JOBS} jobs completed",
        record.retried
    );
}
