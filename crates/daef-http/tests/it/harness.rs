//! The harness: an [`App`] over the memory adapters, requests sent straight to
//! [`App::handle`], and helpers for the worker protocol, for "nothing changed" checks and for
//! re-checking the audit chain offline.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use daef_auth::Authenticator;
use daef_core::engine::ReconcileSummary;
use daef_core::ports::{RateLimiter, Store};
use daef_core::{Engine, EngineConfig, Timestamp};
use daef_http::{AdminLimits, App, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

/// The token list every auth-on harness uses.
pub(crate) const TOKENS: &str =
    "op:operator,met:metrics,wrk:worker,acme:tenant:acme,beta:tenant:beta";
/// Operator token.
pub(crate) const OP: &str = "op";
/// Metrics-only token.
pub(crate) const MET: &str = "met";
/// Worker token.
pub(crate) const WRK: &str = "wrk";
/// Token of tenant `acme`.
pub(crate) const ACME: &str = "acme";
/// Token of tenant `beta`.
pub(crate) const BETA: &str = "beta";
/// The client address requests come from unless a test says otherwise.
pub(crate) const REMOTE: &str = "203.0.113.7:4242";
/// The seed's lease length (the engine default).
pub(crate) const LEASE: Duration = Duration::from_secs(15);

/// The principal id DESIGN.md §4 defines for a token, computed independently of `daef-auth`.
pub(crate) fn principal_id(token: &str) -> String {
    format!("tok-{}", &blake3_hex(token.as_bytes())[..8])
}

/// Hex blake3.
pub(crate) fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// One gateway under test.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) app: Arc<App>,
}

impl Harness {
    /// Auth on (the [`TOKENS`] list), default limits.
    pub(crate) fn new() -> Self {
        Self::with_config(HttpConfig::default())
    }

    /// Auth on, these HTTP settings.
    pub(crate) fn with_config(config: HttpConfig) -> Self {
        Self::build(Some(TOKENS), config, Arc::new(MemoryStore::new()))
    }

    /// Auth on, these admin limits.
    pub(crate) fn with_admin(admin: AdminLimits) -> Self {
        Self::with_config(HttpConfig {
            admin,
            ..HttpConfig::default()
        })
    }

    /// Auth off: every request is `anonymous` and allowed.
    pub(crate) fn auth_off() -> Self {
        Self::build(None, HttpConfig::default(), Arc::new(MemoryStore::new()))
    }

    /// A gateway over `store` with this token list (`None`: auth off).
    pub(crate) fn build(tokens: Option<&str>, config: HttpConfig, store: Arc<dyn Store>) -> Self {
        let engine = Engine::new(
            store,
            Arc::new(MemoryQueue::new(5)),
            EngineConfig::retrying_at_once(),
        );
        Self::from_parts(engine, tokens, Arc::new(MemoryRateLimiter::new()), config)
    }

    /// A gateway from its parts.
    pub(crate) fn from_parts(
        engine: Engine,
        tokens: Option<&str>,
        limiter: Arc<dyn RateLimiter>,
        config: HttpConfig,
    ) -> Self {
        let auth = Authenticator::from_env_value(tokens).expect("valid token list");
        Self {
            app: Arc::new(App::new(engine, auth, limiter, config)),
        }
    }

