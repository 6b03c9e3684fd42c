//! The records DAEF keeps: jobs, their tasks, workers, and the small value types around them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A job id: `job-` followed by a UUID v7, so ids sort by creation time and never collide
/// across gateway replicas or restarts.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(format!("job-{}", uuid::Uuid::now_v7()))
    }

    /// The least id a job created at or after `at` can have: ids are `job-` and a UUID v7, whose
    /// text starts with the creation time in milliseconds, so every job created before `at`
    /// sorts below it. (Bounds the retention's search to jobs old enough to be purged.)
    pub fn created_from(at: crate::time::Timestamp) -> Self {
        let ms = u64::try_from(at.unix_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
        Self(format!("job-{:08x}-{:04x}", ms >> 16, ms & 0xffff))
    }

    /// Wraps an id received from a client or read from a store. Any string is accepted:
    /// an id that was never issued simply finds nothing.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Names one task of one job. This is all a queue ever carries (DESIGN invariant 1); its wire
/// form is `job_id|task_id`, unambiguous because task ids cannot contain `|`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    /// The job the task belongs to.
    pub job_id: JobId,
    /// The task's id within its job.
    pub task_id: String,
}

impl TaskRef {
    /// A reference to `task_id` of `job_id`.
    pub fn new(job_id: JobId, task_id: impl Into<String>) -> Self {
        Self {
            job_id,
            task_id: task_id.into(),
        }
    }

    /// The wire form, `job_id|task_id`.
    pub fn encode(&self) -> String {
        format!("{}|{}", self.job_id, self.task_id)
    }

    /// Parses the wire form; `None` when it is not `job_id|task_id`.
    pub fn decode(s: &str) -> Option<Self> {
        let (job, task) = s.rsplit_once('|')?;
        if job.is_empty() || task.is_empty() {
            return None;
        }
        Some(Self::new(JobId::new(job), task))
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.job_id, self.task_id)
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[allow(missing_docs)] $variant),+ }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact, capitalized string the API and the stores use.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// True for `Completed`, `Failed` and `Canceled`.
            pub fn is_terminal(self) -> bool {
                matches!(self.as_str(), "Completed" | "Failed" | "Canceled")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $(stringify!($variant) => Ok($name::$variant),)+
                    _ => Err(UnknownStatus(s.to_owned())),
                }
            }
        }
    };
}

status_enum! {
    /// Where a job is in its lifecycle.
    JobStatus { Queued, Running, Completed, Failed, Canceled }
}

status_enum! {
    /// Where a task is in its lifecycle.
    TaskStatus { Queued, Running, Completed, Failed, Canceled }
}

/// A status string that is none of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?} (expected one of Queued, Running, Completed, Failed, Canceled)")]
pub struct UnknownStatus(pub String);

/// Dispatch class: `interactive` tasks are handed out before `batch` ones.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Latency-sensitive work; the default.
    #[default]
    Interactive,
    /// Throughput work that waits behind interactive tasks.
    Batch,
}

impl Priority {
    /// Both classes, in dispatch order.
    pub const ALL: [Priority; 2] = [Priority::Interactive, Priority::Batch];

    /// `interactive` or `batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interactive" => Ok(Priority::Interactive),
            "batch" => Ok(Priority::Batch),
            _ => Err(()),
        }
    }
}

/// A submitted job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Unique, time-ordered id.
    pub job_id: JobId,
    /// Owner; tenant-scoped tokens only see their own jobs.
    pub tenant: String,
    /// The client's job type (`batch_analysis`, `chat`, …).
    pub job_type: String,
    /// The client's input text.
    pub input: String,
    /// The client's policy name, kept as given.
    pub policy: Option<String>,
    /// Dispatch class of every task of the job.
    pub priority: Priority,
    /// Lifecycle state.
    pub status: JobStatus,
    /// Why the job failed or was canceled.
    pub message: Option<String>,
    /// The sink task's output, set when the job completes.
    pub result_artifact_uri: Option<String>,
    /// The task whose output becomes the job's result (nothing depends on it; the last by id if several).
    pub sink_task_id: String,
    /// Number of tasks in the job.
    pub task_count: u32,
    /// Tasks that completed; the job completes when this reaches `task_count`.
    pub completed_tasks: u32,
    /// Tasks in the dead-letter queue; while any remain the job is `Failed` and dispatches nothing.
    pub dead_tasks: u32,
    /// The schedule that created the job, if one did.
    pub schedule_id: Option<String>,
    /// The schedule's tick (its cron time) the job runs for: one job per schedule and tick.
    pub scheduled_for: Option<Timestamp>,
    /// When the job was submitted.
    pub created_at: Timestamp,
    /// When the job last changed.
    pub updated_at: Timestamp,
}

