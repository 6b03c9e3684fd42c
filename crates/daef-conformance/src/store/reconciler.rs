//! What the reconciler relies on: lapsed leases consume an attempt, orphans are re-enqueued
//! with back-off.

use std::sync::Arc;
use std::time::Duration;

use daef_core::model::{
    JobId, JobStatus, Priority, ReportStatus, TaskRef, TaskStatus, WorkerCapabilities, WorkerStats,
};
use daef_core::ports::{Dispatch, ReportOutcome, Store};
use daef_core::transition::{self, AttemptOutcome};

use super::{
    TIMING, apply, assign, insert, insert_as, job_of, report, reported, secs, single, t0, task_of,
    task_spec, uuid_suffix,
};

/// Lapsed leases consume an attempt: back to `Queued` while attempts remain, dead-lettered after;
/// a lease capped by the timeout counts as a timeout. Nothing expires early; `limit` is honoured.
pub async fn lapsed_leases_retry_then_dead_letter(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 1, 3600).await;
    let worker = format!("w-{}", uuid_suffix());
    let a = assign(&**store, &key, &worker, t0()).await;
    let mine = |v: Vec<daef_core::ports::ExpiredLease>| {
        v.into_iter()
            .filter(|e| e.task.job_id == job.job_id)
            .collect::<Vec<_>>()
    };
    let early = a.lease_expires.minus(Duration::from_micros(1));
    assert!(mine(store.expire_leases(early, 1000, TIMING).await.unwrap()).is_empty());
    assert_eq!(task_of(&**store, &key).await.status, TaskStatus::Running);

    let at = a.lease_expires;
    let expired = mine(store.expire_leases(at, 1000, TIMING).await.unwrap());
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(
        (e.task.clone(), e.worker_id.as_str(), e.reason, e.outcome),
        (
            key.clone(),
            worker.as_str(),
            "lease_expired",
            AttemptOutcome::Retry
        )
    );
    assert_eq!(e.enqueue, Some((key.clone(), Priority::Interactive)));
    let task = task_of(&**store, &key).await;
    assert_eq!(
        (task.status, task.attempt, task.lease_expires),
        (TaskStatus::Queued, 1, None)
    );
    assert!(
        task.error
            .as_deref()
            .unwrap_or_default()
            .contains("lease expired"),
        "{:?}",
        task.error
    );
    assert_eq!(
        apply(
            &**store,
            &report(&key, &a.lease_id, ReportStatus::Completed),
            at
        )
        .await,
        ReportOutcome::NotRunning
    );
    assert!(
        mine(
            store
                .expire_leases(at.plus(secs(100)), 1000, TIMING)
                .await
                .unwrap()
        )
        .is_empty(),
        "expired once"
    );

    let b = assign(&**store, &key, &worker, at).await;
    let expired = mine(
        store
            .expire_leases(b.lease_expires, 1000, TIMING)
            .await
            .unwrap(),
    );
    assert_eq!(expired[0].outcome, AttemptOutcome::DeadLettered);
    assert_eq!(expired[0].enqueue, None);
    let job_now = job_of(&**store, &job.job_id).await;
    assert_eq!(job_now.status, JobStatus::Failed);
    assert_eq!(
        task_of(&**store, &key).await.dead_lettered_at,
        Some(b.lease_expires)
    );

    // Timeout: a 5 s task whose lease (capped at 5 s) lapses.
    let (_, quick) = single(&**store, 0, 5).await;
    let q = assign(&**store, &quick, &worker, t0()).await;
    assert_eq!(q.lease_expires, t0().plus(secs(5)));
    let expired = store
        .expire_leases(q.lease_expires, 1000, TIMING)
        .await
        .unwrap();
    let e = expired.iter().find(|e| e.task == quick).expect("expired");
    assert_eq!(
        (e.reason, e.outcome),
        ("timeout", AttemptOutcome::DeadLettered)
    );
    assert!(
        task_of(&**store, &quick)
            .await
            .error
            .unwrap_or_default()
            .contains("timed out after 5s")
    );

    // limit
    let (lim_job, _) = insert(
        &**store,
        "acme",
        (0..3)
            .map(|i| task_spec(&format!("t{i}"), &[], 2, 60))
            .collect(),
        t0(),
    )
    .await;
    for i in 0..3 {
        assign(
            &**store,
            &TaskRef::new(lim_job.job_id.clone(), format!("t{i}")),
            &worker,
            t0(),
        )
        .await;
    }
    let later = t0().plus(secs(61));
    let first = store.expire_leases(later, 2, TIMING).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = store.expire_leases(later, 1000, TIMING).await.unwrap();
    assert_eq!(
        rest.iter()
            .filter(|e| e.task.job_id == lim_job.job_id)
            .count()
            + first
                .iter()
                .filter(|e| e.task.job_id == lim_job.job_id)
                .count(),
        3
    );
}

