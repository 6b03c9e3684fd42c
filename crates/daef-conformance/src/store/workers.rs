//! Workers: registration and heartbeats, which extend a worker's live leases.

use std::sync::Arc;

use daef_core::model::{WorkerCapabilities, WorkerStats};
use daef_core::ports::Store;

use super::{TIMING, assign, secs, single, t0, task_of, uuid_suffix};

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
