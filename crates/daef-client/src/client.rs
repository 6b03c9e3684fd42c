//! [`Client`]: one method per v1 route, over hyper-util's pooled HTTP/1.1 client, on plain TCP
//! or TLS.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use daef_core::engine::MAX_POLL_WAIT_MS;
use daef_core::model::{JobId, WorkerStats};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::event::JobEvents;
use crate::model::*;
use crate::tls;

/// The gateway a fresh client talks to unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// How long one request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an event stream may stay silent unless told otherwise: three of the gateway's
/// 15-second keep-alive periods.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Largest page `GET /v1/admin/audit` returns.
pub const AUDIT_PAGE_MAX: u64 = 1_000;

/// Attempts [`Client::submit_job`] makes in all when a submit fails transiently, each with the
/// same `Idempotency-Key`.
pub const SUBMIT_ATTEMPTS: u32 = 3;

/// The pause before a submit's second attempt; it doubles before each later one.
const SUBMIT_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Where the gateway is and how to present ourselves to it.
#[derive(Clone)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host[:port]`, optionally with a path prefix
    /// (`https://gw.example.com/daef`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer <token>` on every request.
    pub token: Option<String>,
    /// Sent as `X-DAEF-Tenant` on every request (the default tenant of a submit, and the
    /// tenant admin actions are audited under).
    pub tenant: Option<String>,
    /// Limit on each request, from sending it to reading the whole answer (for an event
    /// stream: to reading its head).
    pub timeout: Duration,
    /// How long an open event stream may stay silent (not even a keep-alive) before reading
    /// it fails with [`Error::Timeout`].
    pub stream_idle_timeout: Duration,
    /// A PEM file of CA certificates trusted for `https://`, on top of the platform's root
    /// certificates: for a gateway whose certificate a private CA signed.
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            token: None,
            tenant: None,
            timeout: DEFAULT_TIMEOUT,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            ca_file: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ClientConfig {
    /// A warning for the operator when this configuration would send the token unencrypted
    /// across a network: a token with a plain `http://` base URL whose host is not this
    /// machine. `None` otherwise. The client itself prints nothing, so each program shows this
    /// the way it shows everything else (a log line, a message on stderr).
    pub fn plain_http_token_warning(&self) -> Option<String> {
        if !sends_token_in_clear(&self.base_url, self.token.as_deref()) {
            return None;
        }
        Some(format!(
            "the API token is sent unencrypted: {} is plain http:// to another machine, so \
             anyone on the network path can read and reuse the token; use an https:// URL",
            self.base_url.trim()
        ))
    }
}

/// Whether a client for `base_url` with `token` would send the token in clear text beyond this
/// machine. Loopback (127.0.0.0/8, ::1, `localhost`) does not count: nothing leaves the host.
fn sends_token_in_clear(base_url: &str, token: Option<&str>) -> bool {
    if token.is_none_or(|t| t.trim().is_empty()) {
        return false;
    }
    // An unparsable URL sends nothing: `Client::new` rejects it.
    let Ok(uri) = base_url.trim().parse::<Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    !loopback
}

/// A typed client for one gateway. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http` or `https`.
    scheme: &'static str,
    authority: String,
    prefix: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    stream_idle_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A complete answer: status, headers, body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: header::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The body as `T` on success, the typed error otherwise.
    fn json<T: DeserializeOwned>(self) -> Result<T> {
        self.check()?;
        serde_json::from_slice(&self.body).map_err(|e| {
            let text = String::from_utf8_lossy(&self.body);
            Error::Decode(format!(
                "{e} in {:?}",
                text.chars().take(200).collect::<String>()
            ))
        })
    }

    /// The body as text on success, the typed error otherwise.
    fn text(self) -> Result<String> {
        self.check()?;
        String::from_utf8(self.body.to_vec())
            .map_err(|e| Error::Decode(format!("body is not UTF-8: {e}")))
    }

    fn check(&self) -> Result<()> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(Error::from_response(self.status, &self.headers, &self.body))
        }
    }
}

