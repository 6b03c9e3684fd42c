//! Health, readiness and metrics.

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::app::{self, App, Body};
use crate::error::ApiError;

pub(super) fn healthz() -> Response<Body> {
    app::json(StatusCode::OK, &json!({"status": "ok"}))
}

/// Ready when both the store and the queue answer.
pub(super) async fn readyz(app: &App) -> Response<Body> {
    let engine = app.engine();
    if let Err(err) = engine.store().ping().await {
        tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "readiness: store down");
        return app::error_response(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store ({}) unavailable", engine.store().backend()),
        ));
    }
    if let Err(err) = engine.queue().ping().await {
        tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "readiness: queue down");
        return app::error_response(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queue ({}) unavailable", engine.queue().backend()),
        ));
    }
    app::json(
        StatusCode::OK,
        &json!({"status": "ready", "store": engine.store().backend(), "queue": engine.queue().backend()}),
    )
}

pub(super) fn metrics_json(app: &App) -> Response<Body> {
    app::json(StatusCode::OK, &app.metrics().snapshot())
}

pub(super) fn metrics_prometheus(app: &App) -> Response<Body> {
    app::with_type(
        StatusCode::OK,
        app.metrics().render_prometheus(),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}
