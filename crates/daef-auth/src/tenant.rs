//! Tenant ids: the one charset rule shared by `tenant:<id>` scopes, submitted tenants and the
//! `X-DAEF-Tenant` header.

use std::fmt;

/// The tenant id rule, worded for error messages.
pub const TENANT_ID_RULE: &str = "1-128 characters of [A-Za-z0-9._:-]";

/// Longest tenant id, in bytes (the charset is ASCII, so bytes are characters).
const MAX_TENANT_LEN: usize = 128;

/// Whether `id` is a valid tenant id: 1-128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_tenant_id(id: &str) -> bool {
    (1..=MAX_TENANT_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Where a request named its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantSource {
    /// The `tenant` field of the request body.
    Body,
    /// The `X-DAEF-Tenant` header.
    Header,
}

impl fmt::Display for TenantSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TenantSource::Body => "tenant",
            TenantSource::Header => "X-DAEF-Tenant",
        })
    }
}

/// A tenant named by the request breaks [`TENANT_ID_RULE`] (a 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin} must be {TENANT_ID_RULE}")]
pub struct TenantError {
    /// Which part of the request named the tenant.
    pub origin: TenantSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(id: &str, valid: bool) {
        assert_eq!(is_valid_tenant_id(id), valid, "{id:?}");
    }

    #[test]
    fn tenant_id_charset_and_length() {
        for id in ["a", "acme", "Acme-1", "a.b_c:d-e", "0", &"x".repeat(128)] {
            check(id, true);
        }
        let too_long = "x".repeat(129);
        for id in [
            "",
            " ",
            "acme corp",
            "a/b",
            "é",
            "a\n",
            "tenant*",
            &too_long,
        ] {
            check(id, false);
        }
    }

    #[test]
    fn error_names_the_source() {
        let body = TenantError {
            origin: TenantSource::Body,
        };
        assert_eq!(
            body.to_string(),
            "tenant must be 1-128 characters of [A-Za-z0-9._:-]"
        );
        let header = TenantError {
            origin: TenantSource::Header,
        };
        assert_eq!(
            header.to_string(),
            "X-DAEF-Tenant must be 1-128 characters of [A-Za-z0-9._:-]"
        );
    }
}
