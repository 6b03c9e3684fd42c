//! The command line. Connection options are also `DAEF_*` variables; an invalid value stops
//! with an error naming the variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use daef_client::DEFAULT_BASE_URL;
use daef_client::settings::{bounded, ca_file};
use daef_core::Timestamp;
use daef_core::model::{JobStatus, Priority, TaskStatus};

/// DAEF operator CLI: submit and watch jobs, inspect tasks, dead letters, the audit log and
/// metrics. Tables for people; `--json` for scripts.
#[derive(Debug, Parser)]
#[command(name = "daefctl", version, about, rename_all = "kebab-case")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Connection and output (any command)")]
pub(crate) struct Global {
    /// The gateway's base URL: `http://` or `https://`.
    #[arg(long, global = true, env = "DAEF_CONTROL_PLANE_URL", default_value = DEFAULT_BASE_URL)]
    pub(crate) url: String,
    /// API token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "DAEF_API_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// A PEM file of CA certificates to trust for `https://`, besides the platform's roots.
    #[arg(long, global = true, env = "DAEF_CA_FILE", value_name = "PEM_FILE", value_parser = ca_file("DAEF_CA_FILE"))]
    pub(crate) ca_file: Option<PathBuf>,
    /// Tenant to act for (`X-DAEF-Tenant`): the default tenant of submitted jobs.
    #[arg(long = "as-tenant", global = true, env = "DAEF_TENANT")]
    pub(crate) tenant: Option<String>,
    /// Limit on each request, in milliseconds.
    #[arg(long, global = true, env = "DAEF_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = bounded("DAEF_REQUEST_TIMEOUT_MS", 1, 3_600_000))]
    pub(crate) timeout_ms: u64,
    /// Print JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Submit a job; prints its id. `--wait` follows it until it ends.
    Submit(Submit),
    /// Show a job and its tasks.
    Status {
        /// The job id.
        job_id: String,
    },
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// List a job's tasks.
    Tasks(TasksArgs),
    /// Cancel a job and its unfinished tasks.
    Cancel {
        /// The job id.
        job_id: String,
    },
    /// Periodic schedules: create, list, show, pause, resume, delete.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The dead-letter queue (needs an operator token).
    #[command(subcommand)]
    DeadLetter(DeadLetter),
    /// The audit log (needs an operator token).
    #[command(subcommand)]
    Audit(Audit),
    /// Metrics: a table of counters, gauges and histograms, or the Prometheus text.
    Metrics(MetricsArgs),
    /// Whether the gateway is up and its store and queue answer.
    Health,
}

#[derive(Debug, Args)]
pub(crate) struct Submit {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// Follow the job with a live progress bar until it completes, fails or is canceled.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up after this many seconds (exit code 5).
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub(crate) wait_timeout: Option<u64>,
    /// A delayed job: its tasks start this many seconds from now (the job is stored at once).
    #[arg(long, value_name = "SECS", conflicts_with = "run_at")]
    pub(crate) delay_seconds: Option<u64>,
    /// A delayed job: its tasks start at this RFC 3339 time (at most a year ahead).
    #[arg(long, value_name = "TIME", value_parser = timestamp)]
    pub(crate) run_at: Option<Timestamp>,
    /// Sent as `Idempotency-Key` (1-255 printable ASCII characters): running the same submit
    /// again with the same key, within the gateway's DAEF_IDEMPOTENCY_TTL_SECONDS, prints the
    /// first job's id and creates nothing. Without it each run sends a fresh key, which only
    /// covers daefctl's own retries.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,
}

/// What a job is made of: `submit` sends it once, `schedule create` on every tick.
#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// The job type (`batch_analysis` or an input containing "analyze" selects the
    /// split → embed → summarize chain).
    #[arg(long = "type", default_value = "chat")]
    pub(crate) job_type: String,
    /// The input text (required unless --tasks is given).
    #[arg(long, required_unless_present = "tasks")]
    pub(crate) input: Option<String>,
    /// A policy name, kept with the job.
    #[arg(long)]
    pub(crate) policy: Option<String>,
    /// Dispatch class.
    #[arg(long, value_enum)]
    pub(crate) priority: Option<PriorityArg>,
    /// The owning tenant (default: from the token or --as-tenant).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// An explicit DAG: a JSON file (`-` for stdin) holding an array of tasks
    /// `{task_id, type, inputs?, dependencies?, max_retries?, timeout_sec?, retry_backoff?}`;
    /// `inputs` is an object of strings (`{"rows": "500"}`, not `500`).
    #[arg(long, value_name = "FILE")]
    pub(crate) tasks: Option<PathBuf>,
}

