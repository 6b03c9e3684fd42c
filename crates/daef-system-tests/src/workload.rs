//! Client-side workload: worker loops that poll and report through `daef-client`, a [`Ledger`]
//! of everything they were handed and every answer they got, and job helpers (submit many,
//! list all, wait until nothing is left to run).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use daef_client::model::{
    Assignment, JobFilter, JobInfo, JobSubmission, Registration, ReportStatus, TaskFilter,
    TaskReport,
};
use daef_client::{Client, Error};
use daef_core::model::{JobId, JobStatus, TaskRef, TaskStatus};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};
use tokio::task::JoinSet;

use crate::wait::{eventually, is_retryable, retry};

/// Pause between tries after a retryable failure.
const BACKOFF: Duration = Duration::from_millis(50);

/// How long registration and one report may keep being retried.
const PERSIST: Duration = Duration::from_secs(30);

/// One assignment as a worker received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The worker that polled it.
    pub worker_id: String,
    /// What the gateway handed out.
    pub assignment: Assignment,
}

/// A report the gateway answered 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// What was reported.
    pub status: ReportStatus,
    /// The lease it carried.
    pub lease_id: String,
    /// The attempt of that lease.
    pub attempt: u32,
}

/// What the workers saw, shared by all of them.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Record>,
}

/// A snapshot of a [`Ledger`].
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Every assignment received, in arrival order.
    pub assignments: Vec<Seen>,
    /// Reports answered 200, by task (a resent report shows up once per answer).
    pub accepted: BTreeMap<TaskRef, Vec<Accepted>>,
    /// Reports refused with 409: the task and the gateway's message.
    pub conflicts: Vec<(TaskRef, String)>,
    /// Calls that failed in a retryable way (gateway unreachable, timeout, 503) and were retried.
    pub retried: u64,
    /// Anything else: a 500, a 400, an undecodable answer. The tests expect none.
    pub unexpected: Vec<String>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Record {
        self.with(|r| r.clone())
    }

    /// Tasks with at least one accepted `Completed` report.
    pub fn completed_tasks(&self) -> usize {
        self.with(|r| {
            r.accepted
                .values()
                .filter(|reports| reports.iter().any(|a| a.status == ReportStatus::Completed))
                .count()
        })
    }

    /// Assignments received so far.
    pub fn assignment_count(&self) -> usize {
        self.with(|r| r.assignments.len())
    }

    fn assigned(&self, worker_id: &str, assignment: &Assignment) {
        self.with(|r| {
            r.assignments.push(Seen {
                worker_id: worker_id.to_owned(),
                assignment: assignment.clone(),
            })
        });
    }

    fn accepted(&self, assignment: &Assignment, status: ReportStatus) {
        self.with(|r| {
            r.accepted
                .entry(task_ref(assignment))
                .or_default()
                .push(Accepted {
                    status,
                    lease_id: assignment.lease_id.clone(),
                    attempt: assignment.attempt,
                })
        });
    }

    fn conflict(&self, assignment: &Assignment, message: String) {
        self.with(|r| r.conflicts.push((task_ref(assignment), message)));
    }

    fn retried(&self) {
        self.with(|r| r.retried += 1);
    }

    fn unexpected(&self, what: String) {
        self.with(|r| r.unexpected.push(what));
    }
}

impl Record {
    /// Panics when any failure other than a retryable one was seen.
    pub fn assert_no_unexpected_errors(&self) {
        assert!(
            self.unexpected.is_empty(),
            "{} unexpected error(s), first ones: {:#?}",
            self.unexpected.len(),
            &self.unexpected[..self.unexpected.len().min(10)]
        );
    }

