//! Retry back-off and delayed jobs: a `Queued` task is not assigned before its
//! `next_attempt_at`, nothing enqueues it early, and the reconciler's orphan pass releases it
//! when due (through the ordered `redispatch_at` index every store keeps).

use std::sync::Arc;
use std::time::Duration;

use daef_core::model::{Priority, ReportStatus, RetryBackoff, TaskRef, TaskStatus};
use daef_core::planner::TaskSpec;
use daef_core::ports::Store;
use daef_core::transition::{self, AttemptOutcome};

use super::{TIMING, assign, insert, job_spec, reported, secs, t0, task_of, task_spec};

const MINUTE: RetryBackoff = RetryBackoff {
    initial_ms: 60_000,
    max_ms: 60_000,
};

fn with_backoff(spec: TaskSpec) -> TaskSpec {
    TaskSpec {
        retry_backoff: Some(MINUTE),
        ..spec
    }
}

/// A failed report's retry waits for its back-off (with the jitter the failed lease draws):
/// not enqueued by the report, refused by assignment until due, released by the orphan pass
/// at its time, then assigned as the next attempt.
pub async fn failed_attempts_wait_for_their_back_off(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![with_backoff(task_spec("a", &[], 2, 60))],
        t0(),
    )
    .await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    let first = assign(&**store, &key, "w1", t0()).await;
    let failed_at = t0().plus(secs(1));
    let effects = reported(
        &**store,
        &key,
        &first.lease_id,
        ReportStatus::Failed,
        failed_at,
    )
    .await;
    assert_eq!(effects.failure, Some(AttemptOutcome::Retry));
    assert!(
        effects.enqueue.is_empty(),
        "not enqueued before its back-off ends"
    );

    let wait = transition::backoff_delay(1, MINUTE, transition::jitter_of(&first.lease_id));
    let due = failed_at.plus(wait);
    let task = task_of(&**store, &key).await;
    assert_eq!(task.status, TaskStatus::Queued);
    assert_eq!(task.next_attempt_at, Some(due));
    assert_eq!(
        task.redispatch_at,
        Some(due),
        "the reconciler enqueues it when due"
    );
    assert!(
        store
            .assign(&key, "w1", &transition::lease_nonce(), failed_at, TIMING)
            .await
            .unwrap()
            .is_none(),
        "a stray reference before the back-off ends assigns nothing"
    );
    let early = store
        .take_orphans(due.minus(Duration::from_micros(1)), 10, TIMING)
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(
        store.take_orphans(due, 10, TIMING).await.unwrap(),
        vec![(key.clone(), Priority::Interactive)]
    );
    let second = assign(&**store, &key, "w1", due).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(task_of(&**store, &key).await.next_attempt_at, None);
}

/// A lapsed lease's retry waits for its back-off too: the expiry enqueues nothing.
pub async fn lapsed_leases_wait_for_their_back_off(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![with_backoff(task_spec("a", &[], 2, 600))],
        t0(),
    )
    .await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    let first = assign(&**store, &key, "w1", t0()).await;
    let lapsed_at = t0().plus(TIMING.lease).plus(secs(1));
    let expired = store.expire_leases(lapsed_at, 10, TIMING).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].outcome, AttemptOutcome::Retry);
    assert_eq!(
        expired[0].enqueue, None,
        "not enqueued before its back-off ends"
    );
    let wait = transition::backoff_delay(1, MINUTE, transition::jitter_of(&first.lease_id));
    let task = task_of(&**store, &key).await;
    assert_eq!(task.next_attempt_at, Some(lapsed_at.plus(wait)));
    assert_eq!(task.redispatch_at, Some(lapsed_at.plus(wait)));
}

/// A delayed job is stored `Queued` at once; its tasks are assigned from its start on, released
/// then by the orphan pass, and its dependents follow as usual.
pub async fn delayed_jobs_are_dispatched_from_their_start(store: &Arc<dyn Store>) {
    let start = t0().plus(secs(60));
    let spec = daef_core::planner::JobSpec {
        run_at: Some(start),
        ..job_spec(vec![
            task_spec("a", &[], 1, 60),
            task_spec("b", &["a"], 1, 60),
        ])
    };
    let (job, tasks) = transition::create_job(&spec, "acme", t0(), TIMING).expect("valid job");
    store.insert_job(&job, &tasks).await.unwrap();
    let a = TaskRef::new(job.job_id.clone(), "a");
    assert_eq!(task_of(&**store, &a).await.next_attempt_at, Some(start));
    assert!(
        store
            .assign(&a, "w1", &transition::lease_nonce(), t0(), TIMING)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_orphans(start.minus(secs(1)), 10, TIMING)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.take_orphans(start, 10, TIMING).await.unwrap(),
        vec![(a.clone(), Priority::Interactive)]
    );
    let first = assign(&**store, &a, "w1", start).await;
    let effects = reported(
        &**store,
        &a,
        &first.lease_id,
        ReportStatus::Completed,
        start.plus(secs(1)),
    )
    .await;
    assert_eq!(
        effects.enqueue,
        vec![(TaskRef::new(job.job_id.clone(), "b"), Priority::Interactive)],
        "its dependent is enqueued at once"
    );
}
