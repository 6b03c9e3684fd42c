//! `/v1/admin/queue/dead-letter`: listing, the requeue safety rules in DESIGN.md §4 order, dry
//! runs, disabled limits, what a requeue does to the task and job, and the audit record of
//! every one of these requests.

use std::sync::Arc;

use daef_core::{Engine, EngineConfig};
use daef_http::{AdminLimits, HttpConfig};
use daef_queue::MemoryQueue;
use serde_json::{Value, json};

use crate::fault::{DownLimiter, FaultyStore, SECRET};
use crate::harness::{
    ACME, Harness, OP, REMOTE, TOKENS, assert_timestamp, expected_payload_hash, principal_id,
};

const PATH: &str = "/v1/admin/queue/dead-letter";

/// Checks the fields of an audit event written for a dead-letter request.
#[track_caller]
fn assert_event(
    event: &Value,
    action: &str,
    result: &str,
    requested: u64,
    details: &str,
    body: &[u8],
) {
    assert_eq!(event["action"], action, "{event}");
    assert_eq!(event["result"], result, "{event}");
    assert_eq!(event["requested"], requested, "{event}");
    assert_eq!(event["details"], details, "{event}");
    assert_eq!(event["resource"], PATH, "{event}");
    assert_eq!(event["actor"], principal_id(OP), "{event}");
    assert_eq!(event["tenant"], "default", "{event}");
    assert_eq!(event["remote_addr"], REMOTE, "{event}");
    assert_eq!(
        event["payload_hash"],
        expected_payload_hash(body),
        "{event}"
    );
}

/// A job whose `n` tasks (`t00`, `t01`, …, no retries) are all dead letters.
async fn dead_tasks(h: &Harness, n: usize) -> String {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"task_id": format!("t{i:02}"), "type": "t", "max_retries": 0}))
        .collect();
    let job = h.submit(json!({"type": "x", "tasks": tasks})).await;
    h.register("w").await;
    // Take them all before the first failure pauses the job.
    let assigned = h.poll("w", n).await;
    assert_eq!(assigned.len(), n);
    for a in &assigned {
        h.fail("w", a).await;
    }
    job
}

fn entries(job: &str, task_ids: &[&str]) -> Value {
    Value::Array(
        task_ids
            .iter()
            .map(|t| json!({"job_id": job, "task_id": t}))
            .collect(),
    )
}

