//! Issue 15 end to end, with real gateway and worker processes: a failed attempt is retried
//! only after its back-off, and a delayed job starts at its time.

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
    let log = scratch.path("attempts");
    let script = scratch.script(
        "record.sh",
        r#"echo "$(date +%s.%N) $DAEF_LEASE_ID" >> "$E2E_LOG"; cat"#,
    );
    let _worker = gw.worker(
        &scratch,
        "w-delay",
        &[
            (
                "DAEF_COMMANDS",
                format!("tool_execution={}", script.display()),
            ),
            ("E2E_LOG", log.display().to_string()),
        ],
    );
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
