//! The queue suite: what the engine relies on from every [`Queue`] backend.
//!
//! Each behaviour is a `pub async fn` taking the queue under test; [`queue_suite!`] turns them
//! into one test each. A factory for the macro must:
//! - return a queue built with `deadletter_max` = [`DEADLETTER_MAX`] (the macro passes it), so
//!   a reference nacked three times lands on the dead list;
//! - return an empty queue that no other test shares (for Redis, a fresh key prefix), since the
//!   behaviours check exact counts while other tests run in parallel;
//! - return `None`, after printing why, when the backend is not available.
//!
//! Nothing here sleeps: claims get deadlines from the `now` the test passes, and "later" is
//! just a later `now`.
//!
//! [`queue_suite!`]: crate::queue_suite

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{JobId, Priority, TaskRef};
use daef_core::ports::{Claim, Dispatch, NackOutcome, Queue};

/// The `deadletter_max` every queue under test is built with.
pub const DEADLETTER_MAX: u32 = 3;

/// The visibility every claim in the suite asks for.
const VISIBILITY: Duration = Duration::from_secs(30);

/// Turns every queue behaviour into a test for one backend.
///
/// `$make` is an `async fn(deadletter_max: u32) -> Option<std::sync::Arc<dyn Queue>>`;
/// `None` skips the test (the factory prints why). Invoke it in a module of its own:
///
/// ```ignore
/// mod queue {
///     daef_conformance::queue_suite!(super::memory_queue);
/// }
/// ```
///
/// Adding a behaviour is one function in [`crate::queue`] plus one line here: under
/// `borrowed` when it takes `&dyn Queue`, under `shared` when it takes an `Arc` (to spawn
/// concurrent tasks).
#[macro_export]
macro_rules! queue_suite {
    ($make:path) => {
        $crate::queue_suite!(@tests $make;
            borrowed: [
                ping_answers,
                claim_from_empty_queue_returns_nothing,
                claims_come_in_enqueue_order,
                interactive_is_claimed_before_batch,
                claim_returns_at_most_max,
                claimed_refs_are_invisible_to_other_claims,
                acked_claims_never_come_back,
                unacked_claims_return_once_visibility_passes,
                requeue_expired_honours_limit,
                expired_claims_return_ahead_of_waiting_refs,
                returned_claims_keep_their_priority,
                nack_returns_the_ref_for_another_claim,
                nacking_deadletter_max_times_dead_letters,
                nack_after_ack_or_expiry_changes_nothing,
                dead_letter_then_requeue_dead_round_trip,
                requeue_dead_enqueues_refs_that_were_never_dead,
                requeue_dead_enqueues_only_what_it_is_told,
                dead_letter_is_idempotent,
                requeue_dead_restores_the_nack_budget,
                duplicate_refs_are_each_claimable,
                pending_count_counts_waiting_refs,
                ack_ignores_unknown_and_repeated_receipts,
            ]
            shared: [
                concurrent_claimers_never_share_a_ref,
                concurrent_producers_and_consumers_lose_nothing,
            ]
        );
    };
    (@tests $make:path;
        borrowed: [$($borrowed:ident),* $(,)?]
        shared: [$($shared:ident),* $(,)?]
    ) => {
        $(
            #[test]
            fn $borrowed() {
                $crate::__private::run(async {
                    let Some(q) = $make($crate::queue::DEADLETTER_MAX).await else {
                        return;
                    };
                    $crate::queue::$borrowed(&*q).await;
                });
            }
        )*
        $(
            #[test]
            fn $shared() {
                $crate::__private::run(async {
                    let Some(q) = $make($crate::queue::DEADLETTER_MAX).await else {
                        return;
                    };
                    $crate::queue::$shared(q).await;
                });
            }
        )*
    };
}

// ---- helpers -------------------------------------------------------------------------------

/// The suite's epoch, 2026-01-01T00:00:00Z: a fixed instant, so deadlines are exact.
fn start() -> Timestamp {
    Timestamp::from_unix_micros(1_767_225_600_000_000)
}

