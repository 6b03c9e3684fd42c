//! With tokens on: workers and tenants do their parts, and daefctl explains each refusal with
//! what to do next.

use crate::harness::{Gateway, Scratch, daefctl_at, free_port};

const TOKENS: &str =
    "op-secret:operator,wrk-secret:worker,acme-secret:tenant:acme,beta-secret:tenant:beta";

#[tokio::test]
async fn refusals_are_explained_and_scoped_tokens_work_end_to_end() {
    let scratch = Scratch::new("auth");
    let gw = Gateway::start(
        &scratch,
        &[
            ("DAEF_API_TOKENS", TOKENS.to_owned()),
            ("DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN", "1".to_owned()),
        ],
    )
    .await;
    let _worker = gw.worker(
        &scratch,
        "w-auth",
        &[("DAEF_API_TOKEN", "wrk-secret".to_owned())],
    );

    // A tenant submits and waits; the worker, with its own token, runs the task.
    let out = gw
        .daefctl(
            Some("acme-secret"),
            &["submit", "--input", "hello", "--wait", "--json"],
        )
        .await
        .code(0);
    let job = out.json();
    assert_eq!(
        (job["status"].as_str(), job["tenant"].as_str()),
        (Some("Completed"), Some("acme"))
    );
    let job_id = job["job_id"].as_str().expect("job id").to_owned();

    // 401: no token.
    let none = gw.daefctl(None, &["jobs"]).await.code(1);
    assert!(
        none.stderr
            .contains("error: 401 unauthorized: missing bearer token"),
        "{}",
        none.stderr
    );
    assert!(
        none.stderr.contains("hint: ") && none.stderr.contains("DAEF_API_TOKEN"),
        "{}",
        none.stderr
    );
    let wrong = gw.daefctl(Some("guess"), &["jobs"]).await.code(1);
    assert!(
        wrong.stderr.contains("401 unauthorized: invalid token"),
        "{}",
        wrong.stderr
    );

    // 403: a tenant token on an operator command; 404: another tenant's job.
    let scope = gw
        .daefctl(Some("acme-secret"), &["audit", "verify"])
        .await
        .code(1);
    assert!(
        scope
            .stderr
            .contains("403 forbidden: missing required scope"),
        "{}",
        scope.stderr
    );
    assert!(scope.stderr.contains("need `operator`"), "{}", scope.stderr);
    let other = gw
        .daefctl(Some("beta-secret"), &["status", &job_id])
        .await
        .code(1);
    // Another tenant's job is answered as a missing one: no existence oracle.
    assert!(
        other.stderr.contains("404 not found: job not found"),
        "{}",
        other.stderr
    );
    assert!(
        other.stderr.contains("its own tenant's jobs"),
        "{}",
        other.stderr
    );

    // 404: an unknown job.
    let missing = gw
        .daefctl(Some("op-secret"), &["status", "job-does-not-exist"])
        .await
        .code(1);
    assert!(
        missing.stderr.contains("404 not found: job not found"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("daefctl jobs"),
        "{}",
        missing.stderr
    );

    // 429: the second requeue within a minute.
    let key = format!("{job_id}/t1");
    gw.daefctl(Some("op-secret"), &["dead-letter", "requeue", &key])
        .await
        .code(0);
    let limited = gw
        .daefctl(Some("op-secret"), &["dead-letter", "requeue", &key])
        .await
        .code(1);
    assert!(
        limited
            .stderr
            .contains("429 rate limited: requeue rate limit exceeded"),
        "{}",
        limited.stderr
    );
    assert!(
        limited.stderr.contains("hint: retry in "),
        "{}",
        limited.stderr
    );

    // Nothing listening: named, with the variable to fix.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let unreachable = daefctl_at(&nowhere, None, &["jobs"]).await.code(1);
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the gateway at {nowhere}")),
        "{}",
        unreachable.stderr
    );
    assert!(
        unreachable.stderr.contains("DAEF_CONTROL_PLANE_URL"),
        "{}",
        unreachable.stderr
    );

    // The operator's view of the log: the forbidden audit read and both requeues, verified.
    let verify = gw
        .daefctl(Some("op-secret"), &["audit", "verify"])
        .await
        .code(0);
    assert!(
        verify.stdout.starts_with("audit chain OK: 3 events"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("gateway agrees"),
        "{}",
        verify.stdout
    );
}
