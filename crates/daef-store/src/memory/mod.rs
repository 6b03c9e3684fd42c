//! The in-memory store: the default for a first run and for embedding.
//!
//! One mutex guards everything, so each operation is atomic (DESIGN.md invariant 2) by
//! construction; the rules themselves are the pure functions of `daef_core::transition`. Ordered
//! indexes keep every hot-path and reconciler operation O(log n) in the number of stored tasks:
//! nothing scans all jobs or tasks.
//!
//! A completed job can never change again, so it is kept [`packed`] (a few hundred bytes
//! instead of several kilobytes of records); the indexes share one `Arc<str>` per job id.

mod packed;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use daef_core::audit::{AuditDraft, AuditEvent};
use daef_core::model::{
    Assignment, DeadLetter, Job, JobId, JobStatus, Report, Task, TaskRef, TaskStatus, Worker,
    WorkerCapabilities, WorkerStats,
};
use daef_core::ports::{
    AuditQuery, Dispatch, ExpiredLease, IdempotencyKey, JobQuery, KeyedInsert, Page, Purged,
    ReportEffects, ReportOutcome, RequeueOutcome, Store, TaskQuery,
};
use daef_core::schedule::{self, Firing, Schedule};
use daef_core::transition::{self, AttemptOutcome, CancelOutcome, ReportCheck, Timing};
use daef_core::{Error, Resource, Result, Timestamp};

/// In-memory [`Store`]. Cheap to create; everything is lost when it is dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied transition visible to
        // callers in a way a restart would not (the process state is all there is), so keep
        // serving rather than poisoning every later request.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("jobs", &inner.jobs.len())
            .field("workers", &inner.workers.len())
            .field("audit_events", &inner.audit.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<Arc<str>, Slot>,
    /// Where completed jobs are kept, packed.
    done: Arena,
    idx: Indexes,
    workers: HashMap<String, Worker>,
    audit: Vec<AuditEvent>,
    /// Submits' idempotency keys, by the digest of tenant and key.
    keys: HashMap<KeyDigest, HeldKey>,
    /// The keys by expiry, for retention.
    key_expiry: BTreeSet<(Timestamp, KeyDigest)>,
    /// Periodic schedules by id, then tenant.
    schedules: BTreeMap<ScheduleKey, Schedule>,
    /// Unpaused schedules by their next tick, for the reconciler.
    schedules_due: BTreeSet<(Timestamp, ScheduleKey)>,
}

/// A schedule's `(schedule_id, tenant)`: ids are unique within a tenant, and lists go by id.
type ScheduleKey = (String, String);

fn schedule_key(tenant: &str, schedule_id: &str) -> ScheduleKey {
    (schedule_id.to_owned(), tenant.to_owned())
}

impl Inner {
    /// Applies `change` to a stored schedule, keeping `schedules_due` in step.
    fn update_schedule<R>(
        &mut self,
        key: &ScheduleKey,
        change: impl FnOnce(&mut Schedule) -> R,
    ) -> Option<R> {
        let schedule = self.schedules.get_mut(key)?;
        self.schedules_due
            .remove(&(schedule.next_fire_at, key.clone()));
        let result = change(schedule);
        if !schedule.paused {
            self.schedules_due
                .insert((schedule.next_fire_at, key.clone()));
        }
        Some(result)
    }
}

/// blake3 of an idempotency key's tenant and key (or of a submit's body hash): 32 bytes where
/// the strings took a few hundred with their allocations. A collision is as likely as one of
/// blake3 itself, so the digests stand for the strings.
type KeyDigest = [u8; 32];

fn key_digest(tenant: &str, key: &str) -> KeyDigest {
    let mut hasher = blake3::Hasher::new();
    // The tenant's length first: ("ab", "c") and ("a", "bc") must differ.
    hasher.update(&(tenant.len() as u64).to_le_bytes());
    hasher.update(tenant.as_bytes());
    hasher.update(key.as_bytes());
    *hasher.finalize().as_bytes()
}

fn body_digest(body_hash: &str) -> KeyDigest {
    *blake3::hash(body_hash.as_bytes()).as_bytes()
}

/// An idempotency key as the memory store keeps it: a key lives as long as
/// `DAEF_IDEMPOTENCY_TTL_SECONDS` (a day), so at a thousand submits a second there are tens of
/// millions of them, and each must stay small. The job id is the job record's own.
struct HeldKey {
    body: KeyDigest,
    job_id: Arc<str>,
    expires_at: Timestamp,
}

/// One stored job.
enum Slot {
    /// A job that may still change.
    Live(Box<JobEntry>),
    /// A completed job, [`packed`] into the [`Arena`]: it is only ever read again.
    Done(Packed),
}

/// Where a packed job sits in the [`Arena`].
#[derive(Clone, Copy, Debug)]
struct Packed {
    segment: u32,
    offset: u32,
    len: u32,
}

/// Storage for packed jobs, in large segments. Completed jobs are never changed, so they need
/// no allocation of their own: a few hundred bytes each, kept apart from the short-lived
/// allocations of requests, they would otherwise fragment the heap until every allocation of
/// the process slowed down as the history grew. Retention frees them: a segment whose jobs are
/// all gone is released (jobs complete, and so age out, roughly in the order they were packed).
#[derive(Default)]
struct Arena {
    segments: Vec<Vec<u8>>,
    /// Bytes of each segment still holding a job.
    live: Vec<usize>,
}

