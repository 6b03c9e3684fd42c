//! `submit`, `status`, `jobs`, `tasks`, `cancel`.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use daef_client::model::{JobFilter, JobInfo, JobSubmission, TaskFilter, TaskInfo, TaskSubmission};
use daef_core::model::{JobId, JobStatus};
use serde_json::json;

use crate::Ctx;
use crate::cli::{JobArgs, JobsArgs, Submit, TasksArgs};
use crate::explain::exit;
use crate::output::{self, Table, opt, short, time};
use crate::progress;

/// The job the options describe (its tasks file read), to start at once.
pub(crate) fn job_submission(args: JobArgs) -> anyhow::Result<JobSubmission> {
    let tasks = args.tasks.as_deref().map(read_tasks).transpose()?;
    Ok(JobSubmission {
        job_type: args.job_type,
        input: args.input,
        policy: args.policy,
        priority: args.priority.map(Into::into),
        tenant: args.tenant,
        tasks,
        run_at: None,
        delay_seconds: None,
    })
}

pub(crate) async fn submit(ctx: &Ctx, args: Submit) -> anyhow::Result<u8> {
    let job = JobSubmission {
        run_at: args.run_at,
        delay_seconds: args.delay_seconds,
        ..job_submission(args.job)?
    };
    let submitted = match &args.idempotency_key {
        Some(key) => ctx.client.submit_job_with_key(&job, key).await?,
        None => ctx.client.submit_job(&job).await?,
    };
    if !args.wait {
        if ctx.json {
            output::json(&submitted)?;
        } else {
            println!("{}", submitted.job_id);
        }
        return Ok(exit::OK);
    }
    if !ctx.json {
        // The id first, so `daefctl submit --wait | head -1` still gets it.
        println!("{}", submitted.job_id);
    }
    let timeout = args.wait_timeout.map(Duration::from_secs);
    let Some(job) = progress::follow(ctx, &submitted.job_id, timeout).await? else {
        eprintln!(
            "gave up waiting after {}s; the job is still running (`daefctl status {}`)",
            args.wait_timeout.unwrap_or_default(),
            submitted.job_id
        );
        return Ok(exit::WAIT_TIMED_OUT);
    };
    if ctx.json {
        output::json(&job)?;
    } else {
        println!("{}", final_line(&job));
    }
    Ok(if job.status == JobStatus::Completed {
        exit::OK
    } else {
        exit::JOB_NOT_COMPLETED
    })
}

/// `job-… Completed; result file://…` or `job-… Failed: why`.
fn final_line(job: &JobInfo) -> String {
    match (job.status, &job.result_artifact_uri, &job.message) {
        (JobStatus::Completed, Some(uri), _) => {
            format!("{} {}; result {uri}", job.job_id, job.status)
        }
        (status, _, Some(message)) => format!("{} {status}: {message}", job.job_id),
        (status, _, None) => format!("{} {status}", job.job_id),
    }
}

/// Tasks from a file or stdin: a JSON array of tasks, or an object with a `tasks` array.
fn read_tasks(path: &Path) -> anyhow::Result<Vec<TaskSubmission>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read tasks from stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    // An array, or the array wrapped as {"tasks": [...]} like a submit body. Deserialized on its
    // own rather than through an untagged enum, whose error would not say what is wrong (most
    // often a number in `inputs`).
    let list = match value {
        serde_json::Value::Object(mut wrapper) if wrapper.contains_key("tasks") => {
            wrapper.remove("tasks").unwrap_or_default()
        }
        other => other,
    };
    serde_json::from_value(list).with_context(|| {
        format!(
            "{} must hold a JSON array of tasks ({{task_id, type, inputs?, dependencies?, max_retries?, timeout_sec?}}; \
             inputs is an object of strings: \"rows\": \"500\", not 500)",
            path.display()
        )
    })
}

pub(crate) async fn status(ctx: &Ctx, job_id: &str) -> anyhow::Result<u8> {
    let id = JobId::new(job_id);
    let job = ctx.client.job(&id).await?;
    let tasks = ctx.client.tasks(&id, &TaskFilter::default()).await?;
    if ctx.json {
        output::json(&json!({"job": job, "tasks": tasks.tasks}))?;
        return Ok(exit::OK);
    }
    let mut head = Table::new(&["", ""]);
    let fields = [
        ("job", job.job_id.to_string()),
        ("status", job.status.to_string()),
        ("tenant", job.tenant.clone()),
        ("type", format!("{} ({})", job.job_type, job.priority)),
        ("policy", opt(job.policy.as_deref())),
        ("message", opt(job.message.as_deref())),
        ("result", opt(job.result_artifact_uri.as_deref())),
        ("created", time(job.created_at)),
        ("updated", time(job.updated_at)),
    ];
    for (name, value) in fields {
        head.row(vec![name.to_owned(), value]);
    }
    // The header row of a key/value table is empty; skip it.
    print!(
        "{}",
        head.render().split_once('\n').map_or("", |(_, rest)| rest)
    );
    println!();
    task_table(&tasks.tasks).print("no tasks");
    Ok(exit::OK)
}

