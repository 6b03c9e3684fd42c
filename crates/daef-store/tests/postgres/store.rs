//! One test per area of the `Store` port: each method's result and the state it leaves.

use daef_core::model::{JobId, TaskStatus, WorkerCapabilities, WorkerStats};
use daef_core::ports::{Store, TaskQuery};
use daef_core::transition::AttemptOutcome;

use crate::common::{at, env, job, task_ref, timing};

async fn task(store: &dyn Store, job: &str, task: &str) -> daef_core::model::Task {
    store
        .list_tasks(&JobId::new(job), &TaskQuery::default())
        .await
        .expect("list")
        .expect("job exists")
        .items
        .into_iter()
        .find(|t| t.task_id == task)
        .expect("task exists")
}

#[tokio::test]
async fn lapsed_leases_consume_an_attempt() {
    let Some(env) = env().await else { return };
    let store = &env.store;
    let (j, tasks) = job(
        "job-1",
        "acme",
        &[
            ("slow", &[], 2, 10),
            ("a-gone", &[], 0, 60),
            ("b-fine", &[], 2, 60),
        ],
        at(0),
        timing(),
    );
    store.insert_job(&j, &tasks).await.expect("insert");
    for t in ["slow", "a-gone", "b-fine"] {
        store
            .assign(&task_ref("job-1", t), "w1", "n", at(0), timing())
            .await
            .expect("assign");
    }
    store
        .register_worker("w1", &WorkerCapabilities::default(), at(0))
        .await
        .expect("register");
    assert_eq!(
        store
            .heartbeat("w1", &WorkerStats::default(), at(5), timing())
            .await
            .expect("hb"),
        Some(3)
    );
    assert_eq!(
        store
            .expire_leases(at(9), 10, timing())
            .await
            .expect("expire"),
        vec![],
        "nothing lapsed yet"
    );

    // slow hits its 10 s timeout (the heartbeat could not carry it further); the others' leases
    // run to 20 s.
    let first = store
        .expire_leases(at(10), 1, timing())
        .await
        .expect("expire");
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].task.task_id.as_str(),
            first[0].reason,
            first[0].outcome
        ),
        ("slow", "timeout", AttemptOutcome::Retry)
    );
    assert_eq!(
        first[0].enqueue,
        Some((
            task_ref("job-1", "slow"),
            daef_core::model::Priority::Interactive
        ))
    );
    assert_eq!(first[0].worker_id, "w1");
    let slow = task(store, "job-1", "slow").await;
    assert_eq!(
        (slow.status, slow.error.as_deref(), slow.redispatch_at),
        (
            TaskStatus::Queued,
            Some("attempt 1 timed out after 10s"),
            Some(at(20))
        )
    );

    let (k, tasks) = job("job-2", "acme", &[("gone", &[], 0, 60)], at(0), timing());
    store.insert_job(&k, &tasks).await.expect("insert");
    store
        .assign(&task_ref("job-2", "gone"), "w9", "n", at(0), timing())
        .await
        .expect("assign");
    let second = store
        .expire_leases(at(21), 10, timing())
        .await
        .expect("expire");
    let got: Vec<(String, &str, AttemptOutcome)> = second
        .iter()
        .map(|e| (e.task.to_string(), e.reason, e.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "job-2|gone".into(),
                "lease_expired",
                AttemptOutcome::DeadLettered
            ),
            (
                "job-1|a-gone".into(),
                "lease_expired",
                AttemptOutcome::DeadLettered
            ),
            (
                "job-1|b-fine".into(),
                "lease_expired",
                AttemptOutcome::Retry
            ),
        ],
        "oldest deadline first, then by task"
    );
    // a-gone failed job-1 earlier in the same pass: b-fine is not re-dispatched.
    assert_eq!(second[2].enqueue, None);
    assert_eq!(task(store, "job-1", "b-fine").await.redispatch_at, None);
    let gone = task(store, "job-2", "gone").await;
    assert_eq!(
        gone.error.as_deref(),
        Some("lease expired on attempt 1 (worker w9 stopped heartbeating)")
    );
    assert_eq!(
        store
            .job(&k.job_id)
            .await
            .expect("job")
            .expect("job")
            .message
            .as_deref(),
        Some(
            "task gone failed after 1 attempts: lease expired on attempt 1 (worker w9 stopped heartbeating)"
        )
    );
    assert!(
        store
            .expire_leases(at(100), 10, timing())
            .await
            .expect("expire")
            .is_empty()
    );
}

#[tokio::test]
async fn orphans_are_taken_oldest_first_with_back_off() {
    let Some(env) = env().await else { return };
    let store = &env.store;
    let (j, tasks) = job(
        "job-1",
        "acme",
        &[("a", &[], 2, 60), ("b", &[], 2, 60), ("c", &["a"], 2, 60)],
        at(0),
        timing(),
    );
    store.insert_job(&j, &tasks).await.expect("insert");
    let (k, tasks) = job("job-0", "acme", &[("z", &[], 2, 60)], at(1), timing());
    store.insert_job(&k, &tasks).await.expect("insert");

    assert!(
        store
            .take_orphans(at(9), 10, timing())
            .await
            .expect("take")
            .is_empty()
    );
    let refs = |d: Vec<daef_core::ports::Dispatch>| {
        d.into_iter()
            .map(|(r, _)| r.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refs(store.take_orphans(at(11), 2, timing()).await.expect("take")),
        ["job-1|a", "job-1|b"]
    );
    assert_eq!(
        refs(
            store
                .take_orphans(at(11), 10, timing())
                .await
                .expect("take")
        ),
        ["job-0|z"]
    );
    let a = task(store, "job-1", "a").await;
    assert_eq!(
        (a.redispatch_count, a.redispatch_at),
        (1, Some(at(31))),
        "10 s × 2"
    );
    // An assignment ends a task's re-dispatch; only a is left to watch.
    store
        .assign(&task_ref("job-1", "b"), "w1", "n", at(12), timing())
        .await
        .expect("assign");
    store
        .assign(&task_ref("job-0", "z"), "w1", "n", at(12), timing())
        .await
        .expect("assign");
    assert_eq!(task(store, "job-1", "b").await.redispatch_at, None);
    let mut when = 31;
    for (count, factor) in [(2u32, 4u64), (3, 8), (4, 8), (5, 8), (6, 8), (7, 8)] {
        let taken = refs(
            store
                .take_orphans(at(when), 1, timing())
                .await
                .expect("take"),
        );
        assert_eq!(taken, ["job-1|a"]);
        let a = task(store, "job-1", "a").await;
        assert_eq!(a.redispatch_count, count);
        assert_eq!(
            a.redispatch_at,
            Some(at(when + 10 * factor)),
            "back-off caps at 32×"
        );
        when += 10 * factor;
    }
}
