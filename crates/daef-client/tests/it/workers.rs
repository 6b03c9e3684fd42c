//! The worker protocol: register, heartbeat, poll, report.

use daef_client::Error;
use daef_client::model::{
    JobSubmission, Registration, ReportStatus, RunningAttempt, TaskFilter, TaskReport,
};
use daef_core::model::{JobStatus, TaskStatus, WorkerCapabilities, WorkerStats};

use crate::gateway::Gateway;

fn report(worker: &str, a: &daef_client::model::Assignment, status: ReportStatus) -> TaskReport {
    TaskReport {
        worker_id: worker.into(),
        job_id: a.job_id.clone(),
        task_id: a.task_id.clone(),
        lease_id: a.lease_id.clone(),
        idempotency_key: Some(format!("{}-report", a.lease_id)),
        status,
        output_artifact_uri: Some(format!("s3://out/{}", a.task_id)),
        error: None,
        duration_millis: Some(5),
    }
}

#[tokio::test]
async fn a_worker_runs_the_analysis_chain_to_completion() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    let job = c
        .submit_job(&JobSubmission::new("chat", "analyze this"))
        .await
        .unwrap()
        .job_id;

    let registered = c
        .register_worker(&Registration {
            worker_id: "w-1".into(),
            capabilities: WorkerCapabilities {
                cpu: Some(8),
                models: vec!["llama".into()],
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert!(registered.accepted);
    assert!(registered.heartbeat_interval_seconds >= 1);

    for expected in ["t1-split", "t2-embed", "t3-summarize"] {
        let mut got = c.poll("w-1", 10).await.unwrap();
        assert_eq!(got.len(), 1, "one task at a time: each unlocks the next");
        let a = got.remove(0);
        assert_eq!((a.task_id.as_str(), a.attempt), (expected, 1));
        assert!(a.lease_expires.is_some());
        let stats = WorkerStats {
            running_tasks: Some(1),
            health: Some("ok".into()),
            ..Default::default()
        };
        let held = RunningAttempt {
            job_id: a.job_id.clone(),
            task_id: a.task_id.clone(),
            lease_id: a.lease_id.clone(),
        };
        let stale = RunningAttempt {
            lease_id: "lease-9-gone".into(),
            ..held.clone()
        };
        let ack = c.heartbeat("w-1", &stats, &[held, stale]).await.unwrap();
        assert_eq!(ack.leases_extended, 1);
        assert_eq!(
            ack.stop_leases,
            ["lease-9-gone"],
            "only the lease it no longer holds"
        );
        let r = report("w-1", &a, ReportStatus::Completed);
        assert!(c.report(&r).await.unwrap().accepted);
        assert!(
            c.report(&r).await.unwrap().accepted,
            "a repeated report is answered 200"
        );
    }
    assert!(c.poll("w-1", 10).await.unwrap().is_empty());
    let done = c.job(&job).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(
        done.result_artifact_uri.as_deref(),
        Some("s3://out/t3-summarize")
    );
    let tasks = c
        .tasks(
            &job,
            &TaskFilter {
                worker_id: Some("w-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        tasks
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed)
    );
}

#[tokio::test]
async fn protocol_errors_are_typed() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    let stats = WorkerStats::default();
    assert!(
        matches!(c.heartbeat("ghost", &stats, &[]).await, Err(Error::NotFound(m)) if m == "worker not found")
    );
    assert!(matches!(c.poll("ghost", 1).await, Err(Error::NotFound(_))));
    assert!(
        matches!(c.poll("ghost", 0).await, Err(Error::BadRequest(m)) if m.contains("max_tasks"))
    );
    let bad = Registration {
        worker_id: "no spaces".into(),
        ..Default::default()
    };
    assert!(
        matches!(c.register_worker(&bad).await, Err(Error::BadRequest(m)) if m.contains("worker_id"))
    );

    c.submit_job(&JobSubmission::new("chat", "hello"))
        .await
        .unwrap();
    c.register_worker(&Registration {
        worker_id: "w-1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let a = c.poll("w-1", 1).await.unwrap().remove(0);
    let mut stale = report("w-1", &a, ReportStatus::Failed);
    stale.lease_id.push('x');
    assert!(matches!(c.report(&stale).await, Err(Error::Conflict(m)) if m == "stale lease"));
    let mut failed = report("w-1", &a, ReportStatus::Failed);
    failed.error = Some("boom".into());
    c.report(&failed).await.unwrap();
    let mut again = failed.clone();
    again.idempotency_key = Some("another".into());
    assert!(
        matches!(c.report(&again).await, Err(Error::Conflict(m)) if m == "task is not running")
    );
    let mut unknown = failed.clone();
    unknown.task_id = "nope".into();
    assert!(matches!(c.report(&unknown).await, Err(Error::NotFound(m)) if m == "task not found"));
}