/// One expiry pass takes the oldest deadlines first (then by task), at most `limit` of them, and
/// says why each lease lapsed: a timeout the heartbeat could not carry the lease past, or a worker
/// that stopped heartbeating. A task dead-lettered in a pass fails its job at once, so a task of
/// that job expiring later in the same pass is not re-enqueued.
pub async fn lapsed_leases_expire_oldest_deadline_first_and_say_why(store: &Arc<dyn Store>) {
    let at = |n: u64| t0().plus(secs(n));
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("slow", &[], 2, 10),
            task_spec("a-gone", &[], 0, 60),
            task_spec("b-fine", &[], 2, 60),
        ],
        at(0),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    for t in ["slow", "a-gone", "b-fine"] {
        assign(&**store, &key(t), "w1", at(0)).await;
    }
    store
        .register_worker("w1", &WorkerCapabilities::default(), at(0))
        .await
        .unwrap();
    assert_eq!(
        store
            .heartbeat("w1", &WorkerStats::default(), at(5), TIMING)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        store.expire_leases(at(9), 10, TIMING).await.unwrap(),
        vec![],
        "nothing lapsed yet"
    );

    // slow hits its 10 s timeout (the heartbeat could not carry it further); the others' leases
    // run to 20 s.
    let first = store.expire_leases(at(10), 1, TIMING).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].task.task_id.as_str(),
            first[0].reason,
            first[0].outcome
        ),
        ("slow", "timeout", AttemptOutcome::Retry)
    );
    assert_eq!(first[0].enqueue, Some((key("slow"), Priority::Interactive)));
    assert_eq!(first[0].worker_id, "w1");
    let slow = task_of(&**store, &key("slow")).await;
    assert_eq!(
        (slow.status, slow.error.as_deref(), slow.redispatch_at),
        (
            TaskStatus::Queued,
            Some("attempt 1 timed out after 10s"),
            Some(at(20))
        )
    );

    // Another job's lease, taken by a worker that never heartbeats, lapses first (at 15 s).
    let (other, _) = insert(&**store, "acme", vec![task_spec("gone", &[], 0, 60)], at(0)).await;
    let gone = TaskRef::new(other.job_id.clone(), "gone");
    assign(&**store, &gone, "w9", at(0)).await;
    let second = store.expire_leases(at(21), 10, TIMING).await.unwrap();
    let got: Vec<(TaskRef, &str, AttemptOutcome)> = second
        .iter()
        .map(|e| (e.task.clone(), e.reason, e.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            (gone.clone(), "lease_expired", AttemptOutcome::DeadLettered),
            (key("a-gone"), "lease_expired", AttemptOutcome::DeadLettered),
            (key("b-fine"), "lease_expired", AttemptOutcome::Retry),
        ],
        "oldest deadline first, then by task"
    );
    // a-gone failed the job earlier in the same pass: b-fine is not re-dispatched.
    assert_eq!(second[2].enqueue, None);
    assert_eq!(task_of(&**store, &key("b-fine")).await.redispatch_at, None);
    assert_eq!(
        task_of(&**store, &gone).await.error.as_deref(),
        Some("lease expired on attempt 1 (worker w9 stopped heartbeating)")
    );
    assert_eq!(
        job_of(&**store, &other.job_id).await.message.as_deref(),
        Some(
            "task gone failed after 1 attempts: lease expired on attempt 1 (worker w9 stopped heartbeating)"
        )
    );
    assert!(
        store
            .expire_leases(at(100), 10, TIMING)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Dispatchable tasks that nobody claimed come back from `take_orphans` once their deadline
/// passes, then back off; running, blocked or paused tasks never do.
pub async fn unclaimed_dispatchable_tasks_are_orphans_with_back_off(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("a", &[], 0, 60),
            task_spec("b", &["a"], 2, 60),
            task_spec("c", &[], 2, 60),
        ],
        t0(),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let mine = |v: Vec<(TaskRef, Priority)>| {
        let mut ids: Vec<String> = v
            .into_iter()
            .filter(|(t, _)| t.job_id == job.job_id)
            .map(|(t, _)| t.task_id)
            .collect();
        ids.sort();
        ids
    };
    let before = t0()
        .plus(TIMING.orphan_after)
        .minus(Duration::from_micros(1));
    assert!(mine(store.take_orphans(before, 10_000, TIMING).await.unwrap()).is_empty());
    let due = t0().plus(TIMING.orphan_after);
    assert_eq!(
        mine(store.take_orphans(due, 10_000, TIMING).await.unwrap()),
        vec!["a", "c"]
    );
    // Backed off: 2 x orphan_after after this re-enqueue.
    assert!(
        mine(
            store
                .take_orphans(due.plus(secs(19)), 10_000, TIMING)
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert_eq!(
        task_of(&**store, &key("a")).await.redispatch_at,
        Some(due.plus(secs(20)))
    );
    assign(&**store, &key("c"), "w1", due).await;
    assert_eq!(
        mine(
            store
                .take_orphans(due.plus(secs(20)), 10_000, TIMING)
                .await
                .unwrap()
        ),
        vec!["a"],
        "c was claimed"
    );

    // a dies: the job fails and nothing of it is re-enqueued any more.
    let a = assign(&**store, &key("a"), "w1", due).await;
    reported(&**store, &key("a"), &a.lease_id, ReportStatus::Failed, due).await;
    assert!(
        mine(
            store
                .take_orphans(due.plus(secs(100_000)), 10_000, TIMING)
                .await
                .unwrap()
        )
        .is_empty()
    );
}

/// The wait between re-enqueues doubles each time but never beyond
/// `orphan_after × 2^MAX_REDISPATCH_DOUBLINGS`, so a task that waited long still comes back soon
/// after the queue lost its reference.
pub async fn orphan_back_off_is_capped(store: &Arc<dyn Store>) {
    let (_, key) = single(&**store, 2, 60).await;
    let mut at = t0().plus(TIMING.orphan_after);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let taken = store.take_orphans(at, 100_000, TIMING).await.unwrap();
        assert!(taken.iter().any(|(t, _)| *t == key), "due at {at:?}");
        let next = task_of(&**store, &key)
            .await
            .redispatch_at
            .expect("still dispatchable");
        waits.push(at.seconds_until_ceil(next));
        at = next;
    }
    let cap = TIMING.orphan_after.as_secs() << transition::MAX_REDISPATCH_DOUBLINGS;
    assert_eq!(waits, vec![20, 40, cap, cap, cap, cap]);
}

/// Orphans come back oldest deadline first, whatever their job ids, at most `limit` at a time;
/// each re-enqueue is counted and backs off (2×, then 4×, then 8× `orphan_after` for good), and
/// an assignment ends it.
pub async fn orphans_are_taken_oldest_first_with_back_off(store: &Arc<dyn Store>) {
    let at = |n: u64| t0().plus(secs(n));
    // The job created later gets the smaller id, so oldest-first cannot pass for id order.
    let suffix = uuid_suffix();
    let (job, _) = insert_as(
        &**store,
        JobId::new(format!("job-1-{suffix}")),
        vec![
            task_spec("a", &[], 2, 60),
            task_spec("b", &[], 2, 60),
            task_spec("c", &["a"], 2, 60),
        ],
        at(0),
    )
    .await;
    let (late, _) = insert_as(
        &**store,
        JobId::new(format!("job-0-{suffix}")),
        vec![task_spec("z", &[], 2, 60)],
        at(1),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let z = TaskRef::new(late.job_id.clone(), "z");

    assert!(
        store
            .take_orphans(at(9), 10, TIMING)
            .await
            .unwrap()
            .is_empty()
    );
    let refs = |d: Vec<Dispatch>| d.into_iter().map(|(r, _)| r).collect::<Vec<_>>();
    assert_eq!(
        refs(store.take_orphans(at(11), 2, TIMING).await.unwrap()),
        [key("a"), key("b")]
    );
    assert_eq!(
        refs(store.take_orphans(at(11), 10, TIMING).await.unwrap()),
        std::slice::from_ref(&z)
    );
    let a = task_of(&**store, &key("a")).await;
    assert_eq!(
        (a.redispatch_count, a.redispatch_at),
        (1, Some(at(31))),
        "10 s × 2"
    );
    // An assignment ends a task's re-dispatch; only a is left to watch.
    assign(&**store, &key("b"), "w1", at(12)).await;
    assign(&**store, &z, "w1", at(12)).await;
    assert_eq!(task_of(&**store, &key("b")).await.redispatch_at, None);
    let mut when = 31;
    for (count, factor) in [(2u32, 4u64), (3, 8), (4, 8), (5, 8), (6, 8), (7, 8)] {
        let taken = refs(store.take_orphans(at(when), 1, TIMING).await.unwrap());
        assert_eq!(taken, [key("a")]);
        let a = task_of(&**store, &key("a")).await;
        assert_eq!(a.redispatch_count, count);
        assert_eq!(
            a.redispatch_at,
            Some(at(when + 10 * factor)),
            "back-off caps at 8×"
        );
        when += 10 * factor;
    }
}
