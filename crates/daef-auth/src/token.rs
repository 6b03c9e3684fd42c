//! `DAEF_API_TOKENS` parsing and token authentication.

use std::collections::BTreeSet;
use std::fmt;

use crate::principal::Principal;
use crate::scope::{Scope, ScopeProblem};

/// `DAEF_API_TOKENS` is set but unusable; the gateway must refuse to start rather than run
/// with auth off. Messages name the entry (1-based) and never contain token text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is set to an empty or whitespace-only value.
    #[error(
        "DAEF_API_TOKENS is set but empty; list token:scope entries, or unset it to turn auth off"
    )]
    Empty,
    /// One entry is malformed.
    #[error("DAEF_API_TOKENS entry {position}: {problem}")]
    Entry {
        /// 1-based position of the entry in the comma-separated list.
        position: usize,
        /// What is wrong with it.
        problem: EntryProblem,
    },
}

/// What is wrong with one `DAEF_API_TOKENS` entry. Scope text is never echoed: a mistyped
/// separator (`a:operator|b:worker`) would otherwise print token `b` as an unknown scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// Nothing between two commas (or after a trailing comma).
    #[error("entry is empty")]
    EmptyEntry,
    /// No `:` separating the token from its scopes.
    #[error("missing ':' between token and scopes")]
    MissingColon,
    /// Nothing before the first `:`.
    #[error("token is empty")]
    EmptyToken,
    /// Nothing after the first `:`.
    #[error("scope list is empty")]
    EmptyScopeList,
    /// Nothing between two `|` (or around one).
    #[error("scope {scope} is empty")]
    EmptyScope {
        /// 1-based position of the scope in the entry.
        scope: usize,
    },
    /// A scope other than `operator`, `metrics`, `worker` or `tenant:<id>`.
    #[error("scope {scope} is unknown (expected operator, metrics, worker or tenant:<id>)")]
    UnknownScope {
        /// 1-based position of the scope in the entry.
        scope: usize,
    },
    /// `tenant:` followed by an empty or invalid id.
    #[error(
        "scope {scope} has an invalid tenant id (must be {})",
        crate::TENANT_ID_RULE
    )]
    InvalidTenant {
        /// 1-based position of the scope in the entry.
        scope: usize,
    },
    /// The token was already listed by an earlier entry.
    #[error("token repeats the token of entry {first}")]
    DuplicateToken {
        /// 1-based position of the earlier entry.
        first: usize,
    },
}

/// Authentication failed (a 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Neither a `Bearer` Authorization header nor `X-DAEF-Token` carried a token.
    #[error("missing bearer token")]
    MissingToken,
    /// The presented token is not configured.
    #[error("invalid token")]
    InvalidToken,
}

/// A configured token: its hash and who it stands for. Only the hash is kept, so nothing
/// in memory dumps or `Debug` output reveals a token.
#[derive(Clone)]
struct TokenEntry {
    hash: blake3::Hash,
    principal: Principal,
}

impl fmt::Debug for TokenEntry {
    // The full hash stays out: an unsalted hash of a weak token can be brute-forced offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Turns the token a request presents into a [`Principal`].
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// `None` while auth is off.
    tokens: Option<Vec<TokenEntry>>,
    tenants: BTreeSet<String>,
}

impl Authenticator {
    /// Auth off: every request is the [`Principal::anonymous`] principal.
    pub fn disabled() -> Authenticator {
        Authenticator {
            tokens: None,
            tenants: BTreeSet::new(),
        }
    }

