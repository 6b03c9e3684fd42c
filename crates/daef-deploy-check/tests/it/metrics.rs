//! The alerting rules and the Grafana dashboard query only what the gateway exports: every
//! metric name is defined in daef-core's metric.rs, and appears — with the labels the queries
//! use — in a real scrape after the gateway has done the work that makes it appear (completed,
//! failed, retried, dead-lettered, lapsed, orphaned, canceled and requeued tasks, refused and
//! accepted admin actions, and, on Postgres and Redis, an assignment the store refuses).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use daef_deploy_check::assets::{deploy_dir, workspace_root};
use daef_deploy_check::promql::{self, References};
use daef_deploy_check::{exposition, yaml};
use serde_json::{Value, json};

use crate::harness::{Gateway, eventually};

/// Tokens of the gateways started here.
const TOKENS: &str =
    "op-secret:operator,metrics-secret:metrics,worker-secret:worker,acme-secret:tenant:acme";
const OPERATOR: &str = "op-secret";
const METRICS: &str = "metrics-secret";
const WORKER: &str = "worker-secret";
const ACME: &str = "acme-secret";

/// Labels Prometheus attaches to every scraped series (target labels), never the gateway.
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod"];
/// Series Prometheus records itself for every scrape.
const SYNTHETIC: &[&str] = &["up"];

/// An expression and where it comes from.
struct Query {
    origin: String,
    refs: References,
}

fn query(origin: String, expr: &str) -> Query {
    let refs = promql::references(expr).unwrap_or_else(|e| panic!("{origin}: {e}"));
    Query { origin, refs }
}

/// Every alert and recording rule expression.
fn rule_queries() -> Vec<Query> {
    let rules =
        yaml::load_one(&deploy_dir().join("kubernetes/observability/prometheus-rules.yaml"))
            .expect("rules");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule
                .get("alert")
                .or(rule.get("record"))
                .and_then(Value::as_str)
                .expect("a rule name");
            out.push(query(
                format!("rule {name}"),
                rule["expr"].as_str().expect("expr"),
            ));
        }
    }
    assert!(out.len() >= 9, "only {} rules", out.len());
    out
}

/// Every panel query and templating query of the dashboard.
fn dashboard_queries() -> Vec<Query> {
    let path = deploy_dir().join("kubernetes/observability/grafana-dashboard-daef-queue.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard"))
        .expect("dashboard JSON");
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target expr");
            out.push(query(
                format!("panel {:?}", panel["title"].as_str().unwrap_or("?")),
                expr,
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(definition) = variable["definition"].as_str() else {
            continue;
        };
        // Grafana's label_values(<selector>, <label>): the selector is PromQL, the label one of
        // the selector's metric's labels.
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unsupported variable query {definition}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let mut q = query(
            format!("variable ${}", variable["name"].as_str().unwrap_or("?")),
            selector,
        );
        q.refs.grouping.insert(label.trim().to_owned());
        out.push(q);
    }
    assert!(out.len() >= 12, "only {} dashboard queries", out.len());
    out
}

/// Metric names defined in daef-core's metric.rs, histograms expanded to their series.
fn defined_metrics() -> BTreeSet<String> {
    let source = std::fs::read_to_string(workspace_root().join("crates/daef-core/src/metric.rs"))
        .expect("metric.rs");
    let mut consts = BTreeMap::new();
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub const ")
            && let Some((name, value)) = rest.split_once(": &str = \"")
        {
            consts.insert(name.to_owned(), value.trim_end_matches("\";").to_owned());
        }
    }
    let histograms: BTreeSet<&str> = source
        .match_indices("describe_histogram!(")
        .filter_map(|(i, m)| source[i + m.len()..].trim_start().split(',').next())
        .collect();
    let mut names = BTreeSet::new();
    for (konst, name) in &consts {
        if histograms.contains(konst.as_str()) {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.clone());
        }
    }
    assert!(
        names.len() >= 20,
        "only {} metric names read from metric.rs",
        names.len()
    );
    names
}

#[test]
fn rules_and_dashboard_name_only_defined_metrics() {
    let defined = defined_metrics();
    for q in rule_queries().iter().chain(&dashboard_queries()) {
        let metrics = q.refs.metrics();
        assert!(!metrics.is_empty(), "{} queries no metric", q.origin);
        for metric in metrics {
            assert!(
                defined.contains(&metric) || SYNTHETIC.contains(&metric.as_str()),
                "{} uses {metric}, which crates/daef-core/src/metric.rs does not define",
                q.origin
            );
        }
    }
}

