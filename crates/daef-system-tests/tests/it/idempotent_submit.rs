//! Issue 15, item 4: an `Idempotency-Key` holds across replicas and restarts, because the store
//! keeps it. Two gateways on one Postgres schema and Redis prefix: the key used on one names the
//! same job on the other, and still does after both restarted.

use daef_client::model::JobSubmission;
use daef_system_tests::{Gateway, GatewayConfig};
use daef_testenv::postgres::fresh_schema;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_names_one_job_across_replicas_and_restarts() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let Some(redis) = daef_testenv::redis::test() else {
        return;
    };
    let config = GatewayConfig::fast()
        .postgres(&schema)
        .redis(redis.addr(), redis.key());
    let mut a = Gateway::start("idempotent-a", config.clone()).await;
    let mut b = Gateway::start("idempotent-b", config).await;
    let job = JobSubmission::new("chat", "exactly once");

    let first = a
        .client()
        .submit_job_with_key(&job, "order-7")
        .await
        .expect("first submit");
    let on_b = b
        .client()
        .submit_job_with_key(&job, "order-7")
        .await
        .expect("repeat on the other replica");
    assert_eq!(on_b.job_id, first.job_id);

    a.restart().await;
    b.restart().await;
    let after = b
        .client()
        .submit_job_with_key(&job, "order-7")
        .await
        .expect("repeat after restarts");
    assert_eq!(after.job_id, first.job_id);
    let other_body = a
        .client()
        .submit_job_with_key(&JobSubmission::new("chat", "something else"), "order-7")
        .await;
    assert!(
        matches!(&other_body, Err(daef_client::Error::Conflict(m)) if m.contains("another body")),
        "{other_body:?}"
    );
    let jobs = a
        .client()
        .list_jobs(&Default::default())
        .await
        .expect("jobs");
    assert_eq!(jobs.total, 1, "one job for one key");
}