/// How long a task waits before the attempt after a failed one: exponential back-off with full
/// jitter, `min(max_ms, initial_ms × 2^(attempt−1))` scaled by a random fraction
/// ([`crate::transition::backoff_delay`]). `initial_ms: 0` retries at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBackoff {
    /// The first retry's ceiling, in milliseconds.
    pub initial_ms: u32,
    /// No retry waits longer, in milliseconds.
    pub max_ms: u32,
}

impl RetryBackoff {
    /// Every failed attempt retried at once.
    pub const IMMEDIATE: RetryBackoff = RetryBackoff {
        initial_ms: 0,
        max_ms: 0,
    };
}

impl Default for RetryBackoff {
    /// `DAEF_RETRY_BACKOFF_INITIAL_MS` and `DAEF_RETRY_BACKOFF_MAX_MS`'s defaults.
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

/// One node of a job's DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The job this task belongs to.
    pub job_id: JobId,
    /// Unique within the job: 1–128 characters of `[A-Za-z0-9._-]`.
    pub task_id: String,
    /// What kind of work it is; workers dispatch on it.
    pub task_type: String,
    /// The task's parameters.
    pub inputs: BTreeMap<String, String>,
    /// Tasks of the same job that must complete first.
    pub dependencies: Vec<String>,
    /// How many failed attempts are retried (a budget of `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Hard limit on one attempt's run time.
    pub timeout_sec: u32,
    /// Copied from the job so dispatch never needs the job row.
    pub priority: Priority,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Attempts started so far (counts up for the task's whole life, across dead-letter requeues).
    pub attempt: u32,
    /// The attempt number after which a failure is final; a dead-letter requeue raises it.
    pub attempt_limit: u32,
    /// Dependencies not yet `Completed`; the task is dispatchable when `Queued` and this is zero.
    pub pending_dependencies: u32,
    /// Worker running (or that last ran) the task.
    pub worker_id: Option<String>,
    /// The current lease; a report must carry it.
    pub lease_id: Option<String>,
    /// When the current lease lapses.
    pub lease_expires: Option<Timestamp>,
    /// When the current attempt started (the timeout counts from here).
    pub started_at: Option<Timestamp>,
    /// Idempotency key of the last accepted report …
    pub last_report_key: Option<String>,
    /// … and the lease that report was for.
    pub last_report_lease: Option<String>,
    /// Where the worker put the output.
    pub output_artifact_uri: Option<String>,
    /// The last failure.
    pub error: Option<String>,
    /// Set while the task sits in the dead-letter queue.
    pub dead_lettered_at: Option<Timestamp>,
    /// For a dispatchable `Queued` task: when the reconciler should enqueue it again if no poll
    /// has claimed it by then (guards against lost queue references).
    pub redispatch_at: Option<Timestamp>,
    /// How many times the reconciler re-enqueued it since it last became dispatchable.
    pub redispatch_count: u32,
    /// The task's retry back-off.
    pub retry_backoff: RetryBackoff,
    /// A `Queued` task is not dispatched before this: the back-off after a failed attempt, or a
    /// delayed job's start.
    pub next_attempt_at: Option<Timestamp>,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task last changed.
    pub updated_at: Timestamp,
}

impl Task {
    /// The reference a queue carries for this task.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef::new(self.job_id.clone(), self.task_id.clone())
    }

    /// `Queued` with every dependency completed.
    pub fn is_dispatchable(&self) -> bool {
        self.status == TaskStatus::Queued && self.pending_dependencies == 0
    }

    /// Dispatchable, and not waiting for a back-off or a delayed start at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.is_dispatchable() && self.next_attempt_at.is_none_or(|at| at <= now)
    }
}

/// What a worker said about itself when it registered, with the seed's field types: it reads
/// back exactly as it was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCapabilities {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    /// Memory capacity, as the worker writes it (`16Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Whether the worker has a GPU, or how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// Models the worker can serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Tools the worker can run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Where the worker runs (zone, region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
}

