//! The worker loop against a real gateway (daef-http over the memory adapters on a loopback
//! port) that the tests can stop, restart with its state, or replace with an empty one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daef_auth::Authenticator;
use daef_client::model::{JobInfo, JobSubmission, TaskFilter, TaskInfo, TaskSubmission};
use daef_client::{Client, ClientConfig};
use daef_core::model::{JobId, JobStatus, TaskStatus, WorkerCapabilities};
use daef_core::{Engine, EngineConfig};
use daef_http::{App, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::executor::{CommandSpec, Executors};
use crate::worker::{Stop, Worker, WorkerConfig, pause_after_empty};

/// A gateway on a fixed loopback port.
struct Gateway {
    app: Arc<App>,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

fn fresh_app() -> Arc<App> {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::retrying_at_once(),
    );
    let auth = Authenticator::from_env_value(None).expect("auth off");
    Arc::new(App::new(
        engine,
        auth,
        Arc::new(MemoryRateLimiter::new()),
        HttpConfig::default(),
    ))
}

impl Gateway {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut gw = Self {
            app: fresh_app(),
            port,
            stop: None,
            server: None,
        };
        gw.serve(listener);
        gw
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.server = Some(tokio::spawn(daef_http::serve(
            listener,
            self.app.clone(),
            async {
                let _ = stopped.await;
            },
        )));
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            base_url: self.url(),
            timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        })
        .expect("client")
    }

    /// Stops serving (the state is kept).
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Serves again on the same port, with `app`.
    async fn restart_with(&mut self, app: Arc<App>) {
        self.stop().await;
        self.app = app;
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An output directory removed at the end of the test.
struct OutDir(PathBuf);

impl OutDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("daef-worker-loop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("output dir");
        Self(dir)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(id: &str, out: &OutDir, commands: &[(&str, &str)]) -> WorkerConfig {
    WorkerConfig {
        worker_id: id.to_owned(),
        capabilities: WorkerCapabilities::default(),
        max_parallel: 4,
        poll_wait: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        output_dir: out.0.clone(),
        default_task_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(30),
        report_retry: Duration::from_secs(30),
        executors: Executors {
            commands: commands
                .iter()
                .map(|(t, c)| ((*t).to_owned(), CommandSpec::parse(c).expect("command")))
                .collect::<BTreeMap<_, _>>(),
            echo_by_default: true,
        },
    }
}

/// A worker running in the background, and the handle that stops it.
struct Running {
    stop: watch::Sender<Stop>,
    handle: JoinHandle<anyhow::Result<()>>,
}

fn spawn(gw: &Gateway, config: WorkerConfig) -> Running {
    let (stop, rx) = watch::channel(Stop::Run);
    let handle = tokio::spawn(Worker::new(gw.client(), config).run(rx));
    Running { stop, handle }
}

impl Running {
    async fn stop(self, level: Stop) -> anyhow::Result<()> {
        let _ = self.stop.send(level);
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("worker stops")
            .expect("no panic")
    }

    /// Drains, and asserts the worker was gone within `limit` (no held poll or lease waited out).
    async fn drain_within(self, limit: Duration) {
        let started = Instant::now();
        self.stop(Stop::Drain).await.unwrap();
        assert!(
            started.elapsed() < limit,
            "stopped after {:?}",
            started.elapsed()
        );
    }
}

async fn wait_for_job(c: &Client, job: &JobId, done: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(info) = c.job(job).await {
            if done(&info) {
                return info;
            }
            assert!(Instant::now() < deadline, "job never got there: {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_task(c: &Client, job: &JobId, done: impl Fn(&TaskInfo) -> bool) -> TaskInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = c
            .tasks(job, &TaskFilter::default())
            .await
            .expect("tasks")
            .tasks;
        if let Some(task) = tasks.into_iter().find(&done) {
            return task;
        }
        assert!(Instant::now() < deadline, "no task got there");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn one_task(task_type: &str, max_retries: u32) -> JobSubmission {
    JobSubmission {
        job_type: "test".into(),
        tasks: Some(vec![TaskSubmission {
            task_id: "only".into(),
            task_type: task_type.into(),
            inputs: BTreeMap::from([("say".into(), "hi".into())]),
            max_retries: Some(max_retries),
            ..TaskSubmission::default()
        }]),
        ..JobSubmission::default()
    }
}

fn read_uri(uri: &str) -> String {
    std::fs::read_to_string(uri.strip_prefix("file://").expect("file URI")).expect("output file")
}

#[tokio::test]
async fn runs_an_analysis_job_with_echo() {
    let gw = Gateway::start().await;
    let out = OutDir::new("analyze");
    let c = gw.client();
    let worker = spawn(&gw, config("w-echo", &out, &[]));
    let job = c
        .submit_job(&JobSubmission::new("chat", "Analyze the tickets"))
        .await
        .unwrap()
        .job_id;
    let done = wait_for_job(&c, &job, |j| j.status.is_terminal()).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let result = done.result_artifact_uri.expect("result");
    assert!(result.ends_with("/t3-summarize.1.json"), "{result}");
    assert_eq!(read_uri(&result), r#"{"op":"summarize"}"#);
    let tasks = c.tasks(&job, &TaskFilter::default()).await.unwrap().tasks;
    assert!(
        tasks
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.worker_id.as_deref() == Some("w-echo"))
    );
    worker.stop(Stop::Drain).await.unwrap();
}

#[tokio::test]
async fn an_idle_worker_long_polls_and_starts_new_work_at_once() {
    let gw = Gateway::start().await;
    let out = OutDir::new("long-poll");
    let c = gw.client();
    // A pause far longer than the test: only a held poll, woken by the submit, is quick enough.
    let mut cfg = config("w-long", &out, &[]);
    cfg.poll_wait = Duration::from_secs(20);
    cfg.poll_interval = Duration::from_secs(60);
    let worker = spawn(&gw, cfg);
    // Long enough for the first poll to come back empty at once if it were not held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = Instant::now();
    let job = c.submit_job(&one_task("echo", 0)).await.unwrap().job_id;
    let done = wait_for_job(&c, &job, |j| j.status.is_terminal()).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert!(
        submitted.elapsed() < Duration::from_secs(10),
        "took {:?}: the worker was not waiting at the gateway",
        submitted.elapsed()
    );
    // Draining ends the held poll at once, not after its 20 s.
    worker.drain_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_drained_workers_abandoned_long_poll_takes_no_work() {
    let gw = Gateway::start().await;
    let out = OutDir::new("abandoned-poll");
    let c = gw.client();
    let mut cfg = config("w-gone", &out, &[]);
    cfg.poll_wait = Duration::from_secs(20);
    let worker = spawn(&gw, cfg);
    // The worker is waiting in a held poll when it drains and hangs up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.drain_within(Duration::from_secs(5)).await;
    let job = c.submit_job(&one_task("echo", 0)).await.unwrap().job_id;
    // Past several of the gateway's re-checks: a poll still held for the departed worker would
    // have taken the task, and its lapsing lease would cost the only attempt (DESIGN.md §2.5).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tasks = c.tasks(&job, &TaskFilter::default()).await.unwrap().tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status, TaskStatus::Queued, "{:?}", tasks[0]);
    assert_eq!(tasks[0].attempt, 0, "{:?}", tasks[0]);
}

#[test]
fn an_empty_poll_pauses_unless_it_was_held_its_whole_wait() {
    let ms = Duration::from_millis;
    // Held the whole wait: ask again at once.
    assert!(!pause_after_empty(ms(20_000), ms(20_000)));
    assert!(!pause_after_empty(ms(20_000), ms(20_150)));
    // Answered early (a gateway shutting down, or one that ignores wait_ms): pause.
    assert!(pause_after_empty(ms(20_000), ms(3)));
    // No long polling: always pause, however slow the round trip.
    assert!(pause_after_empty(ms(0), ms(0)));
    assert!(pause_after_empty(ms(0), ms(250)));
}

#[tokio::test]
async fn parallelism_is_bounded() {
    let gw = Gateway::start().await;
    let out = OutDir::new("parallel");
    let c = gw.client();
    let tasks = (0..4)
        .map(|i| TaskSubmission {
            task_id: format!("s{i}"),
            task_type: "slow".into(),
            ..TaskSubmission::default()
        })
        .collect();
    let job = JobSubmission {
        job_type: "fan".into(),
        tasks: Some(tasks),
        ..JobSubmission::default()
    };

    // Four 600 ms tasks on two slots cannot finish in under 1.2 s …
    let mut two = config("w-two", &out, &[("slow", "sleep 0.6")]);
    two.max_parallel = 2;
    let worker = spawn(&gw, two);
    let started = Instant::now();
    let id = c.submit_job(&job).await.unwrap().job_id;
    assert_eq!(
        wait_for_job(&c, &id, |j| j.status.is_terminal())
            .await
            .status,
        JobStatus::Completed
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    worker.stop(Stop::Drain).await.unwrap();

    // … and on four slots they run side by side.
    let worker = spawn(&gw, config("w-four", &out, &[("slow", "sleep 0.6")]));
    let started = Instant::now();
    let id = c.submit_job(&job).await.unwrap().job_id;
    assert_eq!(
        wait_for_job(&c, &id, |j| j.status.is_terminal())
            .await
            .status,
        JobStatus::Completed
    );
    assert!(
        started.elapsed() < Duration::from_millis(2_200),
        "{:?}",
        started.elapsed()
    );
    worker.stop(Stop::Drain).await.unwrap();
}

#[tokio::test]
async fn a_failing_command_reports_its_stderr_until_the_task_is_dead() {
    let gw = Gateway::start().await;
    let out = OutDir::new("fail");
    let c = gw.client();
    let script = out.0.join("fail.sh");
    std::fs::write(&script, "#!/bin/sh\necho no database >&2\nexit 7\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let worker = spawn(
        &gw,
        config("w-fail", &out, &[("flaky", script.to_str().unwrap())]),
    );
    let job = c.submit_job(&one_task("flaky", 1)).await.unwrap().job_id;
    let done = wait_for_job(&c, &job, |j| j.status.is_terminal()).await;
    assert_eq!(done.status, JobStatus::Failed);
    let task = &c.tasks(&job, &TaskFilter::default()).await.unwrap().tasks[0];
    assert_eq!((task.status, task.attempt), (TaskStatus::Failed, 2));
    let dead = c.dead_letters(None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].error,
        format!(
            "{} exited with exit status: 7; stderr: no database",
            script.display()
        )
    );
    worker.stop(Stop::Drain).await.unwrap();
}

#[tokio::test]
async fn registers_again_when_the_gateway_forgets_it() {
    let mut gw = Gateway::start().await;
    let out = OutDir::new("forget");
    let worker = spawn(&gw, config("w-forget", &out, &[]));
    let c = gw.client();
    let first = c
        .submit_job(&JobSubmission::new("chat", "hello"))
        .await
        .unwrap()
        .job_id;
    wait_for_job(&c, &first, |j| j.status == JobStatus::Completed).await;

    // A gateway with empty state on the same address: the worker's next poll is a 404.
    gw.restart_with(fresh_app()).await;
    let c = gw.client();
    let second = c
        .submit_job(&JobSubmission::new("chat", "hello again"))
        .await
        .unwrap()
        .job_id;
    let done = wait_for_job(&c, &second, |j| j.status.is_terminal()).await;
    assert_eq!(done.status, JobStatus::Completed);
    worker.stop(Stop::Drain).await.unwrap();
}

#[tokio::test]
async fn a_report_is_retried_until_the_gateway_is_back() {
    let mut gw = Gateway::start().await;
    let out = OutDir::new("retry");
    let c = gw.client();
    let worker = spawn(&gw, config("w-retry", &out, &[("slow", "sleep 1")]));
    let job = c.submit_job(&one_task("slow", 0)).await.unwrap().job_id;
    wait_for_task(&c, &job, |t| t.status == TaskStatus::Running).await;

    // The gateway is away while the task finishes, and comes back with its state.
    gw.stop().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let app = gw.app.clone();
    gw.restart_with(app).await;
    let done = wait_for_job(&c, &job, |j| j.status.is_terminal()).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let task = &c.tasks(&job, &TaskFilter::default()).await.unwrap().tasks[0];
    assert_eq!(
        task.attempt, 1,
        "one attempt: the report arrived late, not a retry"
    );
    worker.stop(Stop::Drain).await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_running_tasks_finish() {
    let gw = Gateway::start().await;
    let out = OutDir::new("drain");
    let c = gw.client();
    let worker = spawn(&gw, config("w-drain", &out, &[("slow", "sleep 1")]));
    let job = c.submit_job(&one_task("slow", 0)).await.unwrap().job_id;
    wait_for_task(&c, &job, |t| t.status == TaskStatus::Running).await;
    // Stop at once: the running task still finishes and is reported before the worker exits.
    worker.stop(Stop::Drain).await.unwrap();
    assert_eq!(c.job(&job).await.unwrap().status, JobStatus::Completed);
    // Nothing is polled after the signal.
    let later = c
        .submit_job(&JobSubmission::new("chat", "after the signal"))
        .await
        .unwrap()
        .job_id;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.job(&later).await.unwrap().status, JobStatus::Queued);
}

#[tokio::test]
async fn past_the_grace_period_running_tasks_are_stopped_and_reported() {
    let gw = Gateway::start().await;
    let out = OutDir::new("abort");
    let c = gw.client();
    let mut cfg = config("w-abort", &out, &[("slow", "sleep 30")]);
    cfg.shutdown_grace = Duration::from_millis(200);
    let worker = spawn(&gw, cfg);
    let job = c.submit_job(&one_task("slow", 2)).await.unwrap().job_id;
    wait_for_task(&c, &job, |t| t.status == TaskStatus::Running).await;
    worker.drain_within(Duration::from_secs(5)).await;
    // Reported failed at once, so the task is queued for its next attempt (no lease to wait out).
    let task = &c.tasks(&job, &TaskFilter::default()).await.unwrap().tasks[0];
    assert_eq!(
        (task.status, task.attempt),
        (TaskStatus::Queued, 1),
        "{task:?}"
    );
    assert_eq!(
        task.error.as_deref(),
        Some("sleep stopped: the worker is shutting down")
    );
}
