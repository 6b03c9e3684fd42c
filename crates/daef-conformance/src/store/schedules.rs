//! Periodic schedules: stored, listed, paused, resumed and deleted; found when due through
//! their next tick; fired once per tick, with the tick's job, however many firings race.

use std::sync::Arc;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::planner::JobSpec;
use daef_core::ports::Store;
use daef_core::schedule::{self, NewSchedule, Schedule};

use super::{TIMING, job_spec, t0, task_spec};

fn template() -> JobSpec {
    job_spec(vec![task_spec("a", &[], 0, 60)])
}

fn new_schedule(id: &str, tenant: &str, cron: &str, now: Timestamp) -> Schedule {
    schedule::create(
        NewSchedule {
            schedule_id: id.to_owned(),
            tenant: tenant.to_owned(),
            cron: cron.to_owned(),
            template: template(),
            paused: false,
        },
        now,
    )
    .expect("valid schedule")
}

/// Tenant acme's schedule `id`.
async fn stored(store: &dyn Store, id: &str) -> Schedule {
    store
        .schedules_named(id)
        .await
        .expect("read schedule")
        .into_iter()
        .find(|s| s.tenant == "acme")
        .unwrap_or_else(|| panic!("schedule {id} of acme exists"))
}

/// A schedule reads back as stored (template included); an id is taken once per tenant and
/// free in another; lists page by id, then tenant, and filter by tenant; pausing takes it off
/// the due list, resuming sets its next tick (only if paused); deleting it leaves nothing
/// behind, and touches no other tenant's schedule of the same id.
pub async fn schedules_store_list_pause_resume_and_delete(store: &Arc<dyn Store>) {
    let now = t0();
    let nightly = new_schedule("nightly", "acme", "0 3 * * *", now);
    assert!(store.insert_schedule(&nightly).await.unwrap());
    let mut again = new_schedule("nightly", "acme", "* * * * *", now);
    again.template.job_type = "other".into();
    assert!(!store.insert_schedule(&again).await.unwrap(), "id taken");
    assert_eq!(stored(&**store, "nightly").await, nightly);
    let theirs = new_schedule("nightly", "globex", "0 4 * * *", now);
    assert!(
        store.insert_schedule(&theirs).await.unwrap(),
        "another tenant's id"
    );
    let named = store.schedules_named("nightly").await.unwrap();
    assert_eq!(named, [nightly.clone(), theirs.clone()], "by tenant");
    assert!(store.schedules_named("night").await.unwrap().is_empty());
    assert!(store.delete_schedule("globex", "nightly").await.unwrap());
    assert_eq!(stored(&**store, "nightly").await, nightly, "acme's stays");
    for (id, tenant) in [("b-hourly", "globex"), ("a-minutely", "acme")] {
        let s = new_schedule(id, tenant, "* * * * *", now);
        assert!(store.insert_schedule(&s).await.unwrap());
    }
    let ids = |page: &daef_core::ports::Page<Schedule>| {
        page.items
            .iter()
            .map(|s| s.schedule_id.clone())
            .collect::<Vec<_>>()
    };
    let all = store.list_schedules(None, 10, 0).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(ids(&all), ["a-minutely", "b-hourly", "nightly"]);
    let acme = ["acme".to_owned()];
    let page = store.list_schedules(Some(&acme), 1, 1).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(&page), ["nightly"]);
    let none = store.list_schedules(Some(&[]), 10, 0).await.unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));

    let later = now.plus(Duration::from_secs(3 * 3_600));
    let paused = store
        .set_schedule_paused("acme", "nightly", None, later)
        .await
        .unwrap()
        .expect("exists");
    assert!(paused.paused);
    assert_eq!(paused.updated_at, later);
    let far = now.plus(Duration::from_secs(2 * 86_400));
    let due: Vec<String> = store
        .due_schedules(far, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schedule_id)
        .collect();
    assert!(!due.contains(&"nightly".to_owned()), "paused: {due:?}");
    let next = Timestamp::parse_rfc3339("2026-11-28T03:00:00Z").unwrap();
    let resumed = store
        .set_schedule_paused("acme", "nightly", Some(next), later)
        .await
        .unwrap()
        .expect("exists");
    assert!(!resumed.paused);
    assert_eq!(resumed.next_fire_at, next);
    assert_eq!(stored(&**store, "nightly").await, resumed);
    // A second resume (it raced with the first) changes nothing.
    let again = store
        .set_schedule_paused("acme", "nightly", Some(far), far)
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(again, resumed);
    for (tenant, id) in [("acme", "missing"), ("globex", "nightly")] {
        assert!(
            store
                .set_schedule_paused(tenant, id, None, later)
                .await
                .unwrap()
                .is_none(),
            "{tenant} {id}"
        );
    }

    assert!(!store.delete_schedule("globex", "a-minutely").await.unwrap());
    assert!(store.delete_schedule("acme", "nightly").await.unwrap());
    assert!(!store.delete_schedule("acme", "nightly").await.unwrap());
    assert!(store.schedules_named("nightly").await.unwrap().is_empty());
    let due = store.due_schedules(far, 10).await.unwrap();
    assert!(due.iter().all(|s| s.schedule_id != "nightly"));
    assert_eq!(store.list_schedules(None, 10, 0).await.unwrap().total, 2);
}

