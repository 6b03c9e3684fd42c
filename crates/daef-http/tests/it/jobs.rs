//! `/v1/jobs…`: the planners, submit validation, body limits, priorities, listing, the tasks
//! route and cancel.

use std::sync::Arc;
use std::time::Duration;

use daef_core::transition::Timing;
use daef_core::{Engine, EngineConfig, Timestamp};
use daef_http::HttpConfig;
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use serde_json::{Value, json};

use crate::harness::{ACME, Harness, OP, assert_timestamp};

/// `(task_id, type, inputs, dependencies)` of each task, in the order the tasks route lists them.
fn shape(tasks: &[Value]) -> Vec<(String, String, Value, Value)> {
    tasks
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().expect("task_id").to_owned(),
                t["type"].as_str().expect("type").to_owned(),
                t.get("inputs").cloned().unwrap_or(Value::Null),
                t["dependencies"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn default_planner_makes_one_llm_task_for_plain_input() {
    let h = Harness::new();
    let job = h.submit_simple("Tell me a story").await;
    let tasks = h.tasks(&job).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (&tasks[0]["task_id"], &tasks[0]["type"]),
        (&json!("t1"), &json!("llm_inference"))
    );
    assert_eq!(tasks[0]["dependencies"], json!([]));

    h.register("w").await;
    let a = h.poll_one("w").await;
    assert_eq!(
        (&a["task_id"], &a["type"], &a["inputs"]),
        (
            &json!("t1"),
            &json!("llm_inference"),
            &json!({"prompt": "Tell me a story"})
        )
    );
}

#[tokio::test]
async fn default_planner_makes_the_analysis_chain() {
    let h = Harness::new();
    h.register("w").await;
    for (job_type, input) in [
        ("batch_analysis", "some text"),
        ("chat", "Please ANALYZE this"),
        ("chat", "reanalyzed"),
    ] {
        let job = h.submit(json!({"type": job_type, "input": input})).await;
        let tasks = h.tasks(&job).await;
        assert_eq!(
            shape(&tasks)
                .into_iter()
                .map(|(id, ty, _, deps)| (id, ty, deps))
                .collect::<Vec<_>>(),
            vec![
                (
                    "t1-split".to_owned(),
                    "tool_execution".to_owned(),
                    json!([])
                ),
                (
                    "t2-embed".to_owned(),
                    "embedding".to_owned(),
                    json!(["t1-split"])
                ),
                (
                    "t3-summarize".to_owned(),
                    "llm_inference".to_owned(),
                    json!(["t2-embed"])
                ),
            ],
            "{job_type} / {input}"
        );
        // The chain runs in order, one step at a time, each with its own inputs.
        let expected_inputs = [
            json!({"op": "split", "text": input}),
            json!({"op": "embed"}),
            json!({"op": "summarize"}),
        ];
        let mut last = Value::Null;
        for (step, inputs) in ["t1-split", "t2-embed", "t3-summarize"]
            .into_iter()
            .zip(expected_inputs)
        {
            let got = h.poll("w", 10).await;
            assert_eq!(got.len(), 1, "only {step} is dispatchable: {got:?}");
            assert_eq!(
                (got[0]["task_id"].as_str(), &got[0]["inputs"]),
                (Some(step), &inputs)
            );
            h.complete("w", &got[0]).await;
            last = got[0].clone();
        }
        let done = h.job(&job).await;
        assert_eq!(done["status"], "Completed");
        assert_eq!(
            done["result_artifact_uri"],
            Harness::report_body("w", &last, "Completed")["output_artifact_uri"]
        );
    }
}

#[tokio::test]
async fn default_planner_timeouts_bound_the_first_lease() {
    // A lease far longer than any timeout, so the lease deadline shows the task's timeout.
    let config = EngineConfig {
        timing: Timing {
            lease: Duration::from_secs(3_600),
            ..Timing::default()
        },
        ..EngineConfig::retrying_at_once()
    };
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        config,
    );
    let h = Harness::from_parts(
        engine,
        Some(crate::harness::TOKENS),
        Arc::new(MemoryRateLimiter::new()),
        HttpConfig::default(),
    );
    h.register("w").await;
    for (input, expected_secs) in [("analyze this", 30), ("plain", 60)] {
        h.submit_simple(input).await;
        let before = Timestamp::now();
        let a = h.poll_one("w").await;
        let after = Timestamp::now();
        let expires = assert_timestamp(&a["lease_expires"]);
        let timeout = Duration::from_secs(expected_secs);
        assert!(
            expires >= before.plus(timeout) && expires <= after.plus(timeout),
            "{input}: {expires:?}"
        );
    }
}