#[tokio::test]
async fn list_dead_letters_defaults_caps_and_validates_the_limit() {
    let h = Harness::new();
    let job = dead_tasks(&h, 60).await;

    let resp = h.get(PATH).token(OP).send().await.expect_status(200);
    let tasks = resp.json["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 50, "default limit 50");
    for t in tasks {
        assert_eq!(
            super::harness::keys(t),
            [
                "attempt",
                "dead_lettered_at",
                "error",
                "job_id",
                "task_id",
                "tenant"
            ]
        );
        assert_eq!(
            (&t["job_id"], &t["tenant"], &t["attempt"], &t["error"]),
            (
                &json!(job),
                &json!("default"),
                &json!(1),
                &json!("boom on attempt 1")
            )
        );
    }
    // Oldest first.
    let times: Vec<_> = tasks
        .iter()
        .map(|t| assert_timestamp(&t["dead_lettered_at"]))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert_event(
        &h.last_audit().await,
        "dead_letter_list",
        "ok",
        50,
        "returned 50 dead letters",
        b"",
    );

    assert_eq!(
        h.get(&format!("{PATH}?limit=7"))
            .token(OP)
            .send()
            .await
            .json["tasks"]
            .as_array()
            .map(Vec::len),
        Some(7)
    );
    assert_eq!(
        h.get(&format!("{PATH}?limit=0"))
            .token(OP)
            .send()
            .await
            .json["tasks"]
            .as_array()
            .map(Vec::len),
        Some(50)
    );
    let all = h
        .get(&format!("{PATH}?limit=5000"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(all.json["tasks"].as_array().map(Vec::len), Some(60));
    // The clamped limit is what the audit records.
    assert_event(
        &h.last_audit().await,
        "dead_letter_list",
        "ok",
        1000,
        "returned 60 dead letters",
        b"",
    );

    for bad in ["-1", "abc", "2.5"] {
        let before = h.snapshot().await;
        h.get(&format!("{PATH}?limit={bad}"))
            .token(OP)
            .send()
            .await
            .expect_error(400, "limit must be a non-negative integer");
        let event = h.assert_unchanged_but_audited(&before, bad).await;
        assert_event(
            &event,
            "dead_letter_list",
            "rejected",
            0,
            "limit must be a non-negative integer",
            b"",
        );
    }
}

#[tokio::test]
async fn requeue_checks_run_in_design_order_and_every_request_is_audited() {
    let h = Harness::with_admin(AdminLimits {
        max_batch: 3,
        rate_limit_per_min: 2,
        confirm_threshold: 2,
        confirm_token: Some("yes-really".to_owned()),
    });
    let job = dead_tasks(&h, 4).await;
    let four = json!({"tasks": entries(&job, &["t00", "t01", "t02", "t03"])});

    // Each case: raw body, extra header, expected message, requested in the audit event.
    let raw = |v: &Value| serde_json::to_vec(v).expect("json");
    let cases: Vec<(Vec<u8>, Option<&str>, &str, u64)> = vec![
        (raw(&json!({})), None, "tasks is required", 0),
        (raw(&json!({"tasks": []})), None, "tasks is required", 0),
        (raw(&json!({"tasks": null})), None, "tasks is required", 0),
        (raw(&json!({"tasks": "t00"})), None, "tasks is required", 0),
        (
            raw(&json!({"tasks": {"job_id": job, "task_id": "t00"}})),
            None,
            "tasks is required",
            0,
        ),
        (
            raw(&json!({"tasks": [{"job_id": job}]})),
            None,
            "tasks[0].task_id is required",
            0,
        ),
        (
            raw(&json!({"tasks": [{"task_id": "t00"}]})),
            None,
            "tasks[0].job_id is required",
            0,
        ),
        (
            raw(&json!({"tasks": [{"job_id": job, "task_id": ""}]})),
            None,
            "tasks[0].task_id must be a non-empty string",
            0,
        ),
        (
            raw(&json!({"tasks": [{"job_id": 1, "task_id": "t00"}]})),
            None,
            "tasks[0].job_id must be a string",
            0,
        ),
        (
            raw(&json!({"tasks": ["t00"]})),
            None,
            "tasks[0] must be an object with job_id and task_id",
            0,
        ),
        (
            raw(&json!({"tasks": entries(&job, &["t00"]), "dry_run": "yes"})),
            None,
            "dry_run must be true or false",
            0,
        ),
        // An invalid entry is reported before the batch size, even in an oversize batch.
        (
            raw(
                &json!({"tasks": [{"job_id": job, "task_id": "t00"}, {"job_id": job}, {"job_id": job, "task_id": "t02"}, {"job_id": job, "task_id": "t03"}]}),
            ),
            Some("yes-really"),
            "tasks[1].task_id is required",
            0,
        ),
        // Batch size before confirmation.
        (raw(&four), None, "tasks exceeds max batch size 3", 4),
        (
            raw(&four),
            Some("yes-really"),
            "tasks exceeds max batch size 3",
            4,
        ),
        // Confirmation from the threshold (2) up; dry runs need none (below).
        (
            raw(&json!({"tasks": entries(&job, &["t00", "t01"])})),
            None,
            "confirmation token required for large requeue",
            2,
        ),
        (
            raw(&json!({"tasks": entries(&job, &["t00", "t01"])})),
            Some("nope"),
            "confirmation token required for large requeue",
            2,
        ),
        // The batch size still applies to dry runs.
        (
            raw(&json!({"tasks": entries(&job, &["t00", "t01", "t02", "t03"]), "dry_run": true})),
            None,
            "tasks exceeds max batch size 3",
            4,
        ),
    ];
    for (body, confirm, message, requested) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let before = h.snapshot().await;
        let call = h.post_raw(PATH, body.clone()).token(OP);
        let call = if let Some(c) = confirm {
            call.header("x-daef-confirm", c)
        } else {
            call
        };
        call.send().await.expect_error(400, message);
        let event = h.assert_unchanged_but_audited(&before, &shown).await;
        assert_event(
            &event,
            "dead_letter_requeue",
            "rejected",
            requested,
            message,
            &body,
        );
    }
    // Bodies that are not JSON objects at all.
    for (body, message) in [
        (&b""[..], "request body is required"),
        (&b"[]"[..], "request body must be a JSON object"),
    ] {
        let before = h.snapshot().await;
        h.post_raw(PATH, body.to_vec())
            .token(OP)
            .send()
            .await
            .expect_error(400, message);
        let event = h.assert_unchanged_but_audited(&before, message).await;
        assert_event(&event, "dead_letter_requeue", "rejected", 0, message, body);
    }
    let before = h.snapshot().await;
    let malformed = &b"{\"tasks\": [}"[..];
    let message = h
        .post_raw(PATH, malformed)
        .token(OP)
        .send()
        .await
        .error_message(400);
    assert!(message.starts_with("invalid JSON body"), "{message}");
    let event = h
        .assert_unchanged_but_audited(&before, "malformed JSON")
        .await;
    // Not JSON: the payload hash is "".
    assert_event(
        &event,
        "dead_letter_requeue",
        "rejected",
        0,
        &message,
        malformed,
    );

    // A dry run at the threshold needs no confirmation: it changes nothing.
    let dry_two = raw(&json!({"tasks": entries(&job, &["t00", "t01"]), "dry_run": true}));
    let before = h.snapshot().await;
    let resp = h
        .post_raw(PATH, dry_two.clone())
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"dry_run": true, "requested": 2, "requeued": 2})
    );
    h.assert_unchanged_but_audited(&before, "an unconfirmed dry run")
        .await;

    // Below the threshold no confirmation is needed; at it, the right one passes.
    let one = raw(&json!({"tasks": entries(&job, &["t00"])}));
    let resp = h
        .post_raw(PATH, one.clone())
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 1, "requeued": 1}));
    assert_event(
        &h.last_audit().await,
        "dead_letter_requeue",
        "ok",
        1,
        "requeued 1 of 1 listed tasks",
        &one,
    );
    let two = raw(&json!({"tasks": entries(&job, &["t01", "t02"])}));
    let resp = h
        .post_raw(PATH, two.clone())
        .token(OP)
        .header("x-daef-confirm", "yes-really")
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 2, "requeued": 2}));
    assert_event(
        &h.last_audit().await,
        "dead_letter_requeue",
        "ok",
        2,
        "requeued 2 of 2 listed tasks",
        &two,
    );

    // Two per minute: the third is limited, audited, and changes nothing.
    let three = raw(&json!({"tasks": entries(&job, &["t03"])}));
    let before = h.snapshot().await;
    let resp = h
        .post_raw(PATH, three.clone())
        .token(OP)
        .send()
        .await
        .expect_error(429, "requeue rate limit exceeded");
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let event = h
        .assert_unchanged_but_audited(&before, "rate-limited requeue")
        .await;
    assert_eq!(
        (&event["action"], &event["result"], &event["requested"]),
        (
            &json!("dead_letter_requeue"),
            &json!("rate_limited"),
            &json!(1)
        )
    );
    assert_eq!(event["payload_hash"], expected_payload_hash(&three));
    assert!(
        event["details"].as_str().is_some_and(|d| !d.is_empty()),
        "details say why: {event}"
    );

    // A dry run is not rate limited.
    let dry = raw(&json!({"tasks": entries(&job, &["t03"]), "dry_run": true}));
    let before = h.snapshot().await;
    let resp = h
        .post_raw(PATH, dry.clone())
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"dry_run": true, "requested": 1, "requeued": 1})
    );
    let event = h.assert_unchanged_but_audited(&before, "dry run").await;
    assert_event(
        &event,
        "dead_letter_requeue",
        "dry_run",
        1,
        "1 of 1 listed tasks are dead letters",
        &dry,
    );
    // Validation still comes before the rate limit.
    h.post_json(PATH, &json!({}))
        .token(OP)
        .send()
        .await
        .expect_error(400, "tasks is required");
}

