//! [`App`]: one request in, one response out. Routing, authentication, the body limit, scope
//! checks, metrics and the access log happen here; the handlers do the rest.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use daef_auth::{Authenticator, Principal, TenantError, TenantSource, is_valid_tenant_id};
use daef_core::audit::{self, AuditDraft, action, result};
use daef_core::ports::RateLimiter;
use daef_core::{Engine, Timestamp, metric};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use metrics::{counter, histogram};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::handler;
use crate::json::Query;
use crate::metrics::Metrics;
use crate::route::{Route, RouteError};

/// Most long polls one enqueue wakes directly.
const MAX_WAKE_PER_ENQUEUE: usize = 16;

/// The response body type: a whole body for every route except the job event stream, whose
/// body is written as events happen. Reading it never fails.
pub type Body = BoxBody<Bytes, Infallible>;

/// Settings of `GET /v1/jobs/{id}/events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventStreamConfig {
    /// How often a stream reads the job and its tasks from the store to find changes. Reading
    /// the store (not an in-process signal) is what makes a stream see changes made through
    /// any replica.
    pub poll_interval: Duration,
    /// How long a stream may stay silent before a keep-alive comment is sent, so proxies and
    /// clients can tell an idle stream from a dead one.
    pub keep_alive: Duration,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Admin safety limits for dead-letter requeues (DESIGN.md §4). A value ≤ 0 disables a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Most tasks in one requeue request (`DAEF_ADMIN_REQUEUE_MAX_BATCH`).
    pub max_batch: i64,
    /// Non-dry-run requeues per principal per minute (`DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN`).
    pub rate_limit_per_min: i64,
    /// Batch size from which `X-DAEF-Confirm` is required (`DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD`).
    pub confirm_threshold: i64,
    /// The confirmation token; unset means no confirmation is asked (`DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN`).
    pub confirm_token: Option<String>,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_batch: 100,
            rate_limit_per_min: 30,
            confirm_threshold: 20,
            confirm_token: None,
        }
    }
}

/// HTTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest accepted request body (`DAEF_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Dead-letter requeue safety.
    pub admin: AdminLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            admin: AdminLimits::default(),
        }
    }
}

/// The v1 API over an [`Engine`].
#[derive(Debug)]
pub struct App {
    pub(crate) engine: Engine,
    pub(crate) auth: Authenticator,
    pub(crate) rate_limiter: Arc<dyn RateLimiter>,
    pub(crate) config: HttpConfig,
    pub(crate) metrics: Metrics,
    pub(crate) events: EventStreamConfig,
    /// Flips to true when the server stops accepting connections: open event streams end, so
    /// they do not hold the drain up.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// Signalled when this process enqueued work, to wake long polls (`wait_ms`) at once.
    pub(crate) work: tokio::sync::Notify,
}

/// What one audited request did.
#[derive(Debug)]
pub(crate) struct AuditEntry<'a> {
    action: &'static str,
    resource: &'a str,
    requested: u64,
    result: &'static str,
    details: &'a str,
    /// The tenant the action concerns when known (a job's); else the request's tenant.
    tenant: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    /// An entry recorded under the request's tenant.
    pub(crate) fn new(
        action: &'static str,
        resource: &'a str,
        requested: u64,
        result: &'static str,
        details: &'a str,
    ) -> Self {
        Self {
            action,
            resource,
            requested,
            result,
            details,
            tenant: None,
        }
    }

    /// Records the entry under `tenant` (the tenant of the job acted on).
    pub(crate) fn for_tenant(self, tenant: &'a str) -> Self {
        Self {
            tenant: Some(tenant),
            ..self
        }
    }
}

/// What a handler knows about the request it serves.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) principal: Principal,
    pub(crate) remote: SocketAddr,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Query,
    pub(crate) body: Bytes,
    pub(crate) now: Timestamp,
}

impl Ctx {
    /// A header's value, when it is valid text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-DAEF-Tenant` as sent. A value that is not text at all (invalid UTF-8) is refused
    /// like any other invalid tenant id, never taken as absent.
    pub(crate) fn tenant_header(&self) -> ApiResult<Option<&str>> {
        match self.headers.get("x-daef-tenant") {
            None => Ok(None),
            Some(value) => value.to_str().map(Some).map_err(|_| {
                TenantError {
                    origin: TenantSource::Header,
                }
                .into()
            }),
        }
    }

    /// The tenant an admin or cancel action is recorded under: `X-DAEF-Tenant` when valid and
    /// the principal may act for it, else the token's single tenant, else `default`. A header
    /// naming someone else's tenant is not believed, so no caller can file its actions under
    /// another tenant in the audit log or the metrics.
    pub(crate) fn audit_tenant(&self) -> String {
        let header = self
            .header("x-daef-tenant")
            .filter(|t| is_valid_tenant_id(t) && self.principal.can_access_tenant(t));
        self.principal
            .effective_tenant(None, header)
            .unwrap_or_else(|_| "default".to_owned())
    }
}

