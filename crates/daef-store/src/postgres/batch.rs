//! The batched write path: submits, poll assignments and reports, from every connection of a
//! replica, share transactions (group commit).
//!
//! A caller hands its operation to the [`Batcher`] and waits for that operation's own outcome,
//! which it gets only after the commit. A few writer loops take turns at the queue: a free writer
//! takes the first waiting operation and everything queued behind it (at most [`MAX_BATCH`]),
//! runs them as one transaction and answers each. Nothing waits for company: with one request in
//! flight a batch is that request alone, so latency at low load does not rise; under load, the
//! operations that arrive while every writer is busy share the next commit.
//!
//! One transaction per batch. A batch of submits alone takes one round trip: `BEGIN`, one
//! statement inserting every job with its tasks (`ON CONFLICT DO NOTHING`: a taken id fails only
//! its own submit), `COMMIT`. A batch with reports or assignments takes two:
//! 1. `BEGIN` (see [`BEGIN`]), the inserts, then locks: every job the reports and assignments
//!    touch (in id order), then every task they read or change (reported tasks, their
//!    dependents, their jobs' sink tasks, claimed tasks) in `(job_id, task_id)` order, the
//!    store's lock order, so batches never deadlock one another or the store's other
//!    transactions;
//! 2. after the reports, then the assignments, are decided in arrival order on the locked rows
//!    with the pure functions of `daef_core::transition` (exactly as the memory store does under
//!    its lock): every changed task and job written back once (`UPDATE … FROM unnest(…)`), each
//!    row only while it still has the status read under the lock, a check that every one
//!    matched, and `COMMIT`.
//!
//! A batch that fails for any reason but a transient abort (which reruns it) or an unreachable
//! Postgres (every operation gets "unavailable") runs again one operation per transaction, so
//! one bad operation never fails its neighbours.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use daef_core::model::{Assignment, Job, JobId, Report, Task, TaskRef};
use daef_core::ports::{Dispatch, IdempotencyKey, ReportEffects, ReportOutcome};
use daef_core::transition::{self, AttemptOutcome, ReportCheck, Timing};
use daef_core::{Error, Resource, Result, Timestamp};
use deadpool_postgres::{Object, Pool};
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::store::{Failure, MAX_TX_RETRIES, TxResult};
use super::{BACKEND, checkout, is_transient, rows, sql};

/// Most operations in one transaction: a bound on its statements' array sizes and lock count.
pub(super) const MAX_BATCH: usize = 256;

/// How a batch's transaction starts. Its statements only ever reach rows by key, so they are
/// planned once per connection (no planning per execution) and never with a sequential scan or
/// a hash or merge join over a table: whatever the statistics say (a table never analysed, or
/// analysed while small), a batch costs what its rows cost.
pub(super) const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
     SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
     SET LOCAL enable_mergejoin = off";

/// Operations waiting for a writer before callers wait to hand theirs over.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// An operation of the batched path.
pub(super) enum Op {
    /// `Store::insert_job`, and `Store::insert_job_keyed` while its key is free.
    Insert {
        job: Job,
        tasks: Vec<Task>,
        key: Option<IdempotencyKey>,
    },
    /// `Store::assign_many`: one poll's claimed tasks with their lease nonces.
    Assign {
        claims: Vec<(TaskRef, String)>,
        worker_id: String,
        now: Timestamp,
        timing: Timing,
    },
    /// `Store::report`.
    Report {
        report: Report,
        now: Timestamp,
        timing: Timing,
    },
}

/// What became of one operation of a committed batch.
pub(super) enum Outcome {
    Inserted(Result<()>),
    /// A keyed insert whose key was taken: nothing was stored; the caller reads the key.
    KeyTaken,
    Assigned(Vec<Option<Assignment>>),
    Reported(Result<ReportOutcome>),
}

