//! Jobs: submit, read, list, tasks, cancel.

use std::collections::BTreeMap;

use daef_client::model::{JobFilter, JobSubmission, TaskFilter, TaskSubmission};
use daef_core::model::{JobStatus, Priority, TaskStatus};

use daef_client::{Client, ClientConfig};

use crate::gateway::Gateway;

#[tokio::test]
async fn submit_then_read_the_job_and_its_tasks() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    let submitted = c
        .submit_job(&JobSubmission {
            policy: Some("enterprise-default".into()),
            priority: Some(Priority::Batch),
            tenant: Some("acme".into()),
            ..JobSubmission::new("chat", "Analyze 500 tickets")
        })
        .await
        .unwrap();
    assert_eq!(submitted.status, JobStatus::Queued);
    assert!(submitted.job_id.as_str().starts_with("job-"));

    let job = c.job(&submitted.job_id).await.unwrap();
    assert_eq!(job.job_id, submitted.job_id);
    assert_eq!(job.tenant, "acme");
    assert_eq!(job.job_type, "chat");
    assert_eq!(job.priority, Priority::Batch);
    assert_eq!(job.policy.as_deref(), Some("enterprise-default"));
    assert_eq!(job.status, JobStatus::Queued);

    let tasks = c
        .tasks(&submitted.job_id, &TaskFilter::default())
        .await
        .unwrap();
    let ids: Vec<&str> = tasks.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["t1-split", "t2-embed", "t3-summarize"]);
    assert_eq!(tasks.total, 3);
    assert_eq!(tasks.tasks[1].dependencies, ["t1-split"]);
    assert!(
        tasks
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Queued && t.attempt == 0)
    );

    let page = c
        .tasks(
            &submitted.job_id,
            &TaskFilter {
                limit: Some(1),
                offset: Some(1),
                ..TaskFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (page.total, page.returned, page.limit, page.offset),
        (3, 1, Some(1), Some(1))
    );
    assert_eq!(page.tasks[0].task_id, "t2-embed");
    let running = c
        .tasks(
            &submitted.job_id,
            &TaskFilter {
                status: Some(TaskStatus::Running),
                ..TaskFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.total, 0);
}

#[tokio::test]
async fn explicit_dags_and_list_filters() {
    let gw = Gateway::start().await;
    let c = gw.client(None);
    let dag = JobSubmission {
        job_type: "etl".into(),
        tasks: Some(vec![
            TaskSubmission {
                task_id: "extract".into(),
                task_type: "tool_execution".into(),
                inputs: BTreeMap::from([("table".into(), "orders".into())]),
                ..TaskSubmission::default()
            },
            TaskSubmission {
                task_id: "load".into(),
                task_type: "tool_execution".into(),
                dependencies: vec!["extract".into()],
                max_retries: Some(5),
                timeout_sec: Some(600),
                ..TaskSubmission::default()
            },
        ]),
        ..JobSubmission::default()
    };
    let first = c.submit_job(&dag).await.unwrap().job_id;
    let second = c
        .submit_job(&JobSubmission::new("chat", "hello"))
        .await
        .unwrap()
        .job_id;
    assert_eq!(
        c.tasks(&first, &TaskFilter::default()).await.unwrap().total,
        2
    );

    let all = c.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(all.jobs[0].job_id, second, "newest first");
    let page = c
        .list_jobs(&JobFilter {
            limit: Some(1),
            offset: Some(1),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (page.total, page.returned, page.limit, page.offset),
        (2, 1, 1, 1)
    );
    assert_eq!(page.jobs[0].job_id, first);

    assert!(c.cancel_job(&first).await.unwrap().accepted);
    assert!(
        c.cancel_job(&first).await.unwrap().accepted,
        "already canceled still says accepted"
    );
    let canceled = c
        .list_jobs(&JobFilter {
            status: Some(JobStatus::Canceled),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        canceled.jobs.iter().map(|j| &j.job_id).collect::<Vec<_>>(),
        [&first]
    );
    let other = c
        .list_jobs(&JobFilter {
            tenant: Some("nobody".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(other.total, 0);
}

/// The gateway stores a submit but its answer is lost (the connection drops): the client tries
/// again under the same `Idempotency-Key` and gets the job that was stored, not a second one.
#[tokio::test]
async fn a_submit_whose_answer_is_lost_is_retried_under_its_key_and_stores_one_job() {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    let gw = Gateway::start().await;
    let upstream = gw.addr;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy = listener.local_addr().expect("address");
    let forwarder = tokio::spawn(async move {
        // The first connection: the request goes through, the answer is dropped.
        let (client, _) = listener.accept().await.expect("accept");
        let server = TcpStream::connect(upstream).await.expect("connect");
        let (mut client_read, client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let request = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut first_byte = [0u8; 1];
        server_read
            .read_exact(&mut first_byte)
            .await
            .expect("an answer");
        request.abort();
        drop(client_write);
        // Every later connection passes through.
        loop {
            let (mut client, _) = listener.accept().await.expect("accept");
            let mut server = TcpStream::connect(upstream).await.expect("connect");
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    let through_proxy = Client::new(ClientConfig {
        base_url: format!("http://{proxy}"),
        ..ClientConfig::default()
    })
    .expect("client");
    let submitted = through_proxy
        .submit_job(&JobSubmission::new("chat", "exactly once"))
        .await
        .expect("the retry gets the stored job");
    let jobs = gw
        .client(None)
        .list_jobs(&JobFilter::default())
        .await
        .expect("jobs");
    assert_eq!(jobs.total, 1, "{jobs:?}");
    assert_eq!(jobs.jobs[0].job_id, submitted.job_id);
    forwarder.abort();
}
