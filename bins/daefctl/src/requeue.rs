//! `dead-letter requeue` and `dead-letter discard`: the same body, guards and batching, another
//! route. Named tasks go in one request, as typed. `--job` and `--all` can mean more tasks than
//! the gateway takes at once, so they are sent in batches:
//!
//! - List the dead letters (oldest first; the gateway lists at most [`LIST_PAGE`]), keep the
//!   ones asked for that this run has not sent yet, and send them in batches of at most the
//!   batch size. Then list again: requeued or discarded tasks have left the list, so the next listing starts
//!   with the ones still to do. The run ends at a listing with nothing left to send; since no
//!   task is sent twice, tasks the gateway does not requeue cannot keep it going, and a dry run
//!   (which changes nothing) ends after one page.
//! - `400 tasks exceeds max batch size N`: the gateway takes at most N; the batch is sent
//!   again as batches of N, and so is the rest of the run.
//! - `429` (the admin requeue rate limit): wait `Retry-After` seconds and send the same batch
//!   again, at most [`MAX_RATE_LIMIT_WAITS`] times in a row and never longer than
//!   [`MAX_RATE_LIMIT_WAIT`] at once, so the run always ends.
//! - Anything else stops the run, after saying how far it got.

use std::collections::HashSet;
use std::time::Duration;

use daef_client::Error;
use daef_client::model::{DeadLetter, RequeueOutcome, TaskKey};
use daef_core::model::JobId;

use crate::Ctx;
use crate::cli::Requeue;
use crate::explain::exit;
use crate::output;
use crate::progress::Progress;

/// Most dead letters one listing returns (the gateway's cap on `limit`).
const LIST_PAGE: u64 = 1_000;

/// Consecutive `429`s for one batch after which the run gives up.
const MAX_RATE_LIMIT_WAITS: u32 = 5;

/// The longest `Retry-After` waited out. The gateway's window is a minute; a longer answer is
/// not the usual rate limit, and the user is better told than kept waiting.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// The wait when a `429` carries no `Retry-After`: the gateway's rate-limit window.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// What the gateway says when a batch is over `DAEF_ADMIN_REQUEUE_MAX_BATCH`.
const OVER_MAX_BATCH: &str = "tasks exceeds max batch size ";

/// What a run does to the dead letters it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Back to the queue with a fresh attempt budget.
    Requeue,
    /// `Failed` for good, off the dead-letter queue.
    Discard,
}

impl Action {
    fn noun(self) -> &'static str {
        match self {
            Action::Requeue => "requeue",
            Action::Discard => "discard",
        }
    }

    /// The past tense, and the answer's count field.
    fn done(self) -> &'static str {
        match self {
            Action::Requeue => "requeued",
            Action::Discard => "discarded",
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, action: Action, args: Requeue) -> anyhow::Result<u8> {
    if !args.all && args.job.is_none() {
        return send_named(ctx, action, &args).await;
    }
    let selection = Selection {
        action,
        job: args.job.map(|j| JobId::new(j.as_str())),
        limit: args.limit,
        dry_run: args.dry_run,
        confirm: args.confirm,
    };
    let batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let mut progress = Progress::new(
        ctx.json,
        "{spinner} [{bar:30}] {pos}/{len} tasks sent · {msg} · {elapsed}",
    );
    let mut run = Run::new(batch_size);
    let finished = run.requeue_all(&Gateway(ctx), &selection, &progress).await;
    progress.finish();
    if let Err(err) = finished {
        if run.batches > 0 {
            eprintln!("stopped after {}", run.describe(&selection));
        }
        return Err(err.into());
    }
    if ctx.json {
        output::json(&outcome_json(&run.total, action))?;
    } else if run.total.requested == 0 {
        println!("no dead letters to {}", action.noun());
    } else {
        print_summary(&run.total, run.batches, action);
    }
    if run.ended_at_list_cap {
        eprintln!(
            "note: the gateway lists only the oldest {LIST_PAGE} dead letters, and none of those is \
             left to send; any beyond them were not looked at (run again once those are {})",
            action.done()
        );
    }
    Ok(exit::OK)
}

