//! Issue 4: a gateway SIGKILLed over and over — between any store commit and the enqueue that
//! follows it, between an assignment and its answer — while clients submit and workers poll and
//! report. Afterwards every job whose submit was answered 202, and every job the store holds at
//! all, reaches a terminal state; no attempt was handed out twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use daef_client::{Client, Error};
use daef_core::model::{JobId, JobStatus};
use daef_system_tests::wait::is_retryable;
use daef_system_tests::workload::{mixed_job, wait_settled};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool};
use daef_testenv::postgres::fresh_schema;

/// How long the gateway is killed and restarted for.
const CHAOS: Duration = Duration::from_secs(4);

/// Time each incarnation serves before it is killed, cycled (deterministic, so a failure
/// replays the same rhythm).
const LIFETIMES_MS: [u64; 6] = [300, 120, 450, 200, 80, 350];

/// What the submitters saw.
#[derive(Debug, Default)]
struct Submits {
    /// Ids answered 202.
    accepted: Mutex<Vec<JobId>>,
    /// Submits that got no answer: the job may or may not have been stored.
    unanswered: AtomicUsize,
    /// Anything else (a 5xx other than 503, a 4xx).
    unexpected: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_again_and_again_loses_no_accepted_job() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let Some(redis) = daef_testenv::redis::test() else {
        return;
    };
    let config = GatewayConfig::fast()
        .postgres(&schema)
        .redis(redis.addr(), redis.key());
    let mut gateway = Gateway::start("gateway", config).await;
    let client = gateway.client();
    let ledger = Ledger::new();
    let pool = WorkerPool::start(
        std::slice::from_ref(&client),
        3,
        "worker",
        WorkerOptions::default(),
        ledger.clone(),
    );
    let submits = Arc::new(Submits::default());
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..2)
        .map(|lane| {
            tokio::spawn(submit_until_stopped(
                client.clone(),
                lane,
                submits.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < CHAOS {
        let lifetime = LIFETIMES_MS[kills % LIFETIMES_MS.len()];
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        gateway.kill();
        kills += 1;
        gateway.restart().await;
    }
    stop.store(true, Ordering::Release);
    for submitter in submitters {
        submitter.await.expect("a submitter");
    }

    let accepted = submits
        .accepted
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let unanswered = submits.unanswered.load(Ordering::Acquire);
    assert!(kills >= 5, "only {kills} kills in {CHAOS:?}");
    assert!(
        accepted.len() >= 20,
        "too few submits got through to mean anything: {}",
        accepted.len()
    );
    let unexpected = submits
        .unexpected
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        unexpected.is_empty(),
        "unexpected submit answers: {unexpected:?}"
    );

    // Nothing is left Queued or Running in the store, whichever incarnation wrote it.
    let jobs = wait_settled(&client, accepted.len(), Duration::from_secs(60)).await;
    pool.stop().await;
    gateway.assert_alive();

    for job_id in &accepted {
        let job = jobs
            .iter()
            .find(|j| &j.job_id == job_id)
            .unwrap_or_else(|| panic!("{job_id} was accepted (202) but the store lost it"));
        assert!(job.status.is_terminal(), "{job:?}");
    }
    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    let completing = record.completing_leases();
    let completed = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Completed)
        .count();
    eprintln!(
        "{kills} SIGKILLs: {} submits answered 202, {unanswered} unanswered, {} jobs stored \
         ({} of them without an answer; {completed} completed, the rest failed after lapsed \
         leases); {} tasks completed, {} assignments, {} stale reports refused",
        accepted.len(),
        jobs.len(),
        jobs.len() - accepted.len(),
        completing.len(),
        record.assignments.len(),
        record.conflicts.len()
    );
}

/// Submits jobs one after another until told to stop. A submit that got no answer is not
/// retried (it may have been stored: resending would make a second job).
async fn submit_until_stopped(
    client: Client,
    lane: usize,
    submits: Arc<Submits>,
    stop: Arc<AtomicBool>,
) {
    let mut i = lane;
    while !stop.load(Ordering::Acquire) {
        match client.submit_job(&mixed_job(i)).await {
            Ok(submitted) => submits
                .accepted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(submitted.job_id),
            // Refused before anything was stored (the queue was not reachable yet).
            Err(Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(err) if is_retryable(&err) => {
                submits.unanswered.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => submits
                .unexpected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("job #{i}: {err}")),
        }
        i += 2;
    }
}