#[tokio::test]
async fn explicit_dag_is_stored_and_dispatched_in_dependency_order() {
    let h = Harness::new();
    h.register("w").await;
    // Listed out of order on purpose: the tasks route sorts by task id.
    let job = h
        .submit(json!({
            "type": "pipeline",
            "tasks": [
                {"task_id": "d", "type": "join", "dependencies": ["b", "c"]},
                {"task_id": "a", "type": "fetch", "inputs": {"url": "s3://in", "k": "v"}, "max_retries": 0, "timeout_sec": 10},
                {"task_id": "c", "type": "map", "dependencies": ["a"]},
                {"task_id": "b", "type": "map", "dependencies": ["a"], "inputs": {}},
            ]
        }))
        .await;
    let tasks = h.tasks(&job).await;
    let listed: Vec<(String, String, Value)> = shape(&tasks)
        .into_iter()
        .map(|(id, ty, _, deps)| (id, ty, deps))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a".to_owned(), "fetch".to_owned(), json!([])),
            ("b".to_owned(), "map".to_owned(), json!(["a"])),
            ("c".to_owned(), "map".to_owned(), json!(["a"])),
            ("d".to_owned(), "join".to_owned(), json!(["b", "c"])),
        ]
    );
    assert!(
        tasks
            .iter()
            .all(|t| t["status"] == "Queued" && t["attempt"] == 0)
    );

    let first = h.poll("w", 10).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (&first[0]["task_id"], &first[0]["type"], &first[0]["inputs"]),
        (
            &json!("a"),
            &json!("fetch"),
            &json!({"url": "s3://in", "k": "v"})
        )
    );
    h.complete("w", &first[0]).await;

    let mut middle = h.poll("w", 10).await;
    middle.sort_by_key(|a| a["task_id"].as_str().map(str::to_owned));
    assert_eq!(
        middle
            .iter()
            .map(|a| a["task_id"].clone())
            .collect::<Vec<_>>(),
        [json!("b"), json!("c")]
    );
    assert_eq!(middle[0]["inputs"], json!({}));
    h.complete("w", &middle[0]).await;
    assert!(h.poll("w", 10).await.is_empty(), "d waits for c");
    h.complete("w", &middle[1]).await;

    let last = h.poll_one("w").await;
    assert_eq!(last["task_id"], "d");
    assert_eq!(h.job(&job).await["status"], "Running");
    h.complete("w", &last).await;
    let done = h.job(&job).await;
    assert_eq!(done["status"], "Completed");
    assert_eq!(
        done["result_artifact_uri"],
        json!(format!("s3://out/{job}/d"))
    );
}

#[tokio::test]
async fn result_of_a_dag_with_several_sinks_is_the_last_sink_by_task_id() {
    // Two independent tasks: both are sinks, `b` is the last by id. It completes first here.
    let h = Harness::new();
    h.register("w").await;
    let job = h.submit(json!({"type": "x", "tasks": [{"task_id": "a", "type": "t"}, {"task_id": "b", "type": "t"}]})).await;
    let mut got = h.poll("w", 2).await;
    got.sort_by_key(|a| a["task_id"].as_str().map(str::to_owned));
    h.complete("w", &got[1]).await;
    h.complete("w", &got[0]).await;
    let done = h.job(&job).await;
    assert_eq!(done["status"], "Completed");
    assert_eq!(
        done["result_artifact_uri"],
        json!(format!("s3://out/{job}/b")),
        "{done}"
    );
}

