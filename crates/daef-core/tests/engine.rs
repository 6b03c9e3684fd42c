//! The engine over the memory adapters: sequencing of store and queue calls, recovery by the
//! reconciler, and the queue's view of dead letters. (Store rules themselves are pinned by the
//! conformance suite.)

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use daef_core::model::{JobStatus, Report, ReportStatus, TaskRef, TaskStatus, WorkerCapabilities};
use daef_core::planner::{JobSpec, TaskSpec};
use daef_core::ports::{Queue, ReportOutcome, Store, TaskQuery};
use daef_core::{Engine, EngineConfig, Error, Resource, Timestamp};
use daef_queue::MemoryQueue;
use daef_store::MemoryStore;

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-26T10:00:00Z").unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Fixture {
    engine: Engine,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
}

async fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new(5));
    let engine = Engine::new(
        store.clone(),
        queue.clone(),
        EngineConfig::retrying_at_once(),
    );
    engine
        .register_worker("w1", &WorkerCapabilities::default(), t0())
        .await
        .unwrap();
    Fixture {
        engine,
        store,
        queue,
    }
}

fn dag(tasks: &[(&str, &[&str], u32)]) -> JobSpec {
    JobSpec {
        job_type: "test".into(),
        input: String::new(),
        tasks: Some(
            tasks
                .iter()
                .map(|(id, deps, retries)| TaskSpec {
                    task_id: (*id).into(),
                    task_type: "echo".into(),
                    dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
                    max_retries: Some(*retries),
                    ..TaskSpec::default()
                })
                .collect(),
        ),
        ..JobSpec::default()
    }
}

fn report(a: &daef_core::model::Assignment, status: ReportStatus) -> Report {
    Report {
        worker_id: "w1".into(),
        task: TaskRef::new(a.job_id.clone(), a.task_id.clone()),
        lease_id: a.lease_id.clone(),
        idempotency_key: None,
        status,
        output_artifact_uri: Some(format!("mem://{}", a.task_id)),
        error: (status == ReportStatus::Failed).then(|| "boom".into()),
        duration_millis: None,
    }
}

#[tokio::test]
async fn a_dag_runs_in_dependency_order() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(
            &dag(&[
                ("a", &[], 2),
                ("b", &["a"], 2),
                ("c", &["a"], 2),
                ("d", &["b", "c"], 2),
            ]),
            "acme",
            t0(),
        )
        .await
        .unwrap();
    let mut order = Vec::new();
    loop {
        let batch = f.engine.poll("w1", 10, t0()).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let mut ids: Vec<_> = batch.iter().map(|a| a.task_id.clone()).collect();
        ids.sort();
        order.push(ids);
        for a in &batch {
            assert!(matches!(
                f.engine
                    .report(&report(a, ReportStatus::Completed), t0())
                    .await
                    .unwrap(),
                ReportOutcome::Applied(_)
            ));
        }
    }
    assert_eq!(order, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    let job = f.engine.job(&job.job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.result_artifact_uri.as_deref(), Some("mem://d"));
    assert_eq!(f.queue.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn stale_references_do_not_empty_a_poll() {
    let f = fixture().await;
    let first = f
        .engine
        .submit(&dag(&[("a", &[], 2)]), "acme", t0())
        .await
        .unwrap();
    // Nobody polls for a while: the reconciler re-enqueues the task, leaving a duplicate.
    let summary = f.engine.reconcile(t0().plus(secs(11))).await;
    assert_eq!(summary.orphans_requeued, 1);
    let second = f
        .engine
        .submit(&dag(&[("b", &[], 2)]), "acme", t0())
        .await
        .unwrap();

    let got = f.engine.poll("w1", 1, t0()).await.unwrap();
    assert_eq!(
        (got[0].job_id.clone(), got[0].task_id.as_str()),
        (first.job_id.clone(), "a")
    );
    // The queue now starts with a's duplicate; the poll drops it and still hands out b.
    let got = f.engine.poll("w1", 1, t0()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].job_id.clone(), got[0].task_id.as_str()),
        (second.job_id.clone(), "b")
    );
}

#[tokio::test]
async fn unknown_workers_cannot_poll() {
    let f = fixture().await;
    let err = f.engine.poll("nobody", 1, t0()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(Resource::Worker)), "{err:?}");
}

