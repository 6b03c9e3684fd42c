//! The job event stream over a socket: every change arrives as a typed event, `End` closes it,
//! errors come before it opens, keep-alives hold an idle stream open, silence times it out.

use std::time::Duration;

use daef_client::model::{JobSubmission, Registration, ReportStatus, TaskReport};
use daef_client::{ClientConfig, Error, JobEvent, JobEvents};
use daef_core::model::{JobId, JobStatus, TaskStatus};
use daef_http::{EventStreamConfig, HttpConfig};

use crate::gateway::{Gateway, TOKENS};

fn fast(keep_alive: Duration) -> EventStreamConfig {
    EventStreamConfig {
        poll_interval: Duration::from_millis(10),
        keep_alive,
    }
}

async fn next(events: &mut JobEvents) -> JobEvent {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5s")
        .expect("a readable stream")
        .expect("the stream is still open")
}

#[tokio::test]
async fn a_job_is_followed_from_submit_to_end() {
    let gw = Gateway::with_events(None, HttpConfig::default(), fast(Duration::from_secs(60))).await;
    let c = gw.client(None);
    let job = c
        .submit_job(&JobSubmission::new("chat", "hello"))
        .await
        .expect("submit")
        .job_id;
    let mut events = c.job_events(&job).await.expect("stream");
    assert!(
        matches!(next(&mut events).await, JobEvent::Task(t) if t.task_id == "t1" && t.status == TaskStatus::Queued)
    );
    assert!(matches!(next(&mut events).await, JobEvent::Job(j) if j.status == JobStatus::Queued));

    c.register_worker(&Registration {
        worker_id: "w-1".into(),
        ..Default::default()
    })
    .await
    .expect("register");
    let a = c.poll("w-1", 1).await.expect("poll").remove(0);
    let mut running = Vec::new();
    for _ in 0..2 {
        running.push(next(&mut events).await);
    }
    assert!(running.iter().any(|e| matches!(e, JobEvent::Task(t) if t.status == TaskStatus::Running && t.worker_id.as_deref() == Some("w-1"))));
    assert!(
        running
            .iter()
            .any(|e| matches!(e, JobEvent::Job(j) if j.status == JobStatus::Running))
    );

    let report = TaskReport {
        worker_id: "w-1".into(),
        job_id: a.job_id,
        task_id: a.task_id,
        lease_id: a.lease_id,
        idempotency_key: None,
        status: ReportStatus::Completed,
        output_artifact_uri: Some("s3://out/t1".into()),
        error: None,
        duration_millis: None,
    };
    c.report(&report).await.expect("report");
    assert!(
        matches!(next(&mut events).await, JobEvent::Task(t) if t.status == TaskStatus::Completed)
    );
    assert!(
        matches!(next(&mut events).await, JobEvent::Job(j) if j.status == JobStatus::Completed)
    );
    match next(&mut events).await {
        JobEvent::End(j) => assert_eq!(
            (j.status, j.result_artifact_uri.as_deref()),
            (JobStatus::Completed, Some("s3://out/t1"))
        ),
        other => panic!("expected End, got {other:?}"),
    }
    assert_eq!(events.next().await.expect("clean end"), None);
    assert_eq!(events.next().await.expect("still ended"), None);
}

#[tokio::test]
async fn refusals_come_before_the_stream() {
    let gw = Gateway::with_events(
        Some(TOKENS),
        HttpConfig::default(),
        fast(Duration::from_secs(60)),
    )
    .await;
    let acme = gw.client(Some("acme"));
    let job = acme
        .submit_job(&JobSubmission::new("chat", "hi"))
        .await
        .expect("submit")
        .job_id;
    assert!(matches!(
        gw.client(None).job_events(&job).await,
        Err(Error::Unauthorized(_))
    ));
    assert!(
        matches!(gw.client(Some("beta")).job_events(&job).await, Err(Error::NotFound(m)) if m == "job not found")
    );
    assert!(
        matches!(acme.job_events(&JobId::new("job-nope")).await, Err(Error::NotFound(m)) if m == "job not found")
    );
    assert!(acme.job_events(&job).await.is_ok());
}

#[tokio::test]
async fn keep_alives_hold_a_quiet_stream_open_and_silence_times_it_out() {
    let gw =
        Gateway::with_events(None, HttpConfig::default(), fast(Duration::from_millis(50))).await;
    let patient = gw.client_with(ClientConfig {
        stream_idle_timeout: Duration::from_millis(400),
        ..ClientConfig::default()
    });
    let job = patient
        .submit_job(&JobSubmission::new("chat", "hi"))
        .await
        .expect("submit")
        .job_id;
    let mut events = patient.job_events(&job).await.expect("stream");
    next(&mut events).await;
    next(&mut events).await;
    // Nothing happens to the job for a second: keep-alives (every 50 ms) keep the 400 ms idle
    // timeout from firing.
    let quiet = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
    assert!(
        quiet.is_err(),
        "no event and no error while the job is idle: {quiet:?}"
    );

    // A server that sends the head of a stream and then nothing at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    let silent = daef_client::Client::new(ClientConfig {
        base_url: format!("http://{addr}"),
        stream_idle_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    })
    .expect("client");
    let mut events = silent
        .job_events(&JobId::new("job-x"))
        .await
        .expect("stream head");
    assert!(
        matches!(events.next().await, Err(Error::Timeout(t)) if t == Duration::from_millis(200))
    );
}
