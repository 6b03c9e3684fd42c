//! Running one task: the `echo` executor (output = inputs) and the `command` executor (a
//! configured program, inputs as JSON on stdin, stdout kept as the output artifact).
//!
//! Both write the output to `<output_dir>/<job_id>/<task_id>.<attempt>.<ext>` and report its
//! `file://` URI; one file per attempt, so a retry never overwrites what an earlier attempt left
//! for someone to inspect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use daef_client::model::Assignment;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How much of a failed program's stderr is reported (its tail: where the error usually is).
pub(crate) const STDERR_TAIL_BYTES: usize = 2048;

/// How long to wait for a killed program's stderr to close (a grandchild may still hold it).
const PIPE_DRAIN: Duration = Duration::from_secs(1);

/// A program and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandSpec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
}

impl CommandSpec {
    /// `PROGRAM [ARGS…]`, split at whitespace (no quoting: a program needing arguments with
    /// spaces goes behind a small wrapper script).
    pub(crate) fn parse(raw: &str) -> anyhow::Result<Self> {
        let mut words = raw.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .ok_or_else(|| anyhow::anyhow!("no program given"))?;
        Ok(Self {
            program,
            args: words.collect(),
        })
    }
}

/// What runs one task type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Executor {
    /// Output = the inputs as a JSON object.
    Echo,
    /// A program; see the module docs.
    Command(CommandSpec),
    /// This worker cannot run the type: the task fails with this reason.
    Refuse(String),
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Success, with the output's URI.
    Completed { output_uri: String },
    /// Failure, with the reason the gateway will show.
    Failed { error: String },
}

/// Everything an executor needs besides the assignment.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// Absolute directory outputs go under.
    pub(crate) output_dir: PathBuf,
    /// The attempt's run-time limit.
    pub(crate) timeout: Duration,
    /// Becomes true when the worker must stop the task now (shutdown grace passed).
    pub(crate) abort: watch::Receiver<bool>,
    /// Becomes true when the gateway says the attempt's lease is no longer live (its job was
    /// canceled, or the attempt lapsed or was taken over): stop it, nothing will be reported.
    pub(crate) stop: watch::Receiver<bool>,
}

impl Executor {
    /// Runs `task` to an outcome. Never panics on the task's account: every failure of the
    /// task or its program is an `Outcome::Failed`.
    pub(crate) async fn run(&self, task: &Assignment, ctx: RunContext) -> Outcome {
        match self {
            Executor::Echo => echo(task, &ctx).await,
            Executor::Command(spec) => command(spec, task, ctx).await,
            Executor::Refuse(reason) => Outcome::Failed {
                error: reason.clone(),
            },
        }
    }
}

/// The path of an attempt's output file, creating its job directory.
async fn output_path(task: &Assignment, ctx: &RunContext, ext: &str) -> std::io::Result<PathBuf> {
    // Job ids are `job-<uuid>` and task ids `[A-Za-z0-9._-]`, so neither can climb out of the
    // directory; an id of dots alone is the one exception, and is mapped away.
    let safe = |s: &str| {
        if s.chars().all(|c| c == '.') {
            s.replace('.', "_")
        } else {
            s.replace('/', "_")
        }
    };
    let dir = ctx.output_dir.join(safe(task.job_id.as_str()));
    tokio::fs::create_dir_all(&dir).await?;
    Ok(dir.join(format!("{}.{}.{ext}", safe(&task.task_id), task.attempt)))
}

async fn echo(task: &Assignment, ctx: &RunContext) -> Outcome {
    let run = async {
        let path = output_path(task, ctx, "json").await?;
        let body = serde_json::to_vec(&task.inputs).map_err(std::io::Error::other)?;
        tokio::fs::write(&path, body).await?;
        Ok::<_, std::io::Error>(path)
    };
    match run.await {
        Ok(path) => Outcome::Completed {
            output_uri: file_uri(&path),
        },
        Err(err) => Outcome::Failed {
            error: format!(
                "cannot write the output under {}: {err}",
                ctx.output_dir.display()
            ),
        },
    }
}

