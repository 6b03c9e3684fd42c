//! Writing the audit log: an [`AuditNote`] is what one audited request did; [`App::audit`]
//! appends it under the action and resource its route names (under the chain's lock, in the
//! store) and counts it in `admin_actions_total`.

use daef_core::audit::{self, AuditDraft};
use daef_core::metric;
use metrics::counter;

use hyper::Response;

use crate::app::App;
use crate::ctx::Ctx;
use crate::error::ApiResult;
use crate::response::Body;
use crate::route::{Audit, Route};

/// What the audit log keeps of one request, as its handler (or the pipeline, for a refusal)
/// saw it. The action and the resource come from the route ([`Route::audit`],
/// [`Route::audit_resource`]), so a handler cannot file its request under another one.
#[derive(Debug)]
pub(crate) struct AuditNote {
    requested: u64,
    result: &'static str,
    details: String,
    /// The tenant the action concerns when known (a job's); else the request's tenant.
    tenant: Option<String>,
}

impl AuditNote {
    /// A note recorded under the request's tenant.
    pub(crate) fn new(result: &'static str, requested: u64, details: impl Into<String>) -> Self {
        Self {
            requested,
            result,
            details: details.into(),
            tenant: None,
        }
    }

    /// Records the note under `tenant` (the tenant of the job acted on).
    pub(crate) fn for_tenant(self, tenant: &str) -> Self {
        Self {
            tenant: Some(tenant.to_owned()),
            ..self
        }
    }
}

/// An audited handler's answer and what the audit log keeps of it.
pub(crate) type Audited = (ApiResult<Response<Body>>, AuditNote);

impl App {
    /// Writes an audited handler's note and hands its answer on.
    pub(crate) async fn audited(
        &self,
        ctx: &Ctx,
        route: &Route,
        (answer, note): Audited,
    ) -> ApiResult<Response<Body>> {
        self.audit(ctx, route, note).await;
        answer
    }

    /// Appends the audit event of a request to `route` and counts it. A failure to write it is
    /// logged loudly: the action itself has already been decided.
    pub(crate) async fn audit(&self, ctx: &Ctx, route: &Route, note: AuditNote) {
        let action = match route.audit() {
            Audit::Always(action) | Audit::WhenForbidden(action) => action,
            Audit::Never => {
                debug_assert!(false, "{} is never audited", route.template());
                return;
            }
        };
        let tenant = note.tenant.unwrap_or_else(|| ctx.audit_tenant());
        let draft = AuditDraft {
            action: action.to_owned(),
            actor: ctx.principal.id.clone(),
            tenant: tenant.clone(),
            remote_addr: ctx.remote.to_string(),
            resource: route.audit_resource(),
            payload_hash: audit::payload_hash(&ctx.body),
            requested: note.requested,
            result: note.result.to_owned(),
            details: note.details,
        };
        if let Err(err) = self.engine.audit(draft, ctx.now).await {
            tracing::error!(action, result = note.result, error = %err, source = ?std::error::Error::source(&err), "could not append to the audit log");
        }
        counter!(
            metric::ADMIN_ACTIONS_TOTAL,
            "action" => action,
            "actor" => ctx.principal.id.clone(),
            "result" => note.result,
            "tenant" => self.tenant_label(&tenant),
        )
        .increment(1);
    }

    /// Tenant label values are bounded: tenants named by a configured token, and `default`,
    /// keep their name; any other tenant is `other`.
    pub(crate) fn tenant_label(&self, tenant: &str) -> String {
        if tenant == "default" || self.auth.configured_tenants().contains(tenant) {
            tenant.to_owned()
        } else {
            "other".to_owned()
        }
    }
}
