//! The ports: what the engine needs from a store, a queue and a rate limiter. Adapters live in
//! `daef-store` and `daef-queue`; `daef-conformance` holds the behaviour every adapter must show.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::audit::{AuditDraft, AuditEvent};
use crate::error::Result;
use crate::model::{
    Assignment, DeadLetter, Job, JobId, JobStatus, Priority, Report, Task, TaskRef, TaskStatus,
    Worker, WorkerCapabilities, WorkerStats,
};
use crate::schedule::{Firing, Schedule};
use crate::time::Timestamp;
use crate::transition::{AttemptOutcome, CancelOutcome, Timing};

/// A page of results and how many matched in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// Everything that matched the filters, before `limit` and `offset`.
    pub total: u64,
    /// The requested slice.
    pub items: Vec<T>,
}

/// Filters for listing jobs (newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of these tenants; `None` means every tenant.
    pub tenants: Option<Vec<String>>,
    /// At most this many.
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
    /// Only jobs whose id sorts before this one: keyset paging, which costs the same on the
    /// millionth page as on the first (an offset walks every skipped row).
    pub before: Option<JobId>,
    /// Count the matching jobs only up to this many (`Page::total` is then at most this): a
    /// page that shows "10,000+" need not count a million rows. `None` counts them all.
    pub total_up_to: Option<u64>,
}

/// A submit's `Idempotency-Key`: within its lifetime, the same key from the same tenant names
/// the same job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The submitting tenant (keys are unique per tenant).
    pub tenant: String,
    /// The key as the client sent it.
    pub key: String,
    /// blake3 of the request body, in hex: the same key with another body is a conflict.
    pub body_hash: String,
    /// From then on the key is free again.
    pub expires_at: Timestamp,
}

/// A key as a store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// blake3 of the body of the submit that stored it.
    pub body_hash: String,
    /// The job that submit created.
    pub job_id: JobId,
    /// From then on the key is free again.
    pub expires_at: Timestamp,
}

/// What one retention pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Finished jobs deleted, with their tasks.
    pub jobs: u64,
    /// Expired idempotency keys deleted.
    pub keys: u64,
}

/// What a submit with an idempotency key did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedInsert {
    /// The job was stored, and the key now names it.
    Inserted,
    /// The key names a job an earlier submit with the same body stored; nothing was stored.
    Replayed(JobId),
    /// The key names a job an earlier submit with another body stored; nothing was stored.
    Conflict(JobId),
}

/// Filters for listing a job's tasks (sorted by task id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks assigned to this worker.
    pub worker_id: Option<String>,
    /// At most this many; `None` means all.
    pub limit: Option<usize>,
    /// Skip this many.
    pub offset: usize,
}

/// Filters for listing audit events (newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact tenant.
    pub tenant: Option<String>,
    /// Exact result.
    pub result: Option<String>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created at or before.
    pub to: Option<Timestamp>,
    /// At most this many.
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

impl AuditQuery {
    /// Whether `event` passes the filters (limit and offset aside).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let exact =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        exact(&self.action, &event.action)
            && exact(&self.actor, &event.actor)
            && exact(&self.tenant, &event.tenant)
            && exact(&self.result, &event.result)
            && self.from.is_none_or(|from| event.created_at >= from)
            && self.to.is_none_or(|to| event.created_at <= to)
    }
}

/// A task to put on the queue, with its dispatch class.
pub type Dispatch = (TaskRef, Priority);

/// What a store did with a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The report changed the task.
    Applied(ReportEffects),
    /// The same report (idempotency key and lease) was accepted before; nothing changed.
    Duplicate,
    /// The job was canceled; nothing changed.
    JobCanceled,
    /// The task is not running now; nothing changed.
    NotRunning,
    /// The task runs under another lease; nothing changed.
    StaleLease,
}

/// The consequences of an applied report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportEffects {
    /// `None` for a completion; for a failure, whether it will be retried or was dead-lettered.
    pub failure: Option<AttemptOutcome>,
    /// Tasks that became dispatchable (dependents of a completed task, or the task itself on retry).
    pub enqueue: Vec<Dispatch>,
    /// The job's status after the report.
    pub job_status: JobStatus,
}

/// A lease the reconciler found lapsed, and what became of its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The task.
    pub task: TaskRef,
    /// The worker that held the lease.
    pub worker_id: String,
    /// `lease_expired` or `timeout`.
    pub reason: &'static str,
    /// Retried or dead-lettered.
    pub outcome: AttemptOutcome,
    /// Set when the task is dispatchable again and must be enqueued.
    pub enqueue: Option<Dispatch>,
}

/// What a dead-letter requeue did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequeueOutcome {
    /// Tasks taken out of the dead-letter queue.
    pub requeued: Vec<TaskRef>,
    /// Tasks to enqueue: the requeued ones and any task of a resumed job that waited for it.
    pub enqueue: Vec<Dispatch>,
}

