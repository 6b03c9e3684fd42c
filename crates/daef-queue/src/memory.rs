//! The in-memory queue: pending lists per priority, claims with a visibility index, and a dead
//! list, all under one lock.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use daef_core::Result;
use daef_core::Timestamp;
use daef_core::model::{Priority, TaskRef};
use daef_core::ports::{Claim, Dispatch, NackOutcome, Queue};

const BACKEND: &str = "memory";

/// A [`Queue`] held in process memory: lost on restart, which only delays work (the reconciler
/// re-enqueues what the store says is dispatchable).
///
/// Every operation takes one [`std::sync::Mutex`] for its whole duration and never awaits
/// while holding it, so each call is atomic with respect to every other.
pub struct MemoryQueue {
    deadletter_max: u32,
    state: Mutex<State>,
}

impl MemoryQueue {
    /// An empty queue. A reference nacked `deadletter_max` times moves to the dead list;
    /// `0` means never.
    pub fn new(deadletter_max: u32) -> Self {
        Self {
            deadletter_max,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can panic short of an allocation failure (which aborts), so a
        // poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryQueue {
    /// Sizes only: the full contents could be millions of references.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemoryQueue");
        s.field("deadletter_max", &self.deadletter_max);
        // `try_lock` so that formatting can never deadlock against a caller holding the lock.
        match self.state.try_lock() {
            Ok(state) => s
                .field("pending", &state.pending_len())
                .field("claimed", &state.claims.len())
                .field("dead", &state.dead.len()),
            Err(_) => s.field("state", &"<locked>"),
        };
        s.finish()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn enqueue(&self, tasks: &[Dispatch]) -> Result<()> {
        self.state().enqueue(tasks);
        Ok(())
    }

    async fn claim(&self, max: usize, now: Timestamp, visibility: Duration) -> Result<Vec<Claim>> {
        Ok(self.state().claim(max, now.plus(visibility)))
    }

    async fn ack(&self, receipts: &[String]) -> Result<()> {
        self.state().ack(receipts);
        Ok(())
    }

    async fn nack(&self, claim: &Claim) -> Result<NackOutcome> {
        Ok(self.state().nack(&claim.receipt, self.deadletter_max))
    }

    async fn requeue_expired(&self, now: Timestamp, limit: usize) -> Result<u64> {
        Ok(self.state().requeue_expired(now, limit) as u64)
    }

    async fn dead_letter(&self, task: &TaskRef) -> Result<()> {
        self.state().dead_letter(task);
        Ok(())
    }

    async fn requeue_dead(&self, dead: &[TaskRef], enqueue: &[Dispatch]) -> Result<()> {
        self.state().requeue_dead(dead, enqueue);
        Ok(())
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.state().dead.len() as u64)
    }

    async fn pending_count(&self) -> Result<u64> {
        Ok(self.state().pending_len() as u64)
    }
}

/// A claimed reference awaiting ack, nack or the end of its visibility.
#[derive(Debug)]
struct Claimed {
    task: TaskRef,
    priority: Priority,
    /// Visibility deadline in Unix milliseconds, the unit of the index (and of the Redis
    /// adapter's visibility set, so both backends round the same way).
    visible_at: i64,
}

/// Everything the queue holds. Methods are synchronous and run under the queue's lock.
#[derive(Debug, Default)]
struct State {
    /// Indexed by [`slot`]: interactive first.
    pending: [VecDeque<TaskRef>; 2],
    /// Receipt → claim.
    claims: HashMap<String, Claimed>,
    /// `(visible_at, receipt)` for every claim, so expired claims are found in order without a
    /// scan of all claims.
    visibility: BTreeSet<(i64, String)>,
    /// Nacks per reference since it was last dead-lettered, requeued from the dead list or acked.
    nacks: HashMap<TaskRef, u32>,
    /// Dead references, oldest first.
    dead: VecDeque<TaskRef>,
    /// The members of `dead`, so it never holds a reference twice.
    dead_set: HashSet<TaskRef>,
    /// Claims made so far; it prefixes receipts so claims that expire together return in the
    /// order they were claimed.
    claimed: u64,
}

/// The index of a priority's pending list (dispatch order).
fn slot(priority: Priority) -> usize {
    match priority {
        Priority::Interactive => 0,
        Priority::Batch => 1,
    }
}

impl State {
    fn pending_len(&self) -> usize {
        self.pending.iter().map(VecDeque::len).sum()
    }

