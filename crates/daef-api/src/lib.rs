//! DAEF's v1 wire format: every request and response body of the HTTP API as a serde type,
//! with the field names and types of docs/openapi.yaml (the seed system's). `daef-http` writes
//! its responses with these types and `daef-client` reads them, so the two cannot drift; a test
//! in `daef-deploy-check` checks them against the OpenAPI schemas.
//!
//! Where `daef-core` has a value type whose serde form is the wire form (ids, statuses,
//! priorities, timestamps, audit events, worker capabilities and stats), it is used as is; the
//! records of the domain (`Job`, `Task`, `Assignment`, `DeadLetter`) are converted here
//! (`From`), and never serialized themselves.
//!
//! This crate must never validate a request (that is `daef-http`'s, with messages naming the
//! field), decide a lifecycle rule, or do I/O: it is data and conversions only.

use std::collections::BTreeMap;

use daef_core::Timestamp;
use daef_core::audit::AuditEvent;
use daef_core::model::{
    JobId, JobStatus, Priority, RetryBackoff, TaskStatus, WorkerCapabilities, WorkerStats,
};
use serde::{Deserialize, Serialize};

mod convert;

// --- jobs --------------------------------------------------------------------------------------

/// The body of `POST /v1/jobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSubmission {
    /// The job type (`chat`, `batch_analysis`, …).
    #[serde(rename = "type")]
    pub job_type: String,
    /// The input text; required unless `tasks` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// A policy name, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `interactive` (the gateway's default) or `batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The owning tenant; else the gateway derives it from the token or `X-DAEF-Tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// An explicit DAG; without it the gateway's default planner applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskSubmission>>,
    /// A delayed job: stored at once, its tasks dispatched from this time on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
    /// A delayed job: its tasks dispatched this many seconds from now (not with `run_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u64>,
}

impl JobSubmission {
    /// A job of `job_type` with `input`, everything else left to the gateway.
    pub fn new(job_type: impl Into<String>, input: impl Into<String>) -> Self {
        Self {
            job_type: job_type.into(),
            input: Some(input.into()),
            ..Self::default()
        }
    }
}

/// One task of an explicit DAG.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSubmission {
    /// Unique within the job: 1–128 characters of `[A-Za-z0-9._-]`.
    pub task_id: String,
    /// The task type workers dispatch on.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The task's parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Task ids of the same job that must complete first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Failed attempts that are retried (gateway default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Limit on one attempt's run time in seconds (gateway default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u32>,
    /// The wait before a failed attempt is retried (gateway default `DAEF_RETRY_BACKOFF_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<RetryBackoff>,
}

/// The answer to a submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The new job's id.
    pub job_id: JobId,
    /// Its status (`Queued`).
    pub status: JobStatus,
}

/// A job as `GET /v1/jobs/{id}` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's id.
    pub job_id: JobId,
    /// The owning tenant.
    pub tenant: String,
    /// The job type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Dispatch class.
    pub priority: Priority,
    /// Lifecycle state.
    pub status: JobStatus,
    /// The policy name given at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Why the job failed or was canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The sink task's output, once the job completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_artifact_uri: Option<String>,
    /// The schedule that created the job, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The schedule's tick the job runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// Submission time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    /// Jobs matching the filters in all.
    pub total: u64,
    /// Jobs in this page.
    pub returned: u64,
    /// The page size applied.
    pub limit: u64,
    /// The offset applied.
    pub offset: u64,
    /// The page.
    pub jobs: Vec<JobInfo>,
}

/// The answer to a cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOutcome {
    /// True when this request canceled the job or it was already canceled; false when it had
    /// already completed or failed.
    pub accepted: bool,
}

/// A task as `GET /v1/jobs/{id}/tasks` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's id within its job.
    pub task_id: String,
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempt: u32,
    /// Tasks that must complete first.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The worker running (or that last ran) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The current lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// When the current lease lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<Timestamp>,
    /// Where the output is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_artifact_uri: Option<String>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Creation time.
    /// A `Queued` task waiting for its retry back-off or a delayed start: not dispatched
    /// before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A job's tasks, sorted by task id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    /// The job.
    pub job_id: JobId,
    /// Tasks matching the filters in all.
    pub total: u64,
    /// Tasks in this page.
    pub returned: u64,
    /// The page size, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The offset, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The page.
    pub tasks: Vec<TaskInfo>,
}

