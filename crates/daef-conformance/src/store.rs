//! The store suite: every behaviour the engine relies on from a [`Store`], as plain async
//! functions. Each backend runs all of them through [`store_suite!`](crate::store_suite).
//!
//! Each function builds its own jobs (fresh time-ordered ids), so the suite can share one store
//! between functions if a backend wants to; time is passed explicitly and never slept on.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use daef_core::audit::{self, AuditDraft};
use daef_core::model::{
    Job, JobId, JobStatus, Priority, Report, ReportStatus, Task, TaskRef, TaskStatus,
    WorkerCapabilities, WorkerStats,
};
use daef_core::planner::{JobSpec, TaskSpec};
use daef_core::ports::{AuditQuery, JobQuery, ReportOutcome, Store, TaskQuery};
use daef_core::transition::{self, AttemptOutcome, CancelOutcome, Timing};
use daef_core::{Error, Resource, Timestamp};

/// Lease 15 s, orphan re-enqueue after 10 s: the gateway's defaults.
pub const TIMING: Timing = Timing {
    lease: Duration::from_secs(15),
    orphan_after: Duration::from_secs(10),
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fixed starting time for a test, so expected timestamps can be computed exactly.
fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-26T10:00:00.000001Z").expect("valid timestamp")
}

/// A task of an explicit DAG.
pub fn task_spec(id: &str, deps: &[&str], max_retries: u32, timeout_sec: u32) -> TaskSpec {
    TaskSpec {
        task_id: id.to_owned(),
        task_type: "echo".to_owned(),
        inputs: BTreeMap::from([("k".to_owned(), id.to_owned())]),
        dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
        max_retries: Some(max_retries),
        timeout_sec: Some(timeout_sec),
    }
}

/// Stores a job with the given tasks for `tenant` and returns it.
pub async fn insert(
    store: &dyn Store,
    tenant: &str,
    tasks: Vec<TaskSpec>,
    now: Timestamp,
) -> (Job, Vec<Task>) {
    let spec = JobSpec {
        job_type: "test".to_owned(),
        input: "input".to_owned(),
        policy: None,
        priority: Priority::Interactive,
        tasks: Some(tasks),
    };
    let (job, tasks) = transition::create_job(&spec, tenant, now, TIMING).expect("valid job");
    store.insert_job(&job, &tasks).await.expect("insert job");
    (job, tasks)
}

async fn single(store: &dyn Store, max_retries: u32, timeout_sec: u32) -> (Job, TaskRef) {
    let (job, _) = insert(
        store,
        "acme",
        vec![task_spec("a", &[], max_retries, timeout_sec)],
        t0(),
    )
    .await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    (job, key)
}

async fn job_of(store: &dyn Store, id: &JobId) -> Job {
    store.job(id).await.expect("get job").expect("job exists")
}

async fn task_of(store: &dyn Store, key: &TaskRef) -> Task {
    let page = store
        .list_tasks(&key.job_id, &TaskQuery::default())
        .await
        .expect("list tasks")
        .expect("job exists");
    page.items
        .into_iter()
        .find(|t| t.task_id == key.task_id)
        .expect("task exists")
}

async fn assign(
    store: &dyn Store,
    key: &TaskRef,
    worker: &str,
    now: Timestamp,
) -> daef_core::model::Assignment {
    store
        .assign(key, worker, &transition::lease_nonce(), now, TIMING)
        .await
        .expect("assign")
        .unwrap_or_else(|| panic!("{key} should be assignable"))
}

fn report(key: &TaskRef, lease_id: &str, status: ReportStatus) -> Report {
    Report {
        worker_id: "w1".to_owned(),
        task: key.clone(),
        lease_id: lease_id.to_owned(),
        idempotency_key: None,
        status,
        output_artifact_uri: (status == ReportStatus::Completed)
            .then(|| format!("file:///out/{}", key.task_id)),
        error: (status == ReportStatus::Failed).then(|| "boom".to_owned()),
        duration_millis: Some(5),
    }
}

