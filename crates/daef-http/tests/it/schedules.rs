//! `/v1/schedules…`: the lifecycle of a schedule through the API, tenant scoping, the job a
//! tick creates, and the audit trail of every change.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ACME, BETA, Harness, OP, principal_id};

fn nightly() -> Value {
    json!({
        "schedule_id": "nightly",
        "cron": "*/5 * * * *",
        "job": {"type": "report", "input": "totals", "priority": "batch"},
    })
}

#[tokio::test]
async fn a_schedule_is_created_read_paused_resumed_and_deleted_under_audit() {
    let h = Harness::new();
    let created = h
        .post_json("/v1/schedules", &nightly())
        .token(ACME)
        .send()
        .await
        .expect_status(201)
        .json;
    assert_eq!(created["schedule_id"], "nightly");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["cron"], "*/5 * * * *");
    assert_eq!(
        created["job"],
        json!({"type": "report", "input": "totals", "priority": "batch"})
    );
    assert_eq!(created["paused"], false);
    assert!(created["next_fire_at"].is_string(), "{created}");
    assert!(created["last_job_id"].is_null(), "{created}");

    let read = h
        .get("/v1/schedules/nightly")
        .token(ACME)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(read, created);
    let listed = h
        .get("/v1/schedules")
        .token(ACME)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(
        (listed["total"].clone(), listed["limit"].clone()),
        (json!(1), json!(100))
    );
    assert_eq!(listed["schedules"][0], created);
    let foreign = h
        .get("/v1/schedules")
        .token(BETA)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(foreign["total"], 0);
    h.get("/v1/schedules?tenant=acme")
        .token(BETA)
        .send()
        .await
        .expect_status(403);

    let paused = h
        .post_json("/v1/schedules/nightly/pause", &json!({}))
        .token(ACME)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(paused["paused"], true);
    assert!(paused["next_fire_at"].is_null(), "{paused}");
    // Paused, it does not fire however late it is.
    let summary = h.reconcile_after(Duration::from_secs(3_600)).await;
    assert_eq!(summary.schedules_fired, 0);
    let resumed = h
        .post_json("/v1/schedules/nightly/resume", &json!({}))
        .token(ACME)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(resumed["paused"], false);
    assert!(resumed["next_fire_at"].is_string(), "{resumed}");

    // Its tick comes: one job, of the schedule's tenant, carrying the schedule and the tick.
    let summary = h.reconcile_after(Duration::from_secs(301)).await;
    assert_eq!(summary.schedules_fired, 1);
    let fired = h
        .get("/v1/schedules/nightly")
        .token(OP)
        .send()
        .await
        .expect_status(200)
        .json;
    let job_id = fired["last_job_id"].as_str().expect("fired").to_owned();
    assert_eq!(fired["last_fire_at"], resumed["next_fire_at"]);
    let job = h.job(&job_id).await;
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["type"], "report");
    assert_eq!(job["priority"], "batch");
    assert_eq!(job["schedule_id"], "nightly");
    assert_eq!(job["scheduled_for"], resumed["next_fire_at"]);

    let deleted = h
        .delete("/v1/schedules/nightly")
        .token(ACME)
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(deleted, json!({"schedule_id": "nightly", "deleted": true}));
    h.get("/v1/schedules/nightly")
        .token(ACME)
        .send()
        .await
        .expect_status(404);
    h.job(&job_id).await;

    let trail: Vec<(String, String, String, String)> = h
        .audit()
        .await
        .iter()
        .rev()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (
                text("action"),
                text("result"),
                text("tenant"),
                text("actor"),
            )
        })
        .collect();
    let acme = |action: &str| {
        (
            action.to_owned(),
            "ok".to_owned(),
            "acme".to_owned(),
            principal_id(ACME),
        )
    };
    assert_eq!(
        trail,
        [
            acme("schedule_create"),
            acme("schedule_pause"),
            acme("schedule_resume"),
            acme("schedule_delete"),
        ]
    );
}

#[tokio::test]
async fn refused_schedule_changes_are_audited_and_change_nothing() {
    let h = Harness::new();
    h.post_json("/v1/schedules", &nightly())
        .token(ACME)
        .send()
        .await
        .expect_status(201);
    let mut bad = nightly();
    bad["cron"] = json!("*/5 * * *");
    let refused = h
        .post_json("/v1/schedules", &bad)
        .token(ACME)
        .send()
        .await
        .expect_status(400);
    let message = refused.json["error"].as_str().unwrap_or_default();
    assert!(message.contains("5 fields"), "{message}");
    h.post_json("/v1/schedules", &nightly())
        .token(ACME)
        .send()
        .await
        .expect_status(409);
    h.post_json("/v1/schedules/nightly/pause", &json!({}))
        .token(BETA)
        .send()
        .await
        .expect_status(404);
    // Ids are per tenant: beta's "nightly" is its own, and acme's stays out of its sight.
    let theirs = h
        .post_json("/v1/schedules", &nightly())
        .token(BETA)
        .send()
        .await
        .expect_status(201)
        .json;
    assert_eq!(theirs["tenant"], "beta");
    let results: Vec<(Value, Value)> = h
        .audit()
        .await
        .iter()
        .rev()
        .map(|e| (e["action"].clone(), e["result"].clone()))
        .collect();
    assert_eq!(
        results,
        [
            (json!("schedule_create"), json!("ok")),
            (json!("schedule_create"), json!("rejected")),
            (json!("schedule_create"), json!("rejected")),
            (json!("schedule_pause"), json!("rejected")),
            (json!("schedule_create"), json!("ok")),
        ]
    );
    // An operator names the tenant when the id is ambiguous.
    let ambiguous = h
        .get("/v1/schedules/nightly")
        .token(OP)
        .send()
        .await
        .expect_status(409);
    let message = ambiguous.json["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("acme, beta") && message.contains("X-DAEF-Tenant"),
        "{message}"
    );
    let schedule = h
        .get("/v1/schedules/nightly")
        .token(OP)
        .header("x-daef-tenant", "acme")
        .send()
        .await
        .expect_status(200)
        .json;
    assert_eq!(schedule["tenant"], "acme");
    assert_eq!(schedule["paused"], false);
    h.get("/v1/schedules/nightly")
        .token(ACME)
        .header("x-daef-tenant", "beta")
        .send()
        .await
        .expect_status(403);
}
