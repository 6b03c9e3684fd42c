//! Pre-loading a Postgres store with finished jobs, straight through the store adapter.
//!
//! Running a million tasks through HTTP first would take longer than the measurement itself;
//! only the measured phase has to go through the gateway. Each record is made by the same
//! lifecycle functions the gateway applies (create, assign, complete), so the stored rows look
//! exactly like those of a job that ran, and is written with the adapter's own `insert_job`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use daef_core::model::{Priority, Report, ReportStatus};
use daef_core::planner::JobSpec;
use daef_core::ports::Store;
use daef_core::transition::{self, Timing};
use daef_core::{Timestamp, model};
use daef_store::PostgresStore;
use daef_store::postgres::PostgresOptions;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::gateway::dsn_with_options;

/// Concurrent insert loops (and pool connections).
const LOADERS: usize = 8;

/// A finished one-task job, as a run through the gateway leaves it.
pub(crate) fn finished_job(label: &str, i: u64, now: Timestamp) -> (model::Job, Vec<model::Task>) {
    let timing = Timing::default();
    let spec = JobSpec {
        job_type: "bench".to_owned(),
        input: format!("{label} {i}"),
        priority: Priority::Interactive,
        ..JobSpec::default()
    };
    let (mut job, mut tasks) = transition::create_job(&spec, "default", now, timing)
        .unwrap_or_else(|e| unreachable!("the default planner accepts every input: {e}"));
    let worker = "bench-preload";
    let mut completed = 0;
    for task in &mut tasks {
        let nonce = transition::lease_nonce();
        let Ok(assignment) = transition::assign(&mut job, task, worker, &nonce, now, timing) else {
            continue;
        };
        let report = Report {
            worker_id: worker.to_owned(),
            task: task.task_ref(),
            lease_id: assignment.lease_id,
            idempotency_key: Some(format!("{worker}-{i}")),
            status: ReportStatus::Completed,
            output_artifact_uri: Some(format!("bench://{}/{}", job.job_id, task.task_id)),
            error: None,
            duration_millis: Some(0),
        };
        transition::apply_report(task, &report, true, now, timing);
        completed += 1;
    }
    for _ in 0..completed {
        let sink = tasks
            .iter()
            .find(|t| t.task_id == job.sink_task_id)
            .and_then(|t| t.output_artifact_uri.clone());
        transition::job_task_completed(&mut job, sink.as_deref(), now);
    }
    (job, tasks)
}

/// Inserts `count` finished jobs into `schema`. Commits are asynchronous
/// (`synchronous_commit=off`) for this session only: the rows are as durable as the benchmark
/// needs, and a million of them load in minutes instead of a quarter of an hour.
pub(crate) async fn postgres(
    dsn: &str,
    schema: &str,
    label: &str,
    count: u64,
) -> anyhow::Result<()> {
    let dsn = dsn_with_options(dsn, &["synchronous_commit=off".to_owned()])?;
    let store = PostgresStore::connect_with(
        &dsn,
        &PostgresOptions {
            schema: Some(schema.to_owned()),
            max_connections: LOADERS,
            ..PostgresOptions::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("connecting for the pre-load: {e}"))?;
    let store = Arc::new(store);
    let bar = ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(
            "pre-load [{elapsed_precise}] {wide_bar} {pos}/{len} jobs ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::with_capacity(LOADERS);
    for _ in 0..LOADERS {
        let store = Arc::clone(&store);
        let next = Arc::clone(&next);
        let bar = bar.clone();
        let label = label.to_owned();
        loaders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let (job, tasks) = finished_job(&label, i, Timestamp::now());
                store
                    .insert_job(&job, &tasks)
                    .await
                    .map_err(|e| anyhow::anyhow!("pre-loading job {i}: {e}"))?;
                bar.inc(1);
            }
        }));
    }
    for loader in loaders {
        loader.await.context("a pre-load loop panicked")??;
    }
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use daef_core::model::{JobStatus, TaskStatus};

    #[test]
    fn preloaded_jobs_look_finished() {
        let (job, tasks) = finished_job("preload", 7, Timestamp::now());
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.input, "preload 7");
        assert_eq!(job.completed_tasks, 1);
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(task.attempt, 1);
        assert!(task.lease_id.is_some() && task.last_report_lease == task.lease_id);
        assert_eq!(job.result_artifact_uri, task.output_artifact_uri);
        assert!(task.redispatch_at.is_none() && task.lease_expires.is_none());
    }
}
