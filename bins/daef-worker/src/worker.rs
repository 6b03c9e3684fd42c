//! The worker loop: register, heartbeat at the gateway's interval, poll for as many tasks as
//! there are free slots, run each on its own task, report with retries, and drain on shutdown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use daef_client::model::{Assignment, Registration, ReportStatus, RunningAttempt, TaskReport};
use daef_client::{Client, Error};
use daef_core::model::{WorkerCapabilities, WorkerStats};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::executor::{Executors, Outcome, RunContext};

/// How the worker behaves (everything but the gateway connection).
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) worker_id: String,
    pub(crate) capabilities: WorkerCapabilities,
    pub(crate) max_parallel: usize,
    /// How long the gateway may hold a poll for work; zero polls without waiting.
    pub(crate) poll_wait: Duration,
    /// Pause after a poll that came back empty before its wait was over.
    pub(crate) poll_interval: Duration,
    pub(crate) output_dir: PathBuf,
    pub(crate) default_task_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) report_retry: Duration,
    pub(crate) executors: Executors,
}

/// Whether an empty answer to a poll asked with `wait` and answered after `held` calls for the
/// poll interval's pause. Empty after the whole wait: nothing to do yet, so ask again at once.
/// Empty sooner, or no long polling at all: pause, so the worker never spins against a gateway
/// that does not (or no longer) hold polls.
pub(crate) fn pause_after_empty(wait: Duration, held: Duration) -> bool {
    wait.is_zero() || held < wait
}

/// What stopping asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stop {
    /// Keep going.
    Run,
    /// Poll no more; let running tasks finish within the grace period.
    Drain,
    /// Stop running tasks now and report them as failed.
    Abort,
}

/// A running worker's shared state.
#[derive(Debug)]
pub(crate) struct Worker {
    client: Client,
    config: WorkerConfig,
    running: AtomicU64,
    /// The heartbeat interval the gateway asked for, in milliseconds.
    heartbeat_ms: AtomicU64,
    /// Serializes re-registration, so the heartbeat and the poll loop don't both do it.
    registering: Mutex<()>,
    /// The attempts running here, by lease: what each heartbeat lists, and how to stop each
    /// when the gateway says its lease is no longer live.
    attempts: std::sync::Mutex<HashMap<String, (RunningAttempt, watch::Sender<bool>)>>,
}

