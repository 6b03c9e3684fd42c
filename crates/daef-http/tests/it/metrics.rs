//! `/v1/metrics` and `/v1/metrics/prometheus` (DESIGN.md §7). The recorder is process-global:
//! under nextest each test has its own process, under `cargo test` they share one, so these
//! tests assert presence, labels and increments, never absolute values.

use std::sync::Arc;
use std::time::Duration;

use daef_core::Timestamp;
use daef_http::HttpConfig;
use serde_json::{Value, json};

use crate::fault::FaultyStore;
use crate::harness::{Harness, MET, OP, TOKENS, WRK, principal_id};

/// The JSON metrics, as a metrics token sees them.
async fn snapshot(h: &Harness) -> Value {
    h.get("/v1/metrics")
        .token(MET)
        .send()
        .await
        .expect_status(200)
        .json
}

/// The series of `kind` (`counters`, `gauges`, `histograms`) named `name` whose labels include
/// every pair of `labels`.
fn series<'a>(
    snapshot: &'a Value,
    kind: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Value> {
    snapshot[kind]
        .as_array()
        .expect("array")
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .collect()
}

/// The value of the one counter named `name` with exactly these labels (0 when absent).
#[track_caller]
fn counter(snapshot: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Value> = series(snapshot, "counters", name, labels)
        .into_iter()
        .filter(|s| s["labels"].as_object().map(|o| o.len()) == Some(labels.len()))
        .collect();
    assert!(
        found.len() <= 1,
        "one series for {name} {labels:?}: {found:?}"
    );
    found
        .first()
        .map_or(0.0, |s| s["value"].as_f64().expect("value"))
}

/// The label names of every series called `name`.
fn label_names(snapshot: &Value, kind: &str, name: &str) -> Vec<Vec<String>> {
    series(snapshot, kind, name, &[])
        .iter()
        .map(|s| {
            let mut names: Vec<String> = s["labels"]
                .as_object()
                .expect("labels")
                .keys()
                .cloned()
                .collect();
            names.sort();
            names
        })
        .collect()
}

