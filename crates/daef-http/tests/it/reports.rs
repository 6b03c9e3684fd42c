//! `POST /v1/tasks/report` and the lease rules around it (DESIGN.md invariants 4–5): retries,
//! dead-lettering, stale and missing leases, duplicates, canceled jobs, lease expiry, timeouts
//! and orphan re-enqueue, with the reconciler driven by explicit timestamps.

use std::time::Duration;

use daef_core::Timestamp;
use serde_json::{Value, json};

use crate::harness::{Harness, LEASE, OP, assert_timestamp, clock_past};

#[tokio::test]
async fn failed_reports_retry_then_dead_letter_and_fail_the_job() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("flaky").await;
    for attempt in 1..=3u64 {
        let a = h.poll_one("w").await;
        assert_eq!(a["attempt"], attempt);
        h.fail("w", &a).await;
        let task = h.task(&job, "t1").await;
        assert_eq!(task["attempt"], attempt);
        assert_eq!(task["error"], json!(format!("boom on attempt {attempt}")));
        if attempt < 3 {
            assert_eq!(
                task["status"], "Queued",
                "attempts remain after attempt {attempt}"
            );
            assert_ne!(h.job(&job).await["status"], "Failed");
        }
    }
    let task = h.task(&job, "t1").await;
    assert_eq!(task["status"], "Failed");
    let failed = h.job(&job).await;
    assert_eq!(failed["status"], "Failed");
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.contains("t1") && m.contains("boom on attempt 3")),
        "{failed}"
    );

    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            &dead[0]["job_id"],
            &dead[0]["task_id"],
            &dead[0]["tenant"],
            &dead[0]["attempt"],
            &dead[0]["error"]
        ),
        (
            &json!(job),
            &json!("t1"),
            &json!("default"),
            &json!(3),
            &json!("boom on attempt 3")
        )
    );
    assert_timestamp(&dead[0]["dead_lettered_at"]);
    assert!(
        h.poll("w", 10).await.is_empty(),
        "a dead task is not dispatched"
    );
}

#[tokio::test]
async fn explicit_max_retries_bounds_attempts() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [{"task_id": "once", "type": "t", "max_retries": 0}]}))
        .await;
    let a = h.poll_one("w").await;
    h.fail("w", &a).await;
    assert_eq!(h.job(&job).await["status"], "Failed");
    assert_eq!(h.dead_letters().await.len(), 1);

    let job = h
        .submit(json!({"type": "x", "tasks": [{"task_id": "many", "type": "t", "max_retries": 4}]}))
        .await;
    for attempt in 1..=5u64 {
        let a = h.poll_one("w").await;
        assert_eq!(
            (a["job_id"].as_str(), &a["attempt"]),
            (Some(job.as_str()), &json!(attempt))
        );
        h.fail("w", &a).await;
    }
    assert_eq!(h.job(&job).await["status"], "Failed");
    assert!(h.poll("w", 1).await.is_empty());
}