// --- schedules ---------------------------------------------------------------------------------

/// The body of `POST /v1/schedules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSubmission {
    /// Unique: 1–128 characters of `[A-Za-z0-9._-]`.
    pub schedule_id: String,
    /// Five fields (minute hour day-of-month month day-of-week), UTC.
    pub cron: String,
    /// What each tick submits: a `POST /v1/jobs` body without `run_at` or `delay_seconds`
    /// (its `tenant`, if any, is the schedule's).
    pub job: JobSubmission,
    /// Create it paused (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A schedule as the schedule routes return it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its id.
    pub schedule_id: String,
    /// The tenant its jobs belong to.
    pub tenant: String,
    /// Its cron expression, fields one space apart.
    pub cron: String,
    /// What each tick submits.
    pub job: JobSubmission,
    /// A paused schedule does not fire.
    pub paused: bool,
    /// Its next tick; `null` while paused.
    pub next_fire_at: Option<Timestamp>,
    /// The tick it last fired for.
    pub last_fire_at: Option<Timestamp>,
    /// The job it last created.
    pub last_job_id: Option<JobId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change (created, paused, resumed, fired).
    pub updated_at: Timestamp,
}

/// A page of schedules, by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleList {
    /// Schedules visible to the caller in all.
    pub total: u64,
    /// Schedules in this page.
    pub returned: u64,
    /// The page size applied.
    pub limit: u64,
    /// The offset applied.
    pub offset: u64,
    /// The page.
    pub schedules: Vec<ScheduleInfo>,
}

/// The answer to `DELETE /v1/schedules/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDeleted {
    /// The schedule deleted (the jobs it created stay).
    pub schedule_id: String,
    /// Always true.
    pub deleted: bool,
}

// --- workers -----------------------------------------------------------------------------------

/// The body of `POST /v1/workers/register`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// 1–128 characters of `[A-Za-z0-9._:@-]`.
    pub worker_id: String,
    /// What the worker can do.
    #[serde(flatten)]
    pub capabilities: WorkerCapabilities,
}

/// The answer to a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// Always true on success.
    pub accepted: bool,
    /// How often to heartbeat.
    pub heartbeat_interval_seconds: u64,
}

/// A registered worker, as `GET /v1/workers` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id.
    pub worker_id: String,
    /// What it registered.
    pub capabilities: WorkerCapabilities,
    /// What its last heartbeat said (empty until its first heartbeat).
    pub stats: WorkerStats,
    /// First registration.
    pub registered_at: Timestamp,
    /// Last registration or heartbeat.
    pub last_heartbeat: Timestamp,
    /// Whether it registered or heartbeated within the last three heartbeat intervals.
    pub alive: bool,
}

/// `GET /v1/workers`: one page of registered workers, by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    /// Registered workers in all.
    pub total: u64,
    /// Workers in this page.
    pub returned: u64,
    /// The page size used.
    pub limit: u64,
    /// The offset used.
    pub offset: u64,
    /// The page.
    pub workers: Vec<WorkerInfo>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// Always true on success.
    pub accepted: bool,
    /// Leases of this worker's running tasks that the heartbeat extended.
    #[serde(default)]
    pub leases_extended: u64,
    /// Of the leases the heartbeat listed in `running`, those to stop now: the job was canceled,
    /// or the attempt finished, lapsed or was taken over, so nothing reported for it would be
    /// accepted. Absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_leases: Vec<String>,
}

/// A task handed to a worker by a poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The task's inputs.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The lease the report must carry.
    pub lease_id: String,
    /// When the lease lapses unless a heartbeat extends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<Timestamp>,
    /// The task's run-time limit in seconds, when the gateway sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u32>,
}

/// The answer to a poll, `GET /v1/workers/{id}/assignments`: always an array, empty when
/// nothing was ready.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    /// The tasks handed out, each under a new lease.
    pub assignments: Vec<Assignment>,
}