struct Pending {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The handle the store's methods use; cloning it shares the writers.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts `writers` writer loops on the current tokio runtime: so many batches may be in
    /// flight at once. One would make every batch wait for the previous commit; many would split
    /// the load into batches of one. They stop when the last handle is dropped.
    pub(super) fn start(pool: Pool, target: Arc<str>, writers: usize) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(supervise(
                pool.clone(),
                Arc::clone(&target),
                Arc::clone(&receiver),
            ));
        }
        Self { queue }
    }

    /// Runs `op` in the next batch and returns its outcome once that batch committed (or
    /// failed).
    pub(super) async fn run(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { op, reply })
            .await
            .map_err(|_| Error::unavailable(BACKEND, "the Postgres batch writers stopped"))?;
        answer.await.map_err(|_| {
            Error::unavailable(BACKEND, "the Postgres batch writer failed before answering")
        })?
    }
}

/// Runs a writer loop, and a new one should it panic: the callers of the batch it was running
/// get "unavailable" (their answers are dropped), and later operations are served again.
async fn supervise(pool: Pool, target: Arc<str>, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let running = tokio::spawn(writer(
            pool.clone(),
            Arc::clone(&target),
            Arc::clone(&queue),
        ));
        match running.await {
            Err(err) if err.is_panic() => {
                tracing::error!(error = %err, "a Postgres batch writer panicked; starting another");
            }
            // The queue closed (the store was dropped), or the runtime is shutting down.
            _ => return,
        }
    }
}

