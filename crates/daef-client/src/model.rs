//! The API's bodies as typed values: the wire types of [`daef_api`], re-exported, plus the
//! filters this client turns into query strings.

pub use daef_api::*;

use daef_core::Timestamp;
use daef_core::model::{JobStatus, TaskStatus};

/// Filters of `GET /v1/jobs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only this tenant's jobs.
    pub tenant: Option<String>,
    /// Page size (gateway default 50, cap 1000).
    pub limit: Option<u64>,
    /// Jobs to skip.
    pub offset: Option<u64>,
}

/// Filters of `GET /v1/schedules`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
    /// Only this tenant's schedules.
    pub tenant: Option<String>,
    /// Page size (gateway default 100, cap 1000).
    pub limit: Option<u64>,
    /// Schedules to skip.
    pub offset: Option<u64>,
}

/// Filters of `GET /v1/jobs/{id}/tasks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks this worker runs or ran.
    pub worker_id: Option<String>,
    /// Page size (none: every task).
    pub limit: Option<u64>,
    /// Tasks to skip.
    pub offset: Option<u64>,
}

/// Filters of `GET /v1/admin/audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact tenant.
    pub tenant: Option<String>,
    /// Exact result.
    pub result: Option<String>,
    /// Created at or after (inclusive).
    pub from: Option<Timestamp>,
    /// Created at or before (inclusive).
    pub to: Option<Timestamp>,
    /// Page size (gateway default 50, cap 1000).
    pub limit: Option<u64>,
    /// Events to skip.
    pub offset: Option<u64>,
}
