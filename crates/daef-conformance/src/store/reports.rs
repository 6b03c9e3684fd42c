//! Reports: completion and its effects, failed attempts, stale, repeated and refused reports.

use std::sync::Arc;

use daef_core::model::{JobId, JobStatus, Priority, ReportStatus, TaskRef, TaskStatus};
use daef_core::ports::{ReportOutcome, Store};
use daef_core::transition::{AttemptOutcome, CancelOutcome};
use daef_core::{Error, Resource};

use super::{
    TIMING, applied, apply, assign, insert, insert_abc, job_of, report, reported, secs, single, t0,
    task_of, task_spec,
};

/// Completing a task unlocks exactly the dependents whose dependencies are all complete; the
/// job completes with the sink task's output.
pub async fn completion_unlocks_dependents_and_completes_the_job(store: &Arc<dyn Store>) {
    // a -> {b, c} -> d
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("a", &[], 2, 60),
            task_spec("b", &["a"], 2, 60),
            task_spec("c", &["a"], 2, 60),
            task_spec("d", &["b", "c"], 2, 60),
        ],
        t0(),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let now = t0().plus(secs(1));
    let a = assign(&**store, &key("a"), "w1", t0()).await;
    let mut done_a = report(&key("a"), &a.lease_id, ReportStatus::Completed);
    done_a.idempotency_key = Some("k1".to_owned());
    let effects = applied(apply(&**store, &done_a, now).await);
    assert_eq!(effects.failure, None);
    assert_eq!(
        effects
            .enqueue
            .iter()
            .map(|(t, _)| t.task_id.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"],
        "in the order the job declared them"
    );
    let mut unlocked: Vec<_> = effects
        .enqueue
        .iter()
        .map(|(t, p)| (t.task_id.clone(), *p))
        .collect();
    unlocked.sort();
    assert_eq!(
        unlocked,
        vec![
            ("b".to_owned(), Priority::Interactive),
            ("c".to_owned(), Priority::Interactive)
        ]
    );
    assert_eq!(effects.job_status, JobStatus::Running);
    let a_task = task_of(&**store, &key("a")).await;
    assert_eq!(a_task.status, TaskStatus::Completed);
    assert_eq!(a_task.output_artifact_uri.as_deref(), Some("file:///out/a"));
    assert_eq!(a_task.lease_expires, None);
    let b_task = task_of(&**store, &key("b")).await;
    assert_eq!(
        (b_task.pending_dependencies, b_task.updated_at),
        (0, now),
        "unlocked when a's report applied"
    );
    assert_eq!(b_task.redispatch_at, Some(now.plus(TIMING.orphan_after)));
    assert_eq!(task_of(&**store, &key("d")).await.pending_dependencies, 2);

    let b = assign(&**store, &key("b"), "w1", now).await;
    let effects = reported(
        &**store,
        &key("b"),
        &b.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
    assert!(effects.enqueue.is_empty(), "d still waits for c");
    assert_eq!(
        store
            .assign(&key("d"), "w1", "n", now, TIMING)
            .await
            .unwrap(),
        None
    );

    let c = assign(&**store, &key("c"), "w1", now).await;
    let effects = reported(
        &**store,
        &key("c"),
        &c.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
    assert_eq!(
        effects
            .enqueue
            .iter()
            .map(|(t, _)| t.task_id.as_str())
            .collect::<Vec<_>>(),
        vec!["d"]
    );

    let d = assign(&**store, &key("d"), "w1", now).await;
    let done = t0().plus(secs(2));
    let effects = reported(
        &**store,
        &key("d"),
        &d.lease_id,
        ReportStatus::Completed,
        done,
    )
    .await;
    assert_eq!(
        (effects.job_status, effects.enqueue.len()),
        (JobStatus::Completed, 0)
    );
    let job = job_of(&**store, &job.job_id).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.completed_tasks, 4);
    assert_eq!(job.result_artifact_uri.as_deref(), Some("file:///out/d"));
    assert_eq!(job.updated_at, done);
}

/// With several sinks, the job's result is the output of the last sink by task id, whichever
/// task finishes last.
pub async fn result_is_the_chosen_sinks_output_whatever_finishes_last(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![task_spec("a", &[], 2, 60), task_spec("b", &[], 2, 60)],
        t0(),
    )
    .await;
    assert_eq!(job.sink_task_id, "b");
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let now = t0().plus(secs(1));
    let b = assign(&**store, &key("b"), "w1", now).await;
    let a = assign(&**store, &key("a"), "w1", now).await;
    reported(
        &**store,
        &key("b"),
        &b.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
    assert_eq!(
        job_of(&**store, &job.job_id).await.result_artifact_uri,
        None,
        "not complete yet"
    );
    let effects = reported(
        &**store,
        &key("a"),
        &a.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
    assert_eq!(effects.job_status, JobStatus::Completed);
    let done = job_of(&**store, &job.job_id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result_artifact_uri.as_deref(), Some("file:///out/b"));
}

/// A failed report retries while attempts remain, then dead-letters the task and fails the job,
/// which then dispatches none of its other tasks.
pub async fn failures_retry_then_dead_letter(store: &Arc<dyn Store>) {
    // a may run twice; b waits in the queue meanwhile; c waits for a.
    let job = insert_abc(&**store).await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    let sibling = TaskRef::new(job.job_id.clone(), "b");
    let now = t0().plus(secs(1));
    let first = assign(&**store, &key, "w1", now).await;
    let effects = reported(&**store, &key, &first.lease_id, ReportStatus::Failed, now).await;
    assert_eq!(effects.failure, Some(AttemptOutcome::Retry));
    assert_eq!(effects.enqueue, vec![(key.clone(), Priority::Interactive)]);
    let task = task_of(&**store, &key).await;
    assert_eq!(
        (task.status, task.attempt, task.error.as_deref()),
        (TaskStatus::Queued, 1, Some("boom"))
    );
    assert_eq!(task.redispatch_at, Some(now.plus(TIMING.orphan_after)));
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Running
    );

    let second = store
        .assign(&key, "w2", "n2", now, TIMING)
        .await
        .unwrap()
        .expect("a again");
    assert_eq!(
        (second.attempt, second.lease_id.as_str()),
        (2, "lease-2-n2")
    );
    assert_ne!(second.lease_id, first.lease_id);
    let died = t0().plus(secs(2));
    let effects = reported(&**store, &key, &second.lease_id, ReportStatus::Failed, died).await;
    assert_eq!(effects.failure, Some(AttemptOutcome::DeadLettered));
    assert!(effects.enqueue.is_empty());
    assert_eq!(effects.job_status, JobStatus::Failed);
    let task = task_of(&**store, &key).await;
    assert_eq!(
        (task.status, task.attempt, task.dead_lettered_at),
        (TaskStatus::Failed, 2, Some(died))
    );
    let job = job_of(&**store, &job.job_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.message.as_deref(),
        Some("task a failed after 2 attempts: boom")
    );
    assert_eq!(job.dead_tasks, 1);
    assert_eq!(
        task_of(&**store, &sibling).await.redispatch_at,
        None,
        "a failed job dispatches nothing"
    );
    assert_eq!(
        store
            .assign(&sibling, "w1", "n", died, TIMING)
            .await
            .unwrap(),
        None
    );
    let dead = store.dead_letters(1000).await.unwrap();
    assert_eq!(dead.len(), 1, "the store holds one dead letter");
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    let entry = dead
        .iter()
        .find(|d| d.job_id == job.job_id)
        .expect("listed as dead letter");
    assert_eq!(
        (
            entry.task_id.as_str(),
            entry.tenant.as_str(),
            entry.attempt,
            entry.error.as_str()
        ),
        ("a", "acme", 2, "boom")
    );
    assert_eq!(entry.dead_lettered_at, died);
}

/// Reports for a task that is not running, or under another lease, are refused and change nothing.
pub async fn stale_and_unassigned_reports_change_nothing(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 2, 60).await;
    let now = t0().plus(secs(1));
    let before = task_of(&**store, &key).await;
    assert_eq!(
        apply(
            &**store,
            &report(&key, "lease-1-never", ReportStatus::Completed),
            now
        )
        .await,
        ReportOutcome::NotRunning
    );
    assert_eq!(task_of(&**store, &key).await, before);

    let first = assign(&**store, &key, "w1", now).await;
    let running = task_of(&**store, &key).await;
    for status in [ReportStatus::Completed, ReportStatus::Failed] {
        assert_eq!(
            apply(&**store, &report(&key, "lease-1-forged", status), now).await,
            ReportOutcome::StaleLease
        );
    }
    assert_eq!(task_of(&**store, &key).await, running);

    // After a retry the old lease is stale even though the same worker asks.
    reported(&**store, &key, &first.lease_id, ReportStatus::Failed, now).await;
    assert_eq!(
        apply(
            &**store,
            &report(&key, &first.lease_id, ReportStatus::Completed),
            now
        )
        .await,
        ReportOutcome::NotRunning
    );
    let second = assign(&**store, &key, "w1", now).await;
    assert_eq!(
        apply(
            &**store,
            &report(&key, &first.lease_id, ReportStatus::Completed),
            now
        )
        .await,
        ReportOutcome::StaleLease
    );
    reported(
        &**store,
        &key,
        &second.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
    let done = task_of(&**store, &key).await;
    assert_eq!(
        apply(
            &**store,
            &report(&key, &second.lease_id, ReportStatus::Failed),
            now
        )
        .await,
        ReportOutcome::NotRunning
    );
    assert_eq!(task_of(&**store, &key).await, done);
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Completed
    );
}

