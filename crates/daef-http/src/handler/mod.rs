//! Request handlers, one module per resource. Each parses and validates its input (errors name
//! the field), calls the engine, and shapes the response.

mod access;
mod admin;
mod events;
mod jobs;
mod ops;
mod schedules;
mod workers;

use hyper::Response;

use crate::app::App;
use crate::ctx::Ctx;
use crate::error::ApiResult;
use crate::response::Body;
use crate::route::Route;

pub(crate) async fn dispatch(app: &App, ctx: &Ctx, route: Route) -> ApiResult<Response<Body>> {
    match &route {
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(app).await),
        Route::MetricsJson => Ok(ops::metrics_json(app)),
        Route::MetricsPrometheus => Ok(ops::metrics_prometheus(app)),
        Route::SubmitJob => jobs::submit(app, ctx).await,
        Route::ListJobs => jobs::list(app, ctx).await,
        Route::GetJob(id) => jobs::get(app, ctx, id).await,
        Route::CancelJob(id) => {
            app.audited(ctx, &route, jobs::cancel(app, ctx, id).await)
                .await
        }
        Route::ListTasks(id) => jobs::tasks(app, ctx, id).await,
        Route::JobEvents(id) => events::events(app, ctx, id).await,
        Route::CreateSchedule => {
            app.audited(ctx, &route, schedules::create(app, ctx).await)
                .await
        }
        Route::ListSchedules => schedules::list(app, ctx).await,
        Route::GetSchedule(id) => schedules::get(app, ctx, id).await,
        Route::DeleteSchedule(id) => {
            app.audited(ctx, &route, schedules::delete(app, ctx, id).await)
                .await
        }
        Route::PauseSchedule(id) => {
            app.audited(ctx, &route, schedules::set_paused(app, ctx, id, true).await)
                .await
        }
        Route::ResumeSchedule(id) => {
            app.audited(
                ctx,
                &route,
                schedules::set_paused(app, ctx, id, false).await,
            )
            .await
        }
        Route::ListWorkers => workers::list(app, ctx).await,
        Route::RegisterWorker => workers::register(app, ctx).await,
        Route::Heartbeat(id) => workers::heartbeat(app, ctx, id).await,
        Route::Assignments(id) => workers::assignments(app, ctx, id).await,
        Route::Report => workers::report(app, ctx).await,
        Route::ListDeadLetters => {
            app.audited(ctx, &route, admin::list_dead_letters(app, ctx).await)
                .await
        }
        Route::RequeueDeadLetters => {
            app.audited(ctx, &route, admin::requeue_dead_letters(app, ctx).await)
                .await
        }
        Route::DiscardDeadLetters => {
            app.audited(ctx, &route, admin::discard_dead_letters(app, ctx).await)
                .await
        }
        Route::ListAudit => admin::list_audit(app, ctx).await,
        Route::VerifyAudit => admin::verify_audit(app).await,
    }
}
