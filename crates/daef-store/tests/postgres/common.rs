//! Shared fixtures: a migrated store in a schema of its own, fixed clocks, and jobs built the
//! way the engine builds them.

use std::collections::BTreeMap;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{Job, JobId, Task, TaskRef};
use daef_core::planner::{JobSpec, TaskSpec};
use daef_core::transition::{self, Timing};
use daef_store::PostgresStore;
use daef_store::postgres::PostgresOptions;
use daef_testenv::postgres::{TestSchema, fresh_schema};

/// A migrated store in its own schema. Fields drop in order: the pool closes before the schema
/// is dropped.
pub(crate) struct Env {
    pub(crate) store: PostgresStore,
    /// Held for its `Drop`, which removes the schema.
    pub(crate) _schema: TestSchema,
}

/// A migrated store, or `None` when the test is skipped (no Postgres and not required).
pub(crate) async fn env() -> Option<Env> {
    env_with(16).await
}

/// [`env`] with a pool of `max_connections`.
pub(crate) async fn env_with(max_connections: usize) -> Option<Env> {
    let schema = fresh_schema().await?;
    let options = PostgresOptions {
        schema: Some(schema.schema.clone()),
        max_connections,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(&schema.dsn, &options)
        .await
        .expect("connect to the test schema");
    store.migrate().await.expect("migrate the test schema");
    Some(Env {
        store,
        _schema: schema,
    })
}

/// A fixed point in time plus `secs` seconds: tests pass `now` and never sleep.
pub(crate) fn at(secs: u64) -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-26T10:00:00.000001Z")
        .expect("valid timestamp")
        .plus(Duration::from_secs(secs))
}

/// The default timing: 15 s leases, re-dispatch after 10 s.
pub(crate) fn timing() -> Timing {
    Timing::default()
}

/// One task of a test DAG: id, dependencies, max_retries, timeout_sec.
pub(crate) type Spec<'a> = (&'a str, &'a [&'a str], u32, u32);

/// A job and its tasks, built as `Engine::submit` builds them, with a chosen id (so runs against
/// two stores can be compared).
pub(crate) fn job(
    id: &str,
    tenant: &str,
    specs: &[Spec<'_>],
    now: Timestamp,
    timing: Timing,
) -> (Job, Vec<Task>) {
    let spec = JobSpec {
        job_type: "chat".to_owned(),
        input: format!("input of {id}"),
        tasks: Some(
            specs
                .iter()
                .map(|&(task_id, deps, max_retries, timeout_sec)| TaskSpec {
                    task_id: task_id.to_owned(),
                    task_type: "llm_inference".to_owned(),
                    inputs: BTreeMap::from([("prompt".to_owned(), format!("do {task_id}"))]),
                    dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
                    max_retries: Some(max_retries),
                    timeout_sec: Some(timeout_sec),
                    retry_backoff: None,
                })
                .collect(),
        ),
        ..JobSpec::default()
    };
    let (mut job, mut tasks) =
        transition::create_job(&spec, tenant, now, timing).expect("a valid DAG");
    job.job_id = JobId::new(id);
    for task in &mut tasks {
        task.job_id = job.job_id.clone();
    }
    (job, tasks)
}

/// `job_id|task_id` as a reference.
pub(crate) fn task_ref(job: &str, task: &str) -> TaskRef {
    TaskRef::new(JobId::new(job), task)
}