/// Bodies that must be refused with exactly this message, storing nothing.
fn invalid_submits() -> Vec<(Vec<u8>, String)> {
    let t = |tasks: Value| {
        serde_json::to_vec(&json!({"type": "x", "input": "y", "tasks": tasks})).expect("json")
    };
    let body = |v: Value| serde_json::to_vec(&v).expect("json");
    let long_id = "a".repeat(129);
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"task_id": format!("t{i}"), "type": "x"}))
        .collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // The body itself.
        (b"".to_vec(), "request body is required"),
        (b"   ".to_vec(), "request body is required"),
        (b"[1, 2]".to_vec(), "request body must be a JSON object"),
        (b"\"text\"".to_vec(), "request body must be a JSON object"),
        (b"null".to_vec(), "request body must be a JSON object"),
        // Top-level fields.
        (body(json!({"input": "y"})), "type is required"),
        (
            body(json!({"type": 5, "input": "y"})),
            "type must be a string",
        ),
        (
            body(json!({"type": "  ", "input": "y"})),
            "type must be a non-empty string",
        ),
        (
            body(json!({"type": "x".repeat(129), "input": "y"})),
            "type must be at most 128 characters",
        ),
        (body(json!({"type": "x"})), "input is required"),
        (
            body(json!({"type": "x", "input": 7})),
            "input must be a string",
        ),
        (
            body(json!({"type": "x", "input": "y", "priority": "urgent"})),
            "priority must be interactive or batch",
        ),
        (
            body(json!({"type": "x", "input": "y", "priority": 1})),
            "priority must be a string",
        ),
        (
            body(json!({"type": "x", "input": "y", "policy": ["p"]})),
            "policy must be a string",
        ),
        (
            body(json!({"type": "x", "input": "y", "tenant": 3})),
            "tenant must be a string",
        ),
        (
            body(json!({"type": "x", "input": "y", "tenant": "bad tenant!"})),
            "tenant must be 1-128 characters of [A-Za-z0-9._:-]",
        ),
        (
            body(json!({"type": "x", "input": "y", "tasks": "a"})),
            "tasks must be an array",
        ),
        (
            body(json!({"type": "x", "input": "y", "tasks": {"task_id": "a"}})),
            "tasks must be an array",
        ),
        // The DAG.
        (t(json!([])), "tasks must contain at least one task"),
        (
            t(Value::Array(many)),
            "tasks must contain at most 1000 tasks (got 1001)",
        ),
        (t(json!(["a"])), "tasks[0] must be an object"),
        (t(json!([{"type": "x"}])), "tasks[0].task_id is required"),
        (
            t(json!([{"task_id": 5, "type": "x"}])),
            "tasks[0].task_id must be a string",
        ),
        (
            t(json!([{"task_id": "", "type": "x"}])),
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        ),
        (
            t(json!([{"task_id": "bad id", "type": "x"}])),
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        ),
        (
            t(json!([{"task_id": "a|b", "type": "x"}])),
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        ),
        (
            t(json!([{"task_id": "ok", "type": "x"}, {"task_id": long_id, "type": "x"}])),
            "tasks[1].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        ),
        (
            t(json!([{"task_id": "a", "type": "x"}, {"task_id": "a", "type": "x"}])),
            "tasks[1].task_id \"a\" is not unique",
        ),
        (t(json!([{"task_id": "a"}])), "tasks[0].type is required"),
        (
            t(json!([{"task_id": "a", "type": 1}])),
            "tasks[0].type must be a string",
        ),
        (
            t(json!([{"task_id": "a", "type": " "}])),
            "tasks[0].type must be a non-empty string",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "inputs": "s"}])),
            "tasks[0].inputs must be an object of strings",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "inputs": {"n": 1}}])),
            "tasks[0].inputs.n must be a string",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "dependencies": "b"}])),
            "tasks[0].dependencies must be an array",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "dependencies": [1]}])),
            "tasks[0].dependencies[0] must be a string",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "dependencies": ["zz"]}])),
            "tasks[0].dependencies[0] names unknown task \"zz\"",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "dependencies": ["a"]}])),
            "tasks[0].dependencies[0]: task \"a\" depends on itself",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "max_retries": 101}])),
            "tasks[0].max_retries must be an integer from 0 to 100",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "max_retries": -1}])),
            "tasks[0].max_retries must be an integer from 0 to 100",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "max_retries": "2"}])),
            "tasks[0].max_retries must be an integer from 0 to 100",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "max_retries": 1.5}])),
            "tasks[0].max_retries must be an integer from 0 to 100",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "timeout_sec": 0}])),
            "tasks[0].timeout_sec must be an integer from 1 to 86400",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "timeout_sec": 86401}])),
            "tasks[0].timeout_sec must be an integer from 1 to 86400",
        ),
        (
            t(json!([{"task_id": "a", "type": "x", "timeout_sec": true}])),
            "tasks[0].timeout_sec must be an integer from 1 to 86400",
        ),
    ];
    cases.into_iter().map(|(b, m)| (b, m.to_owned())).collect()
}

