//! `daefctl`: the DAEF operator CLI. Submit jobs and follow them live, inspect jobs and tasks,
//! cancel, list and requeue dead letters, read, export and re-verify the audit log, read
//! metrics. Tables for people, `--json` for scripts; every refusal of the gateway is explained
//! with what to do next, and the exit code says how it went (see `explain::exit`).
//!
//! It talks to the gateway only through `daef-client`; it must never print the token, and
//! never trust the gateway's word on the audit chain alone (`audit verify` recomputes it).

mod admin;
mod cli;
mod explain;
mod job;
mod ops;
mod output;
mod progress;
mod requeue;
mod schedule;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use daef_client::{Client, ClientConfig};

use crate::cli::{Audit, Cli, Command, DeadLetter};
use crate::explain::{exit, explain};

/// What every command needs.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = cli.global.url.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            match err.downcast_ref::<daef_client::Error>() {
                Some(api) => {
                    let explained = explain(api, &url);
                    eprintln!("error: {}", explained.what);
                    eprintln!("hint: {}", explained.hint);
                }
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = ClientConfig {
        base_url: cli.global.url,
        token: cli.global.token,
        tenant: cli.global.tenant,
        timeout: Duration::from_millis(cli.global.timeout_ms),
        ca_file: cli.global.ca_file,
        ..ClientConfig::default()
    };
    if let Some(warning) = config.plain_http_token_warning() {
        eprintln!("warning: {warning}");
    }
    let client = Client::new(config)?;
    let ctx = Ctx {
        client,
        json: cli.global.json,
    };
    match cli.command {
        Command::Submit(args) => job::submit(&ctx, args).await,
        Command::Status { job_id } => job::status(&ctx, &job_id).await,
        Command::Jobs(args) => job::jobs(&ctx, args).await,
        Command::Tasks(args) => job::tasks(&ctx, args).await,
        Command::Cancel { job_id } => job::cancel(&ctx, &job_id).await,
        Command::Schedule(command) => schedule::run(&ctx, command).await,
        Command::DeadLetter(DeadLetter::List { limit }) => admin::dead_letters(&ctx, limit).await,
        Command::DeadLetter(DeadLetter::Requeue(args)) => {
            requeue::run(&ctx, requeue::Action::Requeue, args).await
        }
        Command::DeadLetter(DeadLetter::Discard(args)) => {
            requeue::run(&ctx, requeue::Action::Discard, args).await
        }
        Command::Audit(Audit::List(args)) => admin::audit_list(&ctx, args).await,
        Command::Audit(Audit::Export(args)) => admin::audit_export(&ctx, args).await,
        Command::Audit(Audit::Verify) => admin::audit_verify(&ctx).await,
        Command::Metrics(args) => ops::metrics(&ctx, args).await,
        Command::Health => ops::health(&ctx).await,
    }
}
