//! `/v1/admin/…`: the dead-letter queue and the audit log. Every dead-letter request that got
//! past authentication is audited, rejected ones included.

use daef_api as api;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::audit::{result, to_csv};
use daef_core::model::{JobId, TaskRef};
use daef_core::ports::{AuditQuery, RateDecision};
use hyper::Response;
use serde_json::Value;

use crate::app::App;
use crate::auditing::{AuditNote, Audited};
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::{self, Fields};
use crate::response::{self, Body};

const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 50;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A request refused for its input (400): audited as `rejected`.
fn rejected(err: ApiError, requested: u64) -> Audited {
    let note = AuditNote::new(result::REJECTED, requested, err.message.clone());
    (Err(err), note)
}

/// A request the backend failed (5xx): audited as `error`.
fn failed(err: ApiError, requested: u64) -> Audited {
    let note = AuditNote::new(result::ERROR, requested, err.message.clone());
    (Err(err), note)
}

pub(super) async fn list_dead_letters(app: &App, ctx: &Ctx) -> Audited {
    let limit = match ctx.query.limit(DEFAULT_PAGE, MAX_PAGE) {
        Ok(limit) => limit,
        Err(err) => return rejected(err, 0),
    };
    match app.engine.dead_letters(limit).await {
        Ok(tasks) => {
            let details = format!("returned {} dead letters", tasks.len());
            (
                Ok(response::ok(&api::DeadLetterList {
                    tasks: tasks.into_iter().map(Into::into).collect(),
                })),
                AuditNote::new(result::OK, limit as u64, details),
            )
        }
        Err(err) => failed(err.into(), limit as u64),
    }
}

/// A requeue request that passed validation.
struct Requeue {
    tasks: Vec<TaskRef>,
    dry_run: bool,
}

fn parse_requeue(body: &[u8]) -> ApiResult<Requeue> {
    let map = json::object(body, false)?;
    let fields = Fields::new(&map);
    let items = match fields.array("tasks") {
        Ok(Some(items)) if !items.is_empty() => items,
        _ => return Err(ApiError::bad_request("tasks is required")),
    };
    let tasks = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("tasks[{i}]");
            let Value::Object(entry) = item else {
                return Err(ApiError::bad_request(format!(
                    "{prefix} must be an object with job_id and task_id"
                )));
            };
            let entry = Fields::nested(entry, &prefix);
            let job_id = entry.required_str("job_id", 128)?;
            let task_id = entry.required_str("task_id", 128)?;
            Ok(TaskRef::new(JobId::new(job_id), task_id))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let dry_run = fields.bool("dry_run")?.unwrap_or(false);
    Ok(Requeue { tasks, dry_run })
}

/// A dead-letter action: what its messages call it and the key of its rate limit.
#[derive(Clone, Copy)]
enum DeadLetterAction {
    Requeue,
    Discard,
}

impl DeadLetterAction {
    fn noun(self) -> &'static str {
        match self {
            DeadLetterAction::Requeue => "requeue",
            DeadLetterAction::Discard => "discard",
        }
    }
}

/// The safety checks of DESIGN.md §4, in their order: body, batch size, confirmation, rate
/// limit. The parsed request when it may go ahead, else the refusal and its audit note.
async fn guarded(app: &App, ctx: &Ctx, action: DeadLetterAction) -> Result<Requeue, Audited> {
    let request = parse_requeue(&ctx.body).map_err(|err| rejected(err, 0))?;
    let requested = request.tasks.len() as u64;
    let limits = &app.config.admin;
    if limits.max_batch > 0 && requested > limits.max_batch as u64 {
        let err =
            ApiError::bad_request(format!("tasks exceeds max batch size {}", limits.max_batch));
        return Err(rejected(err, requested));
    }
    // A dry run changes nothing, so it needs no confirmation (as in the seed).
    if !request.dry_run
        && let Some(token) = &limits.confirm_token
        && limits.confirm_threshold > 0
        && requested >= limits.confirm_threshold as u64
    {
        let presented = ctx.header("x-daef-confirm").unwrap_or_default();
        // Compare hashes: blake3::Hash equality is constant-time.
        if blake3::hash(presented.as_bytes()) != blake3::hash(token.as_bytes()) {
            let err = ApiError::bad_request(format!(
                "confirmation token required for large {}",
                action.noun()
            ));
            return Err(rejected(err, requested));
        }
    }
    if !request.dry_run && limits.rate_limit_per_min > 0 {
        let limit = u32::try_from(limits.rate_limit_per_min).unwrap_or(u32::MAX);
        let key = format!("admin-{}:{}", action.noun(), ctx.principal.id);
        match app
            .rate_limiter
            .acquire(&key, limit, RATE_WINDOW, ctx.now)
            .await
        {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after_secs }) => {
                let details = format!("limit {limit} per minute; retry after {retry_after_secs}s");
                return Err((
                    Err(ApiError::rate_limited(
                        format!("{} rate limit exceeded", action.noun()),
                        retry_after_secs,
                    )),
                    AuditNote::new(result::RATE_LIMITED, requested, details),
                ));
            }
            Err(err) => return Err(failed(err.into(), requested)),
        }
    }
    Ok(request)
}