    /// A request to send.
    pub(crate) fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: &self.app,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            remote: REMOTE.parse().expect("address"),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub(crate) fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// A POST whose body is `body` serialized.
    pub(crate) fn post_json(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::POST, path).json(body)
    }

    /// A POST whose body is exactly these bytes.
    pub(crate) fn post_raw(&self, path: &str, body: impl Into<Bytes>) -> Call<'_> {
        self.call(Method::POST, path).raw(body)
    }

    // --- jobs -----------------------------------------------------------------------------

    /// Submits as operator; returns the job id.
    pub(crate) async fn submit(&self, body: Value) -> String {
        let resp = self
            .post_json("/v1/jobs", &body)
            .token(OP)
            .send()
            .await
            .expect_status(202);
        resp.json["job_id"].as_str().expect("job_id").to_owned()
    }

    /// Submits a one-task job (`t1`, default planner).
    pub(crate) async fn submit_simple(&self, input: &str) -> String {
        self.submit(json!({"type": "chat", "input": input})).await
    }

    /// `GET /v1/jobs/{id}` as operator.
    pub(crate) async fn job(&self, job_id: &str) -> Value {
        self.get(&format!("/v1/jobs/{job_id}"))
            .token(OP)
            .send()
            .await
            .expect_status(200)
            .json
    }

    /// The job's tasks as operator, sorted by task id.
    pub(crate) async fn tasks(&self, job_id: &str) -> Vec<Value> {
        let resp = self
            .get(&format!("/v1/jobs/{job_id}/tasks"))
            .token(OP)
            .send()
            .await
            .expect_status(200);
        resp.json["tasks"].as_array().expect("tasks").clone()
    }

    /// One task of a job.
    pub(crate) async fn task(&self, job_id: &str, task_id: &str) -> Value {
        self.tasks(job_id)
            .await
            .into_iter()
            .find(|t| t["task_id"] == task_id)
            .unwrap_or_else(|| panic!("task {task_id} of {job_id}"))
    }

    // --- worker protocol --------------------------------------------------------------------

    pub(crate) async fn register(&self, worker: &str) {
        self.post_json("/v1/workers/register", &json!({"worker_id": worker}))
            .token(WRK)
            .send()
            .await
            .expect_status(200);
    }

    /// Polls as the worker token; returns the assignments.
    pub(crate) async fn poll(&self, worker: &str, max_tasks: usize) -> Vec<Value> {
        let path = format!("/v1/workers/{worker}/assignments?max_tasks={max_tasks}");
        let resp = self.get(&path).token(WRK).send().await.expect_status(200);
        resp.json["assignments"]
            .as_array()
            .expect("assignments is an array")
            .clone()
    }

    /// Polls one assignment and checks there was one.
    pub(crate) async fn poll_one(&self, worker: &str) -> Value {
        let mut got = self.poll(worker, 1).await;
        assert_eq!(got.len(), 1, "expected one assignment, got {got:?}");
        got.remove(0)
    }

    /// A report body for `assignment`: `Completed` carries an output URI, `Failed` an error; the
    /// idempotency key is unique per lease and status.
    pub(crate) fn report_body(worker: &str, assignment: &Value, status: &str) -> Value {
        let (job, task, lease) = (
            &assignment["job_id"],
            &assignment["task_id"],
            &assignment["lease_id"],
        );
        let mut body = json!({
            "worker_id": worker,
            "job_id": job,
            "task_id": task,
            "lease_id": lease,
            "idempotency_key": format!("{}-{status}", lease.as_str().unwrap_or_default()),
            "status": status,
            "duration_millis": 12,
        });
        if status == "Completed" {
            body["output_artifact_uri"] = json!(format!(
                "s3://out/{}/{}",
                job.as_str().unwrap_or(""),
                task.as_str().unwrap_or("")
            ));
        } else {
            body["error"] = json!(format!("boom on attempt {}", assignment["attempt"]));
        }
        body
    }

    /// Sends a report as the worker token.
    pub(crate) async fn send_report(&self, body: &Value) -> Resp {
        self.post_json("/v1/tasks/report", body)
            .token(WRK)
            .send()
            .await
    }

    /// Reports success for an assignment.
    pub(crate) async fn complete(&self, worker: &str, assignment: &Value) {
        self.send_report(&Self::report_body(worker, assignment, "Completed"))
            .await
            .expect_status(200);
    }

    /// Reports failure for an assignment.
    pub(crate) async fn fail(&self, worker: &str, assignment: &Value) {
        self.send_report(&Self::report_body(worker, assignment, "Failed"))
            .await
            .expect_status(200);
    }

    /// Submits a one-task job and fails it until it is dead (three attempts by default);
    /// returns the job id. The queue must hold nothing else dispatchable.
    pub(crate) async fn dead_job(&self, worker: &str, input: &str) -> String {
        let job = self.submit_simple(input).await;
        for _ in 0..3 {
            let a = self.poll_one(worker).await;
            assert_eq!(a["job_id"], job.as_str());
            self.fail(worker, &a).await;
        }
        assert_eq!(self.job(&job).await["status"], "Failed");
        job
    }

    /// Runs the reconciler as if `after` had passed since now.
    pub(crate) async fn reconcile_after(&self, after: Duration) -> ReconcileSummary {
        self.app
            .engine()
            .reconcile(Timestamp::now().plus(after))
            .await
    }

    // --- admin ------------------------------------------------------------------------------

    /// Every audit event, newest first, through the API (a successful read is not audited).
    pub(crate) async fn audit(&self) -> Vec<Value> {
        let resp = self
            .get("/v1/admin/audit?limit=1000")
            .token(OP)
            .send()
            .await
            .expect_status(200);
        resp.json["events"].as_array().expect("events").clone()
    }

    /// The newest audit event.
    pub(crate) async fn last_audit(&self) -> Value {
        self.audit()
            .await
            .into_iter()
            .next()
            .expect("an audit event")
    }

    /// Dead letters read from the engine, so reading them is not itself audited.
    pub(crate) async fn dead_letters(&self) -> Vec<Value> {
        let dead = self
            .app
            .engine()
            .dead_letters(10_000)
            .await
            .expect("dead letters");
        dead.into_iter()
            .map(|d| serde_json::to_value(daef_api::DeadLetter::from(d)).expect("serializable"))
            .collect()
    }

    /// Everything observable: every job and its tasks, dead letters, the audit log and the
    /// queue's sizes.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let jobs = self
            .get("/v1/jobs?limit=1000")
            .token(OP)
            .send()
            .await
            .expect_status(200)
            .json;
        let mut tasks = Vec::new();
        for job in jobs["jobs"].as_array().expect("jobs") {
            let id = job["job_id"].as_str().expect("job_id");
            tasks.push((id.to_owned(), self.tasks(id).await));
        }
        let queue = self.app.engine().queue();
        Snapshot {
            jobs,
            tasks,
            dead_letters: self.dead_letters().await,
            audit: self.audit().await,
            pending: queue.pending_count().await.expect("pending"),
            dead_count: queue.dead_letter_count().await.expect("dead count"),
        }
    }

    /// Checks that nothing observable changed since `before`.
    pub(crate) async fn assert_unchanged(&self, before: &Snapshot, context: &str) {
        let after = self.snapshot().await;
        assert_eq!(&after, before, "state changed after {context}");
    }

    /// Checks that nothing but the audit log changed since `before`, and that the log gained
    /// exactly one event; returns it.
    pub(crate) async fn assert_unchanged_but_audited(
        &self,
        before: &Snapshot,
        context: &str,
    ) -> Value {
        let mut after = self.snapshot().await;
        assert_eq!(
            after.audit.len(),
            before.audit.len() + 1,
            "one audit event after {context}"
        );
        let event = after.audit.remove(0);
        assert_eq!(&after, before, "state changed after {context}");
        event
    }
}

