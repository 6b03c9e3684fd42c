//! Issue 15 end to end, with real gateway and worker processes: a failed attempt is retried
//! only after its back-off, a delayed job starts at its time, and a periodic schedule run by
//! two replicas creates one job per tick, with one catch-up run after missed ticks.

use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{JobStatus, RetryBackoff};
use daef_core::transition;

use crate::harness::{Gateway, Scratch, eventually, fast_leases};

/// Reads `<unix seconds> <lease>` lines the task script appends.
fn starts(path: &std::path::Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (at, lease) = line.split_once(' ')?;
            Some((at.parse().ok()?, lease.to_owned()))
        })
        .collect()
}

/// A worker on `gw` whose `task_type` tasks append `<unix seconds> <lease>` to a log (read back
/// by [`starts`]) and succeed; the worker and the log's path.
fn recording_worker(
    gw: &Gateway,
    scratch: &Scratch,
    worker_id: &str,
    task_type: &str,
) -> (crate::harness::Proc, std::path::PathBuf) {
    let log = scratch.path("runs");
    let script = scratch.script(
        "record.sh",
        r#"echo "$(date +%s.%N) $DAEF_LEASE_ID" >> "$E2E_LOG"; cat"#,
    );
    let worker = gw.worker(
        scratch,
        worker_id,
        &[
            ("DAEF_COMMANDS", format!("{task_type}={}", script.display())),
            ("E2E_LOG", log.display().to_string()),
        ],
    );
    (worker, log)
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_back_off() {
    let scratch = Scratch::new("backoff");
    let gw = Gateway::start(&scratch, &fast_leases()).await;
    let log = scratch.path("attempts");
    let marker = scratch.path("failed-once");
    // Attempt 1 records its end and fails; attempt 2 records its start and succeeds.
    let script = scratch.script(
        "flaky.sh",
        r#"if [ ! -f "$E2E_MARKER" ]; then touch "$E2E_MARKER"; echo "$(date +%s.%N) $DAEF_LEASE_ID" >> "$E2E_LOG"; exit 1; fi
echo "$(date +%s.%N) $DAEF_LEASE_ID" >> "$E2E_LOG"; cat"#,
    );
    let _worker = gw.worker(
        &scratch,
        "w-retry",
        &[
            (
                "DAEF_COMMANDS",
                format!("tool_execution={}", script.display()),
            ),
            ("E2E_LOG", log.display().to_string()),
            ("E2E_MARKER", marker.display().to_string()),
        ],
    );
    let backoff = RetryBackoff {
        initial_ms: 1_500,
        max_ms: 1_500,
    };
    let job = gw
        .submit_tasks(
            &scratch,
            r#"[{"task_id":"flaky","type":"tool_execution","max_retries":2,"retry_backoff":{"initial_ms":1500,"max_ms":1500}}]"#,
            &[],
        )
        .await;
    let c = gw.client(None);
    let done = eventually("the job to finish", Duration::from_secs(20), || async {
        c.job(&job).await.ok().filter(|j| j.status.is_terminal())
    })
    .await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let attempts = starts(&log);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let (failed_at, first_lease) = &attempts[0];
    let (retried_at, _) = &attempts[1];
    // The wait the gateway drew for this failure, from its lease, as every store draws it.
    let wait = transition::backoff_delay(1, backoff, transition::jitter_of(first_lease));
    let waited = retried_at - failed_at;
    assert!(
        waited >= wait.as_secs_f64(),
        "retried after {waited:.3}s, before its back-off of {:.3}s",
        wait.as_secs_f64()
    );
    assert!(
        waited < wait.as_secs_f64() + 3.0,
        "retried {waited:.3}s later: long after its back-off of {:.3}s",
        wait.as_secs_f64()
    );
}

#[tokio::test]
async fn a_delayed_job_starts_at_its_time() {
    let scratch = Scratch::new("delay");
    let gw = Gateway::start(&scratch, &fast_leases()).await;
    let (_worker, log) = recording_worker(&gw, &scratch, "w-delay", "tool_execution");
    let submitted = Timestamp::now();
    let job = gw
        .submit_tasks(
            &scratch,
            r#"[{"task_id":"later","type":"tool_execution"}]"#,
            &["--delay-seconds", "2"],
        )
        .await;
    let c = gw.client(None);
    assert_eq!(c.job(&job).await.expect("job").status, JobStatus::Queued);
    let done = eventually(
        "the delayed job to finish",
        Duration::from_secs(15),
        || async { c.job(&job).await.ok().filter(|j| j.status.is_terminal()) },
    )
    .await;
    assert_eq!(done.status, JobStatus::Completed);
    let attempts = starts(&log);
    assert_eq!(attempts.len(), 1);
    let started = attempts[0].0;
    let submitted = submitted.unix_micros() as f64 / 1e6;
    assert!(
        started >= submitted + 2.0,
        "started {:.3}s after the submit, before its delay of 2s",
        started - submitted
    );
}

#[tokio::test]
async fn two_replicas_fire_each_tick_of_a_schedule_once() {
    let Some(schema) = daef_testenv::postgres::fresh_schema().await else {
        return;
    };
    let Some(redis) = daef_testenv::redis::test() else {
        return;
    };
    let scratch = Scratch::new("schedule-replicas");
    let mut vars = fast_leases();
    vars.extend([
        ("DAEF_STORE", "postgres".to_owned()),
        ("DAEF_POSTGRES_DSN", schema.dsn_with_search_path()),
        ("DAEF_QUEUE", "redis".to_owned()),
        ("DAEF_REDIS_ADDR", redis.addr().to_owned()),
        ("DAEF_REDIS_KEY", redis.key().to_owned()),
    ]);
    let a = Gateway::start(&scratch, &vars).await;
    let b = Gateway::start(&scratch, &vars).await;
    let (_worker, log) = recording_worker(&b, &scratch, "w-scheduled", "llm_inference");
    let created = a
        .daefctl(
            None,
            &[
                "--json",
                "schedule",
                "create",
                "every-minute",
                "--cron",
                "* * * * *",
                "--type",
                "chat",
                "--input",
                "tick",
            ],
        )
        .await
        .code(0)
        .json();
    assert_eq!(created["schedule_id"], "every-minute", "{created}");
    assert_eq!(created["paused"], false, "{created}");

    // Every gateway was down for three hours: both replicas find the schedule three hours
    // late at once, and one catch-up job comes of it.
    let db = daef_testenv::postgres::connect(&schema.dsn_with_search_path())
        .await
        .expect("connect");
    let missed = db
        .query_one(
            "UPDATE schedules SET next_fire_at = date_trunc('minute', now()) - interval '3 hours' \
             WHERE schedule_id = 'every-minute' \
             RETURNING (extract(epoch FROM next_fire_at) * 1000000)::bigint",
            &[],
        )
        .await
        .expect("make the schedule late");
    let missed = Timestamp::from_unix_micros(missed.get(0));
    let c = a.client(None);
    let scheduled = || async {
        let jobs = c.list_jobs(&Default::default()).await.expect("jobs").jobs;
        let mut ticks: Vec<Timestamp> = jobs
            .iter()
            .map(|j| {
                assert_eq!(j.schedule_id.as_deref(), Some("every-minute"), "{j:?}");
                j.scheduled_for.expect("a scheduled job has its tick")
            })
            .collect();
        ticks.sort();
        (jobs, ticks)
    };
    let (jobs, ticks) = eventually("the catch-up job", Duration::from_secs(20), || async {
        let (jobs, ticks) = scheduled().await;
        (!jobs.is_empty()).then_some((jobs, ticks))
    })
    .await;
    assert_eq!(
        ticks,
        [missed],
        "one catch-up job, for the oldest missed tick"
    );
    let after = b.client(None).schedule("every-minute").await.expect("read");
    let next = after.next_fire_at.expect("running");
    assert!(
        next > Timestamp::now(),
        "the missed ticks are skipped: {after:?}"
    );
    assert_eq!(after.last_job_id.as_ref(), Some(&jobs[0].job_id));
    eventually(
        "the catch-up job to run",
        Duration::from_secs(20),
        || async {
            c.job(&jobs[0].job_id)
                .await
                .ok()
                .filter(|j| j.status == JobStatus::Completed)
        },
    )
    .await;

    // The next tick, at most a minute away: one more job, for that tick, run by the worker.
    let (jobs, ticks) = eventually("the next tick's job", Duration::from_secs(75), || async {
        let (jobs, ticks) = scheduled().await;
        (jobs.len() >= 2).then_some((jobs, ticks))
    })
    .await;
    assert_eq!(ticks, [missed, next], "one job per tick");
    // Both replicas reconcile every 200 ms: give a duplicate the time to show if it could.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scheduled().await.1, [missed, next]);
    let newest = &jobs[0];
    eventually("the tick's job to run", Duration::from_secs(20), || async {
        c.job(&newest.job_id)
            .await
            .ok()
            .filter(|j| j.status == JobStatus::Completed)
    })
    .await;
    assert_eq!(starts(&log).len(), 2, "each job ran once");
    let runs: i64 = db
        .query_one("SELECT count(*) FROM schedule_runs", &[])
        .await
        .expect("count runs")
        .get(0);
    assert_eq!(runs, 2);

    // Paused through daefctl it shows as paused; deleted, it is gone and its jobs stay.
    let paused = b
        .daefctl(None, &["--json", "schedule", "pause", "every-minute"])
        .await
        .code(0)
        .json();
    assert_eq!(paused["paused"], true, "{paused}");
    assert!(paused["next_fire_at"].is_null(), "{paused}");
    let listed = a.daefctl(None, &["schedule", "list"]).await.code(0);
    assert!(listed.stdout.contains("every-minute"), "{}", listed.stdout);
    assert!(listed.stdout.contains("paused"), "{}", listed.stdout);
    a.daefctl(None, &["schedule", "delete", "every-minute"])
        .await
        .code(0);
    let gone = a.daefctl(None, &["schedule", "show", "every-minute"]).await;
    assert_ne!(gone.code, 0, "{}", gone.stdout);
    assert_eq!(scheduled().await.0.len(), 2, "its jobs stay");
}
