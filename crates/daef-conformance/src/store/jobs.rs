//! Jobs as stored: insert and read back, id conflicts, listing jobs and tasks, cancel.

use std::sync::Arc;

use daef_core::Error;
use daef_core::model::{JobId, JobStatus, ReportStatus, Task, TaskRef, TaskStatus};
use daef_core::ports::{JobQuery, Store, TaskQuery};
use daef_core::transition::CancelOutcome;

use super::{
    TIMING, applied, apply, assign, insert, job_of, report, secs, single, t0, task_spec,
    uuid_suffix,
};

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