#[tokio::test]
async fn the_seed_metrics_appear_with_their_labels_and_count_up() {
    let h = Harness::new();
    let worker = "metrics-worker-1";
    h.register(worker).await;
    let before = snapshot(&h).await;
    let q = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut labels = vec![("queue_backend", "memory"), ("worker_id", worker)];
        labels.extend_from_slice(extra);
        labels
    };

    // One job that completes, one that fails once and then dies, one whose lease expires.
    let ok = h.submit_simple("fine").await;
    let a = h.poll_one(worker).await;
    h.complete(worker, &a).await;
    let dead = h.dead_job(worker, "doomed").await;
    h.submit_simple("abandoned").await;
    h.poll_one(worker).await;
    h.reconcile_after(Duration::from_secs(16)).await;
    // A claim nobody acknowledges comes back after its visibility.
    h.app
        .engine()
        .queue()
        .claim(1, Timestamp::now(), Duration::from_secs(30))
        .await
        .expect("claim");
    h.reconcile_after(Duration::from_secs(31)).await;
    // An operator requeues the dead letter.
    h.post_json(
        "/v1/admin/queue/dead-letter",
        &json!({"tasks": [{"job_id": dead, "task_id": "t1"}]}),
    )
    .token(OP)
    .send()
    .await
    .expect_status(200);
    h.get(&format!("/v1/jobs/{ok}"))
        .token(OP)
        .send()
        .await
        .expect_status(200);

    let after = snapshot(&h).await;
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (
            counter(&before, name, labels),
            counter(&after, name, labels),
        );
        assert!(
            a - b >= by,
            "{name} {labels:?} grew by {} (expected at least {by})",
            a - b
        );
    };
    // 1 + 3 + 1 claims so far, and the unacknowledged one (not this worker's).
    grew("queue_claimed_total", &q(&[]), 5.0);
    grew("queue_acked_total", &q(&[]), 5.0);
    grew("queue_nacked_total", &q(&[("reason", "task_failed")]), 2.0);
    grew(
        "queue_nacked_total",
        &q(&[("reason", "lease_expired")]),
        1.0,
    );
    grew(
        "queue_expired_requeued_total",
        &[("queue_backend", "memory")],
        1.0,
    );
    grew(
        "dead_letter_requeued_total",
        &[("queue_backend", "memory")],
        1.0,
    );

    let actor = principal_id(OP);
    grew(
        "admin_actions_total",
        &[
            ("action", "dead_letter_requeue"),
            ("actor", &actor),
            ("result", "ok"),
            ("tenant", "default"),
        ],
        1.0,
    );
    grew(
        "http_requests_total",
        &[("route", "/v1/jobs"), ("method", "POST"), ("status", "202")],
        3.0,
    );
    grew(
        "http_requests_total",
        &[
            ("route", "/v1/jobs/{id}"),
            ("method", "GET"),
            ("status", "200"),
        ],
        1.0,
    );
    grew(
        "http_requests_total",
        &[
            ("route", "/v1/workers/{id}/assignments"),
            ("method", "GET"),
            ("status", "200"),
        ],
        5.0,
    );
    grew(
        "http_requests_total",
        &[
            ("route", "/v1/tasks/report"),
            ("method", "POST"),
            ("status", "200"),
        ],
        4.0,
    );

    // Exactly the seed's label names.
    let expect_labels = |kind: &str, name: &str, labels: &[&str]| {
        let found = label_names(&after, kind, name);
        assert!(!found.is_empty(), "{name} is exported");
        let mut want: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        want.sort();
        assert!(found.iter().all(|l| *l == want), "{name}: {found:?}");
    };
    expect_labels(
        "counters",
        "queue_claimed_total",
        &["queue_backend", "worker_id"],
    );
    expect_labels(
        "counters",
        "queue_acked_total",
        &["queue_backend", "worker_id"],
    );
    expect_labels(
        "counters",
        "queue_nacked_total",
        &["queue_backend", "worker_id", "reason"],
    );
    expect_labels(
        "counters",
        "queue_expired_requeued_total",
        &["queue_backend"],
    );
    expect_labels("counters", "dead_letter_requeued_total", &["queue_backend"]);
    expect_labels("gauges", "dead_letter_count", &["queue_backend"]);
    expect_labels(
        "counters",
        "admin_actions_total",
        &["action", "actor", "result", "tenant"],
    );
    expect_labels(
        "counters",
        "http_requests_total",
        &["route", "method", "status"],
    );
    expect_labels("histograms", "http_request_duration_seconds", &["route"]);
    // May be absent until an error; when present, it has the seed's labels.
    let found = label_names(&after, "counters", "scheduler_assignment_errors_total");
    assert!(
        found.iter().all(|l| *l == ["queue_backend", "worker_id"]),
        "{found:?}"
    );

    // Histograms carry a count and a sum.
    let hist = series(
        &after,
        "histograms",
        "http_request_duration_seconds",
        &[("route", "/v1/tasks/report")],
    );
    assert_eq!(hist.len(), 1);
    assert!(
        hist[0]["count"].as_u64().is_some_and(|c| c >= 4)
            && hist[0]["sum"].as_f64().is_some_and(|s| s > 0.0),
        "{:?}",
        hist[0]
    );
    assert!(
        series(
            &after,
            "gauges",
            "dead_letter_count",
            &[("queue_backend", "memory")]
        )[0]["value"]
            .is_number()
    );

    // Route labels are templates, never real ids; status labels are numeric codes.
    for s in series(&after, "counters", "http_requests_total", &[]) {
        let route = s["labels"]["route"].as_str().expect("route");
        assert!(
            !route.contains("job-") && !route.contains(worker),
            "{route}"
        );
        assert!(route.starts_with('/') || route == "unmatched", "{route}");
        let status = s["labels"]["status"].as_str().expect("status");
        assert!(
            status.len() == 3 && status.parse::<u16>().is_ok(),
            "{status}"
        );
    }
}

