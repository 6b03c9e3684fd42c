//! A worker killed mid-task: its lease lapses and another worker finishes the task.

use std::time::Duration;

use daef_client::model::TaskFilter;
use daef_core::model::{JobStatus, TaskStatus};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::harness::{Gateway, Scratch, eventually, fast_leases};

#[tokio::test]
async fn a_killed_workers_lease_lapses_and_another_worker_finishes_the_task() {
    let scratch = Scratch::new("lease");
    let gw = Gateway::start(&scratch, &fast_leases()).await;
    // On worker `w-doomed` the task hangs (and records its pid, so the orphan can be cleaned
    // up); on any other worker it finishes at once.
    let pids = scratch.path("pids");
    let script = scratch.script(
        "task.sh",
        r#"if [ "$E2E_NAME" = doomed ]; then echo $$ >> "$E2E_PIDS"; sleep 60; fi; cat"#,
    );
    let command = (
        "DAEF_COMMANDS",
        format!("tool_execution={}", script.display()),
    );
    let pid_file = ("E2E_PIDS", pids.display().to_string());
    let doomed = gw.worker(
        &scratch,
        "w-doomed",
        &[
            command.clone(),
            pid_file.clone(),
            ("E2E_NAME", "doomed".into()),
        ],
    );

    let job = gw
        .submit_tasks(
            &scratch,
            r#"[{"task_id":"work","type":"tool_execution","max_retries":2,"timeout_sec":600}]"#,
            &[],
        )
        .await;
    let c = gw.client(None);
    let running = eventually(
        "the doomed worker to start the task",
        Duration::from_secs(10),
        || async {
            let task = c
                .tasks(&job, &TaskFilter::default())
                .await
                .ok()?
                .tasks
                .into_iter()
                .next()?;
            (task.status == TaskStatus::Running).then_some(task)
        },
    )
    .await;
    assert_eq!(
        (running.worker_id.as_deref(), running.attempt),
        (Some("w-doomed"), 1)
    );

    // SIGKILL: no report, no more heartbeats. The rescuer starts only now, so only it can
    // pick the task up once the lease lapses.
    doomed.signal(Signal::SIGKILL);
    drop(doomed);
    let _rescuer = gw.worker(
        &scratch,
        "w-rescuer",
        &[command, pid_file, ("E2E_NAME", "rescuer".into())],
    );
    let done = eventually(
        "the job to finish on the other worker",
        Duration::from_secs(30),
        || async { c.job(&job).await.ok().filter(|j| j.status.is_terminal()) },
    )
    .await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let task = &c
        .tasks(&job, &TaskFilter::default())
        .await
        .expect("tasks")
        .tasks[0];
    assert_eq!(
        (task.worker_id.as_deref(), task.attempt),
        (Some("w-rescuer"), 2),
        "{task:?}"
    );
    let expired = c
        .metrics()
        .await
        .expect("metrics")
        .counter_sum("lease_expired_total", &[]);
    assert!(expired >= 1.0, "lease_expired_total = {expired}");

    // The hung task of the killed worker leads its own process group; end the group.
    for pid in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
