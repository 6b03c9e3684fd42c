//! `daef-bench`: DAEF's load generator.
//!
//! `daef-bench run` drives any gateway that speaks the v1 API (`--url`), or one it starts itself
//! (`--spawn memory|postgres`), with submitting clients and simulated workers that poll with
//! `max_tasks` and report at once, and prints tasks per second end to end, p50/p99 of submit,
//! poll, report and submit-to-completion, and every error. `daef-bench http-ceiling` measures
//! the same client against a minimal hyper server: the most requests per second any gateway
//! could serve here. `cargo xtask bench` runs both plus the Redis and Postgres ceilings and
//! writes `docs/benchmarks.md`.
//!
//! It must never point load anywhere but where it is told (`--url`, or 127.0.0.1 for what it
//! starts), never touch Postgres schemas or Redis keys other than its own `daef_bench_*` /
//! `daef-bench:*`, and never leave a gateway it started running.

mod ceiling;
mod gateway;
mod load;
mod pages;
mod pgcost;
mod preload;
mod report;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use daef_client::{Client, ClientConfig};

use crate::gateway::{Backends, LocalGateway, Mode, Namespace};
use crate::load::{LoadConfig, LoadResult};
use crate::report::RunReport;

/// DAEF load generator and HTTP ceiling.
#[derive(Debug, Parser)]
#[command(name = "daef-bench", version, rename_all = "kebab-case")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive a gateway with submitting clients and simulated workers.
    Run(Box<RunArgs>),
    /// Measure the client against a minimal hyper server answering a fixed JSON body.
    HttpCeiling(CeilingArgs),
    /// (Internal) the minimal server `http-ceiling` measures against.
    #[command(hide = true)]
    FixedServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

const DEFAULT_DSN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Args)]
struct RunArgs {
    /// The gateway to drive (any implementation of the v1 API).
    #[arg(long, env = "DAEF_BENCH_URL", conflicts_with = "spawn")]
    url: Option<String>,
    /// Start a local daef-gateway instead: `memory`, or `postgres` (Postgres + Redis in a fresh
    /// schema and key prefix, removed afterwards).
    #[arg(long, value_enum)]
    spawn: Option<Mode>,
    /// Tasks in the measured phase [default: 200000 for --spawn memory, 30000 for --spawn
    /// postgres, 50000 for --url; a tenth of that with --quick].
    #[arg(long)]
    tasks: Option<u64>,
    /// Tasks per job: 1, or a fan-out DAG of this many tasks (a root, `N - 2` tasks that
    /// depend on it, and a sink that depends on those), where batching shows.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tasks_per_job: u32,
    /// Concurrent submitting clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Concurrent simulated workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// `max_tasks` of each poll (1-100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_tasks: u32,
    /// Long-poll: send `wait_ms` with every poll (the gateway holds an empty poll that long).
    #[arg(long)]
    wait_ms: Option<u32>,
    /// Most jobs submitted and not yet completed; submitting clients wait at the limit
    /// (0: no limit, a backlog grows as fast as submits outrun the workers).
    #[arg(long, default_value_t = 1_000)]
    max_in_flight: usize,
    /// Submit at most this many jobs per second in all, to measure latency below saturation
    /// [default: as fast as the clients go].
    #[arg(long)]
    rate: Option<f64>,
    /// Finished tasks to store before measuring (through the store for --spawn postgres,
    /// through HTTP otherwise).
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// A short run (under a minute): a tenth of the default tasks.
    #[arg(long)]
    quick: bool,
    /// Measured phases, back to back on the same gateway. The report shows the round with the
    /// median tasks/s (or the first that failed) and lists every round: on a shared machine
    /// single rounds move by a fifth either way.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
    /// Bearer token for a gateway with auth on (needs the worker and a tenant or operator scope).
    #[arg(long, env = "DAEF_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The gateway binary --spawn starts [default: daef-gateway next to this executable].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// `DAEF_LOG` of a spawned gateway (`info` adds one access-log line per request).
    #[arg(long, default_value = "warn")]
    gateway_log: String,
    /// Postgres for --spawn postgres (a schema `daef_bench_*` is created in it and dropped).
    #[arg(long, env = "DAEF_BENCH_POSTGRES_DSN", default_value = DEFAULT_DSN, hide_env_values = true)]
    postgres_dsn: String,
    /// Redis for --spawn postgres (keys under `daef-bench:*` are deleted afterwards).
    #[arg(long, env = "DAEF_BENCH_REDIS_ADDR", default_value = "127.0.0.1:6379")]
    redis_addr: String,
    /// Give up on a phase after this many seconds [default: 60 + 20 ms per task].
    #[arg(long)]
    timeout: Option<u64>,
    /// Also write the results as `key=value` lines to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// After the run, time each web console page this many times with the run's history
    /// stored (the gateway must run with auth off, as --spawn starts it).
    #[arg(long)]
    console_pages: Option<usize>,
}

