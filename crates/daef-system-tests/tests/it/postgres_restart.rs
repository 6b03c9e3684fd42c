//! Issue 3: a gateway on Postgres SIGKILLed in the middle of a run and started again on the same
//! schema loses no job, repeats no job id, and completes no task twice.

use std::collections::BTreeSet;
use std::time::Duration;

use daef_core::model::JobStatus;
use daef_system_tests::workload::{
    assert_tasks_completed_as_recorded, job_total, mixed_job, mixed_job_tasks, status_counts,
    submit_all, wait_settled,
};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool, eventually};
use daef_testenv::postgres::fresh_schema;

const JOBS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_run_loses_nothing_on_postgres() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    // The memory queue is lost with the process, so the restarted gateway must rebuild dispatch
    // from the store alone (DESIGN.md invariant 1).
    let config = GatewayConfig::fast().postgres(&schema);
    let mut gateway = Gateway::start("gateway", config).await;
    let client = gateway.client();
    let ledger = Ledger::new();
    let pool = WorkerPool::start(
        std::slice::from_ref(&client),
        4,
        "worker",
        WorkerOptions::default(),
        ledger.clone(),
    );

    // First half before the kill, second half after, so ids from both processes must coexist.
    let mut submitted = submit_all(
        std::slice::from_ref(&client),
        (0..JOBS / 2).map(mixed_job).collect(),
        4,
    )
    .await;
    let first_half_tasks: usize = (0..JOBS / 2).map(mixed_job_tasks).sum();
    eventually(
        Duration::from_secs(30),
        "the workers to complete some tasks",
        async || match ledger.completed_tasks() {
            n if n >= 30 => Ok(()),
            n => Err(format!("{n} tasks completed")),
        },
    )
    .await;

    gateway.kill();
    // Workers keep polling and reporting against a dead port for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.restart().await;

    let counts = status_counts(&client)
        .await
        .expect("job counts after restart");
    assert_eq!(
        job_total(&client).await.expect("job total after restart"),
        (JOBS / 2) as u64,
        "every job accepted before the kill is still there"
    );
    let open = counts[&JobStatus::Queued] + counts[&JobStatus::Running];
    assert!(
        open > 0,
        "the kill was meant to hit mid-run, but nothing was left: {counts:?}"
    );
    assert!(ledger.completed_tasks() < first_half_tasks);

    submitted.extend(
        submit_all(
            std::slice::from_ref(&client),
            (JOBS / 2..JOBS).map(mixed_job).collect(),
            4,
        )
        .await,
    );
    let jobs = wait_settled(&client, JOBS, Duration::from_secs(60)).await;
    pool.stop().await;
    gateway.assert_alive();

    // No job id repeats, in the answers or in the store, and the store holds exactly the jobs
    // that were accepted.
    let submitted_set: BTreeSet<_> = submitted.iter().cloned().collect();
    assert_eq!(submitted_set.len(), JOBS, "a job id was issued twice");
    let listed: Vec<_> = jobs.iter().map(|j| j.job_id.clone()).collect();
    let listed_set: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), listed_set.len(), "GET /v1/jobs repeats an id");
    assert_eq!(listed_set, submitted_set);
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert!(job.result_artifact_uri.is_some(), "{job:?}");
    }

    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    let checked = assert_tasks_completed_as_recorded(&client, &submitted, &record).await;
    let expected_tasks: usize = (0..JOBS).map(mixed_job_tasks).sum();
    assert_eq!(checked, expected_tasks);
    eprintln!(
        "{JOBS} jobs / {checked} tasks completed across a SIGKILL: {} assignments, {} stale \
         reports refused, {} calls retried",
        record.assignments.len(),
        record.conflicts.len(),
        record.retried
    );
}
