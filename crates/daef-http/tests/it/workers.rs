//! `/v1/workers…`: registration, heartbeats and polling for assignments.

use serde_json::{Value, json};

use crate::harness::{ACME, Harness, MET, OP, WRK};

#[tokio::test]
async fn register_validates_the_worker_id_and_capabilities() {
    let h = Harness::new();
    let before = h.snapshot().await;
    let longest = "w".repeat(128);
    let too_long = "w".repeat(129);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "worker_id is required"),
        (json!({"worker_id": null}), "worker_id is required"),
        (
            json!({"worker_id": ""}),
            "worker_id must be a non-empty string",
        ),
        (
            json!({"worker_id": "   "}),
            "worker_id must be a non-empty string",
        ),
        (
            json!({"worker_id": too_long}),
            "worker_id must be at most 128 characters",
        ),
        (json!({"worker_id": 42}), "worker_id must be a string"),
        (
            json!({"worker_id": "has space"}),
            "worker_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ),
        (
            json!({"worker_id": "a/b"}),
            "worker_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ),
        (
            json!({"worker_id": "w", "cpu": [4]}),
            "cpu must be a non-negative integer",
        ),
        (
            json!({"worker_id": "w", "cpu": "x"}),
            "cpu must be a non-negative integer",
        ),
        (
            json!({"worker_id": "w", "cpu": -1}),
            "cpu must be a non-negative integer",
        ),
        (
            json!({"worker_id": "w", "memory": {"gb": 1}}),
            "memory must be a string",
        ),
        (
            json!({"worker_id": "w", "memory": 16}),
            "memory must be a string",
        ),
        (
            json!({"worker_id": "w", "gpu": "yes"}),
            "gpu must be true, false or a non-negative integer",
        ),
        (
            json!({"worker_id": "w", "gpu": 1.5}),
            "gpu must be true, false or a non-negative integer",
        ),
        (
            json!({"worker_id": "w", "models": "llama"}),
            "models must be an array",
        ),
        (
            json!({"worker_id": "w", "tools": [1]}),
            "tools[0] must be a string",
        ),
        (
            json!({"worker_id": "w", "locality": 3}),
            "locality must be a string",
        ),
    ];
    for (body, message) in cases {
        h.post_json("/v1/workers/register", &body)
            .token(WRK)
            .send()
            .await
            .expect_error(400, message);
    }
    for raw in [&b""[..], b"{", b"[\"w\"]"] {
        let resp = h
            .post_raw("/v1/workers/register", raw.to_vec())
            .token(WRK)
            .send()
            .await;
        assert_eq!(resp.status.as_u16(), 400, "{}", resp.text);
    }
    h.assert_unchanged(&before, "invalid registrations").await;
    // None of them registered a worker.
    for id in ["w", "has space"] {
        h.post_json(
            &format!("/v1/workers/{}/heartbeat", id.replace(' ', "%20")),
            &json!({}),
        )
        .token(WRK)
        .send()
        .await
        .expect_error(404, "worker not found");
    }

    // Valid ones, including the longest id and every capability (the seed worker's body, and a
    // GPU count); registering again is fine.
    let full = json!({"worker_id": "gpu-1.zone-a:pool@host", "cpu": 8, "memory": "32Gi", "gpu": 1,
        "models": ["llama"], "tools": ["python"], "locality": "eu-west-1a"});
    let seed = json!({"worker_id": "worker-local", "cpu": 8, "memory": "16Gi", "gpu": false,
        "models": ["llama3-8b-q4"], "tools": ["bash", "python"], "locality": "local"});
    for body in [json!({"worker_id": longest}), full.clone(), full, seed] {
        let resp = h
            .post_json("/v1/workers/register", &body)
            .token(WRK)
            .send()
            .await
            .expect_status(200);
        assert_eq!(
            resp.json,
            json!({"accepted": true, "heartbeat_interval_seconds": 5})
        );
    }
    h.get(&format!("/v1/workers/{longest}/assignments"))
        .token(WRK)
        .send()
        .await
        .expect_status(200);
}

