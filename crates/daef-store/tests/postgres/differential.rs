//! The Postgres store must behave exactly like the memory store, which applies the
//! `daef_core::transition` functions under a lock. Seeded random sequences of every `Store`
//! operation run against both; after each step the results and a snapshot of everything stored
//! must be identical.

use std::collections::BTreeMap;
use std::time::Duration;

use daef_core::Timestamp;
use daef_core::audit::AuditDraft;
use daef_core::model::JobStatus;
use daef_core::model::{
    JobId, Report, ReportStatus, Task, TaskRef, TaskStatus, WorkerCapabilities, WorkerStats,
};
use daef_core::ports::{AuditQuery, JobQuery, Store, TaskQuery};
use daef_store::MemoryStore;

use crate::common::{Spec, at, env, job, timing};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

/// DAG shapes with a single sink (the memory store takes the job's result from the last task
/// to complete, which is the sink only when there is one; see the report).
const SHAPES: &[&[Spec<'static>]] = &[
    &[("t1", &[], 1, 60)],
    &[
        ("t1-split", &[], 2, 30),
        ("t2-embed", &["t1-split"], 0, 60),
        ("t3-summarize", &["t2-embed"], 1, 60),
    ],
    &[
        ("a", &[], 0, 20),
        ("b", &["a"], 1, 60),
        ("c", &["a"], 2, 60),
        ("d", &["b", "c"], 1, 60),
    ],
    &[
        ("x1", &[], 1, 60),
        ("x2", &[], 0, 60),
        ("x3", &[], 2, 10),
        ("y", &["x1", "x2", "x3"], 1, 60),
    ],
];

const WORKERS: &[&str] = &["w1", "w2", "w3"];

/// Runs one step on a store and describes everything it returned.
async fn step(store: &dyn Store, op: &Op) -> String {
    let timing = timing();
    match op {
        Op::Insert(job_id, tenant, shape, now) => {
            let (j, tasks) = job(job_id, tenant, SHAPES[*shape], *now, timing);
            format!(
                "{:?}",
                store
                    .insert_job(&j, &tasks)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Assign(task, worker, nonce, now) => {
            format!(
                "{:?}",
                store
                    .assign(task, worker, nonce, *now, timing)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Report(report, now) => {
            format!(
                "{:?}",
                store
                    .report(report, *now, timing)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Cancel(job_id, now) => {
            format!(
                "{:?}",
                store
                    .cancel_job(job_id, *now)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Expire(now, limit) => {
            format!(
                "{:?}",
                store
                    .expire_leases(*now, *limit, timing)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Orphans(now, limit) => {
            format!(
                "{:?}",
                store
                    .take_orphans(*now, *limit, timing)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Requeue(tasks, now) => {
            let dry = store
                .count_dead_among(tasks)
                .await
                .map_err(|e| e.to_string());
            let done = store
                .requeue_dead(tasks, *now, timing)
                .await
                .map_err(|e| e.to_string());
            format!("{dry:?} {done:?}")
        }
        Op::Register(worker, now) => {
            let caps = WorkerCapabilities {
                tools: vec![format!("tool-{worker}")],
                ..WorkerCapabilities::default()
            };
            let registered = store
                .register_worker(worker, &caps, *now)
                .await
                .map_err(|e| e.to_string());
            format!(
                "{registered:?} {:?}",
                store.worker_exists(worker).await.map_err(|e| e.to_string())
            )
        }
        Op::Heartbeat(worker, now) => {
            let stats = WorkerStats {
                running_tasks: Some(1),
                health: Some("ok".into()),
                ..WorkerStats::default()
            };
            format!(
                "{:?}",
                store
                    .heartbeat(worker, &stats, *now, timing)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::Audit(draft, now) => {
            format!(
                "{:?}",
                store
                    .append_audit(draft.clone(), *now)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::ListJobs(query) => {
            format!(
                "{:?}",
                store.list_jobs(query).await.map_err(|e| e.to_string())
            )
        }
        Op::ListTasks(job_id, query) => {
            format!(
                "{:?}",
                store
                    .list_tasks(job_id, query)
                    .await
                    .map_err(|e| e.to_string())
            )
        }
        Op::ListAudit(query) => {
            format!(
                "{:?}",
                store.list_audit(query).await.map_err(|e| e.to_string())
            )
        }
    }
}

/// Everything a store holds that the port can show.
async fn snapshot(store: &dyn Store, job_ids: &[String]) -> String {
    let mut out = String::new();
    let jobs = store
        .list_jobs(&JobQuery {
            limit: 1_000,
            ..JobQuery::default()
        })
        .await
        .expect("list jobs");
    out.push_str(&format!("{jobs:?}\n"));
    for id in job_ids {
        let tasks = store
            .list_tasks(&JobId::new(id.as_str()), &TaskQuery::default())
            .await
            .expect("list tasks");
        out.push_str(&format!("{tasks:?}\n"));
    }
    out.push_str(&format!(
        "{:?}\n",
        store.dead_letters(1_000).await.expect("dead letters")
    ));
    out.push_str(&format!(
        "{:?}\n",
        store.count_dead_letters().await.expect("count")
    ));
    out.push_str(&format!(
        "{:?}\n",
        store.audit_chain(0, 1_000).await.expect("audit")
    ));
    out
}

/// A coarse label for a step's result, to show what a sequence covered.
fn summary(op: &Op, result: &str) -> String {
    let kind = format!("{op:?}");
    let kind = kind.split('(').next().unwrap_or("?");
    let interesting = [
        "Applied",
        "Duplicate",
        "JobCanceled",
        "NotRunning",
        "StaleLease",
        "DeadLettered",
        "Retry",
        "AlreadyCanceled",
        "AlreadyFinished",
        "Canceled",
        "Some(Assignment",
        "Conflict",
        "not found",
        "Completed",
    ];
    let mut what: Vec<&str> = interesting
        .iter()
        .copied()
        .filter(|w| result.contains(w))
        .collect();
    if result.contains("requeued: [job") {
        what.push("requeued");
    }
    if result.starts_with("Ok([(") {
        what.push("some");
    }
    format!("{kind}{what:?}")
}

#[derive(Debug)]
enum Op {
    Insert(String, String, usize, Timestamp),
    Assign(TaskRef, String, String, Timestamp),
    Report(Report, Timestamp),
    Cancel(JobId, Timestamp),
    Expire(Timestamp, usize),
    Orphans(Timestamp, usize),
    Requeue(Vec<TaskRef>, Timestamp),
    Register(String, Timestamp),
    Heartbeat(String, Timestamp),
    Audit(AuditDraft, Timestamp),
    ListJobs(JobQuery),
    ListTasks(JobId, TaskQuery),
    ListAudit(AuditQuery),
}

/// Picks the next operation from the memory store's current state (both stores hold the same
/// state as long as the test passes).
async fn next_op(
    rng: &mut Rng,
    memory: &MemoryStore,
    jobs: &mut Vec<String>,
    now: &mut Timestamp,
    i: usize,
) -> Op {
    if rng.chance(25) {
        *now = now.plus(Duration::from_secs(rng.below(12)));
    }
    let mut all: Vec<Task> = Vec::new();
    for id in jobs.iter() {
        let id = JobId::new(id.as_str());
        let page = memory
            .list_tasks(&id, &TaskQuery::default())
            .await
            .expect("list")
            .expect("job");
        all.extend(page.items);
    }
    let refs: Vec<TaskRef> = all.iter().map(Task::task_ref).collect();
    let dispatchable: Vec<TaskRef> = all
        .iter()
        .filter(|t| t.is_dispatchable())
        .map(Task::task_ref)
        .collect();
    let running: Vec<TaskRef> = all
        .iter()
        .filter(|t| t.status == TaskStatus::Running)
        .map(Task::task_ref)
        .collect();
    // Mostly tasks the operation can act on, sometimes any task (stale references).
    let choose = |rng: &mut Rng, preferred: &[TaskRef]| {
        if rng.chance(80) && !preferred.is_empty() {
            rng.pick(preferred).cloned()
        } else {
            rng.pick(&refs).cloned()
        }
        .expect("some task")
    };
    let roll = rng.below(100);
    match roll {
        _ if jobs.is_empty() || roll < 8 => {
            let id = format!("job-{i:05}");
            jobs.push(id.clone());
            let tenant = (*rng.pick(&["acme", "beta"]).expect("tenants")).to_owned();
            Op::Insert(id, tenant, rng.below(SHAPES.len() as u64) as usize, *now)
        }
        8..=32 => {
            let task = choose(rng, &dispatchable);
            let worker = (*rng.pick(WORKERS).expect("workers")).to_owned();
            Op::Assign(task, worker, format!("{i:032x}"), *now)
        }
        33..=57 => {
            let task = choose(rng, &running);
            let stored = memory
                .list_tasks(&task.job_id, &TaskQuery::default())
                .await
                .expect("list")
                .expect("job")
                .items
                .into_iter()
                .find(|t| t.task_id == task.task_id)
                .expect("task");
            let lease = match (stored.lease_id.clone(), stored.last_report_lease.clone()) {
                (Some(current), _) if rng.chance(70) => current,
                (_, Some(last)) if rng.chance(50) => last,
                _ => "lease-9-bogus".to_owned(),
            };
            let key = match stored.last_report_key.clone() {
                Some(last) if rng.chance(40) => Some(last),
                _ if rng.chance(30) => None,
                _ => Some(format!("key-{i}")),
            };
            let status = if rng.chance(35) {
                ReportStatus::Failed
            } else {
                ReportStatus::Completed
            };
            Op::Report(
                Report {
                    worker_id: stored.worker_id.clone().unwrap_or_else(|| "w1".into()),
                    task,
                    lease_id: lease,
                    idempotency_key: key,
                    status,
                    output_artifact_uri: (status == ReportStatus::Completed)
                        .then(|| format!("s3://out/{i}")),
                    error: match (status, rng.below(3)) {
                        (ReportStatus::Failed, 0) => None,
                        (ReportStatus::Failed, 1) => Some(String::new()),
                        (ReportStatus::Failed, _) => Some(format!("error {i}")),
                        _ => None,
                    },
                    duration_millis: Some(rng.below(1_000)),
                },
                *now,
            )
        }
        58..=59 => Op::Cancel(JobId::new(rng.pick(jobs).expect("jobs").as_str()), *now),
        60..=69 => Op::Expire(*now, 1 + rng.below(4) as usize),
        70..=75 => Op::Orphans(*now, 1 + rng.below(4) as usize),
        76..=80 => {
            let dead = memory.dead_letters(100).await.expect("dead letters");
            let mut tasks: Vec<TaskRef> = dead
                .iter()
                .filter(|_| rng.chance(70))
                .map(|d| TaskRef::new(d.job_id.clone(), d.task_id.clone()))
                .collect();
            if let Some(any) = rng.pick(&refs) {
                tasks.push(any.clone());
            }
            tasks.push(TaskRef::new(JobId::new("job-none"), "t1"));
            Op::Requeue(tasks, *now)
        }
        81..=84 => Op::Register((*rng.pick(WORKERS).expect("workers")).to_owned(), *now),
        85..=89 => Op::Heartbeat(
            (*rng.pick(&["w1", "w2", "w3", "w-unknown"]).expect("workers")).to_owned(),
            *now,
        ),
        90..=92 => Op::Audit(
            AuditDraft {
                action: (*rng
                    .pick(&["dead_letter_list", "job_cancel"])
                    .expect("actions"))
                .to_owned(),
                actor: format!("tok-{}", rng.below(3)),
                tenant: (*rng.pick(&["acme", "beta"]).expect("tenants")).to_owned(),
                remote_addr: "127.0.0.1:9".into(),
                resource: "/v1/admin/audit".into(),
                payload_hash: String::new(),
                requested: rng.below(10),
                result: (*rng.pick(&["ok", "noop", "rejected"]).expect("results")).to_owned(),
                details: format!("step {i}"),
            },
            *now,
        ),
        93..=95 => Op::ListJobs(JobQuery {
            status: rng
                .chance(50)
                .then(|| JobStatus::ALL[rng.below(5) as usize]),
            tenants: match rng.below(4) {
                0 => Some(vec!["acme".into()]),
                1 => Some(vec!["acme".into(), "beta".into()]),
                2 => Some(vec![]),
                _ => None,
            },
            limit: rng.below(6) as usize,
            offset: rng.below(4) as usize,
            before: rng
                .chance(30)
                .then(|| JobId::new(rng.pick(jobs).expect("jobs").as_str())),
            total_up_to: rng.chance(30).then(|| rng.below(4)),
        }),
        96..=97 => Op::ListTasks(
            JobId::new(rng.pick(jobs).expect("jobs").as_str()),
            TaskQuery {
                status: rng
                    .chance(50)
                    .then(|| TaskStatus::ALL[rng.below(5) as usize]),
                worker_id: rng
                    .chance(30)
                    .then(|| (*rng.pick(WORKERS).expect("workers")).to_owned()),
                limit: rng.chance(50).then(|| rng.below(4) as usize),
                offset: rng.below(3) as usize,
            },
        ),
        _ => Op::ListAudit(AuditQuery {
            action: rng.chance(30).then(|| "job_cancel".to_owned()),
            actor: rng.chance(30).then(|| "tok-1".to_owned()),
            tenant: rng.chance(30).then(|| "acme".to_owned()),
            result: rng.chance(30).then(|| "ok".to_owned()),
            from: rng.chance(30).then(|| now.minus(Duration::from_secs(60))),
            to: rng.chance(30).then_some(*now),
            limit: rng.below(8) as usize,
            offset: rng.below(3) as usize,
        }),
    }
}

async fn run_sequence(seed: u64, steps: usize) {
    let Some(env) = env().await else { return };
    let memory = MemoryStore::new();
    let mut rng = Rng(seed);
    let mut jobs = Vec::new();
    let mut now = at(0);
    let mut history: Vec<String> = Vec::new();
    let mut results: Vec<String> = Vec::new();
    for i in 0..steps {
        let op = next_op(&mut rng, &memory, &mut jobs, &mut now, i).await;
        let expected = step(&memory, &op).await;
        let got = step(&env.store, &op).await;
        history.push(format!("{i}: {op:?}"));
        results.push(summary(&op, &expected));
        let recent = history[history.len().saturating_sub(8)..].join("\n");
        assert_eq!(
            got, expected,
            "seed {seed}, step {i} returned differently; last steps:\n{recent}"
        );
        let expected = snapshot(&memory, &jobs).await;
        let got = snapshot(&env.store, &jobs).await;
        assert_eq!(
            got, expected,
            "seed {seed}, state differs after step {i}; last steps:\n{recent}"
        );
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for line in &results {
        *outcomes.entry(line.clone()).or_default() += 1;
    }
    eprintln!("seed {seed}: {steps} steps agree; outcomes {outcomes:?}");
}

#[tokio::test]
async fn random_sequences_match_the_memory_store_seed_1() {
    run_sequence(0x9E37_79B9_7F4A_7C15, 400).await;
}

#[tokio::test]
async fn random_sequences_match_the_memory_store_seed_2() {
    run_sequence(0xD1B5_4A32_D192_ED03, 400).await;
}

#[tokio::test]
async fn random_sequences_match_the_memory_store_seed_3() {
    run_sequence(42, 400).await;
}