impl Worker {
    pub(crate) fn new(client: Client, config: WorkerConfig) -> Arc<Self> {
        Arc::new(Self {
            client,
            config,
            running: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(5_000),
            registering: Mutex::new(()),
            attempts: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `stop` says [`Stop::Drain`] (then finishes running tasks within the grace
    /// period) or [`Stop::Abort`]. Returns an error only for what retrying cannot fix: the
    /// gateway refusing our token or our registration.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut stop: watch::Receiver<Stop>,
    ) -> anyhow::Result<()> {
        let id = &self.config.worker_id;
        tokio::select! {
            registered = self.register() => registered?,
            () = until(&mut stop, Stop::Drain) => return Ok(()),
        }
        tracing::info!(worker_id = %id, gateway = %self.client.base_url(), max_parallel = self.config.max_parallel, "worker registered");

        let (hb_stop_tx, hb_stop) = watch::channel(false);
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(hb_stop));
        let (abort_tx, abort) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let polled = self.clone().poll_loop(&mut stop, &mut tasks, abort).await;

        // Drain: running tasks keep their leases (heartbeats go on) until they finish, the
        // grace period passes, or a second signal asks to abort. Tasks that already finished
        // are reaped first, so the count logged is of those still running.
        while tasks.try_join_next().is_some() {}
        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), grace = ?self.config.shutdown_grace, "draining running tasks");
            let grace = tokio::time::sleep(self.config.shutdown_grace);
            tokio::pin!(grace);
            let mut aborting = *stop.borrow() == Stop::Abort;
            loop {
                if aborting {
                    let _ = abort_tx.send(true);
                }
                tokio::select! {
                    next = tasks.join_next() => if next.is_none() { break },
                    () = &mut grace, if !aborting => {
                        tracing::warn!(running = tasks.len(), "shutdown grace passed; stopping running tasks");
                        aborting = true;
                    }
                    () = until(&mut stop, Stop::Abort), if !aborting => aborting = true,
                }
            }
        }
        let _ = hb_stop_tx.send(true);
        let _ = heartbeat.await;
        tracing::info!(worker_id = %id, "worker stopped");
        polled
    }

    /// Registers, retrying while the gateway cannot be reached.
    async fn register(&self) -> anyhow::Result<()> {
        let registration = Registration {
            worker_id: self.config.worker_id.clone(),
            capabilities: self.config.capabilities.clone(),
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.client.register_worker(&registration).await {
                Ok(registered) => {
                    let ms = registered
                        .heartbeat_interval_seconds
                        .max(1)
                        .saturating_mul(1_000);
                    self.heartbeat_ms.store(ms, Ordering::Relaxed);
                    return Ok(());
                }
                Err(err) if err.is_transient() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in = ?delay, "cannot register yet");
                    tokio::time::sleep(delay).await;
                }
                // A refusal, or a TLS failure (an untrusted certificate): waiting changes neither.
                Err(err) => bail!("cannot register worker {}: {err}", self.config.worker_id),
            }
        }
    }

    /// Registers again after the gateway said it does not know us (it lost its state, or
    /// forgot an idle worker). Concurrent callers register once.
    async fn reregister(&self, seen_by: &str) -> anyhow::Result<()> {
        let Ok(_guard) = self.registering.try_lock() else {
            // Someone else is registering; wait for them to finish.
            let _ = self.registering.lock().await;
            return Ok(());
        };
        tracing::info!(worker_id = %self.config.worker_id, seen_by, "the gateway does not know this worker; registering again");
        self.register().await
    }

    async fn heartbeat_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let interval = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let running = self.running.load(Ordering::Relaxed);
            let stats = WorkerStats {
                queue_depth: Some(0),
                running_tasks: Some(running),
                health: Some("ok".to_owned()),
                ..WorkerStats::default()
            };
            let held: Vec<RunningAttempt> = self
                .attempts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .map(|(attempt, _)| attempt.clone())
                .collect();
            match self
                .client
                .heartbeat(&self.config.worker_id, &stats, &held)
                .await
            {
                Ok(ack) => {
                    tracing::debug!(running, leases_extended = ack.leases_extended, "heartbeat");
                    self.stop_attempts(&ack.stop_leases);
                }
                Err(Error::NotFound(_)) => {
                    let registered = tokio::select! {
                        registered = self.reregister("heartbeat") => registered,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    if let Err(err) = registered {
                        tracing::error!(error = %err, "cannot register again");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
            }
        }
    }

    /// Stops the attempts running under `leases` (the gateway says they are no longer live).
    fn stop_attempts(&self, leases: &[String]) {
        let attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        for lease in leases {
            if let Some((attempt, stop)) = attempts.get(lease) {
                tracing::info!(job_id = %attempt.job_id, task_id = %attempt.task_id, lease_id = %lease, "stopping the task: the gateway says its lease is no longer live (its job was canceled, or the attempt lapsed)");
                stop.send_replace(true);
            }
        }
    }

    /// Polls while `stop` says run; spawns each assignment onto `tasks`.
    async fn poll_loop(
        self: Arc<Self>,
        stop: &mut watch::Receiver<Stop>,
        tasks: &mut JoinSet<()>,
        abort: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.config.max_parallel));
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let wait_ms = u32::try_from(self.config.poll_wait.as_millis()).unwrap_or(u32::MAX);
        loop {
            // Reap finished tasks so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Ok(()),
                },
                () = until(stop, Stop::Drain) => return Ok(()),
            };
            let mut free = vec![first];
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                free.push(permit);
            }
            let asked = Instant::now();
            let polled = tokio::select! {
                polled = self.client.poll_wait(&self.config.worker_id, free.len() as u32, wait_ms) => polled,
                () = until(stop, Stop::Drain) => return Ok(()),
            };
            let pause = match polled {
                Ok(assignments) => {
                    backoff.reset();
                    let idle = assignments.is_empty();
                    for assignment in assignments {
                        let Some(permit) = free.pop() else {
                            // The gateway never hands out more than asked; if it did, the
                            // extra lease simply lapses and the task is retried elsewhere.
                            tracing::error!(task = %assignment.task_id, "more assignments than requested; leaving it to lapse");
                            continue;
                        };
                        let worker = self.clone();
                        let abort = abort.clone();
                        self.running.fetch_add(1, Ordering::Relaxed);
                        tasks.spawn(async move {
                            worker.execute(assignment, abort).await;
                            worker.running.fetch_sub(1, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                    (idle && pause_after_empty(self.config.poll_wait, asked.elapsed()))
                        .then_some(self.config.poll_interval)
                }
                Err(Error::NotFound(_)) => {
                    tokio::select! {
                        registered = self.reregister("poll") => registered?,
                        () = until(stop, Stop::Drain) => return Ok(()),
                    }
                    None
                }
                Err(err) if err.is_transient() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in = ?delay, "poll failed");
                    Some(delay)
                }
                Err(err) => bail!("the gateway refused to hand out tasks: {err}"),
            };
            drop(free);
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = until(stop, Stop::Drain) => return Ok(()),
                }
            }
        }
    }

    /// Runs one assignment and reports its outcome.
    async fn execute(&self, task: Assignment, abort: watch::Receiver<bool>) {
        let started = Instant::now();
        let executor = self.config.executors.for_type(&task.task_type);
        let timeout = task
            .timeout_sec
            .map_or(self.config.default_task_timeout, |s| {
                Duration::from_secs(u64::from(s))
            });
        tracing::info!(job_id = %task.job_id, task_id = %task.task_id, attempt = task.attempt, r#type = %task.task_type, "task started");
        let (stop_tx, stop) = watch::channel(false);
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                task.lease_id.clone(),
                (
                    RunningAttempt {
                        job_id: task.job_id.clone(),
                        task_id: task.task_id.clone(),
                        lease_id: task.lease_id.clone(),
                    },
                    stop_tx,
                ),
            );
        let ctx = RunContext {
            output_dir: self.config.output_dir.clone(),
            timeout,
            abort: abort.clone(),
            stop: stop.clone(),
        };
        let outcome = executor.run(&task, ctx).await;
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&task.lease_id);
        if *stop.borrow() {
            // Nothing it reports under this lease would be accepted.
            tracing::info!(job_id = %task.job_id, task_id = %task.task_id, attempt = task.attempt, "task stopped; nothing reported");
            return;
        }
        let duration_millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, output_artifact_uri, error) = match outcome {
            Outcome::Completed { output_uri } => (ReportStatus::Completed, Some(output_uri), None),
            Outcome::Failed { error } => (ReportStatus::Failed, None, Some(error)),
        };
        tracing::info!(job_id = %task.job_id, task_id = %task.task_id, attempt = task.attempt, ?status, duration_millis, error = error.as_deref().unwrap_or(""), "task finished");
        let report = TaskReport {
            worker_id: self.config.worker_id.clone(),
            job_id: task.job_id,
            task_id: task.task_id,
            lease_id: task.lease_id,
            // One key per attempt: a resent report is recognised, a new attempt never is.
            idempotency_key: Some(format!("rep-{}", uuid::Uuid::new_v4())),
            status,
            output_artifact_uri,
            error,
            duration_millis: Some(duration_millis),
        };
        self.report(&report, abort).await;
    }

    /// Sends a report, retrying transient failures with capped exponential backoff for up to
    /// `report_retry`, or until `abort` (a shutdown that must not wait any longer). The
    /// idempotency key makes a resend that the gateway already applied harmless.
    async fn report(&self, report: &TaskReport, mut abort: watch::Receiver<bool>) {
        let deadline = Instant::now() + self.config.report_retry;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let task = format!("{}/{}", report.job_id, report.task_id);
        loop {
            match self.client.report(report).await {
                Ok(_) => return,
                Err(err) if err.is_transient() && Instant::now() < deadline => {
                    let delay = backoff
                        .next_delay()
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tracing::warn!(task, error = %err, retry_in = ?delay, "report failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = abort.wait_for(|a| *a) => {
                            tracing::error!(task, "shutting down: report not delivered; the lease will lapse and the task be retried");
                            return;
                        }
                    }
                }
                // The lease lapsed and the task moved on (retried, maybe run elsewhere): the
                // gateway has already counted this attempt.
                Err(Error::Conflict(msg)) => {
                    tracing::warn!(task, reason = %msg, "report rejected: this attempt's lease is no longer current");
                    return;
                }
                Err(err) => {
                    tracing::error!(task, error = %err, "report not delivered; the lease will lapse and the task be retried");
                    return;
                }
            }
        }
    }
}

/// Resolves once `stop` reaches `level` (or its sender is gone, which means stop).
async fn until(stop: &mut watch::Receiver<Stop>, level: Stop) {
    let _ = stop.wait_for(|s| *s >= level).await;
}
