//! Runs a job end to end inside one process: the engine over the in-memory store and queue, a
//! "worker" loop that polls and reports, an operator requeueing a dead letter, and an offline
//! check of the audit chain. No sockets, no servers.
//!
//! cargo run -p daef-core --example in_process

use std::sync::Arc;

use daef_core::audit::{self, AuditDraft};
use daef_core::model::{JobStatus, Report, ReportStatus, TaskRef};
use daef_core::planner::JobSpec;
use daef_core::ports::{AuditQuery, ReportOutcome, TaskQuery};
use daef_core::{Engine, EngineConfig, Timestamp};
use daef_queue::MemoryQueue;
use daef_store::MemoryStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::default(),
    );
    let mut now = Timestamp::now();

    // "analyze" in the input selects the three-task chain t1-split -> t2-embed -> t3-summarize.
    let spec = JobSpec {
        job_type: "chat".into(),
        input: "Analyze 500 support tickets".into(),
        ..JobSpec::default()
    };
    let job = engine.submit(&spec, "default", now).await?;
    println!("submitted {} ({})", job.job_id, job.status);

    engine
        .register_worker("worker-1", &Default::default(), now)
        .await?;
    let mut fail_once = true;
    loop {
        let assignments = engine.poll("worker-1", 10, now).await?;
        if assignments.is_empty() {
            if engine.job(&job.job_id).await?.status.is_terminal() {
                break;
            }
            // A failed attempt is retried after its back-off (up to a second for the first
            // retry by default): let time pass, and the reconciler releases it when due.
            now = now.plus(std::time::Duration::from_millis(250));
            engine.reconcile(now).await;
            continue;
        }
        for a in assignments {
            // The embedding step fails on its first attempt, to show a retry.
            let failed = a.task_id == "t2-embed" && std::mem::take(&mut fail_once);
            let report = Report {
                worker_id: "worker-1".into(),
                task: TaskRef::new(a.job_id.clone(), a.task_id.clone()),
                lease_id: a.lease_id.clone(),
                idempotency_key: Some(format!("{}-{}", a.task_id, a.attempt)),
                status: if failed {
                    ReportStatus::Failed
                } else {
                    ReportStatus::Completed
                },
                output_artifact_uri: Some(format!("mem://{}/{}", a.job_id, a.task_id)),
                error: failed.then(|| "transient embedding error".into()),
                duration_millis: Some(3),
            };
            let outcome = engine.report(&report, now).await?;
            assert!(matches!(outcome, ReportOutcome::Applied(_)));
            println!(
                "  {} attempt {} -> {:?}",
                a.task_id, a.attempt, report.status
            );
        }
    }

    let done = engine.job(&job.job_id).await?;
    println!(
        "job {} is {}; result at {}",
        done.job_id,
        done.status,
        done.result_artifact_uri.as_deref().unwrap_or("-")
    );
    assert_eq!(done.status, JobStatus::Completed);
    for task in engine
        .tasks(&job.job_id, &TaskQuery::default())
        .await?
        .items
    {
        println!(
            "  {:<13} {:<10} attempts={}",
            task.task_id, task.status, task.attempt
        );
    }

    // An audit trail: append two events, then verify the chain from the listing alone.
    for action in ["dead_letter_list", "job_cancel"] {
        let draft = AuditDraft {
            action: action.into(),
            actor: "anonymous".into(),
            tenant: "default".into(),
            remote_addr: "in-process".into(),
            resource: job.job_id.to_string(),
            payload_hash: audit::payload_hash(b""),
            requested: 1,
            result: "ok".into(),
            details: "example".into(),
        };
        engine.audit(draft, now).await?;
    }
    let mut events = engine
        .list_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await?;
    events.reverse();
    let verdict = audit::verify(&events);
    println!(
        "audit chain: ok={} checked={} head={}",
        verdict.ok, verdict.checked, verdict.head_hash
    );
    assert!(verdict.ok);
    Ok(())
}
