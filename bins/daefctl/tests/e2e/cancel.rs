//! Issue 15 end to end: canceling a job reaches the attempt that runs it (the worker learns it
//! from its next heartbeat, kills the command's process group, and reports nothing), and a
//! submit repeated with its `Idempotency-Key` names the first job.

use std::time::Duration;

use daef_client::model::TaskFilter;
use daef_core::model::{JobStatus, TaskStatus};

use crate::harness::{Gateway, Scratch, eventually, fast_leases};

#[tokio::test]
async fn canceling_a_job_stops_its_running_command() {
    let scratch = Scratch::new("cancel");
    let gw = Gateway::start(&scratch, &fast_leases()).await;
    // The command records its pid and its child's, then would run for a minute.
    let pids = scratch.path("pids");
    let script = scratch.script(
        "long.sh",
        r#"sleep 60 & echo "$$ $!" > "$E2E_PIDS"; wait; cat"#,
    );
    let worker = gw.worker(
        &scratch,
        "w-long",
        &[
            (
                "DAEF_COMMANDS",
                format!("tool_execution={}", script.display()),
            ),
            ("E2E_PIDS", pids.display().to_string()),
        ],
    );
    let job = gw
        .submit_tasks(
            &scratch,
            r#"[{"task_id":"long","type":"tool_execution","max_retries":0,"timeout_sec":600}]"#,
            &[],
        )
        .await;
    let c = gw.client(None);
    let running: Vec<i32> = eventually("the command to start", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&pids).ok()?;
        let pids: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        (pids.len() == 2).then_some(pids)
    })
    .await;
    let task = &c
        .tasks(&job, &TaskFilter::default())
        .await
        .expect("tasks")
        .tasks[0];
    assert_eq!(task.status, TaskStatus::Running);

    gw.daefctl(None, &["cancel", job.as_str()]).await.code(0);
    // The next heartbeat (every second here) names the lease; the worker kills the group.
    for pid in running {
        eventually(
            "the command and its child to be killed",
            Duration::from_secs(10),
            || async { (!alive(pid)).then_some(()) },
        )
        .await;
    }
    // Nothing was reported: the task stays as the cancel left it, and the worker says why.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job_now = c.job(&job).await.expect("job");
    assert_eq!(job_now.status, JobStatus::Canceled);
    let task = &c
        .tasks(&job, &TaskFilter::default())
        .await
        .expect("tasks")
        .tasks[0];
    assert_eq!(
        (
            task.status,
            task.error.as_deref(),
            task.output_artifact_uri.as_deref()
        ),
        (TaskStatus::Canceled, None, None),
        "{task:?}"
    );
    let reports = c
        .metrics()
        .await
        .expect("metrics")
        .counter_sum("task_reports_total", &[]);
    assert_eq!(reports, 0.0, "the worker reported nothing");
    assert!(
        worker.log().contains("task stopped; nothing reported"),
        "{}",
        worker.log_tail(20)
    );
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

#[tokio::test]
async fn submitting_again_with_the_same_idempotency_key_prints_the_first_job() {
    let scratch = Scratch::new("idempotent");
    let gw = Gateway::start(&scratch, &fast_leases()).await;
    let submit = |input: &'static str| {
        let gw = &gw;
        async move {
            gw.daefctl(
                None,
                &[
                    "submit",
                    "--input",
                    input,
                    "--idempotency-key",
                    "nightly-2026-12-06",
                ],
            )
            .await
        }
    };
    let first = submit("report").await.code(0).stdout;
    let again = submit("report").await.code(0).stdout;
    assert_eq!(first.trim(), again.trim());
    let other = submit("another body").await.code(1);
    assert!(
        other.stderr.contains("with another body"),
        "{}",
        other.stderr
    );
    let jobs = gw
        .client(None)
        .list_jobs(&Default::default())
        .await
        .expect("jobs");
    assert_eq!(jobs.total, 1);
}