#[tokio::test]
async fn invalid_submits_are_400_naming_the_field_and_store_nothing() {
    let h = Harness::new();
    h.submit_simple("already here").await;
    let before = h.snapshot().await;
    for (body, message) in invalid_submits() {
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        let resp = h
            .post_raw("/v1/jobs", body)
            .token(OP)
            .header("content-type", "application/json")
            .send()
            .await;
        assert_eq!(resp.status.as_u16(), 400, "{shown}: {}", resp.text);
        assert_eq!(resp.json, json!({"error": message}), "{shown}");
        h.assert_unchanged(&before, &shown).await;
    }
    // A cycle names one task on it.
    let cycle = json!({"type": "x", "tasks": [
        {"task_id": "a", "type": "x", "dependencies": ["c"]},
        {"task_id": "b", "type": "x", "dependencies": ["a"]},
        {"task_id": "c", "type": "x", "dependencies": ["b"]},
        {"task_id": "d", "type": "x"},
    ]});
    let message = h
        .post_json("/v1/jobs", &cycle)
        .token(OP)
        .send()
        .await
        .error_message(400);
    assert!(
        ["a", "b", "c"]
            .iter()
            .any(|id| message == format!("tasks contain a dependency cycle through \"{id}\"")),
        "{message}"
    );
    // Malformed JSON: the message says so (and where).
    for raw in [
        &b"{\"type\": \"x\", "[..],
        b"{type: x}",
        b"{\"type\": \"x\",}",
        b"\xff\xfe",
    ] {
        let message = h
            .post_raw("/v1/jobs", raw.to_vec())
            .token(OP)
            .send()
            .await
            .error_message(400);
        assert!(message.starts_with("invalid JSON body: "), "{message}");
    }
    h.assert_unchanged(&before, "cycle and malformed JSON")
        .await;
}

#[tokio::test]
async fn oversize_bodies_are_413_declared_or_streamed() {
    let h = Harness::with_config(HttpConfig {
        max_body_bytes: 256,
        ..HttpConfig::default()
    });
    let before = h.snapshot().await;
    // A valid body padded to exactly `len` bytes.
    let body_of = |len: usize| {
        let empty = serde_json::to_vec(&json!({"type": "chat", "input": ""})).expect("json");
        serde_json::to_vec(&json!({"type": "chat", "input": "x".repeat(len - empty.len())}))
            .expect("json")
    };
    let too_big = body_of(257);
    assert_eq!(too_big.len(), 257);

    h.post_raw("/v1/jobs", too_big.clone())
        .token(OP)
        .send()
        .await
        .expect_error(413, "request body exceeds 256 bytes");
    h.post_raw("/v1/jobs", too_big.clone())
        .token(OP)
        .send_streamed(64)
        .await
        .expect_error(413, "request body exceeds 256 bytes");
    // Far larger than the limit, in small pieces.
    let huge = vec![b' '; 1 << 20];
    h.post_raw("/v1/jobs", huge)
        .token(OP)
        .send_streamed(1000)
        .await
        .expect_error(413, "request body exceeds 256 bytes");
    // A declared length over the limit is refused without reading (the body here is small).
    h.post_raw("/v1/jobs", body_of(100))
        .token(OP)
        .header("content-length", "300")
        .send()
        .await
        .expect_status(413);
    h.assert_unchanged(&before, "413s").await;

    // Exactly the limit is fine, declared or streamed.
    h.post_raw("/v1/jobs", body_of(256))
        .token(OP)
        .send()
        .await
        .expect_status(202);
    h.post_raw("/v1/jobs", body_of(256))
        .token(OP)
        .send_streamed(50)
        .await
        .expect_status(202);
    let listed = h.get("/v1/jobs").token(OP).send().await.json;
    assert_eq!(listed["total"], 2);

    // A cancel refused for its body cancels nothing but is on record.
    let job = listed["jobs"][0]["job_id"]
        .as_str()
        .expect("job_id")
        .to_owned();
    let before = h.snapshot().await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .raw(vec![b' '; 300])
        .send_streamed(100)
        .await
        .expect_error(413, "request body exceeds 256 bytes");
    let event = h
        .assert_unchanged_but_audited(&before, "oversize cancel")
        .await;
    assert_eq!(
        (&event["action"], &event["result"], &event["details"]),
        (
            &json!("job_cancel"),
            &json!("noop"),
            &json!("request body exceeds 256 bytes")
        )
    );
}

