//! Progress on stderr for long commands ([`Progress`]: a bar on a terminal, lines above it or
//! on their own), and `submit --wait`, which follows a job until it ends with a bar of its tasks
//! (one line per task change otherwise). Nothing is drawn with `--json`.
//!
//! It reads the job's event stream (`GET /v1/jobs/{id}/events`), reconnecting when the stream
//! breaks (a new stream starts with the current state, so nothing is lost), and falls back to
//! reading the tasks every half second from a gateway that has no event stream.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use daef_client::model::{JobInfo, TaskFilter, TaskInfo};
use daef_client::{Error, JobEvent};
use daef_core::model::{JobId, TaskStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Ctx;

/// How often the job is read when there is no event stream.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Pause before opening a new stream after one broke.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Follows `job_id` until it is terminal; `None` when `timeout` passed first. Transient
/// failures (the gateway restarting) are shown and waited out.
pub(crate) async fn follow(
    ctx: &Ctx,
    job_id: &JobId,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<JobInfo>> {
    let mut view = View::new(ctx.json);
    let watched = match timeout {
        Some(limit) => match tokio::time::timeout(limit, watch(ctx, job_id, &mut view)).await {
            Ok(watched) => watched.map(Some),
            Err(_) => Ok(None),
        },
        None => watch(ctx, job_id, &mut view).await.map(Some),
    };
    match &watched {
        Ok(Some(job)) => view.finish(job),
        _ => view.abandon(),
    }
    Ok(watched?)
}

async fn watch(ctx: &Ctx, job_id: &JobId, view: &mut View) -> Result<JobInfo, Error> {
    loop {
        let mut events = match ctx.client.job_events(job_id).await {
            Ok(events) => events,
            // An older gateway: the route does not exist.
            Err(Error::NotFound(msg)) if msg == "not found" => {
                return poll(ctx, job_id, view).await;
            }
            Err(Error::MethodNotAllowed(_)) => return poll(ctx, job_id, view).await,
            Err(err) if err.is_transient() => {
                view.note(&format!("gateway not answering ({err}); still waiting"));
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        loop {
            match events.next().await {
                Ok(Some(JobEvent::Task(task))) => view.task(&task.task_id, Seen::from(&task)),
                Ok(Some(JobEvent::End(job))) => return Ok(job),
                Ok(Some(JobEvent::Job(_) | JobEvent::Other { .. })) => {}
                Ok(None) => {
                    view.note("the gateway closed the event stream; reconnecting");
                    break;
                }
                Err(err) if err.is_transient() => {
                    view.note(&format!("event stream interrupted ({err}); reconnecting"));
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Follows the job by reading it and its tasks every [`POLL_EVERY`].
async fn poll(ctx: &Ctx, job_id: &JobId, view: &mut View) -> Result<JobInfo, Error> {
    loop {
        match snapshot(ctx, job_id).await {
            Ok((job, tasks)) => {
                view.tasks(&tasks);
                if job.status.is_terminal() {
                    return Ok(job);
                }
            }
            Err(err) if err.is_transient() => {
                view.note(&format!("gateway not answering ({err}); still waiting"))
            }
            Err(err) => return Err(err),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn snapshot(ctx: &Ctx, job_id: &JobId) -> daef_client::Result<(JobInfo, Vec<TaskInfo>)> {
    // The job before its tasks: once the job is seen terminal, the tasks read after it are final.
    let job = ctx.client.job(job_id).await?;
    let tasks = ctx
        .client
        .tasks(job_id, &TaskFilter::default())
        .await?
        .tasks;
    Ok((job, tasks))
}

/// What we last showed of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) status: TaskStatus,
    pub(crate) attempt: u32,
    pub(crate) worker: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) output: Option<String>,
}

impl From<&TaskInfo> for Seen {
    fn from(t: &TaskInfo) -> Self {
        Self {
            status: t.status,
            attempt: t.attempt,
            worker: t.worker_id.clone(),
            error: t.error.clone(),
            output: t.output_artifact_uri.clone(),
        }
    }
}

/// Describes a change of one task, or `None` when nothing worth a line changed.
pub(crate) fn describe(task_id: &str, before: Option<&Seen>, now: &Seen) -> Option<String> {
    if before.is_some_and(|b| b.status == now.status && b.attempt == now.attempt) {
        return None;
    }
    let from = before.map_or_else(|| "new".to_owned(), |b| b.status.to_string());
    let detail = match now.status {
        TaskStatus::Running => format!(
            "attempt {} on {}",
            now.attempt,
            now.worker.as_deref().unwrap_or("?")
        ),
        TaskStatus::Completed => now.output.clone().unwrap_or_default(),
        TaskStatus::Queued if now.attempt > 0 => {
            format!(
                "attempt {} failed: {}",
                now.attempt,
                crate::output::short(now.error.as_deref().unwrap_or("?"), 120)
            )
        }
        TaskStatus::Failed => {
            format!(
                "attempt {}, dead-lettered: {}",
                now.attempt,
                crate::output::short(now.error.as_deref().unwrap_or("?"), 120)
            )
        }
        TaskStatus::Queued | TaskStatus::Canceled => String::new(),
    };
    let head = format!("{task_id}: {from} → {}", now.status);
    Some(if detail.is_empty() {
        head
    } else {
        format!("{head} ({detail})")
    })
}

/// A progress bar on stderr when it is a terminal, with lines printed above it; elsewhere only
/// the lines, so a log or a pipe gets a record instead of redraws. Quiet (`--json`) draws
/// nothing but warnings.
#[derive(Debug)]
pub(crate) struct Progress {
    quiet: bool,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// `template` is an indicatif template for the bar (`{pos}`, `{len}`, `{msg}`, …).
    pub(crate) fn new(quiet: bool, template: &str) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            quiet,
            bar,
            started: Instant::now(),
        }
    }

    /// Redraws the bar: `position` of `length` done, and a message beside it.
    pub(crate) fn show(&self, position: u64, length: u64, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_length(length);
            bar.set_position(position);
            bar.set_message(message);
        }
    }

    /// A line above the bar (or on its own), stamped with the seconds since the start.
    pub(crate) fn line(&self, text: &str) {
        if !self.quiet {
            self.print(text);
        }
    }

    /// A line shown even when quiet: something the user would otherwise wonder about, such as
    /// a pause.
    pub(crate) fn warn(&self, text: &str) {
        self.print(text);
    }

    fn print(&self, text: &str) {
        let stamped = format!("{:>6.1}s  {text}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(bar) => bar.println(stamped),
            None => eprintln!("{stamped}"),
        }
    }

    /// Done: the bar is cleared (the lines stay).
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Stops drawing without a verdict, leaving the bar as it was.
    pub(crate) fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

/// A job's tasks: the bar counts completed tasks, a line per task change.
#[derive(Debug)]
pub(crate) struct View {
    progress: Progress,
    seen: BTreeMap<String, Seen>,
}

impl View {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            progress: Progress::new(
                quiet,
                "{spinner} [{bar:30}] {pos}/{len} tasks completed · {msg} · {elapsed}",
            ),
            seen: BTreeMap::new(),
        }
    }

    /// Takes the current state of every task.
    pub(crate) fn tasks(&mut self, tasks: &[TaskInfo]) {
        for task in tasks {
            self.task(&task.task_id, Seen::from(task));
        }
    }

    /// Takes the current state of one task.
    pub(crate) fn task(&mut self, task_id: &str, now: Seen) {
        if let Some(line) = describe(task_id, self.seen.get(task_id), &now) {
            self.progress.line(&line);
        }
        self.seen.insert(task_id.to_owned(), now);
        self.redraw();
    }

    fn redraw(&self) {
        let count = |s: TaskStatus| self.seen.values().filter(|t| t.status == s).count();
        let mut parts = vec![
            format!("{} running", count(TaskStatus::Running)),
            format!("{} queued", count(TaskStatus::Queued)),
        ];
        for (status, word) in [
            (TaskStatus::Failed, "failed"),
            (TaskStatus::Canceled, "canceled"),
        ] {
            if count(status) > 0 {
                parts.push(format!("{} {word}", count(status)));
            }
        }
        self.progress.show(
            count(TaskStatus::Completed) as u64,
            self.seen.len() as u64,
            parts.join(" · "),
        );
    }

    /// A remark that is not a task change.
    pub(crate) fn note(&self, text: &str) {
        self.progress.line(text);
    }

    /// The job ended: a last line, and the bar is cleared.
    pub(crate) fn finish(&mut self, job: &JobInfo) {
        self.progress.line(&format!("job {}", job.status));
        self.progress.finish();
    }

    /// Stops drawing without a verdict.
    pub(crate) fn abandon(&mut self) {
        self.progress.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: TaskStatus, attempt: u32) -> Seen {
        Seen {
            status,
            attempt,
            worker: Some("w-1".into()),
            error: Some("exit 3".into()),
            output: Some("file:///o".into()),
        }
    }

    #[test]
    fn changes_are_described_once() {
        let q = seen(TaskStatus::Queued, 0);
        assert_eq!(
            describe("t1", None, &q).as_deref(),
            Some("t1: new → Queued")
        );
        assert_eq!(describe("t1", Some(&q), &q), None);
        let r = seen(TaskStatus::Running, 1);
        assert_eq!(
            describe("t1", Some(&q), &r).as_deref(),
            Some("t1: Queued → Running (attempt 1 on w-1)")
        );
        let retry = seen(TaskStatus::Queued, 1);
        assert_eq!(
            describe("t1", Some(&r), &retry).as_deref(),
            Some("t1: Running → Queued (attempt 1 failed: exit 3)")
        );
        // A retry that was picked up again between two looks still shows as a change.
        let r2 = seen(TaskStatus::Running, 2);
        assert_eq!(
            describe("t1", Some(&r), &r2).as_deref(),
            Some("t1: Running → Running (attempt 2 on w-1)")
        );
        let done = seen(TaskStatus::Completed, 2);
        assert_eq!(
            describe("t1", Some(&r2), &done).as_deref(),
            Some("t1: Running → Completed (file:///o)")
        );
        let dead = seen(TaskStatus::Failed, 3);
        assert_eq!(
            describe("t1", Some(&r2), &dead).as_deref(),
            Some("t1: Running → Failed (attempt 3, dead-lettered: exit 3)")
        );
    }
}
