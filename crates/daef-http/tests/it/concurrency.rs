//! Many requests at once: pollers never share an assignment, every job completes, and the audit
//! chain stays linear under concurrent admin requests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Harness, OP, first_bad_event, ids};

const POLLERS: usize = 8;
const JOBS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_pollers_never_share_an_assignment_and_every_job_completes() {
    let h = Arc::new(Harness::new());
    // Each job: a fan-out of four tasks and a join, so completions keep unblocking work while
    // the pollers race.
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let priority = if i % 3 == 0 { "batch" } else { "interactive" };
        jobs.push(
            h.submit(json!({"type": "x", "priority": priority, "tasks": [
                {"task_id": "a", "type": "t"},
                {"task_id": "b", "type": "t"},
                {"task_id": "c", "type": "t"},
                {"task_id": "d", "type": "t", "max_retries": 3},
                {"task_id": "join", "type": "t", "dependencies": ["a", "b", "c", "d"]},
            ]}))
            .await,
        );
    }
    let total_tasks = JOBS * 5;
    let handed_out: Arc<Mutex<HashSet<(String, String, u64)>>> = Arc::default();
    let completed = Arc::new(AtomicUsize::new(0));

    let mut pollers = Vec::new();
    for p in 0..POLLERS {
        let (h, handed_out, completed) = (h.clone(), handed_out.clone(), completed.clone());
        pollers.push(tokio::spawn(async move {
            let worker = format!("racer-{p}");
            h.register(&worker).await;
            let started = Instant::now();
            while completed.load(Ordering::SeqCst) < total_tasks {
                let got = h.poll(&worker, 1 + p % 3).await;
                if got.is_empty() {
                    let done = completed.load(Ordering::SeqCst);
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{worker} starved with {done} of {total_tasks} done"
                    );
                    tokio::task::yield_now().await;
                    continue;
                }
                for a in got {
                    let key = (
                        a["job_id"].as_str().expect("job_id").to_owned(),
                        a["task_id"].as_str().expect("task_id").to_owned(),
                        a["attempt"].as_u64().expect("attempt"),
                    );
                    assert!(
                        handed_out.lock().expect("lock").insert(key.clone()),
                        "handed out twice: {key:?}"
                    );
                    // `d` fails its first attempt, exercising retries under contention.
                    if key.1 == "d" && key.2 == 1 {
                        h.fail(&worker, &a).await;
                    } else {
                        h.complete(&worker, &a).await;
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for poller in pollers {
        poller.await.expect("poller");
    }

    assert_eq!(completed.load(Ordering::SeqCst), total_tasks);
    assert_eq!(
        handed_out.lock().expect("lock").len(),
        total_tasks + JOBS,
        "one retry per job"
    );
    let done = h
        .get("/v1/jobs?status=Completed&limit=1000")
        .token(OP)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(done["total"], JOBS);
    for job in &jobs {
        let d = h.task(job, "d").await;
        assert_eq!(
            (&d["status"], &d["attempt"]),
            (&json!("Completed"), &json!(2))
        );
    }
    assert_eq!(
        h.app
            .engine()
            .queue()
            .pending_count()
            .await
            .expect("pending"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_requests_keep_one_linear_audit_chain() {
    let h = Arc::new(Harness::new());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => h.get("/v1/admin/queue/dead-letter").token(OP).send().await.expect_status(200),
                1 => h.post_json("/v1/admin/queue/dead-letter", &json!({"tasks": [{"job_id": "j", "task_id": format!("t{i}")}], "dry_run": true}))
                    .token(OP)
                    .send()
                    .await
                    .expect_status(200),
                _ => h.delete(&format!("/v1/jobs/job-{i}")).token(OP).send().await.expect_status(404),
            };
        }));
    }
    for t in tasks {
        t.await.expect("request");
    }
    let events: Vec<Value> = h.audit().await;
    assert_eq!(ids(&events), (1..=64).rev().collect::<Vec<u64>>());
    assert_eq!(first_bad_event(&events), None);
    let verify = h
        .get("/v1/admin/audit/verify")
        .token(OP)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(
        (&verify["ok"], &verify["checked"]),
        (&json!(true), &json!(64))
    );
}