#[tokio::test]
async fn a_lost_queue_delays_work_but_loses_none() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(&dag(&[("a", &[], 2), ("b", &["a"], 2)]), "acme", t0())
        .await
        .unwrap();
    // The queue is lost (a Redis FLUSHALL): a new, empty queue over the same store.
    let engine = Engine::new(
        f.store.clone(),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::retrying_at_once(),
    );
    assert!(engine.poll("w1", 10, t0()).await.unwrap().is_empty());
    assert_eq!(
        engine.reconcile(t0().plus(secs(9))).await.orphans_requeued,
        0,
        "not yet"
    );
    assert_eq!(
        engine.reconcile(t0().plus(secs(10))).await.orphans_requeued,
        1
    );
    let a = engine.poll("w1", 10, t0().plus(secs(10))).await.unwrap();
    assert_eq!(a.len(), 1);
    engine
        .report(&report(&a[0], ReportStatus::Completed), t0().plus(secs(10)))
        .await
        .unwrap();
    let b = engine.poll("w1", 10, t0().plus(secs(10))).await.unwrap();
    engine
        .report(&report(&b[0], ReportStatus::Completed), t0().plus(secs(10)))
        .await
        .unwrap();
    assert_eq!(
        engine.job(&job.job_id).await.unwrap().status,
        JobStatus::Completed
    );
}

#[tokio::test]
async fn lapsed_leases_are_retried_by_the_reconciler() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(&dag(&[("a", &[], 1)]), "acme", t0())
        .await
        .unwrap();
    let first = f.engine.poll("w1", 1, t0()).await.unwrap().remove(0);
    let summary = f.engine.reconcile(first.lease_expires).await;
    assert_eq!(summary.leases_expired, 1);
    // Back on the queue at once, under a new lease; the old lease is refused.
    let second = f
        .engine
        .poll("w1", 1, first.lease_expires)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        f.engine
            .report(&report(&first, ReportStatus::Completed), t0())
            .await
            .unwrap(),
        ReportOutcome::StaleLease
    );
    // The second lease lapses too: out of attempts, the task is a dead letter on both sides.
    f.engine.reconcile(second.lease_expires).await;
    let dead = f.engine.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].error.contains("lease expired"), "{}", dead[0].error);
    assert_eq!(f.queue.dead_letter_count().await.unwrap(), 1);
    assert_eq!(
        f.engine.job(&job.job_id).await.unwrap().status,
        JobStatus::Failed
    );
}

#[tokio::test]
async fn requeued_dead_letters_leave_the_queue_dead_list_and_run_again() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(&dag(&[("a", &[], 0)]), "acme", t0())
        .await
        .unwrap();
    let a = f.engine.poll("w1", 1, t0()).await.unwrap().remove(0);
    f.engine
        .report(&report(&a, ReportStatus::Failed), t0())
        .await
        .unwrap();
    assert_eq!(f.queue.dead_letter_count().await.unwrap(), 1);
    let key = TaskRef::new(job.job_id.clone(), "a");

    let dry = f
        .engine
        .requeue_dead(&[key.clone(), key.clone()], true, t0())
        .await
        .unwrap();
    assert_eq!((dry.requested, dry.requeued), (1, 1));
    assert_eq!(
        f.queue.dead_letter_count().await.unwrap(),
        1,
        "a dry run changes nothing"
    );

    let done = f
        .engine
        .requeue_dead(std::slice::from_ref(&key), false, t0())
        .await
        .unwrap();
    assert_eq!(done.requeued, 1);
    assert_eq!(f.queue.dead_letter_count().await.unwrap(), 0);
    let again = f.engine.poll("w1", 1, t0()).await.unwrap().remove(0);
    assert_eq!(again.attempt, 2);
    f.engine
        .report(&report(&again, ReportStatus::Completed), t0())
        .await
        .unwrap();
    assert_eq!(
        f.engine.job(&job.job_id).await.unwrap().status,
        JobStatus::Completed
    );
}

