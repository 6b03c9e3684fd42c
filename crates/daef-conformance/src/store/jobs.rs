//! Jobs as stored: insert and read back, id conflicts, listing jobs and tasks, cancel.

use std::sync::Arc;

use daef_core::model::{JobId, JobStatus, ReportStatus, Task, TaskRef, TaskStatus};
use daef_core::ports::{IdempotencyKey, JobQuery, KeyedInsert, Store, TaskQuery};
use daef_core::transition::CancelOutcome;
use daef_core::{Error, Timestamp};

use super::{
    TIMING, assign, insert, job_of, job_spec, reported, secs, single, t0, task_of, task_spec,
    uuid_suffix,
};

/// A stored job reads back field for field; its tasks come back sorted by id.
pub async fn insert_then_read_back(store: &Arc<dyn Store>) {
    store.ping().await.expect("ping");
    let (job, tasks) = insert(
        &**store,
        "acme",
        vec![
            task_spec("b", &["a"], 1, 30),
            task_spec("a", &[], 2, 60),
            task_spec("c", &["a", "b"], 0, 60),
        ],
        t0(),
    )
    .await;
    assert_eq!(job_of(&**store, &job.job_id).await, job);
    let page = store
        .list_tasks(&job.job_id, &TaskQuery::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.total, 3);
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

/// Inserting a job id twice is a conflict and changes nothing, whether the second job is the same
/// or differs.
pub async fn duplicate_job_id_conflicts(store: &Arc<dyn Store>) {
    let (job, tasks) = insert(&**store, "acme", vec![task_spec("a", &[], 2, 60)], t0()).await;
    let again = store.insert_job(&job, &tasks).await.unwrap_err();
    assert!(matches!(again, Error::Conflict(_)), "{again:?}");
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
            ..JobQuery::default()
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
    assert_eq!(all.total, 5);
    assert_eq!(all.items.len(), 2);
    assert!(
        all.items[0].job_id > all.items[1].job_id,
        "newest first across tenants"
    );

    // With tenant A's newest job canceled: a status within one tenant, a status across tenants,
    // and pages over the whole store (which holds only this behaviour's jobs).
    store
        .cancel_job(&ids[4], t0().plus(secs(10)))
        .await
        .unwrap();
    let list = |q: JobQuery| {
        let store = store.clone();
        async move {
            let page = store.list_jobs(&q).await.unwrap();
            (
                page.total,
                page.items.into_iter().map(|j| j.job_id).collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        list(JobQuery {
            tenants: only(&[&tenant_a]),
            limit: 10,
            ..JobQuery::default()
        })
        .await,
        (3, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]),
        "a canceled job is still listed"
    );
    assert_eq!(
        list(JobQuery {
            tenants: only(&[&tenant_a]),
            status: Some(JobStatus::Queued),
            limit: 10,
            ..JobQuery::default()
        })
        .await,
        (1, vec![ids[0].clone()])
    );
    assert_eq!(
        list(JobQuery {
            status: Some(JobStatus::Running),
            limit: 10,
            ..JobQuery::default()
        })
        .await,
        (1, vec![ids[2].clone()])
    );
    assert_eq!(
        list(JobQuery {
            limit: 10,
            ..JobQuery::default()
        })
        .await,
        (5, newest_first)
    );
    assert_eq!(
        list(JobQuery {
            limit: 2,
            offset: 1,
            ..JobQuery::default()
        })
        .await,
        (5, vec![ids[3].clone(), ids[2].clone()])
    );
    assert_eq!(
        list(JobQuery {
            limit: 10,
            offset: 50,
            ..JobQuery::default()
        })
        .await,
        (5, vec![])
    );
}

/// Keyset pages (`before`) walk every job once, newest first, within the filters; a capped
/// total stops counting at its cap.
pub async fn list_jobs_by_key_and_capped_totals(store: &Arc<dyn Store>) {
    let tenant = format!("tk-{}", uuid_suffix());
    let other = format!("to-{}", uuid_suffix());
    let mut ids = Vec::new();
    for i in 0..7 {
        let owner = if i == 3 { &other } else { &tenant };
        let (job, _) = insert(&**store, owner, vec![task_spec("a", &[], 2, 60)], t0()).await;
        if i != 3 {
            ids.push(job.job_id);
        }
    }
    ids.reverse();
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_jobs(&JobQuery {
                tenants: Some(vec![tenant.clone()]),
                limit: 4,
                before: before.clone(),
                total_up_to: Some(5),
                ..JobQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, 5, "six jobs match, counted up to five");
        let Some(last) = page.items.last() else { break };
        before = Some(last.job_id.clone());
        walked.extend(page.items.into_iter().map(|j| j.job_id));
    }
    assert_eq!(walked, ids, "every job of the tenant once, newest first");

    let below_newest = store
        .list_jobs(&JobQuery {
            status: Some(JobStatus::Queued),
            limit: 100,
            before: Some(ids[0].clone()),
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(below_newest.total, 7, "an uncapped total ignores the key");
    assert_eq!(below_newest.items.len(), 6);
    assert!(below_newest.items.iter().all(|j| j.job_id < ids[0]));

    let capped = store
        .list_jobs(&JobQuery {
            limit: 0,
            total_up_to: Some(100),
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (capped.total, capped.items.len()),
        (7, 0),
        "a cap above the count"
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

    // Sorted in byte order, not by a collation: upper case before lower, punctuation by code
    // point, "t10" before "t2". Filters combine.
    let names = ["b", "B", "a-1", "a1", "a_1", "a.1", "t10", "t2"];
    let (odd, _) = insert(
        &**store,
        "acme",
        names.iter().map(|id| task_spec(id, &[], 2, 60)).collect(),
        t0(),
    )
    .await;
    let at = t0().plus(secs(1));
    assign(&**store, &TaskRef::new(odd.job_id.clone(), "a1"), "w1", at).await;
    assign(&**store, &TaskRef::new(odd.job_id.clone(), "t2"), "w2", at).await;
    let list = |q: TaskQuery| {
        let store = store.clone();
        let id = odd.job_id.clone();
        async move {
            let page = store.list_tasks(&id, &q).await.unwrap().unwrap();
            let ids: Vec<String> = page.items.into_iter().map(|t| t.task_id).collect();
            (page.total, ids)
        }
    };
    let mut sorted: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        ["B", "a-1", "a.1", "a1", "a_1", "b", "t10", "t2"],
        "byte order"
    );
    assert_eq!(list(TaskQuery::default()).await, (8, sorted.clone()));
    assert_eq!(
        list(TaskQuery {
            limit: Some(3),
            offset: 2,
            ..TaskQuery::default()
        })
        .await,
        (8, sorted[2..5].to_vec())
    );
    assert_eq!(
        list(TaskQuery {
            status: Some(TaskStatus::Running),
            ..TaskQuery::default()
        })
        .await,
        (2, vec!["a1".into(), "t2".into()])
    );
    assert_eq!(
        list(TaskQuery {
            worker_id: Some("w2".into()),
            ..TaskQuery::default()
        })
        .await,
        (1, vec!["t2".into()])
    );
    assert_eq!(
        list(TaskQuery {
            status: Some(TaskStatus::Queued),
            worker_id: Some("w2".into()),
            ..TaskQuery::default()
        })
        .await,
        (0, vec![])
    );
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
    reported(
        &**store,
        &key("a"),
        &a.lease_id,
        ReportStatus::Completed,
        now,
    )
    .await;
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
    assert_eq!(canceled.message.as_deref(), Some("canceled"));
    // The running task and the waiting one alike: no lease, nothing to re-enqueue.
    for id in ["b", "c"] {
        let t = task_of(&**store, &key(id)).await;
        assert_eq!(
            (t.status, t.lease_expires, t.redispatch_at, t.updated_at),
            (TaskStatus::Canceled, None, None, at),
            "{id}"
        );
    }
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
    reported(&**store, &key, &a.lease_id, ReportStatus::Completed, now).await;
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

/// Under an idempotency key a job is stored once: a repeat with the same body is answered with
/// the first job, another body is a conflict, another tenant's key is its own, and an expired
/// key names the next job. Concurrent submits with one key store one job.
pub async fn keyed_inserts_store_one_job_per_key_until_it_expires(store: &Arc<dyn Store>) {
    let tenant = format!("tk-{}", uuid_suffix());
    let spec = job_spec(vec![task_spec("a", &[], 1, 60)]);
    let make = |tenant: &str| {
        daef_core::transition::create_job(&spec, tenant, t0(), TIMING).expect("valid job")
    };
    let key = |tenant: &str, hash: &str, expires: Timestamp| IdempotencyKey {
        tenant: tenant.to_owned(),
        key: "order-42".to_owned(),
        body_hash: hash.to_owned(),
        expires_at: expires,
    };
    let day = t0().plus(secs(86_400));
    let (first, tasks) = make(&tenant);
    assert_eq!(
        store
            .insert_job_keyed(&first, &tasks, &key(&tenant, "h1", day), t0())
            .await
            .unwrap(),
        KeyedInsert::Inserted
    );
    let (again, tasks) = make(&tenant);
    assert_eq!(
        store
            .insert_job_keyed(&again, &tasks, &key(&tenant, "h1", day), t0().plus(secs(5)))
            .await
            .unwrap(),
        KeyedInsert::Replayed(first.job_id.clone())
    );
    assert!(
        store.job(&again.job_id).await.unwrap().is_none(),
        "nothing stored"
    );
    assert_eq!(
        store
            .insert_job_keyed(&again, &tasks, &key(&tenant, "h2", day), t0().plus(secs(5)))
            .await
            .unwrap(),
        KeyedInsert::Conflict(first.job_id.clone())
    );
    assert!(store.job(&again.job_id).await.unwrap().is_none());

    let other = format!("to-{}", uuid_suffix());
    let (theirs, tasks) = make(&other);
    assert_eq!(
        store
            .insert_job_keyed(&theirs, &tasks, &key(&other, "h1", day), t0())
            .await
            .unwrap(),
        KeyedInsert::Inserted,
        "keys are per tenant"
    );

    // Expired: the key names the next job, with its own body.
    let (later, tasks) = make(&tenant);
    let next_day = day.plus(secs(86_400));
    assert_eq!(
        store
            .insert_job_keyed(&later, &tasks, &key(&tenant, "h3", next_day), day)
            .await
            .unwrap(),
        KeyedInsert::Inserted
    );
    assert!(store.job(&later.job_id).await.unwrap().is_some());
    let (repeat, tasks) = make(&tenant);
    assert_eq!(
        store
            .insert_job_keyed(
                &repeat,
                &tasks,
                &key(&tenant, "h3", next_day),
                day.plus(secs(1))
            )
            .await
            .unwrap(),
        KeyedInsert::Replayed(later.job_id.clone())
    );

    // Racing submits with one fresh key: one job.
    let racing = format!("tr-{}", uuid_suffix());
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let (job, tasks) = make(&racing);
            let key = key(&racing, "h1", day);
            tokio::spawn(async move { store.insert_job_keyed(&job, &tasks, &key, t0()).await })
        })
        .collect();
    let mut inserted = 0;
    let mut replayed = std::collections::HashSet::new();
    for t in tries {
        match t.await.expect("task").expect("insert") {
            KeyedInsert::Inserted => inserted += 1,
            KeyedInsert::Replayed(id) => {
                replayed.insert(id);
            }
            KeyedInsert::Conflict(id) => panic!("same body, conflict on {id}"),
        }
    }
    assert_eq!(inserted, 1);
    assert!(replayed.len() <= 1, "every repeat names the one job");
    let stored = store
        .list_jobs(&JobQuery {
            tenants: Some(vec![racing]),
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.total, 1);
    if let Some(id) = replayed.into_iter().next() {
        assert_eq!(stored.items[0].job_id, id);
    }
}
