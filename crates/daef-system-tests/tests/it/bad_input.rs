//! Issue 11, item 8: input the gateway must refuse, on every backend pair, with a 4xx that
//! names the problem — never a 5xx, never a changed job or worker:
//! - a NUL character (`\u0000`) in any string of a JSON body: 400 naming the field and `NUL`
//!   (Postgres cannot store it; the memory store must refuse it too, so that the backends agree);
//! - `%00` in a query filter: 400; in a path segment: 404 (no such resource can exist);
//! - an `X-DAEF-Tenant` header that is not UTF-8: 400 naming the header;
//! - a large body refused by authentication (401) or scope (403): the connection stays usable,
//!   or the refusal says `Connection: close` and the server closes cleanly (never a reset that
//!   loses the answer);
//! - another tenant's job: answered exactly as an unknown job, byte for byte (no existence
//!   oracle).
//!
//! A worker holding a running task sees its bad report refused and can still report it.

use std::collections::BTreeMap;

use daef_system_tests::GatewayConfig;
use daef_system_tests::raw::{self, Conn, Request};
use serde_json::Value;

use crate::wire::{Env, Exchange, Pair, Session, quoted};

const TOKENS: &str = "op:operator,wrk:worker,acme:tenant:acme,beta:tenant:beta";
const OPERATOR: &str = "op";
const WORKER_TOKEN: &str = "wrk";
const ACME: &str = "acme";
const BETA: &str = "beta";

/// The worker that holds a running task during the test.
const WORKER: &str = "worker-bad";

/// A well-formed job id that no job has.
const UNKNOWN_JOB: &str = "job-00000000-0000-7000-8000-000000000000";

const CHAT: &str = r#"{"type":"chat","input":"hello"}"#;

/// A schedule of tenant acme that does not fire during the test (and is then paused).
const NIGHTLY: &str =
    r#"{"schedule_id":"acme-nightly","cron":"0 3 * * *","job":{"type":"chat","input":"hi"}}"#;

/// The job whose task our worker holds while the bad requests go by: one task, with a timeout
/// (which caps its lease) long enough to outlast them however slow the machine.
const LONG_CHAT: &str = r#"{"type":"chat","input":"hello","tasks":[{"task_id":"t1","type":"llm_inference","timeout_sec":900}]}"#;

/// Tries per refused-large-body check (each on a fresh connection): a reset that loses the
/// answer depends on timing, so one try proves little.
const KEEP_ALIVE_TRIES: usize = 20;