    fn enqueue(&mut self, tasks: &[Dispatch]) {
        for (task, priority) in tasks {
            self.pending[slot(*priority)].push_back(task.clone());
        }
    }

    fn claim(&mut self, max: usize, visible_at: Timestamp) -> Vec<Claim> {
        let visible_at = visible_at.unix_millis();
        let mut out = Vec::with_capacity(max.min(self.pending_len()));
        for priority in Priority::ALL {
            while out.len() < max {
                let Some(task) = self.pending[slot(priority)].pop_front() else {
                    break;
                };
                self.claimed += 1;
                // Sequence first (ordering), random bits after (unguessable, unique per queue).
                let receipt = format!("{:016x}-{}", self.claimed, uuid::Uuid::new_v4().simple());
                self.visibility.insert((visible_at, receipt.clone()));
                self.claims.insert(
                    receipt.clone(),
                    Claimed {
                        task: task.clone(),
                        priority,
                        visible_at,
                    },
                );
                out.push(Claim {
                    receipt,
                    task,
                    priority,
                });
            }
        }
        out
    }

    /// Removes a claim and its index entry.
    fn take_claim(&mut self, receipt: &str) -> Option<Claimed> {
        let claimed = self.claims.remove(receipt)?;
        self.visibility
            .remove(&(claimed.visible_at, receipt.to_owned()));
        Some(claimed)
    }

    fn ack(&mut self, receipts: &[String]) {
        for receipt in receipts {
            if let Some(claimed) = self.take_claim(receipt) {
                // The reference was handled, so earlier nacks say nothing about its next trip
                // through the queue; dropping the count also keeps `nacks` from growing forever.
                self.nacks.remove(&claimed.task);
            }
        }
    }

    fn nack(&mut self, receipt: &str, deadletter_max: u32) -> NackOutcome {
        let Some(claimed) = self.take_claim(receipt) else {
            // Acked already, or its visibility lapsed and it is pending again: returning it
            // once more would duplicate it and count a nack against the next claimant.
            return NackOutcome::Requeued;
        };
        let nacks = self.nacks.entry(claimed.task.clone()).or_insert(0);
        *nacks += 1;
        if deadletter_max > 0 && *nacks >= deadletter_max {
            self.dead_letter(&claimed.task);
            NackOutcome::DeadLettered
        } else {
            // Front: it was the oldest reference when it was claimed.
            self.pending[slot(claimed.priority)].push_front(claimed.task);
            NackOutcome::Requeued
        }
    }

    fn requeue_expired(&mut self, now: Timestamp, limit: usize) -> usize {
        let now = now.unix_millis();
        let mut expired = Vec::new();
        while expired.len() < limit {
            match self.visibility.first() {
                Some((visible_at, _)) if *visible_at <= now => {}
                _ => break,
            }
            let Some((_, receipt)) = self.visibility.pop_first() else {
                break;
            };
            if let Some(claimed) = self.claims.remove(&receipt) {
                expired.push(claimed);
            }
        }
        let count = expired.len();
        // Pushing to the front in reverse keeps the earliest-claimed reference first.
        for claimed in expired.into_iter().rev() {
            self.pending[slot(claimed.priority)].push_front(claimed.task);
        }
        count
    }

    fn dead_letter(&mut self, task: &TaskRef) {
        self.nacks.remove(task);
        if self.dead_set.insert(task.clone()) {
            self.dead.push_back(task.clone());
        }
    }

