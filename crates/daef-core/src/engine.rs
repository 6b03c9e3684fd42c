//! The engine: every use case of the control plane, written against the ports only.
//!
//! It decides nothing a store could get wrong under concurrency: each state change is one store
//! call (atomic and conditional); the engine only sequences store and queue calls and records
//! metrics. Queue failures after a store commit are logged, not returned: the store already holds
//! the truth and the reconciler re-enqueues what the queue missed.
//!
//! Text handed to the engine must not contain NUL characters: the Postgres store cannot hold
//! them. `daef-http` refuses them at the boundary, for every backend alike; a service embedding
//! the engine must do the same before calling it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};

use crate::audit::{AuditDraft, AuditEvent, ChainVerifier, Verification};
use crate::error::{Error, Resource, Result};
use crate::metric;
use crate::model::{
    Assignment, DeadLetter, Job, JobId, JobStatus, Report, ReportStatus, Task, TaskRef, Worker,
    WorkerCapabilities, WorkerStats,
};
use crate::planner::JobSpec;
use crate::ports::{
    AuditQuery, Claim, Dispatch, IdempotencyKey, JobQuery, KeyedInsert, Page, Queue, ReportOutcome,
    Store, TaskQuery,
};
use crate::schedule::{self, NewSchedule, Schedule};
use crate::time::Timestamp;
use crate::transition::{self, AttemptOutcome, CancelOutcome, Timing};

/// A backend that did not answer [`Engine::ready`].
#[derive(Debug, thiserror::Error)]
#[error("{port} ({backend}) unavailable")]
pub struct NotReady {
    /// `store` or `queue`.
    pub port: &'static str,
    /// The adapter (`memory`, `postgres`, `redis`).
    pub backend: &'static str,
    /// Why it did not answer.
    #[source]
    pub source: Error,
}

/// Most assignments one poll may hand out.
pub const MAX_POLL_TASKS: usize = 100;

/// Longest a long poll (`wait_ms`) is held waiting for work; longer waits are clamped to it.
pub const MAX_POLL_WAIT_MS: u64 = 30_000;

/// Most claim rounds one poll makes while stale references keep it from filling up.
const MAX_CLAIM_ROUNDS: usize = 8;

/// What a poll has gathered so far.
struct PollRound {
    assignments: Vec<Assignment>,
    first_error: Option<Error>,
}

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Lease length and orphan re-enqueue delay.
    pub timing: Timing,
    /// How long a claimed queue reference stays invisible before the reconciler returns it
    /// (only matters when a gateway dies between claim and ack).
    pub claim_visibility: Duration,
    /// Most items one reconcile step handles per batch.
    pub reconcile_batch: usize,
    /// How long a submit's `Idempotency-Key` names its job.
    pub idempotency_ttl: Duration,
    /// Finished jobs are deleted this long after they last changed (`DAEF_RETENTION_HOURS`);
    /// `None` keeps everything.
    pub retention: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timing: Timing::default(),
            claim_visibility: Duration::from_secs(30),
            reconcile_batch: 500,
            idempotency_ttl: Duration::from_secs(86_400),
            retention: Some(Duration::from_secs(168 * 3_600)),
        }
    }
}

impl EngineConfig {
    /// The defaults, with failed attempts retried at once (tests that are not about back-off).
    pub fn retrying_at_once() -> Self {
        let mut config = Self::default();
        config.timing.retry_backoff = crate::model::RetryBackoff::IMMEDIATE;
        config
    }

    /// How often workers should heartbeat: three times per lease, at least every second.
    pub fn heartbeat_interval_seconds(&self) -> u64 {
        (self.timing.lease.as_secs() / 3).max(1)
    }
}

/// What one reconcile pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    /// Leases that lapsed and were expired.
    pub leases_expired: usize,
    /// Queue claims returned to pending.
    pub claims_requeued: u64,
    /// Unclaimed dispatchable tasks enqueued again.
    pub orphans_requeued: usize,
    /// Finished jobs deleted by retention.
    pub jobs_purged: u64,
    /// Jobs created by periodic schedules.
    pub schedules_fired: usize,
    /// Steps that failed (logged); the others still ran.
    pub errors: usize,
}