/// What [`Harness::snapshot`] sees.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) jobs: Value,
    pub(crate) tasks: Vec<(String, Vec<Value>)>,
    pub(crate) dead_letters: Vec<Value>,
    pub(crate) audit: Vec<Value>,
    pub(crate) pending: u64,
    pub(crate) dead_count: u64,
}

/// A request being built.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    app: &'a App,
    method: Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
    remote: SocketAddr,
}

impl Call<'_> {
    /// `Authorization: Bearer <token>`.
    pub(crate) fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub(crate) fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    /// A header whose value need not be text (HTTP allows any visible byte).
    pub(crate) fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    pub(crate) fn json(self, body: &Value) -> Self {
        self.raw(serde_json::to_vec(body).expect("serializable"))
            .header("content-type", "application/json")
    }

    pub(crate) fn raw(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn remote(mut self, addr: &str) -> Self {
        self.remote = addr.parse().expect("socket address");
        self
    }

    fn request<B>(&self, body: B, content_length: bool) -> Request<B> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        if content_length && !self.body.is_empty() {
            builder = builder.header(header::CONTENT_LENGTH, self.body.len());
        }
        builder.body(body).expect("valid request")
    }

    /// Sends the body in one piece with its `Content-Length`.
    pub(crate) async fn send(self) -> Resp {
        let request = self.request(Full::new(self.body.clone()), true);
        Resp::read(self.app.handle(request, self.remote).await).await
    }

    /// Sends the body as a stream of `chunk`-byte frames with no `Content-Length` (as a chunked
    /// transfer arrives), so only reading it can tell its size.
    pub(crate) async fn send_streamed(self, chunk: usize) -> Resp {
        let chunks = self
            .body
            .chunks(chunk)
            .map(Bytes::copy_from_slice)
            .collect();
        let request = self.request(Chunked { chunks }, false);
        Resp::read(self.app.handle(request, self.remote).await).await
    }
}

