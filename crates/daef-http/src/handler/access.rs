//! Which jobs, schedules and tenants a request may see.

use daef_core::Resource;
use daef_core::model::{Job, JobId};

use crate::app::App;
use crate::ctx::Ctx;
use crate::error::ApiResult;

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

/// The tenants a request covers: the one it names (a `tenant` filter, an `X-DAEF-Tenant`
/// header) if the principal may act for it (403 otherwise), else every tenant the principal
/// sees (`None`: all of them, for an operator).
pub(crate) fn tenants_in_scope(ctx: &Ctx, named: Option<&str>) -> ApiResult<Option<Vec<String>>> {
    match named {
        Some(tenant) => {
            ctx.principal.check_tenant(tenant)?;
            Ok(Some(vec![tenant.to_owned()]))
        }
        None => Ok(ctx.principal.tenant_filter()),
    }
}
