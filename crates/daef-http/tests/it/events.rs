//! `GET /v1/jobs/{id}/events`: Server-Sent Events of a job's and its tasks' changes, a final
//! `end` event, keep-alive comments, tenant rules as for the job, and changes made through
//! another replica.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use daef_auth::Authenticator;
use daef_core::{Engine, EngineConfig};
use daef_http::response::Body;
use daef_http::{App, EventStreamConfig, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::harness::{ACME, BETA, Harness, MET, OP, REMOTE, TOKENS};

/// Fast polling, so changes show within milliseconds.
fn fast() -> EventStreamConfig {
    EventStreamConfig {
        poll_interval: Duration::from_millis(10),
        keep_alive: Duration::from_secs(60),
    }
}

/// A gateway over shared adapters with these stream settings.
fn harness_over(
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    events: EventStreamConfig,
) -> Harness {
    let engine = Engine::new(store, queue, EngineConfig::retrying_at_once());
    let auth = Authenticator::from_env_value(Some(TOKENS)).expect("token list");
    let app = App::new(
        engine,
        auth,
        Arc::new(MemoryRateLimiter::new()),
        HttpConfig::default(),
    );
    Harness {
        app: Arc::new(app.with_event_streams(events)),
    }
}

fn harness(events: EventStreamConfig) -> Harness {
    harness_over(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        events,
    )
}

/// One thing read from a stream.
#[derive(Debug, PartialEq)]
enum Sse {
    Event(String, Value),
    Comment(String),
}

/// An open event stream.
struct Stream {
    body: Body,
    buf: String,
}

impl Stream {
    async fn open(h: &Harness, job: &str, token: &str) -> Stream {
        let response = request(h, job, token).await;
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .expect("content type");
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        Stream {
            body: response.into_body(),
            buf: String::new(),
        }
    }

    /// The next event or comment; `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(block.trim_end()));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("an event within 5s");
            match frame {
                Some(Ok(frame)) => {
                    let data = frame.into_data().expect("data frame");
                    self.buf
                        .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                }
                Some(Err(never)) => match never {},
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended mid-event: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }

    /// The next event (skipping comments), as `(name, data)`.
    async fn event(&mut self) -> (String, Value) {
        loop {
            match self.next().await {
                Some(Sse::Event(name, data)) => return (name, data),
                Some(Sse::Comment(_)) => continue,
                None => panic!("the stream ended"),
            }
        }
    }

    /// The next event, checked: its name and a few fields of its data.
    async fn expect(&mut self, name: &str, fields: Value) -> Value {
        let (got, data) = self.event().await;
        assert_eq!(got, name, "{data}");
        for (key, value) in fields.as_object().expect("object") {
            assert_eq!(&data[key], value, "{key} of {name} event {data}");
        }
        data
    }
}

/// Whether `data` has every field of `fields`.
fn matches(data: &Value, fields: &Value) -> bool {
    fields
        .as_object()
        .expect("object")
        .iter()
        .all(|(k, v)| &data[k] == v)
}

impl Stream {
    /// The next `expected.len()` events, in any order: the job's move to `Running` and its
    /// first task's are separate store steps, so a stream may see either first.
    async fn expect_unordered(&mut self, expected: &[(&str, Value)]) {
        let mut left: Vec<&(&str, Value)> = expected.iter().collect();
        while !left.is_empty() {
            let (name, data) = self.event().await;
            let at = left
                .iter()
                .position(|(n, f)| *n == name && matches(&data, f))
                .unwrap_or_else(|| {
                    panic!("unexpected {name} event {data}; still expecting {left:?}")
                });
            left.remove(at);
        }
    }
}

fn parse(block: &str) -> Sse {
    let mut name = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            return Sse::Comment(comment.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event: ") {
            name = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        } else {
            panic!("unexpected line {line:?} in {block:?}");
        }
    }
    let data = serde_json::from_str(&data.join("\n")).expect("JSON data");
    Sse::Event(name.expect("an event name"), data)
}

async fn request(h: &Harness, job: &str, token: &str) -> Response<Body> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/jobs/{job}/events"));
    if !token.is_empty() {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder.body(Full::new(Bytes::new())).expect("request");
    h.app
        .handle(request, REMOTE.parse().expect("address"))
        .await
}

#[tokio::test]
async fn a_stream_shows_every_change_of_the_job_and_its_tasks_then_ends() {
    let h = harness(fast());
    let job = h
        .submit(json!({"type": "chat", "input": "analyze this"}))
        .await;
    let mut s = Stream::open(&h, &job, OP).await;
    for task in ["t1-split", "t2-embed", "t3-summarize"] {
        s.expect(
            "task",
            json!({"task_id": task, "status": "Queued", "attempt": 0}),
        )
        .await;
    }
    let first = s
        .expect("job", json!({"job_id": job, "status": "Queued"}))
        .await;
    assert_eq!(
        first,
        h.job(&job).await,
        "the job as GET /v1/jobs/{{id}} shows it"
    );

    h.register("w-1").await;
    let a = h.poll_one("w-1").await;
    s.expect_unordered(&[
        (
            "task",
            json!({"task_id": "t1-split", "status": "Running", "attempt": 1, "worker_id": "w-1"}),
        ),
        ("job", json!({"status": "Running"})),
    ])
    .await;
    h.fail("w-1", &a).await;
    let retried = s
        .expect(
            "task",
            json!({"task_id": "t1-split", "status": "Queued", "attempt": 1}),
        )
        .await;
    assert_eq!(retried["error"], "boom on attempt 1");

    for task in ["t1-split", "t2-embed", "t3-summarize"] {
        let a = h.poll_one("w-1").await;
        assert_eq!(a["task_id"], task);
        s.expect("task", json!({"task_id": task, "status": "Running"}))
            .await;
        h.complete("w-1", &a).await;
        let done = s
            .expect("task", json!({"task_id": task, "status": "Completed"}))
            .await;
        assert_eq!(
            done,
            h.task(&job, task).await,
            "the task as GET /v1/jobs/{{id}}/tasks shows it"
        );
    }
    let result = json!(format!("s3://out/{job}/t3-summarize"));
    s.expect(
        "job",
        json!({"status": "Completed", "result_artifact_uri": result}),
    )
    .await;
    s.expect(
        "end",
        json!({"job_id": job, "status": "Completed", "result_artifact_uri": result}),
    )
    .await;
    assert_eq!(s.next().await, None, "the stream closes after `end`");
}

