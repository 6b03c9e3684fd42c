//! [`Store`] for [`PostgresStore`].
//!
//! Each state-changing method is one transaction; submits, assignments and reports are handed to
//! the batch writers (`batch`), the rest run here. Decisions that depend only on the rows a
//! transaction has locked (may this report apply? what does this failure say?) are taken by the
//! pure functions of `daef_core::transition`, so both stores word and order them identically;
//! every write is a conditional `UPDATE … WHERE <expected state>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use daef_core::audit::{AuditDraft, AuditEvent};
use daef_core::model::{
    Assignment, DeadLetter, Job, JobId, JobStatus, Report, Task, TaskRef, Worker,
    WorkerCapabilities, WorkerStats,
};
use daef_core::ports::{
    AuditQuery, Dispatch, ExpiredLease, IdempotencyKey, JobQuery, KeyedInsert, Page, Purged,
    ReportOutcome, RequeueOutcome, Store, StoredKey, TaskQuery,
};
use daef_core::schedule::{Firing, Schedule};
use daef_core::transition::{self, AttemptOutcome, CancelOutcome, Timing};
use daef_core::{Error, Result, Timestamp};
use deadpool_postgres::{Client, GenericClient};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{IsolationLevel, Row};

use super::batch::{self, Op, Outcome};
use super::rows;
use super::sql;
use super::{BACKEND, PostgresStore, db_error, is_transient};

/// How often a transaction Postgres aborted (deadlock victim, serialization failure) is run again.
pub(super) const MAX_TX_RETRIES: u32 = 5;

/// Why a transaction body stopped: a driver error (maybe worth a retry) or a domain outcome.
pub(super) enum Failure {
    Db(tokio_postgres::Error),
    Domain(Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        Failure::Db(err)
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Domain(err)
    }
}

impl Failure {
    pub(super) fn into_error(self) -> Error {
        match self {
            Failure::Db(err) => db_error(err),
            Failure::Domain(err) => err,
        }
    }
}

pub(super) type TxResult<T> = std::result::Result<T, Failure>;

/// Runs `$op` (an expression using the pooled connection `$client`) and, when Postgres aborted
/// it to break a deadlock or a serialization conflict, runs it again from the start.
macro_rules! with_retry {
    ($store:expr, $client:ident => $op:expr) => {{
        let mut retries = 0u32;
        loop {
            #[allow(unused_mut)]
            let mut $client = $store.client().await?;
            match $op.await {
                Ok(value) => break Ok(value),
                Err(Failure::Db(err)) if retries < MAX_TX_RETRIES && is_transient(&err) => {
                    retries += 1;
                    tracing::debug!(retries, error = %err, "transaction aborted by postgres; retrying");
                }
                Err(failure) => break Err(failure.into_error()),
            }
        }
    }};
}

async fn query<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(statement).await?;
    client.query(&statement, params).await
}

async fn query_opt<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(statement).await?;
    client.query_opt(&statement, params).await
}

async fn query_one<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, tokio_postgres::Error> {
    let statement = client.prepare_cached(statement).await?;
    client.query_one(&statement, params).await
}

async fn execute<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(statement).await?;
    client.execute(&statement, params).await
}