#[tokio::test]
async fn canceling_a_job_drops_its_queued_references() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(&dag(&[("a", &[], 0), ("b", &[], 0)]), "acme", t0())
        .await
        .unwrap();
    f.engine.cancel(&job.job_id, t0()).await.unwrap();
    assert!(f.engine.poll("w1", 10, t0()).await.unwrap().is_empty());
    assert_eq!(
        f.queue.pending_count().await.unwrap(),
        0,
        "stale references were acked and dropped"
    );
    let tasks = f
        .engine
        .tasks(&job.job_id, &TaskQuery::default())
        .await
        .unwrap();
    assert!(tasks.items.iter().all(|t| t.status == TaskStatus::Canceled));
}

#[tokio::test]
async fn batch_work_waits_behind_interactive_work() {
    let f = fixture().await;
    let mut batch = dag(&[("x", &[], 0)]);
    batch.priority = daef_core::model::Priority::Batch;
    let b = f.engine.submit(&batch, "acme", t0()).await.unwrap();
    let i = f
        .engine
        .submit(&dag(&[("y", &[], 0)]), "acme", t0())
        .await
        .unwrap();
    let got = f.engine.poll("w1", 2, t0()).await.unwrap();
    let order: Vec<_> = got.iter().map(|a| a.job_id.clone()).collect();
    assert_eq!(order, vec![i.job_id, b.job_id]);
}

/// A queue whose backend is down: every call fails as a lost connection would.
#[derive(Debug)]
struct DownQueue;

fn down<T>() -> daef_core::Result<T> {
    Err(Error::unavailable("redis", "connection refused"))
}

#[async_trait::async_trait]
impl Queue for DownQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }
    async fn ping(&self) -> daef_core::Result<()> {
        down()
    }
    async fn enqueue(&self, _: &[daef_core::ports::Dispatch]) -> daef_core::Result<()> {
        down()
    }
    async fn claim(
        &self,
        _: usize,
        _: Timestamp,
        _: Duration,
    ) -> daef_core::Result<Vec<daef_core::ports::Claim>> {
        down()
    }
    async fn ack(&self, _: &[String]) -> daef_core::Result<()> {
        down()
    }
    async fn nack(
        &self,
        _: &daef_core::ports::Claim,
    ) -> daef_core::Result<daef_core::ports::NackOutcome> {
        down()
    }
    async fn requeue_expired(&self, _: Timestamp, _: usize) -> daef_core::Result<u64> {
        down()
    }
    async fn dead_letter(&self, _: &TaskRef) -> daef_core::Result<()> {
        down()
    }
    async fn requeue_dead(
        &self,
        _: &[TaskRef],
        _: &[daef_core::ports::Dispatch],
    ) -> daef_core::Result<()> {
        down()
    }
    async fn dead_letter_count(&self) -> daef_core::Result<u64> {
        down()
    }
    async fn pending_count(&self) -> daef_core::Result<u64> {
        down()
    }
}

#[tokio::test]
async fn while_the_queue_is_down_submits_are_refused_and_reports_still_land() {
    let f = fixture().await;
    let job = f
        .engine
        .submit(&dag(&[("a", &[], 2), ("b", &["a"], 2)]), "acme", t0())
        .await
        .unwrap();
    let a = f.engine.poll("w1", 1, t0()).await.unwrap().remove(0);

    // The queue goes down.
    let engine = Engine::new(
        f.store.clone(),
        Arc::new(DownQueue),
        EngineConfig::retrying_at_once(),
    );
    let before = f
        .store
        .list_jobs(&daef_core::ports::JobQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = engine
        .submit(&dag(&[("x", &[], 2)]), "acme", t0())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unavailable {
                backend: "redis",
                ..
            }
        ),
        "{err:?}"
    );
    let after = f
        .store
        .list_jobs(&daef_core::ports::JobQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before, after, "a refused submit stores nothing");
    assert!(matches!(
        engine.poll("w1", 1, t0()).await.unwrap_err(),
        Error::Unavailable { .. }
    ));
    // The store is the truth: a report is accepted even though b cannot be enqueued now...
    assert!(matches!(
        engine
            .report(&report(&a, ReportStatus::Completed), t0())
            .await
            .unwrap(),
        ReportOutcome::Applied(_)
    ));
    assert_eq!(
        engine.job(&job.job_id).await.unwrap().status,
        JobStatus::Running
    );

    // ...and once the queue is back (empty), the reconciler dispatches b.
    let engine = Engine::new(
        f.store.clone(),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::retrying_at_once(),
    );
    engine.reconcile(t0().plus(secs(10))).await;
    let b = engine.poll("w1", 1, t0().plus(secs(10))).await.unwrap();
    assert_eq!(b[0].task_id, "b");
}

