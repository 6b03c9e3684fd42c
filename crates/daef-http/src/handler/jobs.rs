//! `/v1/jobs…`: submit, list, status, cancel, tasks.

use daef_api as api;
use daef_core::Timestamp;
use daef_core::audit::result;
use daef_core::model::{JobId, JobStatus, Priority, RetryBackoff, TaskStatus};
use daef_core::planner::{JobSpec, TaskSpec};
use daef_core::ports::{JobQuery, TaskQuery};
use daef_core::transition::CancelOutcome;
use hyper::Response;
use serde_json::Value;

use super::access::{tenants_in_scope, visible_job};
use crate::app::App;
use crate::auditing::{AuditNote, Audited};
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::{self, Fields};
use crate::response::{self, Body};

/// Longest job `type` or task `type`.
const MAX_TYPE_LEN: usize = 128;
/// Most jobs one list request returns.
const MAX_JOBS_PAGE: usize = 1_000;
/// Jobs per page when the request does not say.
const DEFAULT_JOBS_PAGE: usize = 50;

pub(super) async fn submit(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let spec = job_spec(&fields, ctx.now)?;
    let tenant = ctx
        .principal
        .effective_tenant(fields.str("tenant")?, ctx.tenant_header()?)?;
    ctx.principal.check_tenant(&tenant)?;
    let Some(key) = idempotency_key(ctx)? else {
        let job = app.engine.submit(&spec, &tenant, ctx.now).await?;
        app.work_enqueued(1);
        return Ok(response::accepted(&api::Submitted {
            job_id: job.job_id,
            status: job.status,
        }));
    };
    let body_hash = blake3::hash(&ctx.body).to_hex();
    let (job, replayed) = app
        .engine
        .submit_keyed(&spec, &tenant, key, body_hash.as_str(), ctx.now)
        .await?;
    let submitted = api::Submitted {
        job_id: job.job_id,
        status: job.status,
    };
    if replayed {
        // The job the first submit with this key created, as it is now.
        return Ok(response::ok(&submitted));
    }
    app.work_enqueued(1);
    Ok(response::accepted(&submitted))
}

/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// `Idempotency-Key`, when sent: 1–255 printable ASCII characters.
fn idempotency_key(ctx: &Ctx) -> ApiResult<Option<&str>> {
    let Some(value) = ctx.headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
        ))
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(bad());
    }
    Ok(Some(key))
}

/// Longest `delay_seconds`, and furthest `run_at`: a year.
const MAX_DELAY_SECONDS: i64 = 365 * 86_400;
/// Largest `retry_backoff` value: a day, in milliseconds.
const MAX_BACKOFF_MS: i64 = 86_400_000;

/// Validates the submit body's types (also a schedule's job template, as `job.…`); the
/// planner validates the DAG itself.
pub(super) fn job_spec(fields: &Fields<'_>, now: Timestamp) -> ApiResult<JobSpec> {
    let job_type = fields.required_str("type", MAX_TYPE_LEN)?.to_owned();
    let tasks = match fields.array("tasks")? {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| task_spec(&fields.path("tasks"), i, item))
                .collect::<ApiResult<Vec<_>>>()?,
        ),
    };
    // With an explicit DAG the input is informational; the default planner needs one.
    let input = match fields.str("input")? {
        Some(input) => input.to_owned(),
        None if tasks.is_some() => String::new(),
        None => {
            return Err(ApiError::bad_request(format!(
                "{} is required",
                fields.path("input")
            )));
        }
    };
    let priority = match fields.str("priority")? {
        None => Priority::default(),
        Some(p) => p.parse().map_err(|()| {
            ApiError::bad_request(format!(
                "{} must be interactive or batch",
                fields.path("priority")
            ))
        })?,
    };
    let policy = fields.str("policy")?.map(str::to_owned);
    let run_at = start_time(fields, now)?;
    Ok(JobSpec {
        job_type,
        input,
        policy,
        priority,
        tasks,
        run_at,
    })
}

/// A delayed job's start: `run_at` (RFC 3339) or `delay_seconds`, not both, at most a year
/// ahead. A time already past starts the job at once.
fn start_time(fields: &Fields<'_>, now: Timestamp) -> ApiResult<Option<Timestamp>> {
    let run_at = fields
        .str("run_at")?
        .map(|raw| {
            Timestamp::parse_rfc3339(raw)
                .map_err(|_| ApiError::bad_request("run_at must be an RFC 3339 timestamp"))
        })
        .transpose()?;
    let delay = fields.int("delay_seconds", 0, MAX_DELAY_SECONDS)?;
    let latest = now.plus(std::time::Duration::from_secs(MAX_DELAY_SECONDS as u64));
    match (run_at, delay) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give run_at or delay_seconds, not both",
        )),
        (Some(at), None) if at > latest => {
            Err(ApiError::bad_request("run_at must be at most a year ahead"))
        }
        (Some(at), None) => Ok(Some(at)),
        (None, Some(secs)) => Ok(Some(now.plus(std::time::Duration::from_secs(secs as u64)))),
        (None, None) => Ok(None),
    }
}

