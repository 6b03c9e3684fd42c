//! Dead letters: listing, counting, and an operator's requeue with a fresh attempt budget.

use std::sync::Arc;

use daef_core::model::{JobId, JobStatus, Priority, ReportStatus, TaskRef, TaskStatus};
use daef_core::ports::Store;
use daef_core::transition::AttemptOutcome;

use super::{
    TIMING, assign, insert, insert_abc, job_of, reported, secs, single, t0, task_of, task_spec,
};

/// A dead letter requeued by an operator gets a fresh attempt budget (the attempt counter keeps
/// counting) and its job runs again, enqueueing every task it can dispatch.
pub async fn requeued_dead_letters_get_a_fresh_budget(store: &Arc<dyn Store>) {
    // a dies; b waits in the queue meanwhile; c waits for a.
    let job = insert_abc(&**store).await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    let now = t0().plus(secs(1));
    for _ in 0..2 {
        let a = assign(&**store, &key, "w1", now).await;
        reported(&**store, &key, &a.lease_id, ReportStatus::Failed, now).await;
    }
    let bystander = TaskRef::new(job.job_id.clone(), "nope");
    assert_eq!(
        store
            .count_dead_among(&[key.clone(), bystander.clone()])
            .await
            .unwrap(),
        1
    );
    let unknown_job = TaskRef::new(JobId::new("job-missing"), "a");
    let listed = [key.clone(), bystander, unknown_job, key.clone()];
    assert_eq!(
        store.count_dead_among(&listed).await.unwrap(),
        2,
        "each listed entry counts"
    );
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    assert_eq!(job_of(&**store, &job.job_id).await.dead_tasks, 1);
    let at = t0().plus(secs(5));
    let outcome = store.requeue_dead(&listed, at, TIMING).await.unwrap();
    assert_eq!(
        outcome.requeued,
        vec![key.clone()],
        "once, though listed twice"
    );
    assert_eq!(
        outcome.enqueue,
        vec![
            (key.clone(), Priority::Interactive),
            (TaskRef::new(job.job_id.clone(), "b"), Priority::Interactive)
        ],
        "the resumed job's dispatchable tasks, by id"
    );
    assert_eq!(
        store
            .count_dead_among(std::slice::from_ref(&key))
            .await
            .unwrap(),
        0
    );
    assert!(
        store
            .dead_letters(10_000)
            .await
            .unwrap()
            .iter()
            .all(|d| d.job_id != job.job_id)
    );
    let task = task_of(&**store, &key).await;
    assert_eq!(
        (task.status, task.attempt, task.dead_lettered_at),
        (TaskStatus::Queued, 2, None)
    );
    assert_eq!(task.attempt_limit, 4, "two more attempts");
    assert_eq!(task.redispatch_at, Some(at.plus(TIMING.orphan_after)));
    let resumed = job_of(&**store, &job.job_id).await;
    assert_eq!(
        (resumed.status, resumed.message.clone(), resumed.dead_tasks),
        (JobStatus::Running, None, 0)
    );
    assert_eq!(store.count_dead_letters().await.unwrap(), 0);

    // Requeueing again is a no-op: it is no longer a dead letter.
    assert!(
        store
            .requeue_dead(std::slice::from_ref(&key), at, TIMING)
            .await
            .unwrap()
            .requeued
            .is_empty()
    );
    assert!(
        store
            .requeue_dead(&listed, at.plus(secs(1)), TIMING)
            .await
            .unwrap()
            .requeued
            .is_empty()
    );

    // max_retries 1 again: two more attempts, then dead once more at attempt 4.
    for attempt in 3..=4 {
        let a = assign(&**store, &key, "w1", at).await;
        assert_eq!(a.attempt, attempt);
        reported(&**store, &key, &a.lease_id, ReportStatus::Failed, at).await;
    }
    let task = task_of(&**store, &key).await;
    assert_eq!((task.status, task.attempt), (TaskStatus::Failed, 4));
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Failed
    );
}