/// Periodic schedules.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule: on each tick of --cron (five fields, UTC) the gateway submits the
    /// job described by the job options. Ticks missed while every gateway was down are not
    /// back-filled (one catch-up run at most).
    Create(ScheduleCreate),
    /// List schedules by id.
    List(ScheduleList),
    /// Show a schedule.
    Show {
        /// The schedule id.
        schedule_id: String,
    },
    /// Pause a schedule: it fires no more until resumed.
    Pause {
        /// The schedule id.
        schedule_id: String,
    },
    /// Resume a schedule from its first tick after now (missed ticks are not run).
    Resume {
        /// The schedule id.
        schedule_id: String,
    },
    /// Delete a schedule; the jobs it created stay.
    Delete {
        /// The schedule id.
        schedule_id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleCreate {
    /// The schedule id: 1-128 characters of [A-Za-z0-9._-], unique.
    pub(crate) schedule_id: String,
    /// Five fields, UTC: minute hour day-of-month month day-of-week (e.g. "0 3 * * *",
    /// "*/15 9-17 * * MON-FRI").
    #[arg(long)]
    pub(crate) cron: String,
    /// Create it paused.
    #[arg(long)]
    pub(crate) paused: bool,
    #[command(flatten)]
    pub(crate) job: JobArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleList {
    /// Only this tenant's schedules.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Page size (gateway default 100).
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Schedules to skip.
    #[arg(long)]
    pub(crate) offset: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PriorityArg {
    /// Dispatched first (the gateway's default).
    Interactive,
    /// Waits behind interactive tasks.
    Batch,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Self {
        match p {
            PriorityArg::Interactive => Priority::Interactive,
            PriorityArg::Batch => Priority::Batch,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only jobs in this status.
    #[arg(long, value_parser = status::<JobStatus>)]
    pub(crate) status: Option<JobStatus>,
    /// Only this tenant's jobs.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Page size (gateway default 50, at most 1000).
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Jobs to skip.
    #[arg(long)]
    pub(crate) offset: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct TasksArgs {
    /// The job id.
    pub(crate) job_id: String,
    /// Only tasks in this status.
    #[arg(long, value_parser = status::<TaskStatus>)]
    pub(crate) status: Option<TaskStatus>,
    /// Only tasks this worker runs or ran.
    #[arg(long)]
    pub(crate) worker_id: Option<String>,
    /// Page size (default: every task).
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Tasks to skip.
    #[arg(long)]
    pub(crate) offset: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLetter {
    /// Tasks in the dead-letter queue, oldest first.
    List {
        /// Most entries to show (gateway default 50, at most 1000).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Put dead tasks back in the queue with a fresh attempt budget.
    Requeue(Requeue),
    /// Give up on dead tasks: they stay Failed for good and leave the dead-letter queue (the
    /// same options, checks and batching as requeue).
    Discard(Requeue),
}

#[derive(Debug, Args)]
pub(crate) struct Requeue {
    /// Tasks, as JOB_ID/TASK_ID, sent in one request.
    #[arg(value_name = "JOB_ID/TASK_ID", value_parser = task_key, conflicts_with_all = ["job", "all", "batch_size", "limit"])]
    pub(crate) tasks: Vec<(String, String)>,
    /// Every dead task of this job, in batches.
    #[arg(long, value_name = "JOB_ID")]
    pub(crate) job: Option<String>,
    /// Every dead task, in batches.
    #[arg(long, conflicts_with = "job")]
    pub(crate) all: bool,
    /// With --job or --all: most tasks per request. The default is the gateway's default
    /// DAEF_ADMIN_REQUEUE_MAX_BATCH; a gateway that takes fewer says so, and its limit is used.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch_size: u64,
    /// With --job or --all: stop after this many tasks (default: every dead task).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Only count how many of the listed tasks are dead letters; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Confirmation token for large batches (the gateway's DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN),
    /// sent with every batch. Deliberately a flag only: a large batch should be typed, not
    /// inherited from a shell.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) confirm: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Audit {
    /// A page of audit events, newest first.
    List(AuditList),
    /// Every matching event, oldest first: JSON, or CSV with --csv.
    Export(AuditExport),
    /// Re-verify the hash chain here from the API output (as docs/api.md, "The audit log",
    /// defines it) and compare with the gateway's own check; names the first bad event.
    Verify,
}

#[derive(Debug, Args)]
pub(crate) struct AuditFilters {
    /// Exact action (`dead_letter_requeue`, `job_cancel`, …).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Exact actor (`tok-…` or `anonymous`).
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Exact tenant.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Exact result (`ok`, `rejected`, …).
    #[arg(long)]
    pub(crate) result: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(crate) from: Option<Timestamp>,
    /// Created at or before (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(crate) to: Option<Timestamp>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditList {
    #[command(flatten)]
    pub(crate) filters: AuditFilters,
    /// Page size (gateway default 50, at most 1000).
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Events to skip.
    #[arg(long)]
    pub(crate) offset: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditExport {
    #[command(flatten)]
    pub(crate) filters: AuditFilters,
    /// CSV with the API's export columns (docs/api.md, "The audit log") instead of a JSON array.
    #[arg(long)]
    pub(crate) csv: bool,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Print the Prometheus text exposition instead.
    #[arg(long)]
    pub(crate) prometheus: bool,
    /// Only metrics whose name contains this.
    pub(crate) filter: Option<String>,
}

fn status<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.parse().map_err(|_| {
        format!("{raw:?} is not a status (Queued, Running, Completed, Failed, Canceled)")
    })
}

fn timestamp(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(raw)
        .map_err(|_| format!("{raw:?} is not an RFC 3339 timestamp (2026-11-26T10:30:00Z)"))
}

fn task_key(raw: &str) -> Result<(String, String), String> {
    match raw.rsplit_once('/') {
        Some((job, task)) if !job.is_empty() && !task.is_empty() => {
            Ok((job.to_owned(), task.to_owned()))
        }
        _ => Err(format!("{raw:?} must be JOB_ID/TASK_ID")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("daefctl").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&[
            "jobs",
            "--json",
            "--url",
            "http://gw:9000",
            "--status",
            "Failed",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.url, "http://gw:9000");
        assert!(matches!(
            cli.command,
            Command::Jobs(JobsArgs {
                status: Some(JobStatus::Failed),
                ..
            })
        ));
    }

    #[test]
    fn requeue_takes_job_slash_task() {
        let cli = parse(&[
            "dead-letter",
            "requeue",
            "job-1/load",
            "job-2/t1-split",
            "--dry-run",
        ])
        .unwrap();
        let Command::DeadLetter(DeadLetter::Requeue(r)) = cli.command else {
            panic!()
        };
        assert_eq!(
            r.tasks,
            [
                ("job-1".into(), "load".into()),
                ("job-2".into(), "t1-split".into())
            ]
        );
        assert!(r.dry_run);
        assert!(parse(&["dead-letter", "requeue", "job-1"]).is_err());
        assert!(parse(&["dead-letter", "requeue", "--all", "--job", "j"]).is_err());
        // Named tasks go in one request: batching options and a selection do not mix with them.
        assert!(parse(&["dead-letter", "requeue", "job-1/load", "--all"]).is_err());
        assert!(parse(&["dead-letter", "requeue", "job-1/load", "--batch-size", "5"]).is_err());
    }

    #[test]
    fn requeue_all_batches_by_default_like_the_gateway() {
        let Command::DeadLetter(DeadLetter::Requeue(r)) =
            parse(&["dead-letter", "requeue", "--all"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((r.batch_size, r.limit), (100, None));
        assert!(parse(&["dead-letter", "requeue", "--all", "--batch-size", "0"]).is_err());
        assert!(parse(&["dead-letter", "requeue", "--job", "j", "--batch-size", "3"]).is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(&["--timeout-ms", "0", "health"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DAEF_REQUEST_TIMEOUT_MS"), "{err}");
        let err = parse(&["--ca-file", "/nonexistent/ca.pem", "health"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DAEF_CA_FILE: cannot read"), "{err}");
        let err = parse(&["tasks", "job-1", "--status", "Done"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a status"), "{err}");
        let err = parse(&["audit", "list", "--from", "yesterday"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(
            parse(&["submit", "--wait-timeout", "5"]).is_err(),
            "--wait-timeout needs --wait"
        );
    }
}
