//! One test per area of the `Store` port: each method's result and the state it leaves.

use daef_core::audit::{self, AuditDraft};
use daef_core::model::{JobId, TaskStatus, WorkerCapabilities, WorkerStats};
use daef_core::ports::{AuditQuery, Store, TaskQuery};
use daef_core::transition::AttemptOutcome;

use crate::common::{at, env, job, task_ref, timing};

async fn task(store: &dyn Store, job: &str, task: &str) -> daef_core::model::Task {
    store
        .list_tasks(&JobId::new(job), &TaskQuery::default())
        .await
        .expect("list")
        .expect("job exists")
        .items
        .into_iter()
        .find(|t| t.task_id == task)
        .expect("task exists")
}

#[tokio::test]
async fn lapsed_leases_consume_an_attempt() {
    let Some(env) = env().await else { return };
    let store = &env.store;
    let (j, tasks) = job(
        "job-1",
        "acme",
        &[
            ("slow", &[], 2, 10),
            ("a-gone", &[], 0, 60),
            ("b-fine", &[], 2, 60),
        ],
        at(0),
        timing(),
    );
    store.insert_job(&j, &tasks).await.expect("insert");
    for t in ["slow", "a-gone", "b-fine"] {
        store
            .assign(&task_ref("job-1", t), "w1", "n", at(0), timing())
            .await
            .expect("assign");
    }
    store
        .register_worker("w1", &WorkerCapabilities::default(), at(0))
        .await
        .expect("register");
    assert_eq!(
        store
            .heartbeat("w1", &WorkerStats::default(), at(5), timing())
            .await
            .expect("hb"),
        Some(3)
    );
    assert_eq!(
        store
            .expire_leases(at(9), 10, timing())
            .await
            .expect("expire"),
        vec![],
        "nothing lapsed yet"
    );

    // slow hits its 10 s timeout (the heartbeat could not carry it further); the others' leases
    // run to 20 s.
    let first = store
        .expire_leases(at(10), 1, timing())
        .await
        .expect("expire");
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].task.task_id.as_str(),
            first[0].reason,
            first[0].outcome
        ),
        ("slow", "timeout", AttemptOutcome::Retry)
    );
    assert_eq!(
        first[0].enqueue,
        Some((
            task_ref("job-1", "slow"),
            daef_core::model::Priority::Interactive
        ))
    );
    assert_eq!(first[0].worker_id, "w1");
    let slow = task(store, "job-1", "slow").await;
    assert_eq!(
        (slow.status, slow.error.as_deref(), slow.redispatch_at),
        (
            TaskStatus::Queued,
            Some("attempt 1 timed out after 10s"),
            Some(at(20))
        )
    );

    let (k, tasks) = job("job-2", "acme", &[("gone", &[], 0, 60)], at(0), timing());
    store.insert_job(&k, &tasks).await.expect("insert");
    store
        .assign(&task_ref("job-2", "gone"), "w9", "n", at(0), timing())
        .await
        .expect("assign");
    let second = store
        .expire_leases(at(21), 10, timing())
        .await
        .expect("expire");
    let got: Vec<(String, &str, AttemptOutcome)> = second
        .iter()
        .map(|e| (e.task.to_string(), e.reason, e.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "job-2|gone".into(),
                "lease_expired",
                AttemptOutcome::DeadLettered
            ),
            (
                "job-1|a-gone".into(),
                "lease_expired",
                AttemptOutcome::DeadLettered
            ),
            (
                "job-1|b-fine".into(),
                "lease_expired",
                AttemptOutcome::Retry
            ),
        ],
        "oldest deadline first, then by task"
    );
    // a-gone failed job-1 earlier in the same pass: b-fine is not re-dispatched.
    assert_eq!(second[2].enqueue, None);
    assert_eq!(task(store, "job-1", "b-fine").await.redispatch_at, None);
    let gone = task(store, "job-2", "gone").await;
    assert_eq!(
        gone.error.as_deref(),
        Some("lease expired on attempt 1 (worker w9 stopped heartbeating)")
    );
    assert_eq!(
        store
            .job(&k.job_id)
            .await
            .expect("job")
            .expect("job")
            .message
            .as_deref(),
        Some(
            "task gone failed after 1 attempts: lease expired on attempt 1 (worker w9 stopped heartbeating)"
        )
    );
    assert!(
        store
            .expire_leases(at(100), 10, timing())
            .await
            .expect("expire")
            .is_empty()
    );
}

