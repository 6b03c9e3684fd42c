//! Who made a request ([`Principal`]) and what it may do.

use std::collections::BTreeSet;

use crate::scope::{Requirement, Scope};
use crate::tenant::{TenantError, TenantSource, is_valid_tenant_id};

/// The tenant of a submit that names none and whose token does not pin one.
const DEFAULT_TENANT: &str = "default";

/// The id of the principal when auth is off.
const ANONYMOUS_ID: &str = "anonymous";

/// An authorization refusal (a 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The principal holds none of the requirements, listed in the order the route gave them.
    #[error("missing required scope (one of: {})", join(one_of))]
    MissingScope {
        /// What would have been accepted.
        one_of: Vec<Requirement>,
    },
    /// The resource belongs to a tenant the principal has no scope for.
    #[error("tenant access denied")]
    TenantDenied,
}

fn join(requirements: &[Requirement]) -> String {
    requirements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Audit actor and metric label: `tok-` + the first 8 hex digits of blake3(token), or
    /// `anonymous` when auth is off. Never the token itself.
    pub id: String,
    access: Access,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Access {
    /// Auth is off: every check passes.
    Unrestricted,
    /// What the token's `DAEF_API_TOKENS` entry grants.
    Scoped(BTreeSet<Scope>),
}

impl Principal {
    /// The principal of every request while auth is off: id `anonymous`, allowed everything.
    pub fn anonymous() -> Principal {
        Principal {
            id: ANONYMOUS_ID.to_owned(),
            access: Access::Unrestricted,
        }
    }

    pub(crate) fn scoped(id: String, scopes: BTreeSet<Scope>) -> Principal {
        Principal {
            id,
            access: Access::Scoped(scopes),
        }
    }

    /// Whether this is the auth-off principal.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.access, Access::Unrestricted)
    }

    /// The scopes the token was configured with, sorted; empty when auth is off (the anonymous
    /// principal needs none).
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        let scopes = match &self.access {
            Access::Unrestricted => None,
            Access::Scoped(scopes) => Some(scopes),
        };
        scopes.into_iter().flatten()
    }

    /// Whether the principal is granted `scope`: it holds it, holds `operator` (which implies
    /// every scope), or auth is off.
    pub fn has(&self, scope: &Scope) -> bool {
        match &self.access {
            Access::Unrestricted => true,
            Access::Scoped(scopes) => scopes.contains(&Scope::Operator) || scopes.contains(scope),
        }
    }

    /// Whether the principal has operator power: the `operator` scope, or auth off.
    pub fn is_operator(&self) -> bool {
        self.has(&Scope::Operator)
    }

    fn satisfies(&self, requirement: Requirement) -> bool {
        match requirement {
            Requirement::Operator => self.is_operator(),
            Requirement::Metrics => self.has(&Scope::Metrics),
            Requirement::Worker => self.has(&Scope::Worker),
            Requirement::Tenant => self.is_operator() || self.tenants().next().is_some(),
        }
    }

    /// Succeeds when the principal satisfies any of `one_of`. `operator` satisfies every
    /// requirement, any `tenant:<id>` scope satisfies [`Requirement::Tenant`], and with auth off
    /// everything passes. An empty list fails for a token (fail closed).
    pub fn require(&self, one_of: &[Requirement]) -> Result<(), AccessError> {
        if self.is_anonymous() || one_of.iter().any(|r| self.satisfies(*r)) {
            Ok(())
        } else {
            Err(AccessError::MissingScope {
                one_of: one_of.to_vec(),
            })
        }
    }

    /// Whether the principal may see and act on jobs of `tenant`: operator or auth off, or it
    /// holds `tenant:<tenant>`.
    pub fn can_access_tenant(&self, tenant: &str) -> bool {
        match &self.access {
            Access::Unrestricted => true,
            Access::Scoped(scopes) => {
                scopes.contains(&Scope::Operator) || self.tenants().any(|t| t == tenant)
            }
        }
    }

    /// [`can_access_tenant`](Self::can_access_tenant) as a `Result`, for `?`.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), AccessError> {
        if self.can_access_tenant(tenant) {
            Ok(())
        } else {
            Err(AccessError::TenantDenied)
        }
    }

    /// Tenant ids of the principal's `tenant:` scopes, sorted (the scope set is ordered).
    fn tenants(&self) -> impl Iterator<Item = &str> {
        self.scopes().filter_map(|s| match s {
            Scope::Tenant(id) => Some(id.as_str()),
            _ => None,
        })
    }

    /// The tenants a listing may show: `None` when the principal sees every tenant (operator or
    /// auth off), else its own tenant ids, sorted; empty for a token without tenant scopes.
    pub fn tenant_filter(&self) -> Option<Vec<String>> {
        if self.is_operator() {
            None
        } else {
            Some(self.tenants().map(str::to_owned).collect())
        }
    }

    /// The tenant id when the principal holds exactly one `tenant:` scope.
    pub fn single_tenant(&self) -> Option<&str> {
        let mut tenants = self.tenants();
        match (tenants.next(), tenants.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The tenant a submit acts for: the body's `tenant`, else the `X-DAEF-Tenant` header, else
    /// the token's single tenant scope, else `default`. A tenant named by the request must
    /// follow [`TENANT_ID_RULE`](crate::TENANT_ID_RULE) (the error names which one broke it).
    /// Whether the principal may act for the result is a separate
    /// [`check_tenant`](Self::check_tenant).
    pub fn effective_tenant(
        &self,
        body_tenant: Option<&str>,
        header_tenant: Option<&str>,
    ) -> Result<String, TenantError> {
        let named = body_tenant
            .map(|t| (t, TenantSource::Body))
            .or(header_tenant.map(|t| (t, TenantSource::Header)));
        match named {
            Some((tenant, _)) if is_valid_tenant_id(tenant) => Ok(tenant.to_owned()),
            Some((_, origin)) => Err(TenantError { origin }),
            // Scope ids were validated when the token list was parsed.
            None => Ok(self.single_tenant().unwrap_or(DEFAULT_TENANT).to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Authenticator;
    use Requirement::{Metrics, Operator, Tenant, Worker};

    /// The principal of a token with `scopes` (`|`-separated), or the auth-off principal.
    fn who(scopes: Option<&str>) -> Principal {
        let spec = scopes.map(|s| format!("tkn:{s}"));
        Authenticator::from_env_value(spec.as_deref())
            .unwrap()
            .authenticate(Some("Bearer tkn"), None)
            .unwrap()
    }

    #[track_caller]
    fn check_require(scopes: Option<&str>, one_of: &[Requirement], expected: Result<(), &str>) {
        let got = who(scopes).require(one_of).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map_err(str::to_owned),
            "{scopes:?} {one_of:?}"
        );
    }

    #[test]
    fn require_outcomes_and_messages() {
        let all = [Operator, Metrics, Worker, Tenant];
        // Operator and auth off satisfy everything, alone or in any list.
        for r in all {
            check_require(Some("operator"), &[r], Ok(()));
            check_require(None, &[r], Ok(()));
        }
        check_require(None, &[], Ok(()));
        check_require(Some("metrics"), &[Metrics], Ok(()));
        check_require(Some("metrics"), &[Operator, Metrics], Ok(()));
        check_require(Some("worker"), &[Worker, Operator], Ok(()));
        check_require(Some("tenant:acme"), &[Tenant, Operator], Ok(()));
        check_require(Some("tenant:beta|worker"), &[Tenant], Ok(()));
        check_require(
            Some("metrics"),
            &[Operator],
            Err("missing required scope (one of: operator)"),
        );
        check_require(
            Some("worker"),
            &[Operator, Tenant],
            Err("missing required scope (one of: operator, tenant:<id>)"),
        );
        check_require(
            Some("tenant:acme"),
            &[Metrics, Operator],
            Err("missing required scope (one of: metrics, operator)"),
        );
        check_require(
            Some("tenant:acme|metrics"),
            &[Worker, Operator],
            Err("missing required scope (one of: worker, operator)"),
        );
        check_require(
            Some("metrics|worker"),
            &[Tenant, Operator],
            Err("missing required scope (one of: tenant:<id>, operator)"),
        );
        // An empty list is never satisfied by a token: fail closed.
        check_require(
            Some("metrics"),
            &[],
            Err("missing required scope (one of: )"),
        );
    }

    #[test]
    fn has_and_is_operator() {
        let acme = Scope::Tenant("acme".into());
        let op = who(Some("operator"));
        assert!(op.is_operator() && op.has(&Scope::Worker) && op.has(&acme));
        let anon = who(None);
        assert!(anon.is_anonymous() && anon.is_operator() && anon.has(&acme));
        let tenant = who(Some("tenant:acme|metrics"));
        assert!(!tenant.is_operator() && !tenant.is_anonymous());
        assert!(tenant.has(&acme) && tenant.has(&Scope::Metrics));
        assert!(!tenant.has(&Scope::Worker) && !tenant.has(&Scope::Tenant("beta".into())));
    }

    #[track_caller]
    fn check_tenant_rules(
        scopes: Option<&str>,
        filter: Option<&[&str]>,
        single: Option<&str>,
        allowed: &[&str],
        denied: &[&str],
    ) {
        let p = who(scopes);
        let filter = filter.map(|f| f.iter().map(|t| t.to_string()).collect());
        assert_eq!(p.tenant_filter(), filter, "{scopes:?}");
        assert_eq!(p.single_tenant(), single, "{scopes:?}");
        for t in allowed {
            assert!(p.can_access_tenant(t), "{scopes:?} {t}");
            assert_eq!(p.check_tenant(t), Ok(()));
        }
        for t in denied {
            assert!(!p.can_access_tenant(t), "{scopes:?} {t}");
            assert_eq!(p.check_tenant(t), Err(AccessError::TenantDenied));
        }
    }

    #[test]
    fn tenant_rules() {
        check_tenant_rules(None, None, None, &["acme", "default", "x"], &[]);
        check_tenant_rules(Some("operator"), None, None, &["acme", "default"], &[]);
        // Operator wins over its own tenant scopes for filtering and access.
        check_tenant_rules(
            Some("operator|tenant:acme"),
            None,
            Some("acme"),
            &["beta"],
            &[],
        );
        check_tenant_rules(
            Some("tenant:acme"),
            Some(&["acme"]),
            Some("acme"),
            &["acme"],
            &["beta", "default", "Acme", "acm", ""],
        );
        check_tenant_rules(
            Some("tenant:zeta|worker|tenant:acme"),
            Some(&["acme", "zeta"]),
            None,
            &["acme", "zeta"],
            &["beta"],
        );
        check_tenant_rules(
            Some("worker|metrics"),
            Some(&[]),
            None,
            &[],
            &["acme", "default"],
        );
        assert_eq!(
            AccessError::TenantDenied.to_string(),
            "tenant access denied"
        );
    }

    #[track_caller]
    fn check_effective(
        scopes: Option<&str>,
        body: Option<&str>,
        header: Option<&str>,
        expected: Result<&str, &str>,
    ) {
        let got = who(scopes)
            .effective_tenant(body, header)
            .map_err(|e| e.to_string());
        let expected = expected.map(str::to_owned).map_err(str::to_owned);
        assert_eq!(got, expected, "{scopes:?} {body:?} {header:?}");
    }

    #[test]
    fn effective_tenant_precedence_and_validation() {
        let one = Some("tenant:acme");
        check_effective(one, Some("body"), Some("header"), Ok("body"));
        check_effective(one, None, Some("header"), Ok("header"));
        check_effective(one, None, None, Ok("acme"));
        check_effective(Some("tenant:acme|tenant:beta"), None, None, Ok("default"));
        check_effective(Some("operator"), None, None, Ok("default"));
        check_effective(None, None, None, Ok("default"));
        check_effective(None, Some("a.b_c:d-e"), None, Ok("a.b_c:d-e"));
        let body_err = "tenant must be 1-128 characters of [A-Za-z0-9._:-]";
        let header_err = "X-DAEF-Tenant must be 1-128 characters of [A-Za-z0-9._:-]";
        check_effective(one, Some(""), Some("header"), Err(body_err));
        check_effective(one, Some("acme corp"), None, Err(body_err));
        check_effective(one, Some(&"x".repeat(129)), None, Err(body_err));
        check_effective(one, None, Some("a/b"), Err(header_err));
        check_effective(one, None, Some(""), Err(header_err));
        // A valid body tenant means the header is never looked at.
        check_effective(one, Some("body"), Some("bad header"), Ok("body"));
    }
}
