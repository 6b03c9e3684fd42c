//! `daef-gateway`: the composition root. Reads configuration, opens the store and the queue,
//! serves the HTTP API, runs the reconciler, and shuts down in order (HTTP first, then the
//! background loops, then the backends) on SIGINT or SIGTERM.

mod cli;
mod wiring;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daef_core::Timestamp;
use daef_http::App;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{Cli, Command, LogFormat};

/// The gateway's allocator. A request allocates and frees many small short-lived objects
/// (headers, JSON values, ids); mimalloc's thread-local free lists served the daef-bench memory
/// run about a third more tasks per second than glibc's malloc, whose `_int_malloc` and
/// `malloc_consolidate` took 16% of the gateway's profile (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with the whole cause chain; configuration mistakes need no backtrace.
            eprintln!("daef-gateway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Migrate) => runtime.block_on(wiring::migrate(&cli)),
        Some(Command::Serve) | None => runtime.block_on(serve(cli)),
    }
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log.log).with_context(|| {
        format!(
            "DAEF_LOG must be a log filter such as `info` (got {:?})",
            cli.log.log
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let app = Arc::new(wiring::app(&cli).await?);
    let engine = app.engine().clone();
    let addr = cli.http.listen();
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (DAEF_LISTEN_ADDR / DAEF_GATEWAY_PORT)")
    })?;
    tracing::info!(
        addr = %listener.local_addr()?,
        store = engine.store().backend(),
        queue = engine.queue().backend(),
        "daef-gateway listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let reconciler = tokio::spawn(reconcile_loop(
        engine.clone(),
        Duration::from_millis(cli.engine.reconcile_interval_ms),
        stop_rx.clone(),
    ));
    let upkeep = tokio::spawn(metrics_upkeep(app.clone(), stop_rx));

    let console = Arc::new(daef_console::Console::new(app));
    daef_http::serve(listener, console, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(reconciler, upkeep);
    tracing::info!("daef-gateway stopped");
    Ok(())
}

/// Runs a reconcile pass every `interval` (DESIGN.md invariant 3). Safe in every replica at once:
/// each pass is made of the store's atomic, row-skipping steps.
async fn reconcile_loop(
    engine: daef_core::Engine,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let summary = engine.reconcile(Timestamp::now()).await;
                if summary.leases_expired > 0 || summary.claims_requeued > 0 {
                    tracing::info!(leases_expired = summary.leases_expired, claims_requeued = summary.claims_requeued, orphans_requeued = summary.orphans_requeued, "reconciled");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The Prometheus exporter needs periodic housekeeping when it is not running its own listener.
async fn metrics_upkeep(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticker.tick() => app.metrics().run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