/// A count, limit or offset as a Postgres `BIGINT` (saturating: no query can use more).
fn bigint(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A duration as whole microseconds, the precision of `timestamptz`.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn count(row: &Row) -> Result<u64> {
    let n: i64 = rows::get(row, "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The outcome of a failure update's `RETURNING status`.
fn attempt_outcome(row: &Row) -> Result<AttemptOutcome> {
    let status: &str = rows::get(row, "status")?;
    Ok(if status == "Failed" {
        AttemptOutcome::DeadLettered
    } else {
        AttemptOutcome::Retry
    })
}

/// Records a dead-lettered task on its (locked) job and pauses the job's dispatch. `job`
/// mirrors the locked row and changes the same way.
async fn dead_lettered<C: GenericClient>(
    tx: &C,
    job: &mut Job,
    task: &Task,
    now: Timestamp,
) -> TxResult<()> {
    transition::job_task_dead_lettered(job, task, now);
    let at = now.datetime();
    execute(
        tx,
        sql::JOB_DEAD_LETTERED,
        &[&job.job_id.as_str(), &job.message, &at],
    )
    .await?;
    execute(
        tx,
        sql::PAUSE_DISPATCH,
        &[&[job.job_id.as_str()].as_slice()],
    )
    .await?;
    Ok(())
}

impl PostgresStore {
    fn is_known_worker(&self, worker_id: &str) -> bool {
        self.known_workers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(worker_id)
    }

    fn remember_worker(&self, worker_id: &str) {
        self.known_workers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(worker_id.to_owned());
    }
}

/// A batch answered an operation with another kind's outcome (a bug, never expected).
/// One job and its DAG, inserted by the batch path's statement inside the caller's transaction;
/// a taken id is a conflict.
async fn insert_job_in<C: GenericClient>(client: &C, job: &Job, tasks: &[Task]) -> TxResult<()> {
    let jobs = serde_json::Value::Array(vec![batch::job_json(job)]);
    let tasks = serde_json::Value::Array(batch::tasks_json(tasks).collect());
    let no_keys = serde_json::Value::Array(Vec::new());
    if query(client, sql::INSERT_JOBS, &[&jobs, &tasks, &no_keys])
        .await?
        .is_empty()
    {
        return Err(Failure::Domain(Error::conflict(format!(
            "job {} already exists",
            job.job_id
        ))));
    }
    Ok(())
}

fn mismatched() -> Error {
    Error::backend(
        BACKEND,
        "the batch answered with another operation's outcome",
    )
}

fn read_only(client: &mut Client) -> deadpool_postgres::TransactionBuilder<'_> {
    // One snapshot, so a page and its total agree.
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
}

/// A list of tasks as the dead-letter statements take it: the distinct jobs in lock (id)
/// order, and the job and task ids pairwise.
struct Listed<'a> {
    job_ids: Vec<&'a str>,
    listed_jobs: Vec<&'a str>,
    listed_tasks: Vec<&'a str>,
}

impl<'a> Listed<'a> {
    fn of(tasks: &'a [TaskRef]) -> Self {
        let listed_jobs: Vec<&str> = tasks.iter().map(|t| t.job_id.as_str()).collect();
        let mut job_ids = listed_jobs.clone();
        job_ids.sort_unstable();
        job_ids.dedup();
        Self {
            job_ids,
            listed_jobs,
            listed_tasks: tasks.iter().map(|t| t.task_id.as_str()).collect(),
        }
    }
}

impl PostgresStore {
    async fn list_jobs_tx(client: &mut Client, filter: &JobQuery) -> TxResult<Page<Job>> {
        let status = filter.status.map(JobStatus::as_str);
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(status) = &status {
            params.push(status);
        }
        if let Some(tenants) = &filter.tenants {
            params.push(tenants);
        }
        let (count_sql, page_sql) = sql::list_jobs(
            status.is_some(),
            filter.tenants.is_some(),
            filter.before.is_some(),
            filter.total_up_to.is_some(),
        );
        let cap = filter
            .total_up_to
            .map(|cap| i64::try_from(cap).unwrap_or(i64::MAX));
        let before = filter.before.as_ref().map(JobId::as_str);
        let limit = bigint(filter.limit);
        let offset = bigint(filter.offset);
        let tx = read_only(client).start().await?;
        let mut count_params = params.clone();
        if let Some(cap) = &cap {
            count_params.push(cap);
        }
        let total = count(&query_one(&tx, &count_sql, &count_params).await?)?;
        if let Some(before) = &before {
            params.push(before);
        }
        params.push(&limit);
        params.push(&offset);
        let items = query(&tx, &page_sql, &params)
            .await?
            .iter()
            .map(rows::job)
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Page { total, items })
    }

    /// A page in one read-only snapshot: the count `count_sql` answers and the rows of
    /// `page_sql`, read by `row`.
    async fn paged_tx<T>(
        client: &mut Client,
        (count_sql, count_params): (&str, &[&(dyn ToSql + Sync)]),
        (page_sql, page_params): (&str, &[&(dyn ToSql + Sync)]),
        row: fn(&Row) -> Result<T>,
    ) -> TxResult<Page<T>> {
        let tx = read_only(client).start().await?;
        let total = count(&query_one(&tx, count_sql, count_params).await?)?;
        let items = query(&tx, page_sql, page_params)
            .await?
            .iter()
            .map(row)
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Page { total, items })
    }

    async fn list_workers_tx(
        client: &mut Client,
        limit: usize,
        offset: usize,
    ) -> TxResult<Page<Worker>> {
        let (limit, offset) = (bigint(limit), bigint(offset));
        Self::paged_tx(
            client,
            (sql::COUNT_WORKERS, &[]),
            (sql::LIST_WORKERS, &[&limit, &offset]),
            rows::worker,
        )
        .await
    }

    async fn list_tasks_tx(
        client: &mut Client,
        job_id: &JobId,
        filter: &TaskQuery,
    ) -> TxResult<Option<Page<Task>>> {
        let job = job_id.as_str();
        let status = filter.status.map(|s| s.as_str());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&job];
        if let Some(status) = &status {
            params.push(status);
        }
        if let Some(worker) = &filter.worker_id {
            params.push(worker);
        }
        let (count_sql, page_sql) = sql::list_tasks(status.is_some(), filter.worker_id.is_some());
        let limit = filter.limit.map(bigint);
        let offset = bigint(filter.offset);
        let tx = read_only(client).start().await?;
        if query_opt(&tx, sql::JOB_EXISTS, &[&job]).await?.is_none() {
            return Ok(None);
        }
        let total = count(&query_one(&tx, &count_sql, &params).await?)?;
        params.push(&limit);
        params.push(&offset);
        let items = query(&tx, &page_sql, &params)
            .await?
            .iter()
            .map(rows::task)
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(Page { total, items }))
    }

    async fn heartbeat_tx(
        client: &mut Client,
        worker_id: &str,
        stats: &serde_json::Value,
        now: Timestamp,
        timing: Timing,
    ) -> TxResult<Option<u32>> {
        let at = now.datetime();
        let lease_end = now.plus(timing.lease).datetime();
        let tx = client.transaction().await?;
        if execute(&tx, sql::WORKER_HEARTBEAT, &[&worker_id, stats, &at]).await? == 0 {
            return Ok(None);
        }
        let extended = execute(&tx, sql::EXTEND_LEASES, &[&worker_id, &at, &lease_end]).await?;
        tx.commit().await?;
        Ok(Some(u32::try_from(extended).unwrap_or(u32::MAX)))
    }

    async fn cancel_job_tx(
        client: &mut Client,
        job_id: &JobId,
        now: Timestamp,
    ) -> TxResult<Option<CancelOutcome>> {
        let id = job_id.as_str();
        let at = now.datetime();
        let tx = client.transaction().await?;
        let Some(row) = query_opt(&tx, sql::LOCK_JOB, &[&id]).await? else {
            return Ok(None);
        };
        let mut job = rows::job(&row)?;
        let outcome = transition::cancel_job(&mut job, now);
        if outcome == CancelOutcome::Canceled {
            execute(&tx, sql::CANCEL_JOB, &[&id, &job.message, &at]).await?;
            execute(&tx, sql::CANCEL_TASKS, &[&id, &at]).await?;
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    async fn expire_leases_tx(
        client: &mut Client,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> TxResult<Vec<ExpiredLease>> {
        let at = now.datetime();
        let limit = bigint(limit);
        let redispatch_at = now.plus(timing.orphan_after).datetime();
        let tx = client.transaction().await?;
        let job_rows = query(&tx, sql::LOCK_JOBS_WITH_LAPSED_LEASES, &[&at, &limit]).await?;
        if job_rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut jobs: HashMap<String, Job> = HashMap::with_capacity(job_rows.len());
        for row in &job_rows {
            let job = rows::job(row)?;
            jobs.insert(job.job_id.as_str().to_owned(), job);
        }
        let job_ids: Vec<&str> = jobs.keys().map(String::as_str).collect();
        let task_rows = query(&tx, sql::LOCK_LAPSED_TASKS, &[&job_ids, &at, &limit]).await?;
        let mut expired = Vec::with_capacity(task_rows.len());
        for row in &task_rows {
            let task = rows::task(row)?;
            let Some(job) = jobs.get_mut(task.job_id.as_str()) else {
                continue;
            };
            // Taken per task: a dead letter earlier in this batch stops its job dispatching.
            let dispatching = transition::job_is_dispatching(job);
            let cause = transition::expiry_cause(&task);
            let error = cause.message(&task);
            // `fail_attempt`'s back-off, decided here as the other stores decide it.
            let unit = task.lease_id.as_deref().map_or(0.0, transition::jitter_of);
            let wait = transition::backoff_delay(task.attempt, task.retry_backoff, unit);
            let next_attempt = (!wait.is_zero()).then(|| now.plus(wait));
            let enqueue_at = next_attempt.map_or(redispatch_at, Timestamp::datetime);
            let next_attempt_at = next_attempt.map(Timestamp::datetime);
            let Some(updated) = query_opt(
                &tx,
                sql::FAIL_EXPIRED,
                &[
                    &task.job_id.as_str(),
                    &task.task_id,
                    &error,
                    &at,
                    &dispatching,
                    &enqueue_at,
                    &task.lease_id,
                    &next_attempt_at,
                ],
            )
            .await?
            else {
                continue;
            };
            let outcome = attempt_outcome(&updated)?;
            let task_ref = task.task_ref();
            let enqueue = match outcome {
                // A retry that waits for its back-off is enqueued by the reconciler when due.
                AttemptOutcome::Retry => (dispatching && next_attempt.is_none())
                    .then(|| (task_ref.clone(), task.priority)),
                AttemptOutcome::DeadLettered => {
                    let failed = Task {
                        error: Some(error),
                        ..task.clone()
                    };
                    dead_lettered(&tx, job, &failed, now).await?;
                    None
                }
            };
            expired.push(ExpiredLease {
                task: task_ref,
                worker_id: task.worker_id.clone().unwrap_or_default(),
                reason: cause.reason(),
                outcome,
                enqueue,
            });
        }
        tx.commit().await?;
        Ok(expired)
    }

    async fn take_orphans_tx(
        client: &mut Client,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> TxResult<Vec<Dispatch>> {
        let at = now.datetime();
        let orphan_after = micros(timing.orphan_after);
        let taken = query(
            client,
            sql::TAKE_ORPHANS,
            &[
                &at,
                &bigint(limit),
                &orphan_after,
                &(transition::MAX_REDISPATCH_DOUBLINGS as i32),
            ],
        )
        .await?;
        let mut due = Vec::with_capacity(taken.len());
        for row in &taken {
            due.push((rows::get_ts(row, "due_at")?, rows::dispatch(row)?));
        }
        // Oldest first, as the memory store hands them out.
        due.sort_by(|a, b| (a.0, &a.1.0).cmp(&(b.0, &b.1.0)));
        Ok(due.into_iter().map(|(_, d)| d).collect())
    }

    async fn requeue_dead_tx(
        client: &mut Client,
        tasks: &[TaskRef],
        now: Timestamp,
        timing: Timing,
    ) -> TxResult<RequeueOutcome> {
        let at = now.datetime();
        let Listed {
            job_ids,
            listed_jobs,
            listed_tasks,
        } = Listed::of(tasks);

        let tx = client.transaction().await?;
        let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
        for row in &query(&tx, sql::LOCK_JOBS, &[&job_ids]).await? {
            let job = rows::job(row)?;
            jobs.insert(job.job_id.as_str().to_owned(), job);
        }
        let requeued_rows =
            query(&tx, sql::REQUEUE_DEAD, &[&listed_jobs, &listed_tasks, &at]).await?;
        let mut requeued: HashSet<TaskRef> = HashSet::with_capacity(requeued_rows.len());
        for row in &requeued_rows {
            requeued.insert(rows::task_ref(row)?);
        }
        // Replayed in request order on the locked jobs, as the memory store applies them.
        let mut outcome = RequeueOutcome::default();
        let mut per_job: BTreeMap<&str, i32> = BTreeMap::new();
        let mut resumed: Vec<String> = Vec::new();
        for task in tasks {
            if !requeued.remove(task) {
                continue;
            }
            outcome.requeued.push(task.clone());
            *per_job.entry(task.job_id.as_str()).or_default() += 1;
            if let Some(job) = jobs.get_mut(task.job_id.as_str())
                && transition::job_task_requeued(job, now)
            {
                resumed.push(job.job_id.as_str().to_owned());
            }
        }
        for (job_id, n) in &per_job {
            execute(&tx, sql::JOB_TASKS_REQUEUED, &[job_id, n, &at]).await?;
        }
        if !resumed.is_empty() {
            let redispatch_at = now.plus(timing.orphan_after).datetime();
            let ready = query(&tx, sql::REDISPATCH_READY, &[&resumed, &redispatch_at, &at]).await?;
            let mut enqueue = ready
                .iter()
                .filter(|row| row.try_get::<_, bool>("due").unwrap_or(true))
                .map(rows::dispatch)
                .collect::<Result<Vec<_>>>()?;
            let order = |r: &TaskRef| resumed.iter().position(|j| j == r.job_id.as_str());
            enqueue.sort_by(|(a, _), (b, _)| (order(a), &a.task_id).cmp(&(order(b), &b.task_id)));
            outcome.enqueue = enqueue;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// [`Store::list_schedules`]: the count and the page in one snapshot.
    async fn list_schedules_tx(
        client: &mut Client,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> TxResult<Page<Schedule>> {
        let (limit, offset) = (bigint(limit), bigint(offset));
        Self::paged_tx(
            client,
            (sql::COUNT_SCHEDULES, &[&tenants]),
            (sql::LIST_SCHEDULES, &[&tenants, &limit, &offset]),
            rows::schedule,
        )
        .await
    }

    /// [`Store::fire_schedule`]: the schedule advanced (if still at the tick), the tick
    /// claimed and its job inserted, in one transaction.
    async fn fire_schedule_tx(
        client: &mut Client,
        firing: &Firing,
        job: &Job,
        tasks: &[Task],
    ) -> TxResult<bool> {
        let fire_time = firing.fire_time.datetime();
        let job_id = job.job_id.as_str();
        let tx = client.transaction().await?;
        let advanced = query_opt(
            &tx,
            sql::FIRE_SCHEDULE,
            &[
                &firing.tenant,
                &firing.schedule_id,
                &firing.created_at.datetime(),
                &fire_time,
                &firing.next_fire_at.datetime(),
                &job_id,
                &firing.now.datetime(),
            ],
        )
        .await?;
        if advanced.is_none() {
            // Fired by another replica, paused or deleted meanwhile.
            tx.rollback().await?;
            return Ok(false);
        }
        let claimed = query_opt(
            &tx,
            sql::CLAIM_SCHEDULE_RUN,
            &[&firing.tenant, &firing.schedule_id, &fire_time, &job_id],
        )
        .await?;
        if claimed.is_none() {
            // This tick has its job already: keep the schedule moved past it, add nothing.
            tx.commit().await?;
            return Ok(false);
        }
        insert_job_in(&tx, job, tasks).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// [`Store::purge`] in one short transaction, when no other replica runs it.
    async fn purge_tx(
        client: &mut Client,
        before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> TxResult<Purged> {
        let tx = client.transaction().await?;
        let locked: bool = rows::get(
            &query_one(&tx, sql::TRY_RETENTION_LOCK, &[]).await?,
            "locked",
        )?;
        if !locked {
            tx.commit().await?;
            return Ok(Purged::default());
        }
        let bound = JobId::created_from(before);
        let limit = bigint(limit);
        let jobs = query(
            &tx,
            sql::PURGE_JOBS,
            &[&bound.as_str(), &before.datetime(), &limit],
        )
        .await?
        .len() as u64;
        let keys = execute(&tx, sql::PURGE_KEYS, &[&now.datetime(), &limit]).await?;
        execute(&tx, sql::PURGE_SCHEDULE_RUNS, &[&before.datetime(), &limit]).await?;
        tx.commit().await?;
        Ok(Purged { jobs, keys })
    }

    /// [`Store::insert_job_keyed`]: the key row, claimed or locked, and the job in one
    /// transaction, so two replicas given the same key store one job.
    async fn insert_job_keyed_tx(
        client: &mut Client,
        job: &Job,
        tasks: &[Task],
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> TxResult<KeyedInsert> {
        let expires = key.expires_at.datetime();
        let job_id = job.job_id.as_str();
        let binding: [&(dyn ToSql + Sync); 5] =
            [&key.tenant, &key.key, &key.body_hash, &job_id, &expires];
        let tx = client.transaction().await?;
        // A concurrent claim of the same key waits here for the other transaction to end.
        if query_opt(&tx, sql::CLAIM_KEY, &binding).await?.is_none() {
            let row = query_one(&tx, sql::LOCK_KEY, &[&key.tenant, &key.key]).await?;
            let stored = StoredKey {
                body_hash: rows::get(&row, "body_hash")?,
                job_id: JobId::new(rows::get::<String>(&row, "job_id")?),
                expires_at: rows::get_ts(&row, "expires_at")?,
            };
            if let Some(found) = transition::keyed_replay(Some(&stored), &key.body_hash, now) {
                tx.commit().await?;
                return Ok(found);
            }
            execute(&tx, sql::REBIND_KEY, &binding).await?;
        }
        insert_job_in(&tx, job, tasks).await?;
        tx.commit().await?;
        Ok(KeyedInsert::Inserted)
    }

    async fn discard_dead_tx(
        client: &mut Client,
        tasks: &[TaskRef],
        now: Timestamp,
    ) -> TxResult<Vec<TaskRef>> {
        let at = now.datetime();
        let Listed {
            job_ids,
            listed_jobs,
            listed_tasks,
        } = Listed::of(tasks);

        let tx = client.transaction().await?;
        // The lock order: jobs before their task rows.
        query(&tx, sql::LOCK_JOBS, &[&job_ids]).await?;
        let rows = query(&tx, sql::DISCARD_DEAD, &[&listed_jobs, &listed_tasks, &at]).await?;
        let mut changed: HashSet<TaskRef> = HashSet::with_capacity(rows.len());
        for row in &rows {
            changed.insert(rows::task_ref(row)?);
        }
        let mut discarded = Vec::with_capacity(changed.len());
        let mut per_job: BTreeMap<&str, i32> = BTreeMap::new();
        for task in tasks {
            if changed.remove(task) {
                discarded.push(task.clone());
                *per_job.entry(task.job_id.as_str()).or_default() += 1;
            }
        }
        for (job_id, n) in &per_job {
            execute(&tx, sql::JOB_TASKS_DISCARDED, &[job_id, n, &at]).await?;
        }
        tx.commit().await?;
        Ok(discarded)
    }

    async fn append_audit_tx(
        client: &mut Client,
        draft: &AuditDraft,
        now: Timestamp,
    ) -> TxResult<AuditEvent> {
        let requested = i64::try_from(draft.requested)
            .map_err(|_| Error::invalid(format!("requested is too large: {}", draft.requested)))?;
        let tx = client.transaction().await?;
        let Some(head) = query_opt(&tx, sql::LOCK_CHAIN_HEAD, &[]).await? else {
            return Err(Error::backend(
                BACKEND,
                "the audit chain head row is missing; run the migrations",
            )
            .into());
        };
        let last_id: i64 = rows::get(&head, "last_id")?;
        let last_hash: String = rows::get(&head, "last_hash")?;
        let id = last_id + 1;
        let sealed_id = u64::try_from(id).map_err(|_| {
            Error::backend(
                BACKEND,
                format!("audit chain head id is negative: {last_id}"),
            )
        })?;
        let event = draft.clone().seal(sealed_id, now, last_hash);
        execute(
            &tx,
            sql::INSERT_AUDIT_EVENT,
            &[
                &id,
                &event.created_at.datetime(),
                &event.action,
                &event.actor,
                &event.tenant,
                &event.remote_addr,
                &event.resource,
                &event.payload_hash,
                &requested,
                &event.result,
                &event.details,
                &event.prev_hash,
                &event.event_hash,
            ],
        )
        .await?;
        execute(&tx, sql::ADVANCE_CHAIN_HEAD, &[&id, &event.event_hash]).await?;
        tx.commit().await?;
        Ok(event)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(db_error)?;
        Ok(())
    }

    async fn insert_job(&self, job: &Job, tasks: &[Task]) -> Result<()> {
        let op = Op::Insert {
            job: job.clone(),
            tasks: tasks.to_vec(),
            key: None,
        };
        match self.submits.run(op).await? {
            Outcome::Inserted(outcome) => outcome,
            _ => Err(mismatched()),
        }
    }

    async fn purge(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Purged> {
        with_retry!(self, client => Self::purge_tx(&mut client, before, now, limit))
    }

    async fn insert_job_keyed(
        &self,
        job: &Job,
        tasks: &[Task],
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<KeyedInsert> {
        // A free key (the usual case) is claimed in the batch with the job, in the same commit.
        let op = Op::Insert {
            job: job.clone(),
            tasks: tasks.to_vec(),
            key: Some(key.clone()),
        };
        match self.submits.run(op).await? {
            Outcome::Inserted(outcome) => outcome.map(|()| KeyedInsert::Inserted),
            // Taken: read it (a replay, a conflict, or an expired key to rebind).
            Outcome::KeyTaken => {
                with_retry!(self, client => Self::insert_job_keyed_tx(&mut client, job, tasks, key, now))
            }
            _ => Err(mismatched()),
        }
    }

    async fn job(&self, job_id: &JobId) -> Result<Option<Job>> {
        let client = self.client().await?;
        let row = query_opt(&client, sql::SELECT_JOB, &[&job_id.as_str()])
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Page<Job>> {
        with_retry!(self, client => Self::list_jobs_tx(&mut client, query))
    }

    async fn list_tasks(&self, job_id: &JobId, query: &TaskQuery) -> Result<Option<Page<Task>>> {
        with_retry!(self, client => Self::list_tasks_tx(&mut client, job_id, query))
    }

    async fn register_worker(
        &self,
        worker_id: &str,
        capabilities: &WorkerCapabilities,
        now: Timestamp,
    ) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            sql::REGISTER_WORKER,
            &[&worker_id, &Json(capabilities), &now.datetime()],
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn worker_exists(&self, worker_id: &str) -> Result<bool> {
        if self.is_known_worker(worker_id) {
            return Ok(true);
        }
        let client = self.client().await?;
        let row = query_opt(&client, sql::WORKER_EXISTS, &[&worker_id])
            .await
            .map_err(db_error)?;
        if row.is_some() {
            self.remember_worker(worker_id);
        }
        Ok(row.is_some())
    }

    async fn stale_leases(&self, held: &[(TaskRef, String)]) -> Result<Vec<String>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<&str> = held.iter().map(|(t, _)| t.job_id.as_str()).collect();
        let tasks: Vec<&str> = held.iter().map(|(t, _)| t.task_id.as_str()).collect();
        let client = self.client().await?;
        let rows = query(&client, sql::SELECT_LISTED_TASKS, &[&jobs, &tasks])
            .await
            .map_err(db_error)?;
        let found: HashMap<TaskRef, Task> = rows
            .iter()
            .map(|row| rows::task(row).map(|t| (t.task_ref(), t)))
            .collect::<Result<_>>()?;
        Ok(held
            .iter()
            .filter(|(key, lease)| {
                !found
                    .get(key)
                    .is_some_and(|task| transition::holds_lease(task, lease))
            })
            .map(|(_, lease)| lease.clone())
            .collect())
    }

    async fn list_workers(&self, limit: usize, offset: usize) -> Result<Page<Worker>> {
        with_retry!(self, client => Self::list_workers_tx(&mut client, limit, offset))
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<u32>> {
        let stats = serde_json::to_value(stats).map_err(|e| Error::backend(BACKEND, e))?;
        with_retry!(self, client => Self::heartbeat_tx(&mut client, worker_id, &stats, now, timing))
    }

    async fn assign(
        &self,
        task: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<Assignment>> {
        let one = [(task.clone(), nonce.to_owned())];
        let mut got = self.assign_many(&one, worker_id, now, timing).await?;
        got.pop().unwrap_or(Ok(None))
    }

    async fn assign_many(
        &self,
        tasks: &[(TaskRef, String)],
        worker_id: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Vec<Result<Option<Assignment>>>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        // One operation of a batch for the whole poll; several polls may share its commit.
        let op = Op::Assign {
            claims: tasks.to_vec(),
            worker_id: worker_id.to_owned(),
            now,
            timing,
        };
        match self.updates.run(op).await? {
            Outcome::Assigned(got) => Ok(got.into_iter().map(Ok).collect()),
            _ => Err(mismatched()),
        }
    }

    async fn report(
        &self,
        report: &Report,
        now: Timestamp,
        timing: Timing,
    ) -> Result<ReportOutcome> {
        let op = Op::Report {
            report: report.clone(),
            now,
            timing,
        };
        match self.updates.run(op).await? {
            Outcome::Reported(outcome) => outcome,
            _ => Err(mismatched()),
        }
    }

    async fn cancel_job(&self, job_id: &JobId, now: Timestamp) -> Result<Option<CancelOutcome>> {
        with_retry!(self, client => Self::cancel_job_tx(&mut client, job_id, now))
    }

    async fn expire_leases(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<ExpiredLease>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        with_retry!(self, client => Self::expire_leases_tx(&mut client, now, limit, timing))
    }

    async fn take_orphans(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<Dispatch>> {
        with_retry!(self, client => Self::take_orphans_tx(&mut client, now, limit, timing))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let client = self.client().await?;
        let found = query(&client, sql::DEAD_LETTERS, &[&bigint(limit)])
            .await
            .map_err(db_error)?;
        found
            .iter()
            .map(|row| {
                Ok(DeadLetter {
                    job_id: JobId::new(rows::get::<String>(row, "job_id")?),
                    task_id: rows::get(row, "task_id")?,
                    tenant: rows::get(row, "tenant")?,
                    attempt: rows::get_u32(row, "attempt")?,
                    error: rows::get::<Option<String>>(row, "error")?.unwrap_or_default(),
                    dead_lettered_at: rows::get_ts(row, "dead_lettered_at")?,
                })
            })
            .collect()
    }

    async fn count_dead_letters(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = query_one(&client, sql::COUNT_DEAD_LETTERS, &[])
            .await
            .map_err(db_error)?;
        count(&row)
    }

    async fn count_dead_among(&self, tasks: &[TaskRef]) -> Result<u64> {
        if tasks.is_empty() {
            return Ok(0);
        }
        let job_ids: Vec<&str> = tasks.iter().map(|t| t.job_id.as_str()).collect();
        let task_ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        let client = self.client().await?;
        let row = query_one(&client, sql::COUNT_DEAD_AMONG, &[&job_ids, &task_ids])
            .await
            .map_err(db_error)?;
        count(&row)
    }

    async fn discard_dead(&self, tasks: &[TaskRef], now: Timestamp) -> Result<Vec<TaskRef>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        with_retry!(self, client => Self::discard_dead_tx(&mut client, tasks, now))
    }

    async fn requeue_dead(
        &self,
        tasks: &[TaskRef],
        now: Timestamp,
        timing: Timing,
    ) -> Result<RequeueOutcome> {
        if tasks.is_empty() {
            return Ok(RequeueOutcome::default());
        }
        with_retry!(self, client => Self::requeue_dead_tx(&mut client, tasks, now, timing))
    }

    async fn insert_schedule(&self, new: &Schedule) -> Result<bool> {
        let template = Json(&new.template);
        let last_job = new.last_job_id.as_ref().map(JobId::as_str);
        let params: [&(dyn ToSql + Sync); 10] = [
            &new.tenant,
            &new.schedule_id,
            &new.cron,
            &template,
            &new.paused,
            &new.next_fire_at.datetime(),
            &new.last_fire_at.map(Timestamp::datetime),
            &last_job,
            &new.created_at.datetime(),
            &new.updated_at.datetime(),
        ];
        let client = self.client().await?;
        let row = query_opt(&client, sql::INSERT_SCHEDULE, &params)
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn schedules_named(&self, schedule_id: &str) -> Result<Vec<Schedule>> {
        let client = self.client().await?;
        let found = query(&client, sql::SCHEDULES_NAMED, &[&schedule_id])
            .await
            .map_err(db_error)?;
        found.iter().map(rows::schedule).collect()
    }

    async fn list_schedules(
        &self,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> Result<Page<Schedule>> {
        with_retry!(self, client => Self::list_schedules_tx(&mut client, tenants, limit, offset))
    }

    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> Result<bool> {
        let client = self.client().await?;
        let row = query_opt(&client, sql::DELETE_SCHEDULE, &[&tenant, &schedule_id])
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        schedule_id: &str,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<Schedule>> {
        let client = self.client().await?;
        let at = now.datetime();
        let changed = match next_fire_at {
            None => query_opt(&client, sql::PAUSE_SCHEDULE, &[&tenant, &schedule_id, &at]).await,
            Some(next) => {
                query_opt(
                    &client,
                    sql::RESUME_SCHEDULE,
                    &[&tenant, &schedule_id, &next.datetime(), &at],
                )
                .await
            }
        }
        .map_err(db_error)?;
        let row = match changed {
            Some(row) => Some(row),
            // A resume of a schedule that is not paused: it as it is, if it exists.
            None if next_fire_at.is_some() => {
                query_opt(&client, sql::SELECT_SCHEDULE, &[&tenant, &schedule_id])
                    .await
                    .map_err(db_error)?
            }
            None => None,
        };
        row.as_ref().map(rows::schedule).transpose()
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        let client = self.client().await?;
        let due = query(
            &client,
            sql::DUE_SCHEDULES,
            &[&now.datetime(), &bigint(limit)],
        )
        .await
        .map_err(db_error)?;
        // One row that no longer reads (a template this version cannot decode) must not stop
        // the others from firing: it is logged and left for an operator.
        Ok(due
            .iter()
            .filter_map(|row| match rows::schedule(row) {
                Ok(schedule) => Some(schedule),
                Err(err) => {
                    tracing::error!(error = %err, "a due schedule cannot be read; skipping it");
                    None
                }
            })
            .collect())
    }

    async fn fire_schedule(&self, firing: &Firing, job: &Job, tasks: &[Task]) -> Result<bool> {
        with_retry!(self, client => Self::fire_schedule_tx(&mut client, firing, job, tasks))
    }

    async fn append_audit(&self, draft: AuditDraft, now: Timestamp) -> Result<AuditEvent> {
        with_retry!(self, client => Self::append_audit_tx(&mut client, &draft, now))
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let from = query.from.map(Timestamp::datetime);
        let to = query.to.map(Timestamp::datetime);
        let exact = [&query.action, &query.actor, &query.tenant, &query.result];
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for value in exact.iter().copied().flatten() {
            params.push(value);
        }
        for value in [&from, &to].into_iter().flatten() {
            params.push(value);
        }
        let statement = sql::list_audit(exact.map(Option::is_some), from.is_some(), to.is_some());
        let limit = bigint(query.limit);
        let offset = bigint(query.offset);
        params.push(&limit);
        params.push(&offset);
        let client = self.client().await?;
        let found = self::query(&client, &statement, &params)
            .await
            .map_err(db_error)?;
        found.iter().map(rows::audit_event).collect()
    }

    async fn audit_chain(&self, after_id: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let after = i64::try_from(after_id).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let found = query(&client, sql::AUDIT_CHAIN, &[&after, &bigint(limit)])
            .await
            .map_err(db_error)?;
        found.iter().map(rows::audit_event).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_convert_without_wrapping() {
        assert_eq!(micros(Duration::from_secs(10)), 10_000_000);
        assert_eq!(micros(Duration::from_nanos(1_999)), 1);
        assert_eq!(micros(Duration::MAX), i64::MAX);
        assert_eq!(bigint(usize::MAX), i64::MAX);
    }
}