/// `start()` plus `millis` milliseconds.
fn at(millis: u64) -> Timestamp {
    start().plus(Duration::from_millis(millis))
}

/// When every claim made at `start()` has lapsed, and long after.
fn much_later() -> Timestamp {
    at(24 * 3_600_000)
}

/// `n` references to tasks of a fresh job.
fn refs(n: usize) -> Vec<TaskRef> {
    let job = JobId::generate();
    (0..n)
        .map(|i| TaskRef::new(job.clone(), format!("t{i}")))
        .collect()
}

fn one_ref() -> TaskRef {
    refs(1).remove(0)
}

fn with(priority: Priority, refs: &[TaskRef]) -> Vec<Dispatch> {
    refs.iter().map(|r| (r.clone(), priority)).collect()
}

fn tasks(claims: &[Claim]) -> Vec<TaskRef> {
    claims.iter().map(|c| c.task.clone()).collect()
}

fn priorities(claims: &[Claim]) -> Vec<Priority> {
    claims.iter().map(|c| c.priority).collect()
}

fn receipts(claims: &[Claim]) -> Vec<String> {
    claims.iter().map(|c| c.receipt.clone()).collect()
}

fn distinct<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> usize {
    items.into_iter().collect::<HashSet<_>>().len()
}

async fn enqueue(q: &dyn Queue, tasks: &[Dispatch]) {
    q.enqueue(tasks).await.expect("enqueue");
}

async fn claim(q: &dyn Queue, max: usize, now: Timestamp) -> Vec<Claim> {
    q.claim(max, now, VISIBILITY).await.expect("claim")
}

async fn ack(q: &dyn Queue, claims: &[Claim]) {
    q.ack(&receipts(claims)).await.expect("ack");
}

async fn nack(q: &dyn Queue, claim: &Claim) -> NackOutcome {
    q.nack(claim).await.expect("nack")
}

async fn expire(q: &dyn Queue, now: Timestamp, limit: usize) -> u64 {
    q.requeue_expired(now, limit)
        .await
        .expect("requeue_expired")
}

async fn pending(q: &dyn Queue) -> u64 {
    q.pending_count().await.expect("pending_count")
}

async fn dead(q: &dyn Queue) -> u64 {
    q.dead_letter_count().await.expect("dead_letter_count")
}

async fn dead_letter(q: &dyn Queue, task: &TaskRef) {
    q.dead_letter(task).await.expect("dead_letter");
}

async fn requeue_dead(q: &dyn Queue, dead: &[TaskRef], enqueue: &[Dispatch]) {
    q.requeue_dead(dead, enqueue).await.expect("requeue_dead");
}

// ---- behaviours ----------------------------------------------------------------------------

/// `ping` succeeds on a working queue and the backend has a name (the metric label).
pub async fn ping_answers(q: &dyn Queue) {
    q.ping().await.expect("ping");
    assert!(!q.backend().is_empty(), "backend() names the backend");
}

/// An empty queue yields no claims and counts nothing.
pub async fn claim_from_empty_queue_returns_nothing(q: &dyn Queue) {
    assert!(claim(q, 10, start()).await.is_empty());
    assert_eq!(pending(q).await, 0);
    assert_eq!(dead(q).await, 0);
    assert_eq!(expire(q, much_later(), 10).await, 0);
}

/// References come out in the order they went in, across `enqueue` calls, each with its own
/// receipt.
pub async fn claims_come_in_enqueue_order(q: &dyn Queue) {
    let r = refs(6);
    enqueue(q, &with(Priority::Interactive, &r[..3])).await;
    enqueue(q, &with(Priority::Interactive, &r[3..])).await;

    let first = claim(q, 4, start()).await;
    let second = claim(q, 4, start()).await;
    assert_eq!(tasks(&first), r[..4]);
    assert_eq!(tasks(&second), r[4..]);
    let all: Vec<Claim> = first.into_iter().chain(second).collect();
    assert!(all.iter().all(|c| c.priority == Priority::Interactive));
    assert!(all.iter().all(|c| !c.receipt.is_empty()));
    assert_eq!(
        distinct(receipts(&all)),
        6,
        "every claim has its own receipt"
    );
}