#[tokio::test]
async fn the_rate_limit_is_per_principal() {
    let tokens = format!("{TOKENS},op2:operator");
    let h = Harness::build(
        Some(&tokens),
        HttpConfig {
            admin: AdminLimits {
                rate_limit_per_min: 1,
                ..AdminLimits::default()
            },
            ..HttpConfig::default()
        },
        Arc::new(daef_store::MemoryStore::new()),
    );
    let body = json!({"tasks": [{"job_id": "job-x", "task_id": "t1"}]});
    h.post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    h.post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(429);
    h.post_json(PATH, &body)
        .token("op2")
        .send()
        .await
        .expect_status(200);
    h.post_json(PATH, &body)
        .token("op2")
        .send()
        .await
        .expect_status(429);
    let events = h.audit().await;
    let actors: Vec<(Value, Value)> = events
        .iter()
        .map(|e| (e["actor"].clone(), e["result"].clone()))
        .collect();
    assert_eq!(
        actors,
        [
            (json!(principal_id("op2")), json!("rate_limited")),
            (json!(principal_id("op2")), json!("ok")),
            (json!(principal_id(OP)), json!("rate_limited")),
            (json!(principal_id(OP)), json!("ok")),
        ]
    );
}

#[tokio::test]
async fn a_dry_run_counts_dead_letters_and_changes_nothing() {
    let h = Harness::new();
    let job = dead_tasks(&h, 2).await;
    let other = h.submit_simple("alive").await;
    let body = json!({"dry_run": true, "tasks": [
        {"job_id": job, "task_id": "t00"},
        {"job_id": job, "task_id": "t01"},
        {"job_id": job, "task_id": "t01"},
        {"job_id": other, "task_id": "t1"},
        {"job_id": "job-unknown", "task_id": "t1"},
        {"job_id": job, "task_id": "nope"},
    ]});
    let before = h.snapshot().await;
    let resp = h
        .post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"dry_run": true, "requested": 6, "requeued": 2})
    );
    let event = h.assert_unchanged_but_audited(&before, "dry run").await;
    assert_eq!(
        (&event["result"], &event["requested"]),
        (&json!("dry_run"), &json!(6))
    );
    assert_eq!(before.dead_letters.len(), 2);

    // For real, the same list requeues the two dead letters and skips the rest.
    let mut real = body.clone();
    real["dry_run"] = json!(false);
    let resp = h
        .post_json(PATH, &real)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 6, "requeued": 2}));
    assert!(h.dead_letters().await.is_empty());
    assert_eq!(h.task(&other, "t1").await["status"], "Queued");
}