#[tokio::test]
async fn invalid_reports_are_refused_and_change_nothing() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("x").await;
    let a = h.poll_one("w").await;
    let good = Harness::report_body("w", &a, "Completed");
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().expect("object").remove(key);
        body
    };
    let before = h.snapshot().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (without("lease_id"), 400, "lease_id is required"),
        (with("lease_id", json!("")), 400, "lease_id is required"),
        (with("lease_id", Value::Null), 400, "lease_id is required"),
        (with("lease_id", json!(5)), 400, "lease_id must be a string"),
        (without("status"), 400, "status must be Completed or Failed"),
        (
            with("status", json!("Running")),
            400,
            "status must be Completed or Failed",
        ),
        (
            with("status", json!("completed")),
            400,
            "status must be Completed or Failed",
        ),
        (with("status", json!(1)), 400, "status must be a string"),
        (without("worker_id"), 400, "worker_id is required"),
        (without("job_id"), 400, "job_id is required"),
        (without("task_id"), 400, "task_id is required"),
        (with("job_id", json!(["x"])), 400, "job_id must be a string"),
        (
            with("duration_millis", json!(-1)),
            400,
            "duration_millis must be a non-negative integer",
        ),
        (
            with("duration_millis", json!("12")),
            400,
            "duration_millis must be a non-negative integer",
        ),
        (
            with("output_artifact_uri", json!(1)),
            400,
            "output_artifact_uri must be a string",
        ),
        (with("error", json!({})), 400, "error must be a string"),
        (
            with("idempotency_key", json!(1)),
            400,
            "idempotency_key must be a string",
        ),
        (with("job_id", json!("job-unknown")), 404, "job not found"),
        (with("task_id", json!("t9")), 404, "task not found"),
    ];
    for (body, status, message) in cases {
        h.send_report(&body).await.expect_error(status, message);
        h.assert_unchanged(&before, &body.to_string()).await;
    }
    for raw in [&b""[..], b"not json", b"[]"] {
        let resp = h
            .post_raw("/v1/tasks/report", raw.to_vec())
            .token(crate::harness::WRK)
            .send()
            .await;
        assert_eq!(resp.status.as_u16(), 400, "{}", resp.text);
    }
    h.assert_unchanged(&before, "non-object report bodies")
        .await;
    // The task still runs under its lease and the good report is accepted.
    h.send_report(&good).await.expect_status(200);
    assert_eq!(h.job(&job).await["status"], "Completed");
}

#[tokio::test]
async fn reports_without_the_current_lease_are_409_and_change_nothing() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "analyze", "input": "analyze this"}))
        .await;
    let a = h.poll_one("w").await;
    assert_eq!(a["task_id"], "t1-split");

    let before = h.snapshot().await;
    // Never assigned (waiting for its dependency).
    let mut never = Harness::report_body("w", &a, "Completed");
    never["task_id"] = json!("t2-embed");
    h.send_report(&never)
        .await
        .expect_error(409, "task is not running");
    // Running, but under another lease.
    let mut stale = Harness::report_body("w", &a, "Completed");
    stale["lease_id"] = json!("lease-1-00000000000000000000000000000000");
    h.send_report(&stale).await.expect_error(409, "stale lease");
    let mut stale_failed = Harness::report_body("w", &a, "Failed");
    stale_failed["lease_id"] = json!("not-a-lease");
    h.send_report(&stale_failed)
        .await
        .expect_error(409, "stale lease");
    h.assert_unchanged(&before, "409 reports").await;

    // Finished: a second report with the right lease but another key is 409, the task stays done.
    h.complete("w", &a).await;
    let before = h.snapshot().await;
    let mut again = Harness::report_body("w", &a, "Failed");
    again["idempotency_key"] = json!("another-key");
    h.send_report(&again)
        .await
        .expect_error(409, "task is not running");
    let mut no_key = Harness::report_body("w", &a, "Completed");
    no_key
        .as_object_mut()
        .expect("object")
        .remove("idempotency_key");
    h.send_report(&no_key)
        .await
        .expect_error(409, "task is not running");
    h.assert_unchanged(&before, "reports on a finished task")
        .await;
    assert_eq!(h.task(&job, "t1-split").await["status"], "Completed");
}

#[tokio::test]
async fn a_repeated_report_with_the_same_idempotency_key_is_200_and_changes_nothing() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "a", "type": "t"},
            {"task_id": "b", "type": "t", "dependencies": ["a"]},
        ]}))
        .await;

    // A completion, repeated: the dependent is enqueued once, nothing else moves.
    let a = h.poll_one("w").await;
    let report = Harness::report_body("w", &a, "Completed");
    h.send_report(&report).await.expect_status(200);
    let before = h.snapshot().await;
    for _ in 0..3 {
        let resp = h.send_report(&report).await.expect_status(200);
        assert_eq!(resp.json, json!({"accepted": true}));
    }
    h.assert_unchanged(&before, "duplicate completion").await;

    // A failure, repeated: one attempt consumed, not two, even after the task was retried.
    let b = h.poll_one("w").await;
    let report = Harness::report_body("w", &b, "Failed");
    h.send_report(&report).await.expect_status(200);
    let before = h.snapshot().await;
    h.send_report(&report).await.expect_status(200);
    h.assert_unchanged(&before, "duplicate failure").await;
    let task = h.task(&job, "b").await;
    assert_eq!(
        (&task["status"], &task["attempt"]),
        (&json!("Queued"), &json!(1))
    );

    let retry = h.poll_one("w").await;
    assert_eq!(retry["attempt"], 2);
    let before = h.snapshot().await;
    h.send_report(&report).await.expect_status(200);
    h.assert_unchanged(
        &before,
        "duplicate of the first attempt's report during the second",
    )
    .await;
    h.complete("w", &retry).await;
    assert_eq!(h.job(&job).await["status"], "Completed");
}