    fn requeue_dead(&mut self, dead: &[TaskRef], enqueue: &[Dispatch]) {
        let mut removed = HashSet::new();
        for task in dead {
            self.nacks.remove(task);
            if self.dead_set.remove(task) {
                removed.insert(task);
            }
        }
        if !removed.is_empty() {
            // One pass over the dead list, however many references leave it.
            self.dead.retain(|task| !removed.contains(task));
        }
        self.enqueue(enqueue);
    }
}

#[cfg(test)]
mod tests {
    use daef_core::model::JobId;

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_767_225_600_000_000 + secs * 1_000_000)
    }

    fn refs(n: usize) -> Vec<TaskRef> {
        let job = JobId::generate();
        (0..n)
            .map(|i| TaskRef::new(job.clone(), format!("t{i}")))
            .collect()
    }

    fn dispatch(refs: &[TaskRef], priority: Priority) -> Vec<Dispatch> {
        refs.iter().map(|r| (r.clone(), priority)).collect()
    }

    /// Claims, their index and the dead list agree with each other.
    #[track_caller]
    fn assert_consistent(state: &State) {
        assert_eq!(state.claims.len(), state.visibility.len());
        for (visible_at, receipt) in &state.visibility {
            let claimed = state
                .claims
                .get(receipt)
                .expect("indexed receipt is claimed");
            assert_eq!(claimed.visible_at, *visible_at);
        }
        assert_eq!(state.dead.len(), state.dead_set.len());
        assert!(state.dead.iter().all(|task| state.dead_set.contains(task)));
    }

    #[test]
    fn index_stays_consistent_through_every_operation() {
        let mut state = State::default();
        let tasks = refs(20);
        state.enqueue(&dispatch(&tasks[..10], Priority::Interactive));
        state.enqueue(&dispatch(&tasks[10..], Priority::Batch));

        let first = state.claim(6, t(30));
        let second = state.claim(6, t(60));
        assert_consistent(&state);

        state.ack(&[first[0].receipt.clone(), "unknown".to_owned()]);
        state.ack(&[first[0].receipt.clone()]);
        assert_consistent(&state);

        assert_eq!(state.nack(&first[1].receipt, 1), NackOutcome::DeadLettered);
        assert_eq!(state.nack(&first[2].receipt, 0), NackOutcome::Requeued);
        assert_consistent(&state);

        assert_eq!(state.requeue_expired(t(30), 2), 2);
        assert_consistent(&state);
        assert_eq!(state.requeue_expired(t(60), 100), 1 + second.len());
        assert_consistent(&state);
        assert!(state.claims.is_empty());

        state.dead_letter(&tasks[0]);
        state.dead_letter(&tasks[0]);
        state.requeue_dead(&[first[1].task.clone()], &[]);
        assert_consistent(&state);
        assert_eq!(state.dead.len(), 1);
        // 20, less the acked reference and the nacked-to-death one (taken off the dead list
        // without being enqueued).
        assert_eq!(state.pending_len(), 20 - 2);
    }

    #[test]
    fn expired_claims_return_to_the_front_in_claim_order() {
        let mut state = State::default();
        let tasks = refs(4);
        state.enqueue(&dispatch(&tasks, Priority::Interactive));
        let early = state.claim(2, t(10));
        let late = state.claim(1, t(20));
        assert_eq!(state.requeue_expired(t(20), 10), 3);
        let order: Vec<TaskRef> = state.pending[0].iter().cloned().collect();
        assert_eq!(
            order,
            vec![
                early[0].task.clone(),
                early[1].task.clone(),
                late[0].task.clone(),
                tasks[3].clone(),
            ]
        );
    }

    #[test]
    fn visibility_deadlines_compare_in_whole_milliseconds() {
        let mut state = State::default();
        state.enqueue(&dispatch(&refs(1), Priority::Batch));
        let deadline = t(30).plus(Duration::from_micros(1_500));
        state.claim(1, deadline);
        // 30.001 s is the deadline's millisecond; 30.000999 s is the one before.
        assert_eq!(
            state.requeue_expired(t(30).plus(Duration::from_micros(999)), 1),
            0
        );
        assert_eq!(
            state.requeue_expired(t(30).plus(Duration::from_millis(1)), 1),
            1
        );
    }

    #[test]
    fn ack_forgets_the_nack_count() {
        let mut state = State::default();
        let task = refs(1);
        state.enqueue(&dispatch(&task, Priority::Interactive));
        for _ in 0..2 {
            let claim = state.claim(1, t(30));
            assert_eq!(state.nack(&claim[0].receipt, 3), NackOutcome::Requeued);
        }
        let claim = state.claim(1, t(30));
        state.ack(&[claim[0].receipt.clone()]);
        assert!(state.nacks.is_empty());

        // A later trip starts a fresh budget of three nacks.
        state.enqueue(&dispatch(&task, Priority::Interactive));
        for expected in [
            NackOutcome::Requeued,
            NackOutcome::Requeued,
            NackOutcome::DeadLettered,
        ] {
            let claim = state.claim(1, t(30));
            assert_eq!(state.nack(&claim[0].receipt, 3), expected);
        }
        assert!(state.nacks.is_empty());
    }

    #[test]
    fn debug_shows_sizes_not_contents() {
        let queue = MemoryQueue::new(3);
        queue.state().enqueue(&dispatch(&refs(2), Priority::Batch));
        let text = format!("{queue:?}");
        assert_eq!(
            text,
            "MemoryQueue { deadletter_max: 3, pending: 2, claimed: 0, dead: 0 }"
        );
    }
}
