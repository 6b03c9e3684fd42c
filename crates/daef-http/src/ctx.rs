//! [`Ctx`]: what a handler knows about the request it serves.

use std::net::SocketAddr;

use bytes::Bytes;
use daef_auth::{Principal, TenantError, TenantSource, is_valid_tenant_id};
use daef_core::Timestamp;
use hyper::header::HeaderMap;

use crate::error::ApiResult;
use crate::json::Query;

/// What a handler knows about the request it serves.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) principal: Principal,
    pub(crate) remote: SocketAddr,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Query,
    pub(crate) body: Bytes,
    pub(crate) now: Timestamp,
}

impl Ctx {
    /// A header's value, when it is valid text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-DAEF-Tenant` as sent. A value that is not text at all (invalid UTF-8) is refused
    /// like any other invalid tenant id, never taken as absent.
    pub(crate) fn tenant_header(&self) -> ApiResult<Option<&str>> {
        match self.headers.get("x-daef-tenant") {
            None => Ok(None),
            Some(value) => value.to_str().map(Some).map_err(|_| {
                TenantError {
                    origin: TenantSource::Header,
                }
                .into()
            }),
        }
    }

    /// The tenant an admin or cancel action is recorded under: `X-DAEF-Tenant` when valid and
    /// the principal may act for it, else the token's single tenant, else `default`. A header
    /// naming someone else's tenant is not believed, so no caller can file its actions under
    /// another tenant in the audit log or the metrics.
    pub(crate) fn audit_tenant(&self) -> String {
        let header = self
            .header("x-daef-tenant")
            .filter(|t| is_valid_tenant_id(t) && self.principal.can_access_tenant(t));
        self.principal
            .effective_tenant(None, header)
            .unwrap_or_else(|_| "default".to_owned())
    }
}