/// Every waiting interactive reference is claimed before any batch one, whatever the order of
/// enqueueing; each claim carries its reference's priority.
pub async fn interactive_is_claimed_before_batch(q: &dyn Queue) {
    let i = refs(3);
    let b = refs(3);
    enqueue(
        q,
        &[
            (b[0].clone(), Priority::Batch),
            (i[0].clone(), Priority::Interactive),
            (b[1].clone(), Priority::Batch),
            (i[1].clone(), Priority::Interactive),
        ],
    )
    .await;
    enqueue(
        q,
        &[
            (b[2].clone(), Priority::Batch),
            (i[2].clone(), Priority::Interactive),
        ],
    )
    .await;

    let first = claim(q, 2, start()).await;
    assert_eq!(tasks(&first), i[..2]);
    let rest = claim(q, 10, start()).await;
    assert_eq!(
        tasks(&rest),
        vec![i[2].clone(), b[0].clone(), b[1].clone(), b[2].clone()]
    );
    assert_eq!(
        priorities(&rest),
        vec![
            Priority::Interactive,
            Priority::Batch,
            Priority::Batch,
            Priority::Batch
        ]
    );
}

/// A claim returns at most `max` references (none for 0) and fewer when fewer wait.
pub async fn claim_returns_at_most_max(q: &dyn Queue) {
    let r = refs(5);
    enqueue(q, &with(Priority::Batch, &r)).await;

    assert!(claim(q, 0, start()).await.is_empty());
    assert_eq!(pending(q).await, 5);
    assert_eq!(claim(q, 2, start()).await.len(), 2);
    assert_eq!(pending(q).await, 3);
    assert_eq!(claim(q, 10, start()).await.len(), 3);
    assert_eq!(pending(q).await, 0);
    assert!(claim(q, 10, start()).await.is_empty());
}

/// A claimed reference is not handed to anyone else while its visibility lasts.
pub async fn claimed_refs_are_invisible_to_other_claims(q: &dyn Queue) {
    let r = refs(3);
    enqueue(q, &with(Priority::Interactive, &r)).await;

    let first = claim(q, 1, start()).await;
    let second = claim(q, 10, start()).await;
    assert_eq!(tasks(&first), r[..1]);
    assert_eq!(tasks(&second), r[1..]);
    // Just before the visibility ends, still nothing to claim.
    assert!(claim(q, 10, at(29_999)).await.is_empty());
    assert_eq!(expire(q, at(29_999), 10).await, 0);
}

/// An acknowledged claim is gone for good: it never returns, however late it gets.
pub async fn acked_claims_never_come_back(q: &dyn Queue) {
    let r = refs(2);
    enqueue(q, &with(Priority::Interactive, &r)).await;
    let claims = claim(q, 2, start()).await;
    ack(q, &claims).await;

    assert_eq!(expire(q, much_later(), 100).await, 0);
    assert!(claim(q, 10, much_later()).await.is_empty());
    assert_eq!(pending(q).await, 0);
}

/// An unacknowledged claim goes back to pending once `now` reaches `claimed_at + visibility`
/// (not a millisecond before), and is claimed again under a new receipt; acking the old
/// receipt then does not drop the new claim.
pub async fn unacked_claims_return_once_visibility_passes(q: &dyn Queue) {
    let r = one_ref();
    enqueue(q, &[(r.clone(), Priority::Interactive)]).await;
    let old = claim(q, 1, start()).await;

    assert_eq!(expire(q, at(29_999), 10).await, 0);
    assert_eq!(pending(q).await, 0);
    assert_eq!(expire(q, at(30_000), 10).await, 1);
    assert_eq!(pending(q).await, 1);

    let new = claim(q, 1, at(30_000)).await;
    assert_eq!(tasks(&new), vec![r]);
    assert_ne!(new[0].receipt, old[0].receipt);

    ack(q, &old).await;
    // The new claim lapses at 60 s; the stale ack must not have dropped it.
    assert_eq!(expire(q, at(60_000), 10).await, 1);
}

