//! `/v1/schedules…`: periodic schedules. Creating, deleting, pausing and resuming one is
//! audited (it decides what runs later, unattended); reading is not.

use daef_api as api;
use daef_core::audit::result;
use daef_core::schedule::{NewSchedule, Schedule};
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::access::tenants_in_scope;
use super::jobs::job_spec;
use crate::app::App;
use crate::auditing::{AuditNote, Audited};
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::json::{self, Fields};
use crate::response::{self, Body};

/// Most schedules one list request returns.
const MAX_SCHEDULES_PAGE: usize = 1_000;
/// Schedules per page when the request does not say.
const DEFAULT_SCHEDULES_PAGE: usize = 100;
/// Longest cron expression.
const MAX_CRON_LEN: usize = 256;

/// An audited schedule change: `ok` with the schedule's tenant when it went ahead, else
/// `rejected` (4xx) or `error` (5xx) with the message.
fn audited(answer: ApiResult<(Response<Body>, String, String)>) -> Audited {
    match answer {
        Ok((response, tenant, details)) => (
            Ok(response),
            AuditNote::new(result::OK, 1, details).for_tenant(&tenant),
        ),
        Err(err) => {
            let label = if err.status.is_server_error() {
                result::ERROR
            } else {
                result::REJECTED
            };
            let note = AuditNote::new(label, 1, err.message.clone());
            (Err(err), note)
        }
    }
}

/// Loads the schedule `id` among the tenants the request may name: the `X-DAEF-Tenant`
/// header's (if the token may act for it), else every tenant the token sees. Ids are unique
/// within a tenant, so another tenant's schedule of the same id is never found (no existence
/// oracle); an operator whose id several tenants use is asked to name one (409).
async fn visible_schedule(app: &App, ctx: &Ctx, id: &str) -> ApiResult<Schedule> {
    let tenants = tenants_in_scope(ctx, ctx.tenant_header()?)?;
    Ok(app.engine.find_schedule(id, tenants.as_deref()).await?)
}

/// Validates a create body: `schedule_id`, `cron`, `job` (a submit body without `run_at` or
/// `delay_seconds`) and `paused`.
fn new_schedule(ctx: &Ctx) -> ApiResult<NewSchedule> {
    let body = json::object(&ctx.body, false)?;
    let fields = Fields::new(&body);
    let schedule_id = fields
        .required_str("schedule_id", daef_core::schedule::MAX_SCHEDULE_ID_LEN)?
        .to_owned();
    let cron = fields.required_str("cron", MAX_CRON_LEN)?.to_owned();
    let Some(Value::Object(job)) = fields.value("job") else {
        return Err(ApiError::bad_request(
            "job is required: an object, the body of POST /v1/jobs",
        ));
    };
    let job_fields = Fields::nested(job, "job");
    for delayed in ["run_at", "delay_seconds"] {
        if job_fields.value(delayed).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{} is not allowed in a schedule: each tick's job starts at once",
                job_fields.path(delayed)
            )));
        }
    }
    let template = job_spec(&job_fields, ctx.now)?;
    let tenant = ctx
        .principal
        .effective_tenant(job_fields.str("tenant")?, ctx.tenant_header()?)?;
    ctx.principal.check_tenant(&tenant)?;
    Ok(NewSchedule {
        schedule_id,
        tenant,
        cron,
        template,
        paused: fields.bool("paused")?.unwrap_or(false),
    })
}

pub(super) async fn create(app: &App, ctx: &Ctx) -> Audited {
    audited(
        async {
            let new = new_schedule(ctx)?;
            let schedule = app.engine.create_schedule(new, ctx.now).await?;
            let mut response = response::ok(&api::ScheduleInfo::from(&schedule));
            *response.status_mut() = StatusCode::CREATED;
            let details = format!("created {} ({})", schedule.schedule_id, schedule.cron);
            Ok((response, schedule.tenant, details))
        }
        .await,
    )
}

pub(super) async fn list(app: &App, ctx: &Ctx) -> ApiResult<Response<Body>> {
    let limit = ctx
        .query
        .limit(DEFAULT_SCHEDULES_PAGE, MAX_SCHEDULES_PAGE)?;
    let offset = ctx.query.offset()?;
    let tenants = tenants_in_scope(ctx, ctx.query.get("tenant"))?;
    let page = app
        .engine
        .list_schedules(tenants.as_deref(), limit, offset)
        .await?;
    let schedules: Vec<api::ScheduleInfo> =
        page.items.iter().map(api::ScheduleInfo::from).collect();
    Ok(response::ok(&api::ScheduleList {
        total: page.total,
        returned: schedules.len() as u64,
        limit: limit as u64,
        offset: offset as u64,
        schedules,
    }))
}

pub(super) async fn get(app: &App, ctx: &Ctx, id: &str) -> ApiResult<Response<Body>> {
    let schedule = visible_schedule(app, ctx, id).await?;
    Ok(response::ok(&api::ScheduleInfo::from(&schedule)))
}

pub(super) async fn delete(app: &App, ctx: &Ctx, id: &str) -> Audited {
    audited(
        async {
            let schedule = visible_schedule(app, ctx, id).await?;
            app.engine
                .delete_schedule(&schedule.tenant, &schedule.schedule_id)
                .await?;
            let response = response::ok(&api::ScheduleDeleted {
                schedule_id: schedule.schedule_id.clone(),
                deleted: true,
            });
            Ok((response, schedule.tenant, format!("deleted {id}")))
        }
        .await,
    )
}

/// Pauses (`pause` true) or resumes a schedule.
pub(super) async fn set_paused(app: &App, ctx: &Ctx, id: &str, pause: bool) -> Audited {
    audited(
        async {
            let found = visible_schedule(app, ctx, id).await?;
            let schedule = if pause {
                app.engine
                    .pause_schedule(&found.tenant, &found.schedule_id, ctx.now)
                    .await?
            } else {
                app.engine.resume_schedule(&found, ctx.now).await?
            };
            let details = if pause {
                format!("paused {id}")
            } else {
                format!("resumed {id}, next tick {}", schedule.next_fire_at)
            };
            Ok((
                response::ok(&api::ScheduleInfo::from(&schedule)),
                schedule.tenant,
                details,
            ))
        }
        .await,
    )
}