/// The source of truth for jobs, tasks, workers and the audit log.
///
/// Every method that changes state is one atomic, conditional step (DESIGN.md invariant 2): it
/// checks the current status, lease or attempt and changes nothing when the check fails.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// `memory`, `postgres`, …; used in logs and error messages.
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve requests (readiness).
    async fn ping(&self) -> Result<()>;

    /// Stores a new job and its tasks in one step. Tasks without dependencies arrive dispatchable.
    async fn insert_job(&self, job: &Job, tasks: &[Task]) -> Result<()>;

    /// Stores a job under an idempotency key, atomically: when the key already names a job and
    /// has not expired ([`crate::transition::keyed_replay`]), nothing is stored and the answer
    /// says which job; otherwise the job is stored and the key (re)bound to it.
    async fn insert_job_keyed(
        &self,
        job: &Job,
        tasks: &[Task],
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<KeyedInsert>;

    /// Retention: deletes up to `limit` jobs that [`crate::transition::is_purgeable`] before
    /// `before`, oldest first, with their tasks, and up to `limit` idempotency keys expired at
    /// `now`. Runs in one replica at a time (a replica that finds another purging does
    /// nothing) and never holds long locks.
    async fn purge(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Purged>;

    /// One job.
    async fn job(&self, job_id: &JobId) -> Result<Option<Job>>;

    /// Jobs matching `query`, newest first.
    async fn list_jobs(&self, query: &JobQuery) -> Result<Page<Job>>;

    /// A job's tasks matching `query`, sorted by task id; `None` when the job does not exist.
    async fn list_tasks(&self, job_id: &JobId, query: &TaskQuery) -> Result<Option<Page<Task>>>;

    /// Registers a worker, or updates the capabilities of one already registered.
    async fn register_worker(
        &self,
        worker_id: &str,
        capabilities: &WorkerCapabilities,
        now: Timestamp,
    ) -> Result<()>;

    /// Whether a worker is registered.
    async fn worker_exists(&self, worker_id: &str) -> Result<bool>;

    /// Registered workers by id, with how many are registered in all.
    async fn list_workers(&self, limit: usize, offset: usize) -> Result<Page<Worker>>;

    /// Records a heartbeat and extends the live leases of the worker's running tasks. Returns
    /// how many leases were extended, or `None` for an unknown worker.
    async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<u32>>;

    /// Of the leases a worker says it runs attempts under, those that are no longer their
    /// task's live lease ([`crate::transition::holds_lease`]: the job was canceled, the attempt
    /// finished, lapsed or was taken over), in the order given. Unknown tasks count as stale.
    async fn stale_leases(&self, held: &[(TaskRef, String)]) -> Result<Vec<String>>;

    /// `Queued → Running` under a new lease when the task is dispatchable and its job is
    /// dispatching; `None` (nothing changed) otherwise, including for unknown tasks.
    async fn assign(
        &self,
        task: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<Assignment>>;

    /// [`Store::assign`] for several claimed tasks at once (each with its lease nonce): one
    /// result per entry of `tasks`, in order. Each task is decided on its own: one that is not
    /// assignable (or named twice) gets `Ok(None)` and does not stop the others. A store may
    /// assign them all in one step (Postgres: one transaction instead of one per task); the
    /// outer error then means that none was assigned. This default assigns one by one.
    async fn assign_many(
        &self,
        tasks: &[(TaskRef, String)],
        worker_id: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Vec<Result<Option<Assignment>>>> {
        let mut out = Vec::with_capacity(tasks.len());
        for (task, nonce) in tasks {
            out.push(self.assign(task, worker_id, nonce, now, timing).await);
        }
        Ok(out)
    }

    /// Applies a worker's report. Unknown job or task: [`crate::Error::NotFound`].
    async fn report(
        &self,
        report: &Report,
        now: Timestamp,
        timing: Timing,
    ) -> Result<ReportOutcome>;

    /// Cancels a job and its unfinished tasks; `None` for an unknown job.
    async fn cancel_job(&self, job_id: &JobId, now: Timestamp) -> Result<Option<CancelOutcome>>;

    /// Expires up to `limit` leases that lapsed at or before `now`, consuming an attempt each.
    async fn expire_leases(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<ExpiredLease>>;

    /// Up to `limit` dispatchable tasks whose `redispatch_at` passed; each gets a later
    /// `redispatch_at` (with back-off) in the same step. The caller enqueues them.
    async fn take_orphans(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<Dispatch>>;

    /// The oldest `limit` dead letters.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// How many dead letters there are.
    async fn count_dead_letters(&self) -> Result<u64>;

    /// How many of `tasks` are dead letters now (a dry run of [`Store::requeue_dead`]).
    async fn count_dead_among(&self, tasks: &[TaskRef]) -> Result<u64>;

    /// Takes the listed dead letters out of the dead-letter queue with a fresh attempt budget;
    /// tasks that are not dead letters are skipped.
    async fn requeue_dead(
        &self,
        tasks: &[TaskRef],
        now: Timestamp,
        timing: Timing,
    ) -> Result<RequeueOutcome>;

    /// Discards the listed dead letters: each stays `Failed` and leaves the dead-letter queue;
    /// tasks that are not dead letters are skipped. Returns those discarded, in request order.
    async fn discard_dead(&self, tasks: &[TaskRef], now: Timestamp) -> Result<Vec<TaskRef>>;

    /// Stores a new schedule; `false` (nothing changed) when its tenant has one of that id.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<bool>;

    /// The schedules named `schedule_id`, one per tenant that has one, by tenant.
    async fn schedules_named(&self, schedule_id: &str) -> Result<Vec<Schedule>>;

    /// Schedules by id (then tenant), of these tenants (`None`: every tenant).
    async fn list_schedules(
        &self,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> Result<Page<Schedule>>;

    /// Deletes a tenant's schedule (the jobs it created stay); `false` when there was none.
    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> Result<bool>;

    /// Pauses a tenant's schedule (`next_fire_at` `None`), or resumes it to fire next at
    /// `next_fire_at` if it is paused (a running schedule is left as it is); returns it as it
    /// is now, or `None` when there is none.
    async fn set_schedule_paused(
        &self,
        tenant: &str,
        schedule_id: &str,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<Schedule>>;

    /// Up to `limit` unpaused schedules due at `now`, the most overdue first (then by id and
    /// tenant), found through an ordered index of `next_fire_at`.
    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>>;

    /// Applies a firing in one step: when the schedule may still fire it
    /// ([`crate::schedule::may_fire`]), records it ([`crate::schedule::fired`]) and stores the
    /// tick's job; `false` (nothing changed) otherwise. Each schedule and tick creates
    /// one job at most, whatever the number of replicas.
    async fn fire_schedule(&self, firing: &Firing, job: &Job, tasks: &[Task]) -> Result<bool>;

    /// Appends to the audit chain (serialized: the chain never forks) and returns the event.
    async fn append_audit(&self, draft: AuditDraft, now: Timestamp) -> Result<AuditEvent>;

    /// Audit events matching `query`, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// Up to `limit` audit events with id greater than `after_id`, in id order (for verification).
    async fn audit_chain(&self, after_id: u64, limit: usize) -> Result<Vec<AuditEvent>>;
}

/// A claimed queue reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Opaque handle for ack and nack.
    pub receipt: String,
    /// The task referenced.
    pub task: TaskRef,
    /// Its dispatch class.
    pub priority: Priority,
}

/// Where a nacked reference went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    /// Back on the pending queue.
    Requeued,
    /// Nacked too often: moved to the dead list.
    DeadLettered,
}

/// Dispatch hints: task references with claim/ack semantics. Never the source of truth; losing
/// everything in it delays work but loses none (the reconciler re-enqueues from the store).
#[async_trait]
pub trait Queue: Send + Sync + Debug + 'static {
    /// `memory`, `redis`, …; the `queue_backend` metric label.
    fn backend(&self) -> &'static str;

    /// Answers when the queue can serve requests (readiness).
    async fn ping(&self) -> Result<()>;

    /// Appends references to the pending queue of their priority.
    async fn enqueue(&self, tasks: &[Dispatch]) -> Result<()>;

    /// Claims up to `max` references, interactive before batch, oldest first. Each stays
    /// invisible until acked, nacked, or `visibility` passes.
    async fn claim(&self, max: usize, now: Timestamp, visibility: Duration) -> Result<Vec<Claim>>;

    /// Drops claimed references for good. Unknown receipts are ignored.
    async fn ack(&self, receipts: &[String]) -> Result<()>;

    /// Returns a claimed reference to the pending queue, or to the dead list once it has been
    /// nacked `deadletter_max` times.
    async fn nack(&self, claim: &Claim) -> Result<NackOutcome>;

    /// Returns up to `limit` claims whose visibility passed to the pending queue; returns how many.
    async fn requeue_expired(&self, now: Timestamp, limit: usize) -> Result<u64>;

    /// Puts a reference on the dead list (its task was dead-lettered in the store).
    async fn dead_letter(&self, task: &TaskRef) -> Result<()>;

    /// In one step, removes `dead` from the dead list (where present) and enqueues `enqueue`.
    async fn requeue_dead(&self, dead: &[TaskRef], enqueue: &[Dispatch]) -> Result<()>;

    /// Length of the dead list (the `dead_letter_count` gauge).
    async fn dead_letter_count(&self) -> Result<u64>;

    /// References waiting on the pending queues.
    async fn pending_count(&self) -> Result<u64>;
}

/// Whether a rate-limited action may proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead (and the use was counted).
    Allowed,
    /// Refused; try again after this many whole seconds.
    Limited {
        /// Seconds until the oldest use in the window leaves it.
        retry_after_secs: u64,
    },
}

/// A sliding-window rate limiter shared by every gateway replica that uses the same backend.
#[async_trait]
pub trait RateLimiter: Send + Sync + Debug + 'static {
    /// Counts one use of `key` if fewer than `limit` happened in the `window` before `now`.
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Timestamp,
    ) -> Result<RateDecision>;
}
