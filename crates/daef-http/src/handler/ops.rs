//! Health, readiness and metrics.

use daef_api as api;
use hyper::Response;

use crate::app::App;
use crate::error::ApiError;
use crate::response::{self, Body};

pub(super) fn healthz() -> Response<Body> {
    response::ok(&api::Health {
        status: "ok".to_owned(),
    })
}

/// Ready when both the store and the queue answer.
pub(super) async fn readyz(app: &App) -> Response<Body> {
    let engine = app.engine();
    match engine.ready().await {
        Ok(()) => response::ok(&api::Readiness {
            status: "ready".to_owned(),
            store: Some(engine.store().backend().to_owned()),
            queue: Some(engine.queue().backend().to_owned()),
        }),
        Err(not_ready) => {
            tracing::warn!(error = %not_ready.source, source = ?std::error::Error::source(&not_ready.source), "readiness: {not_ready}");
            response::error_response(ApiError::unavailable(not_ready.to_string()))
        }
    }
}

pub(super) fn metrics_json(app: &App) -> Response<Body> {
    response::ok(&app.metrics().snapshot())
}

pub(super) fn metrics_prometheus(app: &App) -> Response<Body> {
    response::ok_with_type(
        app.metrics().render_prometheus(),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}
