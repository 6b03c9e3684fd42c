//! Command-line and environment configuration. Every flag is also a `DAEF_*` variable; an
//! invalid value stops the worker with an error naming the variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use daef_client::DEFAULT_BASE_URL;
use daef_client::settings::{bounded, ca_file};
use daef_core::engine::MAX_POLL_WAIT_MS;

use crate::executor::CommandSpec;

/// Prefix of the per-type command variables (`DAEF_COMMAND_TOOL_EXECUTION=…`).
pub(crate) const COMMAND_VAR_PREFIX: &str = "DAEF_COMMAND_";

/// DAEF reference worker: registers with the gateway, heartbeats, polls for tasks and runs them
/// with bounded parallelism, and reports each outcome.
///
/// Task types with a configured command (`--command TYPE=PROGRAM ARGS…` or
/// `DAEF_COMMAND_<TYPE>=PROGRAM ARGS…`) run that program with the task's inputs as JSON on
/// stdin; other types go to the default executor (`echo`: the output is the inputs).
#[derive(Debug, Parser)]
#[command(
    name = "daef-worker",
    version,
    about,
    long_about,
    rename_all = "kebab-case"
)]
pub(crate) struct Cli {
    /// The gateway's base URL: `http://` or `https://`.
    #[arg(long, env = "DAEF_CONTROL_PLANE_URL", default_value = DEFAULT_BASE_URL)]
    pub(crate) control_plane_url: String,
    /// API token with the `worker` scope (sent as `Authorization: Bearer`).
    #[arg(long, env = "DAEF_API_TOKEN", hide_env_values = true)]
    pub(crate) api_token: Option<String>,
    /// A PEM file of CA certificates to trust for `https://`, besides the platform's roots.
    #[arg(long, env = "DAEF_CA_FILE", value_name = "PEM_FILE", value_parser = ca_file("DAEF_CA_FILE"))]
    pub(crate) ca_file: Option<PathBuf>,
    /// This worker's id: 1-128 characters of [A-Za-z0-9._:@-] [default: <hostname>-<pid>].
    #[arg(long, env = "DAEF_WORKER_ID")]
    pub(crate) worker_id: Option<String>,
    /// Most tasks run at once (1-100).
    #[arg(long, env = "DAEF_MAX_PARALLEL_TASKS", default_value_t = 4, value_parser = bounded("DAEF_MAX_PARALLEL_TASKS", 1, 100))]
    pub(crate) max_parallel_tasks: u64,
    /// How long the gateway may hold a poll until work arrives (long polling), in milliseconds;
    /// 0 asks without waiting.
    #[arg(long, env = "DAEF_POLL_WAIT_MS", default_value_t = 20_000, value_parser = bounded("DAEF_POLL_WAIT_MS", 0, MAX_POLL_WAIT_MS))]
    pub(crate) poll_wait_ms: u64,
    /// Pause after a poll that came back empty before its wait was over, in milliseconds.
    #[arg(long, env = "DAEF_POLL_INTERVAL_MS", default_value_t = 500, value_parser = bounded("DAEF_POLL_INTERVAL_MS", 1, 3_600_000))]
    pub(crate) poll_interval_ms: u64,
    /// Limit on each request to the gateway, in milliseconds.
    #[arg(long, env = "DAEF_REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = bounded("DAEF_REQUEST_TIMEOUT_MS", 1, 3_600_000))]
    pub(crate) request_timeout_ms: u64,
    /// Directory task outputs are written under (`<dir>/<job_id>/<task_id>.<attempt>.<ext>`).
    #[arg(long, env = "DAEF_OUTPUT_DIR", default_value = "daef-output")]
    pub(crate) output_dir: PathBuf,
    /// A program for a task type: `TYPE=PROGRAM [ARGS…]` (whitespace-separated, no quoting).
    /// Repeat the flag, or separate entries with `;` in the variable.
    #[arg(long = "command", id = "command", value_name = "TYPE=PROGRAM", env = "DAEF_COMMANDS", value_delimiter = ';', value_parser = parse_command_flag)]
    pub(crate) commands: Vec<(String, CommandSpec)>,
    /// What runs task types that have no command.
    #[arg(
        long,
        env = "DAEF_DEFAULT_EXECUTOR",
        value_enum,
        default_value = "echo"
    )]
    pub(crate) default_executor: DefaultExecutor,
    /// Run-time limit of a task, in seconds, when the assignment does not carry its own
    /// `timeout_sec` (keep it at or below the tasks' `timeout_sec`; the gateway default is 60).
    #[arg(long, env = "DAEF_TASK_TIMEOUT_SEC", default_value_t = 60, value_parser = bounded("DAEF_TASK_TIMEOUT_SEC", 1, 86_400))]
    pub(crate) task_timeout_sec: u64,
    /// On SIGTERM/SIGINT, how long running tasks may finish before they are stopped and
    /// reported as failed (so the gateway retries them at once), in seconds.
    #[arg(long, env = "DAEF_SHUTDOWN_GRACE_SECONDS", default_value_t = 30, value_parser = bounded("DAEF_SHUTDOWN_GRACE_SECONDS", 0, 86_400))]
    pub(crate) shutdown_grace_seconds: u64,
    /// How long a report is retried while the gateway cannot be reached, in seconds.
    #[arg(long, env = "DAEF_REPORT_RETRY_SECONDS", default_value_t = 300, value_parser = bounded("DAEF_REPORT_RETRY_SECONDS", 0, 86_400))]
    pub(crate) report_retry_seconds: u64,
    /// CPU capacity to register with [default: the number of CPUs].
    #[arg(long, env = "DAEF_WORKER_CPU", value_parser = bounded("DAEF_WORKER_CPU", 1, 1_000_000))]
    pub(crate) cpu: Option<u64>,
    /// Memory capacity to register with (as the scheduler expects it, e.g. `32Gi`).
    #[arg(long, env = "DAEF_WORKER_MEMORY")]
    pub(crate) memory: Option<String>,
    /// GPUs to register with.
    #[arg(long, env = "DAEF_WORKER_GPU", value_parser = bounded("DAEF_WORKER_GPU", 0, 1_000_000))]
    pub(crate) gpu: Option<u64>,
    /// Models this worker serves (comma-separated).
    #[arg(long, env = "DAEF_WORKER_MODELS", value_delimiter = ',')]
    pub(crate) models: Vec<String>,
    /// Tools this worker has (comma-separated) [default: the types with a command].
    #[arg(long, env = "DAEF_WORKER_TOOLS", value_delimiter = ',')]
    pub(crate) tools: Vec<String>,
    /// Where this worker runs (zone, region).
    #[arg(long, env = "DAEF_WORKER_LOCALITY")]
    pub(crate) locality: Option<String>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `daef_worker=debug`).
    #[arg(long, env = "DAEF_LOG", default_value = "info")]
    pub(crate) log: String,
    /// Log line format.
    #[arg(long, env = "DAEF_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
}

