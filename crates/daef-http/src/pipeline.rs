//! The request pipeline, [`App::handle`]: one request in, one response out. Routing,
//! authentication, the body limit, scope checks, metrics and the access log happen here; the
//! handlers do the rest. This is the one module that depends on the handlers; none depends on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use daef_auth::Principal;
use daef_core::audit::result;
use daef_core::{Timestamp, metric};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response};
use metrics::{counter, histogram};
use tracing::Instrument;

use crate::app::App;
use crate::auditing::AuditNote;
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::handler;
use crate::json::Query;
use crate::response::{Body, close_after, error_response};
use crate::route::{Audit, Route, RouteError};

/// How long a refused request's body may take to arrive before the connection is given up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Ids of this process's requests, for the log (`request_id`); counted from 1 at start.
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

impl App {
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
        // Everything logged while serving (a backend error, say) carries the route and this id,
        // so it can be tied to the request's access-log line.
        let span = tracing::info_span!(
            "request",
            request_id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed),
            route = template
        );
        let (response, actor) = async {
            match route {
                Ok(route) => self.serve(route, req, remote).await,
                Err(refused) => {
                    let err = match refused {
                        RouteError::NotFound => ApiError::route_not_found(),
                        RouteError::MethodNotAllowed(allow) => ApiError::method_not_allowed(allow),
                    };
                    let (parts, body) = req.into_parts();
                    (self.refuse_unread(err, &parts.headers, body).await, None)
                }
            }
        }
        .instrument(span.clone())
        .await;
        let _in_request = span.enter();
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
            if route.audit() != Audit::Never {
                self.audit_refusal(ctx, &route, result::FORBIDDEN, &denied.to_string())
                    .await;
            }
            return (error_response(denied.into()), actor);
        }
        if let Some(err) = request_error {
            if let Audit::Always(_) = route.audit() {
                self.audit_refusal(ctx, &route, result::REJECTED, &err.message)
                    .await;
            }
            return (error_response(err), actor);
        }
        let response = handler::dispatch(self, ctx, route)
            .await
            .unwrap_or_else(error_response);
        (response, actor)
    }

    /// Audits a request refused before its handler ran (403, or a body or query it cannot
    /// use). A cancel is recorded as one request that changed nothing (`noop`); an admin
    /// request with the refusal (`forbidden`, `rejected`).
    async fn audit_refusal(&self, ctx: &Ctx, route: &Route, refusal: &'static str, why: &str) {
        let note = match route {
            Route::CancelJob(_) => AuditNote::new(result::NOOP, 1, why),
            _ => AuditNote::new(refusal, 0, why),
        };
        self.audit(ctx, route, note).await;
    }

    /// Refuses a request whose body was not read (401, unknown route, 405). The body is read
    /// and dropped (up to the size limit, for at most [`DRAIN_TIMEOUT`]) so that the client's
    /// next request on the connection finds it clean; a body that cannot be read that far or
    /// that fast gets `Connection: close` instead, never a connection dropped under the client,
    /// and a client that never sends its body cannot hold the refusal back.
    async fn refuse_unread<B>(&self, err: ApiError, headers: &HeaderMap, body: B) -> Response<Body>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut response = error_response(err);
        if !body.is_end_stream() {
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, self.read_body(headers, body)).await;
            if !matches!(drained, Ok(Ok(_))) {
                close_after(&mut response);
            }
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
