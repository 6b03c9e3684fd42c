//! The lifecycle rules as pure functions over records: no clock reads (`now` is an argument), no
//! I/O. The memory store applies them under its lock; the Postgres store expresses the same rules
//! as conditional updates, and the conformance suite holds both to the same behaviour.

use std::time::Duration;

use crate::error::Error;
use crate::model::{
    Assignment, Job, JobId, JobStatus, Report, ReportStatus, RetryBackoff, Task, TaskStatus,
};
use crate::planner::{self, JobSpec};
use crate::time::Timestamp;

/// Timing rules a store needs to apply transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts before it must be extended by a heartbeat (`DAEF_LEASE_SECONDS`).
    pub lease: Duration,
    /// How long a dispatchable task may wait unclaimed before the reconciler enqueues it again
    /// (`DAEF_ORPHAN_REQUEUE_SECONDS`).
    pub orphan_after: Duration,
    /// The retry back-off of tasks that do not set their own (`DAEF_RETRY_BACKOFF_*`).
    pub retry_backoff: RetryBackoff,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            orphan_after: Duration::from_secs(10),
            retry_backoff: RetryBackoff::default(),
        }
    }
}

/// The wait before the attempt after failed attempt number `attempt`: exponential back-off with
/// full jitter, `unit × min(max_ms, initial_ms × 2^(attempt−1))` for `unit` in `[0, 1)`.
pub fn backoff_delay(attempt: u32, backoff: RetryBackoff, unit: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let ceiling = u64::from(backoff.initial_ms)
        .saturating_mul(1u64 << doublings)
        .min(u64::from(backoff.max_ms));
    Duration::from_micros((ceiling as f64 * 1000.0 * unit.clamp(0.0, 1.0)) as u64)
}

