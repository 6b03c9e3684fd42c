//! The store suite: every behaviour the engine relies on from a [`Store`], as plain async
//! functions. Each backend runs all of them through [`store_suite!`](crate::store_suite).
//!
//! A factory for the macro must return an empty store that no other test shares (`tests/it/`
//! gives each test a new `MemoryStore` or a Postgres schema of its own), since behaviours check
//! store-wide results: audit ids counted from 1, every lease a pass expires, every orphan, the
//! number of dead letters, job totals. Time is passed explicitly and never slept on.
//!
//! The behaviours live in one file per area, as OpenDAL splits its behaviour tests: `jobs.rs`
//! (insert, read back, list, cancel), `leases.rs` (assignment under a lease), `reports.rs`,
//! `workers.rs` (registration and heartbeats), `reconciler.rs` (lapsed leases and orphans),
//! `dead_letters.rs`, `audit.rs`, `backoff.rs`, `retention.rs` and `schedules.rs`. All are re-exported here, so `store::<behaviour>` names each
//! one; this module keeps the shared fixtures and the [`store_suite!`](crate::store_suite) list.
//! Adding a behaviour is one function in its area's file plus one line in that list.

use std::collections::BTreeMap;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::audit::AuditDraft;
use daef_core::model::{Job, JobId, Priority, Report, ReportStatus, RetryBackoff, Task, TaskRef};
use daef_core::planner::{JobSpec, TaskSpec};
use daef_core::ports::{ReportOutcome, Store, TaskQuery};
use daef_core::transition::{self, Timing};

mod audit;
mod backoff;
mod dead_letters;
mod jobs;
mod leases;
mod reconciler;
mod reports;
mod retention;
mod schedules;
mod workers;

pub use audit::*;
pub use backoff::*;
pub use dead_letters::*;
pub use jobs::*;
pub use leases::*;
pub use reconciler::*;
pub use reports::*;
pub use retention::*;
pub use schedules::*;
pub use workers::*;

/// Lease 15 s, orphan re-enqueue after 10 s: the gateway's defaults; failed attempts retried at
/// once unless a behaviour gives its tasks a back-off (`backoff.rs`).
pub const TIMING: Timing = Timing {
    lease: Duration::from_secs(15),
    orphan_after: Duration::from_secs(10),
    retry_backoff: RetryBackoff {
        initial_ms: 0,
        max_ms: 0,
    },
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fixed starting time for a test, so expected timestamps can be computed exactly.
fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-26T10:00:00.000001Z").expect("valid timestamp")
}

/// A task of an explicit DAG.
pub fn task_spec(id: &str, deps: &[&str], max_retries: u32, timeout_sec: u32) -> TaskSpec {
    TaskSpec {
        task_id: id.to_owned(),
        task_type: "echo".to_owned(),
        inputs: BTreeMap::from([("k".to_owned(), id.to_owned())]),
        dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
        max_retries: Some(max_retries),
        timeout_sec: Some(timeout_sec),
        retry_backoff: None,
    }
}

/// An interactive job with an explicit DAG.
pub(crate) fn job_spec(tasks: Vec<TaskSpec>) -> JobSpec {
    JobSpec {
        job_type: "test".to_owned(),
        input: "input".to_owned(),
        policy: None,
        priority: Priority::Interactive,
        tasks: Some(tasks),
        run_at: None,
    }
}

/// Stores a job with the given tasks for `tenant` and returns it.
pub async fn insert(
    store: &dyn Store,
    tenant: &str,
    tasks: Vec<TaskSpec>,
    now: Timestamp,
) -> (Job, Vec<Task>) {
    let (job, tasks) =
        transition::create_job(&job_spec(tasks), tenant, now, TIMING).expect("valid job");
    store.insert_job(&job, &tasks).await.expect("insert job");
    (job, tasks)
}

/// [`insert`] under a chosen id, for behaviours that must tell id order from time order.
async fn insert_as(
    store: &dyn Store,
    id: JobId,
    tasks: Vec<TaskSpec>,
    now: Timestamp,
) -> (Job, Vec<Task>) {
    let (mut job, mut tasks) =
        transition::create_job(&job_spec(tasks), "acme", now, TIMING).expect("valid job");
    job.job_id = id;
    for task in &mut tasks {
        task.job_id = job.job_id.clone();
    }
    store.insert_job(&job, &tasks).await.expect("insert job");
    (job, tasks)
}

/// A job of three tasks: `a` (one retry) and `b` (two) dispatchable at once, `c` waiting for `a`.
async fn insert_abc(store: &dyn Store) -> Job {
    let tasks = vec![
        task_spec("a", &[], 1, 60),
        task_spec("b", &[], 2, 60),
        task_spec("c", &["a"], 2, 60),
    ];
    insert(store, "acme", tasks, t0()).await.0
}

async fn single(store: &dyn Store, max_retries: u32, timeout_sec: u32) -> (Job, TaskRef) {
    let (job, _) = insert(
        store,
        "acme",
        vec![task_spec("a", &[], max_retries, timeout_sec)],
        t0(),
    )
    .await;
    let key = TaskRef::new(job.job_id.clone(), "a");
    (job, key)
}

async fn job_of(store: &dyn Store, id: &JobId) -> Job {
    store.job(id).await.expect("get job").expect("job exists")
}

