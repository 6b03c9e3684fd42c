//! `/v1/admin/audit` and `/v1/admin/audit/verify`: order, filters, paging, CSV export, and the
//! hash chain re-verified offline from the API's JSON alone, as DESIGN.md §6 defines it.

use std::sync::Arc;

use daef_core::Timestamp;
use daef_http::HttpConfig;
use serde_json::{Value, json};

use crate::fault::FaultyStore;
use crate::harness::{
    ACME, Harness, OP, TOKENS, assert_timestamp, blake3_hex, canonical_json, clock_past,
    expected_payload_hash, first_bad_event, ids, principal_id,
};

const DLQ: &str = "/v1/admin/queue/dead-letter";

/// Waits until the clock has moved past the newest audit event, so events get distinct times.
async fn tick(h: &Harness) {
    if let Some(event) = h.audit().await.first() {
        clock_past(assert_timestamp(&event["created_at"])).await;
    }
}

/// Six events of several actions, actors, tenants and results (ids 1–6).
async fn six_events(h: &Harness) -> String {
    let job = h
        .submit(json!({"type": "chat", "input": "x", "tenant": "acme"}))
        .await;
    h.get(DLQ).token(OP).send().await.expect_status(200); // 1 dead_letter_list ok default
    tick(h).await;
    h.get(DLQ).token(ACME).send().await.expect_status(403); // 2 forbidden, acme
    tick(h).await;
    h.post_json(DLQ, &json!({"tasks": [{"job_id": job, "task_id": "t1"}]}))
        .token(OP)
        .header("x-daef-tenant", "beta")
        .send()
        .await
        .expect_status(200); // 3 requeue ok, beta
    tick(h).await;
    h.post_json(DLQ, &json!({}))
        .token(OP)
        .send()
        .await
        .expect_status(400); // 4 rejected
    tick(h).await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(ACME)
        .send()
        .await
        .expect_status(200); // 5 job_cancel ok, acme
    tick(h).await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(ACME)
        .send()
        .await
        .expect_status(200); // 6 job_cancel noop, acme
    job
}