impl Client {
    /// A client for the gateway at `config.base_url`. Fails only on a configuration that can
    /// never work (not an `http://` or `https://` URL, a token with characters a header cannot
    /// carry, a CA file that cannot be read, no root certificate at all for `https://`); the
    /// gateway is not contacted.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let uri: Uri = config
            .base_url
            .trim()
            .parse()
            .map_err(|e| Error::Config(format!("base URL {:?}: {e}", config.base_url)))?;
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") => "https",
            Some(other) => {
                return Err(Error::Config(format!(
                    "base URL {:?}: scheme {other} is not supported (use http:// or https://)",
                    config.base_url
                )));
            }
            None => {
                return Err(Error::Config(format!(
                    "base URL {:?} must start with http:// or https://",
                    config.base_url
                )));
            }
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| Error::Config(format!("base URL {:?} has no host", config.base_url)))?;
        if uri.query().is_some() {
            return Err(Error::Config(format!(
                "base URL {:?} must not have a query",
                config.base_url
            )));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let mut headers = vec![(header::ACCEPT, HeaderValue::from_static("application/json"))];
        if let Some(token) = &config.token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    Error::Config("the token has characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            headers.push((header::AUTHORIZATION, value));
        }
        if let Some(tenant) = &config.tenant {
            let value = HeaderValue::from_str(tenant).map_err(|_| {
                Error::Config(format!("tenant {tenant:?} cannot be a header value"))
            })?;
            headers.push((HeaderName::from_static("x-daef-tenant"), value));
        }
        // Every request goes to this one scheme, so an `http://` client never handshakes: it
        // skips the platform's roots (a slim container may have none). A CA file is still read,
        // so a bad one is reported whatever the URL.
        let tls = tls::client_config(scheme == "https", config.ca_file.as_deref())
            .map_err(Error::Config)?;
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.timeout));
        // The TLS layer above it handles `https://` URIs.
        tcp.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = HyperClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            // Below the gateway's keep-alive, so we rarely pick a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        Ok(Self {
            http,
            scheme,
            authority,
            prefix,
            headers,
            timeout: config.timeout,
            stream_idle_timeout: config.stream_idle_timeout,
        })
    }

    /// A client with default settings for `base_url` and an optional token.
    pub fn connect(base_url: &str, token: Option<&str>) -> Result<Self> {
        Self::new(ClientConfig {
            base_url: base_url.to_owned(),
            token: token.map(str::to_owned),
            ..ClientConfig::default()
        })
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Builds a request for `path` (which starts with `/`) plus an optional query string.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Full<Bytes>>> {
        let mut uri = format!(
            "{}://{}{}{}",
            self.scheme, self.authority, self.prefix, path
        );
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            uri.push('?');
            uri.push_str(&q);
        }
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in self.headers.iter().chain(extra) {
            builder = builder.header(name, value);
        }
        let body = match body {
            Some(bytes) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| Error::Config(format!("cannot build request for {path}: {e}")))
    }

    /// Sends a request and reads the whole answer, all within the timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer> {
        self.call_within(self.timeout, method, path, query, body, extra)
            .await
    }

    /// [`Client::call`] with its own limit, for a request the gateway may hold on purpose.
    async fn call_within(
        &self,
        timeout: Duration,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Vec<u8>>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer> {
        let request = self.request(method, path, query, body, extra)?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(Error::unanswered)?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Error::Transport(Box::new(e)))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: Option<String>) -> Result<T> {
        self.call(Method::GET, path, query, None, &[]).await?.json()
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Decode(format!("cannot encode request: {e}")))?;
        self.call(Method::POST, path, None, Some(bytes), &[])
            .await?
            .json()
    }

    // --- operations ----------------------------------------------------------------------------

    /// `GET /healthz`: the process is up.
    pub async fn health(&self) -> Result<Health> {
        self.get("/healthz", None).await
    }

    /// `GET /readyz`: the store and the queue answer (else [`Error::Unavailable`]).
    pub async fn ready(&self) -> Result<Readiness> {
        self.get("/readyz", None).await
    }

    /// `GET /v1/metrics`.
    pub async fn metrics(&self) -> Result<MetricsSnapshot> {
        self.get("/v1/metrics", None).await
    }

    /// `GET /v1/metrics/prometheus`: the text exposition.
    pub async fn metrics_prometheus(&self) -> Result<String> {
        self.call(Method::GET, "/v1/metrics/prometheus", None, None, &[])
            .await?
            .text()
    }

    // --- jobs ----------------------------------------------------------------------------------

    /// `POST /v1/jobs`.
    ///
    /// Sends an `Idempotency-Key` of its own and retries a transient failure (the connection
    /// dropped, a timeout, a 5xx) with the same key, up to [`SUBMIT_ATTEMPTS`] times in all:
    /// a submit the gateway stored before its answer was lost returns that job (`200`) instead
    /// of creating another.
    pub async fn submit_job(&self, job: &JobSubmission) -> Result<Submitted> {
        let key = format!("daef-client-{}", uuid::Uuid::new_v4());
        self.submit_job_with_key(job, &key).await
    }

    /// [`Client::submit_job`] under the caller's `Idempotency-Key` (1-255 printable ASCII
    /// characters), for a caller that retries across processes: within the gateway's
    /// `DAEF_IDEMPOTENCY_TTL_SECONDS`, the same key and body name the same job.
    pub async fn submit_job_with_key(&self, job: &JobSubmission, key: &str) -> Result<Submitted> {
        let body = serde_json::to_vec(job)
            .map_err(|e| Error::Decode(format!("cannot encode request: {e}")))?;
        let value = HeaderValue::from_str(key)
            .map_err(|_| Error::Config("the idempotency key cannot be a header value".into()))?;
        let header = [(HeaderName::from_static("idempotency-key"), value)];
        let mut pause = SUBMIT_RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let answer = self
                .call(Method::POST, "/v1/jobs", None, Some(body.clone()), &header)
                .await
                .and_then(|answer| answer.json());
            match answer {
                Err(err) if err.is_transient() && attempt < SUBMIT_ATTEMPTS => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    /// `GET /v1/jobs`: a page of jobs, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<JobList> {
        let mut q = QueryString::new();
        q.opt("status", filter.status.map(|s| s.as_str()));
        q.opt("tenant", filter.tenant.as_deref());
        q.num("limit", filter.limit);
        q.num("offset", filter.offset);
        self.get("/v1/jobs", q.finish()).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, job_id: &JobId) -> Result<JobInfo> {
        self.get(&format!("/v1/jobs/{}", segment(job_id.as_str())), None)
            .await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn cancel_job(&self, job_id: &JobId) -> Result<CancelOutcome> {
        let path = format!("/v1/jobs/{}", segment(job_id.as_str()));
        self.call(Method::DELETE, &path, None, None, &[])
            .await?
            .json()
    }

    // --- schedules -----------------------------------------------------------------------------

    /// `POST /v1/schedules`. [`Error::Conflict`] when the id is taken.
    pub async fn create_schedule(&self, schedule: &ScheduleSubmission) -> Result<ScheduleInfo> {
        self.post("/v1/schedules", schedule).await
    }

    /// `GET /v1/schedules`: a page of schedules, by id.
    pub async fn list_schedules(&self, filter: &ScheduleFilter) -> Result<ScheduleList> {
        let mut q = QueryString::new();
        q.opt("tenant", filter.tenant.as_deref());
        q.num("limit", filter.limit);
        q.num("offset", filter.offset);
        self.get("/v1/schedules", q.finish()).await
    }

    /// `GET /v1/schedules/{id}`.
    pub async fn schedule(&self, schedule_id: &str) -> Result<ScheduleInfo> {
        self.get(&format!("/v1/schedules/{}", segment(schedule_id)), None)
            .await
    }

    /// `DELETE /v1/schedules/{id}`: it fires no more; its jobs stay.
    pub async fn delete_schedule(&self, schedule_id: &str) -> Result<ScheduleDeleted> {
        let path = format!("/v1/schedules/{}", segment(schedule_id));
        self.call(Method::DELETE, &path, None, None, &[])
            .await?
            .json()
    }

    /// `POST /v1/schedules/{id}/pause`.
    pub async fn pause_schedule(&self, schedule_id: &str) -> Result<ScheduleInfo> {
        let path = format!("/v1/schedules/{}/pause", segment(schedule_id));
        self.call(Method::POST, &path, None, None, &[])
            .await?
            .json()
    }

    /// `POST /v1/schedules/{id}/resume`: from its first tick after now.
    pub async fn resume_schedule(&self, schedule_id: &str) -> Result<ScheduleInfo> {
        let path = format!("/v1/schedules/{}/resume", segment(schedule_id));
        self.call(Method::POST, &path, None, None, &[])
            .await?
            .json()
    }

    /// `GET /v1/jobs/{id}/events`: the job's event stream. Errors (401, 403, 404, …) come
    /// before the stream opens, as for [`Client::job`].
    pub async fn job_events(&self, job_id: &JobId) -> Result<JobEvents> {
        let path = format!("/v1/jobs/{}/events", segment(job_id.as_str()));
        let mut request = self.request(Method::GET, &path, None, None, &[])?;
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let response = match tokio::time::timeout(self.timeout, self.http.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(Error::unanswered(err)),
            Err(_) => return Err(Error::Timeout(self.timeout)),
        };
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            let bytes = match tokio::time::timeout(self.timeout, body.collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                _ => Bytes::new(),
            };
            return Err(Error::from_response(parts.status, &parts.headers, &bytes));
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(Error::Decode(format!(
                "expected an event stream, got content type {content_type:?}"
            )));
        }
        Ok(JobEvents::new(body, self.stream_idle_timeout))
    }

    /// `GET /v1/jobs/{id}/tasks`: the job's tasks, sorted by task id.
    pub async fn tasks(&self, job_id: &JobId, filter: &TaskFilter) -> Result<TaskList> {
        let mut q = QueryString::new();
        q.opt("status", filter.status.map(|s| s.as_str()));
        q.opt("worker_id", filter.worker_id.as_deref());
        q.num("limit", filter.limit);
        q.num("offset", filter.offset);
        self.get(
            &format!("/v1/jobs/{}/tasks", segment(job_id.as_str())),
            q.finish(),
        )
        .await
    }

    // --- workers -------------------------------------------------------------------------------

    /// `POST /v1/workers/register`.
    pub async fn register_worker(&self, registration: &Registration) -> Result<Registered> {
        self.post("/v1/workers/register", registration).await
    }

    /// `POST /v1/workers/{id}/heartbeat`; [`Error::NotFound`] when the gateway does not know
    /// the worker (register again).
    /// The body carries this machine's clock as `timestamp_unix`, as the seed's workers send it,
    /// and the attempts the worker runs: the answer's `stop_leases` names those to stop.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        running: &[RunningAttempt],
    ) -> Result<HeartbeatAck> {
        let body = Heartbeat {
            stats: stats.clone(),
            timestamp_unix: Some(daef_core::Timestamp::now().unix_micros() / 1_000_000),
            running: running.to_vec(),
        };
        self.post(
            &format!("/v1/workers/{}/heartbeat", segment(worker_id)),
            &body,
        )
        .await
    }

    /// `GET /v1/workers/{id}/assignments?max_tasks=N`; [`Error::NotFound`] when the gateway does
    /// not know the worker.
    pub async fn poll(&self, worker_id: &str, max_tasks: u32) -> Result<Vec<Assignment>> {
        self.assignments(worker_id, max_tasks, None).await
    }

    /// [`Client::poll`] as a long poll: when nothing is ready the gateway holds the request for
    /// up to `wait_ms` milliseconds (it caps the wait at 30 s) and answers as soon as work
    /// arrives. The request may take the wait plus [`ClientConfig::timeout`].
    pub async fn poll_wait(
        &self,
        worker_id: &str,
        max_tasks: u32,
        wait_ms: u32,
    ) -> Result<Vec<Assignment>> {
        self.assignments(worker_id, max_tasks, Some(wait_ms)).await
    }

    async fn assignments(
        &self,
        worker_id: &str,
        max_tasks: u32,
        wait_ms: Option<u32>,
    ) -> Result<Vec<Assignment>> {
        let mut q = QueryString::new();
        q.num("max_tasks", Some(u64::from(max_tasks)));
        q.num("wait_ms", wait_ms.map(u64::from));
        let path = format!("/v1/workers/{}/assignments", segment(worker_id));
        // The deliberate wait does not count against the limit on the exchange itself.
        let held = Duration::from_millis(u64::from(wait_ms.unwrap_or(0)).min(MAX_POLL_WAIT_MS));
        let got: Assignments = self
            .call_within(
                self.timeout + held,
                Method::GET,
                &path,
                q.finish(),
                None,
                &[],
            )
            .await?
            .json()?;
        Ok(got.assignments)
    }

    /// `POST /v1/tasks/report`. [`Error::Conflict`] means the lease is no longer the task's.
    pub async fn report(&self, report: &TaskReport) -> Result<Accepted> {
        self.post("/v1/tasks/report", report).await
    }

    // --- admin ---------------------------------------------------------------------------------

    /// `GET /v1/admin/queue/dead-letter`: dead letters, oldest first (audited by the gateway).
    pub async fn dead_letters(&self, limit: Option<u64>) -> Result<Vec<DeadLetter>> {
        let mut q = QueryString::new();
        q.num("limit", limit);
        let list: DeadLetterList = self.get("/v1/admin/queue/dead-letter", q.finish()).await?;
        Ok(list.tasks)
    }

    /// `POST /v1/admin/queue/dead-letter`; `confirm` goes in `X-DAEF-Confirm` (large batches
    /// need it when the gateway has a confirmation token).
    pub async fn requeue_dead_letters(
        &self,
        tasks: &[TaskKey],
        dry_run: bool,
        confirm: Option<&str>,
    ) -> Result<RequeueOutcome> {
        self.dead_letter_action("/v1/admin/queue/dead-letter", tasks, dry_run, confirm)
            .await
    }

    /// `POST /v1/admin/queue/dead-letter/discard`: the listed dead letters stay `Failed` for
    /// good; the same body, guards and confirmation as a requeue.
    pub async fn discard_dead_letters(
        &self,
        tasks: &[TaskKey],
        dry_run: bool,
        confirm: Option<&str>,
    ) -> Result<DiscardOutcome> {
        self.dead_letter_action(
            "/v1/admin/queue/dead-letter/discard",
            tasks,
            dry_run,
            confirm,
        )
        .await
    }

    async fn dead_letter_action<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        tasks: &[TaskKey],
        dry_run: bool,
        confirm: Option<&str>,
    ) -> Result<T> {
        let request = RequeueRequest {
            tasks: tasks.to_vec(),
            dry_run,
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| Error::Decode(format!("cannot encode request: {e}")))?;
        let mut extra = Vec::new();
        if let Some(token) = confirm {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                Error::Config("the confirmation token cannot be a header value".into())
            })?;
            value.set_sensitive(true);
            extra.push((HeaderName::from_static("x-daef-confirm"), value));
        }
        self.call(Method::POST, path, None, Some(body), &extra)
            .await?
            .json()
    }

    /// `GET /v1/admin/audit`: a page of events, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage> {
        self.get("/v1/admin/audit", audit_query(filter, None)).await
    }

    /// `GET /v1/admin/audit?format=csv`: a page of events as the gateway's CSV.
    pub async fn audit_csv(&self, filter: &AuditFilter) -> Result<String> {
        let query = audit_query(filter, Some("csv"));
        self.call(Method::GET, "/v1/admin/audit", query, None, &[])
            .await?
            .text()
    }

    /// `GET /v1/admin/audit/verify`: the gateway's own check of the chain.
    pub async fn verify_audit(&self) -> Result<ServerVerification> {
        self.get("/v1/admin/audit/verify", None).await
    }
}

