//! `/v1/workers…` and `/v1/tasks/report`: the worker protocol.

use daef_api as api;
use daef_auth::Requirement;
use daef_core::engine::{MAX_POLL_TASKS, MAX_POLL_WAIT_MS};
use std::time::{Duration, Instant};

use daef_core::Timestamp;
use daef_core::model::{
    Assignment, Gpu, JobId, Report, ReportStatus, TaskRef, WorkerCapabilities, WorkerStats,
};
use daef_core::ports::ReportOutcome;
use hyper::Response;

use super::access::visible_job;
use crate::app::App;
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::{self, Fields};
use crate::response::{self, Body};

/// Longest worker id, job id, task id, lease id or idempotency key.
const MAX_ID_LEN: usize = 128;
/// Longest error text a report may carry; longer text is cut (the tail of a log is what matters
/// least, but a bounded row matters more).
const MAX_ERROR_LEN: usize = 8 * 1024;
/// Longest artifact URI.
const MAX_URI_LEN: usize = 4 * 1024;
/// A heartbeat's `health` when it does not say (the seed's default).
const DEFAULT_HEALTH: &str = "healthy";
/// How often a waiting poll looks again without being woken: work enqueued by another replica
/// or by the reconciler does not wake this process's polls.
const RECHECK_INTERVAL: Duration = Duration::from_millis(200);

pub(super) async fn register(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let worker_id = worker_id(fields.required_str("worker_id", MAX_ID_LEN)?)?;
    let capabilities = WorkerCapabilities {
        cpu: fields.non_negative("cpu")?,
        memory: fields.str("memory")?.map(str::to_owned),
        gpu: gpu(&fields)?,
        models: fields.string_list("models")?.unwrap_or_default(),
        tools: fields.string_list("tools")?.unwrap_or_default(),
        locality: fields.str("locality")?.map(str::to_owned),
    };
    app.engine
        .register_worker(worker_id, &capabilities, ctx.now)
        .await?;
    Ok(response::ok(&api::Registered {
        accepted: true,
        heartbeat_interval_seconds: app.engine.config().heartbeat_interval_seconds(),
    }))
}

/// Most workers one list request returns.
const MAX_WORKERS_PAGE: usize = 1_000;
/// Workers per page when the request does not say.
const DEFAULT_WORKERS_PAGE: usize = 100;

pub(super) async fn list(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let limit = ctx.query.limit(DEFAULT_WORKERS_PAGE, MAX_WORKERS_PAGE)?;
    let offset = ctx.query.offset()?;
    let page = app.engine.list_workers(limit, offset).await?;
    let interval = Duration::from_secs(app.engine.config().heartbeat_interval_seconds());
    let workers: Vec<api::WorkerInfo> = page
        .items
        .into_iter()
        .map(|worker| api::WorkerInfo::new(worker, ctx.now, interval))
        .collect();
    Ok(response::ok(&api::WorkerList {
        total: page.total,
        returned: workers.len() as u64,
        limit: limit as u64,
        offset: offset as u64,
        workers,
    }))
}

/// `gpu`: a boolean, as the seed's worker sends it, or a GPU count.
fn gpu(fields: &Fields<'_>) -> ApiResult<Option<Gpu>> {
    match fields.value("gpu") {
        None => Ok(None),
        Some(serde_json::Value::Bool(present)) => Ok(Some(Gpu::Present(*present))),
        Some(_) => match fields.non_negative("gpu") {
            Ok(count) => Ok(count.map(Gpu::Count)),
            Err(_) => Err(ApiError::bad_request(
                "gpu must be true, false or a non-negative integer",
            )),
        },
    }
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
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let stats = WorkerStats {
        queue_depth: fields.non_negative("queue_depth")?,
        running_tasks: fields.non_negative("running_tasks")?,
        cpu_utilization: fields.number("cpu_utilization")?,
        memory_utilization: fields.number("memory_utilization")?,
        health: Some(fields.str("health")?.unwrap_or(DEFAULT_HEALTH).to_owned()),
    };
    // The seed's workers send their clock; the gateway's own clock is what counts, but a
    // value of the wrong type is still a bad request.
    fields.int("timestamp_unix", i64::MIN, i64::MAX)?;
    let held = running_attempts(&fields)?;
    let outcome = app.engine.heartbeat(id, &stats, &held, ctx.now).await?;
    Ok(response::ok(&api::HeartbeatAck {
        accepted: true,
        leases_extended: u64::from(outcome.leases_extended),
        stop_leases: outcome.stop_leases,
    }))
}