/// Size of one arena segment (large enough to be mapped on its own, outside the heap).
const SEGMENT_BYTES: usize = 1 << 20;

impl Arena {
    fn push(&mut self, bytes: &[u8]) -> Packed {
        let fits = self
            .segments
            .last()
            .is_some_and(|s| s.capacity() - s.len() >= bytes.len());
        if !fits {
            self.segments
                .push(Vec::with_capacity(SEGMENT_BYTES.max(bytes.len())));
            self.live.push(0);
        }
        let segment = self.segments.len() - 1;
        let buf = &mut self.segments[segment];
        let offset = buf.len();
        buf.extend_from_slice(bytes);
        self.live[segment] += bytes.len();
        // Segments hold at most max(1 MiB, one job) bytes and number far fewer than 2^32.
        Packed {
            segment: segment as u32,
            offset: offset as u32,
            len: bytes.len() as u32,
        }
    }

    /// Forgets a packed job; a full segment with nothing left in it is released.
    fn free(&mut self, at: Packed) {
        let i = at.segment as usize;
        let Some(live) = self.live.get_mut(i) else {
            return;
        };
        *live = live.saturating_sub(at.len as usize);
        if *live == 0 && i + 1 < self.segments.len() {
            self.segments[i] = Vec::new();
        }
    }

    /// Bytes the segments hold allocated.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.segments.iter().map(Vec::capacity).sum()
    }

    fn get(&self, at: Packed) -> Result<&[u8]> {
        let start = at.offset as usize;
        self.segments
            .get(at.segment as usize)
            .and_then(|s| s.get(start..start + at.len as usize))
            .ok_or_else(|| Error::backend("memory", "a packed job is out of range"))
    }
}

struct JobEntry {
    /// The key of the job in `Inner::jobs` and in the job indexes.
    id: Arc<str>,
    job: Job,
    tasks: Tasks,
    /// task id -> ids of the tasks that depend on it.
    dependents: HashMap<String, Vec<String>>,
}

/// A job's tasks, sorted by task id. A vector rather than a map: most jobs have one task or
/// a few, and a `BTreeMap` would allocate a node for eleven.
struct Tasks(Vec<Task>);

impl Tasks {
    fn new(tasks: &[Task]) -> Self {
        let mut tasks = tasks.to_vec();
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        Self(tasks)
    }

    fn get(&self, task_id: &str) -> Option<&Task> {
        let i = self
            .0
            .binary_search_by(|t| t.task_id.as_str().cmp(task_id))
            .ok()?;
        self.0.get(i)
    }

    fn get_mut(&mut self, task_id: &str) -> Option<&mut Task> {
        let i = self
            .0
            .binary_search_by(|t| t.task_id.as_str().cmp(task_id))
            .ok()?;
        self.0.get_mut(i)
    }

    fn values(&self) -> std::slice::Iter<'_, Task> {
        self.0.iter()
    }

    fn values_mut(&mut self) -> std::slice::IterMut<'_, Task> {
        self.0.iter_mut()
    }
}

impl Slot {
    fn job(&self, id: &str, arena: &Arena) -> Result<Job> {
        match self {
            Slot::Live(entry) => Ok(entry.job.clone()),
            Slot::Done(at) => packed::unpack_job(id, arena.get(*at)?),
        }
    }

    /// A packed slot when the job has completed, else the entry as it is.
    fn settle(entry: Box<JobEntry>, arena: &mut Arena) -> Slot {
        if entry.job.status == JobStatus::Completed {
            Slot::Done(arena.push(&packed::pack(&entry.job, entry.tasks.values())))
        } else {
            Slot::Live(entry)
        }
    }
}

/// Job ids in id order (each set's newest last).
type JobSet = BTreeSet<Arc<str>>;

/// One tenant's jobs, all and by status.
#[derive(Default)]
struct TenantJobs {
    all: JobSet,
    by_status: HashMap<JobStatus, JobSet>,
}

/// Secondary indexes. Each task or job is removed from them before it changes and added back
/// after, so they always agree with the records.
#[derive(Default)]
struct Indexes {
    jobs: JobSet,
    jobs_by_status: HashMap<JobStatus, JobSet>,
    jobs_by_tenant: HashMap<String, TenantJobs>,
    /// Running tasks by lease deadline.
    leases: BTreeSet<(Timestamp, TaskRef)>,
    /// Dispatchable tasks by the time the reconciler should enqueue them again.
    redispatch: BTreeSet<(Timestamp, TaskRef)>,
    /// Dead letters by the time they died.
    dead: BTreeSet<(Timestamp, TaskRef)>,
    /// Running tasks per worker (for heartbeats).
    running_by_worker: HashMap<String, BTreeSet<TaskRef>>,
}

impl Indexes {
    fn add_job(&mut self, id: &Arc<str>, job: &Job) {
        self.jobs.insert(Arc::clone(id));
        self.jobs_by_status
            .entry(job.status)
            .or_default()
            .insert(Arc::clone(id));
        let tenant = self.jobs_by_tenant.entry(job.tenant.clone()).or_default();
        tenant.all.insert(Arc::clone(id));
        tenant
            .by_status
            .entry(job.status)
            .or_default()
            .insert(Arc::clone(id));
    }