/// A job with several dead tasks stays failed, and dispatches nothing, until every one is requeued.
pub async fn failed_jobs_dispatch_nothing_until_every_dead_task_is_requeued(
    store: &Arc<dyn Store>,
) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("a", &[], 0, 60),
            task_spec("b", &[], 0, 60),
            task_spec("c", &[], 0, 60),
        ],
        t0(),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let now = t0().plus(secs(1));
    let a = assign(&**store, &key("a"), "w1", now).await;
    let b = assign(&**store, &key("b"), "w1", now).await;
    reported(&**store, &key("a"), &a.lease_id, ReportStatus::Failed, now).await;
    assert_eq!(
        store
            .assign(&key("c"), "w1", "n", now, TIMING)
            .await
            .unwrap(),
        None,
        "the failed job is paused"
    );
    let effects = reported(&**store, &key("b"), &b.lease_id, ReportStatus::Failed, now).await;
    assert_eq!(effects.failure, Some(AttemptOutcome::DeadLettered));
    assert_eq!(
        store
            .count_dead_among(&[key("a"), key("b"), key("c")])
            .await
            .unwrap(),
        2
    );

    let outcome = store.requeue_dead(&[key("a")], now, TIMING).await.unwrap();
    assert_eq!(outcome.requeued, vec![key("a")]);
    assert!(outcome.enqueue.is_empty(), "b is still dead");
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Failed
    );
    assert_eq!(
        store
            .assign(&key("a"), "w1", "n", now, TIMING)
            .await
            .unwrap(),
        None
    );

    let outcome = store.requeue_dead(&[key("b")], now, TIMING).await.unwrap();
    assert_eq!(outcome.requeued, vec![key("b")]);
    let mut enqueued: Vec<_> = outcome
        .enqueue
        .into_iter()
        .map(|(t, _)| t.task_id)
        .collect();
    enqueued.sort();
    assert_eq!(enqueued, vec!["a", "b", "c"]);
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Running
    );
    for id in ["a", "b", "c"] {
        let a = assign(&**store, &key(id), "w1", now).await;
        reported(
            &**store,
            &key(id),
            &a.lease_id,
            ReportStatus::Completed,
            now,
        )
        .await;
    }
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Completed
    );
}

/// Dead letters list oldest first, honouring `limit`.
pub async fn dead_letters_list_oldest_first(store: &Arc<dyn Store>) {
    let mut mine = Vec::new();
    for i in 0..3u64 {
        let (job, key) = single(&**store, 0, 60).await;
        let at = t0().plus(secs(100 + i));
        let a = assign(&**store, &key, "w1", at).await;
        reported(&**store, &key, &a.lease_id, ReportStatus::Failed, at).await;
        mine.push(job.job_id);
    }
    let listed: Vec<_> = store
        .dead_letters(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| mine.contains(&d.job_id))
        .collect();
    assert_eq!(
        listed.iter().map(|d| d.job_id.clone()).collect::<Vec<_>>(),
        mine
    );
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].dead_lettered_at <= w[1].dead_lettered_at)
    );
    assert_eq!(store.dead_letters(2).await.unwrap().len(), 2);
}

/// A discarded dead letter stays `Failed`, leaves the dead-letter queue for good (it can be
/// neither listed nor requeued), and its job stays failed with one dead task fewer; tasks that
/// are not dead letters are skipped.
pub async fn discarded_dead_letters_stay_failed_and_leave_the_queue_for_good(
    store: &Arc<dyn Store>,
) {
    let job = insert_abc(&**store).await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    let now = t0().plus(secs(1));
    for _ in 0..2 {
        let a = assign(&**store, &key, "w1", now).await;
        reported(&**store, &key, &a.lease_id, ReportStatus::Failed, now).await;
    }
    let (other_job, other) = single(&**store, 0, 60).await;
    let o = assign(&**store, &other, "w1", now).await;
    reported(&**store, &other, &o.lease_id, ReportStatus::Failed, now).await;
    assert_eq!(store.count_dead_letters().await.unwrap(), 2);

    let queued = TaskRef::new(job.job_id.clone(), "b");
    let unknown = TaskRef::new(JobId::new("job-missing"), "a");
    let at = t0().plus(secs(5));
    let listed = [queued.clone(), key.clone(), unknown, key.clone()];
    let discarded = store.discard_dead(&listed, at).await.unwrap();
    assert_eq!(discarded, vec![key.clone()], "once, though listed twice");
    let task = task_of(&**store, &key).await;
    assert_eq!(
        (task.status, task.dead_lettered_at, task.updated_at),
        (TaskStatus::Failed, None, at)
    );
    assert_eq!(task_of(&**store, &queued).await.status, TaskStatus::Queued);
    let failed = job_of(&**store, &job.job_id).await;
    assert_eq!((failed.status, failed.dead_tasks), (JobStatus::Failed, 0));
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    let left: Vec<TaskRef> = store
        .dead_letters(100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| TaskRef::new(d.job_id, d.task_id))
        .collect();
    assert_eq!(left, vec![other.clone()]);

    // For good: no requeue, no second discard, and the job dispatches nothing.
    assert!(
        store
            .requeue_dead(std::slice::from_ref(&key), at, TIMING)
            .await
            .unwrap()
            .requeued
            .is_empty()
    );
    assert!(
        store
            .discard_dead(std::slice::from_ref(&key), at)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .count_dead_among(std::slice::from_ref(&key))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Failed
    );
    assert_eq!(
        job_of(&**store, &other_job.job_id).await.dead_tasks,
        1,
        "another job's dead letter is untouched"
    );
}
