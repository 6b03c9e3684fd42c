//! Periodic schedules: a cron expression (five fields, UTC), a job template, and the rules of
//! when a schedule fires. Pure functions with the time passed in; the stores apply a firing
//! atomically ([`crate::ports::Store::fire_schedule`]) and the reconciler drives them.
//!
//! Missed ticks are not back-filled: a schedule that comes due late (every replica was down,
//! or it was due while the reconciler was busy) fires once, for the oldest tick it missed, and
//! its next tick is the first one after *now*. So at most one catch-up run, whatever the gap.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::model::{Job, JobId, Task};
use crate::planner::{self, JobSpec};
use crate::time::Timestamp;
use crate::transition::{self, Timing};

/// Longest schedule id.
pub const MAX_SCHEDULE_ID_LEN: usize = planner::MAX_TASK_ID_LEN;

/// True when `id` is 1–128 characters of `[A-Za-z0-9._-]` (the rule of task ids), not all of
/// them dots: an id is a path segment (`/v1/schedules/{id}`), and browsers and proxies rewrite
/// `.` and `..` segments.
pub fn is_valid_schedule_id(id: &str) -> bool {
    planner::is_valid_task_id(id) && !id.bytes().all(|b| b == b'.')
}

/// A parsed five-field cron expression (minute, hour, day of month, month, day of week), read
/// in UTC with Vixie cron's rules (a restricted day of month *or* day of week matches).
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    parsed: croner::Cron,
}

impl CronExpr {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = text.split(' ').filter(|f| !f.is_empty()).count();
        if fields != 5 {
            return Err(Error::invalid(format!(
                "cron must have 5 fields (minute hour day-of-month month day-of-week), got {fields}"
            )));
        }
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|e| Error::invalid(format!("cron is not a valid expression: {e}")))?;
        Ok(Self { text, parsed })
    }

    /// The expression, its fields one space apart.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after`; `None` when there is none (an expression such as
    /// `0 0 30 2 *` never matches).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = chrono::DateTime::from_timestamp_micros(after.unix_micros())?;
        let next = self.parsed.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp::from_unix_micros(next.timestamp_micros()))
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.text).finish()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl FromStr for CronExpr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A stored schedule, named by its tenant and id: ids are unique within a tenant, so a tenant
/// never learns which ids another one uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Unique within the tenant: 1–128 characters of `[A-Za-z0-9._-]`, not all dots.
    pub schedule_id: String,
    /// The tenant it belongs to, and its jobs.
    pub tenant: String,
    /// Its cron expression, as [`CronExpr::as_str`] spells it.
    pub cron: String,
    /// What each tick submits.
    pub template: JobSpec,
    /// A paused schedule does not fire.
    pub paused: bool,
    /// Its next tick (meaningless while paused: resuming sets it afresh).
    pub next_fire_at: Timestamp,
    /// The tick it last fired for.
    pub last_fire_at: Option<Timestamp>,
    /// The job it last created.
    pub last_job_id: Option<JobId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed (created, paused, resumed, fired).
    pub updated_at: Timestamp,
}

impl Schedule {
    /// Whether the reconciler should fire it at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        !self.paused && self.next_fire_at <= now
    }

    /// Its cron expression, parsed.
    pub fn cron_expr(&self) -> Result<CronExpr, Error> {
        CronExpr::parse(&self.cron)
    }
}

/// What a new schedule is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSchedule {
    /// Its id.
    pub schedule_id: String,
    /// The tenant its jobs belong to.
    pub tenant: String,
    /// Five-field cron expression, UTC.
    pub cron: String,
    /// What each tick submits (no `run_at`: a tick's job starts at once).
    pub template: JobSpec,
    /// Created paused.
    pub paused: bool,
}

/// Validates a new schedule (id, cron, and a template the planner accepts) and sets its first
/// tick: the first after `now`.
pub fn create(new: NewSchedule, now: Timestamp) -> Result<Schedule, Error> {
    if !is_valid_schedule_id(&new.schedule_id) {
        return Err(Error::invalid(format!(
            "schedule_id must be 1-{MAX_SCHEDULE_ID_LEN} characters of [A-Za-z0-9._-], not all dots"
        )));
    }
    let cron = CronExpr::parse(&new.cron)?;
    let next_fire_at = cron
        .next_after(now)
        .ok_or_else(|| Error::invalid(format!("cron {:?} never fires", cron.as_str())))?;
    if new.template.run_at.is_some() {
        return Err(Error::invalid(
            "a schedule's job cannot have run_at or delay_seconds: each tick's job starts at once",
        ));
    }
    planner::plan(&new.template)?;
    Ok(Schedule {
        schedule_id: new.schedule_id,
        tenant: new.tenant,
        cron: cron.as_str().to_owned(),
        template: new.template,
        paused: new.paused,
        next_fire_at,
        last_fire_at: None,
        last_job_id: None,
        created_at: now,
        updated_at: now,
    })
}