    fn remove_job(&mut self, id: &str, job: &Job) {
        self.jobs.remove(id);
        if let Some(set) = self.jobs_by_status.get_mut(&job.status) {
            set.remove(id);
        }
        if let Some(tenant) = self.jobs_by_tenant.get_mut(job.tenant.as_str()) {
            tenant.all.remove(id);
            if let Some(set) = tenant.by_status.get_mut(&job.status) {
                set.remove(id);
            }
            if tenant.all.is_empty() {
                self.jobs_by_tenant.remove(job.tenant.as_str());
            }
        }
    }

    /// Moves a job between status sets; the only job field the indexes depend on that changes.
    fn job_status_changed(&mut self, id: &Arc<str>, job: &Job, old: JobStatus) {
        if old == job.status {
            return;
        }
        if let Some(set) = self.jobs_by_status.get_mut(&old) {
            set.remove(id);
        }
        self.jobs_by_status
            .entry(job.status)
            .or_default()
            .insert(Arc::clone(id));
        if let Some(tenant) = self.jobs_by_tenant.get_mut(job.tenant.as_str()) {
            if let Some(set) = tenant.by_status.get_mut(&old) {
                set.remove(id);
            }
            tenant
                .by_status
                .entry(job.status)
                .or_default()
                .insert(Arc::clone(id));
        }
    }

    fn add_task(&mut self, task: &Task) {
        let key = task.task_ref();
        if task.status == TaskStatus::Running {
            if let Some(expires) = task.lease_expires {
                self.leases.insert((expires, key.clone()));
            }
            if let Some(worker) = &task.worker_id {
                self.running_by_worker
                    .entry(worker.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        if let Some(at) = task.redispatch_at.filter(|_| task.is_dispatchable()) {
            self.redispatch.insert((at, key.clone()));
        }
        if let Some(at) = task.dead_lettered_at {
            self.dead.insert((at, key));
        }
    }

    fn remove_task(&mut self, task: &Task) {
        let key = task.task_ref();
        if let Some(expires) = task.lease_expires {
            self.leases.remove(&(expires, key.clone()));
        }
        if let Some(worker) = &task.worker_id
            && let Some(set) = self.running_by_worker.get_mut(worker)
        {
            set.remove(&key);
            if set.is_empty() {
                self.running_by_worker.remove(worker);
            }
        }
        if let Some(at) = task.redispatch_at {
            self.redispatch.remove(&(at, key.clone()));
        }
        if let Some(at) = task.dead_lettered_at {
            self.dead.remove(&(at, key));
        }
    }

    /// Applies `change` to a task, keeping the indexes in step.
    fn update_task<R>(&mut self, task: &mut Task, change: impl FnOnce(&mut Task) -> R) -> R {
        self.remove_task(task);
        let result = change(task);
        self.add_task(task);
        result
    }

    /// Applies `change` to the job `id`, keeping the indexes in step.
    fn update_job<R>(
        &mut self,
        id: &Arc<str>,
        job: &mut Job,
        change: impl FnOnce(&mut Job) -> R,
    ) -> R {
        let old = job.status;
        let result = change(job);
        self.job_status_changed(id, job, old);
        result
    }

    /// The ids of jobs matching the filters, as ordered sets (each newest last).
    fn job_sets(&self, query: &JobQuery) -> Vec<&JobSet> {
        match (&query.tenants, query.status) {
            (None, None) => vec![&self.jobs],
            (None, Some(status)) => self.jobs_by_status.get(&status).into_iter().collect(),
            (Some(tenants), None) => tenants
                .iter()
                .filter_map(|t| self.jobs_by_tenant.get(t.as_str()))
                .map(|t| &t.all)
                .collect(),
            (Some(tenants), Some(status)) => tenants
                .iter()
                .filter_map(|t| self.jobs_by_tenant.get(t.as_str()))
                .filter_map(|t| t.by_status.get(&status))
                .collect(),
        }
    }
}

/// A job set's ids below `upper`, newest (largest) first.
fn newest_below<'a>(set: &'a JobSet, upper: Bound<&str>) -> impl Iterator<Item = &'a Arc<str>> {
    set.range::<str, _>((Bound::Unbounded, upper)).rev()
}

/// The first `limit` tasks of a deadline index whose deadline is at or before `now`.
fn due(index: &BTreeSet<(Timestamp, TaskRef)>, now: Timestamp, limit: usize) -> Vec<TaskRef> {
    index
        .iter()
        .take_while(|(at, _)| *at <= now)
        .take(limit)
        .map(|(_, key)| key.clone())
        .collect()
}

impl Inner {
    /// Stores a new job and its tasks; a taken id is a conflict.
    fn insert_job(&mut self, job: &Job, tasks: &[Task]) -> Result<()> {
        if self.jobs.contains_key(job.job_id.as_str()) {
            return Err(Error::conflict(format!(
                "job {} already exists",
                job.job_id
            )));
        }
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for task in tasks {
            for dep in &task.dependencies {
                dependents
                    .entry(dep.clone())
                    .or_default()
                    .push(task.task_id.clone());
            }
        }
        let id: Arc<str> = Arc::from(job.job_id.as_str());
        self.idx.add_job(&id, job);
        for task in tasks {
            self.idx.add_task(task);
        }
        let entry = Box::new(JobEntry {
            id: Arc::clone(&id),
            job: job.clone(),
            tasks: Tasks::new(tasks),
            dependents,
        });
        let slot = Slot::settle(entry, &mut self.done);
        self.jobs.insert(id, slot);
        Ok(())
    }

