//! The load driver: `clients` submitting loops and `workers` simulated workers against one
//! gateway, for a fixed number of one-task jobs.
//!
//! Job `i` of a phase has the input `<label> <i>`, so every run submits the same bodies and a
//! worker can tell from an assignment alone which job it belongs to (and so when it was
//! submitted). Inputs never contain "analyze": the default planner gives each job one task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daef_client::model::{JobSubmission, Registration, ReportStatus, TaskReport, TaskSubmission};
use daef_client::{Client, Error as ClientError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;

use crate::stats::{Latency, Samples};

/// How the driver behaves.
#[derive(Clone, Debug)]
pub(crate) struct LoadConfig {
    /// Prefix of every input of this phase (distinguishes warm-up, pre-load and measurement).
    pub(crate) label: String,
    /// Tasks to run, in jobs of `tasks_per_job` (the last job may be larger).
    pub(crate) tasks: u64,
    /// Tasks of each job: 1, or a fan-out DAG (a root task, `tasks_per_job - 2` tasks that
    /// depend on it, and a sink task that depends on them).
    pub(crate) tasks_per_job: u32,
    /// Concurrent submitting loops.
    pub(crate) clients: usize,
    /// Concurrent simulated workers.
    pub(crate) workers: usize,
    /// `max_tasks` of every poll.
    pub(crate) max_tasks: u32,
    /// Long-poll wait sent with every poll (`wait_ms`); `None` polls without waiting and
    /// backs off on its own when a poll comes back empty.
    pub(crate) wait_ms: Option<u32>,
    /// Most jobs submitted but not yet completed (0: no limit). Submitting clients wait at the
    /// limit, so the gateway runs saturated without an ever-growing backlog (which would
    /// measure queueing, not throughput, and trip the reconciler's re-enqueue of waiting work).
    pub(crate) max_in_flight: usize,
    /// Submit at most this many jobs per second in all (`None`: as fast as the clients go), to
    /// measure latency below saturation.
    pub(crate) rate: Option<f64>,
    /// Give up when the phase has not finished after this long.
    pub(crate) deadline: Duration,
    /// Show a progress bar (on a terminal).
    pub(crate) progress: bool,
}

/// What a phase measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct LoadResult {
    /// Tasks asked for.
    pub(crate) tasks: u64,
    /// Tasks whose completion report was accepted.
    pub(crate) completed: u64,
    /// From the first submit to the last accepted report.
    pub(crate) elapsed: Duration,
    /// Time at which every submit had returned.
    pub(crate) submit_elapsed: Duration,
    pub(crate) submit: Latency,
    /// Every poll, empty ones included.
    pub(crate) poll: Latency,
    /// Polls that brought at least one assignment.
    pub(crate) poll_busy: Latency,
    pub(crate) report: Latency,
    /// From the start of a job's submit to the acceptance of its last task's report.
    pub(crate) end_to_end: Latency,
    pub(crate) requests_submit: u64,
    pub(crate) requests_poll: u64,
    pub(crate) requests_poll_empty: u64,
    pub(crate) requests_report: u64,
    /// Error text (prefixed with the operation) → how often it happened.
    pub(crate) errors: BTreeMap<String, u64>,
    /// False when the deadline passed first.
    pub(crate) finished: bool,
}

impl LoadResult {
    /// The phase ran to its end without a single error.
    pub(crate) fn clean(&self) -> bool {
        self.finished && self.error_count() == 0
    }

    /// Tasks per second, end to end.
    pub(crate) fn tasks_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            self.completed as f64 / secs
        }
    }

    /// HTTP requests the run made per completed task.
    pub(crate) fn requests_per_task(&self) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        (self.requests_submit + self.requests_poll + self.requests_report) as f64
            / self.completed as f64
    }

    /// How many errors were seen in all.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// State shared by every loop of one phase.