#[tokio::test]
async fn batch_tasks_are_dispatched_after_interactive_ones() {
    let h = Harness::new();
    h.register("w").await;
    let batch1 = h
        .submit(json!({"type": "chat", "input": "b1", "priority": "batch"}))
        .await;
    let batch2 = h
        .submit(json!({"type": "chat", "input": "b2", "priority": "batch"}))
        .await;
    let inter1 = h
        .submit(json!({"type": "chat", "input": "i1", "priority": "interactive"}))
        .await;
    let inter2 = h.submit(json!({"type": "chat", "input": "i2"})).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(
            h.poll_one("w").await["job_id"]
                .as_str()
                .expect("job_id")
                .to_owned(),
        );
    }
    assert_eq!(order, [inter1, inter2, batch1, batch2]);
    assert!(h.poll("w", 5).await.is_empty());
}

#[tokio::test]
async fn list_jobs_filters_pages_and_validates_its_query() {
    let h = Harness::new();
    h.register("w").await;
    let mut acme = Vec::new();
    for i in 0..3 {
        acme.push(
            h.submit(json!({"type": "chat", "input": format!("a{i}"), "tenant": "acme"}))
                .await,
        );
    }
    let beta: Vec<String> = vec![
        h.submit(json!({"type": "chat", "input": "b0", "tenant": "beta"}))
            .await,
        h.submit(json!({"type": "chat", "input": "b1", "tenant": "beta"}))
            .await,
    ];
    // acme[0] completes; beta[1] is canceled.
    let a = h.poll_one("w").await;
    assert_eq!(a["job_id"], acme[0].as_str());
    h.complete("w", &a).await;
    h.delete(&format!("/v1/jobs/{}", beta[1]))
        .token(OP)
        .send()
        .await
        .expect_status(200);

    let h = &h;
    let list = |query: &str| {
        let path = format!("/v1/jobs{query}");
        async move { h.get(&path).token(OP).send().await }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["job_id"].as_str().expect("id").to_owned())
            .collect()
    };

    // Newest first.
    let all = list("").await.expect_status(200).json;
    assert_eq!(
        ids(&all),
        [beta[1].as_str(), &beta[0], &acme[2], &acme[1], &acme[0]]
    );
    assert_eq!(
        (all["total"].as_u64(), all["returned"].as_u64()),
        (Some(5), Some(5))
    );

    let completed = list("?status=Completed").await.expect_status(200).json;
    assert_eq!(
        (ids(&completed), completed["total"].as_u64()),
        (vec![acme[0].clone()], Some(1))
    );
    let queued_acme = list("?status=Queued&tenant=acme")
        .await
        .expect_status(200)
        .json;
    assert_eq!(ids(&queued_acme), [acme[2].as_str(), &acme[1]]);
    let of_beta = list("?tenant=beta").await.expect_status(200).json;
    assert_eq!(
        (ids(&of_beta), of_beta["total"].as_u64()),
        (vec![beta[1].clone(), beta[0].clone()], Some(2))
    );
    assert_eq!(
        list("?tenant=nobody").await.expect_status(200).json["total"],
        0
    );

    let page = list("?limit=2&offset=1").await.expect_status(200).json;
    assert_eq!(ids(&page), [beta[0].as_str(), &acme[2]]);
    assert_eq!(
        (
            page["total"].as_u64(),
            page["returned"].as_u64(),
            page["limit"].as_u64(),
            page["offset"].as_u64()
        ),
        (Some(5), Some(2), Some(2), Some(1))
    );
    let past_end = list("?offset=10").await.expect_status(200).json;
    assert_eq!(
        (past_end["total"].as_u64(), past_end["returned"].as_u64()),
        (Some(5), Some(0))
    );
    // Above the cap: clamped, not rejected.
    assert_eq!(
        list("?limit=5000").await.expect_status(200).json["limit"],
        1000
    );

    let before = h.snapshot().await;
    for (query, message) in [
        ("?limit=-1", "limit must be a non-negative integer"),
        ("?limit=abc", "limit must be a non-negative integer"),
        ("?limit=1.5", "limit must be a non-negative integer"),
        ("?offset=-3", "offset must be a non-negative integer"),
        ("?offset=x", "offset must be a non-negative integer"),
        (
            "?status=done",
            "status must be one of Queued, Running, Completed, Failed, Canceled",
        ),
        (
            "?status=completed",
            "status must be one of Queued, Running, Completed, Failed, Canceled",
        ),
    ] {
        list(query).await.expect_error(400, message);
    }
    h.assert_unchanged(&before, "bad list queries").await;
}