/// The body of `POST /v1/workers/{id}/heartbeat`: the worker's load, all optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Queue depth, running tasks, utilisation and health.
    #[serde(flatten)]
    pub stats: WorkerStats,
    /// The worker's clock, in seconds since the epoch, as the seed's workers send it (the
    /// gateway keeps its own time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_unix: Option<i64>,
    /// The attempts the worker is running, so the answer can say which to stop
    /// (`stop_leases`). A DAEF extension; the seed's workers do not send it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<RunningAttempt>,
}

/// An attempt a worker runs, as its heartbeat lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningAttempt {
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The lease the attempt runs under.
    pub lease_id: String,
}

/// The outcome a worker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// The attempt succeeded.
    Completed,
    /// The attempt failed; the gateway retries it while attempts remain.
    Failed,
}

/// The body of `POST /v1/tasks/report`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The reporting worker.
    pub worker_id: String,
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The lease of the attempt reported on.
    pub lease_id: String,
    /// Makes a resent report harmless (the gateway answers 200 and changes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Success or failure.
    pub status: ReportStatus,
    /// Where the output is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_artifact_uri: Option<String>,
    /// Why the attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the attempt ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<u64>,
}

/// `{"accepted": bool}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Whether the gateway took the request.
    pub accepted: bool,
}

// --- admin -------------------------------------------------------------------------------------

/// A task in the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The job's tenant.
    pub tenant: String,
    /// Attempts used.
    pub attempt: u32,
    /// The last failure.
    pub error: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: Timestamp,
}

/// `GET /v1/admin/queue/dead-letter`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterList {
    /// Dead letters, oldest first.
    pub tasks: Vec<DeadLetter>,
}

/// One task named in a requeue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskKey {
    /// The job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
}

/// The body of `POST /v1/admin/queue/dead-letter`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeueRequest {
    /// The dead letters to requeue (or, with `dry_run`, to count).
    pub tasks: Vec<TaskKey>,
    /// Count only; change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The answer to a dead-letter requeue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeueOutcome {
    /// True for a dry run (nothing changed); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Tasks listed in the request.
    pub requested: u64,
    /// Tasks requeued (for a dry run: that would be).
    pub requeued: u64,
}

/// The answer to `POST /v1/admin/queue/dead-letter/discard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardOutcome {
    /// True for a dry run (nothing changed); absent otherwise, as in a requeue's answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Tasks listed in the request.
    pub requested: u64,
    /// Tasks discarded (in a dry run: that are dead letters and would be).
    pub discarded: u64,
}

/// A page of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Events in this page.
    pub returned: u64,
    /// The page size applied.
    pub limit: u64,
    /// The offset applied.
    pub offset: u64,
    /// The page.
    pub events: Vec<AuditEvent>,
}

/// The gateway's own verdict on the chain (`GET /v1/admin/audit/verify`).
pub type ServerVerification = daef_core::audit::Verification;

/// Every failed request's body: `{"error": message}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person (a 5xx never carries backend text).
    pub error: String,
}

// --- operations --------------------------------------------------------------------------------

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz` when ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// The store backend's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The queue backend's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// `GET /v1/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Monotonic counters.
    #[serde(default)]
    pub counters: Vec<MetricSample>,
    /// Point-in-time values.
    #[serde(default)]
    pub gauges: Vec<MetricSample>,
    /// Distributions as count and sum.
    #[serde(default)]
    pub histograms: Vec<HistogramSample>,
}

impl MetricsSnapshot {
    /// The sum of a counter's series whose labels include every `(key, value)` of `labels`.
    pub fn counter_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.counters
            .iter()
            .filter(|s| s.name == name && s.has_labels(labels))
            .map(|s| s.value)
            .sum()
    }
}

/// One counter or gauge series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Metric name.
    pub name: String,
    /// Label pairs.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Current value.
    pub value: f64,
}

impl MetricSample {
    fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.get(*k).is_some_and(|have| have == v))
    }
}

/// One histogram series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramSample {
    /// Metric name.
    pub name: String,
    /// Label pairs.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Observations.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
}
