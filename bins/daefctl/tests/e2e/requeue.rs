//! `dead-letter requeue --all` against a gateway that takes fewer tasks per request, and fewer
//! requests per minute, than there are dead letters.

use std::time::Duration;

use daef_client::Client;
use daef_client::model::{JobSubmission, Registration, ReportStatus, TaskReport, TaskSubmission};

use crate::harness::{Gateway, Proc, Scratch, bin, eventually};

/// Submits `count` one-task jobs without retries and, playing the worker, fails each task once:
/// `count` dead letters.
async fn dead_letters(c: &Client, count: usize) {
    for i in 0..count {
        c.submit_job(&JobSubmission {
            job_type: "etl".into(),
            tasks: Some(vec![TaskSubmission {
                task_id: format!("load-{i}"),
                task_type: "tool_execution".into(),
                max_retries: Some(0),
                ..TaskSubmission::default()
            }]),
            ..JobSubmission::default()
        })
        .await
        .expect("submit");
    }
    c.register_worker(&Registration {
        worker_id: "w-fails".into(),
        ..Registration::default()
    })
    .await
    .expect("register");
    let mut failed = 0;
    while failed < count {
        for a in c.poll("w-fails", 100).await.expect("poll") {
            c.report(&TaskReport {
                worker_id: "w-fails".into(),
                job_id: a.job_id,
                task_id: a.task_id,
                lease_id: a.lease_id,
                idempotency_key: None,
                status: ReportStatus::Failed,
                output_artifact_uri: None,
                error: Some("the database is down".into()),
                duration_millis: None,
            })
            .await
            .expect("report");
            failed += 1;
        }
    }
    assert_eq!(
        c.dead_letters(Some(100)).await.expect("dead letters").len(),
        count
    );
}

#[tokio::test]
async fn requeue_all_sends_batches_the_gateway_takes_until_none_is_left() {
    let scratch = Scratch::new("requeue-batches");
    let gw = Gateway::start(&scratch, &[("DAEF_ADMIN_REQUEUE_MAX_BATCH", "3".into())]).await;
    let c = gw.client(None);
    dead_letters(&c, 7).await;

    // No flags: daefctl starts at the gateway's default (100), is told 3, and carries on.
    let dry = gw
        .daefctl(
            None,
            &["dead-letter", "requeue", "--all", "--dry-run", "--json"],
        )
        .await
        .code(0)
        .json();
    assert_eq!(
        dry,
        serde_json::json!({"dry_run": true, "requested": 7, "requeued": 7})
    );
    assert_eq!(c.dead_letters(Some(100)).await.expect("list").len(), 7);

    let done = gw
        .daefctl(None, &["dead-letter", "requeue", "--all"])
        .await
        .code(0);
    assert_eq!(
        done.stdout.trim(),
        "requeued 7 of 7 listed tasks in 3 batches"
    );
    assert!(
        done.stderr.contains("sending batches of 3"),
        "{}",
        done.stderr
    );
    assert!(c.dead_letters(Some(100)).await.expect("list").is_empty());

    // Nothing left: said so, with the same JSON shape.
    let empty = gw
        .daefctl(None, &["dead-letter", "requeue", "--all", "--json"])
        .await
        .code(0)
        .json();
    assert_eq!(
        empty,
        serde_json::json!({"dry_run": false, "requested": 0, "requeued": 0})
    );

    // The gateway saw each oversize request refused, then batches of 3, 3 and 1.
    let audit = gw
        .daefctl(
            None,
            &["audit", "list", "--action", "dead_letter_requeue", "--json"],
        )
        .await
        .code(0)
        .json();
    let seen: Vec<(String, u64)> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .map(|e| {
            (
                e["result"].as_str().expect("result").to_owned(),
                e["requested"].as_u64().expect("requested"),
            )
        })
        .collect();
    let expected = [
        ("rejected", 7),
        ("dry_run", 3),
        ("dry_run", 3),
        ("dry_run", 1),
        ("rejected", 7),
        ("ok", 3),
        ("ok", 3),
        ("ok", 1),
    ]
    .map(|(r, n)| (r.to_owned(), n));
    assert_eq!(seen, expected, "oldest first");
}

/// The gateway's rate-limit window is a minute, so waiting a `429` out takes most of one: this
/// checks that daefctl waits the `Retry-After` it was given (instead of failing) and says so,
/// then stops it. That the same batch is sent again after the wait, and that waits are
/// bounded, is covered by the unit tests of `requeue`.
#[tokio::test]
async fn requeue_all_waits_out_a_rate_limit_instead_of_failing() {
    let scratch = Scratch::new("requeue-429");
    let gw = Gateway::start(
        &scratch,
        &[("DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN", "1".into())],
    )
    .await;
    let c = gw.client(None);
    dead_letters(&c, 5).await;

    let mut daefctl = Proc::spawn(
        "daefctl",
        &bin("daefctl"),
        &["dead-letter", "requeue", "--all", "--batch-size", "2"],
        &[("DAEF_CONTROL_PLANE_URL", gw.url.clone())],
        scratch.path("daefctl.log"),
    );
    let waiting = eventually(
        "daefctl to report the rate limit",
        Duration::from_secs(20),
        || {
            let log = daefctl.log();
            async move {
                log.lines()
                    .find(|l| l.contains("rate limited"))
                    .map(str::to_owned)
            }
        },
    )
    .await;
    assert!(
        waiting.contains("rate limited (requeue rate limit exceeded): waiting "),
        "{waiting}"
    );
    assert!(
        waiting.contains("then sending batch 2 again (1 of at most 5 waits)"),
        "{waiting}"
    );
    let secs: u64 = waiting
        .split("waiting ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {waiting:?}"));
    assert!((50..=60).contains(&secs), "the Retry-After, {secs}s");
    // It is waiting, not failed: the first batch went through and nothing else yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daefctl.exited().is_none(), "{}", daefctl.log());
    assert_eq!(c.dead_letters(Some(100)).await.expect("list").len(), 3);
}
