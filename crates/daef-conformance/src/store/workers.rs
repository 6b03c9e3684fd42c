//! Workers: registration and heartbeats, which extend a worker's live leases.

use std::sync::Arc;

use daef_core::model::{Gpu, JobId, ReportStatus, TaskRef, WorkerCapabilities, WorkerStats};
use daef_core::ports::Store;

use super::{TIMING, assign, reported, secs, single, t0, task_of, uuid_suffix};

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
    // Registering again later, with other capabilities, is fine too.
    store
        .register_worker(&worker, &WorkerCapabilities::default(), t0().plus(secs(1)))
        .await
        .unwrap();
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
    // A registered worker that holds nothing extends nothing.
    let idle = format!("w-{}", uuid_suffix());
    store.register_worker(&idle, &caps, t0()).await.unwrap();
    assert_eq!(
        store
            .heartbeat(&idle, &stats, at.plus(secs(1)), TIMING)
            .await
            .unwrap(),
        Some(0)
    );

    // A lease whose deadline is now has lapsed: the heartbeat leaves it alone.
    let deadline = at.plus(TIMING.lease);
    assert_eq!(
        store
            .heartbeat(&worker, &stats, deadline, TIMING)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(task_of(&**store, &long).await.lease_expires, Some(deadline));

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

/// Workers list by id, with what they registered and what their last heartbeat said; limit and
/// offset page through them, and the total counts them all.
pub async fn workers_list_by_id_with_their_capabilities_and_last_heartbeat(store: &Arc<dyn Store>) {
    let empty = store.list_workers(10, 0).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (0, 0));
    let caps = WorkerCapabilities {
        cpu: Some(8),
        memory: Some("32Gi".into()),
        gpu: Some(Gpu::Count(1)),
        models: vec!["llama".into()],
        tools: vec!["ffmpeg".into()],
        locality: Some("eu-1".into()),
    };
    for id in ["w-c", "w-a", "w-b"] {
        store.register_worker(id, &caps, t0()).await.unwrap();
    }
    let stats = WorkerStats {
        running_tasks: Some(3),
        health: Some("degraded".into()),
        ..WorkerStats::default()
    };
    let beat = t0().plus(secs(7));
    store.heartbeat("w-b", &stats, beat, TIMING).await.unwrap();

    let page = store.list_workers(2, 0).await.unwrap();
    assert_eq!(page.total, 3);
    let ids: Vec<_> = page.items.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(ids, ["w-a", "w-b"]);
    let b = &page.items[1];
    assert_eq!(b.capabilities, caps);
    assert_eq!(b.stats, stats);
    assert_eq!((b.registered_at, b.last_heartbeat), (t0(), beat));
    assert_eq!(page.items[0].stats, WorkerStats::default());

    let rest = store.list_workers(2, 2).await.unwrap();
    assert_eq!(rest.total, 3);
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].worker_id, "w-c");
}

/// Of the leases a worker lists, those no longer live are named, in the order given: the
/// running attempt's own lease is live; another lease of it, a canceled or finished task, and
/// an unknown task are not.
pub async fn stale_leases_are_those_no_task_runs_under(store: &Arc<dyn Store>) {
    let (_, running) = single(&**store, 2, 60).await;
    let live = assign(&**store, &running, "w1", t0()).await.lease_id;
    let (canceled_job, canceled) = single(&**store, 2, 60).await;
    let canceled_lease = assign(&**store, &canceled, "w1", t0()).await.lease_id;
    store
        .cancel_job(&canceled_job.job_id, t0().plus(secs(1)))
        .await
        .unwrap();
    let (_, finished) = single(&**store, 2, 60).await;
    let finished_lease = assign(&**store, &finished, "w1", t0()).await.lease_id;
    reported(
        &**store,
        &finished,
        &finished_lease,
        ReportStatus::Completed,
        t0().plus(secs(1)),
    )
    .await;
    let unknown = TaskRef::new(JobId::new("job-missing"), "a");
    let held = vec![
        (finished.clone(), finished_lease.clone()),
        (running.clone(), live.clone()),
        (canceled.clone(), canceled_lease.clone()),
        (running.clone(), "lease-1-not-this-one".to_owned()),
        (unknown, "lease-1-unknown".to_owned()),
    ];
    assert_eq!(
        store.stale_leases(&held).await.unwrap(),
        vec![
            finished_lease,
            canceled_lease,
            "lease-1-not-this-one".to_owned(),
            "lease-1-unknown".to_owned()
        ]
    );
    assert!(store.stale_leases(&[]).await.unwrap().is_empty());
    assert!(
        store
            .stale_leases(&[(running, live)])
            .await
            .unwrap()
            .is_empty()
    );
}
