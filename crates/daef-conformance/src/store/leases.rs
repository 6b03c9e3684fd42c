//! Assignment: `Queued → Running` under a fresh lease, once, and only for dispatchable tasks.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use daef_core::model::{Job, JobId, JobStatus, Task, TaskRef, TaskStatus};
use daef_core::planner::TaskSpec;
use daef_core::ports::Store;
use daef_core::transition;

use super::{TIMING, assign, insert, job_of, secs, single, t0, task_of, task_spec};

/// `Queued → Running`: attempt 1, a lease id naming the attempt, the lease capped by the timeout,
/// and the job `Running`.
pub async fn assign_starts_an_attempt_under_a_lease(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 2, 10).await;
    let now = t0().plus(secs(1));
    let nonce = "0123abcd";
    let a = store
        .assign(&key, "w1", nonce, now, TIMING)
        .await
        .unwrap()
        .expect("assignable");
    assert_eq!(a.job_id, job.job_id);
    assert_eq!(a.task_id, "a");
    assert_eq!(a.task_type, "echo");
    assert_eq!(a.inputs, BTreeMap::from([("k".to_owned(), "a".to_owned())]));
    assert_eq!(a.attempt, 1);
    assert_eq!(a.timeout_sec, 10);
    assert_eq!(a.lease_id, transition::lease_id(1, nonce));
    assert_eq!(a.lease_id, "lease-1-0123abcd");
    // timeout 10 s is shorter than the 15 s lease.
    assert_eq!(a.lease_expires, now.plus(secs(10)));
    let task = task_of(&**store, &key).await;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.worker_id.as_deref(), Some("w1"));
    assert_eq!(task.lease_id.as_deref(), Some(a.lease_id.as_str()));
    assert_eq!(task.lease_expires, Some(now.plus(secs(10))));
    assert_eq!(task.started_at, Some(now));
    assert_eq!(task.redispatch_at, None, "claimed: nothing to re-enqueue");
    let job = job_of(&**store, &job.job_id).await;
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.updated_at, now);
}

/// A reference that is not dispatchable assigns nothing and changes nothing.
pub async fn assign_refuses_what_is_not_dispatchable(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![task_spec("a", &[], 2, 60), task_spec("b", &["a"], 2, 60)],
        t0(),
    )
    .await;
    let a = TaskRef::new(job.job_id.clone(), "a");
    let b = TaskRef::new(job.job_id.clone(), "b");
    let nonce = transition::lease_nonce();
    assert_eq!(
        store.assign(&b, "w1", &nonce, t0(), TIMING).await.unwrap(),
        None,
        "waits for a"
    );
    assert_eq!(task_of(&**store, &b).await.status, TaskStatus::Queued);
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Queued,
        "nothing changed"
    );
    assign(&**store, &a, "w1", t0()).await;
    let before = task_of(&**store, &a).await;
    assert_eq!(
        store.assign(&a, "w2", &nonce, t0(), TIMING).await.unwrap(),
        None,
        "already running"
    );
    assert_eq!(task_of(&**store, &a).await, before);
    let unknown_task = TaskRef::new(job.job_id.clone(), "zz");
    assert_eq!(
        store
            .assign(&unknown_task, "w1", &nonce, t0(), TIMING)
            .await
            .unwrap(),
        None
    );
    let unknown_job = TaskRef::new(JobId::new("job-missing"), "a");
    assert_eq!(
        store
            .assign(&unknown_job, "w1", &nonce, t0(), TIMING)
            .await
            .unwrap(),
        None
    );

    let (canceled, _) = single(&**store, 2, 60).await;
    store.cancel_job(&canceled.job_id, t0()).await.unwrap();
    let key = TaskRef::new(canceled.job_id.clone(), "a");
    assert_eq!(
        store
            .assign(&key, "w1", &nonce, t0(), TIMING)
            .await
            .unwrap(),
        None,
        "canceled job"
    );
}