    /// A live job and the indexes; `None` for an unknown job or a completed one (which nothing
    /// changes any more).
    fn live_mut(&mut self, job_id: &JobId) -> Option<(&mut JobEntry, &mut Indexes)> {
        let Inner { jobs, idx, .. } = self;
        match jobs.get_mut(job_id.as_str())? {
            Slot::Live(entry) => Some((entry, idx)),
            Slot::Done(_) => None,
        }
    }

    /// [`Inner::live_mut`] for jobs the indexes named: they are live by construction.
    fn indexed_mut(&mut self, job_id: &JobId) -> Result<(&mut JobEntry, &mut Indexes)> {
        self.live_mut(job_id).ok_or_else(|| {
            Error::backend(
                "memory",
                format!("index names job {job_id}, which is not live"),
            )
        })
    }

    /// `Queued → Running` under a new lease, when the task is dispatchable and its job
    /// dispatching.
    fn assign(
        &mut self,
        task_ref: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Option<Assignment> {
        let (entry, idx) = self.live_mut(&task_ref.job_id)?;
        let JobEntry { id, job, tasks, .. } = entry;
        let task = tasks.get_mut(&task_ref.task_id)?;
        let old_status = job.status;
        let assigned = idx.update_task(task, |t| {
            transition::assign(job, t, worker_id, nonce, now, timing)
        });
        idx.job_status_changed(id, job, old_status);
        assigned.ok()
    }

    /// Packs the job when it has completed.
    fn settle(&mut self, job_id: &JobId) {
        if let Some(slot) = self.jobs.get_mut(job_id.as_str())
            && matches!(slot, Slot::Live(entry) if entry.job.status == JobStatus::Completed)
        {
            let placeholder = Slot::Done(Packed {
                segment: u32::MAX,
                offset: 0,
                len: 0,
            });
            if let Slot::Live(entry) = std::mem::replace(slot, placeholder) {
                *slot = Slot::settle(entry, &mut self.done);
            }
        }
    }
}

impl JobEntry {
    fn task_mut(&mut self, task_id: &str) -> Result<&mut Task> {
        self.tasks
            .get_mut(task_id)
            .ok_or(Error::NotFound(Resource::Task))
    }

    /// Makes every dispatchable task of a job that runs again dispatchable now.
    fn redispatch_ready(
        &mut self,
        idx: &mut Indexes,
        now: Timestamp,
        timing: Timing,
    ) -> Vec<Dispatch> {
        let mut enqueue = Vec::new();
        for task in self.tasks.values_mut().filter(|t| t.is_dispatchable()) {
            idx.update_task(task, |t| transition::mark_dispatchable(t, now, timing));
            if task.is_due(now) {
                enqueue.push((task.task_ref(), task.priority));
            }
        }
        enqueue
    }

    /// A failed job dispatches nothing: its waiting tasks stop being re-enqueued.
    fn pause_dispatch(&mut self, idx: &mut Indexes) {
        for task in self
            .tasks
            .values_mut()
            .filter(|t| t.redispatch_at.is_some())
        {
            idx.update_task(task, |t| t.redispatch_at = None);
        }
    }