struct Shared {
    label: String,
    /// Jobs of this phase.
    total: u64,
    tasks_per_job: u32,
    started: Instant,
    next_job: AtomicU64,
    /// Per job: nanoseconds after `started` at which its submit began, plus one (0: not yet).
    submitted_at: Vec<AtomicU64>,
    /// Per job: how many of its tasks' completions were accepted.
    done: Vec<AtomicU32>,
    /// Tasks completed.
    completed: AtomicU64,
    /// Jobs completed.
    completed_jobs: AtomicU64,
    /// Submits that failed: those jobs will never complete.
    abandoned: AtomicU64,
    /// Nanoseconds after `started` of the last accepted report.
    last_completion: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
    /// Permits for jobs in flight (see [`LoadConfig::max_in_flight`]).
    in_flight: Option<Semaphore>,
    /// See [`LoadConfig::rate`].
    rate: Option<f64>,
    bar: ProgressBar,
}

impl Shared {
    fn since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn finished(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.completed_jobs.load(Ordering::Relaxed) + self.abandoned.load(Ordering::Relaxed)
                >= self.total
    }

    /// One job of this phase left the system.
    fn release(&self) {
        if let Some(in_flight) = &self.in_flight {
            in_flight.add_permits(1);
        }
    }

    fn error(&self, op: &str, err: &ClientError) {
        let mut text = format!("{op}: {err}");
        if text.len() > 200 {
            let mut end = 200;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(text).or_default() += 1;
    }

    /// Job `i` of this phase: one task planned by the gateway, or an explicit fan-out DAG. Every
    /// task carries the job's `prompt`, which tells its reports apart.
    fn job(&self, i: u64) -> JobSubmission {
        let prompt = format!("{} {i}", self.label);
        if self.tasks_per_job <= 1 {
            return JobSubmission::new("bench", prompt);
        }
        let task = |task_id: String, dependencies: Vec<String>| TaskSubmission {
            task_id,
            task_type: "bench".to_owned(),
            inputs: BTreeMap::from([("prompt".to_owned(), prompt.clone())]),
            dependencies,
            ..TaskSubmission::default()
        };
        let middle: Vec<String> = (1..self.tasks_per_job - 1)
            .map(|n| format!("m{n:04}"))
            .collect();
        let mut tasks = vec![task("root".to_owned(), Vec::new())];
        tasks.extend(
            middle
                .iter()
                .map(|m| task(m.clone(), vec!["root".to_owned()])),
        );
        let sink_deps = if middle.is_empty() {
            vec!["root".to_owned()]
        } else {
            middle
        };
        tasks.push(task("sink".to_owned(), sink_deps));
        JobSubmission {
            tasks: Some(tasks),
            ..JobSubmission::new("bench", prompt.clone())
        }
    }

    /// The job an assignment belongs to, when it is one of this phase's.
    fn job_index(&self, prompt: Option<&String>) -> Option<usize> {
        let (label, index) = prompt?.rsplit_once(' ')?;
        if label != self.label {
            return None;
        }
        let index: u64 = index.parse().ok()?;
        (index < self.total).then_some(index as usize)
    }
}

/// What one loop recorded.
#[derive(Default)]
struct LoopStats {
    submit: Samples,
    poll: Samples,
    poll_busy: Samples,
    report: Samples,
    end_to_end: Samples,
    submits: u64,
    polls: u64,
    empty_polls: u64,
    reports: u64,
}

impl LoopStats {
    fn merge(&mut self, other: LoopStats) {
        self.submit.merge(other.submit);
        self.poll.merge(other.poll);
        self.poll_busy.merge(other.poll_busy);
        self.report.merge(other.report);
        self.end_to_end.merge(other.end_to_end);
        self.submits += other.submits;
        self.polls += other.polls;
        self.empty_polls += other.empty_polls;
        self.reports += other.reports;
    }
}

/// Runs one phase to completion (or to its deadline).
pub(crate) async fn run(client: &Client, config: &LoadConfig) -> LoadResult {
    let tasks_per_job = config.tasks_per_job.max(1);
    let total = config.tasks.div_ceil(u64::from(tasks_per_job));
    let total_tasks = total * u64::from(tasks_per_job);
    let bar = if config.progress {
        let bar =
            ProgressBar::with_draw_target(Some(total_tasks), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(config.label.clone());
        bar
    } else {
        ProgressBar::hidden()
    };
    let shared = Arc::new(Shared {
        label: config.label.clone(),
        total,
        tasks_per_job,
        started: Instant::now(),
        next_job: AtomicU64::new(0),
        submitted_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
        done: (0..total).map(|_| AtomicU32::new(0)).collect(),
        completed: AtomicU64::new(0),
        completed_jobs: AtomicU64::new(0),
        abandoned: AtomicU64::new(0),
        last_completion: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
        in_flight: (config.max_in_flight > 0).then(|| Semaphore::new(config.max_in_flight)),
        rate: config.rate.filter(|r| *r > 0.0),
        bar,
    });

    let mut submitters = Vec::with_capacity(config.clients);
    for _ in 0..config.clients.max(1) {
        submitters.push(tokio::spawn(submitter(client.clone(), Arc::clone(&shared))));
    }
    let mut workers = Vec::with_capacity(config.workers);
    for w in 0..config.workers.max(1) {
        workers.push(tokio::spawn(worker(
            client.clone(),
            Arc::clone(&shared),
            format!("bench-w{w}"),
            config.max_tasks,
            config.wait_ms,
        )));
    }
    let watchdog = {
        let shared = Arc::clone(&shared);
        let deadline = config.deadline;
        tokio::spawn(async move {
            let end = Instant::now() + deadline;
            while !shared.finished() {
                if Instant::now() >= end {
                    shared.stop.store(true, Ordering::Relaxed);
                    if let Some(in_flight) = &shared.in_flight {
                        in_flight.close();
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut stats = LoopStats::default();
    for handle in submitters {
        if let Ok(s) = handle.await {
            stats.merge(s);
        }
    }
    let submit_elapsed = shared.started.elapsed();
    for handle in workers {
        if let Ok(s) = handle.await {
            stats.merge(s);
        }
    }
    watchdog.abort();
    shared.bar.finish_and_clear();

    let completed = shared.completed.load(Ordering::Relaxed);
    let mut errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(|p| p.into_inner()));
    let finished = !shared.stop.load(Ordering::Relaxed);
    if !finished {
        *errors
            .entry(format!(
                "deadline: {} of {total_tasks} tasks unfinished after {:?}",
                total_tasks.saturating_sub(completed),
                config.deadline
            ))
            .or_default() += 1;
    }
    LoadResult {
        tasks: total_tasks,
        completed,
        elapsed: Duration::from_nanos(shared.last_completion.load(Ordering::Relaxed)),
        submit_elapsed,
        submit: stats.submit.summary(),
        poll: stats.poll.summary(),
        poll_busy: stats.poll_busy.summary(),
        report: stats.report.summary(),
        end_to_end: stats.end_to_end.summary(),
        requests_submit: stats.submits,
        requests_poll: stats.polls,
        requests_poll_empty: stats.empty_polls,
        requests_report: stats.reports,
        errors,
        finished,
    }
}

async fn submitter(client: Client, shared: Arc<Shared>) -> LoopStats {
    let mut stats = LoopStats::default();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(in_flight) = &shared.in_flight {
            // Released by the worker that completes a job (or below, when the submit fails);
            // the watchdog's stop closes it.
            match in_flight.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
        }
        let i = shared.next_job.fetch_add(1, Ordering::Relaxed);
        if i >= shared.total {
            break;
        }
        if let Some(rate) = shared.rate {
            // Job i is due i / rate seconds after the start, whichever client sends it.
            let due = shared.started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let job = shared.job(i);
        shared.submitted_at[i as usize].store(shared.since_start() + 1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = client.submit_job(&job).await;
        stats.submits += 1;
        match outcome {
            Ok(_) => stats.submit.record(started.elapsed()),
            Err(err) => {
                shared.error("submit", &err);
                shared.abandoned.fetch_add(1, Ordering::Relaxed);
                shared.release();
            }
        }
    }
    stats
}

async fn worker(
    client: Client,
    shared: Arc<Shared>,
    worker_id: String,
    max_tasks: u32,
    wait_ms: Option<u32>,
) -> LoopStats {
    let mut stats = LoopStats::default();
    let registration = Registration {
        worker_id: worker_id.clone(),
        ..Registration::default()
    };
    while let Err(err) = client.register_worker(&registration).await {
        shared.error("register", &err);
        if shared.finished() {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without long polling, an empty poll is followed by a short pause that doubles up to
    // this cap, so idle workers do not spin on the gateway.
    const MAX_IDLE: Duration = Duration::from_millis(8);
    let mut idle = Duration::from_micros(500);
    let mut seq: u64 = 0;
    while !shared.finished() {
        let started = Instant::now();
        let polled = match wait_ms {
            Some(wait) => client.poll_wait(&worker_id, max_tasks, wait).await,
            None => client.poll(&worker_id, max_tasks).await,
        };
        let took = started.elapsed();
        stats.polls += 1;
        stats.poll.record(took);
        let assignments = match polled {
            Ok(a) => a,
            Err(err) => {
                shared.error("poll", &err);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if assignments.is_empty() {
            stats.empty_polls += 1;
            if wait_ms.is_none() {
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(MAX_IDLE);
            }
            continue;
        }
        idle = Duration::from_micros(500);
        stats.poll_busy.record(took);
        // Every assignment is reported at once, as the reference worker runs and reports up to
        // `max_tasks` tasks concurrently.
        let mut reports = tokio::task::JoinSet::new();
        for a in assignments {
            seq += 1;
            let index = shared.job_index(a.inputs.get("prompt"));
            let report = TaskReport {
                worker_id: worker_id.clone(),
                job_id: a.job_id.clone(),
                task_id: a.task_id.clone(),
                lease_id: a.lease_id.clone(),
                idempotency_key: Some(format!("{worker_id}-{seq}")),
                status: ReportStatus::Completed,
                output_artifact_uri: Some(format!("bench://{}/{}", a.job_id, a.task_id)),
                error: None,
                duration_millis: Some(0),
            };
            let client = client.clone();
            let clock = Arc::clone(&shared);
            reports.spawn(async move {
                let started = Instant::now();
                let outcome = client.report(&report).await;
                (index, outcome, started.elapsed(), clock.since_start())
            });
        }
        while let Some(joined) = reports.join_next().await {
            let Ok((index, outcome, took, accepted_at)) = joined else {
                *shared
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry("report: the reporting task panicked".to_owned())
                    .or_default() += 1;
                continue;
            };
            stats.reports += 1;
            match outcome {
                Ok(_) => {
                    stats.report.record(took);
                    // Tasks of another phase (left over from an aborted run) are completed
                    // so they leave the queue, but not counted.
                    let Some(i) = index else { continue };
                    let done = shared.done[i].fetch_add(1, Ordering::Relaxed) + 1;
                    if done > shared.tasks_per_job {
                        *shared
                            .errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry("report: a task was completed twice".to_owned())
                            .or_default() += 1;
                        continue;
                    }
                    shared
                        .last_completion
                        .fetch_max(accepted_at, Ordering::Relaxed);
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    shared.bar.inc(1);
                    if done < shared.tasks_per_job {
                        continue;
                    }
                    let submitted = shared.submitted_at[i].load(Ordering::Relaxed);
                    if submitted > 0 {
                        stats.end_to_end.record(Duration::from_nanos(
                            accepted_at.saturating_sub(submitted - 1),
                        ));
                    }
                    shared.completed_jobs.fetch_add(1, Ordering::Relaxed);
                    shared.release();
                }
                Err(err) => shared.error("report", &err),
            }
        }
    }
    stats
}