    /// Panics when one attempt of one task was handed out more than once, or one lease id
    /// twice (DESIGN.md invariants 4 and 7).
    pub fn assert_no_attempt_assigned_twice(&self) {
        let mut by_attempt: BTreeMap<(TaskRef, u32), Vec<&Seen>> = BTreeMap::new();
        let mut leases = BTreeSet::new();
        for seen in &self.assignments {
            let a = &seen.assignment;
            by_attempt
                .entry((task_ref(a), a.attempt))
                .or_default()
                .push(seen);
            assert!(
                leases.insert(a.lease_id.clone()),
                "lease {} was handed out twice",
                a.lease_id
            );
        }
        let twice: Vec<_> = by_attempt
            .iter()
            .filter(|(_, seen)| seen.len() > 1)
            .collect();
        assert!(
            twice.is_empty(),
            "{} (task, attempt) pairs were assigned more than once, e.g. {:#?}",
            twice.len(),
            twice.first()
        );
    }

    /// Panics unless the attempts handed out for each task are exactly 1, 2, …, n: no attempt
    /// skipped, none repeated. Only holds when no gateway died between an assignment's commit
    /// and its answer (then the worker never learns of that attempt).
    pub fn assert_attempts_contiguous(&self) {
        let mut attempts: BTreeMap<TaskRef, Vec<u32>> = BTreeMap::new();
        for seen in &self.assignments {
            attempts
                .entry(task_ref(&seen.assignment))
                .or_default()
                .push(seen.assignment.attempt);
        }
        for (task, mut list) in attempts {
            list.sort_unstable();
            let expected: Vec<u32> = (1..=list.len() as u32).collect();
            assert_eq!(list, expected, "attempts handed out for {task}");
        }
    }

    /// The one lease each task was completed under, per the accepted reports. Panics when a
    /// task was accepted as completed under two different leases, or under a lease whose
    /// attempt differs from the attempt it was assigned with.
    pub fn completing_leases(&self) -> BTreeMap<TaskRef, Accepted> {
        let mut out = BTreeMap::new();
        for (task, reports) in &self.accepted {
            let completed: BTreeSet<(&str, u32)> = reports
                .iter()
                .filter(|a| a.status == ReportStatus::Completed)
                .map(|a| (a.lease_id.as_str(), a.attempt))
                .collect();
            assert!(
                completed.len() <= 1,
                "{task} was accepted as Completed under {} different leases: {completed:?}",
                completed.len()
            );
            if let Some(&(lease, attempt)) = completed.iter().next() {
                let prefix = format!("lease-{attempt}-");
                assert!(
                    lease.starts_with(&prefix),
                    "{task}: lease {lease} does not belong to attempt {attempt}"
                );
                out.insert(
                    task.clone(),
                    Accepted {
                        status: ReportStatus::Completed,
                        lease_id: lease.to_owned(),
                        attempt,
                    },
                );
            }
        }
        out
    }
}

fn task_ref(assignment: &Assignment) -> TaskRef {
    TaskRef::new(assignment.job_id.clone(), assignment.task_id.clone())
}

/// The output a worker reports for an assignment: names the lease, so the store's final
/// `output_artifact_uri` says which attempt's report completed the task.
pub fn output_uri(assignment: &Assignment) -> String {
    format!(
        "mem://{}/{}/{}",
        assignment.job_id, assignment.task_id, assignment.lease_id
    )
}

/// Decides what a worker reports for an assignment.
pub type Outcome = Arc<dyn Fn(&Assignment) -> ReportStatus + Send + Sync>;

/// How the workers of a [`WorkerPool`] behave.
#[derive(Clone)]
pub struct WorkerOptions {
    /// `max_tasks` of every poll.
    pub max_tasks: u32,
    /// What to report for each assignment (default: always `Completed`).
    pub outcome: Outcome,
    /// Sleep after a poll that returned nothing.
    pub idle: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            max_tasks: 5,
            outcome: Arc::new(|_| ReportStatus::Completed),
            idle: Duration::from_millis(20),
        }
    }
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("max_tasks", &self.max_tasks)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Worker loops running as Tokio tasks: each registers, then polls and reports until stopped,
/// retrying through gateway restarts and backend outages and recording everything in the
/// [`Ledger`].
#[derive(Debug)]
pub struct WorkerPool {
    stop: Arc<AtomicBool>,
    gate: Arc<RwLock<()>>,
    tasks: JoinSet<()>,
    ledger: Arc<Ledger>,
}