/// The random fraction a failed attempt's back-off is scaled by, drawn from its lease id (whose
/// nonce is 128 random bits): random across attempts, yet the same wherever the failure is
/// applied, so every store decides it alike.
pub fn jitter_of(lease_id: &str) -> f64 {
    let hash = blake3::hash(lease_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// How many times the wait between reconciler re-enqueues of one task may double: at most
/// `orphan_after × 2^3` (80 s with the defaults). Backing off keeps a long backlog with no idle
/// workers from filling the queue with duplicates; the cap bounds how long a task that already
/// waited a while takes to come back after the queue lost its reference.
pub const MAX_REDISPATCH_DOUBLINGS: u32 = 3;

/// A fresh lease id for `attempt`: the attempt number plus 128 random bits, so it is unique and
/// cannot be guessed.
pub fn lease_id(attempt: u32, nonce: &str) -> String {
    format!("lease-{attempt}-{nonce}")
}

/// 128 random bits as 32 hex digits, for [`lease_id`].
pub fn lease_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A lease runs for `lease`, but never past the attempt's timeout.
pub fn lease_deadline(
    now: Timestamp,
    started_at: Timestamp,
    timeout_sec: u32,
    lease: Duration,
) -> Timestamp {
    now.plus(lease)
        .min(started_at.plus(Duration::from_secs(u64::from(timeout_sec))))
}

/// Whether a job's dispatchable tasks may be handed out: not while it is failed (a dead task
/// pauses it until requeued), canceled or completed.
pub fn job_is_dispatching(job: &Job) -> bool {
    matches!(job.status, JobStatus::Queued | JobStatus::Running)
}

/// A new job and its tasks, planned from `spec`: everything `Queued`, tasks without
/// dependencies dispatchable at once.
pub fn create_job(
    spec: &JobSpec,
    tenant: &str,
    now: Timestamp,
    timing: Timing,
) -> Result<(Job, Vec<Task>), Error> {
    let plan = planner::plan(spec)?;
    let job = Job {
        job_id: JobId::generate(),
        tenant: tenant.to_owned(),
        job_type: spec.job_type.clone(),
        input: spec.input.clone(),
        policy: spec.policy.clone(),
        priority: spec.priority,
        status: JobStatus::Queued,
        message: None,
        result_artifact_uri: None,
        sink_task_id: plan.sink_task_id,
        task_count: plan.tasks.len() as u32,
        completed_tasks: 0,
        dead_tasks: 0,
        schedule_id: None,
        scheduled_for: None,
        created_at: now,
        updated_at: now,
    };
    let tasks = plan
        .tasks
        .into_iter()
        .map(|t| {
            let mut task = Task {
                job_id: job.job_id.clone(),
                pending_dependencies: t.dependencies.len() as u32,
                task_id: t.task_id,
                task_type: t.task_type,
                inputs: t.inputs,
                dependencies: t.dependencies,
                attempt_limit: t.max_retries + 1,
                max_retries: t.max_retries,
                timeout_sec: t.timeout_sec,
                priority: job.priority,
                status: TaskStatus::Queued,
                attempt: 0,
                worker_id: None,
                lease_id: None,
                lease_expires: None,
                started_at: None,
                last_report_key: None,
                last_report_lease: None,
                output_artifact_uri: None,
                error: None,
                dead_lettered_at: None,
                redispatch_at: None,
                redispatch_count: 0,
                retry_backoff: t.retry_backoff.unwrap_or(timing.retry_backoff),
                next_attempt_at: spec.run_at.filter(|at| *at > now),
                created_at: now,
                updated_at: now,
            };
            if task.is_dispatchable() {
                mark_dispatchable(&mut task, now, timing);
            }
            task
        })
        .collect();
    Ok((job, tasks))
}

/// Marks a task dispatchable: the reconciler enqueues it if nothing claims it in time, and a
/// task waiting for a back-off or a delayed start when that time comes (it is enqueued by
/// nothing else).
pub fn mark_dispatchable(task: &mut Task, now: Timestamp, timing: Timing) {
    task.redispatch_at = Some(match task.next_attempt_at {
        Some(at) if at > now => at,
        _ => now.plus(timing.orphan_after),
    });
    task.redispatch_count = 0;
}

/// Why an assignment did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAssignable {
    /// The task is not `Queued` with all dependencies complete, or waits for a back-off or a
    /// delayed start (a stale or early queue reference).
    TaskNotDispatchable,
    /// The job is failed, canceled or completed.
    JobNotDispatching,
}

/// `Queued → Running`: a new attempt under a new lease; the job becomes `Running` on its first
/// assignment.
pub fn assign(
    job: &mut Job,
    task: &mut Task,
    worker_id: &str,
    nonce: &str,
    now: Timestamp,
    timing: Timing,
) -> Result<Assignment, NotAssignable> {
    if !task.is_due(now) {
        return Err(NotAssignable::TaskNotDispatchable);
    }
    if !job_is_dispatching(job) {
        return Err(NotAssignable::JobNotDispatching);
    }
    task.attempt += 1;
    task.next_attempt_at = None;
    task.status = TaskStatus::Running;
    task.worker_id = Some(worker_id.to_owned());
    task.lease_id = Some(lease_id(task.attempt, nonce));
    task.started_at = Some(now);
    let expires = lease_deadline(now, now, task.timeout_sec, timing.lease);
    task.lease_expires = Some(expires);
    task.redispatch_at = None;
    task.redispatch_count = 0;
    task.updated_at = now;
    if job.status == JobStatus::Queued {
        job.status = JobStatus::Running;
        job.updated_at = now;
    }
    Ok(Assignment {
        job_id: task.job_id.clone(),
        task_id: task.task_id.clone(),
        task_type: task.task_type.clone(),
        inputs: task.inputs.clone(),
        attempt: task.attempt,
        lease_id: task.lease_id.clone().unwrap_or_default(),
        lease_expires: expires,
        timeout_sec: task.timeout_sec,
    })
}

/// What to do with a report, decided before anything changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportCheck {
    /// Accept it and apply it.
    Apply,
    /// The job was canceled: answer 200, change nothing.
    JobCanceled,
    /// The same idempotency key was already accepted for this lease: answer 200, change nothing.
    Duplicate,
    /// The task is not running now (never assigned, waiting for a retry, or finished): 409.
    NotRunning,
    /// The task runs under another lease: 409.
    StaleLease,
}