/// Size of the refused bodies.
const LARGE_BODY: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_memory() {
    bad_input(Pair::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_postgres_and_memory_queue() {
    bad_input(Pair::PostgresMemory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_postgres_and_redis() {
    bad_input(Pair::PostgresRedis).await;
}

async fn bad_input(pair: Pair) {
    // A lease that outlives the test (with LONG_CHAT's timeout): the running task must still be
    // the worker's when the bad requests are over, however slow the machine.
    let config = GatewayConfig::fast()
        .var("DAEF_LEASE_SECONDS", "600")
        .var("DAEF_API_TOKENS", TOKENS);
    let Some(env) = Env::start(pair, "bad-input", config).await else {
        return;
    };
    let mut s = env.session();

    // A job whose task runs on our worker, and a queued job of tenant acme.
    let running_job = submit(&mut s, ACME, LONG_CHAT).await;
    let register = s
        .send(
            Request::post(
                "/v1/workers/register",
                format!(r#"{{"worker_id":"{WORKER}","cpu":2,"tools":["bash"]}}"#),
            )
            .bearer(WORKER_TOKEN),
        )
        .await;
    s.require_status(&register, 200, "registering the test's worker");
    let poll =
        Request::get(&format!("/v1/workers/{WORKER}/assignments?max_tasks=1")).bearer(WORKER_TOKEN);
    let assignment = s
        .poll_until(
            std::time::Duration::from_secs(30),
            "the first job's task to be assigned",
            poll,
            |ex| {
                if ex.status() != 200 {
                    return Err(format!("poll answered {}", ex.status()));
                }
                Ok(ex.json()["assignments"]
                    .as_array()
                    .and_then(|list| list.first().cloned()))
            },
        )
        .await;
    let (Some(task_id), Some(lease_id)) = (
        assignment["task_id"].as_str().map(str::to_owned),
        assignment["lease_id"].as_str().map(str::to_owned),
    ) else {
        s.abort(format!(
            "an assignment without task_id or lease_id: {assignment}"
        ));
    };
    s.check(assignment["job_id"] == running_job.as_str(), || {
        format!("the worker was handed {assignment}, not a task of {running_job}")
    });
    let queued_job = submit(&mut s, ACME, CHAT).await;
    let schedule = s
        .send(Request::post("/v1/schedules", NIGHTLY).bearer(ACME))
        .await;
    s.require_status(&schedule, 201, "creating a schedule");

    let jobs = [running_job.as_str(), queued_job.as_str()];
    let before = snapshot(&mut s, &jobs).await;

    nul_in_bodies(&mut s).await;
    nul_in_report(&mut s, &running_job, &task_id, &lease_id).await;
    nul_in_queries_and_paths(&mut s, &queued_job).await;
    invalid_tenant_header(&mut s).await;
    refused_large_bodies(&mut s).await;
    tenant_privacy(&mut s, &queued_job, &task_id).await;
    bad_schedules(&mut s).await;

    // Nothing changed: no job created, canceled or advanced, no lease touched, no worker
    // registered by a refused registration.
    let after = snapshot(&mut s, &jobs).await;
    for (key, value) in &before {
        let now = after.get(key).cloned().unwrap_or_default();
        s.check(&now == value, || {
            format!("{key} changed across the bad requests\n    before: {value}\n    after:  {now}")
        });
    }
    for worker in ["worker-nul-locality", "worker-nul-models"] {
        let probe = s
            .send(
                Request::post(&format!("/v1/workers/{worker}/heartbeat"), "{}")
                    .bearer(WORKER_TOKEN),
            )
            .await;
        s.expect_status(
            &probe,
            404,
            &format!("{worker}, refused at registration, is still unknown"),
        );
    }

    // The worker is not stuck: the task its bad reports were about takes a clean report.
    let uri = format!("artifact://{running_job}/{task_id}/output.json");
    let clean = s
        .send(
            Request::post(
                "/v1/tasks/report",
                report_body(
                    &running_job,
                    &task_id,
                    &lease_id,
                    "Completed",
                    &[("output_artifact_uri", &uri)],
                ),
            )
            .bearer(WORKER_TOKEN),
        )
        .await;
    s.expect_status(
        &clean,
        200,
        "a clean report of the task after the refused ones",
    );
    let job = s
        .send(Request::get(&format!("/v1/jobs/{running_job}")).bearer(OPERATOR))
        .await;
    s.check(
        job.json()["status"] == "Completed" && job.json()["result_artifact_uri"] == uri.as_str(),
        || format!("the job did not complete with {uri} after the clean report\n{job}"),
    );
    s.finish();
}

/// Submits `body` with `token`; the job's id.
async fn submit(s: &mut Session, token: &str, body: &str) -> String {
    let submitted = s.send(Request::post("/v1/jobs", body).bearer(token)).await;
    s.require_status(&submitted, 202, "a clean submit");
    match submitted.json()["job_id"].as_str() {
        Some(id) => id.to_owned(),
        None => s.abort(format!("the submit answer has no job_id\n{submitted}")),
    }
}

/// What must not change: the number of jobs, and every field of these jobs and their tasks
/// (status, attempt, worker, lease and its expiry, output, timestamps), read as the operator.
async fn snapshot(s: &mut Session, jobs: &[&str]) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    let count = s
        .send(Request::get("/v1/jobs?limit=1").bearer(OPERATOR))
        .await;
    s.require_status(&count, 200, "counting the jobs");
    state.insert("the job count".to_owned(), count.json()["total"].clone());
    let schedules = s.send(Request::get("/v1/schedules").bearer(OPERATOR)).await;
    s.require_status(&schedules, 200, "listing the schedules");
    state.insert("GET /v1/schedules".to_owned(), schedules.json());
    for job in jobs {
        for path in [format!("/v1/jobs/{job}"), format!("/v1/jobs/{job}/tasks")] {
            let read = s.send(Request::get(&path).bearer(OPERATOR)).await;
            s.require_status(&read, 200, &format!("reading {path}"));
            state.insert(format!("GET {path}"), read.json());
        }
    }
    state
}

/// Checks a 400 whose message names `field` and says `NUL`.
fn expect_nul(s: &mut Session, exchange: &Exchange, field: &str, what: &str) {
    s.expect_error(exchange, 400, &[field, "NUL"], what);
}

/// NUL in the strings of submit, register, heartbeat and dead-letter requeue and discard bodies.
async fn nul_in_bodies(s: &mut Session) {
    let heartbeat = format!("/v1/workers/{WORKER}/heartbeat");
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            ACME,
            "/v1/jobs",
            r#"{"type":"chat","input":"a\u0000b"}"#,
            "input",
        ),
        (
            ACME,
            "/v1/jobs",
            r#"{"type":"ch\u0000at","input":"hello"}"#,
            "type",
        ),
        (
            ACME,
            "/v1/jobs",
            r#"{"type":"chat","input":"hello","policy":"p\u0000"}"#,
            "policy",
        ),
        (
            ACME,
            "/v1/jobs",
            r#"{"type":"x","tasks":[{"task_id":"a","type":"t","inputs":{"k":"a\u0000b"}}]}"#,
            "tasks[0].inputs.k",
        ),
        (
            WORKER_TOKEN,
            "/v1/workers/register",
            r#"{"worker_id":"worker-nul-locality","locality":"a\u0000b"}"#,
            "locality",
        ),
        (
            WORKER_TOKEN,
            "/v1/workers/register",
            r#"{"worker_id":"worker-nul-models","models":["llama\u0000"]}"#,
            "models",
        ),
        (
            WORKER_TOKEN,
            heartbeat.as_str(),
            r#"{"health":"healthy\u0000"}"#,
            "health",
        ),
        (
            OPERATOR,
            "/v1/admin/queue/dead-letter",
            r#"{"tasks":[{"job_id":"a\u0000b","task_id":"t"}]}"#,
            "job_id",
        ),
        (
            OPERATOR,
            "/v1/admin/queue/dead-letter/discard",
            r#"{"tasks":[{"job_id":"j","task_id":"t\u0000"}]}"#,
            "task_id",
        ),
    ];
    for (token, path, body, field) in cases {
        let refused = s.send(Request::post(path, body).bearer(token)).await;
        expect_nul(s, &refused, field, &format!("NUL in {field} (POST {path})"));
    }
}

/// A report body for the running task, with `extra` string fields.
fn report_body(
    job_id: &str,
    task_id: &str,
    lease_id: &str,
    status: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut body = format!(
        r#"{{"worker_id":"{WORKER}","job_id":{},"task_id":{},"lease_id":{},"status":"{status}""#,
        quoted(job_id),
        quoted(task_id),
        quoted(lease_id),
    );
    for (name, value) in extra {
        body.push_str(&format!(",\"{name}\":{}", quoted(value)));
    }
    body.push('}');
    body
}

/// NUL in a report of a task that is really running on our worker.
async fn nul_in_report(s: &mut Session, job_id: &str, task_id: &str, lease_id: &str) {
    let uri = format!("artifact://{job_id}/{task_id}/output.json");
    let cases = [
        (
            report_body(&format!("{job_id}\0"), task_id, lease_id, "Completed", &[]),
            "job_id",
        ),
        (
            report_body(job_id, task_id, lease_id, "Failed", &[("error", "boom\0")]),
            "error",
        ),
        (
            report_body(
                job_id,
                task_id,
                lease_id,
                "Completed",
                &[("output_artifact_uri", &format!("{uri}\0"))],
            ),
            "output_artifact_uri",
        ),
    ];
    for (body, field) in cases {
        let refused = s
            .send(Request::post("/v1/tasks/report", body).bearer(WORKER_TOKEN))
            .await;
        expect_nul(s, &refused, field, &format!("NUL in the report's {field}"));
    }
}

/// `%00` in query filters (400) and in path segments (404).
async fn nul_in_queries_and_paths(s: &mut Session, job_id: &str) {
    let queries = [
        "/v1/jobs?tenant=a%00b".to_owned(),
        format!("/v1/jobs/{job_id}/tasks?worker_id=w%00"),
        "/v1/admin/audit?actor=a%00".to_owned(),
        "/v1/admin/audit?action=a%00".to_owned(),
        "/v1/admin/audit?tenant=a%00".to_owned(),
        "/v1/admin/audit?result=a%00".to_owned(),
        "/v1/workers?limit=1%00".to_owned(),
        "/v1/workers?offset=x".to_owned(),
    ];
    for path in queries {
        let refused = s.send(Request::get(&path).bearer(OPERATOR)).await;
        s.expect_status(&refused, 400, &format!("bad query: GET {path}"));
    }
    let paths = [
        Request::get("/v1/jobs/%00").bearer(OPERATOR),
        Request::get("/v1/jobs/%00/tasks").bearer(OPERATOR),
        Request::get("/v1/workers/w%00/assignments").bearer(WORKER_TOKEN),
        Request::post("/v1/workers/w%00/heartbeat", "{}").bearer(WORKER_TOKEN),
    ];
    for request in paths {
        let what = format!(
            "%00 in a path segment: {} {}",
            request.method, request.target
        );
        let refused = s.send(request).await;
        s.expect_status(&refused, 404, &what);
    }
}

/// `X-DAEF-Tenant` bytes that are not UTF-8, on a submit the operator could make for any tenant.
async fn invalid_tenant_header(s: &mut Session) {
    let refused = s
        .send(
            Request::post("/v1/jobs", CHAT)
                .bearer(OPERATOR)
                .header("X-DAEF-Tenant", [0xff, 0xfe]),
        )
        .await;
    s.expect_error(
        &refused,
        400,
        &["X-DAEF-Tenant"],
        "a submit whose X-DAEF-Tenant is not UTF-8",
    );
}

/// A 64 KB submit refused by authentication (bad token: 401) and by scope (worker token: 403).
/// The client has sent its whole body and reads the refusal; then either the connection still
/// serves `GET /healthz`, or the refusal said `Connection: close` and the server closed the
/// connection cleanly. A reset, before the refusal or instead of the close, fails.
async fn refused_large_bodies(s: &mut Session) {
    let padding = "x".repeat(LARGE_BODY - r#"{"type":"chat","input":""}"#.len());
    let body = format!(r#"{{"type":"chat","input":"{padding}"}}"#);
    for (token, status, what) in [
        ("nope", 401, "a 64 KB submit with an invalid token"),
        (WORKER_TOKEN, 403, "a 64 KB submit with a worker's token"),
    ] {
        let request = Request::post("/v1/jobs", body.clone()).bearer(token);
        let mut failures = Vec::new();
        let mut kept = 0;
        let mut closed = 0;
        for attempt in 1..=KEEP_ALIVE_TRIES {
            match refusal_then_health(s, &request, status).await {
                Ok(Reuse::Kept) => kept += 1,
                Ok(Reuse::Closed) => closed += 1,
                Err(why) => failures.push(format!("try {attempt}: {why}")),
            }
        }
        s.check(failures.is_empty(), || {
            format!(
                "{what}: {} of {KEEP_ALIVE_TRIES} tries failed ({kept} kept the connection, \
                 {closed} closed it cleanly); the first:\n    {}",
                failures.len(),
                failures[0].replace('\n', "\n    ")
            )
        });
    }
}

/// How a connection fared after a refusal.
enum Reuse {
    /// It served the next request.
    Kept,
    /// The refusal said `Connection: close` and the server then closed cleanly.
    Closed,
}

async fn refusal_then_health(
    s: &mut Session,
    request: &Request,
    status: u16,
) -> Result<Reuse, String> {
    let mut conn = Conn::open(&s.addr)
        .await
        .map_err(|e| format!("{e}\n> {request}"))?;
    // The whole body is written before anything is read, as an ordinary client does; a
    // failed write still leaves a response to look for.
    let written = conn.send(request).await;
    let refusal = match conn.receive().await {
        Ok(response) => response,
        Err(err) => {
            let reset = if err.is_reset() { " (reset)" } else { "" };
            return Err(format!(
                "no refusal read{reset}: {err}; the write: {}\n> {request}",
                written.map_or_else(|e| e.to_string(), |()| "complete".to_owned())
            ));
        }
    };
    let exchange = Exchange {
        request: request.clone(),
        response: refusal.clone(),
    };
    s.saw(&exchange);
    if let Err(err) = written {
        return Err(format!(
            "writing the body failed ({err}) although a refusal came: the server reset the \
             connection while the body was being sent\n{exchange}"
        ));
    }
    if refusal.status != status {
        return Err(format!("expected {status}\n{exchange}"));
    }
    if refusal.closes() {
        return conn
            .expect_close()
            .await
            .map(|()| Reuse::Closed)
            .map_err(|e| format!("the refusal said Connection: close, but then: {e}\n{exchange}"));
    }
    let health = raw::Request::get("/healthz");
    match conn.exchange(&health).await {
        Ok(response) if response.status == 200 => Ok(Reuse::Kept),
        Ok(response) => Err(format!(
            "GET /healthz on the same connection answered\n    < {response}\nafter\n{exchange}"
        )),
        Err(err) => Err(format!(
            "the refusal kept the connection open (no Connection: close), but GET /healthz on \
             it failed: {err}\n{exchange}"
        )),
    }
}

/// Tenant beta asks about tenant acme's job: every answer is byte for byte the answer about a
/// job that does not exist.
async fn tenant_privacy(s: &mut Session, job_id: &str, task_id: &str) {
    let requests = |id: &str| {
        [
            Request::get(&format!("/v1/jobs/{id}")),
            Request::get(&format!("/v1/jobs/{id}/tasks")),
            Request::get(&format!("/v1/jobs/{id}/events")),
            Request::delete(&format!("/v1/jobs/{id}")),
            Request::post(
                "/v1/tasks/report",
                report_body(id, task_id, "lease-of-nobody", "Completed", &[]),
            ),
        ]
    };
    for (foreign, unknown) in requests(job_id).into_iter().zip(requests(UNKNOWN_JOB)) {
        let foreign = s.send(foreign.bearer(BETA)).await;
        let unknown = s.send(unknown.bearer(BETA)).await;
        let what = format!(
            "another tenant's job ({} {})",
            foreign.request.method, foreign.request.target
        );
        s.check(
            foreign.status() == unknown.status() && foreign.response.body == unknown.response.body,
            || {
                format!(
                    "{what} is answered differently from an unknown job\n  another tenant's \
                     job:\n{foreign}\n  an unknown job:\n{unknown}"
                )
            },
        );
        s.check(
            unknown.status() == 404 && unknown.response.body == br#"{"error":"job not found"}"#,
            || format!("an unknown job is not 404 {{\"error\":\"job not found\"}}\n{unknown}"),
        );
    }
}

/// Schedule requests refused with a 4xx naming the problem, changing no schedule; another
/// tenant's schedule is answered as an unknown one.
async fn bad_schedules(s: &mut Session) {
    let job = r#""job":{"type":"chat","input":"hi"}"#;
    let cases: Vec<(String, u16, &[&str])> = vec![
        (format!(r#"{{"cron":"* * * * *",{job}}}"#), 400, &["schedule_id"]),
        (
            format!(r#"{{"schedule_id":"has space","cron":"* * * * *",{job}}}"#),
            400,
            &["schedule_id"],
        ),
        (format!(r#"{{"schedule_id":"s1",{job}}}"#), 400, &["cron"]),
        (
            format!(r#"{{"schedule_id":"s1","cron":"* * * *",{job}}}"#),
            400,
            &["cron", "5 fields"],
        ),
        (
            format!(r#"{{"schedule_id":"s1","cron":"0 * * * * *",{job}}}"#),
            400,
            &["cron", "5 fields"],
        ),
        (
            format!(r#"{{"schedule_id":"s1","cron":"61 * * * *",{job}}}"#),
            400,
            &["cron"],
        ),
        (
            format!(r#"{{"schedule_id":"s1","cron":"0 0 30 2 *",{job}}}"#),
            400,
            &["never fires"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *"}"#.to_owned(),
            400,
            &["job"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":"chat"}"#.to_owned(),
            400,
            &["job"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"input":"hi"}}"#.to_owned(),
            400,
            &["job.type"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"chat"}}"#.to_owned(),
            400,
            &["job.input"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"chat","input":"hi","delay_seconds":60}}"#.to_owned(),
            400,
            &["job.delay_seconds"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"chat","input":"hi","run_at":"2030-01-01T00:00:00Z"}}"#.to_owned(),
            400,
            &["job.run_at"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"x","tasks":[{"task_id":"a b","type":"t"}]}}"#.to_owned(),
            400,
            &["tasks[0].task_id"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"x","tasks":[{"task_id":"a","type":"t","dependencies":["a"]}]}}"#.to_owned(),
            400,
            &["tasks"],
        ),
        (
            format!(r#"{{"schedule_id":"s1","cron":"* * * * *","paused":"yes",{job}}}"#),
            400,
            &["paused"],
        ),
        (
            r#"{"schedule_id":"s1","cron":"* * * * *","job":{"type":"chat","input":"a\u0000b"}}"#
                .to_owned(),
            400,
            &["input", "NUL"],
        ),
        (
            format!(r#"{{"schedule_id":"s1","cron":"* *\u0000 * * *",{job}}}"#),
            400,
            &["cron", "NUL"],
        ),
        (
            format!(r#"{{"schedule_id":"acme-nightly","cron":"* * * * *",{job}}}"#),
            409,
            &["acme-nightly", "already exists"],
        ),
    ];
    for (body, status, words) in &cases {
        let refused = s
            .send(Request::post("/v1/schedules", body.as_str()).bearer(ACME))
            .await;
        s.expect_error(&refused, *status, words, &format!("creating {body}"));
    }
    // A tenant token cannot create a schedule for another tenant.
    let foreign = s
        .send(
            Request::post(
                "/v1/schedules",
                r#"{"schedule_id":"s2","cron":"* * * * *","job":{"type":"chat","input":"hi","tenant":"acme"}}"#,
            )
            .bearer(BETA),
        )
        .await;
    s.expect_status(&foreign, 403, "a schedule for another tenant");
    // Another tenant's schedule reads exactly as an unknown one.
    let requests = |id: &str| {
        [
            Request::get(&format!("/v1/schedules/{id}")),
            Request::delete(&format!("/v1/schedules/{id}")),
            Request::post(&format!("/v1/schedules/{id}/pause"), ""),
            Request::post(&format!("/v1/schedules/{id}/resume"), ""),
        ]
    };
    for (foreign, unknown) in requests("acme-nightly")
        .into_iter()
        .zip(requests("no-such-schedule"))
    {
        let foreign = s.send(foreign.bearer(BETA)).await;
        let unknown = s.send(unknown.bearer(BETA)).await;
        s.check(
            foreign.status() == 404
                && unknown.status() == 404
                && foreign.response.body == unknown.response.body
                && unknown.response.body == br#"{"error":"schedule not found"}"#,
            || format!("another tenant's schedule is not answered as an unknown one\n{foreign}\n{unknown}"),
        );
    }
    let hidden = s.send(Request::get("/v1/schedules").bearer(BETA)).await;
    s.check(hidden.json()["total"] == 0, || {
        format!("tenant beta sees acme's schedules\n{hidden}")
    });
}
