//! `https://`: the gateway behind a TLS-terminating proxy, as behind a production ingress, with
//! a certificate signed by a CA the test makes. daefctl and a worker reach it given the CA in
//! `DAEF_CA_FILE`; without it daefctl says why it cannot, and what to do.

use std::time::Duration;

use daef_testenv::tls::TestCa;

use crate::harness::{Gateway, Proc, Scratch, bin, daefctl_at, daefctl_with};

const TOKENS: &str = "wrk-secret:worker,acme-secret:tenant:acme";

#[tokio::test]
async fn daefctl_and_a_worker_reach_a_gateway_behind_tls_with_the_ca_file() {
    let scratch = Scratch::new("tls");
    let gw = Gateway::start(&scratch, &[("DAEF_API_TOKENS", TOKENS.to_owned())]).await;
    let ca = TestCa::new();
    let proxy = ca.terminate_tls_to(gw.addr()).await;
    let ca_file = scratch.path("ca.pem");
    ca.write_ca_pem(&ca_file);
    let url = format!("https://localhost:{}", proxy.port());
    let with_ca = [("DAEF_CA_FILE", ca_file.display().to_string())];

    let health = daefctl_with(&url, None, &with_ca, &["health", "--json"])
        .await
        .code(0)
        .json();
    assert_eq!(health["health"]["status"], "ok", "{health}");
    assert_eq!(health["ready"]["status"], "ready", "{health}");

    // A worker on the same https:// URL runs the job daefctl submits and follows (over the
    // event stream) through the proxy.
    let _worker = gw.worker(
        &scratch,
        "w-tls",
        &[
            ("DAEF_CONTROL_PLANE_URL", url.clone()),
            ("DAEF_CA_FILE", ca_file.display().to_string()),
            ("DAEF_API_TOKEN", "wrk-secret".to_owned()),
        ],
    );
    let out = daefctl_with(
        &url,
        Some("acme-secret"),
        &with_ca,
        &["submit", "--input", "over TLS", "--wait", "--json"],
    )
    .await
    .code(0);
    let job = out.json();
    assert_eq!(
        (job["status"].as_str(), job["tenant"].as_str()),
        (Some("Completed"), Some("acme")),
        "{job}"
    );
    // The token travelled encrypted: nothing to warn about.
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // Without the CA, the certificate is not trusted: a clear error and a hint, no panic.
    let out = daefctl_at(&url, None, &["health"]).await.code(1);
    assert!(
        out.stderr
            .contains("error: TLS with the gateway at https://localhost:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(out.stderr.contains("DAEF_CA_FILE"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    // A CA file that cannot be read stops daefctl before it sends anything, naming the variable.
    let missing = [(
        "DAEF_CA_FILE",
        scratch.path("missing.pem").display().to_string(),
    )];
    let out = daefctl_with(&url, None, &missing, &["health"])
        .await
        .code(2);
    assert!(
        out.stderr.contains("DAEF_CA_FILE: cannot read"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn both_programs_warn_about_a_token_over_plain_http_to_another_machine() {
    let scratch = Scratch::new("plain-http-token");
    // A tenant no header can carry makes the client's set-up fail after the warning, before
    // any connection: nothing leaves this machine.
    let url = "http://gw.example:8080";
    let warning = "warning: the API token is sent unencrypted: http://gw.example:8080 is plain \
                   http:// to another machine";
    let out = daefctl_with(
        url,
        Some("acme-secret"),
        &[("DAEF_TENANT", "a\nb".to_owned())],
        &["health"],
    )
    .await
    .code(1);
    assert!(out.stderr.starts_with(warning), "{}", out.stderr);
    assert!(!out.stderr.contains("acme-secret"), "{}", out.stderr);

    // The same for the worker, whose warning is a log line; its configuration error here is a
    // token a header cannot carry.
    let mut worker = Proc::spawn(
        "daef-worker",
        &bin("daef-worker"),
        &[],
        &[
            ("DAEF_CONTROL_PLANE_URL", url.to_owned()),
            ("DAEF_API_TOKEN", "wrk\nsecret".to_owned()),
            ("DAEF_OUTPUT_DIR", scratch.path("out").display().to_string()),
        ],
        scratch.path("worker.log"),
    );
    assert!(!worker.wait_exit(Duration::from_secs(20)).await.success());
    let log = worker.log();
    assert!(
        log.contains("the API token is sent unencrypted: http://gw.example:8080"),
        "{log}"
    );
    assert!(log.contains("DAEF_API_TOKEN"), "{log}");

    // Loopback is not another machine.
    let out = daefctl_with(
        "http://127.0.0.1:1",
        Some("acme-secret"),
        &[("DAEF_TENANT", "a\nb".to_owned())],
        &["health"],
    )
    .await
    .code(1);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}