#[tokio::test]
async fn reports_for_a_canceled_job_are_200_and_change_nothing() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "a", "type": "t"},
            {"task_id": "b", "type": "t", "dependencies": ["a"]},
        ]}))
        .await;
    let a = h.poll_one("w").await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);

    let before = h.snapshot().await;
    let mut bodies = vec![
        Harness::report_body("w", &a, "Completed"),
        Harness::report_body("w", &a, "Failed"),
    ];
    let mut wrong_lease = Harness::report_body("w", &a, "Completed");
    wrong_lease["lease_id"] = json!("lease-9-whatever");
    bodies.push(wrong_lease);
    let mut never_assigned = Harness::report_body("w", &a, "Completed");
    never_assigned["task_id"] = json!("b");
    bodies.push(never_assigned);
    for body in bodies {
        let resp = h.send_report(&body).await.expect_status(200);
        assert_eq!(resp.json, json!({"accepted": true}));
        h.assert_unchanged(&before, &body.to_string()).await;
    }
    let job_now = h.job(&job).await;
    assert_eq!(job_now["status"], "Canceled");
    assert!(job_now.get("result_artifact_uri").is_none());
}

#[tokio::test]
async fn an_expired_lease_consumes_an_attempt_and_its_reports_are_409() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("slow").await;
    let first = h.poll_one("w").await;

    // Not yet: the lease still runs.
    let summary = h.reconcile_after(LEASE - Duration::from_secs(2)).await;
    assert_eq!(summary.leases_expired, 0);
    assert_eq!(h.task(&job, "t1").await["status"], "Running");

    let summary = h.reconcile_after(LEASE + Duration::from_secs(1)).await;
    assert_eq!(summary.leases_expired, 1);
    let task = h.task(&job, "t1").await;
    assert_eq!(
        (&task["status"], &task["attempt"]),
        (&json!("Queued"), &json!(1))
    );
    assert_eq!(
        task["error"],
        "lease expired on attempt 1 (worker w stopped heartbeating)"
    );

    // Waiting for its retry: the old lease's report is refused.
    let before = h.snapshot().await;
    h.send_report(&Harness::report_body("w", &first, "Completed"))
        .await
        .expect_error(409, "task is not running");
    h.assert_unchanged(&before, "report under an expired lease")
        .await;

    // Retried under a new lease: the old one is now stale.
    let second = h.poll_one("w").await;
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["lease_id"], first["lease_id"]);
    let before = h.snapshot().await;
    h.send_report(&Harness::report_body("w", &first, "Completed"))
        .await
        .expect_error(409, "stale lease");
    h.assert_unchanged(&before, "report under the previous lease")
        .await;
    h.complete("w", &second).await;
    assert_eq!(h.job(&job).await["status"], "Completed");
}

#[tokio::test]
async fn expired_leases_count_towards_dead_lettering() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("abandoned").await;
    for attempt in 1..=3u64 {
        let a = h.poll_one("w").await;
        assert_eq!(a["attempt"], attempt);
        assert_eq!(
            h.reconcile_after(LEASE + Duration::from_secs(1))
                .await
                .leases_expired,
            1
        );
    }
    assert_eq!(h.job(&job).await["status"], "Failed");
    let dead = h.dead_letters().await;
    assert_eq!((dead.len(), &dead[0]["attempt"]), (1, &json!(3)));
}

