//! Rows to records: each reader takes the columns its `sql::*_COLUMNS` list names.

use std::collections::BTreeMap;
use std::str::FromStr;

use daef_core::audit::AuditEvent;
use daef_core::model::{
    Job, JobId, Priority, RetryBackoff, Task, TaskRef, Worker, WorkerCapabilities, WorkerStats,
};
use daef_core::planner::JobSpec;
use daef_core::schedule::Schedule;
use daef_core::{Error, Result, Timestamp};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Json};

use super::BACKEND;

/// A column, or a backend error naming it.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T> {
    row.try_get(column)
        .map_err(|e| Error::backend(BACKEND, format!("reading column {column}: {e}")))
}

/// A non-negative `INTEGER` column as `u32`.
pub(super) fn get_u32(row: &Row, column: &str) -> Result<u32> {
    let value: i32 = get(row, column)?;
    u32::try_from(value)
        .map_err(|_| Error::backend(BACKEND, format!("column {column} is negative: {value}")))
}

/// A `TIMESTAMPTZ` column.
pub(super) fn get_ts(row: &Row, column: &str) -> Result<Timestamp> {
    Ok(Timestamp::from_datetime(get::<OffsetDateTime>(
        row, column,
    )?))
}

/// A nullable `TIMESTAMPTZ` column.
pub(super) fn get_opt_ts(row: &Row, column: &str) -> Result<Option<Timestamp>> {
    Ok(get::<Option<OffsetDateTime>>(row, column)?.map(Timestamp::from_datetime))
}

/// A text column holding a status or another enumerated value.
pub(super) fn get_parsed<T: FromStr>(row: &Row, column: &str) -> Result<T> {
    let text: &str = get(row, column)?;
    text.parse().map_err(|_| {
        Error::backend(
            BACKEND,
            format!("column {column} holds an unknown value {text:?}"),
        )
    })
}

/// The `(job_id, task_id)` of a row.
pub(super) fn task_ref(row: &Row) -> Result<TaskRef> {
    Ok(TaskRef::new(
        JobId::new(get::<String>(row, "job_id")?),
        get::<String>(row, "task_id")?,
    ))
}

/// A task reference and its dispatch class (`job_id, task_id, priority`).
pub(super) fn dispatch(row: &Row) -> Result<(TaskRef, Priority)> {
    Ok((task_ref(row)?, get_priority(row)?))
}

fn get_priority(row: &Row) -> Result<Priority> {
    let text: &str = get(row, "priority")?;
    Priority::from_str(text).map_err(|()| {
        Error::backend(
            BACKEND,
            format!("column priority holds an unknown value {text:?}"),
        )
    })
}