async fn apply(store: &dyn Store, r: &Report, now: Timestamp) -> ReportOutcome {
    store.report(r, now, TIMING).await.expect("report")
}

fn applied(outcome: ReportOutcome) -> daef_core::ports::ReportEffects {
    match outcome {
        ReportOutcome::Applied(effects) => effects,
        other => panic!("expected the report to apply, got {other:?}"),
    }
}

fn draft(action: &str, actor: &str, tenant: &str, result: &str) -> AuditDraft {
    AuditDraft {
        action: action.to_owned(),
        actor: actor.to_owned(),
        tenant: tenant.to_owned(),
        remote_addr: "127.0.0.1:4000".to_owned(),
        resource: "/v1/admin/queue/dead-letter".to_owned(),
        payload_hash: audit::payload_hash(br#"{"tasks":[]}"#),
        requested: 1,
        result: result.to_owned(),
        details: "details with \"quotes\" and, commas".to_owned(),
    }
}

/// A stored job reads back field for field; its tasks come back sorted by id.
pub async fn insert_then_read_back(store: &Arc<dyn Store>) {
    let (job, tasks) = insert(
        &**store,
        "acme",
        vec![task_spec("b", &["a"], 1, 30), task_spec("a", &[], 2, 60)],
        t0(),
    )
    .await;
    assert_eq!(job_of(&**store, &job.job_id).await, job);
    let page = store
        .list_tasks(&job.job_id, &TaskQuery::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.total, 2);
    let mut expected = tasks.clone();
    expected.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(page.items, expected);
    assert_eq!(store.job(&JobId::new("job-missing")).await.unwrap(), None);
    assert_eq!(
        store
            .list_tasks(&JobId::new("job-missing"), &TaskQuery::default())
            .await
            .unwrap(),
        None
    );
}

/// Inserting a job id twice is a conflict and changes nothing.
pub async fn duplicate_job_id_conflicts(store: &Arc<dyn Store>) {
    let (job, tasks) = insert(&**store, "acme", vec![task_spec("a", &[], 2, 60)], t0()).await;
    let mut changed = job.clone();
    changed.tenant = "other".to_owned();
    let err = store.insert_job(&changed, &tasks).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(job_of(&**store, &job.job_id).await, job);
}

/// Jobs list newest first; status and tenant filters, totals, limit and offset.
pub async fn list_jobs_filters_and_pages(store: &Arc<dyn Store>) {
    let tenant_a = format!("ta-{}", uuid_suffix());
    let tenant_b = format!("tb-{}", uuid_suffix());
    let mut ids = Vec::new();
    for i in 0..5 {
        let tenant = if i % 2 == 0 { &tenant_a } else { &tenant_b };
        let (job, _) = insert(&**store, tenant, vec![task_spec("a", &[], 2, 60)], t0()).await;
        ids.push(job.job_id);
    }
    // Make one of tenant A's jobs Running.
    assign(&**store, &TaskRef::new(ids[2].clone(), "a"), "w1", t0()).await;

    let only = |tenants: &[&String]| Some(tenants.iter().map(|t| (*t).clone()).collect::<Vec<_>>());
    let page = store
        .list_jobs(&JobQuery {
            tenants: only(&[&tenant_a]),
            limit: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    let got: Vec<_> = page.items.iter().map(|j| j.job_id.clone()).collect();
    assert_eq!(
        got,
        vec![ids[4].clone(), ids[2].clone(), ids[0].clone()],
        "newest first"
    );

    let page = store
        .list_jobs(&JobQuery {
            tenants: only(&[&tenant_a]),
            limit: 1,
            offset: 1,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(
        page.items
            .iter()
            .map(|j| j.job_id.clone())
            .collect::<Vec<_>>(),
        vec![ids[2].clone()]
    );

    let running = store
        .list_jobs(&JobQuery {
            tenants: only(&[&tenant_a]),
            status: Some(JobStatus::Running),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(running.total, 1);
    assert_eq!(running.items[0].job_id, ids[2]);
    assert_eq!(running.items[0].status, JobStatus::Running);

    let both = store
        .list_jobs(&JobQuery {
            tenants: only(&[&tenant_a, &tenant_b]),
            limit: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(both.total, 5);
    let got: Vec<_> = both.items.iter().map(|j| j.job_id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);

    let none = store
        .list_jobs(&JobQuery {
            tenants: Some(vec![]),
            limit: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));

    let all = store
        .list_jobs(&JobQuery {
            limit: 2,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert!(all.total >= 5);
    assert_eq!(all.items.len(), 2);
    assert!(
        all.items[0].job_id > all.items[1].job_id,
        "newest first across tenants"
    );
}

/// A job's tasks list sorted by id, filtered by status and worker, with limit and offset.
pub async fn list_tasks_filters_and_pages(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("c", &[], 2, 60),
            task_spec("a", &[], 2, 60),
            task_spec("b", &[], 2, 60),
        ],
        t0(),
    )
    .await;
    assign(&**store, &TaskRef::new(job.job_id.clone(), "b"), "w9", t0()).await;
    let list = |q: TaskQuery| {
        let store = store.clone();
        let id = job.job_id.clone();
        async move { store.list_tasks(&id, &q).await.unwrap().unwrap() }
    };
    let ids = |p: &daef_core::ports::Page<Task>| {
        p.items
            .iter()
            .map(|t| t.task_id.clone())
            .collect::<Vec<_>>()
    };

    let all = list(TaskQuery::default()).await;
    assert_eq!(
        (all.total, ids(&all)),
        (3, vec!["a".into(), "b".into(), "c".into()])
    );
    let queued = list(TaskQuery {
        status: Some(TaskStatus::Queued),
        ..TaskQuery::default()
    })
    .await;
    assert_eq!(
        (queued.total, ids(&queued)),
        (2, vec!["a".into(), "c".into()])
    );
    let by_worker = list(TaskQuery {
        worker_id: Some("w9".into()),
        ..TaskQuery::default()
    })
    .await;
    assert_eq!((by_worker.total, ids(&by_worker)), (1, vec!["b".into()]));
    let paged = list(TaskQuery {
        limit: Some(1),
        offset: 1,
        ..TaskQuery::default()
    })
    .await;
    assert_eq!((paged.total, ids(&paged)), (3, vec!["b".into()]));
    let past_end = list(TaskQuery {
        offset: 10,
        ..TaskQuery::default()
    })
    .await;
    assert_eq!((past_end.total, past_end.items.len()), (3, 0));
}

/// `Queued → Running`: attempt 1, a lease id naming the attempt, the lease capped by the timeout,
/// and the job `Running`.
pub async fn assign_starts_an_attempt_under_a_lease(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 2, 10).await;
    let now = t0().plus(secs(1));
    let nonce = transition::lease_nonce();
    let a = store
        .assign(&key, "w1", &nonce, now, TIMING)
        .await
        .unwrap()
        .expect("assignable");
    assert_eq!(a.job_id, job.job_id);
    assert_eq!(a.task_id, "a");
    assert_eq!(a.task_type, "echo");
    assert_eq!(a.inputs, BTreeMap::from([("k".to_owned(), "a".to_owned())]));
    assert_eq!(a.attempt, 1);
    assert_eq!(a.timeout_sec, 10);
    assert_eq!(a.lease_id, transition::lease_id(1, &nonce));
    // timeout 10 s is shorter than the 15 s lease.
    assert_eq!(a.lease_expires, now.plus(secs(10)));
    let task = task_of(&**store, &key).await;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.worker_id.as_deref(), Some("w1"));
    assert_eq!(task.lease_id.as_deref(), Some(a.lease_id.as_str()));
    assert_eq!(task.lease_expires, Some(now.plus(secs(10))));
    assert_eq!(task.started_at, Some(now));
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
    let a = assign(&**store, &key("a"), "w1", now).await;
    let effects = applied(
        apply(
            &**store,
            &report(&key("a"), &a.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assert_eq!(effects.failure, None);
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
    assert_eq!(
        task_of(&**store, &key("b")).await.redispatch_at,
        Some(now.plus(TIMING.orphan_after))
    );

    let b = assign(&**store, &key("b"), "w1", now).await;
    let effects = applied(
        apply(
            &**store,
            &report(&key("b"), &b.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assert!(effects.enqueue.is_empty(), "d still waits for c");
    assert_eq!(
        store
            .assign(&key("d"), "w1", "n", now, TIMING)
            .await
            .unwrap(),
        None
    );

    let c = assign(&**store, &key("c"), "w1", now).await;
    let effects = applied(
        apply(
            &**store,
            &report(&key("c"), &c.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
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
    let effects = applied(
        apply(
            &**store,
            &report(&key("d"), &d.lease_id, ReportStatus::Completed),
            done,
        )
        .await,
    );
    assert_eq!(effects.job_status, JobStatus::Completed);
    let job = job_of(&**store, &job.job_id).await;
    assert_eq!(job.status, JobStatus::Completed);
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
    applied(
        apply(
            &**store,
            &report(&key("b"), &b.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assert_eq!(
        job_of(&**store, &job.job_id).await.result_artifact_uri,
        None,
        "not complete yet"
    );
    let effects = applied(
        apply(
            &**store,
            &report(&key("a"), &a.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assert_eq!(effects.job_status, JobStatus::Completed);
    assert_eq!(
        job_of(&**store, &job.job_id)
            .await
            .result_artifact_uri
            .as_deref(),
        Some("file:///out/b")
    );
}

/// A failed report retries while attempts remain, then dead-letters the task and fails the job.
pub async fn failures_retry_then_dead_letter(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 1, 60).await;
    let now = t0().plus(secs(1));
    let first = assign(&**store, &key, "w1", now).await;
    let effects = applied(
        apply(
            &**store,
            &report(&key, &first.lease_id, ReportStatus::Failed),
            now,
        )
        .await,
    );
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

    let second = assign(&**store, &key, "w2", now).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_id, first.lease_id);
    let died = t0().plus(secs(2));
    let effects = applied(
        apply(
            &**store,
            &report(&key, &second.lease_id, ReportStatus::Failed),
            died,
        )
        .await,
    );
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
    let dead = store.dead_letters(1000).await.unwrap();
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
    applied(
        apply(
            &**store,
            &report(&key, &first.lease_id, ReportStatus::Failed),
            now,
        )
        .await,
    );
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
    applied(
        apply(
            &**store,
            &report(&key, &second.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
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

/// Cancel marks the job and its unfinished tasks; finished jobs are left alone.
pub async fn cancel_stops_unfinished_work(store: &Arc<dyn Store>) {
    let (job, _) = insert(
        &**store,
        "acme",
        vec![
            task_spec("a", &[], 2, 60),
            task_spec("b", &[], 2, 60),
            task_spec("c", &["a"], 2, 60),
        ],
        t0(),
    )
    .await;
    let key = |id: &str| TaskRef::new(job.job_id.clone(), id);
    let now = t0().plus(secs(1));
    let a = assign(&**store, &key("a"), "w1", now).await;
    applied(
        apply(
            &**store,
            &report(&key("a"), &a.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assign(&**store, &key("b"), "w1", now).await;
    let at = t0().plus(secs(3));
    assert_eq!(
        store.cancel_job(&job.job_id, at).await.unwrap(),
        Some(CancelOutcome::Canceled)
    );
    let statuses: Vec<_> = store
        .list_tasks(&job.job_id, &TaskQuery::default())
        .await
        .unwrap()
        .unwrap()
        .items
        .into_iter()
        .map(|t| (t.task_id, t.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("a".into(), TaskStatus::Completed),
            ("b".into(), TaskStatus::Canceled),
            ("c".into(), TaskStatus::Canceled)
        ]
    );
    let canceled = job_of(&**store, &job.job_id).await;
    assert_eq!(
        (canceled.status, canceled.updated_at),
        (JobStatus::Canceled, at)
    );
    assert_eq!(
        store.cancel_job(&job.job_id, at).await.unwrap(),
        Some(CancelOutcome::AlreadyCanceled)
    );
    assert_eq!(
        store
            .expire_leases(at.plus(secs(3600)), 1000, TIMING)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.task.job_id == job.job_id)
            .count(),
        0,
        "a canceled task holds no lease"
    );

    let (done, key) = single(&**store, 2, 60).await;
    let a = assign(&**store, &key, "w1", now).await;
    applied(
        apply(
            &**store,
            &report(&key, &a.lease_id, ReportStatus::Completed),
            now,
        )
        .await,
    );
    assert_eq!(
        store.cancel_job(&done.job_id, at).await.unwrap(),
        Some(CancelOutcome::AlreadyFinished)
    );
    assert_eq!(
        job_of(&**store, &done.job_id).await.status,
        JobStatus::Completed
    );
    assert_eq!(
        store
            .cancel_job(&JobId::new("job-missing"), at)
            .await
            .unwrap(),
        None
    );
}

/// Workers register (idempotently) and heartbeats extend only their own live leases, never past
/// the attempt's timeout.
pub async fn heartbeats_extend_live_leases_up_to_the_timeout(store: &Arc<dyn Store>) {
    let worker = format!("w-{}", uuid_suffix());
    let caps = WorkerCapabilities {
        models: vec!["m".into()],
        ..WorkerCapabilities::default()
    };
    assert!(!store.worker_exists(&worker).await.unwrap());
    store.register_worker(&worker, &caps, t0()).await.unwrap();
    store.register_worker(&worker, &caps, t0()).await.unwrap();
    assert!(store.worker_exists(&worker).await.unwrap());
    assert_eq!(
        store
            .heartbeat("w-unknown-xyz", &WorkerStats::default(), t0(), TIMING)
            .await
            .unwrap(),
        None
    );

    let (_, short) = single(&**store, 2, 20).await;
    let (_, long) = single(&**store, 2, 3600).await;
    let (_, other) = single(&**store, 2, 3600).await;
    assign(&**store, &short, &worker, t0()).await;
    assign(&**store, &long, &worker, t0()).await;
    assign(&**store, &other, "someone-else", t0()).await;
    let stats = WorkerStats {
        running_tasks: Some(2),
        health: Some("ok".into()),
        ..WorkerStats::default()
    };
    let at = t0().plus(secs(10));
    assert_eq!(
        store.heartbeat(&worker, &stats, at, TIMING).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        task_of(&**store, &short).await.lease_expires,
        Some(t0().plus(secs(20))),
        "capped by timeout"
    );
    assert_eq!(
        task_of(&**store, &long).await.lease_expires,
        Some(at.plus(TIMING.lease))
    );
    assert_eq!(
        task_of(&**store, &other).await.lease_expires,
        Some(t0().plus(TIMING.lease)),
        "not this worker's"
    );

    // Once a lease has lapsed a heartbeat no longer revives it: the reconciler owns it.
    let late = t0().plus(secs(60));
    assert_eq!(
        store
            .heartbeat(&worker, &stats, late, TIMING)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        task_of(&**store, &long).await.lease_expires,
        Some(at.plus(TIMING.lease))
    );
}

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
    applied(
        apply(
            &**store,
            &report(&key("a"), &a.lease_id, ReportStatus::Failed),
            due,
        )
        .await,
    );
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

/// A dead letter requeued by an operator gets a fresh attempt budget (the attempt counter keeps
/// counting) and its job runs again.
pub async fn requeued_dead_letters_get_a_fresh_budget(store: &Arc<dyn Store>) {
    let (job, key) = single(&**store, 1, 60).await;
    let now = t0().plus(secs(1));
    for _ in 0..2 {
        let a = assign(&**store, &key, "w1", now).await;
        applied(
            apply(
                &**store,
                &report(&key, &a.lease_id, ReportStatus::Failed),
                now,
            )
            .await,
        );
    }
    let bystander = TaskRef::new(job.job_id.clone(), "nope");
    assert_eq!(
        store
            .count_dead_among(&[key.clone(), bystander.clone()])
            .await
            .unwrap(),
        1
    );
    assert!(store.count_dead_letters().await.unwrap() >= 1);
    let at = t0().plus(secs(5));
    let outcome = store
        .requeue_dead(&[key.clone(), bystander], at, TIMING)
        .await
        .unwrap();
    assert_eq!(outcome.requeued, vec![key.clone()]);
    assert_eq!(outcome.enqueue, vec![(key.clone(), Priority::Interactive)]);
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
    assert_eq!(task.redispatch_at, Some(at.plus(TIMING.orphan_after)));
    let resumed = job_of(&**store, &job.job_id).await;
    assert_eq!(
        (resumed.status, resumed.message.clone()),
        (JobStatus::Running, None)
    );

    // Requeueing again is a no-op: it is no longer a dead letter.
    assert!(
        store
            .requeue_dead(std::slice::from_ref(&key), at, TIMING)
            .await
            .unwrap()
            .requeued
            .is_empty()
    );

    // max_retries 1 again: two more attempts, then dead once more at attempt 4.
    for attempt in 3..=4 {
        let a = assign(&**store, &key, "w1", at).await;
        assert_eq!(a.attempt, attempt);
        applied(
            apply(
                &**store,
                &report(&key, &a.lease_id, ReportStatus::Failed),
                at,
            )
            .await,
        );
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
    applied(
        apply(
            &**store,
            &report(&key("a"), &a.lease_id, ReportStatus::Failed),
            now,
        )
        .await,
    );
    assert_eq!(
        store
            .assign(&key("c"), "w1", "n", now, TIMING)
            .await
            .unwrap(),
        None,
        "the failed job is paused"
    );
    let effects = applied(
        apply(
            &**store,
            &report(&key("b"), &b.lease_id, ReportStatus::Failed),
            now,
        )
        .await,
    );
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
        applied(
            apply(
                &**store,
                &report(&key(id), &a.lease_id, ReportStatus::Completed),
                now,
            )
            .await,
        );
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
        applied(
            apply(
                &**store,
                &report(&key, &a.lease_id, ReportStatus::Failed),
                at,
            )
            .await,
        );
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

/// Audit events get ids 1, 2, 3, … linked by hash, and the chain verifies.
pub async fn audit_appends_form_one_verifiable_chain(store: &Arc<dyn Store>) {
    let mut events = Vec::new();
    for i in 0..5u64 {
        events.push(
            store
                .append_audit(
                    draft("dead_letter_list", "tok-aaaa0000", "default", "ok"),
                    t0().plus(secs(i)),
                )
                .await
                .unwrap(),
        );
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert_eq!(e.created_at, t0().plus(secs(i as u64)));
        assert_eq!(e.event_hash, audit::event_hash(e));
        let prev = if i == 0 {
            String::new()
        } else {
            events[i - 1].event_hash.clone()
        };
        assert_eq!(e.prev_hash, prev);
    }
    let chain = store.audit_chain(0, 1000).await.unwrap();
    assert_eq!(chain, events);
    assert_eq!(
        store.audit_chain(2, 2).await.unwrap(),
        events[2..4].to_vec()
    );
    assert!(store.audit_chain(5, 10).await.unwrap().is_empty());
    let v = audit::verify(&chain);
    assert!(v.ok, "{v:?}");
    assert_eq!(
        (v.checked, v.head_hash.clone()),
        (5, events[4].event_hash.clone())
    );
}

/// Concurrent appends still produce one linear chain.
pub async fn concurrent_audit_appends_never_fork(store: &Arc<dyn Store>) {
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .append_audit(
                    draft(
                        "dead_letter_requeue",
                        &format!("tok-{i:08x}"),
                        "default",
                        "ok",
                    ),
                    t0().plus(secs(i)),
                )
                .await
                .unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let chain = store.audit_chain(0, 10_000).await.unwrap();
    assert_eq!(chain.len(), 200);
    let v = audit::verify(&chain);
    assert!(v.ok, "{v:?}");
}

/// Audit listing: newest first, exact filters, inclusive time range, limit and offset.
pub async fn audit_list_filters_newest_first(store: &Arc<dyn Store>) {
    let rows = [
        ("dead_letter_list", "tok-1", "default", "ok"),
        ("dead_letter_requeue", "tok-1", "default", "dry_run"),
        ("dead_letter_requeue", "tok-2", "acme", "ok"),
        ("job_cancel", "tok-2", "acme", "noop"),
        ("dead_letter_requeue", "tok-1", "acme", "rate_limited"),
    ];
    for (i, (action, actor, tenant, result)) in rows.iter().enumerate() {
        store
            .append_audit(
                draft(action, actor, tenant, result),
                t0().plus(secs(i as u64)),
            )
            .await
            .unwrap();
    }
    let ids = |q: AuditQuery| {
        let store = store.clone();
        async move {
            store
                .list_audit(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 50,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(ids(q(|_| {})).await, vec![5, 4, 3, 2, 1]);
    assert_eq!(
        ids(q(|q| q.action = Some("dead_letter_requeue".into()))).await,
        vec![5, 3, 2]
    );
    assert_eq!(ids(q(|q| q.actor = Some("tok-2".into()))).await, vec![4, 3]);
    assert_eq!(
        ids(q(|q| q.tenant = Some("acme".into()))).await,
        vec![5, 4, 3]
    );
    assert_eq!(ids(q(|q| q.result = Some("ok".into()))).await, vec![3, 1]);
    assert_eq!(
        ids(q(|q| {
            q.action = Some("dead_letter_requeue".into());
            q.tenant = Some("acme".into());
            q.result = Some("ok".into())
        }))
        .await,
        vec![3]
    );
    assert_eq!(
        ids(q(|q| {
            q.from = Some(t0().plus(Duration::from_secs(1)));
            q.to = Some(t0().plus(Duration::from_secs(3)))
        }))
        .await,
        vec![4, 3, 2]
    );
    assert_eq!(
        ids(q(|q| {
            q.limit = 2;
            q.offset = 1
        }))
        .await,
        vec![4, 3]
    );
    assert_eq!(
        ids(q(|q| q.actor = Some("tok-nobody".into()))).await,
        Vec::<u64>::new()
    );
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

fn uuid_suffix() -> String {
    JobId::generate()
        .as_str()
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Expands to one test per store behaviour. `$make` is an `async fn() -> Option<F>` where `F` is
/// an `Arc<dyn Store>` or an `(Arc<dyn Store>, guard)` pair (see [`crate::Fixture`]); `None` means
/// the backend is not available here (the factory says why).
#[macro_export]
macro_rules! store_suite {
    ($make:path) => {
        $crate::store_suite!(@cases $make;
            insert_then_read_back,
            duplicate_job_id_conflicts,
            list_jobs_filters_and_pages,
            list_tasks_filters_and_pages,
            assign_starts_an_attempt_under_a_lease,
            assign_refuses_what_is_not_dispatchable,
            assign_many_decides_each_task_on_its_own,
            concurrent_assigners_never_double_assign,
            completion_unlocks_dependents_and_completes_the_job,
            result_is_the_chosen_sinks_output_whatever_finishes_last,
            failures_retry_then_dead_letter,
            stale_and_unassigned_reports_change_nothing,
            repeated_reports_are_idempotent,
            reports_on_canceled_jobs_change_nothing,
            reports_for_unknown_tasks_are_not_found,
            cancel_stops_unfinished_work,
            heartbeats_extend_live_leases_up_to_the_timeout,
            lapsed_leases_retry_then_dead_letter,
            unclaimed_dispatchable_tasks_are_orphans_with_back_off,
            orphan_back_off_is_capped,
            requeued_dead_letters_get_a_fresh_budget,
            failed_jobs_dispatch_nothing_until_every_dead_task_is_requeued,
            dead_letters_list_oldest_first,
            audit_appends_form_one_verifiable_chain,
            concurrent_audit_appends_never_fork,
            audit_list_filters_newest_first,
            racing_transitions_never_lose_an_update,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::run(async {
                    use $crate::Fixture as _;
                    let Some(fixture) = $make().await else { return };
                    $crate::store::$case(fixture.port()).await;
                });
            }
        )+
    };
}