/// A worker's GPU capacity: the seed's workers send a boolean; a count is accepted too. Kept
/// in the form it was sent, so it reads back the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gpu {
    /// `true` or `false`, as the seed's worker sends it.
    Present(bool),
    /// A number of GPUs.
    Count(u64),
}

/// What a worker says in a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Tasks waiting inside the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Tasks the worker is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks: Option<u64>,
    /// CPU use, as the worker measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_utilization: Option<f64>,
    /// Memory use, as the worker measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_utilization: Option<f64>,
    /// Free-form health word (`ok`, `degraded`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// A registered worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// The worker's chosen id (1–128 characters).
    pub worker_id: String,
    /// What it can do.
    pub capabilities: WorkerCapabilities,
    /// What it last said about its load.
    pub stats: WorkerStats,
    /// First registration.
    pub registered_at: Timestamp,
    /// Last registration or heartbeat.
    pub last_heartbeat: Timestamp,
}

/// How many heartbeat intervals a worker may stay silent and still count as alive.
pub const LIVENESS_INTERVALS: u32 = 3;

impl Worker {
    /// Whether the worker registered or heartbeated within [`LIVENESS_INTERVALS`] heartbeat
    /// intervals before `now`.
    pub fn is_alive(&self, now: Timestamp, heartbeat_interval: std::time::Duration) -> bool {
        self.last_heartbeat
            .plus(heartbeat_interval * LIVENESS_INTERVALS)
            >= now
    }
}

/// An assignment handed to a worker by a poll. (Its wire form is `daef_api::Assignment`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The task's type.
    pub task_type: String,
    /// The task's inputs.
    pub inputs: BTreeMap<String, String>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The lease the report must carry.
    pub lease_id: String,
    /// When the lease lapses unless a heartbeat extends it.
    pub lease_expires: Timestamp,
    /// The attempt's run-time limit: past it the attempt counts as failed, so a worker should
    /// stop the work by then.
    pub timeout_sec: u32,
}

/// A task sitting in the dead-letter queue. (Its wire form is `daef_api::DeadLetter`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task's job.
    pub job_id: JobId,
    /// The task.
    pub task_id: String,
    /// The job's tenant.
    pub tenant: String,
    /// Attempts used so far.
    pub attempt: u32,
    /// The last failure.
    pub error: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: Timestamp,
}

/// Outcome a worker reports for an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportStatus {
    /// The attempt succeeded.
    Completed,
    /// The attempt failed; it is retried while attempts remain.
    Failed,
}

/// A worker's report on one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The reporting worker.
    pub worker_id: String,
    /// The task reported on.
    pub task: TaskRef,
    /// The lease the attempt ran under.
    pub lease_id: String,
    /// Makes retries of the same report harmless.
    pub idempotency_key: Option<String>,
    /// Success or failure.
    pub status: ReportStatus,
    /// Where the output is.
    pub output_artifact_uri: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long the attempt took, as the worker measured it.
    pub duration_millis: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ids_sort_by_creation_time_against_the_retention_bound() {
        let before = Timestamp::now().minus(Duration::from_millis(5));
        let id = JobId::generate();
        let after = Timestamp::now().plus(Duration::from_millis(5));
        assert!(
            JobId::created_from(before) < id,
            "{id} vs {}",
            JobId::created_from(before)
        );
        assert!(
            id < JobId::created_from(after),
            "{id} vs {}",
            JobId::created_from(after)
        );
        assert_eq!(
            JobId::created_from(Timestamp::from_unix_micros(0x0193_a0c2_7a4e * 1_000)).as_str(),
            "job-0193a0c2-7a4e"
        );
    }

    #[test]
    fn a_worker_is_alive_for_three_heartbeat_intervals() {
        let seen = Timestamp::from_unix_micros(1_000_000_000);
        let worker = Worker {
            worker_id: "w".into(),
            capabilities: WorkerCapabilities::default(),
            stats: WorkerStats::default(),
            registered_at: seen,
            last_heartbeat: seen,
        };
        let interval = Duration::from_secs(5);
        assert!(worker.is_alive(seen, interval));
        assert!(worker.is_alive(seen.plus(Duration::from_secs(15)), interval));
        assert!(!worker.is_alive(seen.plus(Duration::from_micros(15_000_001)), interval));
    }
}
