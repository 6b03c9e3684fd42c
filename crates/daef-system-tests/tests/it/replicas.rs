//! Issue 4 (and DESIGN.md invariants 6 and 7): three gateway replicas on one Postgres schema and
//! one Redis prefix, eight pollers spread over them. Every (task, attempt) is assigned exactly
//! once, every job completes, admin actions on all three replicas at once form one audit chain
//! with ids 1..n that verifies on the gateways and here, and the requeue rate limit is one limit
//! across the replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use daef_client::Error;
use daef_client::audit::fetch_all;
use daef_client::model::{AuditFilter, JobSubmission, ReportStatus, TaskKey, TaskSubmission};
use daef_core::audit::{action, result};
use daef_core::model::{JobId, JobStatus};
use daef_system_tests::workload::{
    assert_tasks_completed_as_recorded, mixed_job, mixed_job_tasks, submit_all, wait_settled,
};
use daef_system_tests::{Gateway, GatewayConfig, Ledger, WorkerOptions, WorkerPool};
use daef_testenv::postgres::fresh_schema;
use tokio::task::JoinSet;

const OPS_TOKEN: &str = "ops-secret-token";
const WORKER_TOKEN: &str = "worker-secret-token";
const REPLICAS: usize = 3;
const POLLERS: usize = 8;
const JOBS: usize = 240;
/// Jobs whose one task fails its first attempt with no retries left: dead letters to requeue.
const DOOMED: usize = 5;
const RATE_LIMIT: usize = 5;
const DOOMED_TASK: &str = "flaky";

/// A one-task job whose task fails its first attempt (the workers see `fail_first`) and has no
/// retry, so it lands in the dead-letter queue.
fn doomed_job(i: usize) -> JobSubmission {
    JobSubmission {
        job_type: "flaky".into(),
        input: Some(format!("doomed #{i}")),
        tasks: Some(vec![TaskSubmission {
            task_id: DOOMED_TASK.into(),
            task_type: "flaky".into(),
            inputs: [("fail_first".to_owned(), "yes".to_owned())].into(),
            max_retries: Some(0),
            ..TaskSubmission::default()
        }]),
        ..JobSubmission::default()
    }
}

/// Counts the audit events the test causes, by (action, result).
#[derive(Debug, Default)]
struct Expected(BTreeMap<(String, String), u64>);

