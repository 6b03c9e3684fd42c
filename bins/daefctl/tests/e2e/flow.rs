//! The main flows: an analysis job through two workers, a failing task through the dead-letter
//! queue and back, and a worker stopping gracefully.

use std::time::Duration;

use daef_client::model::TaskFilter;
use daef_core::model::{JobId, JobStatus, TaskStatus};
use nix::sys::signal::Signal;

use crate::harness::{Gateway, Scratch, eventually};

#[tokio::test]
async fn an_analysis_job_runs_in_dependency_order_on_two_workers() {
    let scratch = Scratch::new("analyze");
    let gw = Gateway::start(&scratch, &[]).await;
    // Every task type runs one script that logs when it starts and ends, so the order is
    // visible across both workers.
    let order = scratch.path("order.log");
    let script = scratch.script(
        "step.sh",
        r#"echo "start $DAEF_TASK_ID" >> "$E2E_ORDER"; sleep 0.3; cat; echo "end $DAEF_TASK_ID" >> "$E2E_ORDER""#,
    );
    let commands = format!(
        "tool_execution={s};embedding={s};llm_inference={s}",
        s = script.display()
    );
    let vars = [
        ("DAEF_COMMANDS", commands),
        ("E2E_ORDER", order.display().to_string()),
    ];
    let _w1 = gw.worker(&scratch, "w-one", &vars);
    let _w2 = gw.worker(&scratch, "w-two", &vars);

    let out = gw
        .daefctl(
            None,
            &["submit", "--input", "Analyze 500 support tickets", "--wait"],
        )
        .await
        .code(0);
    let mut lines = out.stdout.lines();
    let job = JobId::new(lines.next().expect("the job id first"));
    let last = lines.last().expect("a final line");
    assert!(
        last.starts_with(&format!("{job} Completed; result file://")),
        "{last}"
    );
    assert!(last.ends_with("/t3-summarize.1.out"), "{last}");
    // The progress lines went to stderr.
    assert!(out.stderr.contains("t3-summarize: "), "{}", out.stderr);
    assert!(out.stderr.contains("job Completed"), "{}", out.stderr);
    // It followed the job's event stream, not by reading the tasks over and over.
    let metrics = gw.client(None).metrics().await.expect("metrics");
    let streams = metrics.counter_sum("http_requests_total", &[("route", "/v1/jobs/{id}/events")]);
    let task_reads =
        metrics.counter_sum("http_requests_total", &[("route", "/v1/jobs/{id}/tasks")]);
    assert_eq!((streams, task_reads), (1.0, 0.0));

    let log = std::fs::read_to_string(&order).expect("order log");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "start t1-split",
            "end t1-split",
            "start t2-embed",
            "end t2-embed",
            "start t3-summarize",
            "end t3-summarize"
        ]
    );
    // The result is the last step's stdout: its inputs, as the command read them on stdin.
    let result = last
        .rsplit_once("result ")
        .map(|(_, uri)| uri)
        .expect("uri");
    let body = std::fs::read_to_string(result.trim_start_matches("file://")).expect("result file");
    assert_eq!(body, r#"{"op":"summarize"}"#);

    let status = gw
        .daefctl(None, &["status", job.as_str(), "--json"])
        .await
        .code(0)
        .json();
    assert_eq!(status["job"]["status"], "Completed");
    let tasks = status["tasks"].as_array().expect("tasks");
    assert!(
        tasks
            .iter()
            .all(|t| t["status"] == "Completed" && t["attempt"] == 1),
        "{tasks:?}"
    );
    gw.daefctl(None, &["audit", "verify"]).await.code(0);
}

