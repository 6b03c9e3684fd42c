//! The route table of DESIGN.md §4: every route's success shape (field names, timestamp form,
//! content type), unknown routes and wrong methods.

use std::sync::Arc;

use daef_http::HttpConfig;
use hyper::Method;
use serde_json::{Value, json};

use crate::fault::FaultyStore;
use crate::harness::{Harness, OP, TOKENS, WRK, assert_timestamp, keys};

#[track_caller]
fn assert_json(resp: &crate::harness::Resp) {
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.text
    );
}

#[tokio::test]
async fn every_route_answers_with_its_documented_shape() {
    let h = Harness::new();

    let resp = h.get("/healthz").send().await.expect_status(200);
    assert_json(&resp);
    assert_eq!(resp.json, json!({"status": "ok"}));

    let resp = h.get("/readyz").send().await.expect_status(200);
    assert_json(&resp);
    assert_eq!(resp.json["status"], "ready");

    // Submit: 202 with the job id.
    let resp = h
        .post_json("/v1/jobs", &json!({"type": "chat", "input": "hello"}))
        .token(OP)
        .send()
        .await
        .expect_status(202);
    assert_json(&resp);
    let job = resp.json["job_id"].as_str().expect("job_id").to_owned();
    assert!(
        job.starts_with("job-") && job.len() > 20,
        "time-ordered job id: {job}"
    );

    // List.
    let resp = h.get("/v1/jobs").token(OP).send().await.expect_status(200);
    assert_json(&resp);
    assert_eq!(
        keys(&resp.json),
        ["jobs", "limit", "offset", "returned", "total"]
    );
    assert_eq!(
        (resp.json["total"].as_u64(), resp.json["returned"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (resp.json["limit"].as_u64(), resp.json["offset"].as_u64()),
        (Some(50), Some(0))
    );
    let listed = &resp.json["jobs"][0];

    // Status: the listed job has the same shape; no message or result while it waits.
    let status = h
        .get(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(&status, listed);
    for key in ["job_id", "tenant", "status", "created_at", "updated_at"] {
        assert!(status.get(key).is_some(), "job status has {key}: {status}");
    }
    assert!(
        status.get("message").is_none() && status.get("result_artifact_uri").is_none(),
        "{status}"
    );
    assert_eq!(
        (
            status["job_id"].as_str(),
            &status["tenant"],
            &status["status"]
        ),
        (Some(job.as_str()), &json!("default"), &json!("Queued"))
    );
    assert_timestamp(&status["created_at"]);
    assert_timestamp(&status["updated_at"]);

    // Tasks: no limit/offset keys unless asked for.
    let resp = h
        .get(&format!("/v1/jobs/{job}/tasks"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(keys(&resp.json), ["job_id", "returned", "tasks", "total"]);
    let task = &resp.json["tasks"][0];
    for key in [
        "task_id",
        "type",
        "status",
        "attempt",
        "created_at",
        "updated_at",
    ] {
        assert!(task.get(key).is_some(), "task has {key}: {task}");
    }
    for key in [
        "worker_id",
        "lease_id",
        "lease_expires",
        "output_artifact_uri",
        "error",
    ] {
        assert!(
            task.get(key).is_none(),
            "a queued task has no {key}: {task}"
        );
    }
    assert_eq!(
        (&task["status"], &task["attempt"]),
        (&json!("Queued"), &json!(0))
    );
    assert_timestamp(&task["created_at"]);

    // Worker protocol.
    let resp = h
        .post_json("/v1/workers/register", &json!({"worker_id": "w-1"}))
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    // 15 s leases: heartbeat three times per lease.
    assert_eq!(
        resp.json,
        json!({"accepted": true, "heartbeat_interval_seconds": 5})
    );

    let resp = h
        .post_json("/v1/workers/w-1/heartbeat", &json!({}))
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["accepted"], true);

    let resp = h
        .get("/v1/workers/w-1/assignments")
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(keys(&resp.json), ["assignments"]);
    let assignment = resp.json["assignments"][0].clone();
    for key in ["job_id", "task_id", "type", "inputs", "attempt", "lease_id"] {
        assert!(
            assignment.get(key).is_some(),
            "assignment has {key}: {assignment}"
        );
    }
    assert_eq!(
        (&assignment["job_id"], &assignment["attempt"]),
        (&json!(job), &json!(1))
    );

    let running = h.task(&job, "t1").await;
    assert_eq!(
        (
            &running["status"],
            &running["worker_id"],
            &running["lease_id"]
        ),
        (&json!("Running"), &json!("w-1"), &assignment["lease_id"])
    );
    assert_timestamp(&running["lease_expires"]);
    assert_eq!(h.job(&job).await["status"], "Running");

    let report = Harness::report_body("w-1", &assignment, "Completed");
    let resp = h.send_report(&report).await.expect_status(200);
    assert_json(&resp);
    assert_eq!(resp.json, json!({"accepted": true}));
    let done = h.job(&job).await;
    assert_eq!(
        (&done["status"], &done["result_artifact_uri"]),
        (&json!("Completed"), &report["output_artifact_uri"])
    );
    assert_eq!(
        h.task(&job, "t1").await["output_artifact_uri"],
        report["output_artifact_uri"]
    );

    // Cancel of a completed job: not accepted.
    let resp = h
        .delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(resp.json, json!({"accepted": false}));

    // Admin.
    let resp = h
        .get("/v1/admin/queue/dead-letter")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(resp.json, json!({"tasks": []}));
    let body = json!({"tasks": [{"job_id": job, "task_id": "t1"}]});
    let resp = h
        .post_json("/v1/admin/queue/dead-letter", &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 1, "requeued": 0}));
    let body = json!({"tasks": [{"job_id": job, "task_id": "t1"}], "dry_run": true});
    let resp = h
        .post_json("/v1/admin/queue/dead-letter", &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"dry_run": true, "requested": 1, "requeued": 0})
    );

    let resp = h
        .get("/v1/admin/audit")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(keys(&resp.json), ["events", "limit", "offset", "returned"]);
    let events = resp.json["events"].as_array().expect("events");
    assert_eq!(
        events.len(),
        4,
        "cancel, list, requeue, dry run: {events:?}"
    );
    for event in events {
        assert_eq!(
            keys(event),
            [
                "action",
                "actor",
                "created_at",
                "details",
                "event_hash",
                "id",
                "payload_hash",
                "prev_hash",
                "remote_addr",
                "requested",
                "resource",
                "result",
                "tenant"
            ]
        );
        assert_timestamp(&event["created_at"]);
    }

    let resp = h
        .get("/v1/admin/audit/verify")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(
        resp.json,
        json!({"ok": true, "checked": 4, "head_hash": events[0]["event_hash"]})
    );

    let resp = h
        .get("/v1/metrics")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_json(&resp);
    assert_eq!(keys(&resp.json), ["counters", "gauges", "histograms"]);
    assert!(
        resp.json["counters"].is_array()
            && resp.json["gauges"].is_array()
            && resp.json["histograms"].is_array()
    );

    let resp = h
        .get("/v1/metrics/prometheus")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        resp.headers
    );
    assert!(resp.text.contains("# TYPE "), "{}", resp.text);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let h = Harness::new();
    let paths = [
        "/",
        "/nope",
        "/v1",
        "/v1/jobs/",
        "/v1/jobs//tasks",
        "/v1/jobs/x/tasks/y",
        "/v1/jobs/x/cancel",
        "/v2/jobs",
        "/v1/workers/w/unknown",
        "/v1/admin",
        "/v1/admin/queue",
        "/v1/admin/audit/verify/x",
        "/v1/metrics/json",
        "/healthz/",
    ];
    for path in paths {
        for token in [None, Some(OP)] {
            for method in [Method::GET, Method::POST] {
                let call = h.call(method.clone(), path);
                let call = if let Some(t) = token {
                    call.token(t)
                } else {
                    call
                };
                let resp = call.send().await;
                assert_eq!(resp.status.as_u16(), 404, "{method} {path}: {}", resp.text);
                assert_eq!(resp.json, json!({"error": "not found"}), "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let h = Harness::new();
    let cases: [(Method, &str, &str); 14] = [
        (Method::GET, "/v1/tasks/report", "POST"),
        (Method::PUT, "/v1/jobs", "GET, POST"),
        (Method::DELETE, "/v1/jobs", "GET, POST"),
        (Method::POST, "/v1/jobs/job-1", "GET, DELETE"),
        (Method::PATCH, "/v1/jobs/job-1", "GET, DELETE"),
        (Method::POST, "/v1/jobs/job-1/tasks", "GET"),
        (Method::GET, "/v1/workers/register", "POST"),
        (Method::GET, "/v1/workers/w/heartbeat", "POST"),
        (Method::POST, "/v1/workers/w/assignments", "GET"),
        (Method::DELETE, "/v1/admin/queue/dead-letter", "GET, POST"),
        (Method::POST, "/v1/admin/audit", "GET"),
        (Method::POST, "/v1/admin/audit/verify", "GET"),
        (Method::POST, "/v1/metrics", "GET"),
        (Method::POST, "/healthz", "GET"),
    ];
    for (method, path, allow) in cases {
        let resp = h.call(method.clone(), path).token(OP).send().await;
        assert_eq!(resp.status.as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.json,
            json!({"error": "method not allowed"}),
            "{method} {path}"
        );
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
    // Also without a token: the method is wrong whoever asks.
    let resp = h.call(Method::PUT, "/v1/metrics/prometheus").send().await;
    assert_eq!(
        (resp.status.as_u16(), resp.header("allow")),
        (405, Some("GET"))
    );
}

#[tokio::test]
async fn percent_encoded_ids_are_decoded_and_unknown_ones_are_404() {
    let h = Harness::new();
    let job = h.submit_simple("x").await;
    // An encoded path names the same job.
    let encoded: String = job.bytes().map(|b| format!("%{b:02X}")).collect();
    let resp = h
        .get(&format!("/v1/jobs/{encoded}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["job_id"], Value::String(job));
    h.get("/v1/jobs/job-unknown")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
    h.get("/v1/jobs/job-unknown/tasks")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
}

#[tokio::test]
async fn backend_failures_are_5xx_that_never_echo_backend_text() {
    let store = Arc::new(FaultyStore::default());
    let h = Harness::build(Some(TOKENS), HttpConfig::default(), store.clone());
    h.register("w").await;
    let job = h.submit_simple("x").await;

    // Readiness follows the store; liveness does not.
    store.fail("ping");
    h.get("/readyz")
        .send()
        .await
        .expect_error(503, "store (memory) unavailable");
    h.get("/healthz").send().await.expect_status(200);
    store.heal("ping");
    h.get("/readyz").send().await.expect_status(200);

    let cases: [(&'static str, Method, String, Option<Value>); 8] = [
        (
            "insert_job",
            Method::POST,
            "/v1/jobs".into(),
            Some(json!({"type": "chat", "input": "x"})),
        ),
        ("list_jobs", Method::GET, "/v1/jobs".into(), None),
        ("job", Method::GET, format!("/v1/jobs/{job}"), None),
        (
            "list_tasks",
            Method::GET,
            format!("/v1/jobs/{job}/tasks"),
            None,
        ),
        (
            "cancel_job",
            Method::DELETE,
            format!("/v1/jobs/{job}"),
            None,
        ),
        (
            "register_worker",
            Method::POST,
            "/v1/workers/register".into(),
            Some(json!({"worker_id": "w2"})),
        ),
        (
            "heartbeat",
            Method::POST,
            "/v1/workers/w/heartbeat".into(),
            Some(json!({})),
        ),
        (
            "worker_exists",
            Method::GET,
            "/v1/workers/w/assignments".into(),
            None,
        ),
    ];
    for (operation, method, path, body) in cases {
        store.fail(operation);
        let call = h.call(method.clone(), &path).token(OP);
        let call = if let Some(b) = &body {
            call.json(b)
        } else {
            call
        };
        let resp = call.send().await;
        store.heal(operation);
        assert_eq!(
            (resp.status.as_u16(), &resp.json),
            (500, &json!({"error": "internal error"})),
            "{operation}: {method} {path}"
        );
        assert!(
            !resp.text.contains("SECRET") && !resp.text.contains("hunter2"),
            "{}",
            resp.text
        );
    }
    // The failed cancel is on record as a no-op; the job is untouched.
    let event = h.last_audit().await;
    assert_eq!(
        (&event["action"], &event["result"], &event["details"]),
        (
            &json!("job_cancel"),
            &json!("noop"),
            &json!("internal error")
        )
    );
    assert_eq!(h.job(&job).await["status"], "Queued");
}

#[tokio::test]
async fn limits_too_large_for_any_integer_type_are_clamped_not_rejected() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("x").await;
    let huge = "99999999999999999999999999";
    let resp = h
        .get(&format!("/v1/jobs?limit={huge}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        (&resp.json["limit"], &resp.json["total"]),
        (&json!(1000), &json!(1))
    );
    let resp = h
        .get(&format!("/v1/jobs?offset={huge}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["returned"], 0);
    let resp = h
        .get(&format!("/v1/jobs/{job}/tasks?limit={huge}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["returned"], 1);
    let resp = h
        .get(&format!("/v1/admin/audit?limit={huge}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["limit"], 1000);
    h.get(&format!("/v1/admin/queue/dead-letter?limit={huge}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.last_audit().await["requested"], 1000);
    let resp = h
        .get(&format!("/v1/workers/w/assignments?max_tasks={huge}"))
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["assignments"].as_array().map(Vec::len), Some(1));
    // Still integers only.
    h.get(&format!("/v1/jobs?limit={huge}.5"))
        .token(OP)
        .send()
        .await
        .expect_error(400, "limit must be a non-negative integer");
    h.get(&format!("/v1/workers/w/assignments?max_tasks=-{huge}"))
        .token(WRK)
        .send()
        .await
        .expect_error(400, "max_tasks must be a positive integer");
}