async fn writer(pool: Pool, target: Arc<str>, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
        tracing::trace!(operations = ops.len(), "running a batch");
        match run_with_retry(&pool, &target, &ops).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that stopped waiting needs no answer.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) if ops.len() == 1 => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Err(err)));
            }
            // Postgres cannot be reached: one operation at a time would only wait out the
            // connect timeout once per operation.
            Err(err @ Error::Unavailable { .. }) => {
                let cause = std::error::Error::source(&err)
                    .map_or_else(|| err.to_string(), ToString::to_string);
                for reply in replies {
                    let _ = reply.send(Err(Error::unavailable(BACKEND, cause.clone())));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, operations = ops.len(), "batch failed; running its operations one by one");
                for (op, reply) in ops.iter().zip(replies) {
                    let outcome = run_with_retry(&pool, &target, std::slice::from_ref(op))
                        .await
                        .map(|mut one| one.pop().expect("one outcome per operation"));
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

/// One batch as one transaction, run again when Postgres aborted it to break a deadlock or a
/// serialization conflict.
async fn run_with_retry(pool: &Pool, target: &str, ops: &[Op]) -> Result<Vec<Outcome>> {
    let mut retries = 0u32;
    loop {
        let client = checkout(pool, target).await?;
        let outcome = run_batch(&client, ops).await;
        if outcome.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
            // The connection may still be inside the transaction: close it rather than reuse it.
            drop(Object::take(client));
        }
        match outcome {
            Ok(outcomes) => return Ok(outcomes),
            Err(Failure::Db(err)) if retries < MAX_TX_RETRIES && is_transient(&err) => {
                retries += 1;
                tracing::debug!(retries, error = %err, "batch aborted by postgres; retrying");
            }
            Err(failure) => return Err(failure.into_error()),
        }
    }
}

/// A locked job: the row as read and as changed by the batch.
struct JobRow {
    read: Job,
    row: Job,
}

/// A locked task, with its dependents (kept in the row, so a completion finds them by key).
struct TaskRow {
    read: Task,
    row: Task,
    dependents: Vec<String>,
}

/// The locked rows of a batch.
#[derive(Default)]
struct Locked {
    jobs: HashMap<String, JobRow>,
    tasks: HashMap<(String, String), TaskRow>,
    /// Jobs that failed in this batch: their waiting tasks stop being re-enqueued.
    paused: BTreeSet<String>,
}

fn key(task: &TaskRef) -> (String, String) {
    (task.job_id.as_str().to_owned(), task.task_id.clone())
}

/// The batch's transaction. On an error the caller rolls back (the transaction may still be
/// open); on success it has committed.
async fn run_batch(client: &Object, ops: &[Op]) -> TxResult<Vec<Outcome>> {
    // Submits: the first operation naming a job id may insert it; a later one in the same batch
    // is refused like one in a later batch.
    let mut inserting: HashSet<&str> = HashSet::new();
    let mut job_rows = Vec::new();
    let mut task_rows = Vec::new();
    let mut key_rows = Vec::new();
    // What the reports and assignments name.
    let mut lock_jobs: BTreeSet<&str> = BTreeSet::new();
    let mut named_jobs: Vec<&str> = Vec::new();
    let mut named_tasks: Vec<&str> = Vec::new();
    let mut reported_jobs: Vec<&str> = Vec::new();
    let mut reported_tasks: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            Op::Insert { job, tasks, key } => {
                if inserting.insert(job.job_id.as_str()) {
                    let mut row = job_json(job);
                    if let Some(key) = key {
                        row["keyed"] = serde_json::Value::Bool(true);
                        key_rows.push(key_json(key, &job.job_id));
                    }
                    job_rows.push(row);
                    task_rows.extend(tasks_json(tasks));
                }
            }
            Op::Assign { claims, .. } => {
                for (task, _) in claims {
                    lock_jobs.insert(task.job_id.as_str());
                    named_jobs.push(task.job_id.as_str());
                    named_tasks.push(&task.task_id);
                }
            }
            Op::Report { report, .. } => {
                lock_jobs.insert(report.task.job_id.as_str());
                named_jobs.push(report.task.job_id.as_str());
                named_tasks.push(&report.task.task_id);
                reported_jobs.push(report.task.job_id.as_str());
                reported_tasks.push(&report.task.task_id);
            }
        }
    }
    let lock_jobs: Vec<&str> = lock_jobs.into_iter().collect();
    let job_rows = serde_json::Value::Array(job_rows);
    let task_rows = serde_json::Value::Array(task_rows);
    let key_rows = serde_json::Value::Array(key_rows);

    let (insert, lock_job_rows, lock_task_rows) = tokio::try_join!(
        client.prepare_cached(sql::INSERT_JOBS),
        client.prepare_cached(sql::LOCK_JOBS),
        client.prepare_cached(sql::LOCK_BATCH_TASKS),
    )?;
    let insert_params: [&(dyn ToSql + Sync); 3] = [&job_rows, &task_rows, &key_rows];
    let lock_task_params: [&(dyn ToSql + Sync); 4] =
        [&named_jobs, &named_tasks, &reported_jobs, &reported_tasks];
    // One round trip: Postgres runs them in this order (jobs locked before their tasks). A batch
    // of submits alone commits in it too.
    let submits_only = lock_jobs.is_empty();
    let (begun, inserted, locked_jobs, locked_tasks, committed) = tokio::join!(
        client.batch_execute(BEGIN),
        async {
            if inserting.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&insert, &insert_params).await
            }
        },
        async {
            if submits_only {
                Ok(Vec::new())
            } else {
                client.query(&lock_job_rows, &[&lock_jobs]).await
            }
        },
        async {
            if named_tasks.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&lock_task_rows, &lock_task_params).await
            }
        },
        async {
            if submits_only {
                client.batch_execute("COMMIT").await
            } else {
                Ok(())
            }
        },
    );
    begun?;
    let inserted: HashSet<String> = inserted?
        .iter()
        .map(|row| rows::get::<String>(row, "job_id"))
        .collect::<Result<_>>()?;
    committed?;
    let mut locked = Locked::default();
    for row in &locked_jobs? {
        let job = rows::job(row)?;
        locked.jobs.insert(
            job.job_id.as_str().to_owned(),
            JobRow {
                read: job.clone(),
                row: job,
            },
        );
    }
    for row in &locked_tasks? {
        let task = rows::task(row)?;
        let dependents: Vec<String> = rows::get(row, "dependents")?;
        locked.tasks.insert(
            key(&task.task_ref()),
            TaskRow {
                read: task.clone(),
                row: task,
                dependents,
            },
        );
    }

    // Reports before assignments: a task reported and claimed in one batch is decided as if the
    // report came first, which is an order the two requests could have arrived in.
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(ops.len());
    let mut first_insert: HashSet<&str> = HashSet::new();
    for op in ops {
        outcomes.push(match op {
            Op::Insert { job, key, .. } => {
                let id = job.job_id.as_str();
                let first = first_insert.insert(id);
                Some(if first && inserted.contains(id) {
                    Outcome::Inserted(Ok(()))
                } else if first && key.is_some() {
                    // Its key was taken (by an earlier submit, or one in this batch).
                    Outcome::KeyTaken
                } else {
                    Outcome::Inserted(Err(Error::conflict(format!("job {id} already exists"))))
                })
            }
            Op::Report {
                report,
                now,
                timing,
            } => Some(Outcome::Reported(locked.report(report, *now, *timing))),
            Op::Assign { .. } => None,
        });
    }
    for (op, outcome) in ops.iter().zip(outcomes.iter_mut()) {
        if let Op::Assign {
            claims,
            worker_id,
            now,
            timing,
        } = op
        {
            *outcome = Some(Outcome::Assigned(
                claims
                    .iter()
                    .map(|(task, nonce)| locked.assign(task, worker_id, nonce, *now, *timing))
                    .collect(),
            ));
        }
    }

    if !submits_only {
        locked.write_back_and_commit(client).await?;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every operation decided"))
        .collect())
}

