//! API requests made in-process with the session's token: the console's actions run through
//! exactly the pipeline a curl request would (authentication, scopes, tenant checks, admin
//! guards, rate limits, auditing with the same actor, metrics and the access log).

use std::net::SocketAddr;

use bytes::Bytes;
use daef_http::App;
use daef_http::response::Body;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::session::Session;

/// A whole API response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as `T`, or the API's error message.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        if !self.status.is_success() {
            return Err(self.error());
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("unexpected API answer: {e}"))
    }

    /// The API's `{"error": …}` message (or the status when there is none).
    pub(crate) fn error(&self) -> String {
        serde_json::from_slice::<daef_api::ErrorBody>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| self.status.to_string())
    }

    /// `Retry-After`, in seconds, of a 429.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// One API request.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    app: &'a App,
    request: Request<Full<Bytes>>,
    remote: SocketAddr,
}

impl<'a> Call<'a> {
    /// `method path` (with its query) as `session`, from the browser's address.
    pub(crate) fn new(
        app: &'a App,
        session: &Session,
        remote: SocketAddr,
        method: Method,
        path: &str,
    ) -> Self {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        if let Some(token) = &session.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Self {
            app,
            request,
            remote,
        }
    }

    /// With this header.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = value.parse() {
            self.request.headers_mut().insert(name, value);
        }
        self
    }

    /// With this JSON body.
    pub(crate) fn json<T: serde::Serialize>(mut self, body: &T) -> Self {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        *self.request.body_mut() = Full::new(Bytes::from(bytes));
        self.request.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        self
    }

    /// The response as the API streams it (an event stream, a CSV export).
    pub(crate) async fn stream(self) -> Response<Body> {
        self.app.handle(self.request, self.remote).await
    }

    /// The whole response.
    pub(crate) async fn send(self) -> Reply {
        let (parts, body) = self.stream().await.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