#[test]
fn alerts_carry_severity_and_a_runbook_section() {
    let rules =
        yaml::load_one(&deploy_dir().join("kubernetes/observability/prometheus-rules.yaml"))
            .expect("rules");
    let operations = std::fs::read_to_string(workspace_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    // GitHub's heading anchors: lower-case, spaces to '-', punctuation dropped.
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut alerts = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation].is_string(),
                    "{name}: no {annotation}"
                );
            }
            let runbook = rule["annotations"]["runbook"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no runbook"));
            let anchor = runbook
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| {
                    panic!("{name}: runbook {runbook} is not a section of docs/operations.md")
                });
            assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
            assert!(
                anchors.contains(anchor),
                "{name}: docs/operations.md has no section #{anchor}"
            );
        }
    }
    // Dead letters, retry storm, assignment errors, lease churn, operator activity, gateway down,
    // latency, backends.
    assert!(alerts >= 9, "only {alerts} alerts");
}

/// Every metric name in a scrape, with the label names its series carry.
type Scrape = BTreeMap<String, BTreeSet<String>>;

fn scrape(gw: &Gateway) -> Scrape {
    let response = gw.call("GET", "/v1/metrics/prometheus", Some(METRICS), None);
    assert_eq!(response.status, 200, "{}", response.body);
    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert!(
        content_type.is_some_and(|t| t.starts_with("text/plain")),
        "{content_type:?}"
    );
    exposition::series(&response.body).unwrap_or_else(|e| panic!("the scrape does not parse: {e}"))
}

fn merge(into: &mut Scrape, from: Scrape) {
    for (name, labels) in from {
        into.entry(name).or_default().extend(labels);
    }
}

/// Waits until a scrape has `metric` (with a series carrying `label` = any value, if given).
fn scrape_until(gw: &Gateway, metric: &str) -> Scrape {
    eventually(
        &format!("{metric} in the scrape"),
        Duration::from_secs(20),
        || {
            let s = scrape(gw);
            s.contains_key(metric).then_some(s)
        },
    )
}

fn submit(gw: &Gateway, token: &str, body: Value) -> String {
    let v = gw.expect(202, "POST", "/v1/jobs", Some(token), Some(body));
    v["job_id"].as_str().expect("job_id").to_owned()
}

fn one_task(task_id: &str, max_retries: u32) -> Value {
    json!({"type": "etl", "input": "deploy-check", "tasks": [
        {"task_id": task_id, "type": "tool_execution", "max_retries": max_retries}
    ]})
}

/// Polls `worker` once and returns the assignment of `job` (which must be the only one offered).
#[track_caller]
fn poll_one(gw: &Gateway, worker: &str, job: &str) -> Value {
    let v = gw.expect(
        200,
        "GET",
        &format!("/v1/workers/{worker}/assignments?max_tasks=10"),
        Some(WORKER),
        None,
    );
    let assignments = v["assignments"].as_array().expect("assignments");
    assert_eq!(
        assignments.len(),
        1,
        "expected one assignment of {job}: {v}"
    );
    assert_eq!(assignments[0]["job_id"], job, "{v}");
    assignments[0].clone()
}

/// Reports on assignment `a` under `lease`; the idempotency key is the lease and the status, so
/// only an identical report is a duplicate.
fn report(gw: &Gateway, worker: &str, a: &Value, lease: &Value, status: &str) -> u16 {
    let body = json!({
        "worker_id": worker, "job_id": a["job_id"], "task_id": a["task_id"], "lease_id": lease,
        "idempotency_key": format!("{}-{status}", lease.as_str().unwrap_or_default()),
        "status": status, "error": "deploy-check failure", "output_artifact_uri": "s3://deploy-check/out",
        "duration_millis": 5,
    });
    gw.call("POST", "/v1/tasks/report", Some(WORKER), Some(&body))
        .status
}