/// A batch assignment decides each task on its own: dispatchable ones start (once, even when
/// claimed twice), the rest get `None`, and a job whose claims are all stale stays `Queued`.
pub async fn assign_many_decides_each_task_on_its_own(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("a", &[], 2, 60),
            task_spec("b", &["a"], 2, 60),
            task_spec("c", &[], 2, 30),
        ],
        t0(),
    )
    .await;
    let (waiting, _) = insert(
        &**store,
        "acme",
        vec![task_spec("x", &[], 2, 60), task_spec("y", &["x"], 2, 60)],
        t0(),
    )
    .await;
    let key = |job: &Job, id: &str| TaskRef::new(job.job_id.clone(), id);
    let batch: Vec<(TaskRef, String)> = [
        key(&job, "c"),
        key(&job, "b"),
        key(&waiting, "y"),
        key(&job, "a"),
        key(&job, "c"),
        TaskRef::new(JobId::new("job-missing"), "a"),
    ]
    .into_iter()
    .map(|k| (k, transition::lease_nonce()))
    .collect();
    let got: Vec<Option<daef_core::model::Assignment>> = store
        .assign_many(&batch, "w1", t0(), TIMING)
        .await
        .expect("assign_many")
        .into_iter()
        .map(|r| r.expect("each assignment"))
        .collect();
    assert_eq!(got.len(), batch.len());
    let assigned: Vec<Option<&str>> = got
        .iter()
        .map(|a| a.as_ref().map(|a| a.task_id.as_str()))
        .collect();
    assert_eq!(
        assigned,
        vec![Some("c"), None, None, Some("a"), None, None],
        "c and a once each; b and y wait for their dependencies"
    );
    for (assignment, (task, nonce)) in got.iter().zip(&batch) {
        let Some(a) = assignment else { continue };
        assert_eq!(a.job_id, task.job_id);
        assert_eq!(a.attempt, 1);
        assert_eq!(a.lease_id, transition::lease_id(1, nonce));
        let stored = task_of(&**store, task).await;
        assert_eq!(stored.status, TaskStatus::Running);
        assert_eq!(stored.worker_id.as_deref(), Some("w1"));
        assert_eq!(stored.lease_id.as_deref(), Some(a.lease_id.as_str()));
        assert_eq!(Some(a.lease_expires), stored.lease_expires);
        assert_eq!(a.timeout_sec, stored.timeout_sec);
    }
    assert_eq!(
        got[0].as_ref().map(|a| a.lease_expires),
        Some(t0().plus(secs(15)))
    );
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Running
    );
    assert_eq!(
        job_of(&**store, &waiting.job_id).await.status,
        JobStatus::Queued,
        "only stale claims: the job has not started"
    );
    assert!(
        store
            .assign_many(&[], "w1", t0(), TIMING)
            .await
            .expect("empty batch")
            .is_empty()
    );
}

/// Many assigners racing for the same tasks: each task is assigned exactly once.
pub async fn concurrent_assigners_never_double_assign(store: &Arc<dyn Store>) {
    let specs: Vec<TaskSpec> = (0..40)
        .map(|i| task_spec(&format!("t{i:02}"), &[], 2, 60))
        .collect();
    let (job, tasks) = insert(&**store, "acme", specs, t0()).await;
    let keys: Vec<TaskRef> = tasks.iter().map(Task::task_ref).collect();
    let mut handles = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        let keys = keys.clone();
        handles.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for key in keys {
                let nonce = transition::lease_nonce();
                if let Some(a) = store
                    .assign(&key, &format!("w{worker}"), &nonce, t0(), TIMING)
                    .await
                    .unwrap()
                {
                    won.push((a.task_id, a.attempt, a.lease_id));
                }
            }
            won
        }));
    }
    let mut seen = HashSet::new();
    for handle in handles {
        for (task_id, attempt, _) in handle.await.unwrap() {
            assert!(
                seen.insert((task_id.clone(), attempt)),
                "{task_id} attempt {attempt} assigned twice"
            );
        }
    }
    assert_eq!(seen.len(), 40, "every task assigned once");
    assert_eq!(
        job_of(&**store, &job.job_id).await.status,
        JobStatus::Running
    );
}