/// Decides what a report may do. Order matters: a canceled job swallows every report, a
/// repeated report is recognised even after the task moved on, and only then are status and
/// lease checked.
pub fn check_report(job: &Job, task: &Task, report: &Report) -> ReportCheck {
    if job.status == JobStatus::Canceled {
        return ReportCheck::JobCanceled;
    }
    if report.idempotency_key.is_some()
        && task.last_report_key == report.idempotency_key
        && task.last_report_lease.as_deref() == Some(report.lease_id.as_str())
    {
        return ReportCheck::Duplicate;
    }
    if task.status != TaskStatus::Running {
        return ReportCheck::NotRunning;
    }
    if task.lease_id.as_deref() != Some(report.lease_id.as_str()) {
        return ReportCheck::StaleLease;
    }
    ReportCheck::Apply
}

/// Why an attempt ended without success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// The worker reported `Failed`.
    Reported(Option<String>),
    /// The lease lapsed without a report.
    LeaseExpired,
    /// The attempt ran past `timeout_sec`.
    TimedOut,
}

impl FailureCause {
    /// The text stored as the task's `error`.
    pub fn message(&self, task: &Task) -> String {
        match self {
            FailureCause::Reported(Some(e)) if !e.is_empty() => e.clone(),
            FailureCause::Reported(_) => "task failed".to_owned(),
            FailureCause::LeaseExpired => format!(
                "lease expired on attempt {} (worker {} stopped heartbeating)",
                task.attempt,
                task.worker_id.as_deref().unwrap_or("unknown")
            ),
            FailureCause::TimedOut => {
                format!(
                    "attempt {} timed out after {}s",
                    task.attempt, task.timeout_sec
                )
            }
        }
    }

    /// The `reason` label of `queue_nacked_total` for this cause.
    pub fn reason(&self) -> &'static str {
        match self {
            FailureCause::Reported(_) => "task_failed",
            FailureCause::LeaseExpired => "lease_expired",
            FailureCause::TimedOut => "timeout",
        }
    }
}

/// Where a failed attempt left the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Attempts remain: the task is `Queued` again.
    Retry,
    /// No attempts remain: the task is `Failed` and in the dead-letter queue.
    DeadLettered,
}

/// Records a successful report on a running task.
pub fn complete(task: &mut Task, report: &Report, now: Timestamp) {
    task.status = TaskStatus::Completed;
    task.output_artifact_uri = report.output_artifact_uri.clone();
    task.error = None;
    remember_report(task, report);
    end_attempt(task, now);
}

/// Consumes one attempt: back to `Queued` while attempts remain, else `Failed` and dead-lettered.
/// `report` is the worker's report when there is one (it makes a repeat of it recognisable).
pub fn fail_attempt(
    task: &mut Task,
    cause: &FailureCause,
    report: Option<&Report>,
    job_dispatching: bool,
    now: Timestamp,
    timing: Timing,
) -> AttemptOutcome {
    task.error = Some(cause.message(task));
    if let Some(report) = report {
        remember_report(task, report);
    }
    let unit = task.lease_id.as_deref().map_or(0.0, jitter_of);
    end_attempt(task, now);
    if task.attempt < task.attempt_limit {
        task.status = TaskStatus::Queued;
        let wait = backoff_delay(task.attempt, task.retry_backoff, unit);
        task.next_attempt_at = (!wait.is_zero()).then(|| now.plus(wait));
        if job_dispatching {
            mark_dispatchable(task, now, timing);
        }
        AttemptOutcome::Retry
    } else {
        task.status = TaskStatus::Failed;
        task.dead_lettered_at = Some(now);
        AttemptOutcome::DeadLettered
    }
}

fn remember_report(task: &mut Task, report: &Report) {
    task.last_report_key = report.idempotency_key.clone();
    task.last_report_lease = Some(report.lease_id.clone());
}

fn end_attempt(task: &mut Task, now: Timestamp) {
    task.lease_expires = None;
    task.redispatch_at = None;
    task.updated_at = now;
}

/// What a lapsed lease counts as: a timeout when the deadline was the attempt's time limit.
pub fn expiry_cause(task: &Task) -> FailureCause {
    match (task.started_at, task.lease_expires) {
        (Some(started), Some(expires))
            if expires >= started.plus(Duration::from_secs(u64::from(task.timeout_sec))) =>
        {
            FailureCause::TimedOut
        }
        _ => FailureCause::LeaseExpired,
    }
}