/// The work of the in-memory scenario. Each step is what makes some series exist.
fn exercise(gw: &Gateway) {
    gw.expect(200, "GET", "/healthz", None, None);
    gw.expect(200, "GET", "/readyz", None, None);
    let worker = "deploy-check-1";
    gw.expect(
        200,
        "POST",
        "/v1/workers/register",
        Some(WORKER),
        Some(json!({"worker_id": worker, "cpu": 2})),
    );
    gw.expect(
        200,
        "POST",
        &format!("/v1/workers/{worker}/heartbeat"),
        Some(WORKER),
        Some(json!({"running_tasks": 0})),
    );

    // Completed, then the same report again (a duplicate), then its event stream, which ends at
    // once because the job is finished.
    let job = submit(gw, ACME, json!({"type": "chat", "input": "hello"}));
    let a = poll_one(gw, worker, &job);
    assert_eq!(report(gw, worker, &a, &a["lease_id"], "Completed"), 200);
    assert_eq!(report(gw, worker, &a, &a["lease_id"], "Completed"), 200);
    check_event_stream(gw, &job);

    // Failed with a retry left (a task_failed nack); another report on the failed attempt (not
    // running), the retry, a report with the old lease (stale), then success.
    let job = submit(gw, ACME, one_task("flaky", 1));
    let first = poll_one(gw, worker, &job);
    assert_eq!(
        report(gw, worker, &first, &first["lease_id"], "Failed"),
        200
    );
    assert_eq!(
        report(gw, worker, &first, &first["lease_id"], "Completed"),
        409
    );
    let second = poll_one(gw, worker, &job);
    assert_eq!(
        report(gw, worker, &second, &first["lease_id"], "Completed"),
        409
    );
    assert_eq!(
        report(gw, worker, &second, &second["lease_id"], "Completed"),
        200
    );

    // Failed without retries: a dead letter.
    let doomed = submit(gw, ACME, one_task("doomed", 0));
    let a = poll_one(gw, worker, &doomed);
    assert_eq!(report(gw, worker, &a, &a["lease_id"], "Failed"), 200);

    // A lease that lapses (2 s leases), then sits unclaimed until the reconciler enqueues it
    // again (an orphan); the poll then also drops the duplicate reference (stale).
    let sleepy = submit(gw, ACME, one_task("sleepy", 1));
    poll_one(gw, worker, &sleepy);
    scrape_until(gw, "lease_expired_total");
    scrape_until(gw, "orphans_requeued_total");
    let a = poll_one(gw, worker, &sleepy);
    assert_eq!(a["attempt"], 2);
    assert_eq!(report(gw, worker, &a, &a["lease_id"], "Completed"), 200);

    // A canceled job: audited, and its queued reference is dropped by the next poll.
    let canceled = submit(gw, ACME, one_task("unwanted", 0));
    let v = gw.expect(
        200,
        "DELETE",
        &format!("/v1/jobs/{canceled}"),
        Some(ACME),
        None,
    );
    assert_eq!(v["accepted"], true);
    let v = gw.expect(
        200,
        "GET",
        &format!("/v1/workers/{worker}/assignments?max_tasks=10"),
        Some(WORKER),
        None,
    );
    assert_eq!(v["assignments"], json!([]));

    // Admin: a refused list (a tenant token), a list, a dry run, a requeue, the retry.
    gw.expect(403, "GET", "/v1/admin/queue/dead-letter", Some(ACME), None);
    let v = gw.expect(
        200,
        "GET",
        "/v1/admin/queue/dead-letter?limit=10",
        Some(OPERATOR),
        None,
    );
    assert_eq!(v["tasks"][0]["job_id"], doomed.as_str(), "{v}");
    let requeue = json!({"tasks": [{"job_id": doomed, "task_id": "doomed"}]});
    let mut dry = requeue.clone();
    dry["dry_run"] = json!(true);
    let v = gw.expect(
        200,
        "POST",
        "/v1/admin/queue/dead-letter",
        Some(OPERATOR),
        Some(dry),
    );
    assert_eq!(v["requeued"], 1);
    let v = gw.expect(
        200,
        "POST",
        "/v1/admin/queue/dead-letter",
        Some(OPERATOR),
        Some(requeue),
    );
    assert_eq!(v["requeued"], 1);
    let a = poll_one(gw, worker, &doomed);
    assert_eq!(report(gw, worker, &a, &a["lease_id"], "Completed"), 200);
    let v = gw.expect(200, "GET", "/v1/admin/audit/verify", Some(OPERATOR), None);
    assert_eq!(v["ok"], true, "{v}");
    gw.expect(200, "GET", "/v1/metrics", Some(METRICS), None);
}

/// The SSE stream of a finished job: the events docs/openapi.yaml describes, then the end.
fn check_event_stream(gw: &Gateway, job: &str) {
    let response = gw.call("GET", &format!("/v1/jobs/{job}/events"), Some(ACME), None);
    assert_eq!(response.status, 200, "{}", response.body);
    let mut names = Vec::new();
    let mut event = String::new();
    for line in response.body.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:") {
            let value: Value = serde_json::from_str(data.trim())
                .unwrap_or_else(|e| panic!("event data is not JSON: {e}: {data}"));
            let key = if event == "task" { "task_id" } else { "job_id" };
            assert!(
                value.get(key).is_some(),
                "{event} event without {key}: {value}"
            );
            names.push(event.clone());
        }
    }
    assert!(
        names
            .iter()
            .all(|n| ["task", "job", "end"].contains(&n.as_str())),
        "{names:?}"
    );
    assert_eq!(names.last().map(String::as_str), Some("end"), "{names:?}");
}