#[tokio::test]
async fn a_finished_job_streams_its_final_state_and_ends() {
    let h = harness(fast());
    let job = h.submit_simple("hello").await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let mut s = Stream::open(&h, &job, OP).await;
    s.expect("task", json!({"task_id": "t1", "status": "Canceled"}))
        .await;
    s.expect("job", json!({"status": "Canceled"})).await;
    s.expect("end", json!({"status": "Canceled"})).await;
    assert_eq!(s.next().await, None);
}

#[tokio::test]
async fn tenant_rules_are_those_of_the_job() {
    let h = harness(fast());
    let job = h
        .post_json("/v1/jobs", &json!({"type": "chat", "input": "x"}))
        .token(ACME)
        .send()
        .await;
    let job = job.expect_status(202).json["job_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/jobs/{job}/events");
    h.get(&path)
        .send()
        .await
        .expect_error(401, "missing bearer token");
    h.get(&path)
        .token("nope")
        .send()
        .await
        .expect_error(401, "invalid token");
    let scope = h.get(&path).token(MET).send().await.error_message(403);
    assert!(scope.starts_with("missing required scope"), "{scope}");
    h.get(&path)
        .token(BETA)
        .send()
        .await
        .expect_error(404, "job not found");
    h.get("/v1/jobs/job-unknown/events")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
    let resp = h
        .call(Method::POST, &path)
        .token(OP)
        .send()
        .await
        .expect_status(405);
    assert_eq!(resp.header("allow"), Some("GET"));
    // The owner and an operator may watch.
    for token in [ACME, OP] {
        let mut s = Stream::open(&h, &job, token).await;
        s.expect("task", json!({"task_id": "t1"})).await;
        s.expect("job", json!({"job_id": job, "tenant": "acme"}))
            .await;
    }
}

#[tokio::test]
async fn a_quiet_stream_gets_keep_alive_comments() {
    let h = harness(EventStreamConfig {
        poll_interval: Duration::from_millis(10),
        keep_alive: Duration::from_millis(50),
    });
    let job = h.submit_simple("hello").await;
    let mut s = Stream::open(&h, &job, OP).await;
    s.expect("task", json!({"task_id": "t1"})).await;
    s.expect("job", json!({"status": "Queued"})).await;
    assert_eq!(s.next().await, Some(Sse::Comment("keep-alive".into())));
    assert_eq!(s.next().await, Some(Sse::Comment("keep-alive".into())));
}

#[tokio::test]
async fn a_stream_sees_changes_made_through_another_replica() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(5));
    let watched = harness_over(store.clone(), queue.clone(), fast());
    let other = harness_over(store, queue, fast());
    let job = other.submit_simple("hello").await;
    let mut s = Stream::open(&watched, &job, OP).await;
    s.expect("task", json!({"status": "Queued"})).await;
    s.expect("job", json!({"status": "Queued"})).await;
    other.register("w-9").await;
    let a = other.poll_one("w-9").await;
    s.expect_unordered(&[
        ("task", json!({"status": "Running", "worker_id": "w-9"})),
        ("job", json!({"status": "Running"})),
    ])
    .await;
    other.complete("w-9", &a).await;
    s.expect("task", json!({"status": "Completed"})).await;
    s.expect("job", json!({"status": "Completed"})).await;
    s.expect("end", json!({"status": "Completed"})).await;
    assert_eq!(s.next().await, None);
}

#[tokio::test]
async fn closing_the_server_ends_open_streams() {
    let h = harness(fast());
    let job = h.submit_simple("hello").await;
    let mut s = Stream::open(&h, &job, OP).await;
    s.expect("task", json!({})).await;
    s.expect("job", json!({})).await;
    h.app.close_event_streams();
    assert_eq!(
        s.next().await,
        None,
        "ended without `end`: the job is still queued"
    );
}

#[tokio::test]
async fn a_client_that_leaves_stops_its_watcher() {
    let store = Arc::new(MemoryStore::new());
    let h = harness_over(store.clone(), Arc::new(MemoryQueue::new(5)), fast());
    let job = h.submit_simple("hello").await;
    let before = Arc::strong_count(&store);
    let mut s = Stream::open(&h, &job, OP).await;
    s.expect("task", json!({})).await;
    assert_eq!(
        Arc::strong_count(&store),
        before + 1,
        "the watcher holds the engine"
    );
    drop(s);
    for _ in 0..200 {
        if Arc::strong_count(&store) == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the watcher kept running after its client left");
}