#[tokio::test]
async fn tasks_route_filters_pages_sorts_and_validates() {
    let h = Harness::new();
    h.register("w1").await;
    h.register("w2").await;
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "c", "type": "t"},
            {"task_id": "a", "type": "t"},
            {"task_id": "b", "type": "t"},
            {"task_id": "d", "type": "t", "dependencies": ["a"]},
        ]}))
        .await;
    let h = &h;
    let tasks_of = |query: &str| {
        let path = format!("/v1/jobs/{job}/tasks{query}");
        async move { h.get(&path).token(OP).send().await }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["task_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(&tasks_of("").await.expect_status(200).json),
        ["a", "b", "c", "d"]
    );

    let first = h.poll_one("w1").await;
    let second = h.poll_one("w2").await;
    let running_w1 = tasks_of("?status=Running&worker_id=w1")
        .await
        .expect_status(200)
        .json;
    assert_eq!(ids(&running_w1), [first["task_id"].as_str().expect("id")]);
    assert_eq!(running_w1["total"], 1);
    assert_eq!(
        ids(&tasks_of("?worker_id=w2").await.json),
        [second["task_id"].as_str().expect("id")]
    );
    assert_eq!(tasks_of("?worker_id=nobody").await.json["total"], 0);
    assert_eq!(tasks_of("?status=Running").await.json["total"], 2);
    assert_eq!(tasks_of("?status=Queued").await.json["total"], 2);

    let page = tasks_of("?limit=2&offset=1").await.expect_status(200).json;
    assert_eq!(ids(&page), ["b", "c"]);
    assert_eq!(
        (
            &page["job_id"],
            &page["total"],
            &page["returned"],
            &page["limit"],
            &page["offset"]
        ),
        (&json!(job), &json!(4), &json!(2), &json!(2), &json!(1))
    );
    assert_eq!(ids(&tasks_of("?offset=3").await.json), ["d"]);
    assert_eq!(tasks_of("?offset=9").await.json["returned"], 0);

    let before = h.snapshot().await;
    for (query, message) in [
        ("?limit=-1", "limit must be a non-negative integer"),
        ("?limit=ten", "limit must be a non-negative integer"),
        ("?offset=-1", "offset must be a non-negative integer"),
        ("?offset=1e3", "offset must be a non-negative integer"),
        (
            "?status=Done",
            "status must be one of Queued, Running, Completed, Failed, Canceled",
        ),
    ] {
        tasks_of(query).await.expect_error(400, message);
    }
    h.get("/v1/jobs/job-missing/tasks")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
    h.assert_unchanged(&before, "bad task queries").await;
}