/// A body that arrives in frames and does not know its length.
#[derive(Debug)]
struct Chunked {
    chunks: VecDeque<Bytes>,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(Frame::data(c))),
        )
    }
}

/// A response, read in full.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
    /// The body parsed as JSON when the content type says JSON, else `Null`.
    pub(crate) json: Value,
}

impl Resp {
    async fn read(response: hyper::Response<daef_http::response::Body>) -> Resp {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("infallible body").to_bytes();
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 body");
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/json");
        let json = if is_json {
            serde_json::from_str(&text).expect("JSON body")
        } else {
            Value::Null
        };
        Resp {
            status: parts.status,
            headers: parts.headers,
            text,
            json,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("text header"))
    }

    /// Asserts the status and returns the response.
    #[track_caller]
    pub(crate) fn expect_status(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an error response: this status and exactly `{"error": message}`.
    #[track_caller]
    pub(crate) fn expect_error(self, status: u16, message: &str) -> Self {
        let resp = self.expect_status(status);
        assert_eq!(resp.json, json!({"error": message}), "error body");
        resp
    }

    /// The `error` message of an error response with this status.
    #[track_caller]
    pub(crate) fn error_message(self, status: u16) -> String {
        let resp = self.expect_status(status);
        assert_eq!(
            resp.json.as_object().map(|o| o.len()),
            Some(1),
            "error body has only `error`: {}",
            resp.text
        );
        resp.json["error"]
            .as_str()
            .expect("error is a string")
            .to_owned()
    }
}

/// Asserts that `value` is a timestamp in the API's form, `2026-11-26T10:30:00.123456Z`, and
/// returns it parsed.
#[track_caller]
pub(crate) fn assert_timestamp(value: &Value) -> Timestamp {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is a string: {value}"));
    let shape = s.len() == 27
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            26 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    assert!(
        shape,
        "timestamp {s:?} is not in the 2026-11-26T10:30:00.123456Z form"
    );
    Timestamp::parse_rfc3339(s).expect("RFC 3339")
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub(crate) fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Canonical JSON exactly as DESIGN.md §6 defines it, written here independently of
/// `daef_core::audit` so the tests hold the implementation to the contract: object keys sorted
/// by byte order, no whitespace, integers as plain decimals, strings escaped as serde_json does.
pub(crate) fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).expect("string"),
                        canonical_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::String(s) => serde_json::to_string(s).expect("string"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
    }
}

/// The `payload_hash` DESIGN.md §6 expects for a request body.
pub(crate) fn expected_payload_hash(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => blake3_hex(canonical_json(&value).as_bytes()),
        Err(_) => String::new(),
    }
}

/// Re-verifies an audit chain from the API's JSON alone (DESIGN.md §6). `events` is the whole
/// log in any order. Returns the id of the first bad event, if any.
pub(crate) fn first_bad_event(events: &[Value]) -> Option<u64> {
    let mut events: Vec<&Value> = events.iter().collect();
    events.sort_by_key(|e| e["id"].as_u64());
    let mut prev_hash = String::new();
    for (i, event) in events.into_iter().enumerate() {
        let id = event["id"].as_u64()?;
        let mut without = event.clone();
        let claimed = without.as_object_mut()?.remove("event_hash")?;
        let hash = blake3_hex(canonical_json(&without).as_bytes());
        let expected_id = i as u64 + 1;
        // A gap (or a changed id) breaks the chain where the expected id is missing.
        if id != expected_id {
            return Some(expected_id);
        }
        if event["prev_hash"] != prev_hash.as_str() || claimed != hash.as_str() {
            return Some(id);
        }
        prev_hash = hash;
    }
    None
}

/// The ids of events, in the order given.
pub(crate) fn ids(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["id"].as_u64().expect("id"))
        .collect()
}

/// Waits (without sleeping a fixed time) until the wall clock, at microsecond precision, is past
/// `t`, so that two requests are guaranteed different `now`s.
pub(crate) async fn clock_past(t: Timestamp) {
    while Timestamp::now() <= t {
        tokio::task::yield_now().await;
    }
}