#[tokio::test]
async fn prometheus_text_has_help_and_type_lines() {
    let h = Harness::new();
    h.register("prom-worker").await;
    h.submit_simple("x").await;
    h.poll_one("prom-worker").await;
    h.get("/v1/admin/queue/dead-letter")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    h.app.engine().reconcile(Timestamp::now()).await;
    let resp = h
        .get("/v1/metrics/prometheus")
        .token(MET)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &resp.text;
    for (name, kind) in [
        ("queue_claimed_total", "counter"),
        ("queue_acked_total", "counter"),
        ("admin_actions_total", "counter"),
        ("http_requests_total", "counter"),
        ("dead_letter_count", "gauge"),
        ("http_request_duration_seconds", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "TYPE for {name}:\n{text}"
        );
    }
    assert!(
        text.contains(r#"queue_claimed_total{queue_backend="memory",worker_id="prom-worker"}"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "a histogram, not a summary:\n{text}"
    );
    // The operator may read it too; other scopes may not.
    h.get("/v1/metrics/prometheus")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    h.get("/v1/metrics/prometheus")
        .token(WRK)
        .send()
        .await
        .expect_status(403);
}

#[tokio::test]
async fn admin_actions_are_labelled_with_bounded_tenants() {
    let h = Harness::new();
    let before = snapshot(&h).await;
    let actor = principal_id(OP);
    for tenant in ["acme", "zeta", "default", "zeta-2"] {
        h.get("/v1/admin/queue/dead-letter")
            .token(OP)
            .header("x-daef-tenant", tenant)
            .send()
            .await
            .expect_status(200);
    }
    let after = snapshot(&h).await;
    let count = |s: &Value, tenant: &str| {
        counter(
            s,
            "admin_actions_total",
            &[
                ("action", "dead_letter_list"),
                ("actor", &actor),
                ("result", "ok"),
                ("tenant", tenant),
            ],
        )
    };
    // `acme` is a configured tenant and `default` is always known; anything else is `other`.
    assert!(count(&after, "acme") - count(&before, "acme") >= 1.0);
    assert!(count(&after, "default") - count(&before, "default") >= 1.0);
    assert!(count(&after, "other") - count(&before, "other") >= 2.0);
    for s in series(&after, "counters", "admin_actions_total", &[]) {
        let tenant = s["labels"]["tenant"].as_str().expect("tenant");
        assert!(
            ["acme", "beta", "default", "other"].contains(&tenant),
            "unbounded tenant label {tenant}"
        );
    }
    // The audit log itself keeps the real tenant.
    assert_eq!(h.last_audit().await["tenant"], "zeta-2");
}

#[tokio::test]
async fn assignment_errors_are_counted_and_answered_without_backend_text() {
    let store = Arc::new(FaultyStore::default());
    let h = Harness::build(Some(TOKENS), HttpConfig::default(), store.clone());
    let worker = "unlucky-worker";
    h.register(worker).await;
    h.submit_simple("x").await;
    let before = snapshot(&h).await;
    store.fail("assign");
    let resp = h
        .get(&format!("/v1/workers/{worker}/assignments"))
        .token(WRK)
        .send()
        .await
        .expect_error(500, "internal error");
    assert!(!resp.text.contains("SECRET"));
    let after = snapshot(&h).await;
    let labels = [("queue_backend", "memory"), ("worker_id", worker)];
    assert!(
        counter(&after, "scheduler_assignment_errors_total", &labels)
            - counter(&before, "scheduler_assignment_errors_total", &labels)
            >= 1.0
    );
    let nacked = [
        ("queue_backend", "memory"),
        ("worker_id", worker),
        ("reason", "assign_error"),
    ];
    assert!(
        counter(&after, "queue_nacked_total", &nacked)
            - counter(&before, "queue_nacked_total", &nacked)
            >= 1.0
    );
    // The claim was returned: once the store answers again the task is handed out.
    store.heal("assign");
    assert_eq!(h.poll(worker, 1).await.len(), 1);
}