#[tokio::test]
async fn limits_at_or_below_zero_are_disabled() {
    for disabled in [0, -1] {
        let h = Harness::with_admin(AdminLimits {
            max_batch: disabled,
            rate_limit_per_min: disabled,
            confirm_threshold: disabled,
            confirm_token: Some("secret".to_owned()),
        });
        let big: Vec<Value> = (0..150)
            .map(|i| json!({"job_id": "job-x", "task_id": format!("t{i}")}))
            .collect();
        for _ in 0..40 {
            let resp = h
                .post_json(PATH, &json!({"tasks": big}))
                .token(OP)
                .send()
                .await
                .expect_status(200);
            assert_eq!(resp.json, json!({"requested": 150, "requeued": 0}));
        }
    }
}

#[tokio::test]
async fn a_requeued_task_runs_again_with_a_fresh_budget() {
    let h = Harness::new();
    h.register("w").await;
    let job = h.dead_job("w", "unlucky").await;
    assert!(h.job(&job).await.get("message").is_some());

    let body = json!({"tasks": [{"job_id": job, "task_id": "t1"}]});
    let resp = h
        .post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 1, "requeued": 1}));
    let resumed = h.job(&job).await;
    assert_eq!(resumed["status"], "Running");
    assert!(resumed.get("message").is_none(), "{resumed}");
    let task = h.task(&job, "t1").await;
    assert_eq!(
        (&task["status"], &task["attempt"]),
        (&json!("Queued"), &json!(3))
    );
    assert!(h.dead_letters().await.is_empty());

    // Requeuing it again while it waits changes nothing.
    let resp = h
        .post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"requested": 1, "requeued": 0}));

    // max_retries + 1 = 3 more attempts, numbered on from 3.
    for attempt in 4..=6u64 {
        let a = h.poll_one("w").await;
        assert_eq!(a["attempt"], attempt);
        h.fail("w", &a).await;
    }
    assert_eq!(h.job(&job).await["status"], "Failed");
    let dead = h.dead_letters().await;
    assert_eq!((dead.len(), &dead[0]["attempt"]), (1, &json!(6)));

    // Requeued once more, it can now succeed and completes the job.
    h.post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let a = h.poll_one("w").await;
    assert_eq!(a["attempt"], 7);
    h.complete("w", &a).await;
    assert_eq!(h.job(&job).await["status"], "Completed");
}

