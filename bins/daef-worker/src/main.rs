//! `daef-worker`: DAEF's reference worker. It registers with the gateway, heartbeats at the
//! interval the gateway returns, long-polls for as many tasks as it has free slots
//! (`DAEF_MAX_PARALLEL_TASKS`), runs them concurrently with the `echo` or `command` executor,
//! and reports each outcome with its lease id and an idempotency key, retrying while the gateway
//! cannot be reached. When the gateway forgets it, it registers again. SIGTERM or SIGINT stops
//! polling and lets running tasks finish (`DAEF_SHUTDOWN_GRACE_SECONDS`); a second signal, or
//! the end of the grace period, stops them and reports them as failed so they are retried at
//! once.
//!
//! It talks to the gateway only through `daef-client`, and must never report a task it did not
//! run nor hold a lease longer than the task runs.

mod backoff;
mod cli;
mod executor;
mod worker;

#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daef_client::{Client, ClientConfig};
use daef_core::model::{Gpu, WorkerCapabilities};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cli::{Cli, DefaultExecutor, LogFormat};
use crate::executor::Executors;
use crate::worker::{Stop, Worker, WorkerConfig};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).with_context(|| {
        format!(
            "DAEF_LOG must be a log filter such as `info` (got {:?})",
            cli.log
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = worker_config(&cli)?;
    let client_config = ClientConfig {
        base_url: cli.control_plane_url.clone(),
        token: cli.api_token.clone(),
        tenant: None,
        timeout: Duration::from_millis(cli.request_timeout_ms),
        ca_file: cli.ca_file.clone(),
        ..ClientConfig::default()
    };
    if let Some(warning) = client_config.plain_http_token_warning() {
        tracing::warn!("{warning}");
    }
    let client = Client::new(client_config)
        .context("DAEF_CONTROL_PLANE_URL / DAEF_API_TOKEN / DAEF_CA_FILE")?;
    tracing::info!(
        worker_id = %config.worker_id,
        output_dir = %config.output_dir.display(),
        commands = ?config.executors.commands.keys().collect::<Vec<_>>(),
        default_executor = ?cli.default_executor,
        "daef-worker starting"
    );

    let (stop_tx, stop) = watch::channel(Stop::Run);
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        for level in [Stop::Drain, Stop::Abort] {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            match level {
                Stop::Drain => tracing::info!(
                    "signal received: no more polling; finishing running tasks (signal again to stop them)"
                ),
                _ => tracing::warn!("second signal: stopping running tasks"),
            }
            let _ = stop_tx.send(level);
        }
        // Keep the sender alive: a dropped sender would read as "stop" everywhere.
        std::future::pending::<()>().await;
    });

    Worker::new(client, config).run(stop).await
}

fn worker_config(cli: &Cli) -> anyhow::Result<WorkerConfig> {
    let commands = cli.command_table(std::env::vars())?;
    std::fs::create_dir_all(&cli.output_dir).with_context(|| {
        format!(
            "DAEF_OUTPUT_DIR: cannot create {}",
            cli.output_dir.display()
        )
    })?;
    // Absolute, so the file:// URIs reported mean the same thing to whoever reads them.
    let output_dir = std::fs::canonicalize(&cli.output_dir).with_context(|| {
        format!(
            "DAEF_OUTPUT_DIR: cannot resolve {}",
            cli.output_dir.display()
        )
    })?;
    let cpu = cli.cpu.or_else(|| {
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64)
    });
    let tools = if cli.tools.is_empty() {
        commands.keys().cloned().collect()
    } else {
        cli.tools.clone()
    };
    Ok(WorkerConfig {
        worker_id: cli.worker_id()?,
        capabilities: WorkerCapabilities {
            cpu,
            memory: cli.memory.clone(),
            gpu: cli.gpu.map(Gpu::Count),
            models: cli.models.clone(),
            tools,
            locality: cli.locality.clone(),
        },
        max_parallel: cli.max_parallel_tasks as usize,
        poll_wait: cli.poll_wait(),
        poll_interval: cli.poll_interval(),
        output_dir,
        default_task_timeout: Duration::from_secs(cli.task_timeout_sec),
        shutdown_grace: Duration::from_secs(cli.shutdown_grace_seconds),
        report_retry: Duration::from_secs(cli.report_retry_seconds),
        executors: Executors {
            commands,
            echo_by_default: cli.default_executor == DefaultExecutor::Echo,
        },
    })
}