#[tokio::test]
async fn orphans_are_taken_oldest_first_with_back_off() {
    let Some(env) = env().await else { return };
    let store = &env.store;
    let (j, tasks) = job(
        "job-1",
        "acme",
        &[("a", &[], 2, 60), ("b", &[], 2, 60), ("c", &["a"], 2, 60)],
        at(0),
        timing(),
    );
    store.insert_job(&j, &tasks).await.expect("insert");
    let (k, tasks) = job("job-0", "acme", &[("z", &[], 2, 60)], at(1), timing());
    store.insert_job(&k, &tasks).await.expect("insert");

    assert!(
        store
            .take_orphans(at(9), 10, timing())
            .await
            .expect("take")
            .is_empty()
    );
    let refs = |d: Vec<daef_core::ports::Dispatch>| {
        d.into_iter()
            .map(|(r, _)| r.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refs(store.take_orphans(at(11), 2, timing()).await.expect("take")),
        ["job-1|a", "job-1|b"]
    );
    assert_eq!(
        refs(
            store
                .take_orphans(at(11), 10, timing())
                .await
                .expect("take")
        ),
        ["job-0|z"]
    );
    let a = task(store, "job-1", "a").await;
    assert_eq!(
        (a.redispatch_count, a.redispatch_at),
        (1, Some(at(31))),
        "10 s × 2"
    );
    // An assignment ends a task's re-dispatch; only a is left to watch.
    store
        .assign(&task_ref("job-1", "b"), "w1", "n", at(12), timing())
        .await
        .expect("assign");
    store
        .assign(&task_ref("job-0", "z"), "w1", "n", at(12), timing())
        .await
        .expect("assign");
    assert_eq!(task(store, "job-1", "b").await.redispatch_at, None);
    let mut when = 31;
    for (count, factor) in [(2u32, 4u64), (3, 8), (4, 8), (5, 8), (6, 8), (7, 8)] {
        let taken = refs(
            store
                .take_orphans(at(when), 1, timing())
                .await
                .expect("take"),
        );
        assert_eq!(taken, ["job-1|a"]);
        let a = task(store, "job-1", "a").await;
        assert_eq!(a.redispatch_count, count);
        assert_eq!(
            a.redispatch_at,
            Some(at(when + 10 * factor)),
            "back-off caps at 32×"
        );
        when += 10 * factor;
    }
}

fn draft(i: u64, action: &str, actor: &str) -> AuditDraft {
    AuditDraft {
        action: action.into(),
        actor: actor.into(),
        tenant: if i.is_multiple_of(2) {
            "acme".into()
        } else {
            "beta".into()
        },
        remote_addr: "10.0.0.1:4000".into(),
        resource: "/v1/admin/queue/dead-letter".into(),
        payload_hash: audit::payload_hash(br#"{"tasks":[]}"#),
        requested: i,
        result: if i == 3 {
            "rejected".into()
        } else {
            "ok".into()
        },
        details: format!("event {i} \"quoted\" \u{e9}"),
    }
}

#[tokio::test]
async fn audit_events_chain_list_and_verify() {
    let Some(env) = env().await else { return };
    let store = &env.store;
    let mut appended = Vec::new();
    for i in 1..=5u64 {
        let action = if i <= 2 {
            "dead_letter_list"
        } else {
            "dead_letter_requeue"
        };
        let event = store
            .append_audit(draft(i, action, &format!("tok-{}", i % 2)), at(i))
            .await
            .expect("append");
        assert_eq!(event.id, i);
        assert_eq!(event.created_at, at(i));
        appended.push(event);
    }
    assert_eq!(appended[0].prev_hash, "");
    assert_eq!(appended[1].prev_hash, appended[0].event_hash);

    let chain = store.audit_chain(0, 100).await.expect("chain");
    assert_eq!(chain, appended, "stored exactly as hashed");
    assert!(audit::verify(&chain).ok);
    assert_eq!(
        store.audit_chain(3, 1).await.expect("chain"),
        vec![appended[3].clone()]
    );

    let ids = |events: Vec<audit::AuditEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let all = AuditQuery {
        limit: 50,
        ..AuditQuery::default()
    };
    assert_eq!(
        ids(store.list_audit(&all).await.expect("list")),
        [5, 4, 3, 2, 1]
    );
    let q = AuditQuery {
        action: Some("dead_letter_requeue".into()),
        limit: 50,
        ..AuditQuery::default()
    };
    assert_eq!(ids(store.list_audit(&q).await.expect("list")), [5, 4, 3]);
    let q = AuditQuery {
        actor: Some("tok-1".into()),
        tenant: Some("beta".into()),
        limit: 50,
        ..AuditQuery::default()
    };
    assert_eq!(ids(store.list_audit(&q).await.expect("list")), [5, 3, 1]);
    let q = AuditQuery {
        result: Some("rejected".into()),
        limit: 50,
        ..AuditQuery::default()
    };
    assert_eq!(ids(store.list_audit(&q).await.expect("list")), [3]);
    let q = AuditQuery {
        from: Some(at(2)),
        to: Some(at(4)),
        limit: 2,
        offset: 1,
        ..AuditQuery::default()
    };
    assert_eq!(ids(store.list_audit(&q).await.expect("list")), [3, 2]);
    for q in [all, q] {
        let page = store.list_audit(&q).await.expect("list");
        assert!(page.iter().all(|e| q.matches(e)));
    }
}