/// Applies a report the check accepted. Returns the attempt outcome for a failure.
pub fn apply_report(
    task: &mut Task,
    report: &Report,
    job_dispatching: bool,
    now: Timestamp,
    timing: Timing,
) -> Option<AttemptOutcome> {
    match report.status {
        ReportStatus::Completed => {
            complete(task, report, now);
            None
        }
        ReportStatus::Failed => Some(fail_attempt(
            task,
            &FailureCause::Reported(report.error.clone()),
            Some(report),
            job_dispatching,
            now,
            timing,
        )),
    }
}

/// One dependency of `dependent` completed. Returns true when that made it dispatchable now (a
/// delayed job's task that is not due yet is enqueued by the reconciler when it is).
pub fn dependency_completed(
    dependent: &mut Task,
    job_dispatching: bool,
    now: Timestamp,
    timing: Timing,
) -> bool {
    dependent.pending_dependencies = dependent.pending_dependencies.saturating_sub(1);
    if dependent.is_dispatchable() {
        dependent.updated_at = now;
        if job_dispatching {
            mark_dispatchable(dependent, now, timing);
            return dependent.is_due(now);
        }
    }
    false
}

/// A task of `job` completed. Returns true when that completed the job; the job's result is
/// then `sink_output`, the output of its sink task (which need not be the last to finish when a
/// DAG has several tasks nothing depends on).
pub fn job_task_completed(job: &mut Job, sink_output: Option<&str>, now: Timestamp) -> bool {
    job.completed_tasks += 1;
    job.updated_at = now;
    if job.completed_tasks >= job.task_count {
        job.status = JobStatus::Completed;
        job.message = None;
        job.result_artifact_uri = sink_output.map(str::to_owned);
        return true;
    }
    false
}

/// A task of `job` was dead-lettered: the job fails and dispatches nothing until every dead task
/// of it is requeued.
pub fn job_task_dead_lettered(job: &mut Job, task: &Task, now: Timestamp) {
    job.dead_tasks += 1;
    job.status = JobStatus::Failed;
    job.message = Some(format!(
        "task {} failed after {} attempts: {}",
        task.task_id,
        task.attempt,
        task.error.as_deref().unwrap_or("task failed")
    ));
    job.updated_at = now;
}

/// A dead task of `job` was requeued. Returns true when the job runs again (no dead task is left);
/// the caller then makes its dispatchable tasks dispatchable again.
pub fn job_task_requeued(job: &mut Job, now: Timestamp) -> bool {
    job.dead_tasks = job.dead_tasks.saturating_sub(1);
    job.updated_at = now;
    if job.dead_tasks == 0 && job.status == JobStatus::Failed {
        job.status = JobStatus::Running;
        job.message = None;
        return true;
    }
    false
}

/// Extends a live lease (heartbeat), never past the attempt's timeout; a lease that already
/// lapsed is left for the reconciler. Returns true when it was extended.
pub fn extend_lease(task: &mut Task, now: Timestamp, timing: Timing) -> bool {
    match (task.status, task.started_at, task.lease_expires) {
        (TaskStatus::Running, Some(started), Some(expires)) if expires > now => {
            let new = lease_deadline(now, started, task.timeout_sec, timing.lease);
            if new > expires {
                task.lease_expires = Some(new);
            }
            true
        }
        _ => false,
    }
}

/// Cancels an unfinished task. Returns true when it changed.
pub fn cancel_task(task: &mut Task, now: Timestamp) -> bool {
    if task.status.is_terminal() {
        return false;
    }
    task.status = TaskStatus::Canceled;
    end_attempt(task, now);
    true
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// This request canceled the job.
    Canceled,
    /// It was canceled before.
    AlreadyCanceled,
    /// It had already completed or failed; nothing changed.
    AlreadyFinished,
}

impl CancelOutcome {
    /// The API's `accepted`: true when the job is (now) canceled.
    pub fn accepted(self) -> bool {
        !matches!(self, CancelOutcome::AlreadyFinished)
    }
}

/// Cancels a job that has not finished. The caller cancels its unfinished tasks when the result
/// is [`CancelOutcome::Canceled`].
pub fn cancel_job(job: &mut Job, now: Timestamp) -> CancelOutcome {
    match job.status {
        JobStatus::Canceled => CancelOutcome::AlreadyCanceled,
        JobStatus::Completed | JobStatus::Failed => CancelOutcome::AlreadyFinished,
        JobStatus::Queued | JobStatus::Running => {
            job.status = JobStatus::Canceled;
            job.message = Some("canceled".to_owned());
            job.updated_at = now;
            CancelOutcome::Canceled
        }
    }
}