#[tokio::test]
async fn requeue_of_a_dead_task_resumes_the_rest_of_its_job() {
    let h = Harness::new();
    h.register("w").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "a", "type": "t", "max_retries": 0},
            {"task_id": "b", "type": "t"},
            {"task_id": "c", "type": "t", "dependencies": ["a"]},
        ]}))
        .await;
    let mut got = h.poll("w", 1).await;
    assert_eq!(got[0]["task_id"], "a");
    h.fail("w", &got.remove(0)).await;
    // The job failed: b is not dispatched while a is dead.
    assert_eq!(h.job(&job).await["status"], "Failed");
    assert!(h.poll("w", 5).await.is_empty());
    h.post_json(PATH, &json!({"tasks": [{"job_id": job, "task_id": "a"}]}))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let mut ids: Vec<String> = h
        .poll("w", 5)
        .await
        .iter()
        .map(|a| a["task_id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test]
async fn admin_routes_refuse_other_scopes_and_audit_the_refusal() {
    let h = Harness::new();
    let cases: [(hyper::Method, &str, &str); 4] = [
        (hyper::Method::GET, PATH, "dead_letter_list"),
        (hyper::Method::POST, PATH, "dead_letter_requeue"),
        (hyper::Method::GET, "/v1/admin/audit", "audit_read"),
        (hyper::Method::GET, "/v1/admin/audit/verify", "audit_read"),
    ];
    let body = br#"{"tasks": [{"job_id": "job-1", "task_id": "t1"}], "note": "x"}"#;
    for (method, path, action) in cases {
        for (token, tenant) in [
            (crate::harness::WRK, "default"),
            (crate::harness::MET, "default"),
            (ACME, "acme"),
        ] {
            let before = h.snapshot().await;
            let mut call = h.call(method.clone(), path).token(token);
            if method == hyper::Method::POST {
                call = call.raw(&body[..]);
            }
            call.send()
                .await
                .expect_error(403, "missing required scope (one of: operator)");
            let event = h
                .assert_unchanged_but_audited(&before, &format!("{method} {path} as {token}"))
                .await;
            assert_eq!(
                (
                    &event["action"],
                    &event["result"],
                    &event["actor"],
                    &event["tenant"],
                    &event["requested"]
                ),
                (
                    &json!(action),
                    &json!("forbidden"),
                    &json!(principal_id(token)),
                    &json!(tenant),
                    &json!(0)
                ),
            );
            assert_eq!(
                event["details"],
                "missing required scope (one of: operator)"
            );
            let expected_hash = if method == hyper::Method::POST {
                expected_payload_hash(body)
            } else {
                String::new()
            };
            assert_eq!(event["payload_hash"], expected_hash);
        }
        // 401: no principal, nothing audited.
        let before = h.snapshot().await;
        h.call(method.clone(), path)
            .send()
            .await
            .expect_error(401, "missing bearer token");
        h.call(method.clone(), path)
            .token("forged")
            .send()
            .await
            .expect_error(401, "invalid token");
        h.assert_unchanged(&before, &format!("401 on {path}")).await;
    }
}

#[tokio::test]
async fn backend_failures_are_5xx_without_backend_text_and_audited_as_errors() {
    let store = Arc::new(FaultyStore::default());
    let h = Harness::build(Some(TOKENS), HttpConfig::default(), store.clone());
    let body = json!({"tasks": [{"job_id": "job-1", "task_id": "t1"}]});

    store.fail("requeue_dead");
    let resp = h
        .post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_error(500, "internal error");
    assert!(!resp.text.contains("SECRET"));
    let event = h.last_audit().await;
    assert_eq!(
        (&event["action"], &event["result"], &event["details"]),
        (
            &json!("dead_letter_requeue"),
            &json!("error"),
            &json!("internal error")
        )
    );

    store.fail("count_dead_among");
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    h.post_json(PATH, &dry)
        .token(OP)
        .send()
        .await
        .expect_error(500, "internal error");
    assert_eq!(h.last_audit().await["result"], "error");

    store.fail("dead_letters");
    h.get(PATH)
        .token(OP)
        .send()
        .await
        .expect_error(500, "internal error");
    let event = h.last_audit().await;
    assert_eq!(
        (&event["action"], &event["result"]),
        (&json!("dead_letter_list"), &json!("error"))
    );
    for op in ["requeue_dead", "count_dead_among", "dead_letters"] {
        store.heal(op);
    }

    // A rate limiter that is down: 503 naming the backend, never its error text; audited.
    let engine = Engine::new(
        Arc::new(daef_store::MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::retrying_at_once(),
    );
    let h = Harness::from_parts(
        engine,
        Some(TOKENS),
        Arc::new(DownLimiter),
        HttpConfig::default(),
    );
    let resp = h
        .post_json(PATH, &body)
        .token(OP)
        .send()
        .await
        .expect_error(503, "redis unavailable, retry later");
    assert!(!resp.text.contains(SECRET));
    let event = h.last_audit().await;
    assert_eq!(
        (&event["result"], &event["details"]),
        (&json!("error"), &json!("redis unavailable, retry later"))
    );
    // A dry run does not need the limiter.
    h.post_json(PATH, &dry)
        .token(OP)
        .send()
        .await
        .expect_status(200);
}

#[tokio::test]
async fn oversize_dead_letter_requests_are_413_and_audited_as_rejected() {
    let h = Harness::with_config(HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    });
    h.register("w").await;
    let job = h.dead_job("w", "x").await;
    let big = serde_json::to_vec(
        &json!({"tasks": [{"job_id": job, "task_id": "t1"}], "pad": "x".repeat(1100)}),
    )
    .expect("json");

    for streamed in [false, true] {
        let before = h.snapshot().await;
        let call = h.post_raw(PATH, big.clone()).token(OP);
        let resp = if streamed {
            call.send_streamed(100).await
        } else {
            call.send().await
        };
        resp.expect_error(413, "request body exceeds 1024 bytes");
        let event = h
            .assert_unchanged_but_audited(&before, "oversize requeue")
            .await;
        // The body was not read, so there is no payload hash.
        assert_event(
            &event,
            "dead_letter_requeue",
            "rejected",
            0,
            "request body exceeds 1024 bytes",
            b"",
        );
    }
    let before = h.snapshot().await;
    h.get(PATH)
        .token(OP)
        .raw(big.clone())
        .send_streamed(64)
        .await
        .expect_error(413, "request body exceeds 1024 bytes");
    let event = h
        .assert_unchanged_but_audited(&before, "oversize list")
        .await;
    assert_event(
        &event,
        "dead_letter_list",
        "rejected",
        0,
        "request body exceeds 1024 bytes",
        b"",
    );

    // Without the scope the answer is 403 whatever the body, and the refusal is on record.
    let before = h.snapshot().await;
    h.post_raw(PATH, big)
        .token(ACME)
        .send()
        .await
        .expect_error(403, "missing required scope (one of: operator)");
    let event = h
        .assert_unchanged_but_audited(&before, "oversize requeue without the scope")
        .await;
    assert_eq!(
        (&event["action"], &event["result"], &event["actor"]),
        (
            &json!("dead_letter_requeue"),
            &json!("forbidden"),
            &json!(principal_id(ACME))
        )
    );
}

const DISCARD: &str = "/v1/admin/queue/dead-letter/discard";

#[tokio::test]
async fn discard_has_the_requeue_guards_and_every_request_is_audited() {
    let h = Harness::with_admin(AdminLimits {
        max_batch: 3,
        rate_limit_per_min: 1,
        confirm_threshold: 2,
        confirm_token: Some("yes-really".to_owned()),
    });
    let job = dead_tasks(&h, 4).await;
    let before = h.dead_letters().await;
    // Each case: body, X-DAEF-Confirm, the 400's message, requested in the audit event.
    let cases: Vec<(Value, Option<&str>, &str, u64)> = vec![
        (json!({}), None, "tasks is required", 0),
        (
            json!({"tasks": [{"job_id": job}]}),
            None,
            "tasks[0].task_id is required",
            0,
        ),
        (
            json!({"tasks": entries(&job, &["t00", "t01", "t02", "t03"])}),
            Some("yes-really"),
            "tasks exceeds max batch size 3",
            4,
        ),
        (
            json!({"tasks": entries(&job, &["t00", "t01"])}),
            Some("nope"),
            "confirmation token required for large discard",
            2,
        ),
    ];
    for (body, confirm, message, requested) in cases {
        let mut call = h.post_json(DISCARD, &body).token(OP);
        if let Some(confirm) = confirm {
            call = call.header("x-daef-confirm", confirm);
        }
        call.send().await.expect_error(400, message);
        let event = h.last_audit().await;
        assert_eq!(event["action"], "dead_letter_discard", "{event}");
        assert_eq!(event["resource"], DISCARD, "{event}");
        assert_eq!(event["actor"], principal_id(OP), "{event}");
        assert_eq!(
            (event["result"].as_str(), event["requested"].as_u64()),
            (Some("rejected"), Some(requested)),
            "{message}: {event}"
        );
    }
    assert_eq!(
        h.dead_letters().await,
        before,
        "refused requests change nothing"
    );

    // A dry run counts and changes nothing; it needs no confirmation and no rate budget.
    let two = json!({"tasks": entries(&job, &["t00", "t01", "nope"]), "dry_run": true});
    let dry = h
        .post_json(DISCARD, &two)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        dry.json,
        json!({"dry_run": true, "requested": 3, "discarded": 2})
    );
    assert_eq!(h.last_audit().await["result"], "dry_run");
    assert_eq!(h.dead_letters().await, before);

    // Discarded: off the list for good, the task stays Failed, the job stays Failed.
    let done = h
        .post_json(DISCARD, &json!({"tasks": entries(&job, &["t00", "t01"])}))
        .token(OP)
        .header("x-daef-confirm", "yes-really")
        .send()
        .await
        .expect_status(200);
    assert_eq!(done.json, json!({"requested": 2, "discarded": 2}));
    let event = h.last_audit().await;
    assert_eq!(
        (event["result"].as_str(), event["details"].as_str()),
        (Some("ok"), Some("discarded 2 of 2 listed tasks"))
    );
    let left: Vec<_> = h
        .dead_letters()
        .await
        .iter()
        .map(|d| d["task_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(left, ["t02", "t03"]);
    assert_eq!(h.task(&job, "t00").await["status"], "Failed");
    assert_eq!(h.job(&job).await["status"], "Failed");
    let requeue = h
        .post_json(PATH, &json!({"tasks": entries(&job, &["t00"])}))
        .token(OP)
        .send()
        .await;
    assert_eq!(
        requeue.json["requeued"], 0,
        "a discarded task cannot be requeued"
    );

    // Its own rate limit (1 a minute here), shown with its wait.
    let limited = h
        .post_json(DISCARD, &json!({"tasks": entries(&job, &["t02"])}))
        .token(OP)
        .send()
        .await
        .expect_error(429, "discard rate limit exceeded");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(h.last_audit().await["result"], "rate_limited");
    assert_eq!(h.dead_letters().await.len(), 2);

    // Operators only.
    h.post_json(DISCARD, &json!({"tasks": entries(&job, &["t02"])}))
        .token(ACME)
        .send()
        .await
        .expect_status(403);
    assert_eq!(h.last_audit().await["result"], "forbidden");
}