/// Most attempts one heartbeat may list in `running`.
const MAX_RUNNING_LISTED: usize = 1_000;

/// `running`: the attempts the worker runs, `[{job_id, task_id, lease_id}]` (absent: none).
fn running_attempts(fields: &Fields<'_>) -> ApiResult<Vec<(TaskRef, String)>> {
    let Some(items) = fields.array("running")? else {
        return Ok(Vec::new());
    };
    if items.len() > MAX_RUNNING_LISTED {
        return Err(ApiError::bad_request(format!(
            "running must list at most {MAX_RUNNING_LISTED} attempts"
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("running[{i}]");
            let serde_json::Value::Object(entry) = item else {
                return Err(ApiError::bad_request(format!(
                    "{prefix} must be an object with job_id, task_id and lease_id"
                )));
            };
            let entry = Fields::nested(entry, &prefix);
            let job_id = entry.required_str("job_id", MAX_ID_LEN)?;
            let task_id = entry.required_str("task_id", MAX_ID_LEN)?;
            let lease_id = entry.required_str("lease_id", MAX_ID_LEN)?;
            Ok((
                TaskRef::new(JobId::new(job_id), task_id),
                lease_id.to_owned(),
            ))
        })
        .collect()
}

pub(super) async fn assignments(app: &App, ctx: &Ctx, id: &str) -> ApiResult<Response<Body>> {
    let max_tasks = match ctx.query.raw("max_tasks") {
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
    let wait = Duration::from_millis(
        ctx.query
            .non_negative("wait_ms")?
            .map_or(0, |ms| ms.min(MAX_POLL_WAIT_MS)),
    );
    let assignments = long_poll(app, ctx, id, max_tasks, wait).await?;
    // Serialized straight from typed values: no intermediate `serde_json::Value` tree, whose
    // many small allocations per assignment are a measurable share of a poll.
    Ok(response::ok(&api::Assignments {
        assignments: assignments.into_iter().map(Into::into).collect(),
    }))
}

/// Polls; while nothing is assigned and `wait` has not passed, waits for work enqueued in this
/// process (or a periodic re-check, for work enqueued elsewhere) and polls again. An idle
/// worker then makes one request per `wait` instead of hammering the gateway.
async fn long_poll(
    app: &App,
    ctx: &Ctx,
    worker_id: &str,
    max_tasks: usize,
    wait: Duration,
) -> ApiResult<Vec<Assignment>> {
    let deadline = Instant::now() + wait;
    let mut closing = app.closing.subscribe();
    let mut now = ctx.now;
    loop {
        // Registered before polling, so work enqueued while the poll runs still wakes us.
        let notified = app.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let assignments = app.engine.poll(worker_id, max_tasks, now).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !assignments.is_empty() || left.is_zero() || *closing.borrow() {
            if assignments.len() >= max_tasks && !wait.is_zero() {
                // A full batch: more may be waiting, so hand the wake-up on.
                app.work.notify_one();
            }
            return Ok(assignments);
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(left.min(RECHECK_INTERVAL)) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
        now = Timestamp::now();
    }
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
        visible_job(app, ctx, &job_id).await?;
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
        ReportOutcome::Applied(effects) => {
            app.work_enqueued(effects.enqueue.len());
            Ok(accepted())
        }
        ReportOutcome::Duplicate | ReportOutcome::JobCanceled => Ok(accepted()),
        ReportOutcome::StaleLease => Err(ApiError::conflict("stale lease")),
        ReportOutcome::NotRunning => Err(ApiError::conflict("task is not running")),
    }
}

/// `200 {"accepted":true}`, the answer to most reports, from a static body.
fn accepted() -> Response<Body> {
    response::ok_with_type(
        bytes::Bytes::from_static(br#"{"accepted":true}"#),
        "application/json",
    )
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