/// When a resumed schedule fires next: its first tick after `now` (the ticks it missed while
/// paused are not run). `None` when its expression no longer parses or never fires.
pub fn resumed_at(schedule: &Schedule, now: Timestamp) -> Option<Timestamp> {
    schedule.cron_expr().ok()?.next_after(now)
}

/// One firing of a schedule, as a store applies it: only while the schedule is the one read
/// (not deleted and created again), unpaused, and still due at `fire_time` (another replica has
/// not fired it), in the same step as the job it creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    /// The schedule's tenant.
    pub tenant: String,
    /// The schedule.
    pub schedule_id: String,
    /// When the schedule read was created: a schedule deleted and created again under the same
    /// name is another one.
    pub created_at: Timestamp,
    /// The tick fired: the schedule's `next_fire_at` when it was read.
    pub fire_time: Timestamp,
    /// Its next tick: the first after `now`, so missed ticks are skipped.
    pub next_fire_at: Timestamp,
    /// When it fired.
    pub now: Timestamp,
}

/// Fires a due schedule at `now`: the job its tick creates (carrying the schedule's id and the
/// tick) and the step that records it. An error when the schedule is not due, or its template
/// or expression no longer hold (they were checked when it was created).
pub fn fire(
    schedule: &Schedule,
    now: Timestamp,
    timing: Timing,
) -> Result<(Firing, Job, Vec<Task>), Error> {
    if !schedule.is_due(now) {
        return Err(Error::conflict(format!(
            "schedule {} is not due",
            schedule.schedule_id
        )));
    }
    let fire_time = schedule.next_fire_at;
    let next_fire_at = schedule
        .cron_expr()?
        .next_after(now.max(fire_time))
        .ok_or_else(|| Error::invalid(format!("cron {:?} never fires", schedule.cron)))?;
    let (mut job, tasks) =
        transition::create_job(&schedule.template, &schedule.tenant, now, timing)?;
    job.schedule_id = Some(schedule.schedule_id.clone());
    job.scheduled_for = Some(fire_time);
    let firing = Firing {
        tenant: schedule.tenant.clone(),
        schedule_id: schedule.schedule_id.clone(),
        created_at: schedule.created_at,
        fire_time,
        next_fire_at,
        now,
    };
    Ok((firing, job, tasks))
}

/// The schedule after `firing` created `job_id` ([`Store::fire_schedule`] applies this).
///
/// [`Store::fire_schedule`]: crate::ports::Store::fire_schedule
pub fn fired(schedule: &mut Schedule, firing: &Firing, job_id: &JobId) {
    schedule.next_fire_at = firing.next_fire_at;
    schedule.last_fire_at = Some(firing.fire_time);
    schedule.last_job_id = Some(job_id.clone());
    schedule.updated_at = firing.now;
}