#[tokio::test]
async fn schedules_fire_once_per_tick_and_their_jobs_run() {
    use daef_core::schedule::NewSchedule;

    let f = fixture().await;
    let new = |id: &str, cron: &str, paused| NewSchedule {
        schedule_id: id.into(),
        tenant: "acme".into(),
        cron: cron.into(),
        template: dag(&[("only", &[], 0)]),
        paused,
    };
    let created = f
        .engine
        .create_schedule(new("every-5", "*/5 * * * *", false), t0())
        .await
        .unwrap();
    assert_eq!(created.next_fire_at, t0().plus(secs(300)));
    let err = f
        .engine
        .create_schedule(new("every-5", "* * * * *", false), t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let err = f
        .engine
        .create_schedule(new("bad", "every minute", false), t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    // Another tenant may use the same id; a lookup across tenants then asks which.
    let mut theirs = new("every-5", "0 0 * * *", true);
    theirs.tenant = "globex".into();
    f.engine.create_schedule(theirs, t0()).await.unwrap();
    let err = f.engine.find_schedule("every-5", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("acme, globex")),
        "{err}"
    );
    let acme = ["acme".to_owned()];
    assert_eq!(
        f.engine
            .find_schedule("every-5", Some(&acme))
            .await
            .unwrap(),
        created
    );
    f.engine.delete_schedule("globex", "every-5").await.unwrap();
    f.engine
        .create_schedule(new("paused", "* * * * *", true), t0())
        .await
        .unwrap();

    // Before the tick nothing fires; at it, one job, whose task is enqueued and runs.
    assert_eq!(
        f.engine
            .reconcile(t0().plus(secs(299)))
            .await
            .schedules_fired,
        0
    );
    let at = t0().plus(secs(301));
    assert_eq!(f.engine.reconcile(at).await.schedules_fired, 1);
    assert_eq!(
        f.engine.reconcile(at).await.schedules_fired,
        0,
        "one job per tick"
    );
    let fired = f.engine.find_schedule("every-5", None).await.unwrap();
    let job_id = fired.last_job_id.clone().expect("fired");
    let job = f.engine.job(&job_id).await.unwrap();
    assert_eq!(job.schedule_id.as_deref(), Some("every-5"));
    assert_eq!(job.scheduled_for, Some(t0().plus(secs(300))));
    let assigned = f.engine.poll("w1", 10, at).await.unwrap();
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].job_id, job_id);

    // An hour of missed ticks: one catch-up job, then the next tick after now.
    let late = t0().plus(secs(3_600 + 301));
    assert_eq!(f.engine.reconcile(late).await.schedules_fired, 1);
    let caught_up = f.engine.find_schedule("every-5", None).await.unwrap();
    assert_eq!(caught_up.last_fire_at, Some(t0().plus(secs(600))));
    assert_eq!(caught_up.next_fire_at, t0().plus(secs(4_200)));

    // Paused: no ticks; resumed: from the first tick after now, the paused time not run.
    f.engine
        .pause_schedule("acme", "every-5", late)
        .await
        .unwrap();
    assert_eq!(
        f.engine
            .reconcile(late.plus(secs(3_600)))
            .await
            .schedules_fired,
        0
    );
    let paused = f.engine.find_schedule("every-5", None).await.unwrap();
    let resumed = f
        .engine
        .resume_schedule(&paused, late.plus(secs(3_600)))
        .await
        .unwrap();
    assert_eq!(resumed.next_fire_at, t0().plus(secs(7_800)));
    f.engine.delete_schedule("acme", "every-5").await.unwrap();
    let err = f.engine.find_schedule("every-5", None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(Resource::Schedule)), "{err}");
    assert!(f.engine.job(&job_id).await.is_ok(), "its jobs stay");
}