#[tokio::test]
async fn the_log_is_newest_first_and_filters_exactly() {
    let h = Harness::new();
    six_events(&h).await;
    let all = h.audit().await;
    assert_eq!(ids(&all), [6, 5, 4, 3, 2, 1]);

    let h = &h;
    let query = |q: String| async move {
        h.get(&format!("/v1/admin/audit?{q}"))
            .token(OP)
            .send()
            .await
    };
    let ids_of = |q: &str| {
        let q = q.to_owned();
        async move {
            let resp = query(q.clone()).await.expect_status(200);
            let events = resp.json["events"].as_array().expect("events").clone();
            assert_eq!(resp.json["returned"], events.len(), "{q}");
            ids(&events)
        }
    };
    let acme_actor = principal_id(ACME);
    assert_eq!(ids_of("action=dead_letter_requeue").await, [4, 3]);
    assert_eq!(ids_of("action=dead_letter_list").await, [2, 1]);
    assert_eq!(ids_of(&format!("actor={acme_actor}")).await, [6, 5, 2]);
    assert_eq!(
        ids_of(&format!("actor={}", principal_id(OP))).await,
        [4, 3, 1]
    );
    assert_eq!(ids_of("tenant=acme").await, [6, 5, 2]);
    assert_eq!(ids_of("tenant=beta").await, [3]);
    assert_eq!(ids_of("result=rejected").await, [4]);
    assert_eq!(ids_of("result=forbidden").await, [2]);
    assert_eq!(ids_of("action=job_cancel&result=noop").await, [6]);
    assert_eq!(
        ids_of("action=job_cancel&tenant=beta").await,
        Vec::<u64>::new()
    );
    assert_eq!(
        ids_of("action=dead_letter").await,
        Vec::<u64>::new(),
        "exact match, not prefix"
    );

    // from / to are inclusive; any RFC 3339 offset is accepted.
    let at = |id: u64| {
        all.iter().find(|e| e["id"] == id).expect("event")["created_at"]
            .as_str()
            .expect("time")
            .to_owned()
    };
    let enc = |t: &str| t.replace('+', "%2B");
    assert_eq!(ids_of(&format!("from={}", at(3))).await, [6, 5, 4, 3]);
    assert_eq!(ids_of(&format!("to={}", at(3))).await, [3, 2, 1]);
    assert_eq!(
        ids_of(&format!("from={}&to={}", at(2), at(4))).await,
        [4, 3, 2]
    );
    let t3 = Timestamp::parse_rfc3339(&at(3)).expect("time");
    let plus_one_hour = t3
        .datetime()
        .to_offset(time::UtcOffset::from_hms(1, 0, 0).expect("offset"));
    let shifted = plus_one_hour
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    assert!(shifted.contains("+01:00"), "{shifted}");
    assert_eq!(
        ids_of(&format!("from={}", enc(&shifted))).await,
        [6, 5, 4, 3]
    );

    // Paging.
    let page = query("limit=2&offset=1".to_owned())
        .await
        .expect_status(200)
        .json;
    assert_eq!(
        (
            ids(page["events"].as_array().expect("events")),
            &page["returned"],
            &page["limit"],
            &page["offset"]
        ),
        (vec![5, 4], &json!(2), &json!(2), &json!(1))
    );
    let page = query("limit=2&offset=5".to_owned())
        .await
        .expect_status(200)
        .json;
    assert_eq!(ids(page["events"].as_array().expect("events")), [1]);
    let page = query("action=job_cancel&limit=1&offset=1".to_owned())
        .await
        .json;
    assert_eq!(ids(page["events"].as_array().expect("events")), [5]);
    assert_eq!(query(String::new()).await.json["limit"], 50);
    assert_eq!(query("limit=5000".to_owned()).await.json["limit"], 1000);
    assert_eq!(
        query("limit=99999999999999999999999".to_owned()).await.json["limit"],
        1000
    );

    // Bad queries: 400 naming the parameter, and nothing changes.
    let before = h.snapshot().await;
    for (q, message) in [
        ("from=yesterday", "from must be an RFC 3339 timestamp"),
        ("from=2026-11-26", "from must be an RFC 3339 timestamp"),
        (
            "to=2026-13-01T00:00:00Z",
            "to must be an RFC 3339 timestamp",
        ),
        ("limit=-1", "limit must be a positive integer"),
        ("limit=many", "limit must be a positive integer"),
        ("limit=0", "limit must be a positive integer"),
        ("limit=00", "limit must be a positive integer"),
        ("limit=", "limit must be a positive integer"),
        ("limit=1.5", "limit must be a positive integer"),
        ("offset=-2", "offset must be a non-negative integer"),
        ("offset=x", "offset must be a non-negative integer"),
        ("format=xml", "format must be json or csv"),
    ] {
        query(q.to_owned()).await.expect_error(400, message);
    }
    h.assert_unchanged(&before, "bad audit queries").await;
}

/// Parses RFC 4180 CSV strictly: CRLF line ends, quotes only around whole fields, `""` inside.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let (mut quoted, mut was_quoted) = (false, false);
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(
                    field.is_empty() && !was_quoted,
                    "quote inside an unquoted field: {field:?}"
                );
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                was_quoted = false;
            }
            '\n' => panic!("bare LF outside quotes"),
            _ => {
                assert!(!was_quoted, "text after a closing quote");
                field.push(c);
            }
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "the export ends with CRLF"
    );
    rows
}

const CSV_HEADER: &str = "id,created_at,action,actor,tenant,remote_addr,resource,payload_hash,prev_hash,event_hash,requested,result,details";

