//! Every failure the gateway can answer with arrives as its typed variant with the gateway's
//! message; failures without an answer are `Transport` or `Timeout`.

use std::time::Duration;

use daef_client::model::{JobFilter, JobSubmission, TaskKey};
use daef_client::{Client, ClientConfig, Error};
use daef_core::model::JobId;
use daef_http::{AdminLimits, HttpConfig};

use crate::gateway::{Gateway, TOKENS};

#[tokio::test]
async fn auth_failures() {
    let gw = Gateway::with_auth().await;
    let anonymous = gw.client(None);
    assert!(
        matches!(anonymous.list_jobs(&JobFilter::default()).await, Err(Error::Unauthorized(m)) if m == "missing bearer token")
    );
    let wrong = gw.client(Some("nope"));
    assert!(
        matches!(wrong.list_jobs(&JobFilter::default()).await, Err(Error::Unauthorized(m)) if m == "invalid token")
    );
    // Health needs no token.
    assert_eq!(anonymous.health().await.unwrap().status, "ok");

    let acme = gw.client(Some("acme"));
    assert!(
        matches!(acme.verify_audit().await, Err(Error::Forbidden(m)) if m.starts_with("missing required scope"))
    );
    let job = acme
        .submit_job(&JobSubmission::new("chat", "hi"))
        .await
        .unwrap()
        .job_id;
    assert_eq!(acme.job(&job).await.unwrap().tenant, "acme");
    let beta = gw.client(Some("beta"));
    assert!(
        matches!(beta.job(&job).await, Err(Error::NotFound(m)) if m == "job not found"),
        "another tenant's job is answered as a missing one"
    );
    assert!(
        matches!(acme.job(&JobId::new("job-nope")).await, Err(Error::NotFound(m)) if m == "job not found")
    );
    assert!(gw.client(Some("op")).verify_audit().await.unwrap().ok);
}

#[tokio::test]
async fn tenant_header_sets_the_default_tenant() {
    let gw = Gateway::start().await;
    let c = gw.client_with(ClientConfig {
        tenant: Some("globex".into()),
        ..ClientConfig::default()
    });
    let job = c
        .submit_job(&JobSubmission::new("chat", "hi"))
        .await
        .unwrap()
        .job_id;
    assert_eq!(c.job(&job).await.unwrap().tenant, "globex");
}

#[tokio::test]
async fn body_limit_rate_limit_and_validation() {
    let admin = AdminLimits {
        rate_limit_per_min: 1,
        ..AdminLimits::default()
    };
    let gw = Gateway::with(
        Some(TOKENS),
        HttpConfig {
            max_body_bytes: 200,
            admin,
        },
    )
    .await;
    let op = gw.client(Some("op"));
    let big = JobSubmission::new("chat", "x".repeat(500));
    assert!(
        matches!(op.submit_job(&big).await, Err(Error::PayloadTooLarge(m)) if m == "request body exceeds 200 bytes")
    );
    let missing_input = JobSubmission {
        input: None,
        ..JobSubmission::new("chat", "")
    };
    assert!(
        matches!(op.submit_job(&missing_input).await, Err(Error::BadRequest(m)) if m == "input is required")
    );

    let keys = [TaskKey {
        job_id: JobId::new("job-x"),
        task_id: "t1".into(),
    }];
    op.requeue_dead_letters(&keys, false, None).await.unwrap();
    match op.requeue_dead_letters(&keys, false, None).await {
        Err(Error::RateLimited {
            retry_after_secs: Some(secs),
            msg,
        }) => {
            assert!((1..=60).contains(&secs));
            assert_eq!(msg, "requeue rate limit exceeded");
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[tokio::test]
async fn confirmation_token_goes_in_its_header() {
    let admin = AdminLimits {
        confirm_threshold: 1,
        confirm_token: Some("yes-really".into()),
        ..AdminLimits::default()
    };
    let gw = Gateway::with(
        None,
        HttpConfig {
            admin,
            ..HttpConfig::default()
        },
    )
    .await;
    let c = gw.client(None);
    let keys = [TaskKey {
        job_id: JobId::new("job-x"),
        task_id: "t1".into(),
    }];
    // A real requeue needs the token; a dry run changes nothing and needs none.
    let refused = c.requeue_dead_letters(&keys, false, None).await;
    assert!(
        matches!(refused, Err(Error::BadRequest(m)) if m == "confirmation token required for large requeue")
    );
    let wrong = c.requeue_dead_letters(&keys, false, Some("no")).await;
    assert!(matches!(wrong, Err(Error::BadRequest(_))));
    assert_eq!(
        c.requeue_dead_letters(&keys, false, Some("yes-really"))
            .await
            .unwrap()
            .requeued,
        0
    );
    assert_eq!(
        c.requeue_dead_letters(&keys, true, None)
            .await
            .unwrap()
            .requeued,
        0
    );
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Client::connect(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let err = c.health().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.status(), None);
}

#[tokio::test]
async fn a_gateway_that_never_answers_times_out() {
    // Accepts connections and reads nothing: the request is sent but no answer comes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let c = Client::new(ClientConfig {
        base_url: format!("http://{addr}"),
        timeout,
        ..ClientConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = c.health().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(t) if t == timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}