/// `requeue_expired` returns at most `limit` claims per call and counts exactly those.
pub async fn requeue_expired_honours_limit(q: &dyn Queue) {
    let r = refs(5);
    enqueue(q, &with(Priority::Interactive, &r)).await;
    claim(q, 5, start()).await;

    assert_eq!(expire(q, at(30_000), 2).await, 2);
    assert_eq!(pending(q).await, 2);
    assert_eq!(expire(q, at(30_000), 0).await, 0);
    assert_eq!(expire(q, at(30_000), 10).await, 3);
    assert_eq!(expire(q, at(30_000), 10).await, 0);
    assert_eq!(pending(q).await, 5);
}

/// Lapsed claims go back ahead of references that waited behind them: they were claimed first.
pub async fn expired_claims_return_ahead_of_waiting_refs(q: &dyn Queue) {
    let r = refs(5);
    enqueue(q, &with(Priority::Interactive, &r[..4])).await;
    claim(q, 2, start()).await;
    enqueue(q, &with(Priority::Interactive, &r[4..])).await;

    assert_eq!(expire(q, at(30_000), 10).await, 2);
    let order = tasks(&claim(q, 10, at(30_000)).await);
    assert_eq!(order.len(), 5);
    let returned: HashSet<&TaskRef> = order[..2].iter().collect();
    assert_eq!(returned, r[..2].iter().collect::<HashSet<_>>());
    assert_eq!(order[2..], r[2..]);
}

/// Nacked and lapsed claims go back to the pending queue of their own priority.
pub async fn returned_claims_keep_their_priority(q: &dyn Queue) {
    let i = one_ref();
    let nacked = one_ref();
    let lapsed = one_ref();
    enqueue(
        q,
        &[
            (i.clone(), Priority::Interactive),
            (nacked.clone(), Priority::Batch),
            (lapsed.clone(), Priority::Batch),
        ],
    )
    .await;
    let claims = claim(q, 3, start()).await;
    assert_eq!(
        tasks(&claims),
        vec![i.clone(), nacked.clone(), lapsed.clone()]
    );

    assert_eq!(nack(q, &claims[1]).await, NackOutcome::Requeued);
    assert_eq!(expire(q, at(30_000), 10).await, 2);
    let later = one_ref();
    enqueue(q, &[(later.clone(), Priority::Interactive)]).await;

    // A batch reference put back as interactive would come before `later`.
    let again = claim(q, 10, at(30_000)).await;
    assert_eq!(tasks(&again[..2]), vec![i, later]);
    assert_eq!(
        priorities(&again),
        [
            Priority::Interactive,
            Priority::Interactive,
            Priority::Batch,
            Priority::Batch
        ]
    );
    let batch: HashSet<TaskRef> = tasks(&again[2..]).into_iter().collect();
    assert_eq!(batch, HashSet::from([nacked, lapsed]));
}

/// A nacked reference is claimable again at once, ahead of those that waited behind it, and
/// its old claim is settled (it does not also come back when the visibility lapses).
pub async fn nack_returns_the_ref_for_another_claim(q: &dyn Queue) {
    let r = refs(2);
    enqueue(q, &with(Priority::Interactive, &r)).await;
    let first = claim(q, 1, start()).await;

    assert_eq!(nack(q, &first[0]).await, NackOutcome::Requeued);
    assert_eq!(pending(q).await, 2);
    assert_eq!(expire(q, much_later(), 10).await, 0);
    assert_eq!(tasks(&claim(q, 10, start()).await), r);
}