pub(super) async fn requeue_dead_letters(app: &App, ctx: &Ctx) -> Audited {
    let request = match guarded(app, ctx, DeadLetterAction::Requeue).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let requested = request.tasks.len() as u64;
    let summary = match app
        .engine
        .requeue_dead(&request.tasks, request.dry_run, ctx.now)
        .await
    {
        Ok(summary) => summary,
        Err(err) => return failed(err.into(), requested),
    };
    let requeued = summary.requeued;
    if request.dry_run {
        (
            Ok(response::ok(&api::RequeueOutcome {
                dry_run: true,
                requested,
                requeued,
            })),
            AuditNote::new(
                result::DRY_RUN,
                requested,
                format!("{requeued} of {requested} listed tasks are dead letters"),
            ),
        )
    } else {
        app.work_enqueued(usize::try_from(requeued).unwrap_or(usize::MAX));
        (
            Ok(response::ok(&api::RequeueOutcome {
                dry_run: false,
                requested,
                requeued,
            })),
            AuditNote::new(
                result::OK,
                requested,
                format!("requeued {requeued} of {requested} listed tasks"),
            ),
        )
    }
}

fn timestamp_param(ctx: &Ctx, name: &str) -> ApiResult<Option<Timestamp>> {
    ctx.query
        .get(name)
        .map(|raw| {
            // An unencoded `+` in an offset arrives as a space after form decoding.
            Timestamp::parse_rfc3339(&raw.replace(' ', "+"))
                .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 timestamp")))
        })
        .transpose()
}

pub(super) async fn list_audit(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let csv = match ctx.query.get("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request("format must be json or csv")),
    };
    let text = |name: &str| ctx.query.get(name).map(str::to_owned);
    let query = AuditQuery {
        action: text("action"),
        actor: text("actor"),
        tenant: text("tenant"),
        result: text("result"),
        from: timestamp_param(ctx, "from")?,
        to: timestamp_param(ctx, "to")?,
        limit: ctx.query.positive_limit(DEFAULT_PAGE, MAX_PAGE)?,
        offset: ctx.query.offset()?,
    };
    let events = app.engine.list_audit(&query).await?;
    if csv {
        return Ok(response::ok_with_type(
            to_csv(&events),
            "text/csv; charset=utf-8",
        ));
    }
    Ok(response::ok(&api::AuditPage {
        returned: events.len() as u64,
        limit: query.limit as u64,
        offset: query.offset as u64,
        events,
    }))
}

pub(super) async fn verify_audit(app: &App) -> ApiResult<Response<Body>> {
    let verification = app.engine.verify_audit().await?;
    Ok(response::ok(&verification))
}

/// Discards dead letters: the same body, guards and auditing as a requeue.
pub(super) async fn discard_dead_letters(app: &App, ctx: &Ctx) -> Audited {
    let request = match guarded(app, ctx, DeadLetterAction::Discard).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let requested = request.tasks.len() as u64;
    let summary = match app
        .engine
        .discard_dead(&request.tasks, request.dry_run, ctx.now)
        .await
    {
        Ok(summary) => summary,
        Err(err) => return failed(err.into(), requested),
    };
    let discarded = summary.discarded;
    let (label, details) = if request.dry_run {
        (
            result::DRY_RUN,
            format!("{discarded} of {requested} listed tasks are dead letters"),
        )
    } else {
        (
            result::OK,
            format!("discarded {discarded} of {requested} listed tasks"),
        )
    };
    (
        Ok(response::ok(&api::DiscardOutcome {
            dry_run: request.dry_run,
            requested,
            discarded,
        })),
        AuditNote::new(label, requested, details),
    )
}