/// The executor of task types without a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DefaultExecutor {
    /// Output = the task's inputs as JSON (for demos and tests).
    Echo,
    /// Report the task as failed: this worker cannot run it.
    Fail,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The worker id: the configured one, checked, or `<hostname>-<pid>`.
    pub(crate) fn worker_id(&self) -> anyhow::Result<String> {
        match &self.worker_id {
            Some(id) => {
                if !valid_worker_id(id) {
                    bail!(
                        "DAEF_WORKER_ID must be 1-128 characters of [A-Za-z0-9._:@-] (got {id:?})"
                    );
                }
                Ok(id.clone())
            }
            None => Ok(default_worker_id()),
        }
    }

    /// Commands per task type: `DAEF_COMMAND_<TYPE>` variables of `env`, overridden by
    /// `--command` / `DAEF_COMMANDS` entries.
    pub(crate) fn command_table(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<BTreeMap<String, CommandSpec>> {
        let mut table = BTreeMap::new();
        for (name, value) in env {
            let Some(suffix) = name.strip_prefix(COMMAND_VAR_PREFIX) else {
                continue;
            };
            if suffix.is_empty() {
                continue;
            }
            let spec = CommandSpec::parse(&value)
                .with_context(|| format!("{name} must be `PROGRAM [ARGS…]`"))?;
            table.insert(suffix.to_ascii_lowercase(), spec);
        }
        for (task_type, spec) in &self.commands {
            table.insert(task_type.clone(), spec.clone());
        }
        Ok(table)
    }

    /// Poll pause.
    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// Long-poll wait.
    pub(crate) fn poll_wait(&self) -> Duration {
        Duration::from_millis(self.poll_wait_ms)
    }
}

