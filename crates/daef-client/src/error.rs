//! [`Error`]: every way a call can fail, with the gateway's statuses as typed variants that keep
//! the gateway's own `{"error": …}` message.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{HeaderMap, RETRY_AFTER};

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: the request was invalid; the message names the field or parameter at fault.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no token, or a token the gateway does not know.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the token lacks the scope, or the resource belongs to another tenant.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such job, task, worker or route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the path exists for other methods (a client/gateway version mismatch).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// 409: the resource is in another state (a stale lease, a task that is not running).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413: the request body is over the gateway's `DAEF_MAX_BODY_BYTES`.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 429: rate limited; try again after `retry_after_secs` (from `Retry-After`).
    #[error("rate limited: {msg}")]
    RateLimited {
        /// Whole seconds to wait, when the gateway said.
        retry_after_secs: Option<u64>,
        /// The gateway's message.
        msg: String,
    },
    /// 503: a backend (store or queue) did not answer; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Any other non-success status (500 and unexpected codes).
    #[error("server error {status}: {msg}")]
    Server {
        /// The HTTP status code.
        status: u16,
        /// The gateway's message (or the status's reason when the body had none).
        msg: String,
    },
    /// The request never got an answer: connection refused or reset, DNS, a broken pipe.
    #[error("cannot reach the gateway: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS handshake with an `https://` gateway failed: its certificate is signed by a CA
    /// this client does not trust (see [`ClientConfig::ca_file`](crate::ClientConfig::ca_file)),
    /// names another host, or has expired; or the port does not speak TLS. The message is
    /// rustls' reason (`invalid peer certificate: UnknownIssuer`). Sending again fails the same
    /// way until the configuration changes.
    #[error("TLS handshake with the gateway failed: {0}")]
    Tls(String),
    /// No complete answer within the configured per-request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not what the API defines (not JSON, missing fields).
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The client was configured wrongly (a base URL that is not `http[s]://host[:port]`, a
    /// token that cannot be a header value, a CA file that cannot be read or holds no usable
    /// certificate).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for a request that got no answer: [`Error::Tls`] when the TLS handshake
    /// failed, [`Error::Transport`] otherwise.
    pub(crate) fn unanswered(err: hyper_util::client::legacy::Error) -> Self {
        match crate::tls::find_tls_error(&err) {
            Some(tls) => Error::Tls(tls.to_string()),
            None => Error::Transport(Box::new(err)),
        }
    }

    /// Builds the error for a non-success answer from its status, headers and body.
    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let msg = error_message(status, body);
        match status.as_u16() {
            400 => Error::BadRequest(msg),
            401 => Error::Unauthorized(msg),
            403 => Error::Forbidden(msg),
            404 => Error::NotFound(msg),
            405 => Error::MethodNotAllowed(msg),
            409 => Error::Conflict(msg),
            413 => Error::PayloadTooLarge(msg),
            429 => Error::RateLimited {
                retry_after_secs: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
                msg,
            },
            503 => Error::Unavailable(msg),
            code => Error::Server { status: code, msg },
        }
    }

    /// The HTTP status, for errors the gateway answered with.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) => 503,
            Error::Server { status, .. } => *status,
            Error::Transport(_)
            | Error::Tls(_)
            | Error::Timeout(_)
            | Error::Decode(_)
            | Error::Config(_) => {
                return None;
            }
        })
    }

    /// The gateway's message, for errors the gateway answered with.
    pub fn gateway_message(&self) -> Option<&str> {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::MethodNotAllowed(m)
            | Error::Conflict(m)
            | Error::PayloadTooLarge(m)
            | Error::Unavailable(m)
            | Error::RateLimited { msg: m, .. }
            | Error::Server { msg: m, .. } => Some(m),
            Error::Transport(_)
            | Error::Tls(_)
            | Error::Timeout(_)
            | Error::Decode(_)
            | Error::Config(_) => None,
        }
    }

    /// Whether sending the same request again may succeed without changing it: the gateway
    /// was not reached, did not answer in time, had a backend down, or failed internally.
    /// Only safe to act on for requests that are idempotent (reads, or writes carrying an
    /// idempotency key).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) | Error::Unavailable(_) => true,
            Error::Server { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The `error` field of a JSON error body; else the body text (short) or the status's reason.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<daef_api::ErrorBody>(body) {
        return parsed.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        // A proxy's HTML error page can be long; the first line is enough to say what happened.
        text.lines()
            .next()
            .unwrap_or(text)
            .chars()
            .take(200)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[track_caller]
    fn check(status: u16, body: &str, expected: &str) {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        let status = StatusCode::from_u16(status).unwrap();
        let err = Error::from_response(status, &headers, body.as_bytes());
        assert_eq!(format!("{err:?}"), expected);
        assert_eq!(err.status(), Some(status.as_u16()));
    }

    #[test]
    fn statuses_map_to_variants_with_the_gateways_message() {
        check(
            400,
            r#"{"error":"type is required"}"#,
            r#"BadRequest("type is required")"#,
        );
        check(
            401,
            r#"{"error":"invalid token"}"#,
            r#"Unauthorized("invalid token")"#,
        );
        check(
            403,
            r#"{"error":"tenant access denied"}"#,
            r#"Forbidden("tenant access denied")"#,
        );
        check(
            404,
            r#"{"error":"job not found"}"#,
            r#"NotFound("job not found")"#,
        );
        check(
            405,
            r#"{"error":"method not allowed"}"#,
            r#"MethodNotAllowed("method not allowed")"#,
        );
        check(
            409,
            r#"{"error":"stale lease"}"#,
            r#"Conflict("stale lease")"#,
        );
        check(
            413,
            r#"{"error":"request body exceeds 10 bytes"}"#,
            r#"PayloadTooLarge("request body exceeds 10 bytes")"#,
        );
        check(
            429,
            r#"{"error":"requeue rate limit exceeded"}"#,
            r#"RateLimited { retry_after_secs: Some(17), msg: "requeue rate limit exceeded" }"#,
        );
        check(
            503,
            r#"{"error":"store unavailable, retry later"}"#,
            r#"Unavailable("store unavailable, retry later")"#,
        );
        check(
            500,
            r#"{"error":"internal error"}"#,
            r#"Server { status: 500, msg: "internal error" }"#,
        );
        check(502, "", r#"Server { status: 502, msg: "Bad Gateway" }"#);
        check(
            502,
            "<html>proxy says no\n<body>",
            r#"Server { status: 502, msg: "<html>proxy says no" }"#,
        );
    }

    #[test]
    fn only_unanswered_and_server_side_failures_are_transient() {
        assert!(Error::Timeout(Duration::from_secs(1)).is_transient());
        assert!(Error::Unavailable("store".into()).is_transient());
        assert!(
            Error::Server {
                status: 500,
                msg: String::new()
            }
            .is_transient()
        );
        assert!(!Error::Conflict("stale lease".into()).is_transient());
        assert!(!Error::BadRequest("x".into()).is_transient());
        assert!(!Error::Decode("x".into()).is_transient());
        assert!(!Error::Tls("invalid peer certificate: UnknownIssuer".into()).is_transient());
    }
}
