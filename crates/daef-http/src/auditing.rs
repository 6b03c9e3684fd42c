//! Writing the audit log: [`AuditEntry`] is what one audited request did; [`App::audit`]
//! appends it (under the chain's lock, in the store) and counts it in `admin_actions_total`.

use daef_core::audit::{self, AuditDraft};
use daef_core::metric;
use metrics::counter;

use crate::app::App;
use crate::ctx::Ctx;

/// What one audited request did.
#[derive(Debug)]
pub(crate) struct AuditEntry<'a> {
    action: &'static str,
    resource: &'a str,
    requested: u64,
    result: &'static str,
    details: &'a str,
    /// The tenant the action concerns when known (a job's); else the request's tenant.
    tenant: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    /// An entry recorded under the request's tenant.
    pub(crate) fn new(
        action: &'static str,
        resource: &'a str,
        requested: u64,
        result: &'static str,
        details: &'a str,
    ) -> Self {
        Self {
            action,
            resource,
            requested,
            result,
            details,
            tenant: None,
        }
    }

    /// Records the entry under `tenant` (the tenant of the job acted on).
    pub(crate) fn for_tenant(self, tenant: &'a str) -> Self {
        Self {
            tenant: Some(tenant),
            ..self
        }
    }
}

impl App {
    /// Appends an audit event for an admin or cancel request and counts it. A failure to write
    /// it is logged loudly: the action itself has already been decided.
    pub(crate) async fn audit(&self, ctx: &Ctx, entry: AuditEntry<'_>) {
        let tenant = entry
            .tenant
            .map_or_else(|| ctx.audit_tenant(), str::to_owned);
        let draft = AuditDraft {
            action: entry.action.to_owned(),
            actor: ctx.principal.id.clone(),
            tenant: tenant.clone(),
            remote_addr: ctx.remote.to_string(),
            resource: entry.resource.to_owned(),
            payload_hash: audit::payload_hash(&ctx.body),
            requested: entry.requested,
            result: entry.result.to_owned(),
            details: entry.details.to_owned(),
        };
        if let Err(err) = self.engine.audit(draft, ctx.now).await {
            tracing::error!(action = entry.action, result = entry.result, error = %err, source = ?std::error::Error::source(&err), "could not append to the audit log");
        }
        counter!(
            metric::ADMIN_ACTIONS_TOTAL,
            "action" => entry.action,
            "actor" => ctx.principal.id.clone(),
            "result" => entry.result,
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