fn task_spec(tasks_path: &str, index: usize, item: &Value) -> ApiResult<TaskSpec> {
    let prefix = format!("{tasks_path}[{index}]");
    let Value::Object(map) = item else {
        return Err(ApiError::bad_request(format!("{prefix} must be an object")));
    };
    let fields = Fields::nested(map, &prefix);
    let task_id = fields
        .str("task_id")?
        .ok_or_else(|| ApiError::bad_request(format!("{prefix}.task_id is required")))?;
    let task_type = fields
        .str("type")?
        .ok_or_else(|| ApiError::bad_request(format!("{prefix}.type is required")))?;
    let int = |name: &str, min: i64, max: i64| -> ApiResult<Option<u32>> {
        Ok(fields.int(name, min, max)?.map(|n| n as u32))
    };
    Ok(TaskSpec {
        task_id: task_id.to_owned(),
        task_type: task_type.to_owned(),
        inputs: fields.string_map("inputs")?.unwrap_or_default(),
        dependencies: fields.string_list("dependencies")?.unwrap_or_default(),
        max_retries: int(
            "max_retries",
            0,
            i64::from(daef_core::planner::MAX_RETRIES_LIMIT),
        )?,
        timeout_sec: int(
            "timeout_sec",
            1,
            i64::from(daef_core::planner::MAX_TIMEOUT_SEC),
        )?,
        retry_backoff: retry_backoff(&fields)?,
    })
}

/// `retry_backoff: {"initial_ms", "max_ms"}`: both required, each 0 to a day, `max_ms` at
/// least `initial_ms`.
fn retry_backoff(fields: &Fields<'_>) -> ApiResult<Option<RetryBackoff>> {
    let name = fields.path("retry_backoff");
    let Some(value) = fields.value("retry_backoff").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(format!(
            "{name} must be an object with initial_ms and max_ms"
        )));
    };
    let backoff = Fields::nested(map, &name);
    let ms = |field: &str| -> ApiResult<u32> {
        backoff
            .int(field, 0, MAX_BACKOFF_MS)?
            .map(|n| n as u32)
            .ok_or_else(|| ApiError::bad_request(format!("{name}.{field} is required")))
    };
    let (initial_ms, max_ms) = (ms("initial_ms")?, ms("max_ms")?);
    if max_ms < initial_ms {
        return Err(ApiError::bad_request(format!(
            "{name}.max_ms must be at least {name}.initial_ms"
        )));
    }
    Ok(Some(RetryBackoff { initial_ms, max_ms }))
}

pub(super) async fn list(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let status = match ctx.query.get("status") {
        None => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            ApiError::bad_request(
                "status must be one of Queued, Running, Completed, Failed, Canceled",
            )
        })?),
    };
    let limit = ctx.query.limit(DEFAULT_JOBS_PAGE, MAX_JOBS_PAGE)?;
    let offset = ctx.query.offset()?;
    let tenants = tenants_in_scope(ctx, ctx.query.get("tenant"))?;
    let page = app
        .engine
        .list_jobs(&JobQuery {
            status,
            tenants,
            limit,
            offset,
            ..JobQuery::default()
        })
        .await?;
    let jobs: Vec<api::JobInfo> = page.items.iter().map(api::JobInfo::from).collect();
    Ok(response::ok(&api::JobList {
        total: page.total as u64,
        returned: jobs.len() as u64,
        limit: limit as u64,
        offset: offset as u64,
        jobs,
    }))
}

pub(super) async fn get(app: &App, ctx: &Ctx, id: &JobId) -> ApiResult<Response<Body>> {
    let job = visible_job(app, ctx, id).await?;
    Ok(response::ok(&api::JobInfo::from(&job)))
}

/// Every cancel request is audited: `ok` when it canceled the job, `noop` otherwise.
pub(super) async fn cancel(app: &App, ctx: &Ctx, id: &JobId) -> Audited {
    let refused = |err: ApiError| {
        let note = AuditNote::new(result::NOOP, 1, err.message.clone());
        (Err(err), note)
    };
    let job = match visible_job(app, ctx, id).await {
        Ok(job) => job,
        Err(err) => return refused(err),
    };
    let outcome = match app.engine.cancel(&job.job_id, ctx.now).await {
        Ok(outcome) => outcome,
        Err(err) => return refused(err.into()),
    };
    let (outcome_label, details) = match outcome {
        CancelOutcome::Canceled => (result::OK, "canceled".to_owned()),
        CancelOutcome::AlreadyCanceled => (result::NOOP, "already canceled".to_owned()),
        CancelOutcome::AlreadyFinished => (result::NOOP, format!("already {}", job.status)),
    };
    (
        Ok(response::ok(&api::CancelOutcome {
            accepted: outcome.accepted(),
        })),
        AuditNote::new(outcome_label, 1, details).for_tenant(&job.tenant),
    )
}

pub(super) async fn tasks(app: &App, ctx: &Ctx, id: &JobId) -> ApiResult<Response<Body>> {
    let status = match ctx.query.get("status") {
        None => None,
        Some(s) => Some(s.parse::<TaskStatus>().map_err(|_| {
            ApiError::bad_request(
                "status must be one of Queued, Running, Completed, Failed, Canceled",
            )
        })?),
    };
    let limit = ctx.query.non_negative("limit")?;
    let offset = ctx.query.non_negative("offset")?;
    let job = visible_job(app, ctx, id).await?;
    let query = TaskQuery {
        status,
        worker_id: ctx.query.get("worker_id").map(str::to_owned),
        // A job has at most 1,000 tasks; no limit (or 0) means all of them.
        limit: limit
            .filter(|n| *n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        offset: offset.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let page = app.engine.tasks(&job.job_id, &query).await?;
    let tasks: Vec<api::TaskInfo> = page.items.iter().map(api::TaskInfo::from).collect();
    Ok(response::ok(&api::TaskList {
        job_id: job.job_id,
        total: page.total as u64,
        returned: tasks.len() as u64,
        limit,
        offset,
        tasks,
    }))
}