#[tokio::test]
async fn a_failing_task_is_dead_lettered_then_requeued_after_the_fix_and_completes() {
    let scratch = Scratch::new("deadletter");
    let gw = Gateway::start(&scratch, &[]).await;
    let flag = scratch.path("fixed");
    let script = scratch.script(
        "flaky.sh",
        r#"if [ -f "$E2E_FLAG" ]; then cat; else echo "fault: the database is down" >&2; exit 1; fi"#,
    );
    let vars = [
        (
            "DAEF_COMMANDS",
            format!("tool_execution={}", script.display()),
        ),
        ("E2E_FLAG", flag.display().to_string()),
    ];
    let _w1 = gw.worker(&scratch, "w-one", &vars);
    let _w2 = gw.worker(&scratch, "w-two", &vars);
    let tasks = scratch.path("tasks.json");
    std::fs::write(&tasks, r#"[{"task_id":"load","type":"tool_execution","inputs":{"table":"orders"},"max_retries":1}]"#)
        .expect("tasks file");

    // Two attempts fail; the job fails and daefctl says so with its exit code.
    let out = gw
        .daefctl(
            None,
            &[
                "submit",
                "--type",
                "etl",
                "--tasks",
                tasks.to_str().expect("path"),
                "--wait",
            ],
        )
        .await
        .code(3);
    let job = out.stdout.lines().next().expect("job id").to_owned();
    assert!(out.stdout.contains("Failed"), "{}", out.stdout);
    assert!(
        out.stderr.contains("→ Failed (attempt 2, dead-lettered: "),
        "{}",
        out.stderr
    );

    let dead = gw
        .daefctl(None, &["dead-letter", "list", "--json"])
        .await
        .code(0)
        .json();
    let dead = dead.as_array().expect("array");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["job_id"], job.as_str());
    assert_eq!(dead[0]["attempt"], 2);
    let error = dead[0]["error"].as_str().expect("error");
    assert!(
        error.ends_with("exited with exit status: 1; stderr: fault: the database is down"),
        "{error}"
    );
    let table = gw.daefctl(None, &["dead-letter", "list"]).await.code(0);
    assert!(
        table
            .stdout
            .contains(&format!("daefctl dead-letter requeue {job}/load")),
        "{}",
        table.stdout
    );

    let key = format!("{job}/load");
    let dry = gw
        .daefctl(None, &["dead-letter", "requeue", &key, "--dry-run"])
        .await
        .code(0);
    assert_eq!(
        dry.stdout.trim(),
        "dry run: 1 of 1 listed tasks are dead letters; nothing changed"
    );

    // Fix the fault, requeue for real, and the task completes on its third attempt.
    std::fs::write(&flag, "").expect("flag");
    let done = gw
        .daefctl(None, &["dead-letter", "requeue", &key])
        .await
        .code(0);
    assert_eq!(done.stdout.trim(), "requeued 1 of 1 listed tasks");
    let c = gw.client(None);
    let job_id = JobId::new(job.as_str());
    let info = eventually(
        "the requeued job to complete",
        Duration::from_secs(20),
        || async { c.job(&job_id).await.ok().filter(|j| j.status.is_terminal()) },
    )
    .await;
    assert_eq!(info.status, JobStatus::Completed, "{info:?}");
    let task = &c
        .tasks(&job_id, &TaskFilter::default())
        .await
        .expect("tasks")
        .tasks[0];
    assert_eq!((task.status, task.attempt), (TaskStatus::Completed, 3));
    assert!(
        gw.daefctl(None, &["dead-letter", "list", "--json"])
            .await
            .code(0)
            .json()
            .as_array()
            .expect("array")
            .is_empty()
    );

    // Every admin step is in the audit log, and the chain verifies on both sides.
    let audit = gw
        .daefctl(
            None,
            &["audit", "list", "--action", "dead_letter_requeue", "--json"],
        )
        .await
        .code(0)
        .json();
    let results: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["result"].as_str())
        .collect();
    assert_eq!(results, ["ok", "dry_run"], "newest first");
    let verify = gw.daefctl(None, &["audit", "verify"]).await.code(0);
    assert!(
        verify
            .stdout
            .starts_with("audit chain OK: 5 events re-verified here"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("gateway agrees"),
        "{}",
        verify.stdout
    );
    let csv = gw
        .daefctl(None, &["audit", "export", "--csv"])
        .await
        .code(0);
    assert_eq!(
        csv.stdout.lines().count(),
        6,
        "header and five events:\n{}",
        csv.stdout
    );
}

#[tokio::test]
async fn sigterm_lets_the_running_task_finish_before_the_worker_exits() {
    let scratch = Scratch::new("sigterm");
    let gw = Gateway::start(&scratch, &[]).await;
    let script = scratch.script("slow.sh", "sleep 1; cat");
    let mut worker = gw.worker(
        &scratch,
        "w-term",
        &[("DAEF_COMMANDS", format!("slow={}", script.display()))],
    );
    let tasks = scratch.path("tasks.json");
    std::fs::write(
        &tasks,
        r#"[{"task_id":"only","type":"slow","max_retries":0}]"#,
    )
    .expect("tasks file");
    let job = gw
        .daefctl(
            None,
            &[
                "submit",
                "--type",
                "t",
                "--tasks",
                tasks.to_str().expect("path"),
            ],
        )
        .await
        .code(0);
    let job = JobId::new(job.stdout.trim());
    let c = gw.client(None);
    eventually("the task to run", Duration::from_secs(10), || async {
        let tasks = c.tasks(&job, &TaskFilter::default()).await.ok()?;
        (tasks.tasks[0].status == TaskStatus::Running).then_some(())
    })
    .await;

    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", worker.log_tail(20));
    assert_eq!(c.job(&job).await.expect("job").status, JobStatus::Completed);
    assert!(
        worker.log().contains("finishing running tasks"),
        "{}",
        worker.log_tail(20)
    );
}