/// The [`DEADLETTER_MAX`]th nack of a reference moves it to the dead list instead of pending:
/// it is counted there and no longer claimable.
pub async fn nacking_deadletter_max_times_dead_letters(q: &dyn Queue) {
    let poison = one_ref();
    let healthy = one_ref();
    enqueue(
        q,
        &[
            (poison.clone(), Priority::Interactive),
            (healthy.clone(), Priority::Interactive),
        ],
    )
    .await;

    for n in 1..=DEADLETTER_MAX {
        let claimed = claim(q, 1, start()).await;
        assert_eq!(
            tasks(&claimed),
            vec![poison.clone()],
            "claim before nack {n}"
        );
        let expected = if n < DEADLETTER_MAX {
            NackOutcome::Requeued
        } else {
            NackOutcome::DeadLettered
        };
        assert_eq!(nack(q, &claimed[0]).await, expected, "nack {n}");
    }
    assert_eq!(dead(q).await, 1);
    assert_eq!(pending(q).await, 1);
    assert_eq!(tasks(&claim(q, 10, start()).await), vec![healthy]);
    assert_eq!(
        expire(q, much_later(), 10).await,
        1,
        "only the healthy claim"
    );
    assert_eq!(dead(q).await, 1);
}

/// A nack for a claim that was already acked, or whose visibility lapsed and that went back to
/// pending, changes nothing: no duplicate, no nack counted, nothing dead-lettered.
pub async fn nack_after_ack_or_expiry_changes_nothing(q: &dyn Queue) {
    let r = refs(2);
    enqueue(q, &with(Priority::Interactive, &r)).await;
    let acked = claim(q, 1, start()).await;
    let lapsed = claim(q, 1, at(1_000)).await;

    ack(q, &acked).await;
    nack(q, &acked[0]).await;
    assert_eq!(pending(q).await, 0);

    assert_eq!(expire(q, at(31_000), 10).await, 1);
    for _ in 0..DEADLETTER_MAX {
        nack(q, &lapsed[0]).await;
    }
    assert_eq!(pending(q).await, 1);
    assert_eq!(dead(q).await, 0);
    assert_eq!(tasks(&claim(q, 10, at(31_000)).await), r[1..]);
}

/// A reference put on the dead list is counted there, and `requeue_dead` takes it off and
/// makes it claimable again with the priority it is given.
pub async fn dead_letter_then_requeue_dead_round_trip(q: &dyn Queue) {
    let r = one_ref();
    dead_letter(q, &r).await;
    assert_eq!(dead(q).await, 1);
    assert_eq!(pending(q).await, 0);

    requeue_dead(q, std::slice::from_ref(&r), &[(r.clone(), Priority::Batch)]).await;
    assert_eq!(dead(q).await, 0);
    assert_eq!(pending(q).await, 1);
    let claimed = claim(q, 10, start()).await;
    assert_eq!(tasks(&claimed), vec![r]);
    assert_eq!(priorities(&claimed), [Priority::Batch]);
}

/// `requeue_dead` enqueues every reference in `enqueue`, dead or not (a resumed job's waiting
/// tasks), and ignores `dead` entries that are not on the dead list.
pub async fn requeue_dead_enqueues_refs_that_were_never_dead(q: &dyn Queue) {
    let x = one_ref();
    let y = one_ref();
    requeue_dead(q, &[], &[(x.clone(), Priority::Interactive)]).await;
    requeue_dead(q, std::slice::from_ref(&y), &[(y.clone(), Priority::Batch)]).await;

    assert_eq!(dead(q).await, 0);
    assert_eq!(pending(q).await, 2);
    assert_eq!(tasks(&claim(q, 10, start()).await), vec![x, y]);
}

