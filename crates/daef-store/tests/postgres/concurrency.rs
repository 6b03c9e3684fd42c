//! The store under concurrent callers, as several gateway replicas and many workers produce
//! them: no double assignment, no lost update, one audit chain.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use daef_core::audit::{self, AuditDraft};
use daef_core::model::{JobStatus, Report, ReportStatus, TaskRef, TaskStatus};
use daef_core::ports::{JobQuery, ReportOutcome, Store, TaskQuery};
use daef_core::transition::{AttemptOutcome, CancelOutcome};
use daef_store::PostgresStore;
use tokio::task::JoinSet;

use crate::common::{Spec, at, env_with, job, timing};

fn completed(task: &TaskRef, lease: &str, key: &str) -> Report {
    Report {
        worker_id: "w".into(),
        task: task.clone(),
        lease_id: lease.into(),
        idempotency_key: Some(key.into()),
        status: ReportStatus::Completed,
        output_artifact_uri: Some(format!("s3://out/{task}")),
        error: None,
        duration_millis: None,
    }
}

async fn insert_jobs(store: &PostgresStore, jobs: usize, specs: &[Spec<'_>]) -> Vec<TaskRef> {
    let mut refs = Vec::new();
    for j in 0..jobs {
        let id = format!("job-{j:04}");
        let (job, tasks) = job(&id, "acme", specs, at(0), timing());
        store.insert_job(&job, &tasks).await.expect("insert");
        refs.extend(tasks.iter().map(|t| t.task_ref()));
    }
    refs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_assigners_never_assign_a_task_twice() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let ids: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    let specs: Vec<Spec<'_>> = ids.iter().map(|id| (id.as_str(), &[][..], 2, 60)).collect();
    let refs = Arc::new(insert_jobs(&store, 10, &specs).await);

    let mut assigners = JoinSet::new();
    for a in 0..8 {
        let (store, refs) = (store.clone(), refs.clone());
        assigners.spawn(async move {
            let mut won = Vec::new();
            // Each assigner walks the same tasks from a different starting point.
            for i in 0..refs.len() {
                let task = &refs[(i + a * refs.len() / 8) % refs.len()];
                let got = store
                    .assign(
                        task,
                        &format!("w{a}"),
                        &format!("n{a}-{i}"),
                        at(1),
                        timing(),
                    )
                    .await
                    .expect("assign");
                if let Some(assignment) = got {
                    won.push((task.clone(), assignment.lease_id));
                }
            }
            won
        });
    }
    let mut assigned: BTreeMap<TaskRef, String> = BTreeMap::new();
    let mut per_assigner = Vec::new();
    while let Some(won) = assigners.join_next().await {
        let won = won.expect("assigner");
        per_assigner.push(won.len());
        for (task, lease) in won {
            assert!(
                assigned.insert(task.clone(), lease).is_none(),
                "{task} assigned twice"
            );
        }
    }
    assert_eq!(assigned.len(), 1_000, "every task assigned exactly once");
    assert!(
        per_assigner.iter().filter(|n| **n > 0).count() > 1,
        "the work was shared: {per_assigner:?}"
    );
    let running = store
        .list_jobs(&JobQuery {
            status: Some(JobStatus::Running),
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .expect("jobs");
    assert_eq!(running.total, 10);
    for task in refs.iter().step_by(97) {
        let stored = store
            .list_tasks(&task.job_id, &TaskQuery::default())
            .await
            .expect("list")
            .expect("job");
        let t = stored
            .items
            .iter()
            .find(|t| t.task_id == task.task_id)
            .expect("task");
        assert_eq!((t.status, t.attempt), (TaskStatus::Running, 1));
        assert_eq!(
            t.lease_id.as_ref(),
            assigned.get(task),
            "the stored lease is the winner's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_pollers_and_reporters_finish_every_job_without_lost_updates() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    // A diamond per job: completions race on the shared dependent's counter and on the job's.
    let specs: &[Spec<'_>] = &[
        ("a", &[], 2, 60),
        ("b1", &["a"], 2, 60),
        ("b2", &["a"], 2, 60),
        ("b3", &["a"], 2, 60),
        ("b4", &["a"], 2, 60),
        ("c", &["b1", "b2", "b3", "b4"], 2, 60),
    ];
    let refs = Arc::new(insert_jobs(&store, 30, specs).await);
    let mut workers = JoinSet::new();
    for w in 0..8 {
        let (store, refs) = (store.clone(), refs.clone());
        workers.spawn(async move {
            let mut done = 0;
            let mut idle_passes = 0;
            while idle_passes < 3 {
                let mut progressed = false;
                for i in 0..refs.len() {
                    let task = &refs[(i * 7 + w * 13) % refs.len()];
                    let nonce = format!("w{w}-{i}-{done}");
                    let Some(a) = store
                        .assign(task, &format!("w{w}"), &nonce, at(1), timing())
                        .await
                        .expect("assign")
                    else {
                        continue;
                    };
                    let outcome = store
                        .report(&completed(task, &a.lease_id, &nonce), at(2), timing())
                        .await
                        .expect("report");
                    assert!(
                        matches!(outcome, ReportOutcome::Applied(_)),
                        "{task}: {outcome:?}"
                    );
                    done += 1;
                    progressed = true;
                }
                idle_passes = if progressed { 0 } else { idle_passes + 1 };
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = workers.join_next().await {
        total += done.expect("worker");
    }
    assert_eq!(total, 180, "every task ran exactly once");
    let jobs = store
        .list_jobs(&JobQuery {
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .expect("jobs");
    for job in &jobs.items {
        assert_eq!(
            (job.status, job.completed_tasks),
            (JobStatus::Completed, 6),
            "{}",
            job.job_id
        );
        assert_eq!(
            job.result_artifact_uri.as_deref(),
            Some(format!("s3://out/{}|c", job.job_id).as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_a_report_leaves_one_consistent_outcome() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let refs = insert_jobs(&store, 40, &[("t", &[], 2, 60)]).await;
    let mut races = JoinSet::new();
    for task in refs {
        let store = store.clone();
        races.spawn(async move {
            let lease = store
                .assign(&task, "w", "n", at(1), timing())
                .await
                .expect("assign")
                .expect("ready")
                .lease_id;
            let report = completed(&task, &lease, "k");
            let (report, cancel) = tokio::join!(
                store.report(&report, at(2), timing()),
                store.cancel_job(&task.job_id, at(2)),
            );
            let job = store.job(&task.job_id).await.expect("job").expect("job");
            let t = store
                .list_tasks(&task.job_id, &TaskQuery::default())
                .await
                .expect("list")
                .expect("job")
                .items
                .remove(0);
            (
                report.expect("report"),
                cancel.expect("cancel").expect("job exists"),
                job.status,
                t.status,
            )
        });
    }
    let mut seen = HashSet::new();
    while let Some(race) = races.join_next().await {
        let (report, cancel, job, task) = race.expect("race");
        match (&report, cancel) {
            (ReportOutcome::Applied(_), CancelOutcome::AlreadyFinished) => {
                assert_eq!((job, task), (JobStatus::Completed, TaskStatus::Completed));
            }
            (ReportOutcome::JobCanceled, CancelOutcome::Canceled) => {
                assert_eq!((job, task), (JobStatus::Canceled, TaskStatus::Canceled));
            }
            other => panic!("inconsistent race outcome {other:?} -> job {job}, task {task}"),
        }
        seen.insert(matches!(report, ReportOutcome::Applied(_)));
    }
    eprintln!("cancel/report races: outcomes seen {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_racing_lease_expiry_is_applied_or_expired_never_both() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let refs = insert_jobs(&store, 40, &[("t", &[], 2, 60)]).await;
    let mut leases = Vec::new();
    for task in &refs {
        let a = store
            .assign(task, "w", "n", at(0), timing())
            .await
            .expect("assign")
            .expect("ready");
        leases.push((task.clone(), a.lease_id));
    }
    // Every lease lapses at 15 s: reports at that instant race the reconciler of two replicas.
    let deadline = at(15);
    let mut reports = JoinSet::new();
    for (task, lease) in leases {
        let store = store.clone();
        reports.spawn(async move {
            (
                task.clone(),
                store
                    .report(&completed(&task, &lease, "k"), deadline, timing())
                    .await
                    .expect("report"),
            )
        });
    }
    let (s1, s2) = (store.clone(), store.clone());
    let (e1, e2) = tokio::join!(
        async move {
            s1.expire_leases(deadline, 1_000, timing())
                .await
                .expect("expire")
        },
        async move {
            s2.expire_leases(deadline, 1_000, timing())
                .await
                .expect("expire")
        },
    );
    let mut expired: HashSet<TaskRef> = HashSet::new();
    for lease in e1.into_iter().chain(e2) {
        assert_eq!(lease.outcome, AttemptOutcome::Retry);
        assert!(
            expired.insert(lease.task.clone()),
            "{} expired by both replicas",
            lease.task
        );
    }
    // Leases the racing replicas skipped (rows a reporter held) go in the next pass.
    for lease in store
        .expire_leases(deadline, 1_000, timing())
        .await
        .expect("expire")
    {
        assert!(
            expired.insert(lease.task.clone()),
            "{} expired twice",
            lease.task
        );
    }
    let mut applied = 0;
    while let Some(done) = reports.join_next().await {
        let (task, outcome) = done.expect("report");
        let stored = store
            .list_tasks(&task.job_id, &TaskQuery::default())
            .await
            .expect("list")
            .expect("job")
            .items
            .remove(0);
        match outcome {
            ReportOutcome::Applied(_) => {
                applied += 1;
                assert!(
                    !expired.contains(&task),
                    "{task} both completed and expired"
                );
                assert_eq!(stored.status, TaskStatus::Completed);
            }
            ReportOutcome::NotRunning => {
                assert!(expired.contains(&task), "{task} rejected but not expired");
                assert_eq!((stored.status, stored.attempt), (TaskStatus::Queued, 1));
            }
            other => panic!("{task}: {other:?}"),
        }
    }
    assert_eq!(applied + expired.len(), 40);
    eprintln!(
        "report/expiry races: {applied} reports won, {} expiries won",
        expired.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reports_with_different_leases_or_keys_apply_once() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let refs = insert_jobs(&store, 30, &[("t", &[], 2, 60)]).await;
    // Lease 1 of every task lapses and each is assigned again under lease 2.
    let mut leases = Vec::new();
    for task in &refs {
        let old = store
            .assign(task, "w1", "old", at(0), timing())
            .await
            .expect("assign")
            .expect("ready");
        leases.push((task.clone(), old.lease_id));
    }
    assert_eq!(
        store
            .expire_leases(at(15), 1_000, timing())
            .await
            .expect("expire")
            .len(),
        30
    );
    let mut races = JoinSet::new();
    for (task, old) in leases {
        let store = store.clone();
        let new = store
            .assign(&task, "w2", "new", at(16), timing())
            .await
            .expect("assign")
            .expect("ready again")
            .lease_id;
        races.spawn(async move {
            let stale = completed(&task, &old, "k-old");
            let current = completed(&task, &new, "k-new");
            let twin = Report {
                status: ReportStatus::Failed,
                error: Some("lost".into()),
                ..completed(&task, &new, "k-twin")
            };
            let (stale, current, twin) = tokio::join!(
                store.report(&stale, at(17), timing()),
                store.report(&current, at(17), timing()),
                store.report(&twin, at(17), timing()),
            );
            let stored = store
                .list_tasks(&task.job_id, &TaskQuery::default())
                .await
                .expect("list")
                .expect("job")
                .items
                .remove(0);
            (
                stale.expect("stale"),
                current.expect("current"),
                twin.expect("twin"),
                stored,
            )
        });
    }
    while let Some(race) = races.join_next().await {
        let (stale, current, twin, stored) = race.expect("race");
        // Rejected as stale, or as not running once the live lease's report ended the attempt.
        assert!(
            matches!(stale, ReportOutcome::StaleLease | ReportOutcome::NotRunning),
            "{stale:?}"
        );
        match (&current, &twin) {
            (ReportOutcome::Applied(_), ReportOutcome::NotRunning) => {
                assert_eq!(stored.status, TaskStatus::Completed);
            }
            (ReportOutcome::NotRunning, ReportOutcome::Applied(_)) => {
                assert_eq!(
                    (stored.status, stored.attempt),
                    (TaskStatus::Queued, 2),
                    "a retry is due"
                );
            }
            other => panic!("exactly one report on the live lease applies: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_reconciling_at_once_split_the_work() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let refs = insert_jobs(
        &store,
        20,
        &[
            ("a", &[], 2, 60),
            ("b", &[], 2, 60),
            ("c", &[], 2, 60),
            ("d", &[], 2, 60),
            ("e", &[], 2, 60),
        ],
    )
    .await;
    // Half of the tasks run (their leases will lapse), half wait to be re-dispatched.
    for task in refs.iter().step_by(2) {
        store
            .assign(task, "w", "n", at(0), timing())
            .await
            .expect("assign");
    }
    let mut replicas = JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        replicas.spawn(async move {
            let mut expired = Vec::new();
            let mut orphans = Vec::new();
            for _ in 0..10 {
                expired.extend(
                    store
                        .expire_leases(at(100), 7, timing())
                        .await
                        .expect("expire")
                        .into_iter()
                        .map(|e| e.task),
                );
                orphans.extend(
                    store
                        .take_orphans(at(100), 7, timing())
                        .await
                        .expect("orphans")
                        .into_iter()
                        .map(|(t, _)| t),
                );
            }
            (expired, orphans)
        });
    }
    let (mut expired, mut orphans) = (Vec::new(), Vec::new());
    while let Some(done) = replicas.join_next().await {
        let (e, o) = done.expect("replica");
        expired.extend(e);
        orphans.extend(o);
    }
    // Whatever the racing passes skipped (rows another replica held) the next pass gets.
    expired.extend(
        store
            .expire_leases(at(100), 1_000, timing())
            .await
            .expect("expire")
            .into_iter()
            .map(|e| e.task),
    );
    orphans.extend(
        store
            .take_orphans(at(100), 1_000, timing())
            .await
            .expect("orphans")
            .into_iter()
            .map(|(t, _)| t),
    );
    let expired_set: HashSet<&TaskRef> = expired.iter().collect();
    assert_eq!(
        (expired.len(), expired_set.len()),
        (50, 50),
        "each lapsed lease expired once"
    );
    // Orphans: the 50 waiting tasks, once each (re-dispatch backs off past 100 s); expired tasks
    // became dispatchable at 100 s and are due at 110 s, so none of them is among them.
    let orphan_set: HashSet<&TaskRef> = orphans.iter().collect();
    assert_eq!(
        (orphans.len(), orphan_set.len()),
        (50, 50),
        "each orphan taken once"
    );
    assert!(orphan_set.is_disjoint(&expired_set));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_audit_appends_form_one_chain() {
    let Some(env) = env_with(16).await else {
        return;
    };
    let store = Arc::new(env.store.clone());
    let mut appends = JoinSet::new();
    for i in 0..1_000u64 {
        let store = store.clone();
        appends.spawn(async move {
            let draft = AuditDraft {
                action: "dead_letter_requeue".into(),
                actor: format!("tok-{:08x}", i % 7),
                tenant: "acme".into(),
                remote_addr: format!("10.0.0.{}:5000", i % 250),
                resource: "/v1/admin/queue/dead-letter".into(),
                payload_hash: audit::payload_hash(format!(r#"{{"n":{i}}}"#).as_bytes()),
                requested: i,
                result: "ok".into(),
                details: format!("request {i}"),
            };
            store
                .append_audit(draft, at(i % 60))
                .await
                .expect("append")
                .id
        });
    }
    let mut ids = HashSet::new();
    while let Some(id) = appends.join_next().await {
        assert!(
            ids.insert(id.expect("append")),
            "an id was handed out twice"
        );
    }
    assert_eq!(ids, (1..=1_000).collect::<HashSet<u64>>());

    let mut chain = Vec::new();
    loop {
        let after = chain.last().map_or(0, |e: &audit::AuditEvent| e.id);
        let page = store.audit_chain(after, 300).await.expect("chain");
        if page.is_empty() {
            break;
        }
        chain.extend(page);
    }
    let verdict = audit::verify(&chain);
    assert!(verdict.ok, "chain broken at {:?}", verdict.first_bad_id);
    assert_eq!(verdict.checked, 1_000);
    assert_eq!(verdict.head_hash, chain[999].event_hash);
    let requested: HashSet<u64> = chain.iter().map(|e| e.requested).collect();
    assert_eq!(requested.len(), 1_000, "every append is in the chain once");
}