async fn task_of(store: &dyn Store, key: &TaskRef) -> Task {
    let page = store
        .list_tasks(&key.job_id, &TaskQuery::default())
        .await
        .expect("list tasks")
        .expect("job exists");
    page.items
        .into_iter()
        .find(|t| t.task_id == key.task_id)
        .expect("task exists")
}

async fn assign(
    store: &dyn Store,
    key: &TaskRef,
    worker: &str,
    now: Timestamp,
) -> daef_core::model::Assignment {
    store
        .assign(key, worker, &transition::lease_nonce(), now, TIMING)
        .await
        .expect("assign")
        .unwrap_or_else(|| panic!("{key} should be assignable"))
}

fn report(key: &TaskRef, lease_id: &str, status: ReportStatus) -> Report {
    Report {
        worker_id: "w1".to_owned(),
        task: key.clone(),
        lease_id: lease_id.to_owned(),
        idempotency_key: None,
        status,
        output_artifact_uri: (status == ReportStatus::Completed)
            .then(|| format!("file:///out/{}", key.task_id)),
        error: (status == ReportStatus::Failed).then(|| "boom".to_owned()),
        duration_millis: Some(5),
    }
}

async fn apply(store: &dyn Store, r: &Report, now: Timestamp) -> ReportOutcome {
    store.report(r, now, TIMING).await.expect("report")
}

fn applied(outcome: ReportOutcome) -> daef_core::ports::ReportEffects {
    match outcome {
        ReportOutcome::Applied(effects) => effects,
        other => panic!("expected the report to apply, got {other:?}"),
    }
}

/// Applies a report of `status` on `key` under `lease_id` at `at`, which must take effect.
async fn reported(
    store: &dyn Store,
    key: &TaskRef,
    lease_id: &str,
    status: ReportStatus,
    at: Timestamp,
) -> daef_core::ports::ReportEffects {
    applied(apply(store, &report(key, lease_id, status), at).await)
}

fn draft(action: &str, actor: &str, tenant: &str, result: &str) -> AuditDraft {
    AuditDraft {
        action: action.to_owned(),
        actor: actor.to_owned(),
        tenant: tenant.to_owned(),
        remote_addr: "127.0.0.1:4000".to_owned(),
        resource: "/v1/admin/queue/dead-letter".to_owned(),
        payload_hash: daef_core::audit::payload_hash(br#"{"tasks":[]}"#),
        requested: 1,
        result: result.to_owned(),
        details: "details with \"quotes\" and, commas".to_owned(),
    }
}

fn uuid_suffix() -> String {
    JobId::generate()
        .as_str()
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Expands to one test per store behaviour. `$make` is an `async fn() -> Option<F>` where `F` is
/// an `Arc<dyn Store>` or an `(Arc<dyn Store>, guard)` pair (see [`crate::Fixture`]); `None` means
/// the backend is not available here (the factory says why).
#[macro_export]
macro_rules! store_suite {
    ($make:path) => {
        $crate::store_suite!(@cases $make;
            insert_then_read_back,
            duplicate_job_id_conflicts,
            list_jobs_filters_and_pages,
            list_jobs_by_key_and_capped_totals,
            keyed_inserts_store_one_job_per_key_until_it_expires,
            list_tasks_filters_and_pages,
            assign_starts_an_attempt_under_a_lease,
            assign_refuses_what_is_not_dispatchable,
            assign_many_decides_each_task_on_its_own,
            concurrent_assigners_never_double_assign,
            completion_unlocks_dependents_and_completes_the_job,
            result_is_the_chosen_sinks_output_whatever_finishes_last,
            failures_retry_then_dead_letter,
            stale_and_unassigned_reports_change_nothing,
            repeated_reports_are_idempotent,
            reports_on_canceled_jobs_change_nothing,
            reports_for_unknown_tasks_are_not_found,
            cancel_stops_unfinished_work,
            heartbeats_extend_live_leases_up_to_the_timeout,
            workers_list_by_id_with_their_capabilities_and_last_heartbeat,
            stale_leases_are_those_no_task_runs_under,
            lapsed_leases_retry_then_dead_letter,
            lapsed_leases_expire_oldest_deadline_first_and_say_why,
            unclaimed_dispatchable_tasks_are_orphans_with_back_off,
            orphan_back_off_is_capped,
            orphans_are_taken_oldest_first_with_back_off,
            requeued_dead_letters_get_a_fresh_budget,
            discarded_dead_letters_stay_failed_and_leave_the_queue_for_good,
            failed_jobs_dispatch_nothing_until_every_dead_task_is_requeued,
            dead_letters_list_oldest_first,
            audit_appends_form_one_verifiable_chain,
            concurrent_audit_appends_never_fork,
            audit_list_filters_newest_first,
            racing_transitions_never_lose_an_update,
            failed_attempts_wait_for_their_back_off,
            lapsed_leases_wait_for_their_back_off,
            delayed_jobs_are_dispatched_from_their_start,
            retention_deletes_old_finished_jobs_and_expired_keys,
            schedules_store_list_pause_resume_and_delete,
            due_schedules_fire_once_per_tick,
            concurrent_firings_of_one_tick_store_one_job,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::run(async {
                    use $crate::Fixture as _;
                    let Some(fixture) = $make().await else { return };
                    $crate::store::$case(fixture.port()).await;
                });
            }
        )+
    };
}
