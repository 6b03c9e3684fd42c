//! Issue 11, item 6: the seed's worker, byte for byte. The seed system's worker writes its JSON
//! by hand; these are its exact bodies, sent raw (not through `daef-client`, whose types would
//! hide a field the gateway refuses), in its order: submit, register, heartbeat, poll, report,
//! and the report again. Every backend pair must serve the sequence the same way, and must
//! accept the other register forms DESIGN.md §4 allows and refuse wrong types naming the field.

use std::time::Duration;

use daef_system_tests::GatewayConfig;
use daef_system_tests::raw::Request;
use serde_json::Value;

use crate::wire::{Env, Pair, Session, quoted, unix_now};

/// The seed's submit body.
const SUBMIT: &str =
    r#"{"type":"chat","input":"hello","policy":"enterprise-default","priority":"interactive"}"#;

/// The seed worker's registration: `gpu` is a boolean there.
const REGISTER: &str = r#"{"worker_id":"worker-local","cpu":8,"memory":"16Gi","gpu":false,"models":["llama3-8b-q4"],"tools":["bash","python"],"locality":"local"}"#;

const WORKER: &str = "worker-local";

/// How long the worker may poll before its task shows up (it is enqueued at submit; a loaded
/// machine may still be slow).
const POLL_FOR: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_worker_protocol_on_memory() {
    seed_protocol(Pair::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_worker_protocol_on_postgres_and_memory_queue() {
    seed_protocol(Pair::PostgresMemory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_worker_protocol_on_postgres_and_redis() {
    seed_protocol(Pair::PostgresRedis).await;
}

async fn seed_protocol(pair: Pair) {
    // Leases long enough that no lease expires between the poll and the report on a slow
    // machine: this test is about the bodies, not about expiry.
    let config = GatewayConfig::fast().var("DAEF_LEASE_SECONDS", "60");
    let Some(env) = Env::start(pair, "seed-protocol", config).await else {
        return;
    };
    let mut s = env.session();

    register_forms(&mut s).await;

    // Submit.
    let submitted = s.send(Request::post("/v1/jobs", SUBMIT)).await;
    s.require_status(&submitted, 202, "the seed's submit");
    let Some(job_id) = submitted.json()["job_id"].as_str().map(str::to_owned) else {
        s.abort(format!("the submit answer has no job_id\n{submitted}"));
    };

    // Register.
    let registered = s
        .send(Request::post("/v1/workers/register", REGISTER))
        .await;
    s.require_status(
        &registered,
        200,
        "the seed worker's registration (gpu:false)",
    );
    s.check(registered.json()["accepted"] == Value::Bool(true), || {
        format!("the registration is not accepted:true\n{registered}")
    });

    // Heartbeat.
    let heartbeat = format!(
        r#"{{"queue_depth":0,"running_tasks":1,"cpu_utilization":15.0,"memory_utilization":20.0,"health":"healthy","timestamp_unix":{}}}"#,
        unix_now()
    );
    let beat = s
        .send(Request::post(
            &format!("/v1/workers/{WORKER}/heartbeat"),
            heartbeat,
        ))
        .await;
    s.require_status(&beat, 200, "the seed worker's heartbeat");

    // Poll until the job's task is handed out.
    let poll = Request::get(&format!("/v1/workers/{WORKER}/assignments?max_tasks=2"));
    let (assignment, polled) = s
        .poll_until(POLL_FOR, "the job's task to be assigned", poll, |ex| {
            if ex.status() != 200 {
                return Err(format!("poll answered {}", ex.status()));
            }
            let found = ex.json()["assignments"].as_array().and_then(|list| {
                list.iter()
                    .find(|a| a["job_id"].as_str() == Some(job_id.as_str()))
                    .cloned()
            });
            Ok(found.map(|a| (a, ex.clone())))
        })
        .await;
    s.check(assignment["task_id"] == "t1", || {
        format!("the chat job's task is not t1\n{polled}")
    });
    s.check(assignment["type"] == "llm_inference", || {
        format!("the chat job's task is not of type llm_inference\n{polled}")
    });
    s.check(assignment["attempt"] == 1, || {
        format!("the first assignment is not attempt 1\n{polled}")
    });
    let (Some(task_id), Some(lease_id)) = (
        assignment["task_id"].as_str().map(str::to_owned),
        assignment["lease_id"]
            .as_str()
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    ) else {
        s.abort(format!(
            "the assignment has no task_id or lease_id\n{polled}"
        ));
    };

    // Report, as the seed worker writes it.
    let uri = format!("artifact://{job_id}/{task_id}/output.json");
    let report = format!(
        r#"{{"worker_id":"{WORKER}","job_id":{},"task_id":{},"lease_id":{},"idempotency_key":{},"status":"Completed","output_artifact_uri":{},"duration_millis":12}}"#,
        quoted(&job_id),
        quoted(&task_id),
        quoted(&lease_id),
        quoted(&format!("{WORKER}:{job_id}:{task_id}:1")),
        quoted(&uri),
    );
    let reported = s
        .send(Request::post("/v1/tasks/report", report.clone()))
        .await;
    s.require_status(&reported, 200, "the seed worker's report");

    let job = s.send(Request::get(&format!("/v1/jobs/{job_id}"))).await;
    s.require_status(&job, 200, "reading the job");
    s.check(job.json()["status"] == "Completed", || {
        format!("the job is not Completed after its only task was\n{job}")
    });
    s.check(job.json()["result_artifact_uri"] == uri.as_str(), || {
        format!("the job's result_artifact_uri is not the reported {uri}\n{job}")
    });
    let tasks = s
        .send(Request::get(&format!("/v1/jobs/{job_id}/tasks")))
        .await;
    s.require_status(&tasks, 200, "reading the job's tasks");

    // The same report again: accepted, nothing changes.
    let again = s.send(Request::post("/v1/tasks/report", report)).await;
    s.expect_status(&again, 200, "the identical report, sent again");
    let job_after = s.send(Request::get(&format!("/v1/jobs/{job_id}"))).await;
    s.check(job_after.json() == job.json(), || {
        format!("the repeated report changed the job\nbefore:\n{job}\nafter:\n{job_after}")
    });
    let tasks_after = s
        .send(Request::get(&format!("/v1/jobs/{job_id}/tasks")))
        .await;
    s.check(tasks_after.json() == tasks.json(), || {
        format!("the repeated report changed the tasks\nbefore:\n{tasks}\nafter:\n{tasks_after}")
    });

    heartbeat_bodies(&mut s).await;
    s.finish();
}

/// The register forms DESIGN.md §4 accepts besides the seed's, and wrong types refused with a
/// message naming the field. Other worker ids: none of them polls.
async fn register_forms(s: &mut Session) {
    let count = s
        .send(Request::post(
            "/v1/workers/register",
            r#"{"worker_id":"worker-gpu-count","cpu":8,"memory":"16Gi","gpu":2,"models":["llama3-8b-q4"],"tools":["bash","python"],"locality":"local"}"#,
        ))
        .await;
    if s.expect_status(&count, 200, "register with gpu as a count") {
        s.check(count.json()["accepted"] == Value::Bool(true), || {
            format!("register with gpu as a count is not accepted:true\n{count}")
        });
    }
    // One wrong field per body, so that each refusal can only be about that field.
    for (body, field) in [
        (r#"{"worker_id":"worker-bad-cpu","cpu":"x"}"#, "cpu"),
        (r#"{"worker_id":"worker-bad-gpu","gpu":"yes"}"#, "gpu"),
        (
            r#"{"worker_id":"worker-bad-models","models":[1]}"#,
            "models",
        ),
    ] {
        let refused = s.send(Request::post("/v1/workers/register", body)).await;
        s.expect_error(
            &refused,
            400,
            &[field],
            &format!("register with a wrong type for {field}"),
        );
    }
}

/// Heartbeat bodies: an empty object is fine (every field is optional); no body, or a body
/// that is not an object, is a 400.
async fn heartbeat_bodies(s: &mut Session) {
    let path = format!("/v1/workers/{WORKER}/heartbeat");
    for (body, status, what) in [
        ("{}", 200, "heartbeat {}"),
        ("", 400, "heartbeat with an empty body"),
        ("[]", 400, "heartbeat []"),
    ] {
        let beat = s.send(Request::post(&path, body)).await;
        s.expect_status(&beat, status, what);
    }
}
