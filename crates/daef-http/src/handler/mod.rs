//! Request handlers, one module per resource. Each parses and validates its input (errors name
//! the field), calls the engine, and shapes the response.

mod admin;
mod events;
mod jobs;
mod ops;
mod view;
mod workers;

use daef_core::Resource;
use daef_core::model::{Job, JobId};
use hyper::Response;

use crate::app::{App, Body, Ctx};
use crate::error::ApiResult;
use crate::route::Route;

pub(crate) async fn dispatch(app: &App, ctx: &Ctx, route: Route) -> ApiResult<Response<Body>> {
    match route {
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(app).await),
        Route::MetricsJson => Ok(ops::metrics_json(app)),
        Route::MetricsPrometheus => Ok(ops::metrics_prometheus(app)),
        Route::SubmitJob => jobs::submit(app, ctx).await,
        Route::ListJobs => jobs::list(app, ctx).await,
        Route::GetJob(id) => jobs::get(app, ctx, &id).await,
        Route::CancelJob(id) => jobs::cancel(app, ctx, &id).await,
        Route::ListTasks(id) => jobs::tasks(app, ctx, &id).await,
        Route::JobEvents(id) => events::events(app, ctx, &id).await,
        Route::RegisterWorker => workers::register(app, ctx).await,
        Route::Heartbeat(id) => workers::heartbeat(app, ctx, &id).await,
        Route::Assignments(id) => workers::assignments(app, ctx, &id).await,
        Route::Report => workers::report(app, ctx).await,
        Route::ListDeadLetters => admin::list_dead_letters(app, ctx).await,
        Route::RequeueDeadLetters => admin::requeue_dead_letters(app, ctx).await,
        Route::ListAudit => admin::list_audit(app, ctx).await,
        Route::VerifyAudit => admin::verify_audit(app).await,
    }
}

/// Loads a job the principal may see. Another tenant's job is answered exactly as an unknown
/// one (404 `job not found`, after the same store read), so a tenant cannot learn which job
/// ids exist (DESIGN.md §4: no existence oracle).
pub(crate) async fn visible_job(app: &App, ctx: &Ctx, id: &JobId) -> ApiResult<Job> {
    let job = app.engine.job(id).await?;
    if ctx.principal.can_access_tenant(&job.tenant) {
        Ok(job)
    } else {
        Err(daef_core::Error::NotFound(Resource::Job).into())
    }
}