/// `--json` output: `{"dry_run", "requested", "requeued"}` (`"discarded"` for a discard),
/// `dry_run` always present (the gateway's answer leaves it out unless true).
fn outcome_json(outcome: &RequeueOutcome, action: Action) -> serde_json::Value {
    serde_json::json!({
        "dry_run": outcome.dry_run,
        "requested": outcome.requested,
        action.done(): outcome.requeued,
    })
}

/// The tasks named on the command line, in one request.
async fn send_named(ctx: &Ctx, action: Action, args: &Requeue) -> anyhow::Result<u8> {
    if args.tasks.is_empty() {
        anyhow::bail!(
            "nothing to {}: name tasks as JOB_ID/TASK_ID, or use --job JOB_ID or --all",
            action.noun()
        );
    }
    let keys: Vec<TaskKey> = args
        .tasks
        .iter()
        .map(|(job, task)| TaskKey {
            job_id: JobId::new(job.as_str()),
            task_id: task.clone(),
        })
        .collect();
    let outcome = Gateway(ctx)
        .act(action, &keys, args.dry_run, args.confirm.as_deref())
        .await?;
    if ctx.json {
        output::json(&outcome_json(&outcome, action))?;
    } else {
        print_summary(&outcome, 1, action);
    }
    Ok(exit::OK)
}

fn print_summary(outcome: &RequeueOutcome, batches: u64, action: Action) {
    let in_batches = if batches > 1 {
        format!(" in {batches} batches")
    } else {
        String::new()
    };
    if outcome.dry_run {
        println!(
            "dry run: {} of {} listed tasks are dead letters{in_batches}; nothing changed",
            outcome.requeued, outcome.requested
        );
    } else {
        println!(
            "{} {} of {} listed tasks{in_batches}",
            action.done(),
            outcome.requeued,
            outcome.requested
        );
        if outcome.requeued < outcome.requested {
            println!(
                "(the others were not dead letters: already requeued or discarded, or never dead)"
            );
        }
    }
}

/// Which dead letters a batched run sends, and what it does to them.
#[derive(Debug)]
struct Selection {
    action: Action,
    /// Only this job's (`--job`); every job's when `None` (`--all`).
    job: Option<JobId>,
    /// Stop after sending this many.
    limit: Option<u64>,
    dry_run: bool,
    /// Sent with every batch.
    confirm: Option<String>,
}

/// The two gateway calls a batched run makes, and its pause: the gateway in daefctl, a fake in
/// the tests.
trait DeadLetterApi {
    async fn list(&self, limit: u64) -> Result<Vec<DeadLetter>, Error>;
    /// Requeues or discards `tasks`; the count of either comes back in `requeued`.
    async fn act(
        &self,
        action: Action,
        tasks: &[TaskKey],
        dry_run: bool,
        confirm: Option<&str>,
    ) -> Result<RequeueOutcome, Error>;
    async fn pause(&self, wait: Duration);
}

/// The gateway daefctl talks to.
struct Gateway<'a>(&'a Ctx);

impl DeadLetterApi for Gateway<'_> {
    async fn list(&self, limit: u64) -> Result<Vec<DeadLetter>, Error> {
        self.0.client.dead_letters(Some(limit)).await
    }

    async fn act(
        &self,
        action: Action,
        tasks: &[TaskKey],
        dry_run: bool,
        confirm: Option<&str>,
    ) -> Result<RequeueOutcome, Error> {
        let client = &self.0.client;
        match action {
            Action::Requeue => client.requeue_dead_letters(tasks, dry_run, confirm).await,
            Action::Discard => {
                let outcome = client.discard_dead_letters(tasks, dry_run, confirm).await?;
                Ok(RequeueOutcome {
                    dry_run: outcome.dry_run,
                    requested: outcome.requested,
                    requeued: outcome.discarded,
                })
            }
        }
    }

    async fn pause(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }
}

/// What to do about a batch the gateway refused.
#[derive(Debug, PartialEq, Eq)]
enum Recovery {
    /// The gateway takes at most this many tasks per request: send smaller batches.
    ShrinkBatches(usize),
    /// Rate limited: wait this long, then send the same batch again.
    RetryAfter(Duration),
    /// Nothing to work around: the run stops with the error.
    GiveUp,
}

