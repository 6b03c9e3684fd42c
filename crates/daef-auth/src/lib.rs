//! DAEF's API-token rules: parsing `DAEF_API_TOKENS` into an [`Authenticator`], turning the
//! token a request presents into a [`Principal`], and deciding what that principal may do
//! ([`Requirement`]s, tenant access, the effective tenant of a submit).
//!
//! This crate must never know HTTP types: callers pass header values as `&str` and map the
//! errors to statuses themselves ([`AuthError`] is a 401, [`AccessError`] a 403,
//! [`TenantError`] a 400, [`ConfigError`] refuses to start). It must never fail open (a
//! malformed token list is an error, not "auth off") and never reveal a token: configured
//! tokens are kept only as blake3 hashes, and no error or `Debug` output contains token text.

pub mod principal;
pub mod scope;
pub mod tenant;
pub mod token;

pub use principal::{AccessError, Principal};
pub use scope::{Requirement, Scope};
pub use tenant::{TENANT_ID_RULE, TenantError, TenantSource, is_valid_tenant_id};
pub use token::{AuthError, Authenticator, ConfigError, EntryProblem};
