//! Building responses: JSON bodies, other content types, and `{"error": …}` from an
//! [`ApiError`]. Success statuses are named here (`ok`, `accepted`) so that handlers never pick
//! a status code themselves.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::error::ApiError;

/// The response body type: a whole body for every route except the job event stream, whose
/// body is written as events happen. Reading it never fails.
pub type Body = BoxBody<Bytes, Infallible>;

/// `200` with a JSON body.
pub(crate) fn ok<T: Serialize>(value: &T) -> Response<Body> {
    json(StatusCode::OK, value)
}

/// `202` with a JSON body: accepted for processing.
pub(crate) fn accepted<T: Serialize>(value: &T) -> Response<Body> {
    json(StatusCode::ACCEPTED, value)
}

/// `200` with a streamed body of this content type (the job event stream).
pub(crate) fn ok_stream(body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `200` with a body of this content type.
pub(crate) fn ok_with_type(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    with_type(StatusCode::OK, body, content_type)
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, bytes, "application/json"),
        Err(err) => {
            tracing::error!(error = %err, "could not serialize a response");
            error_response(ApiError::internal())
        }
    }
}

/// A response with a body of the given content type.
fn with_type(
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
    let body = daef_api::ErrorBody { error: err.message };
    let mut response = match serde_json::to_vec(&body) {
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

/// Asks the server to close the connection after this response: the request's body was left
/// unread, so the connection cannot carry another request.
pub(crate) fn close_after(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}