pub(crate) async fn jobs(ctx: &Ctx, args: JobsArgs) -> anyhow::Result<u8> {
    let filter = JobFilter {
        status: args.status,
        tenant: args.tenant,
        limit: args.limit,
        offset: args.offset,
    };
    let list = ctx.client.list_jobs(&filter).await?;
    if ctx.json {
        output::json(&list)?;
        return Ok(exit::OK);
    }
    let mut table = Table::new(&[
        "JOB", "TENANT", "TYPE", "STATUS", "CREATED", "UPDATED", "MESSAGE",
    ]);
    for job in &list.jobs {
        table.row(vec![
            job.job_id.to_string(),
            job.tenant.clone(),
            job.job_type.clone(),
            job.status.to_string(),
            time(job.created_at),
            time(job.updated_at),
            job.message
                .as_deref()
                .map_or_else(|| "-".to_owned(), |m| short(m, 80)),
        ]);
    }
    table.print("no jobs");
    if list.returned < list.total {
        println!(
            "({} of {} jobs from offset {}; use --limit/--offset for more)",
            list.returned, list.total, list.offset
        );
    }
    Ok(exit::OK)
}

pub(crate) async fn tasks(ctx: &Ctx, args: TasksArgs) -> anyhow::Result<u8> {
    let filter = TaskFilter {
        status: args.status,
        worker_id: args.worker_id,
        limit: args.limit,
        offset: args.offset,
    };
    let list = ctx.client.tasks(&JobId::new(args.job_id), &filter).await?;
    if ctx.json {
        output::json(&list)?;
        return Ok(exit::OK);
    }
    task_table(&list.tasks).print("no matching tasks");
    if list.returned < list.total {
        println!(
            "({} of {} tasks; use --limit/--offset for more)",
            list.returned, list.total
        );
    }
    Ok(exit::OK)
}

fn task_table(tasks: &[TaskInfo]) -> Table {
    let mut table = Table::new(&[
        "TASK",
        "TYPE",
        "STATUS",
        "ATTEMPT",
        "WORKER",
        "DEPENDS ON",
        "UPDATED",
        "OUTPUT / ERROR",
    ]);
    for t in tasks {
        let detail = match (&t.output_artifact_uri, &t.error) {
            (Some(uri), _) if t.status == daef_core::model::TaskStatus::Completed => uri.clone(),
            (_, Some(err)) => short(err, 100),
            (Some(uri), None) => uri.clone(),
            (None, None) => "-".to_owned(),
        };
        let deps = if t.dependencies.is_empty() {
            "-".to_owned()
        } else {
            t.dependencies.join(",")
        };
        table.row(vec![
            t.task_id.clone(),
            t.task_type.clone(),
            t.status.to_string(),
            t.attempt.to_string(),
            opt(t.worker_id.as_deref()),
            deps,
            time(t.updated_at),
            detail,
        ]);
    }
    table
}

pub(crate) async fn cancel(ctx: &Ctx, job_id: &str) -> anyhow::Result<u8> {
    let id = JobId::new(job_id);
    let outcome = ctx.client.cancel_job(&id).await?;
    if ctx.json {
        output::json(&outcome)?;
    } else if outcome.accepted {
        println!("{id} canceled");
    } else {
        let job = ctx.client.job(&id).await?;
        println!("{id} had already ended ({}); nothing to cancel", job.status);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_files_are_arrays_or_wrapped_arrays() {
        let dir = std::env::temp_dir().join(format!("daefctl-tasks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.json");
        std::fs::write(&list, r#"[{"task_id":"a","type":"t"},{"task_id":"b","type":"t","dependencies":["a"],"max_retries":0}]"#).unwrap();
        let wrapped = dir.join("wrapped.json");
        std::fs::write(
            &wrapped,
            r#"{"tasks":[{"task_id":"a","type":"t","inputs":{"k":"v"}}]}"#,
        )
        .unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"task_id":"a"}"#).unwrap();

        let tasks = read_tasks(&list).unwrap();
        assert_eq!(tasks[1].dependencies, ["a"]);
        assert_eq!(tasks[1].max_retries, Some(0));
        assert_eq!(read_tasks(&wrapped).unwrap()[0].inputs["k"], "v");
        let err = format!("{:#}", read_tasks(&bad).unwrap_err());
        assert!(err.contains("must hold a JSON array of tasks"), "{err}");
        // The mistake newcomers make: a number among the inputs. The error says which value.
        let number = dir.join("number.json");
        std::fs::write(
            &number,
            r#"[{"task_id":"a","type":"t","inputs":{"rows":500}}]"#,
        )
        .unwrap();
        let err = format!("{:#}", read_tasks(&number).unwrap_err());
        assert!(err.contains("inputs is an object of strings"), "{err}");
        assert!(
            err.contains("invalid type: integer `500`, expected a string"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
