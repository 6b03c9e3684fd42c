//! Input that no backend can store, or that names nothing: a NUL character anywhere, a tenant
//! header that is not text. Each gets a clear 4xx naming what is wrong, and nothing changes.
//! (daef-system-tests sends the same requests to Postgres and Redis gateways.)

use serde_json::{Value, json};

use crate::harness::{Harness, OP, WRK};

const NUL: &str = "a\u{0}b";

#[tokio::test]
async fn a_nul_character_in_any_body_field_is_refused_naming_it() {
    let h = Harness::new();
    h.register("w").await;
    h.submit(json!({"type": "x", "tasks": [{"task_id": "a", "type": "t"}]}))
        .await;
    let running = h.poll_one("w").await;
    let before = h.snapshot().await;

    let report = |field: &str, status: &str| {
        let mut body = Harness::report_body("w", &running, status);
        body[field] = json!(NUL);
        body
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "/v1/jobs",
            json!({"type": "chat", "input": NUL}),
            OP,
            "input",
        ),
        ("/v1/jobs", json!({"type": NUL, "input": "x"}), OP, "type"),
        (
            "/v1/jobs",
            json!({"type": "chat", "input": "x", "policy": NUL}),
            OP,
            "policy",
        ),
        (
            "/v1/jobs",
            json!({"type": "x", "tasks": [{"task_id": "a", "type": "t", "inputs": {"k": NUL}}]}),
            OP,
            "tasks[0].inputs.k",
        ),
        (
            "/v1/workers/register",
            json!({"worker_id": "w2", "locality": NUL}),
            WRK,
            "locality",
        ),
        (
            "/v1/workers/register",
            json!({"worker_id": "w2", "models": ["m", NUL]}),
            WRK,
            "models[1]",
        ),
        (
            "/v1/workers/w/heartbeat",
            json!({"health": NUL}),
            WRK,
            "health",
        ),
        (
            "/v1/tasks/report",
            report("job_id", "Completed"),
            WRK,
            "job_id",
        ),
        ("/v1/tasks/report", report("error", "Failed"), WRK, "error"),
        (
            "/v1/tasks/report",
            report("output_artifact_uri", "Completed"),
            WRK,
            "output_artifact_uri",
        ),
    ];
    for (path, body, token, field) in cases {
        h.post_json(path, &body)
            .token(token)
            .send()
            .await
            .expect_error(400, &format!("{field} must not contain NUL characters"));
    }
    h.assert_unchanged(&before, "bodies with NUL characters")
        .await;
    h.post_json("/v1/workers/w2/heartbeat", &json!({}))
        .token(WRK)
        .send()
        .await
        .expect_error(404, "worker not found");

    // A dead-letter request is audited even when refused.
    let body = json!({"tasks": [{"job_id": NUL, "task_id": "t"}]});
    h.post_json("/v1/admin/queue/dead-letter", &body)
        .token(OP)
        .send()
        .await
        .expect_error(400, "tasks[0].job_id must not contain NUL characters");
    let event = h
        .assert_unchanged_but_audited(&before, "a requeue with a NUL")
        .await;
    assert_eq!(
        (&event["action"], &event["result"]),
        (&json!("dead_letter_requeue"), &json!("rejected"))
    );

    // The worker whose error text held a NUL is not stuck: a clean report is taken.
    h.fail("w", &running).await;
    assert_eq!(
        h.task(running["job_id"].as_str().expect("job"), "a").await["status"],
        "Queued"
    );
}

#[tokio::test]
async fn a_nul_in_a_query_is_400_and_in_a_path_404() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit_simple("hello").await;
    let before = h.snapshot().await;
    for (path, parameter) in [
        ("/v1/jobs?tenant=a%00b".to_owned(), "tenant"),
        (format!("/v1/jobs/{job}/tasks?worker_id=w%00"), "worker_id"),
        ("/v1/admin/audit?actor=a%00".to_owned(), "actor"),
        ("/v1/admin/audit?action=a%00".to_owned(), "action"),
        ("/v1/admin/audit?tenant=a%00".to_owned(), "tenant"),
        ("/v1/admin/audit?result=a%00".to_owned(), "result"),
    ] {
        h.get(&path)
            .token(OP)
            .send()
            .await
            .expect_error(400, &format!("{parameter} must not contain NUL characters"));
    }
    h.get("/v1/jobs?a%00=1")
        .token(OP)
        .send()
        .await
        .expect_error(400, "query parameter names must not contain NUL characters");
    h.assert_unchanged(&before, "queries with NUL characters")
        .await;

    for call in [
        h.get("/v1/jobs/%00"),
        h.get("/v1/jobs/a%00b/tasks"),
        h.get("/v1/jobs/a%00b/events"),
        h.delete("/v1/jobs/%00"),
        h.get("/v1/workers/w%00/assignments"),
        h.post_json("/v1/workers/w%00/heartbeat", &json!({})),
        h.get("/v1/jobs/a%0Ab"),
    ] {
        call.token(OP).send().await.expect_error(404, "not found");
    }
    h.assert_unchanged(&before, "paths with NUL characters")
        .await;
}

#[tokio::test]
async fn a_tenant_header_that_is_not_text_is_refused_naming_it() {
    let h = Harness::new();
    let before = h.snapshot().await;
    for value in [&b"\xff\xfe"[..], b"acme\xc3", b"a b", b"a/b"] {
        let message = h
            .post_json("/v1/jobs", &json!({"type": "chat", "input": "x"}))
            .token(OP)
            .header_bytes("x-daef-tenant", value)
            .send()
            .await
            .error_message(400);
        assert!(
            message.starts_with("X-DAEF-Tenant must be "),
            "{value:?}: {message}"
        );
    }
    h.assert_unchanged(&before, "submits with a bad tenant header")
        .await;
}