#[tokio::test]
async fn csv_export_has_the_design_header_and_rfc_4180_quoting() {
    let h = Harness::new();
    six_events(&h).await;
    // A resource with a comma and a quote (the path is percent-decoded) …
    h.delete("/v1/jobs/a%2Cb%22c")
        .token(OP)
        .send()
        .await
        .expect_error(404, "job not found");
    // … and details with a comma (the JSON parser's message).
    let message = h
        .post_raw(DLQ, &b"{\"tasks\": [1 2]}"[..])
        .token(OP)
        .send()
        .await
        .error_message(400);
    assert!(message.contains(','), "{message}");

    let resp = h
        .get("/v1/admin/audit?format=csv")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        resp.text.starts_with(&format!("{CSV_HEADER}\r\n")),
        "{}",
        resp.text
    );
    assert!(
        resp.text.contains(",\"/v1/jobs/a,b\"\"c\","),
        "quoted resource: {}",
        resp.text
    );

    let rows = parse_csv(&resp.text);
    let columns: Vec<&str> = CSV_HEADER.split(',').collect();
    assert_eq!(rows[0], columns);
    let events = h.audit().await;
    assert_eq!(rows.len() - 1, events.len());
    for (row, event) in rows[1..].iter().zip(&events) {
        let expected: Vec<String> = columns
            .iter()
            .map(|c| match &event[*c] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(row, &expected);
    }
    assert_eq!(rows[1][12], message);
    assert_eq!(rows[2][6], "/v1/jobs/a,b\"c");

    // Filters and paging apply to the export too.
    let resp = h
        .get("/v1/admin/audit?format=csv&action=job_cancel&limit=2")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let rows = parse_csv(&resp.text);
    assert_eq!(rows.len(), 3);
    assert!(rows[1..].iter().all(|r| r[2] == "job_cancel"));
    // An empty result is the header alone.
    let resp = h
        .get("/v1/admin/audit?format=csv&actor=nobody")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.text, format!("{CSV_HEADER}\r\n"));
}

#[tokio::test]
async fn the_chain_verifies_online_and_offline_from_the_json_alone() {
    let h = Harness::new();
    // An empty log verifies.
    let resp = h
        .get("/v1/admin/audit/verify")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"ok": true, "checked": 0, "head_hash": ""})
    );

    six_events(&h).await;
    h.delete("/v1/jobs/job-%22quoted%22%20%C3%A9")
        .token(OP)
        .send()
        .await
        .expect_status(404);
    h.post_raw(DLQ, &b"{\"tasks\": [1 2]}"[..])
        .token(ACME)
        .send()
        .await
        .expect_status(403);
    let events = h.audit().await;
    assert_eq!(events.len(), 8);

    let resp = h
        .get("/v1/admin/audit/verify")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.json,
        json!({"ok": true, "checked": 8, "head_hash": events[0]["event_hash"]})
    );
    // Verifying is a read: it is not audited.
    assert_eq!(h.audit().await.len(), 8);

    // Offline: id 1 has no predecessor, every event hashes to its event_hash, links hold.
    let oldest = events.last().expect("event");
    assert_eq!(
        (&oldest["id"], &oldest["prev_hash"]),
        (&json!(1), &json!(""))
    );
    assert_eq!(first_bad_event(&events), None);
    for e in &events {
        assert_eq!(
            e["event_hash"].as_str().map(str::len),
            Some(64),
            "hex blake3"
        );
    }

    // Pages exported one by one re-verify the same way.
    let mut paged = Vec::new();
    for offset in (0..8).step_by(3) {
        let page = h
            .get(&format!("/v1/admin/audit?limit=3&offset={offset}"))
            .token(OP)
            .send()
            .await
            .json;
        paged.extend(page["events"].as_array().expect("events").iter().cloned());
    }
    assert_eq!(paged, events);
    assert_eq!(first_bad_event(&paged), None);

    // The offline check is not vacuous: any edit to any field of an exported event is caught
    // at that event.
    for target in [1u64, 4, 8] {
        let fields = keys_of(&events[0]);
        for field in fields {
            let mut edited = events.clone();
            let event = edited
                .iter_mut()
                .find(|e| e["id"] == target)
                .expect("event");
            event[field.as_str()] = match &event[field.as_str()] {
                Value::String(s) => json!(format!("{s}x")),
                Value::Number(n) => json!(n.as_u64().expect("integer") + 100),
                other => panic!("unexpected field type {other}"),
            };
            let bad = first_bad_event(&edited);
            // Editing an id leaves a gap where the event was.
            assert_eq!(bad, Some(target), "edit of {field} in event {target}");
        }
    }
}