#[tokio::test]
async fn heartbeat_validates_and_needs_a_registered_worker() {
    let h = Harness::new();
    h.register("w").await;
    let before = h.snapshot().await;
    h.post_json("/v1/workers/ghost/heartbeat", &json!({}))
        .token(WRK)
        .send()
        .await
        .expect_error(404, "worker not found");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"queue_depth": "x"}),
            "queue_depth must be a non-negative integer",
        ),
        (
            json!({"queue_depth": -1}),
            "queue_depth must be a non-negative integer",
        ),
        (
            json!({"running_tasks": 1.5}),
            "running_tasks must be a non-negative integer",
        ),
        (
            json!({"cpu_utilization": "high"}),
            "cpu_utilization must be a number",
        ),
        (
            json!({"memory_utilization": [0.5]}),
            "memory_utilization must be a number",
        ),
        (json!({"health": 1}), "health must be a string"),
        (
            json!({"timestamp_unix": "now"}),
            "timestamp_unix must be an integer from -9223372036854775808 to 9223372036854775807",
        ),
        (json!({"running": "lease-1"}), "running must be an array"),
        (
            json!({"running": ["lease-1"]}),
            "running[0] must be an object with job_id, task_id and lease_id",
        ),
        (
            json!({"running": [{"job_id": "j", "task_id": "t"}]}),
            "running[0].lease_id is required",
        ),
        (
            json!({"running": [{"job_id": "j", "task_id": 7, "lease_id": "l"}]}),
            "running[0].task_id must be a string",
        ),
        (
            json!({"running": vec![json!({"job_id": "j", "task_id": "t", "lease_id": "l"}); 1001]}),
            "running must list at most 1000 attempts",
        ),
    ];
    for (body, message) in cases {
        h.post_json("/v1/workers/w/heartbeat", &body)
            .token(WRK)
            .send()
            .await
            .expect_error(400, message);
    }
    h.post_raw("/v1/workers/w/heartbeat", &b"[1]"[..])
        .token(WRK)
        .send()
        .await
        .expect_error(400, "request body must be a JSON object");
    h.post_raw("/v1/workers/w/heartbeat", &b""[..])
        .token(WRK)
        .send()
        .await
        .expect_error(400, "request body is required");
    let message = h
        .post_raw("/v1/workers/w/heartbeat", &b"{"[..])
        .token(WRK)
        .send()
        .await
        .error_message(400);
    assert!(message.starts_with("invalid JSON body"), "{message}");
    h.assert_unchanged(&before, "invalid heartbeats").await;

    // Every field is optional; the seed worker's body is taken as it is.
    let full = json!({"queue_depth": 3, "running_tasks": 1, "cpu_utilization": 0.5, "memory_utilization": 75, "health": "ok"});
    let seed = json!({"queue_depth": 0, "running_tasks": 1, "cpu_utilization": 15.0,
        "memory_utilization": 20.0, "health": "healthy", "timestamp_unix": 1_796_000_000});
    for call in [
        h.post_json("/v1/workers/w/heartbeat", &full),
        h.post_json("/v1/workers/w/heartbeat", &json!({})),
        h.post_json("/v1/workers/w/heartbeat", &seed),
    ] {
        let resp = call.token(WRK).send().await.expect_status(200);
        assert_eq!(resp.json["accepted"], true);
    }
}

#[tokio::test]
async fn assignments_validate_max_tasks_and_clamp_it() {
    let h = Harness::new();
    h.register("w").await;
    // One job with 150 independent tasks.
    let tasks: Vec<Value> = (0..150)
        .map(|i| json!({"task_id": format!("t{i:03}"), "type": "t"}))
        .collect();
    let job = h.submit(json!({"type": "fanout", "tasks": tasks})).await;

    let before = h.snapshot().await;
    for bad in ["0", "-1", "x", "1.5", "", "%20"] {
        let resp = h
            .get(&format!("/v1/workers/w/assignments?max_tasks={bad}"))
            .token(WRK)
            .send()
            .await;
        resp.expect_error(400, "max_tasks must be a positive integer");
    }
    h.get("/v1/workers/ghost/assignments")
        .token(WRK)
        .send()
        .await
        .expect_error(404, "worker not found");
    h.get("/v1/workers/ghost/assignments?max_tasks=0")
        .token(WRK)
        .send()
        .await
        .expect_status(400);
    assert_eq!(h.snapshot().await, before, "no refused poll took a task");

    // Default: one.
    let resp = h
        .get("/v1/workers/w/assignments")
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["assignments"].as_array().map(Vec::len), Some(1));
    // Above 100: clamped to 100.
    let got = h.poll("w", 200).await;
    assert_eq!(got.len(), 100);
    assert!(
        got.iter()
            .all(|a| a["job_id"] == job.as_str() && a["attempt"] == 1)
    );
    let rest = h.poll("w", 100).await;
    assert_eq!(rest.len(), 49);
    // Nothing left: still an array.
    let resp = h
        .get("/v1/workers/w/assignments?max_tasks=5")
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"assignments": []}));
    let running = h
        .get(&format!("/v1/jobs/{job}/tasks?status=Running&worker_id=w"))
        .token(crate::harness::OP)
        .send()
        .await;
    assert_eq!(running.json["total"], 150);
}