impl Expected {
    fn add(&mut self, action: &str, result: &str, n: u64) {
        *self
            .0
            .entry((action.to_owned(), result.to_owned()))
            .or_default() += n;
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_dispatch_one_audit_chain_and_one_rate_limit() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let Some(redis) = daef_testenv::redis::test() else {
        return;
    };
    let config = GatewayConfig::fast()
        .postgres(&schema)
        .redis(redis.addr(), redis.key())
        .var(
            "DAEF_API_TOKENS",
            &format!("{OPS_TOKEN}:operator,{WORKER_TOKEN}:worker"),
        )
        .var(
            "DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN",
            &RATE_LIMIT.to_string(),
        );
    // Started together, so their migration runs meet at the advisory lock.
    let (a, b, c) = tokio::join!(
        Gateway::start("replica-0", config.clone()),
        Gateway::start("replica-1", config.clone()),
        Gateway::start("replica-2", config),
    );
    let mut replicas = [a, b, c];
    let ops: Vec<_> = replicas
        .iter()
        .map(|g| g.client_with(Some(OPS_TOKEN)))
        .collect();
    let workers: Vec<_> = replicas
        .iter()
        .map(|g| g.client_with(Some(WORKER_TOKEN)))
        .collect();

    let ledger = Ledger::new();
    let options = WorkerOptions {
        outcome: Arc::new(|a| {
            if a.inputs.contains_key("fail_first") && a.attempt == 1 {
                ReportStatus::Failed
            } else {
                ReportStatus::Completed
            }
        }),
        ..WorkerOptions::default()
    };
    let pool = WorkerPool::start(&workers, POLLERS, "poller", options, ledger.clone());

    let mut jobs: Vec<_> = (0..JOBS).map(mixed_job).collect();
    jobs.extend((0..DOOMED).map(doomed_job));
    let submitted = submit_all(&ops, jobs, 6).await;
    let (regular, doomed) = submitted.split_at(JOBS);
    let settled = wait_settled(&ops[0], JOBS + DOOMED, Duration::from_secs(90)).await;
    let status_of = |jobs: &[daef_client::model::JobInfo], id: &JobId| {
        jobs.iter()
            .find(|j| &j.job_id == id)
            .map(|j| j.status)
            .unwrap_or_else(|| panic!("{id} is missing"))
    };
    for id in regular {
        assert_eq!(status_of(&settled, id), JobStatus::Completed, "{id}");
    }
    for id in doomed {
        assert_eq!(status_of(&settled, id), JobStatus::Failed, "{id}");
    }

    // --- admin actions on all three replicas at once: the chain must stay linear -------------
    let mut expected = Expected::default();
    let dead: Vec<TaskKey> = doomed
        .iter()
        .map(|id| TaskKey {
            job_id: id.clone(),
            task_id: DOOMED_TASK.into(),
        })
        .collect();
    let mut admin = JoinSet::new();
    for (r, client) in ops.iter().enumerate() {
        for _ in 0..4 {
            let lister = client.clone();
            admin.spawn(async move {
                let listed = lister.dead_letters(None).await.expect("list dead letters");
                assert_eq!(listed.len(), DOOMED, "dead letters on replica {r}");
            });
            let (client, dead) = (client.clone(), dead.clone());
            admin.spawn(async move {
                let dry = client
                    .requeue_dead_letters(&dead, true, None)
                    .await
                    .expect("dry-run requeue");
                assert!(dry.dry_run);
                assert_eq!(
                    (dry.requested, dry.requeued),
                    (DOOMED as u64, DOOMED as u64)
                );
            });
        }
        for k in 0..2 {
            let (client, job_id) = (client.clone(), regular[r * 2 + k].clone());
            admin.spawn(async move {
                let outcome = client.cancel_job(&job_id).await.expect("cancel");
                assert!(
                    !outcome.accepted,
                    "{job_id} had completed: nothing to cancel"
                );
            });
        }
    }
    while let Some(done) = admin.join_next().await {
        if let Err(err) = done {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    let per_replica = REPLICAS as u64;
    expected.add(action::DEAD_LETTER_LIST, result::OK, 4 * per_replica);
    expected.add(
        action::DEAD_LETTER_REQUEUE,
        result::DRY_RUN,
        4 * per_replica,
    );
    expected.add(action::JOB_CANCEL, result::NOOP, 2 * per_replica);

    // Cancels that do cancel: the workers are held so these jobs stay unfinished.
    let canceled = {
        let _held = pool.pause().await;
        let extra = submit_all(
            &ops,
            (0..REPLICAS).map(|i| mixed_job(JOBS + i)).collect(),
            REPLICAS,
        )
        .await;
        for (i, job_id) in extra.iter().enumerate() {
            let outcome = ops[(i + 1) % REPLICAS]
                .cancel_job(job_id)
                .await
                .expect("cancel");
            assert!(outcome.accepted, "{job_id} should have been canceled");
        }
        extra
    };
    expected.add(action::JOB_CANCEL, result::OK, REPLICAS as u64);

    // --- one requeue rate limit across the replicas ------------------------------------------
    for (i, task) in dead.iter().enumerate() {
        let outcome = ops[i % REPLICAS]
            .requeue_dead_letters(std::slice::from_ref(task), false, None)
            .await
            .unwrap_or_else(|e| panic!("requeue #{} on replica {}: {e}", i + 1, i % REPLICAS));
        assert_eq!((outcome.requested, outcome.requeued), (1, 1));
    }
    for (r, client) in ops.iter().enumerate() {
        match client.requeue_dead_letters(&dead[..1], false, None).await {
            Err(Error::RateLimited {
                retry_after_secs: Some(secs),
                msg,
            }) => {
                assert!((1..=60).contains(&secs), "Retry-After {secs}");
                assert!(msg.contains("rate limit"), "{msg}");
            }
            other => panic!(
                "requeue #{} (on replica {r}) should be rate limited: {other:?}",
                RATE_LIMIT + 1
            ),
        }
    }
    expected.add(action::DEAD_LETTER_REQUEUE, result::OK, RATE_LIMIT as u64);
    expected.add(
        action::DEAD_LETTER_REQUEUE,
        result::RATE_LIMITED,
        REPLICAS as u64,
    );

    // --- the requeued tasks run again and everything settles ---------------------------------
    let total_jobs = JOBS + DOOMED + REPLICAS;
    let settled = wait_settled(&ops[0], total_jobs, Duration::from_secs(60)).await;
    pool.stop().await;
    for replica in &mut replicas {
        replica.assert_alive();
    }
    assert_eq!(settled.len(), total_jobs);
    for job in &settled {
        let want = if canceled.contains(&job.job_id) {
            JobStatus::Canceled
        } else {
            JobStatus::Completed
        };
        assert_eq!(job.status, want, "{job:?}");
    }

    let record = ledger.snapshot();
    record.assert_no_unexpected_errors();
    record.assert_no_attempt_assigned_twice();
    record.assert_attempts_contiguous();
    let checked = assert_tasks_completed_as_recorded(&ops[0], &submitted, &record).await;
    let tasks: usize = (0..JOBS).map(mixed_job_tasks).sum::<usize>() + DOOMED;
    assert_eq!(checked, tasks);
    let mut per_replica_assignments = [0usize; REPLICAS];
    for seen in &record.assignments {
        let poller: usize = seen
            .worker_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("poller-<i>");
        per_replica_assignments[poller % REPLICAS] += 1;
    }
    assert!(
        per_replica_assignments.iter().all(|&n| n > 0),
        "every replica hands out work: {per_replica_assignments:?}"
    );

    // --- one audit chain, verified by every replica and here ---------------------------------
    let n = expected.total();
    let mut heads = Vec::new();
    for (r, client) in ops.iter().enumerate() {
        let verdict = client.verify_audit().await.expect("verify");
        assert!(verdict.ok, "replica {r}: {verdict:?}");
        assert_eq!(verdict.checked, n, "replica {r} checked");
        heads.push(verdict.head_hash);
    }
    assert!(heads.windows(2).all(|w| w[0] == w[1]), "{heads:?}");
    let events = fetch_all(&ops[1], &AuditFilter::default())
        .await
        .expect("read the audit log");
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "audit ids");
    let local = daef_core::audit::verify(&events);
    assert!(local.ok, "the chain does not verify client-side: {local:?}");
    assert_eq!(local.checked, n);
    assert_eq!(local.head_hash, heads[0]);
    let mut seen = Expected::default();
    for event in &events {
        seen.add(&event.action, &event.result, 1);
    }
    assert_eq!(seen.0, expected.0, "audited (action, result) counts");
    eprintln!(
        "{REPLICAS} replicas, {POLLERS} pollers: {} assignments ({per_replica_assignments:?} per \
         replica), {checked} tasks completed once each; audit chain of {n} events verified",
        record.assignments.len()
    );
}