#[tokio::test]
async fn cancel_reports_whether_the_job_is_canceled_and_is_audited() {
    let h = Harness::new();
    h.register("w").await;
    let op = crate::harness::principal_id(OP);

    // A running job: the job and every unfinished task are canceled.
    let job = h
        .submit(json!({"type": "x", "tasks": [
            {"task_id": "a", "type": "t"},
            {"task_id": "b", "type": "t"},
            {"task_id": "c", "type": "t", "dependencies": ["a"]},
        ]}))
        .await;
    let a = h.poll_one("w").await;
    h.complete("w", &a).await;
    let running = h.poll("w", 5).await;
    assert_eq!(running.len(), 2, "b and c run");

    let resp = h
        .delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"accepted": true}));
    let canceled = h.job(&job).await;
    assert_eq!(canceled["status"], "Canceled");
    let statuses: Vec<(Value, Value)> = h
        .tasks(&job)
        .await
        .iter()
        .map(|t| (t["task_id"].clone(), t["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!("a"), json!("Completed")),
            (json!("b"), json!("Canceled")),
            (json!("c"), json!("Canceled"))
        ]
    );
    let event = h.last_audit().await;
    assert_eq!(
        (
            &event["action"],
            &event["result"],
            &event["resource"],
            &event["actor"],
            &event["payload_hash"],
            &event["requested"]
        ),
        (
            &json!("job_cancel"),
            &json!("ok"),
            &json!(format!("/v1/jobs/{job}")),
            &json!(op),
            &json!(""),
            &json!(1)
        )
    );

    // Again: still accepted (it is canceled), audited as a no-op, nothing changes.
    let before = h.snapshot().await;
    let resp = h
        .delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"accepted": true}));
    let event = h
        .assert_unchanged_but_audited(&before, "second cancel")
        .await;
    assert_eq!(
        (&event["action"], &event["result"]),
        (&json!("job_cancel"), &json!("noop"))
    );

    // Nothing of a canceled job is dispatched again, even after the reconciler runs.
    h.reconcile_after(Duration::from_secs(120)).await;
    assert!(h.poll("w", 10).await.is_empty());

    // A queued job cancels too.
    let queued = h.submit_simple("later").await;
    h.delete(&format!("/v1/jobs/{queued}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.task(&queued, "t1").await["status"], "Canceled");
    assert!(h.poll("w", 10).await.is_empty());

    // A completed job: not accepted, nothing changes, audited as a no-op.
    let done = h.submit_simple("quick").await;
    let a = h.poll_one("w").await;
    h.complete("w", &a).await;
    let before = h.snapshot().await;
    let resp = h
        .delete(&format!("/v1/jobs/{done}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"accepted": false}));
    let event = h
        .assert_unchanged_but_audited(&before, "cancel of a completed job")
        .await;
    assert_eq!(
        (&event["action"], &event["result"]),
        (&json!("job_cancel"), &json!("noop"))
    );

    // A failed job: not accepted either.
    let failed = h.dead_job("w", "doomed").await;
    let before = h.snapshot().await;
    let resp = h
        .delete(&format!("/v1/jobs/{failed}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"accepted": false}));
    h.assert_unchanged_but_audited(&before, "cancel of a failed job")
        .await;

    // Unknown job: 404, and the attempt is still on record.
    let before = h.snapshot().await;
    h.delete("/v1/jobs/job-nope")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
    let event = h
        .assert_unchanged_but_audited(&before, "cancel of an unknown job")
        .await;
    assert_eq!(
        (&event["action"], &event["result"]),
        (&json!("job_cancel"), &json!("noop"))
    );

    // A cancel refused for want of a scope is a cancel request too: on record, nothing changes.
    let before = h.snapshot().await;
    let path = format!("/v1/jobs/{queued}");
    for token in [crate::harness::WRK, crate::harness::MET] {
        h.delete(&path).token(token).send().await.expect_error(
            403,
            "missing required scope (one of: tenant:<id>, operator)",
        );
    }
    let after = h.snapshot().await;
    assert_eq!(
        (&after.jobs, &after.tasks, &after.pending),
        (&before.jobs, &before.tasks, &before.pending)
    );
    assert_eq!(after.audit.len(), before.audit.len() + 2);
    for (event, token) in after.audit[..2]
        .iter()
        .zip([crate::harness::MET, crate::harness::WRK])
    {
        assert_eq!(
            (
                &event["action"],
                &event["result"],
                &event["actor"],
                &event["resource"],
                &event["details"]
            ),
            (
                &json!("job_cancel"),
                &json!("noop"),
                &json!(crate::harness::principal_id(token)),
                &json!(path),
                &json!("missing required scope (one of: tenant:<id>, operator)")
            )
        );
    }

    // A tenant cancels its own job.
    let own = h
        .submit(json!({"type": "chat", "input": "mine", "tenant": "acme"}))
        .await;
    let resp = h
        .delete(&format!("/v1/jobs/{own}"))
        .token(ACME)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json, json!({"accepted": true}));
    let event = h.last_audit().await;
    assert_eq!(
        (&event["actor"], &event["tenant"], &event["result"]),
        (
            &json!(crate::harness::principal_id(ACME)),
            &json!("acme"),
            &json!("ok")
        )
    );
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_submit_return_the_first_job() {
    let h = Harness::new();
    let body = json!({"type": "demo", "input": "hello"});
    let first = h
        .post_json("/v1/jobs", &body)
        .token(ACME)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .expect_status(202);
    let job_id = first.json["job_id"].as_str().expect("job id").to_owned();
    let again = h
        .post_json("/v1/jobs", &body)
        .token(ACME)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        again.json["job_id"],
        job_id.as_str(),
        "the first job, created once"
    );
    assert_eq!(again.json["status"], "Queued");
    let listed = h
        .get("/v1/jobs")
        .token(ACME)
        .send()
        .await
        .expect_status(200);
    assert_eq!(listed.json["total"], 1);

    // Another body under the same key: a conflict that stores nothing.
    h.post_json("/v1/jobs", &json!({"type": "demo", "input": "other"}))
        .token(ACME)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .expect_error(
            409,
            &format!("Idempotency-Key was used for job {job_id} with another body"),
        );
    // Keys are per tenant; without a key every submit is a new job.
    h.post_json("/v1/jobs", &body)
        .token(crate::harness::BETA)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .expect_status(202);
    h.post_json("/v1/jobs", &body)
        .token(ACME)
        .send()
        .await
        .expect_status(202);
    let listed = h.get("/v1/jobs").token(OP).send().await.expect_status(200);
    assert_eq!(listed.json["total"], 3);

    let before = h.snapshot().await;
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "tab\there", "caf\u{e9}"] {
        h.post_json("/v1/jobs", &body)
            .token(ACME)
            .header_bytes("idempotency-key", bad.as_bytes())
            .send()
            .await
            .expect_error(
                400,
                "Idempotency-Key must be 1-255 printable ASCII characters",
            );
    }
    h.assert_unchanged(&before, "bad idempotency keys").await;
    h.post_json("/v1/jobs", &body)
        .token(ACME)
        .header("idempotency-key", &"k".repeat(255))
        .send()
        .await
        .expect_status(202);
}

#[tokio::test]
async fn delayed_jobs_and_retry_back_offs_are_validated_and_shown() {
    let h = Harness::new();
    let before = h.snapshot().await;
    let with_backoff = |backoff: Value| json!({"type": "x", "tasks": [{"task_id": "a", "type": "t", "retry_backoff": backoff}]});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "x", "input": "i", "run_at": "tomorrow"}),
            "run_at must be an RFC 3339 timestamp",
        ),
        (
            json!({"type": "x", "input": "i", "run_at": "2099-01-01T00:00:00Z"}),
            "run_at must be at most a year ahead",
        ),
        (
            json!({"type": "x", "input": "i", "run_at": "2026-12-01T00:00:00Z", "delay_seconds": 5}),
            "give run_at or delay_seconds, not both",
        ),
        (
            json!({"type": "x", "input": "i", "delay_seconds": -1}),
            "delay_seconds must be an integer from 0 to 31536000",
        ),
        (
            json!({"type": "x", "input": "i", "delay_seconds": "soon"}),
            "delay_seconds must be an integer from 0 to 31536000",
        ),
        (
            with_backoff(json!("fast")),
            "tasks[0].retry_backoff must be an object with initial_ms and max_ms",
        ),
        (
            with_backoff(json!({"initial_ms": 100})),
            "tasks[0].retry_backoff.max_ms is required",
        ),
        (
            with_backoff(json!({"initial_ms": -1, "max_ms": 5})),
            "tasks[0].retry_backoff.initial_ms must be an integer from 0 to 86400000",
        ),
        (
            with_backoff(json!({"initial_ms": 500, "max_ms": 100})),
            "tasks[0].retry_backoff.max_ms must be at least tasks[0].retry_backoff.initial_ms",
        ),
    ];
    for (body, message) in cases {
        h.post_json("/v1/jobs", &body)
            .token(ACME)
            .send()
            .await
            .expect_error(400, message);
    }
    h.assert_unchanged(&before, "refused delays and back-offs")
        .await;

    // A delayed job is stored at once and shows when it starts; nothing is handed out before.
    let delayed = h
        .submit(json!({"type": "x", "input": "later", "delay_seconds": 3600}))
        .await;
    let job = h.job(&delayed).await;
    assert_eq!(job["status"], "Queued");
    let first = &h.tasks(&delayed).await[0];
    let created = Timestamp::parse_rfc3339(first["created_at"].as_str().expect("created")).unwrap();
    let starts =
        Timestamp::parse_rfc3339(first["next_attempt_at"].as_str().expect("shown")).unwrap();
    assert_eq!(starts, created.plus(Duration::from_secs(3600)));
    h.register("w").await;
    assert!(h.poll("w", 10).await.is_empty(), "not before its start");

    // A task's own back-off: after a failure it shows when it will be retried.
    let retried = h
        .submit(with_backoff(json!({"initial_ms": 60000, "max_ms": 60000})))
        .await;
    let assigned = h.poll_one("w").await;
    assert_eq!(assigned["job_id"], retried.as_str());
    h.fail("w", &assigned).await;
    let task = h.task(&retried, "a").await;
    assert_eq!(task["status"], "Queued");
    let failed_at = Timestamp::parse_rfc3339(task["updated_at"].as_str().unwrap()).unwrap();
    let retry_at =
        Timestamp::parse_rfc3339(task["next_attempt_at"].as_str().expect("shown")).unwrap();
    assert!(retry_at > failed_at && retry_at <= failed_at.plus(Duration::from_secs(60)));
    assert!(
        h.poll("w", 10).await.is_empty(),
        "not before its back-off ends"
    );
}
