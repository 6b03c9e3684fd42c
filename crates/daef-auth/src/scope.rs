//! What a token may do ([`Scope`]) and what a route asks for ([`Requirement`]).

use std::fmt;

use crate::tenant::is_valid_tenant_id;

/// A permission granted to a token in `DAEF_API_TOKENS`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everything, every tenant.
    Operator,
    /// Read the metrics endpoints.
    Metrics,
    /// Register, heartbeat, take assignments and report results.
    Worker,
    /// Submit and read the jobs of one tenant.
    Tenant(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Operator => f.write_str("operator"),
            Scope::Metrics => f.write_str("metrics"),
            Scope::Worker => f.write_str("worker"),
            Scope::Tenant(id) => write!(f, "tenant:{id}"),
        }
    }
}

/// Why a scope string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeProblem {
    Unknown,
    InvalidTenant,
}

impl Scope {
    /// Parses one already-trimmed scope. Names are case-sensitive, as written in the design.
    pub(crate) fn parse(s: &str) -> Result<Scope, ScopeProblem> {
        match s {
            "operator" => Ok(Scope::Operator),
            "metrics" => Ok(Scope::Metrics),
            "worker" => Ok(Scope::Worker),
            _ => match s.strip_prefix("tenant:") {
                Some(id) if is_valid_tenant_id(id) => Ok(Scope::Tenant(id.to_owned())),
                Some(_) => Err(ScopeProblem::InvalidTenant),
                None => Err(ScopeProblem::Unknown),
            },
        }
    }
}

/// A permission a route asks for; a principal passes when it holds any one of those listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// The `operator` scope.
    Operator,
    /// The `metrics` scope.
    Metrics,
    /// The `worker` scope.
    Worker,
    /// Any `tenant:<id>` scope; which tenant is checked separately against the resource.
    Tenant,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Requirement::Operator => "operator",
            Requirement::Metrics => "metrics",
            Requirement::Worker => "worker",
            Requirement::Tenant => "tenant:<id>",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<Scope, ScopeProblem>) {
        let got = Scope::parse(input);
        assert_eq!(got, expected, "{input:?}");
        if let Ok(scope) = got {
            assert_eq!(scope.to_string(), input, "display round-trips");
        }
    }

    #[test]
    fn parse_scopes() {
        check("operator", Ok(Scope::Operator));
        check("metrics", Ok(Scope::Metrics));
        check("worker", Ok(Scope::Worker));
        check("tenant:acme", Ok(Scope::Tenant("acme".into())));
        check("tenant:a:b", Ok(Scope::Tenant("a:b".into())));
        check("Operator", Err(ScopeProblem::Unknown));
        check("admin", Err(ScopeProblem::Unknown));
        check("tenant", Err(ScopeProblem::Unknown));
        check("tenants:acme", Err(ScopeProblem::Unknown));
        check("tenant:", Err(ScopeProblem::InvalidTenant));
        check("tenant:acme corp", Err(ScopeProblem::InvalidTenant));
        check(
            &format!("tenant:{}", "x".repeat(129)),
            Err(ScopeProblem::InvalidTenant),
        );
    }

    #[test]
    fn requirement_display() {
        let shown: Vec<String> = [
            Requirement::Operator,
            Requirement::Metrics,
            Requirement::Worker,
            Requirement::Tenant,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(shown, ["operator", "metrics", "worker", "tenant:<id>"]);
    }
}
