//! Metric names and descriptions. The seed system's names and labels are kept exactly
//! (DESIGN.md §7); the engine records them through the `metrics` facade, so an embedding
//! service chooses its own recorder.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// References claimed from the queue (`queue_backend`, `worker_id`).
pub const QUEUE_CLAIMED_TOTAL: &str = "queue_claimed_total";
/// Claims acknowledged (`queue_backend`, `worker_id`).
pub const QUEUE_ACKED_TOTAL: &str = "queue_acked_total";
/// References returned to the queue after an attempt did not succeed (`queue_backend`,
/// `worker_id`, `reason`: `task_failed`, `lease_expired`, `timeout`, `assign_error`).
pub const QUEUE_NACKED_TOTAL: &str = "queue_nacked_total";
/// Claims whose visibility lapsed and went back to pending (`queue_backend`).
pub const QUEUE_EXPIRED_REQUEUED_TOTAL: &str = "queue_expired_requeued_total";
/// Dead letters requeued by operators (`queue_backend`).
pub const DEAD_LETTER_REQUEUED_TOTAL: &str = "dead_letter_requeued_total";
/// Finished jobs deleted by retention, with their tasks.
pub const JOBS_PURGED_TOTAL: &str = "jobs_purged_total";
/// Jobs created by periodic schedules, one per schedule and tick.
pub const SCHEDULE_FIRES_TOTAL: &str = "schedule_fires_total";
/// Dead-letter tasks discarded by operators (`queue_backend`).
pub const DEAD_LETTER_DISCARDED_TOTAL: &str = "dead_letter_discarded_total";
/// References on the queue's dead list (`queue_backend`).
pub const DEAD_LETTER_COUNT: &str = "dead_letter_count";
/// Claims that could not be turned into assignments because the store failed (`queue_backend`, `worker_id`).
pub const SCHEDULER_ASSIGNMENT_ERRORS_TOTAL: &str = "scheduler_assignment_errors_total";
/// References on the pending queues (`queue_backend`).
pub const QUEUE_PENDING_COUNT: &str = "queue_pending_count";
/// Queue references dropped because their task was no longer dispatchable (`queue_backend`).
pub const QUEUE_STALE_DROPPED_TOTAL: &str = "queue_stale_dropped_total";
/// Dispatchable tasks the reconciler enqueued again (`queue_backend`).
pub const ORPHANS_REQUEUED_TOTAL: &str = "orphans_requeued_total";
/// Admin actions, as audited (`action`, `actor`, `result`, `tenant`).
pub const ADMIN_ACTIONS_TOTAL: &str = "admin_actions_total";
/// Jobs accepted.
pub const JOBS_SUBMITTED_TOTAL: &str = "jobs_submitted_total";
/// Jobs that reached a terminal status (`status`).
pub const JOBS_FINISHED_TOTAL: &str = "jobs_finished_total";
/// Tasks handed to workers.
pub const TASKS_ASSIGNED_TOTAL: &str = "tasks_assigned_total";
/// Reports accepted (`status`: `Completed` or `Failed`).
pub const TASK_REPORTS_TOTAL: &str = "task_reports_total";
/// Reports refused or ignored (`reason`: `stale_lease`, `not_running`, `duplicate`, `job_canceled`).
pub const TASK_REPORTS_REJECTED_TOTAL: &str = "task_reports_rejected_total";
/// Tasks that ran out of attempts.
pub const TASKS_DEAD_LETTERED_TOTAL: &str = "tasks_dead_lettered_total";
/// Leases that lapsed (`reason`: `lease_expired` or `timeout`).
pub const LEASE_EXPIRED_TOTAL: &str = "lease_expired_total";
/// Reconcile passes (`result`: `ok` or `error`).
pub const RECONCILE_RUNS_TOTAL: &str = "reconcile_runs_total";
/// HTTP requests (`route`, `method`, `status`).
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// HTTP request latency (`route`).
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";

/// Registers help text for every metric (the `# HELP` lines).
pub fn describe() {
    describe_counter!(
        QUEUE_CLAIMED_TOTAL,
        "Task references claimed from the queue."
    );
    describe_counter!(QUEUE_ACKED_TOTAL, "Queue claims acknowledged.");
    describe_counter!(
        QUEUE_NACKED_TOTAL,
        "Task references returned to the queue after an attempt did not succeed."
    );
    describe_counter!(
        QUEUE_EXPIRED_REQUEUED_TOTAL,
        "Queue claims whose visibility lapsed and were returned to pending."
    );
    describe_counter!(
        DEAD_LETTER_REQUEUED_TOTAL,
        "Dead-letter tasks requeued by operators."
    );
    describe_counter!(
        SCHEDULE_FIRES_TOTAL,
        "Jobs created by periodic schedules (one per schedule and tick)."
    );
    describe_counter!(
        JOBS_PURGED_TOTAL,
        "Finished jobs deleted with their tasks by retention (DAEF_RETENTION_HOURS)."
    );
    describe_counter!(
        DEAD_LETTER_DISCARDED_TOTAL,
        "Dead-letter tasks discarded by operators."
    );
    describe_gauge!(
        DEAD_LETTER_COUNT,
        "Task references on the queue's dead-letter list."
    );
    describe_counter!(
        SCHEDULER_ASSIGNMENT_ERRORS_TOTAL,
        "Claims that could not become assignments because the store failed."
    );
    describe_gauge!(
        QUEUE_PENDING_COUNT,
        "Task references waiting on the pending queues."
    );
    describe_counter!(
        QUEUE_STALE_DROPPED_TOTAL,
        "Queue references dropped because their task was no longer dispatchable."
    );
    describe_counter!(
        ORPHANS_REQUEUED_TOTAL,
        "Dispatchable tasks the reconciler enqueued again."
    );
    describe_counter!(ADMIN_ACTIONS_TOTAL, "Audited admin actions.");
    describe_counter!(JOBS_SUBMITTED_TOTAL, "Jobs accepted.");
    describe_counter!(JOBS_FINISHED_TOTAL, "Jobs that reached a terminal status.");
    describe_counter!(TASKS_ASSIGNED_TOTAL, "Tasks handed to workers.");
    describe_counter!(TASK_REPORTS_TOTAL, "Task reports accepted.");
    describe_counter!(
        TASK_REPORTS_REJECTED_TOTAL,
        "Task reports refused or ignored."
    );
    describe_counter!(TASKS_DEAD_LETTERED_TOTAL, "Tasks that ran out of attempts.");
    describe_counter!(LEASE_EXPIRED_TOTAL, "Task leases that lapsed.");
    describe_counter!(RECONCILE_RUNS_TOTAL, "Reconciler passes.");
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests served.");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency."
    );
}