#[tokio::test]
async fn heartbeats_extend_leases_but_never_past_the_timeout() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "long", "type": "t", "timeout_sec": 600},
            {"task_id": "short", "type": "t", "timeout_sec": 5},
        ]}))
        .await;
    let assigned = h.poll("w", 2).await;
    assert_eq!(assigned.len(), 2);
    let lease_of = |task_id: &str| {
        let a = assigned
            .iter()
            .find(|a| a["task_id"] == task_id)
            .expect("assigned");
        assert_timestamp(&a["lease_expires"])
    };
    let (long_lease, short_lease) = (lease_of("long"), lease_of("short"));
    // The short task's lease is cut to its timeout (5 s < 15 s).
    assert!(
        short_lease < long_lease,
        "{short_lease:?} vs {long_lease:?}"
    );

    clock_past(long_lease.minus(LEASE)).await;
    let resp = h
        .post_json("/v1/workers/w/heartbeat", &json!({"running_tasks": 2}))
        .token(crate::harness::WRK)
        .send()
        .await;
    assert_eq!(resp.expect_status(200).json["accepted"], true);
    let long_now = assert_timestamp(&h.task(&job, "long").await["lease_expires"]);
    let short_now = assert_timestamp(&h.task(&job, "short").await["lease_expires"]);
    assert!(
        long_now > long_lease,
        "heartbeat extends the lease: {long_now:?} > {long_lease:?}"
    );
    assert_eq!(
        short_now, short_lease,
        "never past started_at + timeout_sec"
    );

    // At the old deadline the extended lease survives; the short task times out.
    let summary = h.app.engine().reconcile(long_lease).await;
    assert_eq!(summary.leases_expired, 1);
    assert_eq!(h.task(&job, "long").await["status"], "Running");
    let short = h.task(&job, "short").await;
    assert_eq!(
        (&short["status"], &short["error"]),
        (&json!("Queued"), &json!("attempt 1 timed out after 5s"))
    );
}

#[tokio::test]
async fn the_reconciler_re_enqueues_tasks_the_queue_lost() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("lost").await;
    // Lose every queue reference, as a Redis FLUSHALL would.
    let queue = h.app.engine().queue();
    let claims = queue
        .claim(100, Timestamp::now(), Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1);
    queue
        .ack(&claims.iter().map(|c| c.receipt.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");
    assert!(h.poll("w", 1).await.is_empty());

    // Not yet orphaned.
    assert_eq!(
        h.reconcile_after(Duration::from_secs(5))
            .await
            .orphans_requeued,
        0
    );
    assert!(h.poll("w", 1).await.is_empty());
    // Past DAEF_ORPHAN_REQUEUE_SECONDS (10 s): enqueued again, and the store hands it out once.
    assert_eq!(
        h.reconcile_after(Duration::from_secs(11))
            .await
            .orphans_requeued,
        1
    );
    let a = h.poll_one("w").await;
    assert_eq!(
        (a["job_id"].as_str(), &a["attempt"]),
        (Some(job.as_str()), &json!(1))
    );
}

#[tokio::test]
async fn duplicate_queue_references_are_harmless() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("dispatched twice").await;
    // The reconciler enqueues the unclaimed task again while its first reference still waits.
    assert_eq!(
        h.reconcile_after(Duration::from_secs(11))
            .await
            .orphans_requeued,
        1
    );
    assert_eq!(
        h.app
            .engine()
            .queue()
            .pending_count()
            .await
            .expect("pending"),
        2
    );
    let got = h.poll("w", 5).await;
    assert_eq!(got.len(), 1, "one assignment for two references: {got:?}");
    assert_eq!(got[0]["job_id"], job.as_str());
    // The stale reference was acknowledged and dropped, not recycled.
    assert_eq!(
        h.app
            .engine()
            .queue()
            .pending_count()
            .await
            .expect("pending"),
        0
    );
    assert!(h.poll("w", 5).await.is_empty());
}

#[tokio::test]
async fn a_claim_that_was_never_acknowledged_returns_after_its_visibility() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("claimed by a gateway that died").await;
    let queue = h.app.engine().queue();
    let claims = queue
        .claim(1, Timestamp::now(), Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1);
    assert!(h.poll("w", 1).await.is_empty(), "invisible while claimed");
    let summary = h.reconcile_after(Duration::from_secs(31)).await;
    assert_eq!(summary.claims_requeued, 1);
    assert_eq!(h.poll_one("w").await["job_id"], job.as_str());
}
