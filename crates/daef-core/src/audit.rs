//! The audit log's hash chain (DESIGN.md §6).
//!
//! `event_hash` is blake3 over the canonical JSON of the event exactly as the API prints it,
//! minus `event_hash` itself, so anyone holding an export can re-verify it offline with nothing
//! but a JSON library and blake3.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;

/// Audited actions.
pub mod action {
    /// `GET /v1/admin/queue/dead-letter`.
    pub const DEAD_LETTER_LIST: &str = "dead_letter_list";
    /// `POST /v1/admin/queue/dead-letter`.
    pub const DEAD_LETTER_REQUEUE: &str = "dead_letter_requeue";
    /// `POST /v1/admin/queue/dead-letter/discard`.
    pub const DEAD_LETTER_DISCARD: &str = "dead_letter_discard";
    /// A forbidden read of the audit log.
    pub const AUDIT_READ: &str = "audit_read";
    /// `DELETE /v1/jobs/{id}`.
    pub const JOB_CANCEL: &str = "job_cancel";
    /// `POST /v1/schedules`.
    pub const SCHEDULE_CREATE: &str = "schedule_create";
    /// `DELETE /v1/schedules/{id}`.
    pub const SCHEDULE_DELETE: &str = "schedule_delete";
    /// `POST /v1/schedules/{id}/pause`.
    pub const SCHEDULE_PAUSE: &str = "schedule_pause";
    /// `POST /v1/schedules/{id}/resume`.
    pub const SCHEDULE_RESUME: &str = "schedule_resume";
}

/// Audited results.
pub mod result {
    /// The action succeeded.
    pub const OK: &str = "ok";
    /// A dry run: nothing changed.
    pub const DRY_RUN: &str = "dry_run";
    /// The request was invalid (400).
    pub const REJECTED: &str = "rejected";
    /// The requeue rate limit refused it (429).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A backend failed (5xx).
    pub const ERROR: &str = "error";
    /// The principal lacked the scope (403).
    pub const FORBIDDEN: &str = "forbidden";
    /// Nothing to do (a cancel of a finished job).
    pub const NOOP: &str = "noop";
}

/// One entry of the audit log, as stored and as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 1, 2, 3, … without gaps.
    pub id: u64,
    /// When it was appended.
    pub created_at: Timestamp,
    /// What was done (see [`action`]).
    pub action: String,
    /// The principal id (`tok-…` or `anonymous`).
    pub actor: String,
    /// The tenant the request acted for.
    pub tenant: String,
    /// The client's address.
    pub remote_addr: String,
    /// What the action touched.
    pub resource: String,
    /// blake3 of the canonical JSON of the request body, `""` when there was none.
    pub payload_hash: String,
    /// How many items the request asked for.
    pub requested: u64,
    /// How it ended (see [`result`]).
    pub result: String,
    /// Why, in words.
    pub details: String,
    /// The previous event's `event_hash` (`""` for the first).
    pub prev_hash: String,
    /// blake3 of this event's canonical JSON without `event_hash`.
    pub event_hash: String,
}

/// An event before the store gives it its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// See [`AuditEvent::action`].
    pub action: String,
    /// See [`AuditEvent::actor`].
    pub actor: String,
    /// See [`AuditEvent::tenant`].
    pub tenant: String,
    /// See [`AuditEvent::remote_addr`].
    pub remote_addr: String,
    /// See [`AuditEvent::resource`].
    pub resource: String,
    /// See [`AuditEvent::payload_hash`].
    pub payload_hash: String,
    /// See [`AuditEvent::requested`].
    pub requested: u64,
    /// See [`AuditEvent::result`].
    pub result: String,
    /// See [`AuditEvent::details`].
    pub details: String,
}

