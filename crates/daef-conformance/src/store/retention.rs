//! Retention: old finished jobs are deleted with their tasks, in bounded batches, and expired
//! idempotency keys with them.

use std::sync::Arc;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{JobId, ReportStatus, TaskRef};
use daef_core::ports::{IdempotencyKey, Store, TaskQuery};
use daef_core::transition;

use super::{TIMING, insert, job_spec, reported, task_spec};

async fn one_task_job(store: &dyn Store, now: Timestamp) -> TaskRef {
    let (job, _) = insert(store, "acme", vec![task_spec("a", &[], 0, 60)], now).await;
    TaskRef::new(job.job_id, "a")
}

async fn run(store: &dyn Store, key: &TaskRef, status: ReportStatus, now: Timestamp) {
    let a = store
        .assign(key, "w1", &transition::lease_nonce(), now, TIMING)
        .await
        .unwrap()
        .expect("assignable");
    reported(store, key, &a.lease_id, status, now).await;
}

async fn exists(store: &dyn Store, id: &JobId) -> bool {
    store.job(id).await.unwrap().is_some()
}

/// Finished jobs (completed, canceled, failed with no dead letter left) last changed before the
/// cutoff are deleted, oldest first and at most `limit` a pass, with their tasks; unfinished
/// jobs, a failed job with a dead letter and recently finished jobs stay; expired keys go.
pub async fn retention_deletes_old_finished_jobs_and_expired_keys(store: &Arc<dyn Store>) {
    // Job ids carry the wall clock's creation time, so this behaviour runs on it.
    let base = Timestamp::now();
    let hour = Duration::from_secs(3_600);
    let completed = one_task_job(&**store, base).await;
    run(&**store, &completed, ReportStatus::Completed, base).await;
    let canceled = one_task_job(&**store, base).await;
    store.cancel_job(&canceled.job_id, base).await.unwrap();
    let discarded = one_task_job(&**store, base).await;
    run(&**store, &discarded, ReportStatus::Failed, base).await;
    store
        .discard_dead(std::slice::from_ref(&discarded), base)
        .await
        .unwrap();
    let dead = one_task_job(&**store, base).await;
    run(&**store, &dead, ReportStatus::Failed, base).await;
    let running = one_task_job(&**store, base).await;
    store
        .assign(&running, "w1", &transition::lease_nonce(), base, TIMING)
        .await
        .unwrap()
        .expect("assignable");
    let queued = one_task_job(&**store, base).await;
    let recent = one_task_job(&**store, base).await;
    run(
        &**store,
        &recent,
        ReportStatus::Completed,
        base.plus(2 * hour),
    )
    .await;
    let (job, tasks) = transition::create_job(
        &job_spec(vec![task_spec("a", &[], 0, 60)]),
        "acme",
        base,
        TIMING,
    )
    .expect("valid job");
    let key = IdempotencyKey {
        tenant: "acme".into(),
        key: "order-1".into(),
        body_hash: "h".into(),
        expires_at: base.plus(hour / 2),
    };
    store
        .insert_job_keyed(&job, &tasks, &key, base)
        .await
        .unwrap();

    let before = base.plus(hour);
    let now = base.plus(hour);
    let first = store.purge(before, now, 2).await.unwrap();
    assert_eq!(
        (first.jobs, first.keys),
        (2, 1),
        "at most the limit, oldest first"
    );
    let second = store.purge(before, now, 2).await.unwrap();
    assert_eq!((second.jobs, second.keys), (1, 0));
    assert_eq!(store.purge(before, now, 2).await.unwrap().jobs, 0);

    for gone in [&completed, &canceled, &discarded] {
        assert!(!exists(&**store, &gone.job_id).await, "{gone} is deleted");
        assert!(
            store
                .list_tasks(&gone.job_id, &TaskQuery::default())
                .await
                .unwrap()
                .is_none(),
            "with its tasks"
        );
    }
    for kept in [&dead, &running, &queued, &recent] {
        assert!(exists(&**store, &kept.job_id).await, "{kept} is kept");
    }
    assert!(
        exists(&**store, &job.job_id).await,
        "a keyed job is a job like any other"
    );
    assert_eq!(store.count_dead_letters().await.unwrap(), 1);
    // Gone jobs are gone everywhere: no lease to expire, nothing to re-enqueue.
    assert!(
        store
            .take_orphans(base.plus(10 * hour), 100, TIMING)
            .await
            .unwrap()
            .iter()
            .all(|(t, _)| t == &queued || t.job_id == job.job_id)
    );
}