/// How to recover from `err`, the answer to a batch of `batch_len` tasks that has already been
/// rate limited `waits` times in a row.
fn recovery(err: &Error, batch_len: usize, waits: u32) -> Recovery {
    match err {
        Error::BadRequest(msg) => match max_batch_in(msg) {
            Some(max) if max > 0 && max < batch_len => Recovery::ShrinkBatches(max),
            _ => Recovery::GiveUp,
        },
        Error::RateLimited {
            retry_after_secs, ..
        } => {
            let wait = retry_after_secs
                .map_or(DEFAULT_RATE_LIMIT_WAIT, Duration::from_secs)
                .max(Duration::from_secs(1));
            if waits >= MAX_RATE_LIMIT_WAITS || wait > MAX_RATE_LIMIT_WAIT {
                Recovery::GiveUp
            } else {
                Recovery::RetryAfter(wait)
            }
        }
        _ => Recovery::GiveUp,
    }
}

/// N from `tasks exceeds max batch size N`.
fn max_batch_in(msg: &str) -> Option<usize> {
    msg.strip_prefix(OVER_MAX_BATCH)?.trim().parse().ok()
}

/// A batched requeue in progress: what was sent, and the running totals.
#[derive(Debug)]
struct Run {
    batch_size: usize,
    /// Every task sent so far, so none is sent twice.
    sent: HashSet<(JobId, String)>,
    /// Summed over the batches: the same shape as one request's answer (`requeued` counts the
    /// tasks requeued or discarded).
    total: RequeueOutcome,
    batches: u64,
    /// The last listing was a full page with nothing left to send in it.
    ended_at_list_cap: bool,
}

impl Run {
    fn new(batch_size: usize) -> Self {
        Self {
            batch_size: batch_size.max(1),
            sent: HashSet::new(),
            total: RequeueOutcome {
                dry_run: false,
                requested: 0,
                requeued: 0,
            },
            batches: 0,
            ended_at_list_cap: false,
        }
    }

    /// Lists, requeues what is left to send, and lists again until nothing is left.
    async fn requeue_all(
        &mut self,
        api: &impl DeadLetterApi,
        selection: &Selection,
        progress: &Progress,
    ) -> Result<(), Error> {
        self.total.dry_run = selection.dry_run;
        loop {
            let room = selection.limit.map_or(usize::MAX, |limit| {
                usize::try_from(limit.saturating_sub(self.total.requested)).unwrap_or(usize::MAX)
            });
            if room == 0 {
                return Ok(());
            }
            let listed = api.list(LIST_PAGE).await?;
            let full_page = listed.len() as u64 >= LIST_PAGE;
            let todo: Vec<TaskKey> = listed
                .into_iter()
                .filter(|d| selection.job.as_ref().is_none_or(|job| &d.job_id == job))
                .filter(|d| !self.sent.contains(&(d.job_id.clone(), d.task_id.clone())))
                .take(room)
                .map(|d| TaskKey {
                    job_id: d.job_id,
                    task_id: d.task_id,
                })
                .collect();
            if todo.is_empty() {
                self.ended_at_list_cap = full_page;
                return Ok(());
            }
            self.send_in_batches(api, todo, selection, progress).await?;
        }
    }

    /// Sends `todo` in batches, recovering from the refusals [`recovery`] knows.
    async fn send_in_batches(
        &mut self,
        api: &impl DeadLetterApi,
        todo: Vec<TaskKey>,
        selection: &Selection,
        progress: &Progress,
    ) -> Result<(), Error> {
        let known = self.total.requested + todo.len() as u64;
        let mut rest = todo.as_slice();
        let mut waits = 0;
        while !rest.is_empty() {
            let batch = &rest[..rest.len().min(self.batch_size)];
            let answer = api
                .act(
                    selection.action,
                    batch,
                    selection.dry_run,
                    selection.confirm.as_deref(),
                )
                .await;
            match answer {
                Ok(outcome) => {
                    self.batches += 1;
                    self.total.requested += outcome.requested;
                    self.total.requeued += outcome.requeued;
                    self.sent
                        .extend(batch.iter().map(|k| (k.job_id.clone(), k.task_id.clone())));
                    let verb = if selection.dry_run {
                        "are dead letters"
                    } else {
                        selection.action.done()
                    };
                    progress.line(&format!(
                        "batch {}: {} of {} {verb}",
                        self.batches, outcome.requeued, outcome.requested
                    ));
                    progress.show(
                        self.total.requested,
                        known,
                        format!("{} {verb}", self.total.requeued),
                    );
                    rest = &rest[batch.len()..];
                    waits = 0;
                }
                Err(err) => match recovery(&err, batch.len(), waits) {
                    Recovery::ShrinkBatches(max) => {
                        progress.line(&format!(
                            "the gateway takes at most {max} tasks per {} \
                             (its DAEF_ADMIN_REQUEUE_MAX_BATCH): sending batches of {max}",
                            selection.action.noun()
                        ));
                        self.batch_size = max;
                    }
                    Recovery::RetryAfter(wait) => {
                        waits += 1;
                        progress.warn(&format!(
                            "rate limited ({}): waiting {}s, then sending batch {} again \
                             ({waits} of at most {MAX_RATE_LIMIT_WAITS} waits)",
                            err.gateway_message().unwrap_or("429"),
                            wait.as_secs(),
                            self.batches + 1,
                        ));
                        api.pause(wait).await;
                    }
                    Recovery::GiveUp => return Err(err),
                },
            }
        }
        Ok(())
    }

