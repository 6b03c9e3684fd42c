//! Backends that fail on demand: a [`Store`] that wraps the memory store and makes chosen
//! operations fail (or tampers with the audit chain it returns), and a rate limiter that is
//! down. They let the suite check 5xx mapping, readiness, error auditing and chain verification.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use daef_core::audit::{AuditDraft, AuditEvent};
use daef_core::model::{
    Assignment, DeadLetter, Job, JobId, Report, Task, TaskRef, Worker, WorkerCapabilities,
    WorkerStats,
};
use daef_core::ports::{
    AuditQuery, Dispatch, ExpiredLease, IdempotencyKey, JobQuery, KeyedInsert, Page, Purged,
    RateDecision, RateLimiter, ReportOutcome, RequeueOutcome, Store, TaskQuery,
};
use daef_core::schedule::{Firing, Schedule};
use daef_core::transition::{CancelOutcome, Timing};
use daef_core::{Error, Result, Timestamp};
use daef_store::MemoryStore;

/// Text a failing backend puts in its errors; no response may ever contain it.
pub(crate) const SECRET: &str = "SECRET-DRIVER-TEXT password=hunter2";

/// The memory store, with operations that fail while named in `failing`.
#[derive(Debug, Default)]
pub(crate) struct FaultyStore {
    inner: MemoryStore,
    failing: Mutex<HashSet<&'static str>>,
    /// When set, the audit chain handed to the verifier has this event's `details` altered.
    tamper_event: Mutex<Option<u64>>,
}

impl FaultyStore {
    /// Makes `operation` (a `Store` method name) fail from now on. `ping` fails as
    /// `Unavailable`; everything else as `Backend`.
    pub(crate) fn fail(&self, operation: &'static str) {
        self.failing.lock().expect("lock").insert(operation);
    }

    /// Makes `operation` work again.
    pub(crate) fn heal(&self, operation: &'static str) {
        self.failing.lock().expect("lock").remove(operation);
    }

    /// Alters event `id` in what [`Store::audit_chain`] returns, as a tampered row would read.
    pub(crate) fn tamper_with(&self, id: u64) {
        *self.tamper_event.lock().expect("lock") = Some(id);
    }