    /// Builds from the value of `DAEF_API_TOKENS`: `None` (unset) turns auth off; a set value
    /// must be a valid `token:scope1|scope2,token2:scope` list, else it is an error.
    pub fn from_env_value(value: Option<&str>) -> Result<Authenticator, ConfigError> {
        let Some(value) = value else {
            return Ok(Authenticator::disabled());
        };
        if value.trim().is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut tokens: Vec<TokenEntry> = Vec::new();
        let mut tenants = BTreeSet::new();
        for (index, raw) in value.split(',').enumerate() {
            let position = index + 1;
            let entry = parse_entry(raw)
                .and_then(|(hash, principal)| {
                    // Every earlier entry was accepted, so its index is its position - 1.
                    match tokens.iter().position(|e| e.hash == hash) {
                        Some(first) => Err(EntryProblem::DuplicateToken { first: first + 1 }),
                        None => Ok(TokenEntry { hash, principal }),
                    }
                })
                .map_err(|problem| ConfigError::Entry { position, problem })?;
            tenants.extend(entry.principal.scopes().filter_map(|s| match s {
                Scope::Tenant(id) => Some(id.clone()),
                _ => None,
            }));
            tokens.push(entry);
        }
        Ok(Authenticator {
            tokens: Some(tokens),
            tenants,
        })
    }

    /// Whether tokens are required (`DAEF_API_TOKENS` was set).
    pub fn is_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// Every tenant id named by a configured `tenant:` scope; empty when auth is off. Bounds
    /// metric label values: requests for other tenants are labelled `other`.
    pub fn configured_tenants(&self) -> &BTreeSet<String> {
        &self.tenants
    }

    /// Authenticates a request from its `Authorization` and `X-DAEF-Token` header values. A
    /// `Bearer` Authorization header wins over `X-DAEF-Token`; an Authorization header with
    /// another scheme is ignored. With auth off every request is anonymous.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        x_daef_token: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let Some(tokens) = &self.tokens else {
            return Ok(Principal::anonymous());
        };
        let token = authorization
            .and_then(bearer_token)
            .or_else(|| x_daef_token.map(str::trim).filter(|t| !t.is_empty()))
            .ok_or(AuthError::MissingToken)?;
        let presented = blake3::hash(token.as_bytes());
        // Visit every entry and let blake3::Hash's constant-time == decide, so the time taken
        // does not reveal which entry (or how much of a hash) matched.
        let mut found = None;
        for entry in tokens {
            if entry.hash == presented {
                found = Some(entry);
            }
        }
        found
            .map(|e| e.principal.clone())
            .ok_or(AuthError::InvalidToken)
    }
}

/// The token of an `Authorization: Bearer <t>` value: scheme case-insensitive, then one or
/// more spaces. `None` for another scheme or an empty token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The principal id of a token: `tok-` + the first 8 hex digits of its blake3 hash.
fn principal_id(hash: &blake3::Hash) -> String {
    format!("tok-{}", &hash.to_hex()[..8])
}