/// What a dead-letter requeue request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequeueSummary {
    /// Distinct tasks named in the request.
    pub requested: usize,
    /// Tasks requeued (or, in a dry run, that would be).
    pub requeued: u64,
}

/// What a heartbeat did, and what the worker should stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Leases of the worker's running tasks that were extended.
    pub leases_extended: u32,
    /// Of the leases the worker said it runs attempts under, those no longer live (the job was
    /// canceled, or the attempt finished, lapsed or was taken over): stop those attempts.
    pub stop_leases: Vec<String>,
}

/// What a dead-letter discard (or its dry run) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscardSummary {
    /// Distinct tasks named in the request.
    pub requested: usize,
    /// Tasks discarded (or, in a dry run, that would be).
    pub discarded: u64,
}

/// The control plane's use cases over a [`Store`] and a [`Queue`].
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    config: EngineConfig,
}

impl Engine {
    /// An engine over these adapters.
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>, config: EngineConfig) -> Self {
        Self {
            store,
            queue,
            config,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Checks that both backends answer; the error names the one that does not.
    pub async fn ready(&self) -> std::result::Result<(), NotReady> {
        let not_ready = |port, backend, source| NotReady {
            port,
            backend,
            source,
        };
        self.store
            .ping()
            .await
            .map_err(|e| not_ready("store", self.store.backend(), e))?;
        self.queue
            .ping()
            .await
            .map_err(|e| not_ready("queue", self.queue.backend(), e))
    }

    /// Plans and stores a job, then enqueues its dispatchable tasks.
    ///
    /// A job is accepted only while the queue answers: otherwise the caller gets
    /// [`Error::Unavailable`] and nothing is stored, rather than an accepted job that waits for
    /// the reconciler. (An enqueue that fails after the commit is still recovered by it.)
    pub async fn submit(&self, spec: &JobSpec, tenant: &str, now: Timestamp) -> Result<Job> {
        let (job, tasks) = transition::create_job(spec, tenant, now, self.config.timing)?;
        self.queue.ping().await?;
        self.store.insert_job(&job, &tasks).await?;
        self.stored(&tasks, now).await;
        Ok(job)
    }

    /// After a job's store: counts it and enqueues what it can dispatch now (a delayed job's
    /// tasks are enqueued by the reconciler when due).
    async fn stored(&self, tasks: &[Task], now: Timestamp) {
        counter!(metric::JOBS_SUBMITTED_TOTAL).increment(1);
        let ready: Vec<Dispatch> = tasks
            .iter()
            .filter(|t| t.is_due(now))
            .map(|t| (t.task_ref(), t.priority))
            .collect();
        self.enqueue_or_log(&ready, "submit").await;
    }

    /// [`Engine::submit`] under an idempotency key (`key`, and the blake3 of the request body
    /// in hex): a repeat within the key's lifetime stores nothing and returns the first job
    /// (`replayed` true); the same key with another body is a conflict.
    pub async fn submit_keyed(
        &self,
        spec: &JobSpec,
        tenant: &str,
        key: &str,
        body_hash: &str,
        now: Timestamp,
    ) -> Result<(Job, bool)> {
        let (job, tasks) = transition::create_job(spec, tenant, now, self.config.timing)?;
        self.queue.ping().await?;
        let key = IdempotencyKey {
            tenant: tenant.to_owned(),
            key: key.to_owned(),
            body_hash: body_hash.to_owned(),
            expires_at: now.plus(self.config.idempotency_ttl),
        };
        match self.store.insert_job_keyed(&job, &tasks, &key, now).await? {
            KeyedInsert::Inserted => {}
            KeyedInsert::Replayed(first) => {
                return match self.job(&first).await {
                    Ok(job) => Ok((job, true)),
                    // Retention deleted it while its key lived on (DAEF_RETENTION_HOURS shorter
                    // than DAEF_IDEMPOTENCY_TTL_SECONDS): still no second job.
                    Err(Error::NotFound(_)) => Err(Error::conflict(format!(
                        "Idempotency-Key names job {first}, which retention has deleted"
                    ))),
                    Err(err) => Err(err),
                };
            }
            KeyedInsert::Conflict(first) => {
                return Err(Error::conflict(format!(
                    "Idempotency-Key was used for job {first} with another body"
                )));
            }
        }
        self.stored(&tasks, now).await;
        Ok((job, false))
    }

    /// One job.
    pub async fn job(&self, job_id: &JobId) -> Result<Job> {
        self.store
            .job(job_id)
            .await?
            .ok_or(Error::NotFound(Resource::Job))
    }

    /// Jobs matching `query`, newest first.
    pub async fn list_jobs(&self, query: &JobQuery) -> Result<Page<Job>> {
        self.store.list_jobs(query).await
    }

    /// Registered workers by id.
    pub async fn list_workers(&self, limit: usize, offset: usize) -> Result<Page<Worker>> {
        self.store.list_workers(limit, offset).await
    }

    /// A job's tasks matching `query`, sorted by task id.
    pub async fn tasks(&self, job_id: &JobId, query: &TaskQuery) -> Result<Page<Task>> {
        self.store
            .list_tasks(job_id, query)
            .await?
            .ok_or(Error::NotFound(Resource::Job))
    }

    /// Cancels a job and its unfinished tasks.
    pub async fn cancel(&self, job_id: &JobId, now: Timestamp) -> Result<CancelOutcome> {
        let outcome = self
            .store
            .cancel_job(job_id, now)
            .await?
            .ok_or(Error::NotFound(Resource::Job))?;
        if outcome == CancelOutcome::Canceled {
            counter!(metric::JOBS_FINISHED_TOTAL, "status" => JobStatus::Canceled.as_str())
                .increment(1);
        }
        Ok(outcome)
    }

    /// Registers (or re-registers) a worker.
    pub async fn register_worker(
        &self,
        worker_id: &str,
        capabilities: &WorkerCapabilities,
        now: Timestamp,
    ) -> Result<()> {
        self.store
            .register_worker(worker_id, capabilities, now)
            .await
    }

    /// Records a heartbeat, extends the worker's live leases, and says which of the leases the
    /// worker listed in `held` it should stop (see [`HeartbeatOutcome`]).
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        held: &[(TaskRef, String)],
        now: Timestamp,
    ) -> Result<HeartbeatOutcome> {
        let leases_extended = self
            .store
            .heartbeat(worker_id, stats, now, self.config.timing)
            .await?
            .ok_or(Error::NotFound(Resource::Worker))?;
        let stop_leases = self.store.stale_leases(held).await?;
        Ok(HeartbeatOutcome {
            leases_extended,
            stop_leases,
        })
    }

    /// Claims up to `max_tasks` references and turns each into an assignment through the store's
    /// conditional `Queued → Running` step. Every claim is acknowledged (stale ones are dropped)
    /// except those the store failed on, which are nacked for another try.
    pub async fn poll(
        &self,
        worker_id: &str,
        max_tasks: usize,
        now: Timestamp,
    ) -> Result<Vec<Assignment>> {
        if !self.store.worker_exists(worker_id).await? {
            return Err(Error::NotFound(Resource::Worker));
        }
        let wanted = max_tasks.clamp(1, MAX_POLL_TASKS);
        let mut round = PollRound {
            assignments: Vec::with_capacity(wanted),
            first_error: None,
        };
        // Stale references (duplicates, finished or canceled tasks) do not count against the poll:
        // claim again so a worker is not sent away empty-handed while work waits behind them.
        for _ in 0..MAX_CLAIM_ROUNDS {
            let want = wanted - round.assignments.len();
            let claims = match self
                .queue
                .claim(want, now, self.config.claim_visibility)
                .await
            {
                Ok(claims) => claims,
                Err(err) if round.assignments.is_empty() => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, "claim failed after some assignments; returning those");
                    break;
                }
            };
            if claims.is_empty() {
                break;
            }
            let stale = self.assign_claims(worker_id, claims, now, &mut round).await;
            if stale == 0 || round.assignments.len() >= wanted || round.first_error.is_some() {
                break;
            }
        }
        counter!(metric::TASKS_ASSIGNED_TOTAL).increment(round.assignments.len() as u64);
        match round.first_error {
            Some(err) if round.assignments.is_empty() => Err(err),
            _ => Ok(round.assignments),
        }
    }

    /// Turns claims into assignments, acking what is settled; returns how many were stale.
    async fn assign_claims(
        &self,
        worker_id: &str,
        claims: Vec<Claim>,
        now: Timestamp,
        round: &mut PollRound,
    ) -> usize {
        let backend = self.queue.backend();
        counter!(metric::QUEUE_CLAIMED_TOTAL, "queue_backend" => backend, "worker_id" => worker_id.to_owned())
            .increment(claims.len() as u64);
        let batch: Vec<(TaskRef, String)> = claims
            .iter()
            .map(|c| (c.task.clone(), transition::lease_nonce()))
            .collect();
        // One store step for the whole batch (one transaction in Postgres, not one per task).
        let outcomes = match self
            .store
            .assign_many(&batch, worker_id, now, self.config.timing)
            .await
        {
            Ok(outcomes) if outcomes.len() == claims.len() => outcomes,
            Ok(outcomes) => {
                let err = Error::backend(
                    self.store.backend(),
                    format!(
                        "assign_many gave {} results for {} tasks",
                        outcomes.len(),
                        claims.len()
                    ),
                );
                self.nack_all(worker_id, &claims, err, round).await;
                return 0;
            }
            Err(err) => {
                self.nack_all(worker_id, &claims, err, round).await;
                return 0;
            }
        };
        let mut acks = Vec::with_capacity(claims.len());
        let mut stale = 0;
        for (claim, outcome) in claims.into_iter().zip(outcomes) {
            match outcome {
                Ok(Some(assignment)) => {
                    round.assignments.push(assignment);
                    acks.push(claim.receipt);
                }
                Ok(None) => {
                    stale += 1;
                    counter!(metric::QUEUE_STALE_DROPPED_TOTAL, "queue_backend" => backend)
                        .increment(1);
                    acks.push(claim.receipt);
                }
                Err(err) => {
                    self.nack_failed(worker_id, &claim, &err).await;
                    round.first_error.get_or_insert(err);
                }
            }
        }
        if !acks.is_empty() {
            match self.queue.ack(&acks).await {
                Ok(()) => counter!(metric::QUEUE_ACKED_TOTAL, "queue_backend" => backend, "worker_id" => worker_id.to_owned())
                    .increment(acks.len() as u64),
                // The claims come back when their visibility lapses; the store refuses to assign
                // a running task twice, so the duplicates are dropped then.
                Err(err) => tracing::warn!(error = %err, "ack failed; claims will be returned and dropped"),
            }
        }
        stale
    }

    /// The store assigned none of `claims`: every one goes back for another try.
    async fn nack_all(&self, worker_id: &str, claims: &[Claim], err: Error, round: &mut PollRound) {
        for claim in claims {
            self.nack_failed(worker_id, claim, &err).await;
        }
        round.first_error.get_or_insert(err);
    }

    /// Counts and logs a claim the store failed to assign, and returns it to the queue.
    async fn nack_failed(&self, worker_id: &str, claim: &Claim, err: &Error) {
        let backend = self.queue.backend();
        tracing::warn!(task = %claim.task, worker_id, error = %err, source = ?std::error::Error::source(err), "assignment failed; nacking the claim");
        counter!(metric::SCHEDULER_ASSIGNMENT_ERRORS_TOTAL, "queue_backend" => backend, "worker_id" => worker_id.to_owned()).increment(1);
        counter!(metric::QUEUE_NACKED_TOTAL, "queue_backend" => backend, "worker_id" => worker_id.to_owned(), "reason" => "assign_error").increment(1);
        if let Err(nack_err) = self.queue.nack(claim).await {
            tracing::warn!(task = %claim.task, error = %nack_err, "nack failed; the claim returns when its visibility lapses");
        }
    }

    /// Applies a worker's report and dispatches what it unblocked.
    pub async fn report(&self, report: &Report, now: Timestamp) -> Result<ReportOutcome> {
        let outcome = self.store.report(report, now, self.config.timing).await?;
        match &outcome {
            ReportOutcome::Applied(effects) => {
                let status = match report.status {
                    ReportStatus::Completed => "Completed",
                    ReportStatus::Failed => "Failed",
                };
                counter!(metric::TASK_REPORTS_TOTAL, "status" => status).increment(1);
                match effects.failure {
                    Some(AttemptOutcome::Retry) => {
                        counter!(metric::QUEUE_NACKED_TOTAL, "queue_backend" => self.queue.backend(), "worker_id" => report.worker_id.clone(), "reason" => "task_failed").increment(1);
                    }
                    Some(AttemptOutcome::DeadLettered) => self.dead_lettered(&report.task).await,
                    None => {}
                }
                if effects.job_status == JobStatus::Completed {
                    counter!(metric::JOBS_FINISHED_TOTAL, "status" => JobStatus::Completed.as_str()).increment(1);
                }
                self.enqueue_or_log(&effects.enqueue, "report").await;
            }
            ReportOutcome::Duplicate => {
                counter!(metric::TASK_REPORTS_REJECTED_TOTAL, "reason" => "duplicate").increment(1)
            }
            ReportOutcome::JobCanceled => {
                counter!(metric::TASK_REPORTS_REJECTED_TOTAL, "reason" => "job_canceled")
                    .increment(1)
            }
            ReportOutcome::NotRunning => {
                counter!(metric::TASK_REPORTS_REJECTED_TOTAL, "reason" => "not_running")
                    .increment(1)
            }
            ReportOutcome::StaleLease => {
                counter!(metric::TASK_REPORTS_REJECTED_TOTAL, "reason" => "stale_lease")
                    .increment(1)
            }
        }
        Ok(outcome)
    }

    /// The oldest `limit` dead letters.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.store.dead_letters(limit).await
    }

    /// Requeues the listed dead letters (or, with `dry_run`, counts how many are dead letters).
    pub async fn requeue_dead(
        &self,
        tasks: &[TaskRef],
        dry_run: bool,
        now: Timestamp,
    ) -> Result<RequeueSummary> {
        let mut seen = HashSet::with_capacity(tasks.len());
        let distinct: Vec<TaskRef> = tasks.iter().filter(|t| seen.insert(*t)).cloned().collect();
        if dry_run {
            let requeued = self.store.count_dead_among(&distinct).await?;
            return Ok(RequeueSummary {
                requested: distinct.len(),
                requeued,
            });
        }
        let outcome = self
            .store
            .requeue_dead(&distinct, now, self.config.timing)
            .await?;
        if let Err(err) = self
            .queue
            .requeue_dead(&outcome.requeued, &outcome.enqueue)
            .await
        {
            tracing::warn!(error = %err, "queue requeue of dead letters failed; the reconciler will enqueue them");
        }
        counter!(metric::DEAD_LETTER_REQUEUED_TOTAL, "queue_backend" => self.queue.backend())
            .increment(outcome.requeued.len() as u64);
        self.refresh_gauges().await;
        Ok(RequeueSummary {
            requested: distinct.len(),
            requeued: outcome.requeued.len() as u64,
        })
    }

    /// Discards the listed dead letters (or, with `dry_run`, counts how many are dead letters):
    /// each stays `Failed`, leaves the dead-letter list and the queue's dead list, and can no
    /// longer be requeued; its job stays `Failed`.
    pub async fn discard_dead(
        &self,
        tasks: &[TaskRef],
        dry_run: bool,
        now: Timestamp,
    ) -> Result<DiscardSummary> {
        let mut seen = HashSet::with_capacity(tasks.len());
        let distinct: Vec<TaskRef> = tasks.iter().filter(|t| seen.insert(*t)).cloned().collect();
        if dry_run {
            let discarded = self.store.count_dead_among(&distinct).await?;
            return Ok(DiscardSummary {
                requested: distinct.len(),
                discarded,
            });
        }
        let discarded = self.store.discard_dead(&distinct, now).await?;
        // Off the queue's dead list too, with nothing to enqueue; a reference left behind only
        // keeps the gauge high until the next discard or requeue names it.
        if let Err(err) = self.queue.requeue_dead(&discarded, &[]).await {
            tracing::warn!(error = %err, "removing discarded dead letters from the queue's dead list failed");
        }
        counter!(metric::DEAD_LETTER_DISCARDED_TOTAL, "queue_backend" => self.queue.backend())
            .increment(discarded.len() as u64);
        self.refresh_gauges().await;
        Ok(DiscardSummary {
            requested: distinct.len(),
            discarded: discarded.len() as u64,
        })
    }

    /// One reconciler pass (safe to run in every replica at once): expire lapsed leases, return
    /// lapsed queue claims, re-enqueue dispatchable tasks nothing has claimed for a while, fire
    /// due schedules and, with retention on, delete old finished jobs.
    pub async fn reconcile(&self, now: Timestamp) -> ReconcileSummary {
        let mut summary = ReconcileSummary::default();
        let batch = self.config.reconcile_batch.max(1);
        let backend = self.queue.backend();

        match self
            .store
            .expire_leases(now, batch, self.config.timing)
            .await
        {
            Ok(expired) => {
                summary.leases_expired = expired.len();
                let mut enqueue = Vec::new();
                for lease in expired {
                    counter!(metric::LEASE_EXPIRED_TOTAL, "reason" => lease.reason).increment(1);
                    match lease.outcome {
                        AttemptOutcome::Retry => counter!(metric::QUEUE_NACKED_TOTAL, "queue_backend" => backend, "worker_id" => lease.worker_id.clone(), "reason" => lease.reason).increment(1),
                        AttemptOutcome::DeadLettered => self.dead_lettered(&lease.task).await,
                    }
                    enqueue.extend(lease.enqueue);
                }
                self.enqueue_or_log(&enqueue, "lease expiry").await;
            }
            Err(err) => {
                summary.errors += 1;
                tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "reconcile: expiring leases failed");
            }
        }

        match self.queue.requeue_expired(now, batch).await {
            Ok(n) => {
                summary.claims_requeued = n;
                counter!(metric::QUEUE_EXPIRED_REQUEUED_TOTAL, "queue_backend" => backend)
                    .increment(n);
            }
            Err(err) => {
                summary.errors += 1;
                tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "reconcile: returning expired claims failed");
            }
        }

        // Taking orphans pushes their next re-enqueue time back; skip it while the queue is down
        // so that they are enqueued as soon as it returns.
        if self.queue.ping().await.is_ok() {
            match self
                .store
                .take_orphans(now, batch, self.config.timing)
                .await
            {
                Ok(orphans) => {
                    summary.orphans_requeued = orphans.len();
                    if !orphans.is_empty() {
                        counter!(metric::ORPHANS_REQUEUED_TOTAL, "queue_backend" => backend)
                            .increment(orphans.len() as u64);
                        tracing::info!(
                            count = orphans.len(),
                            "reconcile: re-enqueued unclaimed dispatchable tasks"
                        );
                    }
                    self.enqueue_or_log(&orphans, "orphan requeue").await;
                }
                Err(err) => {
                    summary.errors += 1;
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "reconcile: finding orphaned tasks failed");
                }
            }
        } else {
            summary.errors += 1;
        }

        self.fire_schedules(now, &mut summary).await;

        if let Some(retention) = self.config.retention {
            match self.store.purge(now.minus(retention), now, batch).await {
                Ok(purged) => {
                    summary.jobs_purged = purged.jobs;
                    if purged.jobs > 0 {
                        counter!(metric::JOBS_PURGED_TOTAL).increment(purged.jobs);
                        tracing::info!(
                            jobs = purged.jobs,
                            keys = purged.keys,
                            "reconcile: retention deleted finished jobs"
                        );
                    }
                }
                Err(err) => {
                    summary.errors += 1;
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "reconcile: retention failed");
                }
            }
        }

        self.refresh_gauges().await;
        let result = if summary.errors == 0 { "ok" } else { "error" };
        counter!(metric::RECONCILE_RUNS_TOTAL, "result" => result).increment(1);
        summary
    }

    /// Creates a schedule; its first tick is the first after `now`.
    pub async fn create_schedule(&self, new: NewSchedule, now: Timestamp) -> Result<Schedule> {
        let schedule = schedule::create(new, now)?;
        if !self.store.insert_schedule(&schedule).await? {
            return Err(Error::conflict(format!(
                "schedule {} already exists",
                schedule.schedule_id
            )));
        }
        Ok(schedule)
    }

    /// The schedule named `schedule_id` among these tenants' (`None`: every tenant's). Not
    /// found when none has one; a conflict naming the tenants when several do (the caller
    /// then names one).
    pub async fn find_schedule(
        &self,
        schedule_id: &str,
        tenants: Option<&[String]>,
    ) -> Result<Schedule> {
        let mut found: Vec<Schedule> = self
            .store
            .schedules_named(schedule_id)
            .await?
            .into_iter()
            .filter(|s| tenants.is_none_or(|t| t.contains(&s.tenant)))
            .collect();
        match found.len() {
            0 => Err(Error::NotFound(Resource::Schedule)),
            1 => Ok(found.remove(0)),
            _ => Err(Error::conflict(format!(
                "tenants {} each have a schedule {schedule_id}: name one with X-DAEF-Tenant",
                found
                    .iter()
                    .map(|s| s.tenant.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Schedules by id (then tenant), of these tenants (`None`: every tenant).
    pub async fn list_schedules(
        &self,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> Result<Page<Schedule>> {
        self.store.list_schedules(tenants, limit, offset).await
    }

    /// Deletes a tenant's schedule; the jobs it created stay.
    pub async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> Result<()> {
        if self.store.delete_schedule(tenant, schedule_id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(Resource::Schedule))
        }
    }

    /// Pauses a tenant's schedule (a paused one stays paused).
    pub async fn pause_schedule(
        &self,
        tenant: &str,
        schedule_id: &str,
        now: Timestamp,
    ) -> Result<Schedule> {
        self.store
            .set_schedule_paused(tenant, schedule_id, None, now)
            .await?
            .ok_or(Error::NotFound(Resource::Schedule))
    }

    /// Resumes `schedule` (as the caller read it) at its first tick after `now`, if it is
    /// paused: the ticks it missed while paused are not run. A running schedule is left as it
    /// is, and so is one another request resumed meanwhile.
    pub async fn resume_schedule(&self, schedule: &Schedule, now: Timestamp) -> Result<Schedule> {
        if !schedule.paused {
            return Ok(schedule.clone());
        }
        let next = schedule::resumed_at(schedule, now)
            .ok_or_else(|| Error::invalid(format!("cron {:?} never fires again", schedule.cron)))?;
        // The store resumes it only if it is still paused: two resumes at once set one tick.
        self.store
            .set_schedule_paused(&schedule.tenant, &schedule.schedule_id, Some(next), now)
            .await?
            .ok_or(Error::NotFound(Resource::Schedule))
    }

    /// Fires the schedules due at `now`, one job each (safe in every replica at once: the
    /// store applies a firing only where no other replica did).
    async fn fire_schedules(&self, now: Timestamp, summary: &mut ReconcileSummary) {
        let due = match self
            .store
            .due_schedules(now, self.config.reconcile_batch.max(1))
            .await
        {
            Ok(due) => due,
            Err(err) => {
                summary.errors += 1;
                tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "reconcile: finding due schedules failed");
                return;
            }
        };
        for due in due {
            let (firing, job, tasks) = match schedule::fire(&due, now, self.config.timing) {
                Ok(fired) => fired,
                Err(err) => {
                    // Its template or expression no longer holds (a rule changed since it was
                    // created): pause it, so it neither fails every pass nor holds up the
                    // schedules behind it.
                    summary.errors += 1;
                    tracing::error!(schedule_id = %due.schedule_id, tenant = %due.tenant, error = %err, "reconcile: a schedule cannot fire; pausing it");
                    if let Err(err) = self
                        .store
                        .set_schedule_paused(&due.tenant, &due.schedule_id, None, now)
                        .await
                    {
                        tracing::warn!(schedule_id = %due.schedule_id, error = %err, "reconcile: pausing a schedule that cannot fire failed");
                    }
                    continue;
                }
            };
            match self.store.fire_schedule(&firing, &job, &tasks).await {
                Ok(true) => {
                    summary.schedules_fired += 1;
                    counter!(metric::SCHEDULE_FIRES_TOTAL).increment(1);
                    tracing::info!(schedule_id = %firing.schedule_id, job_id = %job.job_id, fire_time = %firing.fire_time, "schedule fired");
                    self.stored(&tasks, now).await;
                }
                // Another replica fired this tick, or the schedule was paused or deleted.
                Ok(false) => {}
                Err(err) => {
                    summary.errors += 1;
                    tracing::warn!(schedule_id = %firing.schedule_id, error = %err, source = ?std::error::Error::source(&err), "reconcile: firing a schedule failed");
                }
            }
        }
    }

    /// Appends an audit event.
    pub async fn audit(&self, draft: AuditDraft, now: Timestamp) -> Result<AuditEvent> {
        self.store.append_audit(draft, now).await
    }

    /// Audit events matching `query`, newest first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.store.list_audit(query).await
    }

    /// Re-verifies the whole audit chain, page by page.
    pub async fn verify_audit(&self) -> Result<Verification> {
        const PAGE: usize = 1_000;
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        loop {
            let page = self.store.audit_chain(after, PAGE).await?;
            let len = page.len();
            for event in &page {
                if !verifier.push(event) {
                    return Ok(verifier.finish());
                }
                after = event.id;
            }
            if len < PAGE {
                return Ok(verifier.finish());
            }
        }
    }

    /// Refreshes the queue gauges from the queue.
    pub async fn refresh_gauges(&self) {
        let backend = self.queue.backend();
        if let Ok(n) = self.queue.dead_letter_count().await {
            gauge!(metric::DEAD_LETTER_COUNT, "queue_backend" => backend).set(n as f64);
        }
        if let Ok(n) = self.queue.pending_count().await {
            gauge!(metric::QUEUE_PENDING_COUNT, "queue_backend" => backend).set(n as f64);
        }
    }

    async fn dead_lettered(&self, task: &TaskRef) {
        counter!(metric::TASKS_DEAD_LETTERED_TOTAL).increment(1);
        // A dead task fails its job (DESIGN.md invariant 5).
        counter!(metric::JOBS_FINISHED_TOTAL, "status" => JobStatus::Failed.as_str()).increment(1);
        if let Err(err) = self.queue.dead_letter(task).await {
            tracing::warn!(task = %task, error = %err, "could not add the task to the queue's dead list");
        }
    }

    async fn enqueue_or_log(&self, tasks: &[Dispatch], context: &str) {
        if tasks.is_empty() {
            return;
        }
        if let Err(err) = self.queue.enqueue(tasks).await {
            // The store marked them dispatchable with a re-enqueue deadline; the reconciler
            // enqueues them once the queue answers again.
            tracing::warn!(context, count = tasks.len(), error = %err, source = ?std::error::Error::source(&err), "enqueue failed; the reconciler will retry");
        }
    }
}