impl Locked {
    /// `Store::report` on the locked rows, as the memory store applies it.
    fn report(&mut self, report: &Report, now: Timestamp, timing: Timing) -> Result<ReportOutcome> {
        let job_id = report.task.job_id.as_str();
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Err(Error::NotFound(Resource::Job));
        };
        let task_key = key(&report.task);
        let Some(task) = self.tasks.get_mut(&task_key) else {
            return Err(Error::NotFound(Resource::Task));
        };
        match transition::check_report(&job.row, &task.row, report) {
            ReportCheck::Apply => {}
            ReportCheck::JobCanceled => return Ok(ReportOutcome::JobCanceled),
            ReportCheck::Duplicate => return Ok(ReportOutcome::Duplicate),
            ReportCheck::NotRunning => return Ok(ReportOutcome::NotRunning),
            ReportCheck::StaleLease => return Ok(ReportOutcome::StaleLease),
        }
        let dispatching = transition::job_is_dispatching(&job.row);
        let failure = transition::apply_report(&mut task.row, report, dispatching, now, timing);
        let mut enqueue: Vec<Dispatch> = Vec::new();
        match failure {
            None => {
                let dependents = task.dependents.clone();
                for dependent in dependents {
                    let Some(dependent) = self.tasks.get_mut(&(job_id.to_owned(), dependent))
                    else {
                        continue;
                    };
                    if transition::dependency_completed(
                        &mut dependent.row,
                        dispatching,
                        now,
                        timing,
                    ) {
                        enqueue.push((dependent.row.task_ref(), dependent.row.priority));
                    }
                }
                let sink_output = self
                    .tasks
                    .get(&(job_id.to_owned(), job.row.sink_task_id.clone()))
                    .and_then(|sink| sink.row.output_artifact_uri.clone());
                transition::job_task_completed(&mut job.row, sink_output.as_deref(), now);
            }
            Some(AttemptOutcome::Retry) => {
                // A retry that waits for its back-off is enqueued by the reconciler when due.
                if dispatching && task.row.is_due(now) {
                    enqueue.push((task.row.task_ref(), task.row.priority));
                }
            }
            Some(AttemptOutcome::DeadLettered) => {
                let failed = task.row.clone();
                transition::job_task_dead_lettered(&mut job.row, &failed, now);
                // The job dispatches nothing now: its locked tasks stop waiting here, the rest
                // in `write_back`.
                for (_, other) in self.tasks.iter_mut().filter(|((j, _), _)| j == job_id) {
                    other.row.redispatch_at = None;
                }
                self.paused.insert(job_id.to_owned());
            }
        }
        Ok(ReportOutcome::Applied(ReportEffects {
            failure,
            enqueue,
            job_status: self.jobs[job_id].row.status,
        }))
    }

    /// `Store::assign` on the locked rows: `None` when the task or its job is unknown, the task
    /// is not dispatchable (a stale claim, or one named twice) or the job does not dispatch.
    fn assign(
        &mut self,
        task: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Option<Assignment> {
        let job = self.jobs.get_mut(task.job_id.as_str())?;
        let task = self.tasks.get_mut(&key(task))?;
        transition::assign(&mut job.row, &mut task.row, worker_id, nonce, now, timing).ok()
    }

    /// Writes every changed row back, each only while it has the status read under the lock,
    /// and commits, in one round trip. Should any row not match, its statement fails, and so
    /// the `COMMIT` behind it rolls the whole batch back.
    async fn write_back_and_commit(&self, client: &Object) -> TxResult<()> {
        let tasks = TaskColumns::of(self.tasks.values().filter(|t| t.row != t.read));
        let jobs = JobColumns::of(self.jobs.values().filter(|j| j.row != j.read));
        let paused: Vec<&str> = self.paused.iter().map(String::as_str).collect();
        let (update_tasks, update_jobs, pause) = tokio::try_join!(
            client.prepare_cached(sql::UPDATE_BATCH_TASKS),
            client.prepare_cached(sql::UPDATE_BATCH_JOBS),
            client.prepare_cached(sql::PAUSE_DISPATCH),
        )?;
        let task_count = i64::try_from(tasks.len()).unwrap_or(i64::MAX);
        let job_count = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
        let mut task_params = tasks.params().to_vec();
        task_params.push(&task_count);
        let mut job_params = jobs.params().to_vec();
        job_params.push(&job_count);
        // The tasks of a paused job are written before it is paused.
        let (tasks_written, jobs_written, paused_done, committed) = tokio::join!(
            async {
                if tasks.len() == 0 {
                    Ok(0)
                } else {
                    client.execute(&update_tasks, &task_params).await
                }
            },
            async {
                if jobs.len() == 0 {
                    Ok(0)
                } else {
                    client.execute(&update_jobs, &job_params).await
                }
            },
            async {
                if paused.is_empty() {
                    Ok(0)
                } else {
                    client.execute(&pause, &[&paused]).await
                }
            },
            client.batch_execute("COMMIT"),
        );
        for (written, what) in [(tasks_written, "tasks"), (jobs_written, "jobs")] {
            if let Err(err) = written {
                if err.code() == Some(&SqlState::DIVISION_BY_ZERO) {
                    return Err(Failure::Domain(Error::backend(
                        BACKEND,
                        format!("locked {what} changed before their write; the batch rolled back"),
                    )));
                }
                return Err(err.into());
            }
        }
        paused_done?;
        committed?;
        Ok(())
    }
}