/// A job from `sql::JOB_COLUMNS`.
pub(super) fn job(row: &Row) -> Result<Job> {
    Ok(Job {
        job_id: JobId::new(get::<String>(row, "job_id")?),
        tenant: get(row, "tenant")?,
        job_type: get(row, "job_type")?,
        input: get(row, "input")?,
        policy: get(row, "policy")?,
        priority: get_priority(row)?,
        status: get_parsed(row, "status")?,
        message: get(row, "message")?,
        result_artifact_uri: get(row, "result_artifact_uri")?,
        sink_task_id: get(row, "sink_task_id")?,
        task_count: get_u32(row, "task_count")?,
        completed_tasks: get_u32(row, "completed_tasks")?,
        dead_tasks: get_u32(row, "dead_tasks")?,
        schedule_id: get(row, "schedule_id")?,
        scheduled_for: get_opt_ts(row, "scheduled_for")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

/// A schedule from `sql::schedule_columns!`.
pub(super) fn schedule(row: &Row) -> Result<Schedule> {
    let Json(template) = get::<Json<JobSpec>>(row, "template")?;
    Ok(Schedule {
        schedule_id: get(row, "schedule_id")?,
        tenant: get(row, "tenant")?,
        cron: get(row, "cron")?,
        template,
        paused: get(row, "paused")?,
        next_fire_at: get_ts(row, "next_fire_at")?,
        last_fire_at: get_opt_ts(row, "last_fire_at")?,
        last_job_id: get::<Option<String>>(row, "last_job_id")?.map(JobId::new),
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

/// A task's `inputs` (a JSON object of strings).
pub(super) fn inputs(row: &Row) -> Result<BTreeMap<String, String>> {
    let value: serde_json::Value = get(row, "inputs")?;
    serde_json::from_value(value).map_err(|e| {
        Error::backend(
            BACKEND,
            format!("column inputs is not an object of strings: {e}"),
        )
    })
}

/// A task from `sql::TASK_COLUMNS`.
pub(super) fn task(row: &Row) -> Result<Task> {
    Ok(Task {
        job_id: JobId::new(get::<String>(row, "job_id")?),
        task_id: get(row, "task_id")?,
        task_type: get(row, "task_type")?,
        inputs: inputs(row)?,
        dependencies: get(row, "dependencies")?,
        max_retries: get_u32(row, "max_retries")?,
        timeout_sec: get_u32(row, "timeout_sec")?,
        priority: get_priority(row)?,
        status: get_parsed(row, "status")?,
        attempt: get_u32(row, "attempt")?,
        attempt_limit: get_u32(row, "attempt_limit")?,
        pending_dependencies: get_u32(row, "pending_dependencies")?,
        worker_id: get(row, "worker_id")?,
        lease_id: get(row, "lease_id")?,
        lease_expires: get_opt_ts(row, "lease_expires_at")?,
        started_at: get_opt_ts(row, "started_at")?,
        last_report_key: get(row, "last_report_key")?,
        last_report_lease: get(row, "last_report_lease")?,
        output_artifact_uri: get(row, "output_artifact_uri")?,
        error: get(row, "error")?,
        dead_lettered_at: get_opt_ts(row, "dead_lettered_at")?,
        redispatch_at: get_opt_ts(row, "redispatch_at")?,
        redispatch_count: get_u32(row, "redispatch_count")?,
        retry_backoff: RetryBackoff {
            initial_ms: get_u32(row, "backoff_initial_ms")?,
            max_ms: get_u32(row, "backoff_max_ms")?,
        },
        next_attempt_at: get_opt_ts(row, "next_attempt_at")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

/// An audit event from `sql::AUDIT_COLUMNS`.
pub(super) fn audit_event(row: &Row) -> Result<AuditEvent> {
    let id: i64 = get(row, "id")?;
    let requested: i64 = get(row, "requested")?;
    Ok(AuditEvent {
        id: u64::try_from(id)
            .map_err(|_| Error::backend(BACKEND, format!("audit id is negative: {id}")))?,
        created_at: get_ts(row, "created_at")?,
        action: get(row, "action")?,
        actor: get(row, "actor")?,
        tenant: get(row, "tenant")?,
        remote_addr: get(row, "remote_addr")?,
        resource: get(row, "resource")?,
        payload_hash: get(row, "payload_hash")?,
        requested: u64::try_from(requested).map_err(|_| {
            Error::backend(BACKEND, format!("audit requested is negative: {requested}"))
        })?,
        result: get(row, "result")?,
        details: get(row, "details")?,
        prev_hash: get(row, "prev_hash")?,
        event_hash: get(row, "event_hash")?,
    })
}

/// A row of [`super::sql::LIST_WORKERS`].
pub(super) fn worker(row: &Row) -> Result<Worker> {
    let Json(capabilities) = get::<Json<WorkerCapabilities>>(row, "capabilities")?;
    let Json(stats) = get::<Json<WorkerStats>>(row, "stats")?;
    Ok(Worker {
        worker_id: get(row, "worker_id")?,
        capabilities,
        stats,
        registered_at: get_ts(row, "registered_at")?,
        last_heartbeat: get_ts(row, "last_heartbeat")?,
    })
}