/// A repeat of an accepted report (same idempotency key and lease) is recognised and changes
/// nothing, even after the task moved on; the same key under another lease is a new report.
pub async fn repeated_reports_are_idempotent(store: &Arc<dyn Store>) {
    let (_, key) = single(&**store, 2, 60).await;
    let now = t0().plus(secs(1));
    let first = assign(&**store, &key, "w1", now).await;
    // A refused report does not use up its key.
    let mut forged = report(&key, "lease-1-other", ReportStatus::Failed);
    forged.idempotency_key = Some("k-1".to_owned());
    assert_eq!(
        apply(&**store, &forged, now).await,
        ReportOutcome::StaleLease
    );
    let mut failed = report(&key, &first.lease_id, ReportStatus::Failed);
    failed.idempotency_key = Some("k-1".to_owned());
    applied(apply(&**store, &failed, now).await);
    let after_first = task_of(&**store, &key).await;
    assert_eq!(
        apply(&**store, &failed, now.plus(secs(1))).await,
        ReportOutcome::Duplicate
    );
    assert_eq!(task_of(&**store, &key).await, after_first);

    let second = assign(&**store, &key, "w1", now).await;
    let mut done = report(&key, &second.lease_id, ReportStatus::Completed);
    done.idempotency_key = Some("k-1".to_owned());
    applied(apply(&**store, &done, now).await);
    let completed = task_of(&**store, &key).await;
    assert_eq!(completed.status, TaskStatus::Completed);
    assert_eq!(
        apply(&**store, &done, now.plus(secs(5))).await,
        ReportOutcome::Duplicate
    );
    assert_eq!(task_of(&**store, &key).await, completed);
    // Another key under the same lease is a new report, and the task is no longer running.
    let mut other = report(&key, &second.lease_id, ReportStatus::Failed);
    other.idempotency_key = Some("k-2".to_owned());
    assert_eq!(
        apply(&**store, &other, now.plus(secs(5))).await,
        ReportOutcome::NotRunning,
        "a different key is a new report"
    );
    assert_eq!(task_of(&**store, &key).await, completed);
}