fn ts(t: Option<Timestamp>) -> Option<OffsetDateTime> {
    t.map(Timestamp::datetime)
}

/// An `INTEGER` column's value (the lifecycle never makes one exceed it).
fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// [`sql::UPDATE_BATCH_TASKS`]'s arrays, one entry per changed task.
#[derive(Default)]
struct TaskColumns<'a> {
    job_id: Vec<&'a str>,
    task_id: Vec<&'a str>,
    read_status: Vec<&'static str>,
    status: Vec<&'static str>,
    attempt: Vec<i32>,
    worker_id: Vec<Option<&'a str>>,
    lease_id: Vec<Option<&'a str>>,
    lease_expires_at: Vec<Option<OffsetDateTime>>,
    started_at: Vec<Option<OffsetDateTime>>,
    last_report_key: Vec<Option<&'a str>>,
    last_report_lease: Vec<Option<&'a str>>,
    output_artifact_uri: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    dead_lettered_at: Vec<Option<OffsetDateTime>>,
    redispatch_at: Vec<Option<OffsetDateTime>>,
    redispatch_count: Vec<i32>,
    pending_dependencies: Vec<i32>,
    updated_at: Vec<OffsetDateTime>,
    next_attempt_at: Vec<Option<OffsetDateTime>>,
}