async fn command(spec: &CommandSpec, task: &Assignment, mut ctx: RunContext) -> Outcome {
    let path = match output_path(task, &ctx, "out").await {
        Ok(path) => path,
        Err(err) => {
            return Outcome::Failed {
                error: format!(
                    "cannot create the output under {}: {err}",
                    ctx.output_dir.display()
                ),
            };
        }
    };
    let stdout = match std::fs::File::create(&path) {
        Ok(file) => file,
        Err(err) => {
            return Outcome::Failed {
                error: format!("cannot create {}: {err}", path.display()),
            };
        }
    };
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .env("DAEF_JOB_ID", task.job_id.as_str())
        .env("DAEF_TASK_ID", &task.task_id)
        .env("DAEF_TASK_TYPE", &task.task_type)
        .env("DAEF_ATTEMPT", task.attempt.to_string())
        .env("DAEF_LEASE_ID", &task.lease_id)
        .kill_on_drop(true)
        // Its own process group: a timeout kills the program and everything it started, and a
        // Ctrl-C in the worker's terminal reaches the worker (which decides) but not the tasks.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            return Outcome::Failed {
                error: format!("cannot start {}: {err}", spec.program),
            };
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    // Feed stdin and read stderr alongside the wait, so a large input or a chatty program can
    // never deadlock against a full pipe.
    let input = serde_json::to_vec(&task.inputs).unwrap_or_else(|_| b"{}".to_vec());
    let mut stdin = child.stdin.take();
    let feeder = tokio::spawn(async move {
        if let Some(stdin) = stdin.as_mut() {
            // A program that does not read its input closes the pipe early; that is its right.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    });
    let mut stderr = child.stderr.take();
    let mut tail = tokio::spawn(async move {
        let mut tail = Tail::new(STDERR_TAIL_BYTES);
        if let Some(stderr) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.push(&buf[..n]);
            }
        }
        tail.into_string()
    });

    let timeout = ctx.timeout;
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        () = tokio::time::sleep(timeout) => Err(format!("timed out after {}s and was killed", timeout.as_secs_f64())),
        () = aborted(&mut ctx.abort) => Err("stopped: the worker is shutting down".to_owned()),
        () = aborted(&mut ctx.stop) => Err("stopped: its lease is no longer live (the job was canceled)".to_owned()),
    };
    if ended.is_err() {
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    feeder.abort();
    let stderr_tail = match tokio::time::timeout(PIPE_DRAIN, &mut tail).await {
        Ok(Ok(text)) => text,
        _ => {
            tail.abort();
            String::new()
        }
    };
    match ended {
        Ok(Ok(status)) if status.success() => Outcome::Completed {
            output_uri: file_uri(&path),
        },
        Ok(Ok(status)) => Outcome::Failed {
            error: with_tail(
                format!("{} exited with {status}", spec.program),
                &stderr_tail,
            ),
        },
        Ok(Err(err)) => Outcome::Failed {
            error: format!("waiting for {} failed: {err}", spec.program),
        },
        Err(reason) => Outcome::Failed {
            error: with_tail(format!("{} {reason}", spec.program), &stderr_tail),
        },
    }
}

/// Resolves once `abort` is true (never, if its sender is gone without setting it).
async fn aborted(abort: &mut watch::Receiver<bool>) {
    if abort.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn with_tail(head: String, tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        head
    } else {
        format!("{head}; stderr: {tail}")
    }
}

/// The last `cap` bytes of a stream.
#[derive(Debug)]
struct Tail {
    cap: usize,
    buf: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: Vec::new(),
            cut: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    /// The tail as text; `…` marks that the start was cut (a cut inside a UTF-8 sequence is
    /// replaced, not an error).
    fn into_string(self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        if self.cut {
            format!("…{}", text.trim_start_matches('\u{fffd}'))
        } else {
            text.into_owned()
        }
    }
}