fn valid_worker_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@'))
}

/// `<hostname>-<pid>`, with characters a worker id cannot hold replaced by `-`.
fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// `TYPE=PROGRAM [ARGS…]`.
fn parse_command_flag(raw: &str) -> Result<(String, CommandSpec), String> {
    let err =
        || format!("--command / DAEF_COMMANDS entries must be TYPE=PROGRAM [ARGS…] (got {raw:?})");
    let (task_type, command) = raw.split_once('=').ok_or_else(err)?;
    let task_type = task_type.trim();
    if task_type.is_empty() {
        return Err(err());
    }
    let spec = CommandSpec::parse(command).map_err(|_| err())?;
    Ok((task_type.to_owned(), spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("daef-worker").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.control_plane_url, "http://127.0.0.1:8080");
        assert_eq!(cli.max_parallel_tasks, 4);
        assert_eq!(cli.poll_interval(), Duration::from_millis(500));
        assert_eq!(cli.poll_wait(), Duration::from_secs(20));
        assert_eq!(cli.default_executor, DefaultExecutor::Echo);
        assert_eq!(cli.task_timeout_sec, 60);
        let id = cli.worker_id().unwrap();
        assert!(valid_worker_id(&id), "{id}");
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (flag, value, var) in [
            ("--max-parallel-tasks", "0", "DAEF_MAX_PARALLEL_TASKS"),
            ("--max-parallel-tasks", "101", "DAEF_MAX_PARALLEL_TASKS"),
            ("--poll-interval-ms", "soon", "DAEF_POLL_INTERVAL_MS"),
            ("--poll-wait-ms", "30001", "DAEF_POLL_WAIT_MS"),
            ("--task-timeout-sec", "0", "DAEF_TASK_TIMEOUT_SEC"),
            ("--ca-file", "/nonexistent/ca.pem", "DAEF_CA_FILE"),
            ("--command", "no-equals-sign", "DAEF_COMMANDS"),
            ("--command", "type=", "DAEF_COMMANDS"),
            ("--default-executor", "shell", "echo"),
        ] {
            let err = parse(&[flag, value]).unwrap_err().to_string();
            assert!(err.contains(var), "{flag}={value}: {err}");
        }
        let cli = parse(&["--worker-id", "has space"]).unwrap();
        assert!(
            cli.worker_id()
                .unwrap_err()
                .to_string()
                .contains("DAEF_WORKER_ID")
        );
    }

    #[test]
    fn commands_come_from_flags_and_per_type_variables() {
        let cli = parse(&[
            "--command",
            "embedding=/bin/embed --fast",
            "--command",
            "tool_execution=/bin/tool",
        ])
        .unwrap();
        let env = [
            (
                "DAEF_COMMAND_TOOL_EXECUTION".to_owned(),
                "/usr/bin/env-tool".to_owned(),
            ),
            (
                "DAEF_COMMAND_LLM_INFERENCE".to_owned(),
                "python3 infer.py".to_owned(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let table = cli.command_table(env).unwrap();
        assert_eq!(
            table.keys().collect::<Vec<_>>(),
            ["embedding", "llm_inference", "tool_execution"]
        );
        assert_eq!(table["embedding"].program, "/bin/embed");
        assert_eq!(table["embedding"].args, ["--fast"]);
        assert_eq!(
            table["tool_execution"].program, "/bin/tool",
            "the flag wins over the variable"
        );
        assert_eq!(table["llm_inference"].args, ["infer.py"]);

        let bad = [("DAEF_COMMAND_X".to_owned(), "   ".to_owned())];
        let err = format!("{:#}", cli.command_table(bad).unwrap_err());
        assert!(err.contains("DAEF_COMMAND_X"), "{err}");
    }
}