#[derive(Debug, Args)]
struct CeilingArgs {
    /// Requests to time.
    #[arg(long)]
    requests: Option<u64>,
    /// Concurrent request loops (use the run's clients + workers).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A short run.
    #[arg(long)]
    quick: bool,
    /// Also write the results as `key=value` lines to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("daef-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("daef-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::HttpCeiling(args) => {
            let requests = args
                .requests
                .unwrap_or(if args.quick { 50_000 } else { 300_000 });
            let result = ceiling::measure(requests, args.concurrency).await?;
            let text = report::ceiling_text(&result);
            print!("{text}");
            if let Some(path) = &args.summary {
                std::fs::write(path, report::ceiling_summary(&result))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if result.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::FixedServer { listen } => {
            ceiling::serve_fixed(&listen).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Enough tasks for a run of some seconds at what each mode sustains on a small machine.
    let full = match args.spawn {
        Some(Mode::Memory) => 200_000,
        Some(Mode::Postgres) => 30_000,
        None => 50_000,
    };
    let tasks = args
        .tasks
        .unwrap_or(if args.quick { full / 10 } else { full });
    let deadline = Duration::from_secs(args.timeout.unwrap_or(60 + tasks / 50));
    let backends = Backends {
        postgres_dsn: args.postgres_dsn.clone(),
        redis_addr: args.redis_addr.clone(),
    };
    let log_dir = std::env::temp_dir().join("daef-bench");
    let namespace = (args.spawn == Some(Mode::Postgres)).then(Namespace::fresh);
    let mut preloaded_directly = false;

    // Everything that needs cleaning up afterwards is created in `setup`; cleanup runs whatever
    // happened in between.
    let setup = async {
        if let Some(ns) = &namespace {
            gateway::create_schema(&backends.postgres_dsn, &ns.schema).await?;
            if args.preload > 0 {
                eprintln!(
                    "daef-bench: pre-loading {} finished tasks into Postgres schema {}",
                    args.preload, ns.schema
                );
                preload::postgres(&backends.postgres_dsn, &ns.schema, "preload", args.preload)
                    .await?;
                preloaded_directly = true;
                // A database with autovacuum on analyses the grown tables by itself; one with it
                // off (as on the machines we measure on) never does.
                eprintln!("daef-bench: ANALYZE after the pre-load");
                gateway::analyze_schema(&backends.postgres_dsn, &ns.schema).await?;
            }
        }
        match args.spawn {
            Some(mode) => {
                let bin = args
                    .gateway_bin
                    .clone()
                    .unwrap_or_else(gateway::default_gateway_bin);
                let gw = LocalGateway::start(
                    &bin,
                    mode,
                    &backends,
                    namespace.as_ref(),
                    &args.gateway_log,
                    &log_dir,
                )
                .await?;
                Ok::<_, anyhow::Error>(Some(gw))
            }
            None => Ok(None),
        }
    };
    let gw = match setup.await {
        Ok(gw) => gw,
        Err(err) => {
            cleanup(None, namespace.as_ref(), &backends).await;
            return Err(err);
        }
    };
    let url = match (&gw, &args.url) {
        (Some(gw), _) => gw.url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => {
            bail!("say which gateway to drive: --url <URL> or --spawn memory|postgres")
        }
    };
    let probe = match &namespace {
        Some(ns) => match pgcost::PgProbe::connect(&backends.postgres_dsn, &ns.schema).await {
            Ok(probe) => Some(probe),
            Err(err) => {
                eprintln!("daef-bench: Postgres costs will not be reported: {err:#}");
                None
            }
        },
        None => None,
    };
    let outcome = measure(
        &args,
        &url,
        tasks,
        deadline,
        gw.as_ref(),
        preloaded_directly,
        probe.as_ref(),
    )
    .await;
    // Stopped before the closing sample: exiting backends report everything they counted.
    if let Some(gw) = gw
        && let Err(err) = gw.stop().await
    {
        eprintln!("daef-bench: stopping the gateway: {err:#}");
    }
    let closing = match &probe {
        Some(probe) => probe.sample().await.ok(),
        None => None,
    };
    cleanup(None, namespace.as_ref(), &backends).await;
    let (mut report, opening) = outcome?;
    if let (Some(before), Some(after)) = (opening, closing) {
        report.pg_cost = pgcost::cost(before, after, report.measured_tasks);
    }
    print!("{}", report.text());
    if let Some(path) = &args.summary {
        std::fs::write(path, report.summary())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn measure(
    args: &RunArgs,
    url: &str,
    tasks: u64,
    deadline: Duration,
    gw: Option<&LocalGateway>,
    preloaded_directly: bool,
    probe: Option<&pgcost::PgProbe>,
) -> anyhow::Result<(RunReport, Option<pgcost::PgSample>)> {
    let client = Client::new(ClientConfig {
        base_url: url.to_owned(),
        token: args.token.clone(),
        // Long polls may be held up to 30 s by the gateway.
        timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    })?;
    let phase = |label: &str, tasks: u64| LoadConfig {
        label: label.to_owned(),
        tasks,
        tasks_per_job: args.tasks_per_job,
        clients: args.clients,
        workers: args.workers,
        max_tasks: args.max_tasks,
        wait_ms: args.wait_ms,
        max_in_flight: args.max_in_flight,
        rate: None,
        deadline,
        progress: !args.no_progress,
    };
    let mut stored = 0;
    if args.preload > 0 {
        if preloaded_directly {
            stored += args.preload;
        } else {
            eprintln!(
                "daef-bench: pre-loading {} tasks through HTTP",
                args.preload
            );
            let pre = load::run(&client, &phase("preload", args.preload)).await;
            if !pre.clean() {
                bail!(
                    "the pre-load did not finish cleanly: {} of {} tasks, errors {:?}",
                    pre.completed,
                    pre.tasks,
                    pre.errors
                );
            }
            stored += pre.completed;
        }
    }
    // Warm-up: connections, prepared statements, allocator pools.
    let warmup = (tasks / 10).clamp(100, 2_000);
    let warm = load::run(&client, &phase("warmup", warmup)).await;
    stored += warm.completed;
    let rss_before = gw.map(LocalGateway::rss).transpose()?;
    let opening = match probe {
        Some(probe) => Some(probe.sample().await?),
        None => None,
    };
    let measured_from = stored;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let label = if args.rounds == 1 {
            "run".to_owned()
        } else {
            format!("run {round}/{}", args.rounds)
        };
        let measured = LoadConfig {
            rate: args.rate,
            ..phase(&label, tasks)
        };
        let result = load::run(&client, &measured).await;
        let stored_before = stored;
        stored += result.completed;
        let clean = result.clean();
        rounds.push((stored_before, result));
        if !clean {
            break;
        }
    }
    let rss_after = gw.map(LocalGateway::rss).transpose()?;
    if let Some(times) = args.console_pages {
        let timings = pages::time_console(&client, url, times.max(1)).await?;
        eprint!("{}", pages::table(&timings, stored));
    }
    let rounds_tasks_per_sec = rounds.iter().map(|(_, r)| r.tasks_per_sec()).collect();
    let (stored_before, result) = representative(rounds);
    let measured_tasks = stored - measured_from;
    let report = RunReport {
        url: url.to_owned(),
        mode: args.spawn.map(Mode::as_str).unwrap_or("external"),
        clients: args.clients,
        workers: args.workers,
        max_tasks: args.max_tasks,
        tasks_per_job: args.tasks_per_job,
        wait_ms: args.wait_ms,
        max_in_flight: args.max_in_flight,
        stored_before,
        stored_after: stored,
        rss_before,
        rss_after,
        rounds_tasks_per_sec,
        result,
        rate: args.rate,
        measured_tasks,
        pg_cost: None,
    };
    Ok((report, opening))
}

/// The round a report shows: the last one if it failed (rounds stop at the first failure),
/// otherwise the one with the median tasks/s.
fn representative(mut rounds: Vec<(u64, LoadResult)>) -> (u64, LoadResult) {
    if let Some(last) = rounds.pop_if(|(_, r)| !r.clean()) {
        return last;
    }
    rounds.sort_by(|(_, a), (_, b)| a.tasks_per_sec().total_cmp(&b.tasks_per_sec()));
    let median = rounds.len() / 2;
    rounds.swap_remove(median)
}

async fn cleanup(gw: Option<LocalGateway>, namespace: Option<&Namespace>, backends: &Backends) {
    if let Some(gw) = gw
        && let Err(err) = gw.stop().await
    {
        eprintln!("daef-bench: stopping the gateway: {err:#}");
    }
    if let Some(ns) = namespace {
        if let Err(err) = gateway::drop_schema(&backends.postgres_dsn, &ns.schema).await {
            eprintln!("daef-bench: dropping schema {}: {err:#}", ns.schema);
        }
        if let Err(err) = gateway::delete_redis_keys(&backends.redis_addr, &ns.redis_key).await {
            eprintln!(
                "daef-bench: deleting Redis keys {}:*: {err:#}",
                ns.redis_key
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(completed: u64, secs: u64, errors: u64) -> LoadResult {
        let mut r = LoadResult {
            tasks: completed,
            completed,
            elapsed: Duration::from_secs(secs),
            finished: true,
            ..LoadResult::default()
        };
        if errors > 0 {
            r.errors.insert("report: 500".to_owned(), errors);
        }
        r
    }

    #[test]
    fn the_median_round_is_reported_with_its_own_history() {
        let rounds = vec![
            (10, round(900, 1, 0)),
            (20, round(300, 1, 0)),
            (30, round(600, 1, 0)),
        ];
        let (stored, shown) = representative(rounds);
        assert_eq!((stored, shown.completed), (30, 600));
    }

    #[test]
    fn a_failed_round_is_reported_instead_of_the_median() {
        let rounds = vec![(10, round(900, 1, 0)), (20, round(100, 1, 3))];
        let (stored, shown) = representative(rounds);
        assert_eq!((stored, shown.error_count()), (20, 3));
    }
}