/// Whether a store may apply `firing` to `schedule` as it is now: the schedule read (same
/// creation), unpaused, still due at the tick the firing was computed for, and past the tick it
/// last fired for — so two replicas never both fire one tick, nor does a firing that a pause and
/// resume raced with.
pub fn may_fire(schedule: &Schedule, firing: &Firing) -> bool {
    schedule.created_at == firing.created_at
        && !schedule.paused
        && schedule.next_fire_at == firing.fire_time
        && schedule
            .last_fire_at
            .is_none_or(|last| last < firing.fire_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("timestamp")
    }

    fn template() -> JobSpec {
        JobSpec {
            job_type: "report".into(),
            input: "nightly".into(),
            ..JobSpec::default()
        }
    }

    fn new(cron: &str) -> NewSchedule {
        NewSchedule {
            schedule_id: "nightly".into(),
            tenant: "acme".into(),
            cron: cron.into(),
            template: template(),
            paused: false,
        }
    }

    #[test]
    fn five_fields_in_utc_with_the_next_tick_strictly_after() {
        let cron = CronExpr::parse("30  3 * * *").expect("parses");
        assert_eq!(cron.as_str(), "30 3 * * *");
        let before = at("2026-12-07T03:29:59.5Z");
        assert_eq!(cron.next_after(before), Some(at("2026-12-07T03:30:00Z")));
        assert_eq!(
            cron.next_after(at("2026-12-07T03:30:00Z")),
            Some(at("2026-12-08T03:30:00Z"))
        );
        let weekdays = CronExpr::parse("0 9 * * MON-FRI").expect("parses");
        // 2026-12-05 is a Saturday.
        assert_eq!(
            weekdays.next_after(at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-07T09:00:00Z"))
        );
    }

    #[test]
    fn anything_but_five_valid_fields_is_refused_naming_the_problem() {
        for bad in [
            "",
            "* * * *",
            "0 * * * * *",
            "0 0 * * * 2027",
            "61 * * * *",
            "x * * * *",
        ] {
            let err = CronExpr::parse(bad).expect_err(bad);
            assert!(matches!(err, Error::Invalid(_)), "{bad}: {err}");
            assert!(err.to_string().contains("cron"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_schedule_is_validated_and_first_fires_after_creation() {
        let now = at("2026-12-07T10:15:00Z");
        let schedule = create(new("*/20 * * * *"), now).expect("valid");
        assert_eq!(schedule.next_fire_at, at("2026-12-07T10:20:00Z"));
        assert!(!schedule.is_due(now));
        assert!(schedule.is_due(at("2026-12-07T10:20:00Z")));

        for bad in ["has space", "", ".", "..", "a/b"] {
            let mut bad_id = new("* * * * *");
            bad_id.schedule_id = bad.into();
            assert!(create(bad_id, now).is_err(), "{bad:?}");
        }
        assert!(is_valid_schedule_id("nightly.v2") && is_valid_schedule_id(".hidden"));
        assert!(create(new("0 0 30 2 *"), now).is_err(), "never fires");
        let mut delayed = new("* * * * *");
        delayed.template.run_at = Some(now);
        assert!(create(delayed, now).is_err());
        let mut empty_dag = new("* * * * *");
        empty_dag.template.tasks = Some(vec![]);
        assert!(
            create(empty_dag, now).is_err(),
            "the planner checks the template"
        );
    }

    #[test]
    fn a_late_firing_runs_once_for_the_oldest_missed_tick_and_skips_the_rest() {
        let created = at("2026-12-07T10:00:30Z");
        let mut schedule = create(new("* * * * *"), created).expect("valid");
        assert_eq!(schedule.next_fire_at, at("2026-12-07T10:01:00Z"));
        // Everything was down for three hours.
        let now = at("2026-12-07T13:01:10Z");
        let (firing, job, tasks) = fire(&schedule, now, Timing::default()).expect("due");
        assert_eq!(firing.fire_time, at("2026-12-07T10:01:00Z"));
        assert_eq!(firing.next_fire_at, at("2026-12-07T13:02:00Z"));
        assert_eq!(job.schedule_id.as_deref(), Some("nightly"));
        assert_eq!(job.scheduled_for, Some(firing.fire_time));
        assert_eq!(job.tenant, "acme");
        assert!(!tasks.is_empty());
        assert!(may_fire(&schedule, &firing));
        fired(&mut schedule, &firing, &job.job_id);
        assert_eq!(schedule.last_job_id.as_ref(), Some(&job.job_id));
        assert!(!may_fire(&schedule, &firing), "a tick fires once");
        // A resume that raced with the firing set the tick back: it still fires once.
        let mut rewound = schedule.clone();
        rewound.next_fire_at = firing.fire_time;
        assert!(!may_fire(&rewound, &firing));
        // The same name, deleted and created again: another schedule.
        let mut recreated = create(new("* * * * *"), now).expect("valid");
        recreated.next_fire_at = firing.fire_time;
        let stale = Firing {
            created_at: created,
            ..firing.clone()
        };
        assert!(!may_fire(&recreated, &stale));
        assert!(!schedule.is_due(now));
        assert!(fire(&schedule, now, Timing::default()).is_err());
    }

    #[test]
    fn a_template_stored_before_a_field_was_added_still_reads() {
        let old: JobSpec = serde_json::from_str(
            r#"{"job_type":"report","input":"x","tasks":[{"task_id":"a","task_type":"t"}]}"#,
        )
        .expect("reads with defaults");
        assert_eq!(old.job_type, "report");
        assert_eq!(old.tasks.expect("tasks")[0].max_retries, None);
    }

    #[test]
    fn a_paused_schedule_never_fires_and_resumes_at_its_next_tick() {
        let created = at("2026-12-07T10:00:30Z");
        let mut schedule = create(new("0 * * * *"), created).expect("valid");
        schedule.paused = true;
        let later = at("2026-12-07T15:30:00Z");
        assert!(!schedule.is_due(later));
        let firing = Firing {
            tenant: schedule.tenant.clone(),
            schedule_id: schedule.schedule_id.clone(),
            created_at: schedule.created_at,
            fire_time: schedule.next_fire_at,
            next_fire_at: later,
            now: later,
        };
        assert!(!may_fire(&schedule, &firing));
        assert_eq!(
            resumed_at(&schedule, later),
            Some(at("2026-12-07T16:00:00Z"))
        );
    }
}