    fn check(&self, operation: &'static str) -> Result<()> {
        if !self.failing.lock().expect("lock").contains(operation) {
            return Ok(());
        }
        let source = std::io::Error::other(SECRET);
        Err(if operation == "ping" {
            Error::unavailable("memory", source)
        } else {
            Error::backend("memory", source)
        })
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<()> {
        self.check("ping")?;
        self.inner.ping().await
    }

    async fn insert_job(&self, job: &Job, tasks: &[Task]) -> Result<()> {
        self.check("insert_job")?;
        self.inner.insert_job(job, tasks).await
    }

    async fn purge(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Purged> {
        self.check("purge")?;
        self.inner.purge(before, now, limit).await
    }

    async fn insert_job_keyed(
        &self,
        job: &Job,
        tasks: &[Task],
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<KeyedInsert> {
        self.check("insert_job_keyed")?;
        self.inner.insert_job_keyed(job, tasks, key, now).await
    }

    async fn job(&self, job_id: &JobId) -> Result<Option<Job>> {
        self.check("job")?;
        self.inner.job(job_id).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Page<Job>> {
        self.check("list_jobs")?;
        self.inner.list_jobs(query).await
    }

    async fn list_tasks(&self, job_id: &JobId, query: &TaskQuery) -> Result<Option<Page<Task>>> {
        self.check("list_tasks")?;
        self.inner.list_tasks(job_id, query).await
    }

    async fn register_worker(
        &self,
        worker_id: &str,
        capabilities: &WorkerCapabilities,
        now: Timestamp,
    ) -> Result<()> {
        self.check("register_worker")?;
        self.inner
            .register_worker(worker_id, capabilities, now)
            .await
    }

    async fn worker_exists(&self, worker_id: &str) -> Result<bool> {
        self.check("worker_exists")?;
        self.inner.worker_exists(worker_id).await
    }

    async fn stale_leases(&self, held: &[(TaskRef, String)]) -> Result<Vec<String>> {
        self.check("stale_leases")?;
        self.inner.stale_leases(held).await
    }

    async fn list_workers(&self, limit: usize, offset: usize) -> Result<Page<Worker>> {
        self.check("list_workers")?;
        self.inner.list_workers(limit, offset).await
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<u32>> {
        self.check("heartbeat")?;
        self.inner.heartbeat(worker_id, stats, now, timing).await
    }

    async fn assign(
        &self,
        task: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<Assignment>> {
        self.check("assign")?;
        self.inner.assign(task, worker_id, nonce, now, timing).await
    }

    async fn report(
        &self,
        report: &Report,
        now: Timestamp,
        timing: Timing,
    ) -> Result<ReportOutcome> {
        self.check("report")?;
        self.inner.report(report, now, timing).await
    }

    async fn cancel_job(&self, job_id: &JobId, now: Timestamp) -> Result<Option<CancelOutcome>> {
        self.check("cancel_job")?;
        self.inner.cancel_job(job_id, now).await
    }

    async fn expire_leases(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<ExpiredLease>> {
        self.check("expire_leases")?;
        self.inner.expire_leases(now, limit, timing).await
    }

    async fn take_orphans(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<Dispatch>> {
        self.check("take_orphans")?;
        self.inner.take_orphans(now, limit, timing).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.check("dead_letters")?;
        self.inner.dead_letters(limit).await
    }

    async fn count_dead_letters(&self) -> Result<u64> {
        self.check("count_dead_letters")?;
        self.inner.count_dead_letters().await
    }

    async fn count_dead_among(&self, tasks: &[TaskRef]) -> Result<u64> {
        self.check("count_dead_among")?;
        self.inner.count_dead_among(tasks).await
    }

    async fn insert_schedule(&self, schedule: &Schedule) -> Result<bool> {
        self.check("insert_schedule")?;
        self.inner.insert_schedule(schedule).await
    }

    async fn schedules_named(&self, schedule_id: &str) -> Result<Vec<Schedule>> {
        self.check("schedules_named")?;
        self.inner.schedules_named(schedule_id).await
    }

    async fn list_schedules(
        &self,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> Result<Page<Schedule>> {
        self.check("list_schedules")?;
        self.inner.list_schedules(tenants, limit, offset).await
    }

    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> Result<bool> {
        self.check("delete_schedule")?;
        self.inner.delete_schedule(tenant, schedule_id).await
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        schedule_id: &str,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<Schedule>> {
        self.check("set_schedule_paused")?;
        self.inner
            .set_schedule_paused(tenant, schedule_id, next_fire_at, now)
            .await
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        self.check("due_schedules")?;
        self.inner.due_schedules(now, limit).await
    }

    async fn fire_schedule(&self, firing: &Firing, job: &Job, tasks: &[Task]) -> Result<bool> {
        self.check("fire_schedule")?;
        self.inner.fire_schedule(firing, job, tasks).await
    }

    async fn discard_dead(&self, tasks: &[TaskRef], now: Timestamp) -> Result<Vec<TaskRef>> {
        self.check("discard_dead")?;
        self.inner.discard_dead(tasks, now).await
    }

    async fn requeue_dead(
        &self,
        tasks: &[TaskRef],
        now: Timestamp,
        timing: Timing,
    ) -> Result<RequeueOutcome> {
        self.check("requeue_dead")?;
        self.inner.requeue_dead(tasks, now, timing).await
    }

    async fn append_audit(&self, draft: AuditDraft, now: Timestamp) -> Result<AuditEvent> {
        self.check("append_audit")?;
        self.inner.append_audit(draft, now).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.check("list_audit")?;
        self.inner.list_audit(query).await
    }

    async fn audit_chain(&self, after_id: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.check("audit_chain")?;
        let mut events = self.inner.audit_chain(after_id, limit).await?;
        if let Some(id) = *self.tamper_event.lock().expect("lock") {
            for event in events.iter_mut().filter(|e| e.id == id) {
                event.details.push_str(" (edited)");
            }
        }
        Ok(events)
    }
}

/// A rate limiter whose backend is down.
#[derive(Debug)]
pub(crate) struct DownLimiter;

#[async_trait]
impl RateLimiter for DownLimiter {
    async fn acquire(&self, _: &str, _: u32, _: Duration, _: Timestamp) -> Result<RateDecision> {
        Err(Error::unavailable("redis", std::io::Error::other(SECRET)))
    }
}