/// Takes a dead task out of the dead-letter queue with a fresh attempt budget (the attempt counter
/// keeps counting). Returns false when the task is not a dead letter.
pub fn requeue_dead(task: &mut Task, now: Timestamp) -> bool {
    if task.status != TaskStatus::Failed || task.dead_lettered_at.is_none() {
        return false;
    }
    task.status = TaskStatus::Queued;
    task.dead_lettered_at = None;
    task.next_attempt_at = None;
    task.attempt_limit = task.attempt + task.max_retries + 1;
    task.lease_expires = None;
    task.updated_at = now;
    true
}

/// Whether retention may delete `job` (with its tasks): it is finished (completed, canceled,
/// or failed with no dead letter left to requeue) and has not changed since `before`.
pub fn is_purgeable(job: &Job, before: Timestamp) -> bool {
    let finished = match job.status {
        JobStatus::Completed | JobStatus::Canceled => true,
        JobStatus::Failed => job.dead_tasks == 0,
        JobStatus::Queued | JobStatus::Running => false,
    };
    finished && job.updated_at < before
}

/// What an idempotent submit finds under its key: `None` when the job is to be stored (no key,
/// or one that expired by `now`), else the earlier job, replayed when the bodies match.
pub fn keyed_replay(
    stored: Option<&crate::ports::StoredKey>,
    body_hash: &str,
    now: Timestamp,
) -> Option<crate::ports::KeyedInsert> {
    let stored = stored?;
    replay_of(
        &stored.job_id,
        stored.expires_at,
        stored.body_hash == body_hash,
        now,
    )
}

/// [`keyed_replay`] over a key's parts, for a store that keeps keys its own way: the key names
/// `job_id` until `expires_at`, and was stored by a submit whose body was this one's
/// (`same_body`) or not.
pub fn replay_of(
    job_id: &JobId,
    expires_at: Timestamp,
    same_body: bool,
    now: Timestamp,
) -> Option<crate::ports::KeyedInsert> {
    use crate::ports::KeyedInsert;
    if expires_at <= now {
        return None;
    }
    Some(if same_body {
        KeyedInsert::Replayed(job_id.clone())
    } else {
        KeyedInsert::Conflict(job_id.clone())
    })
}

/// Whether `lease_id` is still `task`'s live lease: the task runs under it. A worker running an
/// attempt under any other lease (its job was canceled, the attempt finished, lapsed or was taken
/// over) should stop: nothing it reports for that lease would be accepted.
pub fn holds_lease(task: &Task, lease_id: &str) -> bool {
    task.status == TaskStatus::Running && task.lease_id.as_deref() == Some(lease_id)
}

/// Discards a dead letter: the task stays `Failed` for good and leaves the dead-letter queue.
/// Returns false when the task is not a dead letter.
pub fn discard_dead(task: &mut Task, now: Timestamp) -> bool {
    if task.status != TaskStatus::Failed || task.dead_lettered_at.is_none() {
        return false;
    }
    task.dead_lettered_at = None;
    task.updated_at = now;
    true
}

/// A dead task of `job` was discarded: the job stays failed, with one dead task fewer.
pub fn job_task_discarded(job: &mut Job, now: Timestamp) {
    job.dead_tasks = job.dead_tasks.saturating_sub(1);
    job.updated_at = now;
}

