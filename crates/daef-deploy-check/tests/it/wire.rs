//! The wire types of `daef-api` against the schemas of docs/openapi.yaml: every field a type
//! writes is described, with a matching type; every required field is written; and a fully
//! populated value writes every field the description names. Both a full and a minimal value of
//! each type are checked, so optional fields are seen present and absent.

use std::collections::BTreeMap;

use daef_api::*;
use daef_core::Timestamp;
use daef_core::audit::AuditEvent;
use daef_core::model::{
    Gpu, JobId, JobStatus, Priority, RetryBackoff, TaskStatus, WorkerCapabilities, WorkerStats,
};
use daef_deploy_check::assets::workspace_root;
use daef_deploy_check::schema;
use daef_deploy_check::yaml;
use serde::Serialize;
use serde_json::Value;

fn spec() -> Value {
    yaml::load_one(&workspace_root().join("docs/openapi.yaml")).expect("docs/openapi.yaml")
}

/// Where a body's schema is in the document.
enum At {
    /// `#/components/schemas/<name>`.
    Component(&'static str),
    /// The JSON response schema of `<method> <path>` with this status.
    Response(&'static str, &'static str, &'static str),
    /// The JSON request body schema of `<method> <path>`.
    Request(&'static str, &'static str),
}

fn schema_at<'a>(doc: &'a Value, at: &At) -> &'a Value {
    let escape = |path: &str| path.replace('~', "~0").replace('/', "~1");
    let pointer = match at {
        At::Component(name) => format!("/components/schemas/{name}"),
        At::Response(method, path, status) => format!(
            "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
            escape(path)
        ),
        At::Request(method, path) => format!(
            "/paths/{}/{method}/requestBody/content/application~1json/schema",
            escape(path)
        ),
    };
    let found = doc
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"));
    // A response may point at a shared response object rather than hold the schema.
    schema::resolve(doc, found)
}

/// Checks that a value of a wire type conforms to its schema.
#[track_caller]
fn conforms<T: Serialize>(doc: &Value, at: &At, value: &T) {
    let value = serde_json::to_value(value).expect("serializable");
    let problems = schema::problems(doc, schema_at(doc, at), &value);
    assert!(problems.is_empty(), "{value}\n{problems:#?}");
}