/// Reports for a canceled job are swallowed whatever the task's state.
pub async fn reports_on_canceled_jobs_change_nothing(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 2, 60).await;
    let now = t0().plus(secs(1));
    let a = assign(&**store, &key, "w1", now).await;
    assert_eq!(
        store.cancel_job(&job.job_id, now).await.unwrap(),
        Some(CancelOutcome::Canceled)
    );
    let canceled = task_of(&**store, &key).await;
    assert_eq!(canceled.status, TaskStatus::Canceled);
    for r in [
        report(&key, &a.lease_id, ReportStatus::Completed),
        report(&key, "lease-9-x", ReportStatus::Failed),
    ] {
        assert_eq!(apply(&**store, &r, now).await, ReportOutcome::JobCanceled);
    }
    assert_eq!(task_of(&**store, &key).await, canceled);
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Canceled
    );

    // A task that finished before the cancel, and one that never ran: a repeat of the accepted
    // report is answered as canceled too, not as a duplicate.
    let (job, _) = insert(
        &**store,
        "acme",
        vec![task_spec("a", &[], 2, 60), task_spec("b", &[], 2, 60)],
        t0(),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let a = assign(&**store, &key("a"), "w1", now).await;
    let mut done = report(&key("a"), &a.lease_id, ReportStatus::Completed);
    done.idempotency_key = Some("k".to_owned());
    applied(apply(&**store, &done, now).await);
    let at = now.plus(secs(1));
    assert_eq!(
        store.cancel_job(&job.job_id, at).await.unwrap(),
        Some(CancelOutcome::Canceled)
    );
    let (a_before, b_before) = (
        task_of(&**store, &key("a")).await,
        task_of(&**store, &key("b")).await,
    );
    assert_eq!(
        (a_before.status, b_before.status),
        (TaskStatus::Completed, TaskStatus::Canceled)
    );
    let later = at.plus(secs(1));
    assert_eq!(
        apply(
            &**store,
            &report(&key("b"), "whatever", ReportStatus::Completed),
            later
        )
        .await,
        ReportOutcome::JobCanceled
    );
    assert_eq!(
        apply(&**store, &done, later).await,
        ReportOutcome::JobCanceled,
        "cancel swallows even duplicates"
    );
    assert_eq!(task_of(&**store, &key("a")).await, a_before);
    assert_eq!(task_of(&**store, &key("b")).await, b_before);
}