fn keys_of(event: &Value) -> Vec<String> {
    event.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn verify_names_the_first_tampered_event() {
    let store = Arc::new(FaultyStore::default());
    let h = Harness::build(Some(TOKENS), HttpConfig::default(), store.clone());
    for _ in 0..4 {
        h.get(DLQ).token(OP).send().await.expect_status(200);
    }
    let events = h.audit().await;
    store.tamper_with(2);
    let resp = h
        .get("/v1/admin/audit/verify")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let first = events.iter().find(|e| e["id"] == 1).expect("event 1");
    assert_eq!(
        resp.json,
        json!({"ok": false, "checked": 2, "head_hash": first["event_hash"], "first_bad_id": 2})
    );
}

#[tokio::test]
async fn payload_hash_is_blake3_of_the_canonical_request_body() {
    let h = Harness::new();
    // Unsorted keys, whitespace, unknown fields, escapes and non-ASCII text.
    let body = "{ \"zeta\" : {\"b\": 1, \"a\": [true, null, \"\u{e9}\\\"x\\n\"]},\n \"tasks\": [ {\"task_id\": \"t1\", \"job_id\": \"job-1\"} ], \"dry_run\": true, \"B\": -7 }";
    let canonical = "{\"B\":-7,\"dry_run\":true,\"tasks\":[{\"job_id\":\"job-1\",\"task_id\":\"t1\"}],\"zeta\":{\"a\":[true,null,\"\u{e9}\\\"x\\n\"],\"b\":1}}";
    assert_eq!(
        canonical_json(&serde_json::from_str(body).expect("json")),
        canonical
    );

    h.post_raw(DLQ, body.as_bytes().to_vec())
        .token(OP)
        .send()
        .await
        .expect_status(200);
    let event = h.last_audit().await;
    assert_eq!(event["payload_hash"], blake3_hex(canonical.as_bytes()));
    assert_eq!(
        event["payload_hash"],
        expected_payload_hash(body.as_bytes())
    );

    // The same body differently spelled hashes the same.
    let respelled =
        serde_json::to_vec(&serde_json::from_str::<Value>(body).expect("json")).expect("json");
    h.post_raw(DLQ, respelled)
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.last_audit().await["payload_hash"], event["payload_hash"]);

    // No body, or a body that is not JSON: "".
    h.get(DLQ).token(OP).send().await.expect_status(200);
    assert_eq!(h.last_audit().await["payload_hash"], "");
    h.post_raw(DLQ, &b"tasks=1"[..])
        .token(OP)
        .send()
        .await
        .expect_status(400);
    assert_eq!(h.last_audit().await["payload_hash"], "");
    let job = h.submit_simple("x").await;
    h.delete(&format!("/v1/jobs/{job}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.last_audit().await["payload_hash"], "");
}

#[tokio::test]
async fn events_record_the_request_context() {
    let h = Harness::new();
    h.get(DLQ)
        .token(OP)
        .remote("[2001:db8::1]:5555")
        .send()
        .await
        .expect_status(200);
    let event = h.last_audit().await;
    assert_eq!(event["remote_addr"], "[2001:db8::1]:5555");
    assert_eq!(event["actor"], principal_id(OP));
    // An invalid X-DAEF-Tenant is not recorded as the tenant.
    h.get(DLQ)
        .token(OP)
        .header("x-daef-tenant", "bad tenant")
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.last_audit().await["tenant"], "default");
    h.get(DLQ)
        .token(OP)
        .header("x-daef-tenant", "acme")
        .send()
        .await
        .expect_status(200);
    assert_eq!(h.last_audit().await["tenant"], "acme");

    // A tenant token cannot file its actions under another tenant.
    let job = h
        .submit(json!({"type": "chat", "input": "x", "tenant": "acme"}))
        .await;
    for header in ["beta", "default", "bad tenant", "acme"] {
        h.get(DLQ)
            .token(ACME)
            .header("x-daef-tenant", header)
            .send()
            .await
            .expect_status(403);
        let event = h.last_audit().await;
        assert_eq!(
            (&event["result"], &event["tenant"]),
            (&json!("forbidden"), &json!("acme")),
            "header {header}"
        );
    }
    h.delete(&format!("/v1/jobs/{job}"))
        .token(ACME)
        .header("x-daef-tenant", "beta")
        .send()
        .await
        .expect_status(200);
    let event = h.last_audit().await;
    assert_eq!(
        (&event["action"], &event["tenant"]),
        (&json!("job_cancel"), &json!("acme"))
    );
}
