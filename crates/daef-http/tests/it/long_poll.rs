//! Long polling: `GET /v1/workers/{id}/assignments?wait_ms=N`.

use std::time::{Duration, Instant};

use crate::harness::{Harness, WRK};

async fn long_poll(h: &Harness, worker: &str, wait_ms: &str) -> (u16, serde_json::Value) {
    let path = format!("/v1/workers/{worker}/assignments?max_tasks=5&wait_ms={wait_ms}");
    let resp = h.get(&path).token(WRK).send().await;
    (resp.status.as_u16(), resp.json)
}

#[tokio::test]
async fn an_idle_long_poll_answers_empty_when_the_wait_is_over() {
    let h = Harness::new();
    h.register("w-idle").await;
    let started = Instant::now();
    let (status, body) = long_poll(&h, "w-idle", "300").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignments"], serde_json::json!([]));
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn a_waiting_poll_gets_work_submitted_while_it_waits() {
    let h = Harness::new();
    h.register("w-wait").await;
    let started = Instant::now();
    let (polled, job_id) = tokio::join!(long_poll(&h, "w-wait", "20000"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.submit_simple("hello while you wait").await
    });
    let (status, body) = polled;
    assert_eq!(status, 200, "{body}");
    let got = body["assignments"].as_array().expect("assignments");
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["job_id"], job_id.as_str());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the poll waited out its wait instead of taking the work"
    );
}

#[tokio::test]
async fn a_long_poll_with_work_ready_answers_at_once() {
    let h = Harness::new();
    h.register("w-ready").await;
    let job_id = h.submit_simple("ready").await;
    let started = Instant::now();
    // Far above the 30 s cap, which clamps rather than refuses it.
    let (status, body) = long_poll(&h, "w-ready", "99999999999999999999999").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignments"][0]["job_id"], job_id.as_str());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_waits_and_unknown_workers_are_refused_at_once() {
    let h = Harness::new();
    h.register("w-bad").await;
    for bad in ["-1", "soon", "1.5"] {
        let (status, body) = long_poll(&h, "w-bad", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "wait_ms must be a non-negative integer");
    }
    let started = Instant::now();
    let (status, _) = long_poll(&h, "w-nobody", "20000").await;
    assert_eq!(status, 404);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn waiting_polls_end_when_the_server_closes() {
    let h = Harness::new();
    h.register("w-close").await;
    let started = Instant::now();
    let (polled, ()) = tokio::join!(long_poll(&h, "w-close", "20000"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.app.close_event_streams();
    });
    assert_eq!(polled.0, 200);
    assert_eq!(polled.1["assignments"], serde_json::json!([]));
    assert!(started.elapsed() < Duration::from_secs(10));
}