    /// Records a dead-lettered task on its job and pauses the job.
    fn task_dead_lettered(&mut self, idx: &mut Indexes, task_id: &str, now: Timestamp) {
        let Some(task) = self.tasks.get(task_id).cloned() else {
            return;
        };
        idx.update_job(&self.id, &mut self.job, |job| {
            transition::job_task_dead_lettered(job, &task, now)
        });
        self.pause_dispatch(idx);
    }
}

/// A report on a task of a completed job: decided like any other, but it can only be a
/// duplicate or be refused (every task of the job has completed).
fn report_on_finished(inner: &Inner, report: &Report) -> Result<ReportOutcome> {
    let id = report.task.job_id.as_str();
    let Some(Slot::Done(at)) = inner.jobs.get(id) else {
        return Err(Error::NotFound(Resource::Job));
    };
    let (job, tasks) = packed::unpack(id, inner.done.get(*at)?)?;
    let task = tasks
        .iter()
        .find(|t| t.task_id == report.task.task_id)
        .ok_or(Error::NotFound(Resource::Task))?;
    Ok(match transition::check_report(&job, task, report) {
        ReportCheck::JobCanceled => ReportOutcome::JobCanceled,
        ReportCheck::Duplicate => ReportOutcome::Duplicate,
        ReportCheck::StaleLease => ReportOutcome::StaleLease,
        // `Apply` needs a running task, which a completed job does not have.
        ReportCheck::NotRunning | ReportCheck::Apply => ReportOutcome::NotRunning,
    })
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn insert_job(&self, job: &Job, tasks: &[Task]) -> Result<()> {
        self.lock().insert_job(job, tasks)
    }

    async fn purge(&self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Purged> {
        let mut inner = self.lock();
        let bound = JobId::created_from(before);
        // Only jobs created before `before` can have finished before it: the id bound keeps the
        // search to them, in id (creation) order.
        let mut candidates: Vec<(Arc<str>, Job)> = Vec::new();
        for status in [JobStatus::Completed, JobStatus::Canceled, JobStatus::Failed] {
            let Some(set) = inner.idx.jobs_by_status.get(&status) else {
                continue;
            };
            let mut found = 0;
            for id in set.range::<str, _>((Bound::Unbounded, Bound::Excluded(bound.as_str()))) {
                if found == limit {
                    break;
                }
                let Some(slot) = inner.jobs.get(id) else {
                    continue;
                };
                let job = slot.job(id, &inner.done)?;
                if transition::is_purgeable(&job, before) {
                    candidates.push((Arc::clone(id), job));
                    found += 1;
                }
            }
        }
        // The oldest first, across the statuses.
        candidates.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        candidates.truncate(limit);
        let mut purged = Purged::default();
        for (id, job) in candidates {
            let Inner {
                jobs, done, idx, ..
            } = &mut *inner;
            match jobs.remove(&id) {
                Some(Slot::Live(entry)) => {
                    for task in entry.tasks.values() {
                        idx.remove_task(task);
                    }
                }
                Some(Slot::Done(at)) => done.free(at),
                None => continue,
            }
            idx.remove_job(&id, &job);
            purged.jobs += 1;
        }
        while (purged.keys as usize) < limit {
            let Some((expires, key)) = inner.key_expiry.first().copied() else {
                break;
            };
            if expires > now {
                break;
            }
            inner.key_expiry.remove(&(expires, key));
            inner.keys.remove(&key);
            purged.keys += 1;
        }
        Ok(purged)
    }

    async fn insert_job_keyed(
        &self,
        job: &Job,
        tasks: &[Task],
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<KeyedInsert> {
        let mut inner = self.lock();
        let id = key_digest(&key.tenant, &key.key);
        let body = body_digest(&key.body_hash);
        if let Some(held) = inner.keys.get(&id) {
            let job_id = JobId::new(&*held.job_id);
            if let Some(found) =
                transition::replay_of(&job_id, held.expires_at, held.body == body, now)
            {
                return Ok(found);
            }
        }
        inner.insert_job(job, tasks)?;
        let job_id = inner
            .jobs
            .get_key_value(job.job_id.as_str())
            .map(|(id, _)| Arc::clone(id))
            .ok_or_else(|| Error::backend("memory", "a job just stored is missing"))?;
        inner.key_expiry.insert((key.expires_at, id));
        let replaced = inner.keys.insert(
            id,
            HeldKey {
                body,
                job_id,
                expires_at: key.expires_at,
            },
        );
        if let Some(old) = replaced
            && old.expires_at != key.expires_at
        {
            inner.key_expiry.remove(&(old.expires_at, id));
        }
        Ok(KeyedInsert::Inserted)
    }

    async fn job(&self, job_id: &JobId) -> Result<Option<Job>> {
        let inner = self.lock();
        inner
            .jobs
            .get(job_id.as_str())
            .map(|slot| slot.job(job_id.as_str(), &inner.done))
            .transpose()
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Page<Job>> {
        let inner = self.lock();
        let sets = inner.idx.job_sets(query);
        let total: u64 = sets.iter().map(|s| s.len() as u64).sum();
        let total = query.total_up_to.map_or(total, |cap| total.min(cap));
        // Newest first, from `before` (exclusive) when paging by key.
        let upper = query
            .before
            .as_ref()
            .map_or(Bound::Unbounded, |id| Bound::Excluded(id.as_str()));
        let page: Vec<&Arc<str>> = if let [set] = sets.as_slice() {
            newest_below(set, upper)
                .skip(query.offset)
                .take(query.limit)
                .collect()
        } else {
            // Several tenants: merge their sets (a token rarely holds more than a few).
            let mut ids: Vec<&Arc<str>> =
                sets.iter().flat_map(|s| newest_below(s, upper)).collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect()
        };
        let items = page
            .into_iter()
            .filter_map(|id| inner.jobs.get(id).map(|slot| slot.job(id, &inner.done)))
            .collect::<Result<_>>()?;
        Ok(Page { total, items })
    }

    async fn list_tasks(&self, job_id: &JobId, query: &TaskQuery) -> Result<Option<Page<Task>>> {
        let inner = self.lock();
        let unpacked;
        let tasks: Vec<&Task> = match inner.jobs.get(job_id.as_str()) {
            None => return Ok(None),
            Some(Slot::Live(entry)) => entry.tasks.values().collect(),
            Some(Slot::Done(at)) => {
                unpacked = packed::unpack(job_id.as_str(), inner.done.get(*at)?)?.1;
                unpacked.iter().collect()
            }
        };
        let matching = tasks.into_iter().filter(|t| {
            query.status.is_none_or(|s| t.status == s)
                && query
                    .worker_id
                    .as_deref()
                    .is_none_or(|w| t.worker_id.as_deref() == Some(w))
        });
        let total = matching.clone().count() as u64;
        let items = matching
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok(Some(Page { total, items }))
    }

    async fn register_worker(
        &self,
        worker_id: &str,
        capabilities: &WorkerCapabilities,
        now: Timestamp,
    ) -> Result<()> {
        let mut inner = self.lock();
        inner
            .workers
            .entry(worker_id.to_owned())
            .and_modify(|w| {
                w.capabilities = capabilities.clone();
                w.last_heartbeat = now;
            })
            .or_insert_with(|| Worker {
                worker_id: worker_id.to_owned(),
                capabilities: capabilities.clone(),
                stats: WorkerStats::default(),
                registered_at: now,
                last_heartbeat: now,
            });
        Ok(())
    }

    async fn worker_exists(&self, worker_id: &str) -> Result<bool> {
        Ok(self.lock().workers.contains_key(worker_id))
    }

    async fn stale_leases(&self, held: &[(TaskRef, String)]) -> Result<Vec<String>> {
        let inner = self.lock();
        Ok(held
            .iter()
            .filter(|(key, lease)| {
                // A packed job has completed: none of its tasks runs.
                let live = match inner.jobs.get(key.job_id.as_str()) {
                    Some(Slot::Live(entry)) => entry
                        .tasks
                        .get(&key.task_id)
                        .is_some_and(|task| transition::holds_lease(task, lease)),
                    _ => false,
                };
                !live
            })
            .map(|(_, lease)| lease.clone())
            .collect())
    }

    async fn list_workers(&self, limit: usize, offset: usize) -> Result<Page<Worker>> {
        let inner = self.lock();
        let mut ids: Vec<&String> = inner.workers.keys().collect();
        ids.sort_unstable();
        let items = ids
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|id| inner.workers[id].clone())
            .collect();
        Ok(Page {
            total: inner.workers.len() as u64,
            items,
        })
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        stats: &WorkerStats,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<u32>> {
        let mut guard = self.lock();
        let Inner {
            jobs, idx, workers, ..
        } = &mut *guard;
        let Some(worker) = workers.get_mut(worker_id) else {
            return Ok(None);
        };
        worker.stats = stats.clone();
        worker.last_heartbeat = now;
        let running: Vec<TaskRef> = idx
            .running_by_worker
            .get(worker_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut extended = 0;
        for key in running {
            let Some(Slot::Live(entry)) = jobs.get_mut(key.job_id.as_str()) else {
                continue;
            };
            let Some(task) = entry.tasks.get_mut(&key.task_id) else {
                continue;
            };
            if idx.update_task(task, |t| transition::extend_lease(t, now, timing)) {
                extended += 1;
            }
        }
        Ok(Some(extended))
    }

    async fn assign(
        &self,
        task_ref: &TaskRef,
        worker_id: &str,
        nonce: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Option<Assignment>> {
        Ok(self.lock().assign(task_ref, worker_id, nonce, now, timing))
    }

    async fn assign_many(
        &self,
        tasks: &[(TaskRef, String)],
        worker_id: &str,
        now: Timestamp,
        timing: Timing,
    ) -> Result<Vec<Result<Option<Assignment>>>> {
        // Under one lock acquisition rather than one per task.
        let mut inner = self.lock();
        Ok(tasks
            .iter()
            .map(|(task, nonce)| Ok(inner.assign(task, worker_id, nonce, now, timing)))
            .collect())
    }

    async fn report(
        &self,
        report: &Report,
        now: Timestamp,
        timing: Timing,
    ) -> Result<ReportOutcome> {
        let mut inner = self.lock();
        let Some((entry, idx)) = inner.live_mut(&report.task.job_id) else {
            return report_on_finished(&inner, report);
        };
        let task = entry
            .tasks
            .get(&report.task.task_id)
            .ok_or(Error::NotFound(Resource::Task))?;
        match transition::check_report(&entry.job, task, report) {
            ReportCheck::Apply => {}
            ReportCheck::JobCanceled => return Ok(ReportOutcome::JobCanceled),
            ReportCheck::Duplicate => return Ok(ReportOutcome::Duplicate),
            ReportCheck::NotRunning => return Ok(ReportOutcome::NotRunning),
            ReportCheck::StaleLease => return Ok(ReportOutcome::StaleLease),
        }
        let dispatching = transition::job_is_dispatching(&entry.job);
        let task = entry.task_mut(&report.task.task_id)?;
        let failure = idx.update_task(task, |t| {
            transition::apply_report(t, report, dispatching, now, timing)
        });
        let task = task.clone();
        let mut enqueue = Vec::new();
        match failure {
            None => {
                for dep_id in entry
                    .dependents
                    .get(&task.task_id)
                    .cloned()
                    .unwrap_or_default()
                {
                    let Some(dependent) = entry.tasks.get_mut(&dep_id) else {
                        continue;
                    };
                    if idx.update_task(dependent, |d| {
                        transition::dependency_completed(d, dispatching, now, timing)
                    }) {
                        enqueue.push((dependent.task_ref(), dependent.priority));
                    }
                }
                let sink_output = entry
                    .tasks
                    .get(&entry.job.sink_task_id)
                    .and_then(|sink| sink.output_artifact_uri.clone());
                idx.update_job(&entry.id, &mut entry.job, |job| {
                    transition::job_task_completed(job, sink_output.as_deref(), now)
                });
            }
            Some(AttemptOutcome::Retry) => {
                // A retry that waits for its back-off is enqueued by the reconciler when due.
                if dispatching && task.is_due(now) {
                    enqueue.push((task.task_ref(), task.priority));
                }
            }
            Some(AttemptOutcome::DeadLettered) => entry.task_dead_lettered(idx, &task.task_id, now),
        }
        let job_status = entry.job.status;
        inner.settle(&report.task.job_id);
        Ok(ReportOutcome::Applied(ReportEffects {
            failure,
            enqueue,
            job_status,
        }))
    }

    async fn cancel_job(&self, job_id: &JobId, now: Timestamp) -> Result<Option<CancelOutcome>> {
        let mut inner = self.lock();
        let Some((entry, idx)) = inner.live_mut(job_id) else {
            // A completed job: canceling it changes nothing.
            return match inner.jobs.get(job_id.as_str()) {
                None => Ok(None),
                Some(slot) => {
                    let mut job = slot.job(job_id.as_str(), &inner.done)?;
                    Ok(Some(transition::cancel_job(&mut job, now)))
                }
            };
        };
        let outcome = idx.update_job(&entry.id, &mut entry.job, |job| {
            transition::cancel_job(job, now)
        });
        if outcome == CancelOutcome::Canceled {
            for task in entry.tasks.values_mut() {
                idx.update_task(task, |t| transition::cancel_task(t, now));
            }
        }
        Ok(Some(outcome))
    }

    async fn expire_leases(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<ExpiredLease>> {
        let mut guard = self.lock();
        let lapsed = due(&guard.idx.leases, now, limit);
        let mut expired = Vec::with_capacity(lapsed.len());
        for key in lapsed {
            let (entry, idx) = guard.indexed_mut(&key.job_id)?;
            let dispatching = transition::job_is_dispatching(&entry.job);
            let task = entry.task_mut(&key.task_id)?;
            let worker_id = task.worker_id.clone().unwrap_or_default();
            let cause = transition::expiry_cause(task);
            let outcome = idx.update_task(task, |t| {
                transition::fail_attempt(t, &cause, None, dispatching, now, timing)
            });
            let priority = task.priority;
            let due_now = task.is_due(now);
            let enqueue = match outcome {
                AttemptOutcome::Retry => (dispatching && due_now).then(|| (key.clone(), priority)),
                AttemptOutcome::DeadLettered => {
                    entry.task_dead_lettered(idx, &key.task_id, now);
                    None
                }
            };
            expired.push(ExpiredLease {
                task: key,
                worker_id,
                reason: cause.reason(),
                outcome,
                enqueue,
            });
        }
        Ok(expired)
    }

    async fn take_orphans(
        &self,
        now: Timestamp,
        limit: usize,
        timing: Timing,
    ) -> Result<Vec<Dispatch>> {
        let mut guard = self.lock();
        let orphaned = due(&guard.idx.redispatch, now, limit);
        let mut orphans = Vec::with_capacity(orphaned.len());
        for key in orphaned {
            let (entry, idx) = guard.indexed_mut(&key.job_id)?;
            let task = entry.task_mut(&key.task_id)?;
            idx.update_task(task, |t| transition::redispatched(t, now, timing));
            orphans.push((key, task.priority));
        }
        Ok(orphans)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let inner = self.lock();
        Ok(inner
            .idx
            .dead
            .iter()
            .take(limit)
            .filter_map(|(at, key)| {
                let Slot::Live(entry) = inner.jobs.get(key.job_id.as_str())? else {
                    return None;
                };
                let task = entry.tasks.get(&key.task_id)?;
                Some(DeadLetter {
                    job_id: key.job_id.clone(),
                    task_id: key.task_id.clone(),
                    tenant: entry.job.tenant.clone(),
                    attempt: task.attempt,
                    error: task.error.clone().unwrap_or_default(),
                    dead_lettered_at: *at,
                })
            })
            .collect())
    }

    async fn count_dead_letters(&self) -> Result<u64> {
        Ok(self.lock().idx.dead.len() as u64)
    }

    async fn count_dead_among(&self, tasks: &[TaskRef]) -> Result<u64> {
        let inner = self.lock();
        // Dead letters are never in completed (packed) jobs.
        let is_dead = |key: &TaskRef| match inner.jobs.get(key.job_id.as_str()) {
            Some(Slot::Live(entry)) => entry
                .tasks
                .get(&key.task_id)
                .is_some_and(|t| t.status == TaskStatus::Failed && t.dead_lettered_at.is_some()),
            _ => false,
        };
        Ok(tasks.iter().filter(|k| is_dead(k)).count() as u64)
    }

    async fn requeue_dead(
        &self,
        tasks: &[TaskRef],
        now: Timestamp,
        timing: Timing,
    ) -> Result<RequeueOutcome> {
        let mut guard = self.lock();
        let mut outcome = RequeueOutcome::default();
        for key in tasks {
            let Some((entry, idx)) = guard.live_mut(&key.job_id) else {
                continue;
            };
            let Some(task) = entry.tasks.get_mut(&key.task_id) else {
                continue;
            };
            if !idx.update_task(task, |t| transition::requeue_dead(t, now)) {
                continue;
            }
            outcome.requeued.push(key.clone());
            if idx.update_job(&entry.id, &mut entry.job, |job| {
                transition::job_task_requeued(job, now)
            }) {
                outcome
                    .enqueue
                    .extend(entry.redispatch_ready(idx, now, timing));
            }
        }
        Ok(outcome)
    }

    async fn discard_dead(&self, tasks: &[TaskRef], now: Timestamp) -> Result<Vec<TaskRef>> {
        let mut guard = self.lock();
        let mut discarded = Vec::new();
        for key in tasks {
            let Some((entry, idx)) = guard.live_mut(&key.job_id) else {
                continue;
            };
            let Some(task) = entry.tasks.get_mut(&key.task_id) else {
                continue;
            };
            if !idx.update_task(task, |t| transition::discard_dead(t, now)) {
                continue;
            }
            discarded.push(key.clone());
            idx.update_job(&entry.id, &mut entry.job, |job| {
                transition::job_task_discarded(job, now);
                false
            });
        }
        Ok(discarded)
    }

    async fn insert_schedule(&self, new: &Schedule) -> Result<bool> {
        let mut inner = self.lock();
        let key = schedule_key(&new.tenant, &new.schedule_id);
        if inner.schedules.contains_key(&key) {
            return Ok(false);
        }
        if !new.paused {
            inner.schedules_due.insert((new.next_fire_at, key.clone()));
        }
        inner.schedules.insert(key, new.clone());
        Ok(true)
    }

    async fn schedules_named(&self, schedule_id: &str) -> Result<Vec<Schedule>> {
        let inner = self.lock();
        let from = (schedule_id.to_owned(), String::new());
        Ok(inner
            .schedules
            .range(from..)
            .take_while(|((id, _), _)| id == schedule_id)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn list_schedules(
        &self,
        tenants: Option<&[String]>,
        limit: usize,
        offset: usize,
    ) -> Result<Page<Schedule>> {
        let inner = self.lock();
        let visible = |s: &&Schedule| tenants.is_none_or(|t| t.contains(&s.tenant));
        let total = inner.schedules.values().filter(visible).count() as u64;
        let items = inner
            .schedules
            .values()
            .filter(visible)
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        Ok(Page { total, items })
    }

    async fn delete_schedule(&self, tenant: &str, schedule_id: &str) -> Result<bool> {
        let mut inner = self.lock();
        let key = schedule_key(tenant, schedule_id);
        let Some(gone) = inner.schedules.remove(&key) else {
            return Ok(false);
        };
        inner.schedules_due.remove(&(gone.next_fire_at, key));
        Ok(true)
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        schedule_id: &str,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<Schedule>> {
        let key = schedule_key(tenant, schedule_id);
        Ok(self.lock().update_schedule(&key, |s| {
            match next_fire_at {
                None => s.paused = true,
                Some(next) if s.paused => {
                    s.paused = false;
                    s.next_fire_at = next;
                }
                // Resuming a running schedule changes nothing.
                Some(_) => return s.clone(),
            }
            s.updated_at = now;
            s.clone()
        }))
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        let inner = self.lock();
        Ok(inner
            .schedules_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, key)| inner.schedules.get(key).cloned())
            .collect())
    }

    async fn fire_schedule(&self, firing: &Firing, job: &Job, tasks: &[Task]) -> Result<bool> {
        let mut inner = self.lock();
        let key = schedule_key(&firing.tenant, &firing.schedule_id);
        let may = inner
            .schedules
            .get(&key)
            .is_some_and(|s| schedule::may_fire(s, firing));
        if !may {
            return Ok(false);
        }
        inner.insert_job(job, tasks)?;
        inner.update_schedule(&key, |s| schedule::fired(s, firing, &job.job_id));
        Ok(true)
    }

    async fn append_audit(&self, draft: AuditDraft, now: Timestamp) -> Result<AuditEvent> {
        let mut inner = self.lock();
        let prev_hash = inner
            .audit
            .last()
            .map(|e| e.event_hash.clone())
            .unwrap_or_default();
        let event = draft.seal(inner.audit.len() as u64 + 1, now, prev_hash);
        inner.audit.push(event.clone());
        Ok(event)
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let inner = self.lock();
        Ok(inner
            .audit
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn audit_chain(&self, after_id: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let inner = self.lock();
        // Ids are 1, 2, 3, … so event `id` sits at index `id - 1`.
        let start = usize::try_from(after_id)
            .unwrap_or(usize::MAX)
            .min(inner.audit.len());
        Ok(inner.audit[start..].iter().take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod arena_tests {
    use super::*;

    #[test]
    fn a_segment_whose_jobs_are_all_freed_is_released() {
        let mut arena = Arena::default();
        let job = vec![7u8; 100_000];
        // 25 jobs: segments of ten, ten and five.
        let packed: Vec<Packed> = (0..25).map(|_| arena.push(&job)).collect();
        assert_eq!(arena.segments.len(), 3);
        let full = arena.allocated();
        for at in &packed[..9] {
            arena.free(*at);
        }
        assert_eq!(arena.allocated(), full, "a segment with a job left stays");
        arena.free(packed[9]);
        assert_eq!(
            arena.allocated(),
            full - SEGMENT_BYTES,
            "the first segment is released"
        );
        assert!(arena.get(packed[10]).is_ok(), "the others still read");
        for at in &packed[20..] {
            arena.free(*at);
        }
        assert!(
            arena.get(packed[19]).is_ok(),
            "the segment being filled is kept"
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_key_digest_tells_where_the_tenant_ends() {
        assert_ne!(key_digest("ab", "c"), key_digest("a", "bc"));
        assert_ne!(key_digest("", "abc"), key_digest("abc", ""));
        assert_eq!(key_digest("acme", "order-7"), key_digest("acme", "order-7"));
        assert_ne!(body_digest("a"), body_digest("b"));
    }
}