/// `requeue_dead` takes every listed reference off the dead list but enqueues only those in
/// `enqueue`, and leaves unlisted dead references where they are.
pub async fn requeue_dead_enqueues_only_what_it_is_told(q: &dyn Queue) {
    let r = refs(3);
    for task in &r {
        dead_letter(q, task).await;
    }
    assert_eq!(dead(q).await, 3);

    requeue_dead(q, &r[..2], &[(r[0].clone(), Priority::Interactive)]).await;
    assert_eq!(dead(q).await, 1);
    assert_eq!(pending(q).await, 1);
    assert_eq!(tasks(&claim(q, 10, start()).await), r[..1]);

    requeue_dead(q, &r[2..], &[]).await;
    assert_eq!(dead(q).await, 0);
    assert_eq!(pending(q).await, 0);
}

/// Dead-lettering a reference already on the dead list adds nothing, and one `requeue_dead`
/// takes it off completely.
pub async fn dead_letter_is_idempotent(q: &dyn Queue) {
    let a = one_ref();
    let b = one_ref();
    for _ in 0..3 {
        dead_letter(q, &a).await;
    }
    dead_letter(q, &b).await;
    assert_eq!(dead(q).await, 2);

    requeue_dead(q, std::slice::from_ref(&a), &[]).await;
    assert_eq!(dead(q).await, 1);
}

/// A reference requeued from the dead list starts a fresh nack budget.
pub async fn requeue_dead_restores_the_nack_budget(q: &dyn Queue) {
    let r = one_ref();
    enqueue(q, &[(r.clone(), Priority::Interactive)]).await;
    for _ in 0..DEADLETTER_MAX {
        let claimed = claim(q, 1, start()).await;
        nack(q, &claimed[0]).await;
    }
    assert_eq!(dead(q).await, 1);

    requeue_dead(
        q,
        std::slice::from_ref(&r),
        &[(r.clone(), Priority::Interactive)],
    )
    .await;
    for n in 1..=DEADLETTER_MAX {
        let claimed = claim(q, 1, start()).await;
        assert_eq!(tasks(&claimed), vec![r.clone()], "claim before nack {n}");
        let expected = if n < DEADLETTER_MAX {
            NackOutcome::Requeued
        } else {
            NackOutcome::DeadLettered
        };
        assert_eq!(
            nack(q, &claimed[0]).await,
            expected,
            "nack {n} after requeue"
        );
    }
    assert_eq!(dead(q).await, 1);
}

/// The same reference enqueued several times is claimable once per copy, each copy with its own
/// receipt (the engine drops the extra ones).
pub async fn duplicate_refs_are_each_claimable(q: &dyn Queue) {
    let r = one_ref();
    enqueue(
        q,
        &[
            (r.clone(), Priority::Interactive),
            (r.clone(), Priority::Interactive),
        ],
    )
    .await;
    enqueue(q, &[(r.clone(), Priority::Interactive)]).await;
    assert_eq!(pending(q).await, 3);

    let claims = claim(q, 10, start()).await;
    assert_eq!(tasks(&claims), vec![r.clone(), r.clone(), r]);
    assert_eq!(distinct(receipts(&claims)), 3);

    ack(q, &claims[..1]).await;
    assert_eq!(expire(q, at(30_000), 10).await, 2);
    assert_eq!(pending(q).await, 2);
}

/// `pending_count` counts references waiting on both priorities: not claimed ones, and not
/// dead ones.
pub async fn pending_count_counts_waiting_refs(q: &dyn Queue) {
    assert_eq!(pending(q).await, 0);
    let r = refs(5);
    enqueue(q, &with(Priority::Interactive, &r[..3])).await;
    enqueue(q, &with(Priority::Batch, &r[3..])).await;
    assert_eq!(pending(q).await, 5);

    let claims = claim(q, 2, start()).await;
    assert_eq!(pending(q).await, 3);
    nack(q, &claims[0]).await;
    assert_eq!(pending(q).await, 4);
    assert_eq!(expire(q, at(30_000), 10).await, 1);
    assert_eq!(pending(q).await, 5);

    let all = claim(q, 10, at(30_000)).await;
    ack(q, &all).await;
    assert_eq!(pending(q).await, 0);
    dead_letter(q, &r[0]).await;
    assert_eq!(pending(q).await, 0);
}

