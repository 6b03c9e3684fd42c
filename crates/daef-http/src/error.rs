//! [`ApiError`]: the only place a failure becomes an HTTP status. A 5xx never carries backend
//! text to the client; the cause is logged instead.

use daef_auth::{AccessError, AuthError, TenantError};
use hyper::StatusCode;

/// A failed request: a status and the message for `{"error": …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
    /// `Retry-After` seconds, for 429.
    pub retry_after: Option<u64>,
    /// `Allow` value, for 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// An error with this status and message. Private: callers say what went wrong through a
    /// named constructor, and this module alone maps that to a status.
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 400 with a message naming the problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for an unknown route.
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    /// 409: the resource is not in a state that allows the request.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 503: a backend does not answer; the message names it, never its error text.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
    }

    /// 413 for a body over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 500; the cause must already be logged.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<daef_core::Error> for ApiError {
    fn from(err: daef_core::Error) -> Self {
        use daef_core::Error;
        match err {
            Error::Invalid(message) => Self::bad_request(message),
            Error::NotFound(resource) => {
                Self::new(StatusCode::NOT_FOUND, format!("{resource} not found"))
            }
            Error::Conflict(message) => Self::conflict(message),
            Error::Unavailable { backend, source } => {
                tracing::warn!(backend, error = %source, "backend unavailable");
                Self::unavailable(format!("{backend} unavailable, retry later"))
            }
            Error::Backend { backend, source } => {
                tracing::error!(backend, error = %source, "backend error");
                Self::internal()
            }
            other => {
                tracing::error!(error = %other, "unexpected error");
                Self::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, err.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        Self::new(StatusCode::FORBIDDEN, err.to_string())
    }
}

impl From<TenantError> for ApiError {
    fn from(err: TenantError) -> Self {
        Self::bad_request(err.to_string())
    }
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;
