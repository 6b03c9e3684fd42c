//! The whole audit log through the API, and its verification on this side of the wire with
//! [`daef_core::audit`] — the code that *is* the DESIGN.md §6 definition — so a client trusts
//! the chain because it recomputed it, not because the gateway said so.

use std::collections::BTreeMap;

pub use daef_core::audit::to_csv;
use daef_core::audit::{AuditEvent, ChainVerifier, Verification};
use serde::Serialize;

use crate::client::{AUDIT_PAGE_MAX, Client};
use crate::error::Result;
use crate::model::{AuditFilter, ServerVerification};

/// Every event matching `filter`, oldest first. The filter's `limit` sets the page size
/// (default and most: [`AUDIT_PAGE_MAX`]); its `offset` is ignored.
///
/// The API pages newest first by offset, so an event appended while we page pushes older
/// events one place further: we may see an event twice (kept once, by id) but never miss one.
pub async fn fetch_all(client: &Client, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
    let mut by_id: BTreeMap<u64, AuditEvent> = BTreeMap::new();
    let page_size = filter
        .limit
        .filter(|n| *n > 0)
        .unwrap_or(AUDIT_PAGE_MAX)
        .min(AUDIT_PAGE_MAX);
    let mut offset = 0;
    loop {
        let page_filter = AuditFilter {
            limit: Some(page_size),
            offset: Some(offset),
            ..filter.clone()
        };
        let page = client.audit(&page_filter).await?;
        let returned = page.events.len() as u64;
        let reached_first = page.events.iter().any(|e| e.id <= 1);
        for event in page.events {
            by_id.entry(event.id).or_insert(event);
        }
        if returned < page_size || reached_first {
            break;
        }
        offset += returned;
    }
    Ok(by_id.into_values().collect())
}

/// The outcome of [`check_chain`]: the verdict computed here, the gateway's, and whether they
/// agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// The chain recomputed from the API output.
    pub local: Verification,
    /// The gateway's `GET /v1/admin/audit/verify`.
    pub server: ServerVerification,
    /// The first event the local check rejected, as the API returned it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_event: Option<AuditEvent>,
}

impl ChainCheck {
    /// True when both sides found the chain intact.
    pub fn ok(&self) -> bool {
        self.local.ok && self.server.ok
    }

    /// Whether the two verdicts agree. Events appended between our read and the gateway's
    /// check can change the counts, so only the verdict and the first bad id are compared.
    pub fn agree(&self) -> bool {
        self.local.ok == self.server.ok && self.local.first_bad_id == self.server.first_bad_id
    }
}

/// Verifies events already in id order (as [`fetch_all`] returns them).
pub fn verify_events(events: &[AuditEvent]) -> (Verification, Option<AuditEvent>) {
    let mut verifier = ChainVerifier::new();
    for event in events {
        if !verifier.push(event) {
            break;
        }
    }
    let verdict = verifier.finish();
    let bad = verdict
        .first_bad_id
        .and_then(|id| events.iter().find(|e| e.id == id).cloned());
    (verdict, bad)
}

/// Reads the whole log, verifies it here, and asks the gateway for its own verdict.
pub async fn check_chain(client: &Client) -> Result<ChainCheck> {
    let events = fetch_all(client, &AuditFilter::default()).await?;
    let (local, first_bad_event) = verify_events(&events);
    let server = client.verify_audit().await?;
    Ok(ChainCheck {
        local,
        server,
        first_bad_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use daef_core::Timestamp;
    use daef_core::audit::AuditDraft;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = Vec::new();
        for i in 1..=n {
            let prev = events
                .last()
                .map(|e| e.event_hash.clone())
                .unwrap_or_default();
            let draft = AuditDraft {
                action: "job_cancel".into(),
                actor: "anonymous".into(),
                tenant: "default".into(),
                remote_addr: "127.0.0.1:1".into(),
                resource: format!("/v1/jobs/job-{i}"),
                payload_hash: String::new(),
                requested: 1,
                result: "ok".into(),
                details: "canceled, \"twice\"".into(),
            };
            events.push(draft.seal(i, Timestamp::from_unix_micros(i as i64), prev));
        }
        events
    }

    #[test]
    fn verify_names_the_first_bad_event() {
        let mut events = chain(4);
        assert!(verify_events(&events).0.ok);
        events[2].details = "tampered".into();
        let (verdict, bad) = verify_events(&events);
        assert_eq!(verdict.first_bad_id, Some(3));
        assert_eq!(bad.map(|e| e.details), Some("tampered".to_owned()));
    }

    #[test]
    fn csv_has_the_design_columns_and_quotes_only_what_needs_it() {
        let csv = to_csv(&chain(1));
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "id,created_at,action,actor,tenant,remote_addr,resource,payload_hash,prev_hash,event_hash,requested,result,details"
            )
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("1,1970-01-01T00:00:00.000001Z,job_cancel,anonymous,default,127.0.0.1:1,/v1/jobs/job-1,,,"));
        assert!(row.ends_with(",1,ok,\"canceled, \"\"twice\"\"\""), "{row}");
    }
}