/// The reconciler enqueued an unclaimed dispatchable task again: back off before the next time.
pub fn redispatched(task: &mut Task, now: Timestamp, timing: Timing) {
    task.redispatch_count = task.redispatch_count.saturating_add(1);
    let factor = 1u32 << task.redispatch_count.min(MAX_REDISPATCH_DOUBLINGS);
    task.redispatch_at = Some(now.plus(timing.orphan_after * factor));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(initial_ms: u32, max_ms: u32) -> RetryBackoff {
        RetryBackoff { initial_ms, max_ms }
    }

    #[test]
    fn the_back_off_doubles_per_attempt_up_to_its_cap_scaled_by_the_jitter() {
        let b = backoff(1_000, 5_000);
        let ms = |attempt, unit| backoff_delay(attempt, b, unit).as_millis();
        assert_eq!(
            [ms(1, 1.0), ms(2, 1.0), ms(3, 1.0), ms(4, 1.0)],
            [1_000, 2_000, 4_000, 5_000]
        );
        assert_eq!(ms(2, 0.5), 1_000);
        assert_eq!(ms(2, 0.0), 0, "full jitter: anywhere from zero");
        assert_eq!(ms(1_000, 1.0), 5_000, "no overflow for late attempts");
        assert_eq!(
            backoff_delay(3, RetryBackoff::IMMEDIATE, 0.9),
            Duration::ZERO
        );
    }

    #[test]
    fn the_jitter_is_a_fraction_drawn_from_the_lease() {
        let units: Vec<f64> = (0..200)
            .map(|i| jitter_of(&format!("lease-1-{i:032x}")))
            .collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert_eq!(
            jitter_of("lease-1-ab"),
            jitter_of("lease-1-ab"),
            "the same everywhere"
        );
        let mean = units.iter().sum::<f64>() / units.len() as f64;
        assert!(
            (0.35..0.65).contains(&mean),
            "spread over [0, 1): mean {mean}"
        );
    }

    fn job_with(run_at: Option<Timestamp>, now: Timestamp, retry: RetryBackoff) -> (Job, Task) {
        let spec = JobSpec {
            job_type: "t".into(),
            input: "x".into(),
            tasks: Some(vec![planner::TaskSpec {
                task_id: "a".into(),
                task_type: "t".into(),
                max_retries: Some(3),
                ..planner::TaskSpec::default()
            }]),
            run_at,
            ..JobSpec::default()
        };
        let timing = Timing {
            retry_backoff: retry,
            ..Timing::default()
        };
        let (job, mut tasks) = create_job(&spec, "acme", now, timing).expect("valid");
        (job, tasks.remove(0))
    }

    #[test]
    fn a_failed_attempt_waits_for_its_back_off_before_it_can_be_assigned_again() {
        let now = Timestamp::from_unix_micros(1_000_000_000_000);
        let timing = Timing::default();
        let (mut job, mut task) = job_with(None, now, backoff(1_000, 1_000));
        let a = assign(&mut job, &mut task, "w", "nonce", now, timing).expect("assigned");
        let outcome = fail_attempt(
            &mut task,
            &FailureCause::LeaseExpired,
            None,
            true,
            now,
            timing,
        );
        assert_eq!(outcome, AttemptOutcome::Retry);
        let wait = backoff_delay(1, task.retry_backoff, jitter_of(&a.lease_id));
        let due = now.plus(wait);
        assert_eq!(task.next_attempt_at, Some(due).filter(|_| !wait.is_zero()));
        assert_eq!(
            task.redispatch_at,
            Some(due)
                .filter(|_| !wait.is_zero())
                .or(Some(now.plus(timing.orphan_after)))
        );
        if !wait.is_zero() {
            assert!(!task.is_due(now));
            assert_eq!(
                assign(&mut job, &mut task, "w", "n2", now, timing),
                Err(NotAssignable::TaskNotDispatchable)
            );
        }
        let b = assign(&mut job, &mut task, "w", "n2", due, timing).expect("due");
        assert_eq!((b.attempt, task.next_attempt_at), (2, None));
    }

    #[test]
    fn a_delayed_job_is_stored_queued_and_dispatchable_from_its_start() {
        let now = Timestamp::from_unix_micros(1_000_000_000_000);
        let start = now.plus(Duration::from_secs(60));
        let timing = Timing::default();
        let (mut job, mut task) = job_with(Some(start), now, RetryBackoff::default());
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(
            (task.next_attempt_at, task.redispatch_at),
            (Some(start), Some(start))
        );
        assert!(task.is_dispatchable() && !task.is_due(now));
        assert!(assign(&mut job, &mut task, "w", "n", now, timing).is_err());
        assert!(assign(&mut job, &mut task, "w", "n", start, timing).is_ok());
        // A start already past runs at once.
        let (_, past) = job_with(
            Some(now.minus(Duration::from_secs(1))),
            now,
            RetryBackoff::default(),
        );
        assert_eq!(past.next_attempt_at, None);
        assert!(past.is_due(now));
    }
}