#[tokio::test]
async fn workers_list_by_id_with_capabilities_stats_and_liveness() {
    let h = Harness::new();
    for id in ["w-b", "w-a"] {
        h.post_json(
            "/v1/workers/register",
            &json!({"worker_id": id, "cpu": 4, "memory": "8Gi", "gpu": false, "models": ["m"], "tools": ["bash"], "locality": "eu"}),
        )
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    }
    h.post_json(
        "/v1/workers/w-b/heartbeat",
        &json!({"running_tasks": 2, "health": "degraded"}),
    )
    .token(WRK)
    .send()
    .await
    .expect_status(200);

    for token in [WRK, OP] {
        let resp = h
            .get("/v1/workers")
            .token(token)
            .send()
            .await
            .expect_status(200);
        assert_eq!(resp.json["total"], 2);
        assert_eq!(resp.json["returned"], 2);
        assert_eq!(resp.json["limit"], 100);
        let workers = resp.json["workers"].as_array().expect("workers");
        assert_eq!(workers[0]["worker_id"], "w-a");
        assert_eq!(
            workers[0]["capabilities"],
            json!({"cpu": 4, "memory": "8Gi", "gpu": false, "models": ["m"], "tools": ["bash"], "locality": "eu"})
        );
        assert_eq!(workers[0]["stats"], json!({}));
        assert_eq!(workers[1]["stats"]["running_tasks"], 2);
        assert_eq!(workers[1]["stats"]["health"], "degraded");
        assert!(workers.iter().all(|w| w["alive"] == true));
    }
    let second = h
        .get("/v1/workers?limit=1&offset=1")
        .token(WRK)
        .send()
        .await;
    assert_eq!(second.json["workers"][0]["worker_id"], "w-b");
    assert_eq!(second.json["returned"], 1);

    for token in [ACME, MET] {
        let resp = h.get("/v1/workers").token(token).send().await;
        assert_eq!(resp.status.as_u16(), 403, "{token}: {}", resp.text);
    }
    for (query, message) in [
        ("limit=x", "limit must be a non-negative integer"),
        ("offset=-1", "offset must be a non-negative integer"),
    ] {
        h.get(&format!("/v1/workers?{query}"))
            .token(WRK)
            .send()
            .await
            .expect_error(400, message);
    }
}

#[tokio::test]
async fn a_heartbeat_names_the_listed_leases_to_stop_once_the_job_is_canceled() {
    let h = Harness::new();
    h.register("w").await;
    let keep = h.submit_simple("keep").await;
    let doomed = h.submit_simple("doomed").await;
    let assigned = h.poll("w", 10).await;
    let lease_of = |job: &str| {
        assigned
            .iter()
            .find(|a| a["job_id"] == job)
            .map(|a| json!({"job_id": a["job_id"], "task_id": a["task_id"], "lease_id": a["lease_id"]}))
            .expect("an assignment of the job")
    };
    let running = json!({"running": [lease_of(&keep), lease_of(&doomed)]});
    let ack = h
        .post_json("/v1/workers/w/heartbeat", &running)
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert!(
        ack.json.get("stop_leases").is_none(),
        "nothing to stop: {}",
        ack.json
    );

    h.delete(&format!("/v1/jobs/{doomed}"))
        .token(crate::harness::OP)
        .send()
        .await
        .expect_status(200);
    let ack = h
        .post_json("/v1/workers/w/heartbeat", &running)
        .token(WRK)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        ack.json["stop_leases"],
        json!([lease_of(&doomed)["lease_id"]])
    );
    assert_eq!(
        ack.json["leases_extended"], 1,
        "only the live one is extended"
    );
}