impl AuditDraft {
    /// Links the draft into the chain after `prev_hash` as event `id`, and hashes it.
    pub fn seal(self, id: u64, created_at: Timestamp, prev_hash: String) -> AuditEvent {
        let mut event = AuditEvent {
            id,
            created_at,
            action: self.action,
            actor: self.actor,
            tenant: self.tenant,
            remote_addr: self.remote_addr,
            resource: self.resource,
            payload_hash: self.payload_hash,
            requested: self.requested,
            result: self.result,
            details: self.details,
            prev_hash,
            event_hash: String::new(),
        };
        event.event_hash = event_hash(&event);
        event
    }
}

/// The hash an event should carry: blake3 of its canonical JSON without `event_hash`.
pub fn event_hash(event: &AuditEvent) -> String {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("event_hash");
    }
    blake3::hash(canonical_json(&value).as_bytes())
        .to_hex()
        .to_string()
}

/// `payload_hash` of a request body: blake3 of the canonical JSON of the body as parsed (unknown
/// fields included), or `""` when the body is empty or not JSON.
pub fn payload_hash(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return String::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => blake3::hash(canonical_json(&value).as_bytes())
            .to_hex()
            .to_string(),
        Err(_) => String::new(),
    }
}

/// Canonical JSON: object keys sorted by byte order, no whitespace, numbers and strings printed
/// as serde_json prints them. Sorting here (rather than relying on serde_json's map type) keeps
/// the hash stable whatever features other crates turn on.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The result of checking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// True when every event links to the one before and hashes to its `event_hash`.
    pub ok: bool,
    /// Events examined (up to and including the first bad one).
    pub checked: u64,
    /// `event_hash` of the last good event (`""` when the log is empty).
    pub head_hash: String,
    /// The first event whose id, link or hash is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_id: Option<u64>,
}

/// Checks events one at a time, in id order, so a long log is verified page by page.
#[derive(Clone, Debug, Default)]
pub struct ChainVerifier {
    checked: u64,
    last_id: u64,
    head_hash: String,
    first_bad_id: Option<u64>,
}

impl ChainVerifier {
    /// A verifier expecting event 1 next.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event. Returns false once a bad event was found (later events are not
    /// examined: the chain is broken from there on).
    pub fn push(&mut self, event: &AuditEvent) -> bool {
        if self.first_bad_id.is_some() {
            return false;
        }
        self.checked += 1;
        let linked = event.id == self.last_id + 1 && event.prev_hash == self.head_hash;
        if !linked || event_hash(event) != event.event_hash {
            // A gap reports the first id that is missing, i.e. where the chain breaks.
            self.first_bad_id = Some(if event.id > self.last_id + 1 {
                self.last_id + 1
            } else {
                event.id
            });
            return false;
        }
        self.last_id = event.id;
        self.head_hash = event.event_hash.clone();
        true
    }

    /// Whether a bad event was found.
    pub fn is_broken(&self) -> bool {
        self.first_bad_id.is_some()
    }

    /// The verdict.
    pub fn finish(self) -> Verification {
        Verification {
            ok: self.first_bad_id.is_none(),
            checked: self.checked,
            head_hash: self.head_hash,
            first_bad_id: self.first_bad_id,
        }
    }
}

/// Verifies a whole chain held in memory.
pub fn verify<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Verification {
    let mut verifier = ChainVerifier::new();
    for event in events {
        if !verifier.push(event) {
            break;
        }
    }
    verifier.finish()
}