impl<'a> TaskColumns<'a> {
    fn of(changed: impl Iterator<Item = &'a TaskRow>) -> Self {
        let mut c = Self::default();
        for TaskRow { read, row: t, .. } in changed {
            c.job_id.push(t.job_id.as_str());
            c.task_id.push(&t.task_id);
            c.read_status.push(read.status.as_str());
            c.status.push(t.status.as_str());
            c.attempt.push(int(t.attempt));
            c.worker_id.push(t.worker_id.as_deref());
            c.lease_id.push(t.lease_id.as_deref());
            c.lease_expires_at.push(ts(t.lease_expires));
            c.started_at.push(ts(t.started_at));
            c.last_report_key.push(t.last_report_key.as_deref());
            c.last_report_lease.push(t.last_report_lease.as_deref());
            c.output_artifact_uri.push(t.output_artifact_uri.as_deref());
            c.error.push(t.error.as_deref());
            c.dead_lettered_at.push(ts(t.dead_lettered_at));
            c.redispatch_at.push(ts(t.redispatch_at));
            c.redispatch_count.push(int(t.redispatch_count));
            c.pending_dependencies.push(int(t.pending_dependencies));
            c.updated_at.push(t.updated_at.datetime());
            c.next_attempt_at.push(ts(t.next_attempt_at));
        }
        c
    }

    fn len(&self) -> usize {
        self.job_id.len()
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.job_id,
            &self.task_id,
            &self.read_status,
            &self.status,
            &self.attempt,
            &self.worker_id,
            &self.lease_id,
            &self.lease_expires_at,
            &self.started_at,
            &self.last_report_key,
            &self.last_report_lease,
            &self.output_artifact_uri,
            &self.error,
            &self.dead_lettered_at,
            &self.redispatch_at,
            &self.redispatch_count,
            &self.pending_dependencies,
            &self.updated_at,
            &self.next_attempt_at,
        ]
    }
}

/// [`sql::UPDATE_BATCH_JOBS`]'s arrays, one entry per changed job.
#[derive(Default)]
struct JobColumns<'a> {
    job_id: Vec<&'a str>,
    read_status: Vec<&'static str>,
    status: Vec<&'static str>,
    message: Vec<Option<&'a str>>,
    result_artifact_uri: Vec<Option<&'a str>>,
    completed_tasks: Vec<i32>,
    dead_tasks: Vec<i32>,
    updated_at: Vec<OffsetDateTime>,
}

impl<'a> JobColumns<'a> {
    fn of(changed: impl Iterator<Item = &'a JobRow>) -> Self {
        let mut c = Self::default();
        for JobRow { read, row: j } in changed {
            c.job_id.push(j.job_id.as_str());
            c.read_status.push(read.status.as_str());
            c.status.push(j.status.as_str());
            c.message.push(j.message.as_deref());
            c.result_artifact_uri.push(j.result_artifact_uri.as_deref());
            c.completed_tasks.push(int(j.completed_tasks));
            c.dead_tasks.push(int(j.dead_tasks));
            c.updated_at.push(j.updated_at.datetime());
        }
        c
    }