/// Due schedules come most overdue first, at most `limit`; a firing stores the tick's job
/// (carrying the schedule and tick) and moves the schedule on in one step; the same tick, a
/// paused or a deleted schedule fires nothing.
pub async fn due_schedules_fire_once_per_tick(store: &Arc<dyn Store>) {
    let now = t0(); // 10:00:00.000001
    let minutely = new_schedule("minutely", "acme", "* * * * *", now); // 10:01
    let quarterly = new_schedule("quarterly", "acme", "*/15 * * * *", now); // 10:15
    let hourly = new_schedule("hourly", "acme", "0 * * * *", now); // 11:00
    let mut paused = new_schedule("paused", "acme", "* * * * *", now);
    paused.paused = true;
    for s in [&hourly, &quarterly, &minutely, &paused] {
        assert!(store.insert_schedule(s).await.unwrap());
    }
    assert!(store.due_schedules(now, 10).await.unwrap().is_empty());
    let at = now.plus(Duration::from_secs(20 * 60)); // 10:20
    let due = store.due_schedules(at, 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|s| s.schedule_id.as_str()).collect();
    assert_eq!(ids, ["minutely", "quarterly"]);
    assert_eq!(store.due_schedules(at, 1).await.unwrap().len(), 1);

    let (firing, job, tasks) = schedule::fire(&due[0], at, TIMING).expect("due");
    assert!(store.fire_schedule(&firing, &job, &tasks).await.unwrap());
    let created = store.job(&job.job_id).await.unwrap().expect("job stored");
    assert_eq!(created.schedule_id.as_deref(), Some("minutely"));
    assert_eq!(created.scheduled_for, Some(minutely.next_fire_at));
    assert_eq!(created.tenant, "acme");
    let after = stored(&**store, "minutely").await;
    assert_eq!(after.last_fire_at, Some(minutely.next_fire_at));
    assert_eq!(after.last_job_id.as_ref(), Some(&job.job_id));
    assert_eq!(after.next_fire_at, firing.next_fire_at);
    assert!(after.next_fire_at > at, "missed ticks are skipped");
    assert_eq!(after.updated_at, at);

    // The same tick again (a replica that read the schedule before it moved on).
    let (again, job2, tasks2) = schedule::fire(&due[0], at, TIMING).expect("stale read");
    assert!(!store.fire_schedule(&again, &job2, &tasks2).await.unwrap());
    assert!(store.job(&job2.job_id).await.unwrap().is_none());
    assert_eq!(stored(&**store, "minutely").await, after);

    // Paused, then deleted, between the read and the firing.
    let (firing, job3, tasks3) = schedule::fire(&due[1], at, TIMING).expect("due");
    store
        .set_schedule_paused("acme", "quarterly", None, at)
        .await
        .unwrap();
    assert!(!store.fire_schedule(&firing, &job3, &tasks3).await.unwrap());
    store.delete_schedule("acme", "quarterly").await.unwrap();
    assert!(!store.fire_schedule(&firing, &job3, &tasks3).await.unwrap());
    assert!(store.job(&job3.job_id).await.unwrap().is_none());

    // Deleted and created again under the same name, due at the same tick: the firing read
    // before is of the old schedule and fires nothing.
    let recreated = new_schedule(
        "quarterly",
        "acme",
        "*/15 * * * *",
        now.plus(Duration::from_secs(1)),
    );
    assert_eq!(recreated.next_fire_at, firing.fire_time);
    assert!(store.insert_schedule(&recreated).await.unwrap());
    assert!(!store.fire_schedule(&firing, &job3, &tasks3).await.unwrap());
    assert!(store.job(&job3.job_id).await.unwrap().is_none());

    // Another tenant's schedule of the same name is another schedule.
    let mut theirs = due[0].clone();
    theirs.tenant = "globex".into();
    assert!(store.insert_schedule(&theirs).await.unwrap());
    let (firing, job4, tasks4) = schedule::fire(&theirs, at, TIMING).expect("due");
    assert!(store.fire_schedule(&firing, &job4, &tasks4).await.unwrap());
    assert_eq!(
        store
            .job(&job4.job_id)
            .await
            .unwrap()
            .expect("stored")
            .tenant,
        "globex"
    );
    assert_eq!(
        stored(&**store, "minutely").await,
        after,
        "acme's is untouched"
    );
}

/// Many replicas firing one tick at once store exactly one job.
pub async fn concurrent_firings_of_one_tick_store_one_job(store: &Arc<dyn Store>) {
    let now = t0();
    let s = new_schedule("racy", "acme", "* * * * *", now);
    assert!(store.insert_schedule(&s).await.unwrap());
    let at = now.plus(Duration::from_secs(90));
    let mut racers = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(store);
        let s = s.clone();
        racers.push(tokio::spawn(async move {
            let (firing, job, tasks) = schedule::fire(&s, at, TIMING).expect("due");
            let fired = store.fire_schedule(&firing, &job, &tasks).await.unwrap();
            (fired, job.job_id)
        }));
    }
    let mut winners = Vec::new();
    for racer in racers {
        let (fired, job_id) = racer.await.expect("racer");
        let exists = store.job(&job_id).await.unwrap().is_some();
        assert_eq!(fired, exists, "{job_id}");
        if fired {
            winners.push(job_id);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        stored(&**store, "racy").await.last_job_id.as_ref(),
        Some(&winners[0])
    );
}