fn audit_query(filter: &AuditFilter, format: Option<&str>) -> Option<String> {
    let mut q = QueryString::new();
    q.opt("action", filter.action.as_deref());
    q.opt("actor", filter.actor.as_deref());
    q.opt("tenant", filter.tenant.as_deref());
    q.opt("result", filter.result.as_deref());
    q.opt("from", filter.from.map(|t| t.to_string()).as_deref());
    q.opt("to", filter.to.map(|t| t.to_string()).as_deref());
    q.num("limit", filter.limit);
    q.num("offset", filter.offset);
    q.opt("format", format);
    q.finish()
}

/// `application/x-www-form-urlencoded` query building; absent values are left out. (Pairs are
/// kept as plain strings until `finish` so the builder is `Send` across the request's awaits.)
struct QueryString(Vec<(&'static str, String)>);

impl QueryString {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn opt(&mut self, name: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.0.push((name, v.to_owned()));
        }
    }

    fn num(&mut self, name: &'static str, value: Option<u64>) {
        if let Some(v) = value {
            self.0.push((name, v.to_string()));
        }
    }

    fn finish(self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.0 {
            out.append_pair(name, value);
        }
        Some(out.finish())
    }
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters, so an id
/// can never add a segment or a query.
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Result<Client> {
        Client::connect(base, Some("secret"))
    }

    #[test]
    fn base_urls_must_be_http_or_https() {
        assert!(client("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            client("http://127.0.0.1:8080/").unwrap().base_url(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            client("http://gw.internal/daef/").unwrap().base_url(),
            "http://gw.internal/daef"
        );
        assert_eq!(
            client("https://gw.example.com/daef/").unwrap().base_url(),
            "https://gw.example.com/daef"
        );
        for bad in ["127.0.0.1:8080", "", "http://gw/?x=1", "ftp://gw"] {
            let err = client(bad).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
        }
        let bad_token = Client::connect("http://gw", Some("a\nb")).unwrap_err();
        assert!(matches!(bad_token, Error::Config(_)));
    }

    #[test]
    fn requests_carry_prefix_query_token_and_tenant() {
        let c = Client::new(ClientConfig {
            base_url: "http://gw:81/api".into(),
            token: Some("s3cret".into()),
            tenant: Some("acme".into()),
            ..ClientConfig::default()
        })
        .unwrap();
        let req = c
            .request(
                Method::GET,
                "/v1/jobs",
                Some("status=Failed".into()),
                None,
                &[],
            )
            .unwrap();
        assert_eq!(
            req.uri().to_string(),
            "http://gw:81/api/v1/jobs?status=Failed"
        );
        assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer s3cret");
        assert_eq!(req.headers()["x-daef-tenant"], "acme");
        assert!(!format!("{c:?}").contains("s3cret"));

        let tls = Client::connect("https://gw:8443/api", None).unwrap();
        let req = tls
            .request(Method::GET, "/healthz", None, None, &[])
            .unwrap();
        assert_eq!(req.uri().to_string(), "https://gw:8443/api/healthz");
    }

    #[test]
    fn a_token_over_plain_http_beyond_loopback_is_warned_about() {
        for (url, token, warn) in [
            ("http://gw.internal:8080", Some("s3cret"), true),
            ("http://10.0.0.7:8080/daef", Some("s3cret"), true),
            ("http://[2001:db8::1]:8080", Some("s3cret"), true),
            // Nothing to leak.
            ("http://gw.internal:8080", None, false),
            ("http://gw.internal:8080", Some("  "), false),
            // Encrypted.
            ("https://gw.internal", Some("s3cret"), false),
            // Never leaves the machine.
            ("http://127.0.0.1:8080", Some("s3cret"), false),
            ("http://127.1.2.3:8080", Some("s3cret"), false),
            ("http://localhost:8080", Some("s3cret"), false),
            ("http://LocalHost", Some("s3cret"), false),
            ("http://[::1]:8080", Some("s3cret"), false),
            ("http://[::ffff:127.0.0.1]:8080", Some("s3cret"), false),
            // Rejected by `Client::new` anyway.
            ("not a url", Some("s3cret"), false),
        ] {
            assert_eq!(sends_token_in_clear(url, token), warn, "{url} {token:?}");
        }

        let config = ClientConfig {
            base_url: "http://gw.internal:8080".into(),
            token: Some("s3cret".into()),
            ..ClientConfig::default()
        };
        let warning = config.plain_http_token_warning().unwrap();
        assert!(warning.contains("http://gw.internal:8080"), "{warning}");
        assert!(warning.contains("https://"), "{warning}");
        assert!(!warning.contains("s3cret"), "{warning}");
        assert_eq!(ClientConfig::default().plain_http_token_warning(), None);
    }

    #[test]
    fn ids_cannot_escape_their_segment() {
        assert_eq!(segment("job-0190a"), "job-0190a");
        assert_eq!(segment("w-1@host:9"), "w-1@host:9");
        assert_eq!(segment("a/b?c=d#e f"), "a%2Fb%3Fc%3Dd%23e%20f");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn queries_leave_out_absent_filters() {
        let filter = AuditFilter {
            action: Some("job_cancel".into()),
            limit: Some(10),
            ..AuditFilter::default()
        };
        assert_eq!(
            audit_query(&filter, Some("csv")).as_deref(),
            Some("action=job_cancel&limit=10&format=csv")
        );
        assert_eq!(audit_query(&AuditFilter::default(), None), None);
        let mut q = QueryString::new();
        q.opt("tenant", Some("a b&c"));
        assert_eq!(q.finish().as_deref(), Some("tenant=a+b%26c"));
    }
}