/// The CSV export of DESIGN.md §6 (RFC 4180, CRLF line ends), one row per event in the order
/// given.
pub fn to_csv(events: &[AuditEvent]) -> String {
    let mut out = String::from(
        "id,created_at,action,actor,tenant,remote_addr,resource,payload_hash,prev_hash,event_hash,requested,result,details\r\n",
    );
    for e in events {
        let fields = [
            e.id.to_string(),
            e.created_at.to_string(),
            e.action.clone(),
            e.actor.clone(),
            e.tenant.clone(),
            e.remote_addr.clone(),
            e.resource.clone(),
            e.payload_hash.clone(),
            e.prev_hash.clone(),
            e.event_hash.clone(),
            e.requested.to_string(),
            e.result.clone(),
            e.details.clone(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(i: u64) -> AuditDraft {
        AuditDraft {
            action: action::DEAD_LETTER_REQUEUE.into(),
            actor: format!("tok-{i:08x}"),
            tenant: "default".into(),
            remote_addr: "127.0.0.1:5000".into(),
            resource: "/v1/admin/queue/dead-letter".into(),
            payload_hash: payload_hash(br#"{"tasks":[]}"#),
            requested: i,
            result: result::OK.into(),
            details: format!("requeued {i} \"quoted\" \u{e9}"),
        }
    }

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = Vec::new();
        for i in 1..=n {
            let prev = events
                .last()
                .map(|e| e.event_hash.clone())
                .unwrap_or_default();
            let at = Timestamp::parse_rfc3339("2026-11-26T10:30:00.123456Z").unwrap();
            events.push(draft(i).seal(i, at, prev));
        }
        events
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [1, {"z": 1, "a": "x"}], "a": null, "é": 1.5, "B": true }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"B":true,"a":null,"b":[1,{"a":"x","z":1}],"é":1.5}"#
        );
    }

    #[test]
    fn payload_hash_of_no_body_or_non_json_is_empty() {
        assert_eq!(payload_hash(b""), "");
        assert_eq!(payload_hash(b"  \n"), "");
        assert_eq!(payload_hash(b"not json"), "");
        assert_eq!(
            payload_hash(br#"{"b":1,"a":2}"#),
            payload_hash(br#"{ "a" : 2, "b" : 1 }"#)
        );
        assert_eq!(payload_hash(br#"{"a":2}"#).len(), 64);
    }

    #[test]
    fn event_hash_is_blake3_of_the_printed_event_without_its_hash() {
        let event = &chain(1)[0];
        let mut printed = serde_json::to_value(event).unwrap();
        printed.as_object_mut().unwrap().remove("event_hash");
        let text = canonical_json(&printed);
        assert!(text.starts_with(r#"{"action":"dead_letter_requeue","actor":"tok-00000001","created_at":"2026-11-26T10:30:00.123456Z","details":"#));
        assert_eq!(
            event.event_hash,
            blake3::hash(text.as_bytes()).to_hex().to_string()
        );
        assert_eq!(event.prev_hash, "");
    }

    #[test]
    fn intact_chain_verifies() {
        let events = chain(5);
        let v = verify(&events);
        assert_eq!(
            v,
            Verification {
                ok: true,
                checked: 5,
                head_hash: events[4].event_hash.clone(),
                first_bad_id: None
            }
        );
        assert_eq!(
            verify(&[]),
            Verification {
                ok: true,
                checked: 0,
                head_hash: String::new(),
                first_bad_id: None
            }
        );
    }

    #[test]
    fn changing_any_field_of_any_event_names_that_event() {
        let tamper: [fn(&mut AuditEvent); 13] = [
            |e| e.id += 100,
            |e| e.created_at = e.created_at.plus(std::time::Duration::from_micros(1)),
            |e| e.action.push('x'),
            |e| e.actor.push('x'),
            |e| e.tenant.push('x'),
            |e| e.remote_addr.push('x'),
            |e| e.resource.push('x'),
            |e| e.payload_hash.push('x'),
            |e| e.requested += 1,
            |e| e.result.push('x'),
            |e| e.details.push('x'),
            |e| e.prev_hash.push('x'),
            |e| e.event_hash.replace_range(0..1, "z"),
        ];
        for position in 0..4 {
            for (field, change) in tamper.iter().enumerate() {
                let mut events = chain(4);
                change(&mut events[position]);
                let v = verify(&events);
                assert!(!v.ok, "field {field} of event {position}");
                assert_eq!(
                    v.first_bad_id,
                    Some(position as u64 + 1),
                    "field {field} of event {position}"
                );
            }
        }
    }

    #[test]
    fn a_deleted_event_is_reported_where_the_gap_starts() {
        let mut events = chain(4);
        events.remove(1);
        assert_eq!(verify(&events).first_bad_id, Some(2));
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