/// Parses one comma-separated entry into the hash of its token and its principal.
fn parse_entry(raw: &str) -> Result<(blake3::Hash, Principal), EntryProblem> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err(EntryProblem::EmptyEntry);
    }
    // The first ':' splits, so `tenant:acme` keeps its own ':'.
    let (token, scopes) = entry.split_once(':').ok_or(EntryProblem::MissingColon)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(EntryProblem::EmptyToken);
    }
    let scopes = scopes.trim();
    if scopes.is_empty() {
        return Err(EntryProblem::EmptyScopeList);
    }
    let mut parsed = BTreeSet::new();
    for (index, scope) in scopes.split('|').enumerate() {
        let position = index + 1;
        let scope = scope.trim();
        if scope.is_empty() {
            return Err(EntryProblem::EmptyScope { scope: position });
        }
        parsed.insert(Scope::parse(scope).map_err(|problem| match problem {
            ScopeProblem::Unknown => EntryProblem::UnknownScope { scope: position },
            ScopeProblem::InvalidTenant => EntryProblem::InvalidTenant { scope: position },
        })?);
    }
    let hash = blake3::hash(token.as_bytes());
    Ok((hash, Principal::scoped(principal_id(&hash), parsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(token: &str) -> String {
        format!("tok-{}", &blake3::hash(token.as_bytes()).to_hex()[..8])
    }

    fn scopes_of(principal: &Principal) -> Vec<String> {
        principal.scopes().map(ToString::to_string).collect()
    }

    /// Parses `spec` and checks that each listed token authenticates to its own principal
    /// with exactly `scopes` (sorted).
    #[track_caller]
    fn check_valid(spec: &str, expected: &[(&str, &[&str])]) {
        let auth = Authenticator::from_env_value(Some(spec)).unwrap();
        assert!(auth.is_enabled());
        for (token, scopes) in expected {
            let p = auth
                .authenticate(Some(&format!("Bearer {token}")), None)
                .unwrap();
            assert_eq!(p.id, id_of(token), "{spec:?} {token:?}");
            assert_eq!(scopes_of(&p), *scopes, "{spec:?} {token:?}");
            assert!(!p.is_anonymous());
        }
    }

    #[test]
    fn valid_specs() {
        check_valid("alpha1:operator", &[("alpha1", &["operator"])]);
        check_valid(
            "alpha1:worker|metrics,beta2:tenant:acme",
            &[
                ("alpha1", &["metrics", "worker"]),
                ("beta2", &["tenant:acme"]),
            ],
        );
        check_valid(
            "  alpha1 : tenant:beta | tenant:acme |worker ,\tbeta2:metrics  ",
            &[
                ("alpha1", &["worker", "tenant:acme", "tenant:beta"]),
                ("beta2", &["metrics"]),
            ],
        );
        // Only the first ':' splits; a repeated scope is harmless.
        check_valid(
            "alpha1:tenant:a:b|tenant:a:b",
            &[("alpha1", &["tenant:a:b"])],
        );
        // A token may itself contain characters other separators use elsewhere.
        check_valid(
            "a-b.c_d=e/f+g:operator",
            &[("a-b.c_d=e/f+g", &["operator"])],
        );
    }

    /// `spec` must be rejected with exactly `message`, which must not contain any token text.
    #[track_caller]
    fn check_invalid(spec: &str, tokens: &[&str], message: &str) {
        let err = Authenticator::from_env_value(Some(spec)).unwrap_err();
        let shown = err.to_string();
        assert_eq!(shown, message, "{spec:?}");
        let debug = format!("{err:?}");
        for token in tokens {
            assert!(!shown.contains(token), "{shown:?} leaks {token:?}");
            assert!(!debug.contains(token), "{debug:?} leaks {token:?}");
        }
    }

    #[test]
    fn malformed_specs_are_errors_without_token_text() {
        let empty = "DAEF_API_TOKENS is set but empty; list token:scope entries, or unset it to turn auth off";
        check_invalid("", &[], empty);
        check_invalid(" \t ", &[], empty);
        check_invalid(
            "SeCrEt1",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 1: missing ':' between token and scopes",
        );
        check_invalid(
            "SeCrEt1:operator, SeCrEt2 ",
            &["SeCrEt1", "SeCrEt2"],
            "DAEF_API_TOKENS entry 2: missing ':' between token and scopes",
        );
        check_invalid(" :operator", &[], "DAEF_API_TOKENS entry 1: token is empty");
        check_invalid(
            "SeCrEt1:",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 1: scope list is empty",
        );
        check_invalid(
            "SeCrEt1:  ",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 1: scope list is empty",
        );
        check_invalid(
            "SeCrEt1:operator|",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 1: scope 2 is empty",
        );
        check_invalid(
            "SeCrEt1:worker| |metrics",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 1: scope 2 is empty",
        );
        let unknown = |n: usize, s: usize| {
            format!(
                "DAEF_API_TOKENS entry {n}: scope {s} is unknown \
                 (expected operator, metrics, worker or tenant:<id>)"
            )
        };
        check_invalid("SeCrEt1:admin", &["SeCrEt1"], &unknown(1, 1));
        check_invalid("SeCrEt1:Operator", &["SeCrEt1"], &unknown(1, 1));
        check_invalid("SeCrEt1:tenant", &["SeCrEt1"], &unknown(1, 1));
        // A mistyped separator turns the next token into a "scope"; it must not be echoed.
        check_invalid(
            "SeCrEt1:operator|SeCrEt2:worker",
            &["SeCrEt1", "SeCrEt2"],
            &unknown(1, 2),
        );
        // Token and scope swapped: the secret lands in the scope position.
        check_invalid("ok1:operator,worker:SeCrEt2", &["SeCrEt2"], &unknown(2, 1));
        let invalid_tenant = |s: usize| {
            format!(
                "DAEF_API_TOKENS entry 1: scope {s} has an invalid tenant id \
                 (must be 1-128 characters of [A-Za-z0-9._:-])"
            )
        };
        check_invalid("SeCrEt1:tenant:", &["SeCrEt1"], &invalid_tenant(1));
        check_invalid(
            "SeCrEt1:worker|tenant:acme corp",
            &["SeCrEt1"],
            &invalid_tenant(2),
        );
        check_invalid(
            &format!("SeCrEt1:tenant:{}", "x".repeat(129)),
            &["SeCrEt1"],
            &invalid_tenant(1),
        );
        check_invalid(
            "SeCrEt1:operator,SeCrEt2:worker, SeCrEt1 :metrics",
            &["SeCrEt1", "SeCrEt2"],
            "DAEF_API_TOKENS entry 3: token repeats the token of entry 1",
        );
        check_invalid(
            "SeCrEt1:operator,",
            &["SeCrEt1"],
            "DAEF_API_TOKENS entry 2: entry is empty",
        );
        check_invalid(
            "SeCrEt1:operator,,SeCrEt2:worker",
            &["SeCrEt1", "SeCrEt2"],
            "DAEF_API_TOKENS entry 2: entry is empty",
        );
    }

    #[test]
    fn unset_variable_turns_auth_off() {
        let auth = Authenticator::from_env_value(None).unwrap();
        assert!(!auth.is_enabled());
        assert!(auth.configured_tenants().is_empty());
        for (authorization, x_token) in [
            (None, None),
            (Some("Bearer whatever"), None),
            (None, Some("nope")),
        ] {
            let p = auth.authenticate(authorization, x_token).unwrap();
            assert_eq!(p, Principal::anonymous());
            assert_eq!(p.id, "anonymous");
        }
        assert!(!Authenticator::disabled().is_enabled());
    }

    /// Authenticates against tokens `SeCrEt1` (operator) and `SeCrEt2` (worker); `expected` is
    /// the token that should have been used, or the error.
    #[track_caller]
    fn check_headers(
        authorization: Option<&str>,
        x_token: Option<&str>,
        expected: Result<&str, AuthError>,
    ) {
        let auth = Authenticator::from_env_value(Some("SeCrEt1:operator,SeCrEt2:worker")).unwrap();
        let got = auth.authenticate(authorization, x_token).map(|p| p.id);
        assert_eq!(got, expected.map(id_of), "{authorization:?} {x_token:?}");
    }

    #[test]
    fn header_extraction() {
        use AuthError::{InvalidToken, MissingToken};
        check_headers(Some("Bearer SeCrEt1"), None, Ok("SeCrEt1"));
        check_headers(Some("bearer SeCrEt1"), None, Ok("SeCrEt1"));
        check_headers(Some("BEARER    SeCrEt1"), None, Ok("SeCrEt1"));
        check_headers(Some("  Bearer SeCrEt1  "), None, Ok("SeCrEt1"));
        check_headers(None, Some("SeCrEt2"), Ok("SeCrEt2"));
        check_headers(None, Some(" SeCrEt2 "), Ok("SeCrEt2"));
        // Authorization wins, even when its token is wrong.
        check_headers(Some("Bearer SeCrEt1"), Some("SeCrEt2"), Ok("SeCrEt1"));
        check_headers(Some("Bearer nope"), Some("SeCrEt2"), Err(InvalidToken));
        // Another scheme is not a token at all.
        check_headers(Some("Basic U2VDckV0MQ=="), None, Err(MissingToken));
        check_headers(Some("Basic U2VDckV0MQ=="), Some("SeCrEt2"), Ok("SeCrEt2"));
        check_headers(Some("SeCrEt1"), None, Err(MissingToken));
        check_headers(Some("BearerSeCrEt1"), None, Err(MissingToken));
        check_headers(Some("Bearer"), None, Err(MissingToken));
        check_headers(Some("Bearer    "), Some("SeCrEt2"), Ok("SeCrEt2"));
        check_headers(None, None, Err(MissingToken));
        check_headers(None, Some("  "), Err(MissingToken));
        check_headers(Some(""), Some(""), Err(MissingToken));
        // Unknown tokens, including prefixes and extensions of real ones.
        check_headers(Some("Bearer nope"), None, Err(InvalidToken));
        check_headers(None, Some("nope"), Err(InvalidToken));
        check_headers(Some("Bearer SeCrEt"), None, Err(InvalidToken));
        check_headers(Some("Bearer SeCrEt1x"), None, Err(InvalidToken));
        check_headers(Some("Bearer secret1"), None, Err(InvalidToken));
    }

    #[test]
    fn auth_error_messages() {
        assert_eq!(AuthError::MissingToken.to_string(), "missing bearer token");
        assert_eq!(AuthError::InvalidToken.to_string(), "invalid token");
    }

    #[test]
    fn every_entry_is_reachable_through_the_full_scan() {
        let tokens: Vec<String> = (0..50).map(|i| format!("token-{i}")).collect();
        let spec: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{t}:tenant:t{i}"))
            .collect();
        let auth = Authenticator::from_env_value(Some(&spec.join(","))).unwrap();
        for (i, token) in tokens.iter().enumerate() {
            let p = auth.authenticate(None, Some(token)).unwrap();
            assert_eq!(p.id, id_of(token));
            assert_eq!(p.single_tenant(), Some(format!("t{i}").as_str()));
        }
        assert_eq!(
            auth.authenticate(None, Some("token-50")),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn principal_ids_come_from_the_token_hash() {
        let auth = Authenticator::from_env_value(Some("alpha:operator,beta:operator")).unwrap();
        for token in ["alpha", "beta"] {
            let p = auth.authenticate(None, Some(token)).unwrap();
            let hex = blake3::hash(token.as_bytes()).to_hex();
            assert_eq!(p.id, format!("tok-{}", &hex[..8]));
            assert_eq!(p.id.len(), 12);
        }
    }

    #[test]
    fn configured_tenants_collects_every_tenant_scope() {
        let auth = Authenticator::from_env_value(Some(
            "a1:tenant:acme|tenant:beta,b2:worker|tenant:acme,c3:operator,d4:tenant:zeta",
        ))
        .unwrap();
        let tenants: Vec<&str> = auth
            .configured_tenants()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(tenants, ["acme", "beta", "zeta"]);
        let none = Authenticator::from_env_value(Some("a1:operator|metrics")).unwrap();
        assert!(none.configured_tenants().is_empty());
    }

    #[test]
    fn debug_output_never_shows_a_token_or_its_hash() {
        let auth = Authenticator::from_env_value(Some("SeCrEt1:operator|tenant:acme")).unwrap();
        let principal = auth.authenticate(Some("Bearer SeCrEt1"), None).unwrap();
        let full_hash = blake3::hash(b"SeCrEt1").to_hex().to_string();
        for shown in [
            format!("{auth:?}"),
            format!("{auth:#?}"),
            format!("{principal:?}"),
        ] {
            assert!(!shown.contains("SeCrEt1"), "{shown}");
            assert!(!shown.contains(&full_hash), "{shown}");
            assert!(shown.contains(&principal.id), "{shown}");
        }
    }
}