impl WorkerPool {
    /// Starts `count` workers named `<prefix>-<i>`; worker `i` talks to `clients[i % len]`
    /// (round robin over replicas).
    pub fn start(
        clients: &[Client],
        count: usize,
        prefix: &str,
        options: WorkerOptions,
        ledger: Arc<Ledger>,
    ) -> Self {
        assert!(!clients.is_empty(), "a worker pool needs a gateway");
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(RwLock::new(()));
        let mut tasks = JoinSet::new();
        for i in 0..count {
            let worker = Worker {
                id: format!("{prefix}-{i}"),
                client: clients[i % clients.len()].clone(),
                options: options.clone(),
                ledger: ledger.clone(),
                stop: stop.clone(),
                gate: gate.clone(),
            };
            tasks.spawn(worker.run());
        }
        Self {
            stop,
            gate,
            tasks,
            ledger,
        }
    }

    /// The ledger the workers write to.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Waits until no worker is between a poll and its reports, and keeps them from polling
    /// until the guard is dropped.
    pub async fn pause(&self) -> OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }

    /// Stops every worker (a report being retried is abandoned) and waits for them.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(err) = joined
                && err.is_panic()
            {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }
}

struct Worker {
    id: String,
    client: Client,
    options: WorkerOptions,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    gate: Arc<RwLock<()>>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    async fn register(&self) -> bool {
        let registration = Registration {
            worker_id: self.id.clone(),
            ..Registration::default()
        };
        let deadline = Instant::now() + PERSIST;
        while !self.stopped() {
            match self.client.register_worker(&registration).await {
                Ok(_) => return true,
                Err(err) if is_retryable(&err) && Instant::now() < deadline => {
                    self.ledger.retried();
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(err) => {
                    self.ledger
                        .unexpected(format!("register {}: {err}", self.id));
                    return false;
                }
            }
        }
        false
    }

    async fn run(self) {
        if !self.register().await {
            return;
        }
        while !self.stopped() {
            let turn = self.gate.read().await;
            if self.stopped() {
                return;
            }
            match self.client.poll(&self.id, self.options.max_tasks).await {
                Ok(assignments) if assignments.is_empty() => {
                    drop(turn);
                    tokio::time::sleep(self.options.idle).await;
                }
                Ok(assignments) => {
                    for assignment in &assignments {
                        self.ledger.assigned(&self.id, assignment);
                    }
                    for assignment in &assignments {
                        self.report(assignment).await;
                    }
                }
                // A memory store forgets workers when its gateway restarts.
                Err(Error::NotFound(_)) => {
                    drop(turn);
                    if !self.register().await {
                        return;
                    }
                }
                Err(err) if is_retryable(&err) => {
                    drop(turn);
                    self.ledger.retried();
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(err) => {
                    drop(turn);
                    self.ledger
                        .unexpected(format!("poll by {}: {err}", self.id));
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }

    /// Reports one assignment, resending the same report (same idempotency key) while the
    /// gateway cannot be reached, so a report whose answer was lost is answered 200 later.
    async fn report(&self, assignment: &Assignment) {
        let status = (self.options.outcome)(assignment);
        let report = TaskReport {
            worker_id: self.id.clone(),
            job_id: assignment.job_id.clone(),
            task_id: assignment.task_id.clone(),
            lease_id: assignment.lease_id.clone(),
            idempotency_key: Some(format!("report-{}", assignment.lease_id)),
            status,
            output_artifact_uri: (status == ReportStatus::Completed)
                .then(|| output_uri(assignment)),
            error: (status == ReportStatus::Failed).then(|| "injected by the test".to_owned()),
            duration_millis: Some(1),
        };
        let deadline = Instant::now() + PERSIST;
        loop {
            match self.client.report(&report).await {
                Ok(_) => {
                    self.ledger.accepted(assignment, status);
                    return;
                }
                Err(Error::Conflict(message)) => {
                    self.ledger.conflict(assignment, message);
                    return;
                }
                Err(err) if is_retryable(&err) && Instant::now() < deadline => {
                    if self.stopped() {
                        return;
                    }
                    self.ledger.retried();
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(err) => {
                    self.ledger.unexpected(format!(
                        "report by {} on {}|{} ({}): {err}",
                        self.id, assignment.job_id, assignment.task_id, assignment.lease_id
                    ));
                    return;
                }
            }
        }
    }
}

// --- jobs -------------------------------------------------------------------------------------

/// Job `i` of a mixed workload: every third is a `batch_analysis` job, which the default
/// planner turns into the three-task chain `t1-split → t2-embed → t3-summarize`; the others are
/// one `llm_inference` task.
pub fn mixed_job(i: usize) -> JobSubmission {
    if i.is_multiple_of(3) {
        JobSubmission::new("batch_analysis", format!("report #{i}"))
    } else {
        JobSubmission::new("chat", format!("question #{i}"))
    }
}

/// How many tasks [`mixed_job`] `i` has.
pub fn mixed_job_tasks(i: usize) -> usize {
    if i.is_multiple_of(3) { 3 } else { 1 }
}

/// Submits `jobs` with `concurrency` requests in flight, spread round robin over `clients`;
/// returns the ids in the order of `jobs`. Panics on any failure: the gateways are expected up.
pub async fn submit_all(
    clients: &[Client],
    jobs: Vec<JobSubmission>,
    concurrency: usize,
) -> Vec<JobId> {
    let jobs = Arc::new(jobs);
    let concurrency = concurrency.max(1);
    let mut set = JoinSet::new();
    for lane in 0..concurrency {
        let jobs = jobs.clone();
        let clients = clients.to_vec();
        set.spawn(async move {
            let mut ids = Vec::new();
            for i in (lane..jobs.len()).step_by(concurrency) {
                let client = &clients[i % clients.len()];
                match client.submit_job(&jobs[i]).await {
                    Ok(submitted) => ids.push((i, submitted.job_id)),
                    Err(err) => panic!("submit of job #{i} to {}: {err}", client.base_url()),
                }
            }
            ids
        });
    }
    let mut ids: Vec<(usize, JobId)> = Vec::with_capacity(jobs.len());
    while let Some(lane) = set.join_next().await {
        match lane {
            Ok(part) => ids.extend(part),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("submitter task: {err}"),
        }
    }
    ids.sort_by_key(|(i, _)| *i);
    ids.into_iter().map(|(_, id)| id).collect()
}

/// Every job the gateway lists, paging 1,000 at a time (newest first).
pub async fn all_jobs(client: &Client) -> daef_client::Result<Vec<JobInfo>> {
    const PAGE: u64 = 1_000;
    let mut jobs = Vec::new();
    loop {
        let filter = JobFilter {
            limit: Some(PAGE),
            offset: Some(jobs.len() as u64),
            ..JobFilter::default()
        };
        let page = retry(PERSIST, async || client.list_jobs(&filter).await).await?;
        let returned = page.jobs.len();
        jobs.extend(page.jobs);
        if (returned as u64) < PAGE || jobs.len() as u64 >= page.total {
            return Ok(jobs);
        }
    }
}

/// How many jobs the store holds (one listing, so one consistent count).
pub async fn job_total(client: &Client) -> daef_client::Result<u64> {
    let filter = JobFilter {
        limit: Some(1),
        ..JobFilter::default()
    };
    Ok(client.list_jobs(&filter).await?.total)
}

/// How many jobs are in each status, one `limit=1` listing per status. Not a snapshot: a job
/// that moves on between two listings may be counted twice, so do not add these up while jobs
/// are moving. (Terminal statuses are final, so their counts are exact once nothing is open.)
pub async fn status_counts(client: &Client) -> daef_client::Result<BTreeMap<JobStatus, u64>> {
    let mut counts = BTreeMap::new();
    for &status in JobStatus::ALL {
        let filter = JobFilter {
            status: Some(status),
            limit: Some(1),
            ..JobFilter::default()
        };
        counts.insert(status, client.list_jobs(&filter).await?.total);
    }
    Ok(counts)
}

/// Waits until at least `expected` jobs exist and none is `Queued` or `Running`, then returns
/// every job. Panics with the counts after `timeout`. Call it once nothing submits any more:
/// the statuses are listed in lifecycle order (Queued first), so a job can only be missed by
/// both open counts if it is terminal — or if it was submitted in between.
pub async fn wait_settled(client: &Client, expected: usize, timeout: Duration) -> Vec<JobInfo> {
    eventually(
        timeout,
        &format!("{expected} jobs to reach a terminal state"),
        async || {
            let counts = status_counts(client).await.map_err(|e| e.to_string())?;
            let total: u64 = counts.values().sum();
            let open = counts[&JobStatus::Queued] + counts[&JobStatus::Running];
            if open == 0 && total >= expected as u64 {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    all_jobs(client).await.expect("listing the jobs")
}

/// Panics unless the store lists exactly the `accepted` jobs (no job lost, none made up) and
/// every one of them completed.
pub fn assert_exactly_accepted_and_completed(jobs: &[JobInfo], accepted: &[JobId]) {
    let mut listed: Vec<&JobId> = jobs.iter().map(|j| &j.job_id).collect();
    let mut accepted: Vec<&JobId> = accepted.iter().collect();
    listed.sort();
    accepted.sort();
    assert_eq!(
        listed, accepted,
        "the store holds exactly the accepted jobs"
    );
    let not_completed: Vec<_> = jobs
        .iter()
        .filter(|j| j.status != JobStatus::Completed)
        .collect();
    assert!(
        not_completed.is_empty(),
        "{} jobs did not complete, e.g. {:?}",
        not_completed.len(),
        not_completed.first()
    );
}

/// Checks every task of `jobs` in the store against the ledger: each is `Completed`, its
/// attempt is the attempt of the one lease the workers were told completed it, and its stored
/// output names that lease — so no task was completed twice, or by a report the gateway then
/// forgot. Returns how many tasks were checked.
pub async fn assert_tasks_completed_as_recorded(
    client: &Client,
    jobs: &[JobId],
    record: &Record,
) -> usize {
    let completing = record.completing_leases();
    let mut checked = 0;
    for job_id in jobs {
        let tasks = retry(PERSIST, async || {
            client.tasks(job_id, &TaskFilter::default()).await
        })
        .await
        .unwrap_or_else(|e| panic!("tasks of {job_id}: {e}"));
        for task in tasks.tasks {
            let key = TaskRef::new(job_id.clone(), task.task_id.clone());
            assert_eq!(task.status, TaskStatus::Completed, "{key}: {task:?}");
            let lease = completing
                .get(&key)
                .unwrap_or_else(|| panic!("{key} is Completed but no worker saw it accepted"));
            assert_eq!(
                task.attempt, lease.attempt,
                "{key}: the store's attempt differs from the completing lease's"
            );
            let expected = format!("mem://{}/{}/{}", job_id, task.task_id, lease.lease_id);
            assert_eq!(
                task.output_artifact_uri.as_deref(),
                Some(expected.as_str()),
                "{key}: the stored output is not the accepted report's"
            );
            checked += 1;
        }
    }
    checked
}