/// `file://` plus the absolute path, with bytes outside the URI path alphabet percent-encoded.
pub(crate) fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which executor runs each task type.
#[derive(Debug, Clone)]
pub(crate) struct Executors {
    pub(crate) commands: BTreeMap<String, CommandSpec>,
    /// For types without a command: echo, or refuse.
    pub(crate) echo_by_default: bool,
}

impl Executors {
    /// The executor of `task_type`.
    pub(crate) fn for_type(&self, task_type: &str) -> Executor {
        match self.commands.get(task_type) {
            Some(spec) => Executor::Command(spec.clone()),
            None if self.echo_by_default => Executor::Echo,
            None => Executor::Refuse(format!(
                "this worker has no executor for task type {task_type:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daef_core::model::JobId;

    fn assignment(inputs: &[(&str, &str)]) -> Assignment {
        Assignment {
            job_id: JobId::new("job-1"),
            task_id: "t1-split".into(),
            task_type: "tool_execution".into(),
            inputs: inputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            attempt: 2,
            lease_id: "lease".into(),
            lease_expires: None,
            timeout_sec: None,
        }
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("daef-worker-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        fn ctx(&self, timeout: Duration) -> (RunContext, watch::Sender<bool>) {
            let (abort_tx, abort) = watch::channel(false);
            // A stop that never comes (its sender is gone): see `stop_kills_a_running_program`.
            let (_, stop) = watch::channel(false);
            (
                RunContext {
                    output_dir: self.0.clone(),
                    timeout,
                    abort,
                    stop,
                },
                abort_tx,
            )
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read_uri(uri: &str) -> String {
        let path = uri.strip_prefix("file://").expect("file URI");
        std::fs::read_to_string(path).expect("output file")
    }

    fn sh(script: &str) -> Executor {
        Executor::Command(CommandSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
        })
    }

    #[tokio::test]
    async fn echo_writes_the_inputs_as_json() {
        let dir = Dir::new("echo");
        let (ctx, _abort) = dir.ctx(Duration::from_secs(5));
        let out = Executor::Echo
            .run(&assignment(&[("op", "split"), ("text", "a \"b\"")]), ctx)
            .await;
        let Outcome::Completed { output_uri } = out else {
            panic!("{out:?}")
        };
        assert!(
            output_uri.ends_with("/job-1/t1-split.2.json"),
            "{output_uri}"
        );
        assert_eq!(read_uri(&output_uri), r#"{"op":"split","text":"a \"b\""}"#);
    }

    #[tokio::test]
    async fn a_command_gets_the_inputs_on_stdin_and_its_stdout_is_the_output() {
        let dir = Dir::new("cmd");
        let (ctx, _abort) = dir.ctx(Duration::from_secs(5));
        let exec = sh(
            r#"printf '%s|' "$DAEF_JOB_ID" "$DAEF_TASK_ID" "$DAEF_TASK_TYPE" "$DAEF_ATTEMPT"; cat"#,
        );
        let out = exec.run(&assignment(&[("k", "v")]), ctx).await;
        let Outcome::Completed { output_uri } = out else {
            panic!("{out:?}")
        };
        assert!(
            output_uri.ends_with("/job-1/t1-split.2.out"),
            "{output_uri}"
        );
        assert_eq!(
            read_uri(&output_uri),
            r#"job-1|t1-split|tool_execution|2|{"k":"v"}"#
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_the_tail_of_stderr() {
        let dir = Dir::new("fail");
        let (ctx, _abort) = dir.ctx(Duration::from_secs(5));
        let exec =
            sh("head -c 5000 /dev/zero | tr '\\0' x >&2; echo ' the real reason' >&2; exit 3");
        let out = exec.run(&assignment(&[]), ctx).await;
        let Outcome::Failed { error } = out else {
            panic!("{out:?}")
        };
        assert!(
            error.starts_with("sh exited with exit status: 3; stderr: …xxx"),
            "{error}"
        );
        assert!(error.ends_with("the real reason"), "{error}");
        assert!(error.len() < STDERR_TAIL_BYTES + 100, "{}", error.len());
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_fails_the_task() {
        let dir = Dir::new("missing");
        let (ctx, _abort) = dir.ctx(Duration::from_secs(5));
        let exec = Executor::Command(CommandSpec {
            program: "/nonexistent/daef-tool".into(),
            args: vec![],
        });
        let out = exec.run(&assignment(&[]), ctx).await;
        assert!(
            matches!(&out, Outcome::Failed { error } if error.starts_with("cannot start /nonexistent/daef-tool")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn the_timeout_kills_the_program_and_what_it_started() {
        let dir = Dir::new("timeout");
        let (ctx, _abort) = dir.ctx(Duration::from_millis(300));
        // The grandchild `sleep` holds stderr open; the group kill must end it too.
        let exec = sh("echo started >&2; sleep 30 & wait");
        let started = std::time::Instant::now();
        let out = exec.run(&assignment(&[]), ctx).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let Outcome::Failed { error } = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            error,
            "sh timed out after 0.3s and was killed; stderr: started"
        );
    }

    #[tokio::test]
    async fn abort_stops_a_running_program() {
        let dir = Dir::new("abort");
        let (ctx, abort) = dir.ctx(Duration::from_secs(60));
        let task = assignment(&[]);
        let run = tokio::spawn(async move { sh("sleep 30").run(&task, ctx).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        abort.send(true).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("stopped")
            .unwrap();
        assert_eq!(
            out,
            Outcome::Failed {
                error: "sh stopped: the worker is shutting down".into()
            }
        );
    }

    #[tokio::test]
    async fn stop_kills_a_running_program_and_what_it_started() {
        let dir = Dir::new("stop");
        let (mut ctx, _abort) = dir.ctx(Duration::from_secs(60));
        let (stop, stopped) = watch::channel(false);
        ctx.stop = stopped;
        let pid_file = dir.0.join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let task = assignment(&[]);
        let run = tokio::spawn(async move { sh(&script).run(&task, ctx).await });
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(&pid_file)
                && !pid.trim().is_empty()
            {
                break pid.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop.send(true).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("stopped")
            .unwrap();
        assert_eq!(
            out,
            Outcome::Failed {
                error: "sh stopped: its lease is no longer live (the job was canceled)".into()
            }
        );
        // The whole process group went: the background `sleep` too.
        let gone = std::path::Path::new("/proc").join(&pid);
        for _ in 0..100 {
            if !gone.exists()
                || std::fs::read_to_string(gone.join("stat")).is_ok_and(|s| s.contains(") Z "))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the program's child {pid} still runs");
    }

    #[test]
    fn executors_by_type() {
        let commands = BTreeMap::from([(
            "embedding".to_owned(),
            CommandSpec::parse("embed -q").unwrap(),
        )]);
        let echo = Executors {
            commands: commands.clone(),
            echo_by_default: true,
        };
        assert_eq!(
            echo.for_type("embedding"),
            Executor::Command(CommandSpec {
                program: "embed".into(),
                args: vec!["-q".into()]
            })
        );
        assert_eq!(echo.for_type("chat"), Executor::Echo);
        let strict = Executors {
            commands,
            echo_by_default: false,
        };
        assert!(matches!(strict.for_type("chat"), Executor::Refuse(r) if r.contains("\"chat\"")));
    }

    #[test]
    fn file_uris_escape_what_a_path_may_hold() {
        assert_eq!(
            file_uri(Path::new("/tmp/out/job-1/t1.1.json")),
            "file:///tmp/out/job-1/t1.1.json"
        );
        assert_eq!(
            file_uri(Path::new("/tmp/my dir/100%")),
            "file:///tmp/my%20dir/100%25"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::new(4);
        tail.push(b"ab");
        assert_eq!(tail.into_string(), "ab");
        let mut tail = Tail::new(4);
        tail.push(b"abcdef");
        tail.push(b"gh");
        assert_eq!(tail.into_string(), "…efgh");
    }
}