/// Checks a full and a minimal value of one wire type against its schema, and that the full
/// one writes every field the schema describes.
#[track_caller]
fn check<T: Serialize>(doc: &Value, at: At, full: &T, minimal: &T) {
    conforms(doc, &at, full);
    conforms(doc, &at, minimal);
    let schema = schema_at(doc, &at);
    let full = serde_json::to_value(full).expect("serializable");
    if let Value::Object(fields) = &full {
        let missing: Vec<&str> = schema::property_names(doc, schema)
            .into_iter()
            .filter(|name| !fields.contains_key(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "described but never written: {missing:?}\n{full}"
        );
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_796_000_000_000_000 + seconds * 1_000_000)
}

fn job(full: bool) -> JobInfo {
    JobInfo {
        job_id: JobId::new("job-0194d3a0-0000-7000-8000-000000000001"),
        tenant: "acme".into(),
        job_type: "chat".into(),
        priority: Priority::Batch,
        status: JobStatus::Completed,
        policy: full.then(|| "enterprise-default".into()),
        message: full.then(|| "done".into()),
        result_artifact_uri: full.then(|| "artifact://j/t1/output.json".into()),
        schedule_id: full.then(|| "nightly".into()),
        scheduled_for: full.then(|| at(-5)),
        created_at: at(0),
        updated_at: at(1),
    }
}

fn task(full: bool) -> TaskInfo {
    TaskInfo {
        task_id: "t1".into(),
        task_type: "llm_inference".into(),
        status: TaskStatus::Running,
        attempt: 1,
        dependencies: if full { vec!["t0".into()] } else { Vec::new() },
        worker_id: full.then(|| "w-1".into()),
        lease_id: full.then(|| "lease-1-abc".into()),
        lease_expires: full.then(|| at(15)),
        output_artifact_uri: full.then(|| "artifact://j/t1/output.json".into()),
        error: full.then(|| "boom".into()),
        next_attempt_at: full.then(|| at(20)),
        created_at: at(0),
        updated_at: at(1),
    }
}

fn assignment(full: bool) -> Assignment {
    Assignment {
        job_id: JobId::new("job-1"),
        task_id: "t1".into(),
        task_type: "llm_inference".into(),
        inputs: if full {
            BTreeMap::from([("prompt".to_owned(), "hello".to_owned())])
        } else {
            BTreeMap::new()
        },
        attempt: 1,
        lease_id: "lease-1-abc".into(),
        // The gateway always sends both.
        lease_expires: Some(at(15)),
        timeout_sec: Some(60),
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        job_id: JobId::new("job-1"),
        task_id: "t1".into(),
        tenant: "acme".into(),
        attempt: 3,
        error: "boom".into(),
        dead_lettered_at: at(2),
    }
}

fn audit_event() -> AuditEvent {
    AuditEvent {
        id: 1,
        created_at: at(0),
        action: "dead_letter_requeue".into(),
        actor: "tok-0123abcd".into(),
        tenant: "default".into(),
        remote_addr: "127.0.0.1:4000".into(),
        resource: "/v1/admin/queue/dead-letter".into(),
        payload_hash: "ab".repeat(32),
        requested: 1,
        result: "ok".into(),
        details: "requeued 1 of 1 listed tasks".into(),
        prev_hash: String::new(),
        event_hash: "cd".repeat(32),
    }
}

fn report(full: bool) -> TaskReport {
    TaskReport {
        worker_id: "w-1".into(),
        job_id: JobId::new("job-1"),
        task_id: "t1".into(),
        lease_id: "lease-1-abc".into(),
        idempotency_key: full.then(|| "w-1:job-1:t1:1".into()),
        status: ReportStatus::Completed,
        output_artifact_uri: full.then(|| "artifact://job-1/t1/output.json".into()),
        error: full.then(|| "boom".into()),
        duration_millis: full.then_some(12),
    }
}

#[test]
fn job_bodies_match_the_description() {
    let doc = spec();
    let submission = |full: bool| JobSubmission {
        job_type: "chat".into(),
        // A submission names an input or a DAG: the minimal one has the input.
        input: Some("hello".into()),
        policy: full.then(|| "enterprise-default".into()),
        priority: full.then_some(Priority::Interactive),
        tenant: full.then(|| "acme".into()),
        tasks: full.then(|| {
            vec![TaskSubmission {
                task_id: "t1".into(),
                task_type: "t".into(),
                inputs: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                dependencies: vec!["t0".into()],
                max_retries: Some(2),
                timeout_sec: Some(60),
                retry_backoff: Some(RetryBackoff {
                    initial_ms: 500,
                    max_ms: 60_000,
                }),
            }]
        }),
        // The gateway takes one of the two; the schema describes both.
        run_at: full.then(|| at(3_600)),
        delay_seconds: full.then_some(90),
    };
    let delayed = JobSubmission {
        delay_seconds: Some(90),
        ..submission(false)
    };
    conforms(&doc, &At::Request("post", "/v1/jobs"), &delayed);
    check(
        &doc,
        At::Request("post", "/v1/jobs"),
        &submission(true),
        &submission(false),
    );
    let submitted = Submitted {
        job_id: JobId::new("job-1"),
        status: JobStatus::Queued,
    };
    check(
        &doc,
        At::Response("post", "/v1/jobs", "202"),
        &submitted,
        &submitted,
    );
    check(&doc, At::Component("Job"), &job(true), &job(false));
    let list = |full: bool| JobList {
        total: 1,
        returned: u64::from(full),
        limit: 50,
        offset: 0,
        jobs: if full { vec![job(true)] } else { Vec::new() },
    };
    check(
        &doc,
        At::Response("get", "/v1/jobs", "200"),
        &list(true),
        &list(false),
    );
    let canceled = CancelOutcome { accepted: true };
    check(
        &doc,
        At::Response("delete", "/v1/jobs/{id}", "200"),
        &canceled,
        &canceled,
    );
    check(&doc, At::Component("Task"), &task(true), &task(false));
    let tasks = |full: bool| TaskList {
        job_id: JobId::new("job-1"),
        total: 1,
        returned: u64::from(full),
        limit: full.then_some(10),
        offset: full.then_some(0),
        tasks: if full { vec![task(true)] } else { Vec::new() },
    };
    check(
        &doc,
        At::Response("get", "/v1/jobs/{id}/tasks", "200"),
        &tasks(true),
        &tasks(false),
    );
}

#[test]
fn schedule_bodies_match_the_description() {
    let doc = spec();
    let template = |full: bool| JobSubmission {
        priority: full.then_some(Priority::Batch),
        policy: full.then(|| "enterprise-default".into()),
        ..JobSubmission::new("report", "nightly totals")
    };
    let submission = |full: bool| ScheduleSubmission {
        schedule_id: "nightly".into(),
        cron: "0 3 * * *".into(),
        job: template(full),
        paused: full,
    };
    check(
        &doc,
        At::Request("post", "/v1/schedules"),
        &submission(true),
        &submission(false),
    );
    let schedule = |full: bool| ScheduleInfo {
        schedule_id: "nightly".into(),
        tenant: "acme".into(),
        cron: "0 3 * * *".into(),
        job: template(full),
        paused: !full,
        next_fire_at: full.then(|| at(3_600)),
        last_fire_at: full.then(|| at(-82_800)),
        last_job_id: full.then(|| JobId::new("job-1")),
        created_at: at(-100_000),
        updated_at: at(-82_800),
    };
    check(
        &doc,
        At::Component("Schedule"),
        &schedule(true),
        &schedule(false),
    );
    check(
        &doc,
        At::Response("post", "/v1/schedules", "201"),
        &schedule(true),
        &schedule(false),
    );
    for path in ["/v1/schedules/{id}/pause", "/v1/schedules/{id}/resume"] {
        check(
            &doc,
            At::Response("post", path, "200"),
            &schedule(true),
            &schedule(false),
        );
    }
    let list = |full: bool| ScheduleList {
        total: 1,
        returned: u64::from(full),
        limit: 100,
        offset: 0,
        schedules: if full {
            vec![schedule(true)]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/schedules", "200"),
        &list(true),
        &list(false),
    );
    let deleted = ScheduleDeleted {
        schedule_id: "nightly".into(),
        deleted: true,
    };
    check(
        &doc,
        At::Response("delete", "/v1/schedules/{id}", "200"),
        &deleted,
        &deleted,
    );
}

#[test]
fn worker_bodies_match_the_description() {
    let doc = spec();
    let registration = |full: bool| Registration {
        worker_id: "worker-local".into(),
        capabilities: if full {
            WorkerCapabilities {
                cpu: Some(8),
                memory: Some("16Gi".into()),
                gpu: Some(Gpu::Present(false)),
                models: vec!["llama3-8b-q4".into()],
                tools: vec!["bash".into()],
                locality: Some("local".into()),
            }
        } else {
            WorkerCapabilities::default()
        },
    };
    check(
        &doc,
        At::Request("post", "/v1/workers/register"),
        &registration(true),
        &registration(false),
    );
    let counted = Registration {
        capabilities: WorkerCapabilities {
            gpu: Some(Gpu::Count(2)),
            ..WorkerCapabilities::default()
        },
        ..registration(false)
    };
    conforms(&doc, &At::Request("post", "/v1/workers/register"), &counted);
    let registered = Registered {
        accepted: true,
        heartbeat_interval_seconds: 5,
    };
    check(
        &doc,
        At::Response("post", "/v1/workers/register", "200"),
        &registered,
        &registered,
    );
    let listed = |full: bool| WorkerList {
        total: 1,
        returned: u64::from(full),
        limit: 100,
        offset: 0,
        workers: if full {
            vec![WorkerInfo {
                worker_id: "worker-local".into(),
                capabilities: registration(true).capabilities,
                stats: WorkerStats {
                    queue_depth: Some(0),
                    running_tasks: Some(2),
                    cpu_utilization: Some(0.5),
                    memory_utilization: Some(0.25),
                    health: Some("healthy".into()),
                },
                registered_at: at(0),
                last_heartbeat: at(5),
                alive: true,
            }]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/workers", "200"),
        &listed(true),
        &listed(false),
    );
    let heartbeat = Heartbeat {
        stats: WorkerStats {
            queue_depth: Some(0),
            running_tasks: Some(1),
            cpu_utilization: Some(15.0),
            memory_utilization: Some(20.0),
            health: Some("healthy".into()),
        },
        timestamp_unix: Some(1_796_000_000),
        running: vec![RunningAttempt {
            job_id: JobId::new("job-1"),
            task_id: "t1".into(),
            lease_id: "lease-1-abc".into(),
        }],
    };
    check(
        &doc,
        At::Request("post", "/v1/workers/{id}/heartbeat"),
        &heartbeat,
        &Heartbeat::default(),
    );
    let ack = |stop: bool| HeartbeatAck {
        accepted: true,
        leases_extended: 1,
        stop_leases: if stop {
            vec!["lease-1-abc".into()]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("post", "/v1/workers/{id}/heartbeat", "200"),
        &ack(true),
        &ack(false),
    );
    check(
        &doc,
        At::Component("Assignment"),
        &assignment(true),
        &assignment(false),
    );
    let polled = |full: bool| Assignments {
        assignments: if full {
            vec![assignment(true)]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/workers/{id}/assignments", "200"),
        &polled(true),
        &polled(false),
    );
    check(
        &doc,
        At::Request("post", "/v1/tasks/report"),
        &report(true),
        &report(false),
    );
    let accepted = Accepted { accepted: true };
    check(
        &doc,
        At::Response("post", "/v1/tasks/report", "200"),
        &accepted,
        &accepted,
    );
}

#[test]
fn admin_and_operations_bodies_match_the_description() {
    let doc = spec();
    let discarded = |dry_run: bool| DiscardOutcome {
        dry_run,
        requested: 3,
        discarded: 2,
    };
    check(
        &doc,
        At::Response("post", "/v1/admin/queue/dead-letter/discard", "200"),
        &discarded(true),
        &discarded(false),
    );
    let dead = |full: bool| DeadLetterList {
        tasks: if full {
            vec![dead_letter()]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/admin/queue/dead-letter", "200"),
        &dead(true),
        &dead(false),
    );
    check(
        &doc,
        At::Component("DeadLetter"),
        &dead_letter(),
        &dead_letter(),
    );
    let requeue = |dry_run: bool| RequeueRequest {
        tasks: vec![TaskKey {
            job_id: JobId::new("job-1"),
            task_id: "t1".into(),
        }],
        dry_run,
    };
    check(
        &doc,
        At::Request("post", "/v1/admin/queue/dead-letter"),
        &requeue(true),
        &requeue(false),
    );
    let outcome = |dry_run: bool| RequeueOutcome {
        dry_run,
        requested: 1,
        requeued: 1,
    };
    check(
        &doc,
        At::Response("post", "/v1/admin/queue/dead-letter", "200"),
        &outcome(true),
        &outcome(false),
    );
    let page = |full: bool| AuditPage {
        returned: u64::from(full),
        limit: 50,
        offset: 0,
        events: if full {
            vec![audit_event()]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/admin/audit", "200"),
        &page(true),
        &page(false),
    );
    let verification = |full: bool| ServerVerification {
        ok: !full,
        checked: 2,
        head_hash: "cd".repeat(32),
        first_bad_id: full.then_some(2),
    };
    check(
        &doc,
        At::Response("get", "/v1/admin/audit/verify", "200"),
        &verification(true),
        &verification(false),
    );
    let health = Health {
        status: "ok".into(),
    };
    check(
        &doc,
        At::Response("get", "/healthz", "200"),
        &health,
        &health,
    );
    let ready = |full: bool| Readiness {
        status: "ready".into(),
        store: full.then(|| "postgres".into()),
        queue: full.then(|| "redis".into()),
    };
    // The gateway always names both backends; the fields are optional for older gateways.
    check(
        &doc,
        At::Response("get", "/readyz", "200"),
        &ready(true),
        &ready(true),
    );
    let labels = BTreeMap::from([("route".to_owned(), "/v1/jobs".to_owned())]);
    let metrics = |full: bool| MetricsSnapshot {
        counters: if full {
            vec![MetricSample {
                name: "http_requests_total".into(),
                labels: labels.clone(),
                value: 3.0,
            }]
        } else {
            Vec::new()
        },
        gauges: Vec::new(),
        histograms: if full {
            vec![HistogramSample {
                name: "http_request_duration_seconds".into(),
                labels: labels.clone(),
                count: 3,
                sum: 0.01,
            }]
        } else {
            Vec::new()
        },
    };
    check(
        &doc,
        At::Response("get", "/v1/metrics", "200"),
        &metrics(true),
        &metrics(false),
    );
    let error = ErrorBody {
        error: "job not found".into(),
    };
    check(&doc, At::Component("Error"), &error, &error);
}