/// `ack` ignores receipts it does not know and receipts acked before, and acks the rest.
pub async fn ack_ignores_unknown_and_repeated_receipts(q: &dyn Queue) {
    let r = refs(2);
    enqueue(q, &with(Priority::Interactive, &r)).await;
    let claims = claim(q, 2, start()).await;

    q.ack(&[]).await.expect("ack of nothing");
    q.ack(&["no-such-receipt".to_owned(), claims[0].receipt.clone()])
        .await
        .expect("ack with an unknown receipt");
    q.ack(std::slice::from_ref(&claims[0].receipt))
        .await
        .expect("second ack of a receipt");

    assert_eq!(expire(q, at(30_000), 10).await, 1);
    assert_eq!(tasks(&claim(q, 10, at(30_000)).await), r[1..]);
}

/// Eight tasks claiming in parallel until the queue is empty each get different references:
/// every reference enqueued once is claimed exactly once, under a unique receipt.
pub async fn concurrent_claimers_never_share_a_ref(q: Arc<dyn Queue>) {
    const CLAIMERS: usize = 8;
    let interactive = refs(200);
    let batch = refs(200);
    for chunk in interactive.chunks(50) {
        enqueue(&*q, &with(Priority::Interactive, chunk)).await;
    }
    for chunk in batch.chunks(50) {
        enqueue(&*q, &with(Priority::Batch, chunk)).await;
    }

    let handles: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claims = claim(&*q, 3, start()).await;
                    if claims.is_empty() {
                        return mine;
                    }
                    mine.extend(claims);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("claimer panicked"));
    }

    assert_eq!(all.len(), 400, "every reference claimed, none twice");
    assert_eq!(distinct(tasks(&all)), 400);
    assert_eq!(distinct(receipts(&all)), 400);
    assert_eq!(pending(&*q).await, 0);
}

/// Producers enqueueing while consumers claim and ack in parallel: every reference is consumed
/// exactly once and nothing is left claimed.
pub async fn concurrent_producers_and_consumers_lose_nothing(q: Arc<dyn Queue>) {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: usize = 100;
    let produced: Vec<Vec<TaskRef>> = (0..PRODUCERS).map(|_| refs(PER_PRODUCER)).collect();
    let finished = Arc::new(AtomicUsize::new(0));

    let producers: Vec<_> = produced
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, mine)| {
            let q = Arc::clone(&q);
            let finished = Arc::clone(&finished);
            let priority = if n % 2 == 0 {
                Priority::Interactive
            } else {
                Priority::Batch
            };
            tokio::spawn(async move {
                for task in mine {
                    enqueue(&*q, &[(task, priority)]).await;
                    tokio::task::yield_now().await;
                }
                finished.fetch_add(1, Ordering::AcqRel);
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let q = Arc::clone(&q);
            let finished = Arc::clone(&finished);
            tokio::spawn(async move {
                let mut consumed = Vec::new();
                loop {
                    // Read the flag before claiming: an empty claim after every producer had
                    // finished means the queue is drained.
                    let done = finished.load(Ordering::Acquire) == PRODUCERS;
                    let claims = claim(&*q, 2, start()).await;
                    if claims.is_empty() {
                        if done {
                            return consumed;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    ack(&*q, &claims).await;
                    consumed.extend(tasks(&claims));
                }
            })
        })
        .collect();

    for producer in producers {
        producer.await.expect("producer panicked");
    }
    let mut consumed = Vec::new();
    for consumer in consumers {
        consumed.extend(consumer.await.expect("consumer panicked"));
    }

    let expected: HashSet<TaskRef> = produced.into_iter().flatten().collect();
    assert_eq!(
        consumed.len(),
        PRODUCERS * PER_PRODUCER,
        "none lost, none twice"
    );
    assert_eq!(consumed.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(pending(&*q).await, 0);
    assert_eq!(
        expire(&*q, much_later(), 1_000).await,
        0,
        "every claim acked"
    );
}