    /// How far the run got, in words.
    fn describe(&self, selection: &Selection) -> String {
        let batches = match self.batches {
            1 => "1 batch".to_owned(),
            n => format!("{n} batches"),
        };
        if selection.dry_run {
            format!(
                "{batches} (dry run): {} of {} listed tasks are dead letters",
                self.total.requeued, self.total.requested
            )
        } else {
            format!(
                "{batches}: {} {} of {} listed tasks",
                selection.action.done(),
                self.total.requeued,
                self.total.requested
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use daef_core::Timestamp;

    use super::*;

    /// A gateway with dead letters, a batch limit, and a rate limit that refuses the next
    /// `limited` requeues.
    struct Fake {
        dead: RefCell<Vec<DeadLetter>>,
        max_batch: usize,
        limited: Cell<u32>,
        retry_after_secs: Option<u64>,
        /// The size of each request, refused ones included.
        requests: RefCell<Vec<usize>>,
        actions: RefCell<Vec<Action>>,
        confirms: RefCell<Vec<Option<String>>>,
        pauses: RefCell<Vec<Duration>>,
    }

    impl Fake {
        fn new(jobs: &[(&str, usize)], max_batch: usize) -> Self {
            let at = Timestamp::parse_rfc3339("2026-11-26T10:30:00Z").expect("time");
            let dead = jobs
                .iter()
                .flat_map(|(job, n)| {
                    (0..*n).map(move |i| DeadLetter {
                        job_id: JobId::new(*job),
                        task_id: format!("t{i}"),
                        tenant: "default".into(),
                        attempt: 3,
                        error: "exit 1".into(),
                        dead_lettered_at: at,
                    })
                })
                .collect();
            Self {
                dead: RefCell::new(dead),
                max_batch,
                limited: Cell::new(0),
                retry_after_secs: Some(7),
                requests: RefCell::new(Vec::new()),
                actions: RefCell::new(Vec::new()),
                confirms: RefCell::new(Vec::new()),
                pauses: RefCell::new(Vec::new()),
            }
        }
    }

    impl DeadLetterApi for Fake {
        async fn list(&self, limit: u64) -> Result<Vec<DeadLetter>, Error> {
            let dead = self.dead.borrow();
            Ok(dead
                .iter()
                .take(usize::try_from(limit).expect("limit"))
                .cloned()
                .collect())
        }

        async fn act(
            &self,
            action: Action,
            tasks: &[TaskKey],
            dry_run: bool,
            confirm: Option<&str>,
        ) -> Result<RequeueOutcome, Error> {
            self.requests.borrow_mut().push(tasks.len());
            self.actions.borrow_mut().push(action);
            self.confirms.borrow_mut().push(confirm.map(str::to_owned));
            if tasks.len() > self.max_batch {
                return Err(Error::BadRequest(format!(
                    "{OVER_MAX_BATCH}{}",
                    self.max_batch
                )));
            }
            if !dry_run && self.limited.get() > 0 {
                self.limited.set(self.limited.get() - 1);
                return Err(Error::RateLimited {
                    retry_after_secs: self.retry_after_secs,
                    msg: "requeue rate limit exceeded".into(),
                });
            }
            let mut dead = self.dead.borrow_mut();
            let before = dead.len();
            let is_listed = |d: &DeadLetter| {
                tasks
                    .iter()
                    .any(|k| k.job_id == d.job_id && k.task_id == d.task_id)
            };
            let requeued = if dry_run {
                dead.iter().filter(|d| is_listed(d)).count()
            } else {
                dead.retain(|d| !is_listed(d));
                before - dead.len()
            };
            Ok(RequeueOutcome {
                dry_run,
                requested: tasks.len() as u64,
                requeued: requeued as u64,
            })
        }

        async fn pause(&self, wait: Duration) {
            self.pauses.borrow_mut().push(wait);
        }
    }

    fn every(dry_run: bool) -> Selection {
        Selection {
            action: Action::Requeue,
            job: None,
            limit: None,
            dry_run,
            confirm: Some("yes-really".into()),
        }
    }

    async fn requeue_with(
        fake: &Fake,
        batch_size: usize,
        selection: &Selection,
    ) -> (Run, Result<(), Error>) {
        let mut run = Run::new(batch_size);
        let done = run
            .requeue_all(fake, selection, &Progress::new(true, "{msg}"))
            .await;
        (run, done)
    }

    #[tokio::test]
    async fn everything_is_requeued_in_batches_of_the_size_asked() {
        let fake = Fake::new(&[("job-a", 7)], 100);
        let (run, done) = requeue_with(&fake, 3, &every(false)).await;
        done.expect("run");
        assert_eq!(*fake.requests.borrow(), [3, 3, 1]);
        assert!(fake.dead.borrow().is_empty());
        assert_eq!((run.total.requested, run.total.requeued), (7, 7));
        assert_eq!(run.batches, 3);
        assert!(!run.ended_at_list_cap);
        // The confirmation goes with every batch.
        assert!(
            fake.confirms
                .borrow()
                .iter()
                .all(|c| c.as_deref() == Some("yes-really"))
        );
    }

    #[tokio::test]
    async fn a_discard_is_batched_and_recovers_the_same_way() {
        let fake = Fake::new(&[("job-a", 5)], 2);
        fake.limited.set(1);
        let selection = Selection {
            action: Action::Discard,
            ..every(false)
        };
        let (run, done) = requeue_with(&fake, 100, &selection).await;
        done.expect("run");
        assert_eq!(*fake.requests.borrow(), [5, 2, 2, 2, 1]);
        assert!(fake.actions.borrow().iter().all(|a| *a == Action::Discard));
        assert_eq!((run.total.requested, run.total.requeued), (5, 5));
        assert_eq!(
            run.describe(&selection),
            "3 batches: discarded 5 of 5 listed tasks"
        );
        assert_eq!(
            outcome_json(&run.total, Action::Discard),
            serde_json::json!({"dry_run": false, "requested": 5, "discarded": 5})
        );
    }

    #[tokio::test]
    async fn a_smaller_gateway_limit_is_adopted_and_the_refused_batch_resent() {
        let fake = Fake::new(&[("job-a", 7)], 3);
        let (run, done) = requeue_with(&fake, 100, &every(false)).await;
        done.expect("run");
        // The first request is refused; the same tasks then go in batches of 3.
        assert_eq!(*fake.requests.borrow(), [7, 3, 3, 1]);
        assert_eq!((run.total.requested, run.total.requeued), (7, 7));
        assert_eq!((run.batches, run.batch_size), (3, 3));
    }

    #[tokio::test]
    async fn rate_limits_are_waited_out_and_the_same_batch_sent_again() {
        let fake = Fake::new(&[("job-a", 5)], 100);
        fake.limited.set(2);
        let (run, done) = requeue_with(&fake, 2, &every(false)).await;
        done.expect("run");
        assert_eq!(*fake.pauses.borrow(), [Duration::from_secs(7); 2]);
        assert_eq!(*fake.requests.borrow(), [2, 2, 2, 2, 1]);
        assert_eq!((run.total.requested, run.total.requeued), (5, 5));
    }

    #[tokio::test]
    async fn a_rate_limit_that_does_not_lift_ends_the_run_with_the_429() {
        let fake = Fake::new(&[("job-a", 5)], 100);
        fake.limited.set(u32::MAX);
        let (run, done) = requeue_with(&fake, 2, &every(false)).await;
        assert!(matches!(done, Err(Error::RateLimited { .. })), "{done:?}");
        assert_eq!(fake.pauses.borrow().len() as u32, MAX_RATE_LIMIT_WAITS);
        assert_eq!(run.total.requested, 0);
    }

    #[tokio::test]
    async fn a_dry_run_counts_every_batch_once_and_changes_nothing() {
        let fake = Fake::new(&[("job-a", 4), ("job-b", 3)], 100);
        fake.limited.set(u32::MAX); // dry runs are not rate limited
        let (run, done) = requeue_with(&fake, 3, &every(true)).await;
        done.expect("run");
        assert_eq!(fake.dead.borrow().len(), 7);
        assert_eq!(*fake.requests.borrow(), [3, 3, 1]);
        assert!(run.total.dry_run);
        assert_eq!((run.total.requested, run.total.requeued), (7, 7));
    }

    #[tokio::test]
    async fn one_job_and_a_limit_select_what_is_sent() {
        let fake = Fake::new(&[("job-a", 4), ("job-b", 3)], 100);
        let selection = Selection {
            job: Some(JobId::new("job-b")),
            ..every(false)
        };
        let (run, done) = requeue_with(&fake, 2, &selection).await;
        done.expect("run");
        assert_eq!(run.total.requeued, 3);
        assert!(
            fake.dead
                .borrow()
                .iter()
                .all(|d| d.job_id.as_str() == "job-a")
        );

        let fake = Fake::new(&[("job-a", 7)], 100);
        let selection = Selection {
            limit: Some(5),
            ..every(false)
        };
        let (run, done) = requeue_with(&fake, 2, &selection).await;
        done.expect("run");
        assert_eq!(*fake.requests.borrow(), [2, 2, 1]);
        assert_eq!(fake.dead.borrow().len(), 2);
        assert_eq!(run.total.requeued, 5);
    }

    #[tokio::test]
    async fn tasks_that_stay_dead_letters_are_not_sent_again() {
        // More dead letters than one listing shows, as in a dry run: the second listing shows
        // the same page, all of it sent, so the run ends and says where it stopped.
        let fake = Fake::new(&[("job-a", 1_005)], 1_000);
        let (run, done) = requeue_with(&fake, 1_000, &every(true)).await;
        done.expect("run");
        assert_eq!(*fake.requests.borrow(), [1_000]);
        assert!(run.ended_at_list_cap);
    }

    #[test]
    fn refusals_are_worked_around_only_when_they_can_be() {
        let over = |n: usize| Error::BadRequest(format!("{OVER_MAX_BATCH}{n}"));
        assert_eq!(recovery(&over(3), 100, 0), Recovery::ShrinkBatches(3));
        // A limit that does not shrink the batch would loop: give up instead.
        assert_eq!(recovery(&over(100), 100, 0), Recovery::GiveUp);
        assert_eq!(recovery(&over(0), 100, 0), Recovery::GiveUp);
        assert_eq!(
            recovery(
                &Error::BadRequest("confirmation token required for large requeue".into()),
                100,
                0
            ),
            Recovery::GiveUp
        );

        let limited = |secs: Option<u64>| Error::RateLimited {
            retry_after_secs: secs,
            msg: "requeue rate limit exceeded".into(),
        };
        assert_eq!(
            recovery(&limited(Some(42)), 5, 0),
            Recovery::RetryAfter(Duration::from_secs(42))
        );
        assert_eq!(
            recovery(&limited(Some(0)), 5, 0),
            Recovery::RetryAfter(Duration::from_secs(1)),
            "never a busy loop"
        );
        assert_eq!(
            recovery(&limited(None), 5, 0),
            Recovery::RetryAfter(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(
            recovery(&limited(Some(42)), 5, MAX_RATE_LIMIT_WAITS),
            Recovery::GiveUp,
            "bounded"
        );
        assert_eq!(recovery(&limited(Some(3_600)), 5, 0), Recovery::GiveUp);

        assert_eq!(
            recovery(&Error::Unavailable("store".into()), 5, 0),
            Recovery::GiveUp
        );
    }
}