    fn len(&self) -> usize {
        self.job_id.len()
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.job_id,
            &self.read_status,
            &self.status,
            &self.message,
            &self.result_artifact_uri,
            &self.completed_tasks,
            &self.dead_tasks,
            &self.updated_at,
        ]
    }
}

/// An idempotency key as one object of [`sql::INSERT_JOBS`]'s third JSON array.
pub(super) fn key_json(key: &IdempotencyKey, job_id: &JobId) -> serde_json::Value {
    serde_json::json!({
        "tenant": key.tenant,
        "key": key.key,
        "body_hash": key.body_hash,
        "job_id": job_id.as_str(),
        "expires_at": key.expires_at.to_string(),
    })
}

/// A job as one object of [`sql::INSERT_JOBS`]'s first JSON array (`keyed` false).
pub(super) fn job_json(job: &Job) -> serde_json::Value {
    let mut object = serde_json::json!({
        "keyed": false,
        "job_id": job.job_id.as_str(),
        "tenant": job.tenant,
        "job_type": job.job_type,
        "input": job.input,
        "policy": job.policy,
        "priority": job.priority.as_str(),
        "status": job.status.as_str(),
        "message": job.message,
        "result_artifact_uri": job.result_artifact_uri,
        "sink_task_id": job.sink_task_id,
        "task_count": job.task_count,
        "completed_tasks": job.completed_tasks,
        "dead_tasks": job.dead_tasks,
        "created_at": job.created_at.to_string(),
        "updated_at": job.updated_at.to_string(),
    });
    // Absent keys read as NULL: an unscheduled job (nearly all) sends nothing for them.
    if let (Some(schedule_id), Some(map)) = (&job.schedule_id, object.as_object_mut()) {
        map.insert("schedule_id".into(), schedule_id.as_str().into());
        map.insert(
            "scheduled_for".into(),
            job.scheduled_for.map(|t| t.to_string()).into(),
        );
    }
    object
}

/// A job's tasks as objects of [`sql::INSERT_JOBS`]'s second JSON array, each with the
/// inverse of its dependencies.
pub(super) fn tasks_json(tasks: &[Task]) -> impl Iterator<Item = serde_json::Value> + '_ {
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for task in tasks {
        for dep in &task.dependencies {
            dependents
                .entry(dep.as_str())
                .or_default()
                .push(task.task_id.as_str());
        }
    }
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_string());
    tasks.iter().map(move |task| {
        serde_json::json!({
            "job_id": task.job_id.as_str(),
            "task_id": task.task_id,
            "task_type": task.task_type,
            "inputs": task.inputs,
            "dependencies": task.dependencies,
            "dependents": dependents.get(task.task_id.as_str()).map_or(&[][..], Vec::as_slice),
            "max_retries": task.max_retries,
            "timeout_sec": task.timeout_sec,
            "priority": task.priority.as_str(),
            "status": task.status.as_str(),
            "attempt": task.attempt,
            "attempt_limit": task.attempt_limit,
            "pending_dependencies": task.pending_dependencies,
            "worker_id": task.worker_id,
            "lease_id": task.lease_id,
            "lease_expires_at": ts(task.lease_expires),
            "started_at": ts(task.started_at),
            "last_report_key": task.last_report_key,
            "last_report_lease": task.last_report_lease,
            "output_artifact_uri": task.output_artifact_uri,
            "error": task.error,
            "dead_lettered_at": ts(task.dead_lettered_at),
            "redispatch_at": ts(task.redispatch_at),
            "redispatch_count": task.redispatch_count,
            "backoff_initial_ms": task.retry_backoff.initial_ms,
            "backoff_max_ms": task.retry_backoff.max_ms,
            "next_attempt_at": ts(task.next_attempt_at),
            "created_at": task.created_at.to_string(),
            "updated_at": task.updated_at.to_string(),
        })
    })
}