/// Reports naming an unknown job or task are `NotFound`.
pub async fn reports_for_unknown_tasks_are_not_found(store: &Arc<dyn Store>) {
    let (job, _) = single(&**store, 2, 60).await;
    let r = report(
        &TaskRef::new(JobId::new("job-missing"), "a"),
        "l",
        ReportStatus::Completed,
    );
    let err = store.report(&r, t0(), TIMING).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(Resource::Job)), "{err:?}");
    let r = report(
        &TaskRef::new(job.job_id.clone(), "zz"),
        "l",
        ReportStatus::Completed,
    );
    let err = store.report(&r, t0(), TIMING).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(Resource::Task)), "{err:?}");
}

/// A concurrent report and cancel, or two reports under different leases, never lose an update:
/// the end state is one of the serial outcomes.
pub async fn racing_transitions_never_lose_an_update(store: &Arc<dyn Store>) {
    for round in 0..20 {
        let (job, key) = single(&**store, 2, 60).await;
        let a = assign(&**store, &key, "w1", t0()).await;
        let r = report(&key, &a.lease_id, ReportStatus::Completed);
        let (s1, s2) = (store.clone(), store.clone());
        let id = job.job_id.clone();
        let reporting = tokio::spawn(async move { s1.report(&r, t0(), TIMING).await.unwrap() });
        let canceling = tokio::spawn(async move { s2.cancel_job(&id, t0()).await.unwrap() });
        let (reported, canceled) = (reporting.await.unwrap(), canceling.await.unwrap());
        let job_now = job_of(&**store, &job.job_id).await;
        let task_now = task_of(&**store, &key).await;
        match (reported, canceled) {
            (ReportOutcome::Applied(_), Some(CancelOutcome::AlreadyFinished)) => {
                assert_eq!(
                    (job_now.status, task_now.status),
                    (JobStatus::Completed, TaskStatus::Completed),
                    "round {round}"
                );
            }
            (ReportOutcome::JobCanceled, Some(CancelOutcome::Canceled)) => {
                assert_eq!(
                    (job_now.status, task_now.status),
                    (JobStatus::Canceled, TaskStatus::Canceled),
                    "round {round}"
                );
            }
            other => panic!("round {round}: impossible interleaving {other:?}"),
        }
    }

    // Two reports, one under the current lease and one under the previous: only the current counts.
    let (_, key) = single(&**store, 2, 60).await;
    let old = assign(&**store, &key, "w1", t0()).await;
    store
        .expire_leases(old.lease_expires, 100_000, TIMING)
        .await
        .unwrap();
    let current = assign(&**store, &key, "w2", old.lease_expires).await;
    let (s1, s2) = (store.clone(), store.clone());
    let stale = report(&key, &old.lease_id, ReportStatus::Completed);
    let fresh = report(&key, &current.lease_id, ReportStatus::Failed);
    let h1 = tokio::spawn(async move { s1.report(&stale, t0(), TIMING).await.unwrap() });
    let h2 = tokio::spawn(async move { s2.report(&fresh, t0(), TIMING).await.unwrap() });
    // Before the fresh report the task runs under another lease; after it, the task waits for a
    // retry. Either way the stale report is refused and changes nothing.
    let refused = h1.await.unwrap();
    assert!(
        matches!(
            refused,
            ReportOutcome::StaleLease | ReportOutcome::NotRunning
        ),
        "{refused:?}"
    );
    assert!(matches!(h2.await.unwrap(), ReportOutcome::Applied(_)));
    let task = task_of(&**store, &key).await;
    assert_eq!((task.status, task.attempt), (TaskStatus::Queued, 2));
}