impl App {
    /// The API over `engine`, authenticating with `auth` and rate-limiting admin requeues with
    /// `rate_limiter` (share one backend between replicas so they enforce one limit).
    pub fn new(
        engine: Engine,
        auth: Authenticator,
        rate_limiter: Arc<dyn RateLimiter>,
        config: HttpConfig,
    ) -> Self {
        Self {
            engine,
            auth,
            rate_limiter,
            config,
            metrics: Metrics::global(),
            events: EventStreamConfig::default(),
            closing: tokio::sync::watch::Sender::new(false),
            work: tokio::sync::Notify::new(),
        }
    }

    /// The same API with these event stream settings.
    pub fn with_event_streams(self, events: EventStreamConfig) -> Self {
        Self { events, ..self }
    }

    /// Ends every open event stream (and any opened later). The server calls it when it stops
    /// accepting connections.
    pub fn close_event_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Wakes up to `tasks` long polls waiting in this process: that many tasks were just
    /// enqueued here. (Work enqueued by another replica or the reconciler is found by the
    /// waiting polls' periodic re-checks.)
    pub(crate) fn work_enqueued(&self, tasks: usize) {
        // Each woken poll that fills its batch wakes the next one, so a few suffice.
        for _ in 0..tasks.min(MAX_WAKE_PER_ENQUEUE) {
            self.work.notify_one();
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The metrics handle (for the exporter's periodic upkeep).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one request.
    pub async fn handle<B>(&self, req: Request<B>, remote: SocketAddr) -> Response<Body>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let route = Route::parse(&method, req.uri().path());
        let template = route.as_ref().map_or("unmatched", Route::template);
        let (response, actor) = match route {
            Ok(route) => self.serve(route, req, remote).await,
            Err(refused) => {
                let err = match refused {
                    RouteError::NotFound => ApiError::route_not_found(),
                    RouteError::MethodNotAllowed(allow) => ApiError::method_not_allowed(allow),
                };
                let (parts, body) = req.into_parts();
                (self.refuse_unread(err, &parts.headers, body).await, None)
            }
        };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        counter!(metric::HTTP_REQUESTS_TOTAL, "route" => template, "method" => method_label(&method), "status" => status.to_string())
            .increment(1);
        histogram!(metric::HTTP_REQUEST_DURATION_SECONDS, "route" => template)
            .record(elapsed.as_secs_f64());
        tracing::info!(
            target: "daef_http::access",
            method = %method,
            route = template,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            actor = actor.as_deref().unwrap_or("-"),
            remote = %remote,
            "request"
        );
        response
    }

    async fn serve<B>(
        &self,
        route: Route,
        req: Request<B>,
        remote: SocketAddr,
    ) -> (Response<Body>, Option<String>)
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let principal = match self.auth.authenticate(
            header_str(&parts.headers, header::AUTHORIZATION.as_str()),
            header_str(&parts.headers, "x-daef-token"),
        ) {
            Ok(p) => p,
            // Public routes answer whoever asks.
            Err(_) if route.requirements().is_none() => Principal::anonymous(),
            Err(err) => {
                return (
                    self.refuse_unread(err.into(), &parts.headers, body).await,
                    None,
                );
            }
        };
        let actor = Some(principal.id.clone());
        // A body or query that cannot be used is answered after the scope check, so that a
        // refusal is a 403 (and audited as one) whatever the request carries.
        let (body, body_unread, body_error) = match self.read_body(&parts.headers, body).await {
            Ok(body) => (body, false, None),
            Err(err) => (Bytes::new(), true, Some(err)),
        };
        let (query, query_error) = match Query::parse(parts.uri.query()) {
            Ok(query) => (query, None),
            Err(err) => (Query::default(), Some(err)),
        };
        let ctx = Ctx {
            principal,
            remote,
            headers: parts.headers,
            query,
            body,
            now: Timestamp::now(),
        };
        let (mut response, actor) = self
            .serve_parsed(route, &ctx, actor, body_error.or(query_error))
            .await;
        if body_unread {
            close_after(&mut response);
        }
        (response, actor)
    }

    /// [`App::serve`] once the principal, body and query are known.
    async fn serve_parsed(
        &self,
        route: Route,
        ctx: &Ctx,
        actor: Option<String>,
        request_error: Option<ApiError>,
    ) -> (Response<Body>, Option<String>) {
        if let Some(required) = route.requirements()
            && let Err(denied) = ctx.principal.require(required)
        {
            if let Some(action) = route.admin_action() {
                self.audit(
                    ctx,
                    AuditEntry::new(
                        action,
                        route.template(),
                        0,
                        result::FORBIDDEN,
                        &denied.to_string(),
                    ),
                )
                .await;
            } else if let Route::CancelJob(id) = &route {
                // Every cancel request is audited (DESIGN.md §4), refused ones included.
                self.audit(
                    ctx,
                    AuditEntry::new(
                        action::JOB_CANCEL,
                        &format!("/v1/jobs/{id}"),
                        1,
                        result::NOOP,
                        &denied.to_string(),
                    ),
                )
                .await;
            }
            return (error_response(denied.into()), actor);
        }
        if let Some(err) = request_error {
            // Every dead-letter request and every cancel request that got past authentication
            // is audited, those refused for their body included (reads of the audit log are
            // not: a refused read changes nothing).
            match (&route, route.admin_action()) {
                (Route::ListDeadLetters | Route::RequeueDeadLetters, Some(action)) => {
                    self.audit(
                        ctx,
                        AuditEntry::new(
                            action,
                            route.template(),
                            0,
                            result::REJECTED,
                            &err.message,
                        ),
                    )
                    .await;
                }
                (Route::CancelJob(id), _) => {
                    self.audit(
                        ctx,
                        AuditEntry::new(
                            action::JOB_CANCEL,
                            &format!("/v1/jobs/{id}"),
                            1,
                            result::NOOP,
                            &err.message,
                        ),
                    )
                    .await;
                }
                _ => {}
            }
            return (error_response(err), actor);
        }
        let response = handler::dispatch(self, ctx, route)
            .await
            .unwrap_or_else(error_response);
        (response, actor)
    }

    /// Refuses a request whose body was not read (401, unknown route, 405). The body is read
    /// and dropped (up to the size limit) so that the client's next request on the connection
    /// finds it clean; a body that cannot be read that far gets `Connection: close` instead,
    /// never a connection dropped under the client.
    async fn refuse_unread<B>(&self, err: ApiError, headers: &HeaderMap, body: B) -> Response<Body>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut response = error_response(err);
        if !body.is_end_stream() && self.read_body(headers, body).await.is_err() {
            close_after(&mut response);
        }
        response
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> ApiResult<Bytes>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.config.max_body_bytes;
        let declared = header_str(headers, header::CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::payload_too_large(limit));
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err)
                if err
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ApiError::payload_too_large(limit))
            }
            Err(err) => Err(ApiError::bad_request(format!(
                "could not read request body: {err}"
            ))),
        }
    }

    /// Appends an audit event for an admin or cancel request and counts it. A failure to write
    /// it is logged loudly: the action itself has already been decided.
    pub(crate) async fn audit(&self, ctx: &Ctx, entry: AuditEntry<'_>) {
        let tenant = entry
            .tenant
            .map_or_else(|| ctx.audit_tenant(), str::to_owned);
        let draft = AuditDraft {
            action: entry.action.to_owned(),
            actor: ctx.principal.id.clone(),
            tenant: tenant.clone(),
            remote_addr: ctx.remote.to_string(),
            resource: entry.resource.to_owned(),
            payload_hash: audit::payload_hash(&ctx.body),
            requested: entry.requested,
            result: entry.result.to_owned(),
            details: entry.details.to_owned(),
        };
        if let Err(err) = self.engine.audit(draft, ctx.now).await {
            tracing::error!(action = entry.action, result = entry.result, error = %err, source = ?std::error::Error::source(&err), "could not append to the audit log");
        }
        counter!(
            metric::ADMIN_ACTIONS_TOTAL,
            "action" => entry.action,
            "actor" => ctx.principal.id.clone(),
            "result" => entry.result,
            "tenant" => self.tenant_label(&tenant),
        )
        .increment(1);
    }

    /// Tenant label values are bounded: tenants named by a configured token, and `default`,
    /// keep their name; any other tenant is `other`.
    pub(crate) fn tenant_label(&self, tenant: &str) -> String {
        if tenant == "default" || self.auth.configured_tenants().contains(tenant) {
            tenant.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

/// Asks the server to close the connection after this response: the request's body was left
/// unread, so the connection cannot carry another request.
fn close_after(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::POST => "POST",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::PUT => "PUT",
        hyper::Method::PATCH => "PATCH",
        hyper::Method::HEAD => "HEAD",
        hyper::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, bytes, "application/json"),
        Err(err) => {
            tracing::error!(error = %err, "could not serialize a response");
            error_response(ApiError::internal())
        }
    }
}

/// A response with a body of the given content type.
pub(crate) fn with_type(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `{"error": message}` with the error's status and headers.
pub(crate) fn error_response(err: ApiError) -> Response<Body> {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
    }
    let mut response = match serde_json::to_vec(&ErrorBody {
        error: &err.message,
    }) {
        Ok(bytes) => with_type(err.status, bytes, "application/json"),
        Err(_) => with_type(err.status, Bytes::new(), "application/json"),
    };
    if let Some(secs) = err.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = err.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}
