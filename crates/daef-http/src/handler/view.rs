//! The JSON shapes of the API's resources (field names are the seed system's).

use daef_core::Timestamp;
use daef_core::model::{Job, Task};
use serde::Serialize;

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct JobView<'a> {
    job_id: &'a str,
    tenant: &'a str,
    #[serde(rename = "type")]
    job_type: &'a str,
    priority: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_artifact_uri: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a Job> for JobView<'a> {
    fn from(job: &'a Job) -> Self {
        Self {
            job_id: job.job_id.as_str(),
            tenant: &job.tenant,
            job_type: &job.job_type,
            priority: job.priority.as_str(),
            status: job.status.as_str(),
            policy: job.policy.as_deref(),
            message: job.message.as_deref(),
            result_artifact_uri: job.result_artifact_uri.as_deref(),
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// A task as `GET /v1/jobs/{id}/tasks` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct TaskView<'a> {
    task_id: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    status: &'static str,
    attempt: u32,
    dependencies: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_artifact_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a Task> for TaskView<'a> {
    fn from(task: &'a Task) -> Self {
        Self {
            task_id: &task.task_id,
            task_type: &task.task_type,
            status: task.status.as_str(),
            attempt: task.attempt,
            dependencies: &task.dependencies,
            worker_id: task.worker_id.as_deref(),
            lease_id: task.lease_id.as_deref(),
            lease_expires: task.lease_expires,
            output_artifact_uri: task.output_artifact_uri.as_deref(),
            error: task.error.as_deref(),
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}
