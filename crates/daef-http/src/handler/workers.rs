//! `/v1/workers…` and `/v1/tasks/report`: the worker protocol.

use daef_auth::Requirement;
use daef_core::engine::MAX_POLL_TASKS;
use daef_core::model::{JobId, Report, ReportStatus, TaskRef, WorkerCapabilities, WorkerStats};
use daef_core::ports::ReportOutcome;
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::app::{self, App, Body, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::json::{self, Fields};

/// Longest worker id, job id, task id, lease id or idempotency key.
const MAX_ID_LEN: usize = 128;
/// Longest error text a report may carry; longer text is cut (the tail of a log is what matters
/// least, but a bounded row matters more).
const MAX_ERROR_LEN: usize = 8 * 1024;
/// Longest artifact URI.
const MAX_URI_LEN: usize = 4 * 1024;

pub(super) async fn register(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let worker_id = worker_id(fields.required_str("worker_id", MAX_ID_LEN)?)?;
    let scalar = |name: &str| -> ApiResult<Option<serde_json::Value>> {
        match fields.value(name) {
            None => Ok(None),
            Some(v) if v.is_number() || v.is_string() => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::bad_request(format!(
                "{name} must be a number or a string"
            ))),
        }
    };
    let capabilities = WorkerCapabilities {
        cpu: scalar("cpu")?,
        memory: scalar("memory")?,
        gpu: scalar("gpu")?,
        models: fields.string_list("models")?.unwrap_or_default(),
        tools: fields.string_list("tools")?.unwrap_or_default(),
        locality: fields.str("locality")?.map(str::to_owned),
    };
    app.engine
        .register_worker(worker_id, &capabilities, ctx.now)
        .await?;
    Ok(app::json(
        StatusCode::OK,
        &json!({"accepted": true, "heartbeat_interval_seconds": app.engine.config().heartbeat_interval_seconds()}),
    ))
}

/// Worker ids appear in paths and metric labels: keep them to a safe alphabet.
fn worker_id(id: &str) -> ApiResult<&str> {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@'))
    {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "worker_id must be 1-128 characters of [A-Za-z0-9._:@-]",
        ))
    }
}

pub(super) async fn heartbeat(app: &App, ctx: &Ctx, id: &str) -> ApiResult<Response<Body>> {
    let body = json::object(&ctx.body, true)?;
    let fields = Fields::new(&body);
    let stats = WorkerStats {
        queue_depth: fields.non_negative("queue_depth")?,
        running_tasks: fields.non_negative("running_tasks")?,
        cpu_utilization: fields.number("cpu_utilization")?,
        memory_utilization: fields.number("memory_utilization")?,
        health: fields.str("health")?.map(str::to_owned),
    };
    let extended = app.engine.heartbeat(id, &stats, ctx.now).await?;
    Ok(app::json(
        StatusCode::OK,
        &json!({"accepted": true, "leases_extended": extended}),
    ))
}

pub(super) async fn assignments(app: &App, ctx: &Ctx, id: &str) -> ApiResult<Response<Body>> {
    let max_tasks = match ctx.query.get("max_tasks") {
        None => 1,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => usize::try_from(n)
                .unwrap_or(MAX_POLL_TASKS)
                .min(MAX_POLL_TASKS),
            // A positive integer too large for i64: clamped like any value above the cap.
            Err(_) if json::is_digits(raw) => MAX_POLL_TASKS,
            _ => {
                return Err(ApiError::bad_request(
                    "max_tasks must be a positive integer",
                ));
            }
        },
    };
    let assignments = app.engine.poll(id, max_tasks, ctx.now).await?;
    Ok(app::json(
        StatusCode::OK,
        &json!({"assignments": assignments}),
    ))
}

pub(super) async fn report(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let worker_id = fields.required_str("worker_id", MAX_ID_LEN)?.to_owned();
    let job_id = JobId::new(fields.required_str("job_id", MAX_ID_LEN)?);
    let task_id = fields.required_str("task_id", MAX_ID_LEN)?.to_owned();
    let lease_id = match fields.str("lease_id")? {
        Some(lease) if !lease.trim().is_empty() => lease.to_owned(),
        _ => return Err(ApiError::bad_request("lease_id is required")),
    };
    let status = match fields.str("status")? {
        Some("Completed") => ReportStatus::Completed,
        Some("Failed") => ReportStatus::Failed,
        _ => return Err(ApiError::bad_request("status must be Completed or Failed")),
    };
    let idempotency_key = fields
        .str("idempotency_key")?
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.chars().count() > MAX_ID_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "idempotency_key must be at most {MAX_ID_LEN} characters"
        )));
    }
    let output_artifact_uri = fields
        .str("output_artifact_uri")?
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    if output_artifact_uri
        .as_ref()
        .is_some_and(|u| u.len() > MAX_URI_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "output_artifact_uri must be at most {MAX_URI_LEN} bytes"
        )));
    }
    let error = fields.str("error")?.map(|e| truncate(e, MAX_ERROR_LEN));
    let duration_millis = fields.non_negative("duration_millis")?;

    // A token that may report only as a tenant must own the job.
    if ctx
        .principal
        .require(&[Requirement::Worker, Requirement::Operator])
        .is_err()
    {
        let job = app.engine.job(&job_id).await?;
        ctx.principal.check_tenant(&job.tenant)?;
    }

    let report = Report {
        worker_id,
        task: TaskRef::new(job_id, task_id),
        lease_id,
        idempotency_key,
        status,
        output_artifact_uri,
        error,
        duration_millis,
    };
    match app.engine.report(&report, ctx.now).await? {
        ReportOutcome::Applied(_) | ReportOutcome::Duplicate | ReportOutcome::JobCanceled => {
            Ok(app::json(StatusCode::OK, &json!({"accepted": true})))
        }
        ReportOutcome::StaleLease => Err(ApiError::new(StatusCode::CONFLICT, "stale lease")),
        ReportOutcome::NotRunning => {
            Err(ApiError::new(StatusCode::CONFLICT, "task is not running"))
        }
    }
}

fn truncate(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_owned();
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
