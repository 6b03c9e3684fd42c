//! `GET /v1/jobs/{id}/events`: a job's status changes and its tasks', as Server-Sent Events.
//!
//! The stream (`text/event-stream`) carries:
//! - `event: task`, `data:` the task as `GET /v1/jobs/{id}/tasks` shows it — every task when the
//!   stream opens, then each time a task's status, attempt, worker, error or output changes;
//! - `event: job`, `data:` the job as `GET /v1/jobs/{id}` shows it — when the stream opens, then
//!   each time its status, message or result changes;
//! - `event: end`, `data:` the job once more, when it is `Completed`, `Failed` or `Canceled`;
//!   the stream then closes;
//! - `: keep-alive` comments after a quiet spell.
//!
//! Changes are found by reading the job and its tasks from the store every poll interval and
//! comparing with what was sent, so a stream served by one replica sees changes made through
//! any other. A reconnecting client gets the current state again (there is no replay).
//! Tenant rules are those of `GET /v1/jobs/{id}`, checked before the stream opens.

use daef_api as api;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use daef_core::Engine;
use daef_core::model::{Job, JobId, JobStatus, Task, TaskStatus};
use daef_core::ports::TaskQuery;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::access::visible_job;
use crate::app::App;
use crate::config::EventStreamConfig;
use crate::ctx::Ctx;
use crate::error::ApiResult;
use crate::response::{self, Body};

/// Events a slow reader may fall behind by before the stream waits for it.
const BUFFER: usize = 64;

pub(super) async fn events(app: &App, ctx: &Ctx, id: &JobId) -> ApiResult<Response<Body>> {
    // 404 and 403 are answered as for the job itself, before a byte of the stream is sent.
    let job = visible_job(app, ctx, id).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let watcher = Watcher {
        engine: app.engine.clone(),
        config: app.events,
        closing: app.closing.subscribe(),
        tx,
        sent_at: Instant::now(),
        tasks: HashMap::new(),
        job: None,
        failing: false,
    };
    tokio::spawn(watcher.run(job));
    let mut response = response::ok_stream(ChannelBody { rx }.boxed(), "text/event-stream");
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering reverse proxies (nginx) to pass events through as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// What a task event is sent for: a change in any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskKey {
    status: TaskStatus,
    attempt: u32,
    worker_id: Option<String>,
    error: Option<String>,
    output: Option<String>,
}

impl From<&Task> for TaskKey {
    fn from(t: &Task) -> Self {
        Self {
            status: t.status,
            attempt: t.attempt,
            worker_id: t.worker_id.clone(),
            error: t.error.clone(),
            output: t.output_artifact_uri.clone(),
        }
    }
}

/// What a job event is sent for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobKey {
    status: JobStatus,
    message: Option<String>,
    result: Option<String>,
}

impl From<&Job> for JobKey {
    fn from(j: &Job) -> Self {
        Self {
            status: j.status,
            message: j.message.clone(),
            result: j.result_artifact_uri.clone(),
        }
    }
}

/// The client went away, or the server is closing: stop.
struct Gone;

/// One open stream: reads the store, sends what changed.
struct Watcher {
    engine: Engine,
    config: EventStreamConfig,
    closing: watch::Receiver<bool>,
    tx: mpsc::Sender<Bytes>,
    sent_at: Instant,
    tasks: HashMap<String, TaskKey>,
    job: Option<JobKey>,
    /// Whether the last read failed (so an outage is logged once, not every poll).
    failing: bool,
}

impl Watcher {
    async fn run(mut self, first: Job) {
        let _ = self.watch(first).await;
    }

    async fn watch(&mut self, first: Job) -> Result<(), Gone> {
        let mut job = first;
        loop {
            // The job is read before its tasks: a task's last change is stored no later than
            // the job change it causes, so once the job is seen terminal the tasks read after
            // it are final too, and the `end` event comes after every task event.
            self.send_task_changes(&job.job_id).await?;
            if self.job.as_ref() != Some(&JobKey::from(&job)) {
                self.job = Some(JobKey::from(&job));
                self.send("job", &api::JobInfo::from(&job)).await?;
            }
            if job.status.is_terminal() {
                return self.send("end", &api::JobInfo::from(&job)).await;
            }
            self.pause().await?;
            match self.engine.job(&job.job_id).await {
                Ok(fresh) => {
                    self.recovered();
                    job = fresh;
                }
                Err(err) => self.failed(&job.job_id, &err),
            }
        }
    }

    async fn send_task_changes(&mut self, job_id: &JobId) -> Result<(), Gone> {
        let query = TaskQuery {
            limit: None,
            ..TaskQuery::default()
        };
        let tasks = match self.engine.tasks(job_id, &query).await {
            Ok(page) => {
                self.recovered();
                page.items
            }
            Err(err) => {
                self.failed(job_id, &err);
                return Ok(());
            }
        };
        for task in &tasks {
            let key = TaskKey::from(task);
            if self.tasks.get(&task.task_id) != Some(&key) {
                self.send("task", &api::TaskInfo::from(task)).await?;
                self.tasks.insert(task.task_id.clone(), key);
            }
        }
        Ok(())
    }

    /// Waits one poll interval, sending a keep-alive comment when the stream has been quiet
    /// for long enough; returns early when the client leaves or the server closes.
    async fn pause(&mut self) -> Result<(), Gone> {
        tokio::select! {
            () = tokio::time::sleep(self.config.poll_interval) => {}
            () = self.tx.closed() => return Err(Gone),
            _ = self.closing.wait_for(|closing| *closing) => return Err(Gone),
        }
        if self.sent_at.elapsed() >= self.config.keep_alive {
            self.write(Bytes::from_static(b": keep-alive\n\n")).await?;
        }
        Ok(())
    }

    async fn send<T: Serialize>(&mut self, event: &str, data: &T) -> Result<(), Gone> {
        match serde_json::to_string(data) {
            Ok(json) => {
                self.write(Bytes::from(format!("event: {event}\ndata: {json}\n\n")))
                    .await
            }
            Err(err) => {
                tracing::error!(event, error = %err, "could not serialize an event");
                Ok(())
            }
        }
    }

    async fn write(&mut self, frame: Bytes) -> Result<(), Gone> {
        self.tx.send(frame).await.map_err(|_| Gone)?;
        self.sent_at = Instant::now();
        Ok(())
    }

    fn failed(&mut self, job_id: &JobId, err: &daef_core::Error) {
        if !self.failing {
            tracing::warn!(job_id = %job_id, error = %err, "event stream: cannot read the job; retrying");
            self.failing = true;
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!("event stream: reading the job again");
            self.failing = false;
        }
    }
}

/// A response body whose frames arrive through a channel; it ends when the sender is dropped.
#[derive(Debug)]
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}
