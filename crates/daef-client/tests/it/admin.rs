//! Dead letters, the audit log (read, CSV, whole-log paging, chain check), metrics, health.

use daef_client::audit::{self, check_chain, fetch_all, to_csv};
use daef_client::model::{
    AuditFilter, JobSubmission, Registration, ReportStatus, TaskKey, TaskReport, TaskSubmission,
};
use daef_core::model::{JobId, JobStatus};

use crate::gateway::Gateway;

/// Submits a one-task job with no retries and fails its only attempt.
async fn dead_job(c: &daef_client::Client) -> JobId {
    let job = c
        .submit_job(&JobSubmission {
            job_type: "etl".into(),
            tasks: Some(vec![TaskSubmission {
                task_id: "load".into(),
                task_type: "tool_execution".into(),
                max_retries: Some(0),
                ..TaskSubmission::default()
            }]),
            ..JobSubmission::default()
        })
        .await
        .expect("submit")
        .job_id;
    c.register_worker(&Registration {
        worker_id: "w-1".into(),
        ..Default::default()
    })
    .await
    .expect("register");
    let a = c.poll("w-1", 1).await.expect("poll").remove(0);
    c.report(&TaskReport {
        worker_id: "w-1".into(),
        job_id: a.job_id,
        task_id: a.task_id,
        lease_id: a.lease_id,
        idempotency_key: None,
        status: ReportStatus::Failed,
        output_artifact_uri: None,
        error: Some("database timeout".into()),
        duration_millis: None,
    })
    .await
    .expect("report");
    job
}

#[tokio::test]
async fn dead_letters_list_dry_run_and_requeue() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    let job = dead_job(&c).await;
    assert_eq!(c.job(&job).await.unwrap().status, JobStatus::Failed);

    let dead = c.dead_letters(Some(10)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((&dead[0].job_id, dead[0].task_id.as_str()), (&job, "load"));
    assert_eq!(dead[0].error, "database timeout");

    let keys = [TaskKey {
        job_id: job.clone(),
        task_id: "load".into(),
    }];
    let dry = c.requeue_dead_letters(&keys, true, None).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!((dry.requested, dry.requeued), (1, 1));
    let done = c.requeue_dead_letters(&keys, false, None).await.unwrap();
    assert_eq!((done.dry_run, done.requested, done.requeued), (false, 1, 1));
    assert!(c.dead_letters(None).await.unwrap().is_empty());
    assert_eq!(c.job(&job).await.unwrap().status, JobStatus::Running);
}

#[tokio::test]
async fn audit_pages_csv_and_the_chain() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    // Seven audited requests: cancels of jobs that do not exist are audited as `noop`.
    for i in 0..7 {
        let _ = c.cancel_job(&JobId::new(format!("job-missing-{i}"))).await;
    }
    let page = c
        .audit(&AuditFilter {
            limit: Some(3),
            offset: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.returned, page.limit, page.offset), (3, 3, 1));
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [6, 5, 4],
        "newest first"
    );

    // Paging by 2 gathers all seven, oldest first, once each.
    let all = fetch_all(
        &c,
        &AuditFilter {
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    let noop = AuditFilter {
        result: Some("noop".into()),
        action: Some("job_cancel".into()),
        ..Default::default()
    };
    assert_eq!(fetch_all(&c, &noop).await.unwrap().len(), 7);

    // The client's CSV is the gateway's, byte for byte (the gateway pages newest first).
    let server_csv = c
        .audit_csv(&AuditFilter {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    let newest_first: Vec<_> = all.iter().rev().cloned().collect();
    assert_eq!(to_csv(&newest_first), server_csv);

    let check = check_chain(&c).await.unwrap();
    assert!(check.ok() && check.agree(), "{check:?}");
    assert_eq!(check.local.checked, 7);
    assert_eq!(check.local.head_hash, all[6].event_hash);
    assert_eq!(check.server.head_hash, all[6].event_hash);

    // Tampering with what the API returned is caught here, naming the event.
    let mut tampered = all.clone();
    tampered[3].actor = "tok-deadbeef".into();
    let (verdict, bad) = audit::verify_events(&tampered);
    assert_eq!(verdict.first_bad_id, Some(4));
    assert_eq!(bad.map(|e| e.id), Some(4));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    assert_eq!(c.health().await.unwrap().status, "ok");
    let ready = c.ready().await.unwrap();
    assert_eq!(
        (
            ready.status.as_str(),
            ready.store.as_deref(),
            ready.queue.as_deref()
        ),
        ("ready", Some("memory"), Some("memory"))
    );
    c.submit_job(&JobSubmission::new("chat", "hello"))
        .await
        .unwrap();
    let snapshot = c.metrics().await.unwrap();
    let requests = snapshot.counter_sum(
        "http_requests_total",
        &[("route", "/v1/jobs"), ("method", "POST")],
    );
    assert!(requests >= 1.0, "{snapshot:?}");
    let text = c.metrics_prometheus().await.unwrap();
    assert!(
        text.contains("# TYPE http_requests_total counter"),
        "{text}"
    );
}