/// On Postgres and Redis: a normal dispatch, then an assignment the store refuses (its tasks
/// table renamed away under it), which is what `scheduler_assignment_errors_total` counts.
fn exercise_postgres_and_redis() -> Option<Scrape> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = runtime.block_on(daef_testenv::postgres::fresh_schema())?;
    let redis = daef_testenv::redis::test()?;
    let dsn = search_path_dsn(&schema);
    let gw = Gateway::start(&[
        ("DAEF_API_TOKENS", TOKENS),
        ("DAEF_STORE", "postgres"),
        ("DAEF_POSTGRES_DSN", &dsn),
        ("DAEF_QUEUE", "redis"),
        ("DAEF_REDIS_ADDR", redis.addr()),
        ("DAEF_REDIS_KEY", redis.key()),
        ("DAEF_RECONCILE_INTERVAL_MS", "200"),
        // The exercise retries a failed attempt at once.
        ("DAEF_RETRY_BACKOFF_INITIAL_MS", "0"),
    ]);
    let worker = "deploy-check-pg";
    gw.expect(200, "GET", "/readyz", None, None);
    gw.expect(
        200,
        "POST",
        "/v1/workers/register",
        Some(WORKER),
        Some(json!({"worker_id": worker})),
    );
    let job = submit(&gw, ACME, json!({"type": "chat", "input": "hello"}));
    let a = poll_one(&gw, worker, &job);
    assert_eq!(report(&gw, worker, &a, &a["lease_id"], "Completed"), 200);

    let job = submit(&gw, ACME, json!({"type": "chat", "input": "again"}));
    runtime.block_on(async {
        let client = daef_testenv::postgres::connect(&schema.dsn)
            .await
            .expect("connect to the test Postgres");
        client
            .batch_execute(&format!(
                "ALTER TABLE {}.tasks RENAME TO tasks_gone",
                schema.schema
            ))
            .await
            .expect("rename the tasks table");
    });
    let response = gw.call(
        "GET",
        &format!("/v1/workers/{worker}/assignments"),
        Some(WORKER),
        None,
    );
    assert!(
        response.status >= 500,
        "polling {job} without a tasks table answered {}: {}",
        response.status,
        response.body
    );
    assert!(
        !response.body.contains("tasks_gone") && !response.body.contains("relation"),
        "a 5xx echoed backend text: {}",
        response.body
    );
    Some(scrape_until(&gw, "scheduler_assignment_errors_total"))
}

/// The schema's DSN with `search_path` set to it, in the DSN's own form (URL or key=value).
pub(crate) fn search_path_dsn(schema: &daef_testenv::postgres::TestSchema) -> String {
    let dsn = schema.dsn.trim();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let separator = if dsn.contains('?') { '&' } else { '?' };
        format!(
            "{dsn}{separator}options=-c%20search_path%3D{}",
            schema.schema
        )
    } else {
        schema.dsn_with_search_path()
    }
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_exported() {
    let gw = Gateway::start(&[
        ("DAEF_API_TOKENS", TOKENS),
        ("DAEF_LEASE_SECONDS", "2"),
        ("DAEF_RECONCILE_INTERVAL_MS", "100"),
        ("DAEF_ORPHAN_REQUEUE_SECONDS", "1"),
        ("DAEF_RETRY_BACKOFF_INITIAL_MS", "0"),
    ]);
    exercise(&gw);
    let mut exported = scrape(&gw);
    drop(gw);
    let backends = exercise_postgres_and_redis();
    let on_backends = backends.is_some();
    if let Some(s) = backends {
        merge(&mut exported, s);
    }

    let queries: Vec<Query> = rule_queries()
        .into_iter()
        .chain(dashboard_queries())
        .collect();
    let mut missing = BTreeSet::new();
    for q in &queries {
        let mut labels_in_scope: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
        let mut complete = true;
        for selector in &q.refs.selectors {
            let metric = selector.metric.as_str();
            if SYNTHETIC.contains(&metric) {
                continue;
            }
            let Some(labels) = exported.get(metric) else {
                missing.insert(format!("{metric} (used by {})", q.origin));
                complete = false;
                continue;
            };
            labels_in_scope.extend(labels.iter().cloned());
            for label in &selector.labels {
                assert!(
                    TARGET_LABELS.contains(&label.as_str()) || labels.contains(label),
                    "{} matches on {metric}{{{label}}}, but {metric} has only {labels:?}",
                    q.origin
                );
            }
        }
        // Grouping labels can only be checked once every metric of the query was seen.
        for label in q.refs.grouping.iter().filter(|_| complete) {
            assert!(
                label == "le" || labels_in_scope.contains(label),
                "{} groups by {label}, which none of its metrics has",
                q.origin
            );
        }
    }
    if !on_backends {
        // Without Postgres (skipped above, and not required), the store cannot be made to
        // refuse an assignment; everything else must still be there.
        missing.retain(|m| !m.starts_with("scheduler_assignment_errors_total"));
    }
    assert!(
        missing.is_empty(),
        "metrics used by the rules or the dashboard but not exported after the scenario: {missing:#?}"
    );
}
