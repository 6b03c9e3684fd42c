//! The audit log: one hash chain, appended to serially, listed with filters.

use std::sync::Arc;
use std::time::Duration;

use daef_core::audit;
use daef_core::ports::{AuditQuery, Store};

use super::{draft, secs, t0};

/// Audit events get ids 1, 2, 3, … linked by hash, are stored exactly as hashed (quotes and
/// non-ASCII text included), and the chain verifies.
pub async fn audit_appends_form_one_verifiable_chain(store: &Arc<dyn Store>) {
    let mut events = Vec::new();
    for i in 0..5u64 {
        let mut event = draft("dead_letter_list", "tok-aaaa0000", "default", "ok");
        event.requested = i;
        event.details = format!("event {i} \"quoted\" \u{e9}");
        events.push(store.append_audit(event, t0().plus(secs(i))).await.unwrap());
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert_eq!(e.created_at, t0().plus(secs(i as u64)));
        assert_eq!(e.event_hash, audit::event_hash(e));
        let prev = if i == 0 {
            String::new()
        } else {
            events[i - 1].event_hash.clone()
        };
        assert_eq!(e.prev_hash, prev);
    }
    let chain = store.audit_chain(0, 1000).await.unwrap();
    assert_eq!(chain, events);
    assert_eq!(
        store.audit_chain(2, 2).await.unwrap(),
        events[2..4].to_vec()
    );
    assert_eq!(
        store.audit_chain(3, 1).await.unwrap(),
        vec![events[3].clone()]
    );
    assert!(store.audit_chain(5, 10).await.unwrap().is_empty());
    let v = audit::verify(&chain);
    assert!(v.ok, "{v:?}");
    assert_eq!(
        (v.checked, v.head_hash.clone()),
        (5, events[4].event_hash.clone())
    );
}

/// Concurrent appends still produce one linear chain.
pub async fn concurrent_audit_appends_never_fork(store: &Arc<dyn Store>) {
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .append_audit(
                    draft(
                        "dead_letter_requeue",
                        &format!("tok-{i:08x}"),
                        "default",
                        "ok",
                    ),
                    t0().plus(secs(i)),
                )
                .await
                .unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let chain = store.audit_chain(0, 10_000).await.unwrap();
    assert_eq!(chain.len(), 200);
    let v = audit::verify(&chain);
    assert!(v.ok, "{v:?}");
}

/// Audit listing: newest first, exact filters, inclusive time range, limit and offset.
pub async fn audit_list_filters_newest_first(store: &Arc<dyn Store>) {
    let rows = [
        ("dead_letter_list", "tok-1", "default", "ok"),
        ("dead_letter_requeue", "tok-1", "default", "dry_run"),
        ("dead_letter_requeue", "tok-2", "acme", "ok"),
        ("job_cancel", "tok-2", "acme", "noop"),
        ("dead_letter_requeue", "tok-1", "acme", "rate_limited"),
    ];
    for (i, (action, actor, tenant, result)) in rows.iter().enumerate() {
        store
            .append_audit(
                draft(action, actor, tenant, result),
                t0().plus(secs(i as u64)),
            )
            .await
            .unwrap();
    }
    let ids = |q: AuditQuery| {
        let store = store.clone();
        async move {
            store
                .list_audit(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 50,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(ids(q(|_| {})).await, vec![5, 4, 3, 2, 1]);
    assert_eq!(
        ids(q(|q| q.action = Some("dead_letter_requeue".into()))).await,
        vec![5, 3, 2]
    );
    assert_eq!(ids(q(|q| q.actor = Some("tok-2".into()))).await, vec![4, 3]);
    assert_eq!(
        ids(q(|q| q.tenant = Some("acme".into()))).await,
        vec![5, 4, 3]
    );
    assert_eq!(ids(q(|q| q.result = Some("ok".into()))).await, vec![3, 1]);
    assert_eq!(
        ids(q(|q| {
            q.action = Some("dead_letter_requeue".into());
            q.tenant = Some("acme".into());
            q.result = Some("ok".into())
        }))
        .await,
        vec![3]
    );
    assert_eq!(
        ids(q(|q| {
            q.from = Some(t0().plus(Duration::from_secs(1)));
            q.to = Some(t0().plus(Duration::from_secs(3)))
        }))
        .await,
        vec![4, 3, 2]
    );
    assert_eq!(
        ids(q(|q| {
            q.limit = 2;
            q.offset = 1
        }))
        .await,
        vec![4, 3]
    );
    assert_eq!(
        ids(q(|q| q.actor = Some("tok-nobody".into()))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(q(|q| {
            q.actor = Some("tok-1".into());
            q.tenant = Some("default".into())
        }))
        .await,
        vec![2, 1]
    );
    let range_page = q(|q| {
        q.from = Some(t0().plus(Duration::from_secs(1)));
        q.to = Some(t0().plus(Duration::from_secs(3)));
        q.limit = 2;
        q.offset = 1
    });
    assert_eq!(ids(range_page.clone()).await, vec![3, 2]);
    // What a store returns agrees with the query's own definition of a match.
    for query in [q(|_| {}), range_page] {
        let page = store.list_audit(&query).await.unwrap();
        assert!(!page.is_empty());
        assert!(page.iter().all(|e| query.matches(e)), "{query:?}");
    }
}
