//! The plans of the store's statements on a schema holding a few thousand jobs, tasks and
//! audit events: no hot-path or reconciler statement may scan a whole table. Run with
//! `--nocapture` to print every plan (docs/operations.md lists them).

use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{Job, JobId, JobStatus, Priority, RetryBackoff, Task, TaskStatus};
use daef_core::ports::Store;
use daef_testenv::postgres::{connect, fresh_schema};
use tokio_postgres::types::ToSql;

use super::{PostgresStore, sql};

const JOBS: usize = 3_000;
const TASKS_PER_JOB: usize = 4;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000).plus(Duration::from_secs(secs))
}

fn job(i: usize) -> (Job, Vec<Task>) {
    let job_id = JobId::new(format!("job-{i:06}"));
    let now = at(i as u64);
    let tasks: Vec<Task> = (0..TASKS_PER_JOB)
        .map(|t| Task {
            job_id: job_id.clone(),
            task_id: format!("t{t:02}"),
            task_type: "llm_inference".into(),
            inputs: Default::default(),
            dependencies: if t == 0 { vec![] } else { vec!["t00".into()] },
            max_retries: 2,
            timeout_sec: 60,
            priority: Priority::Interactive,
            status: TaskStatus::Queued,
            attempt: 0,
            attempt_limit: 3,
            pending_dependencies: u32::from(t != 0),
            worker_id: None,
            lease_id: None,
            lease_expires: None,
            started_at: None,
            last_report_key: None,
            last_report_lease: None,
            output_artifact_uri: None,
            error: None,
            dead_lettered_at: None,
            redispatch_at: (t == 0).then(|| now.plus(Duration::from_secs(10))),
            redispatch_count: 0,
            retry_backoff: RetryBackoff::default(),
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let job = Job {
        job_id,
        tenant: format!("tenant-{}", i % 20),
        job_type: "chat".into(),
        input: String::new(),
        policy: None,
        priority: Priority::Interactive,
        status: JobStatus::Queued,
        message: None,
        result_artifact_uri: None,
        sink_task_id: format!("t{:02}", TASKS_PER_JOB - 1),
        task_count: TASKS_PER_JOB as u32,
        completed_tasks: 0,
        dead_tasks: 0,
        schedule_id: None,
        scheduled_for: None,
        created_at: now,
        updated_at: now,
    };
    (job, tasks)
}

/// Shapes the data like a system that has run a while (jobs keep their number mod 100): most jobs finished, a few running with
/// live leases, a few failed with dead letters, a few waiting.
const AGE: &str = "
    UPDATE jobs SET status = CASE
        WHEN right(job_id, 2)::int < 85 THEN 'Completed'
        WHEN right(job_id, 2)::int < 90 THEN 'Running'
        WHEN right(job_id, 2)::int < 95 THEN 'Failed'
        ELSE 'Queued' END;
    UPDATE tasks t SET status = 'Completed', pending_dependencies = 0, redispatch_at = NULL,
        attempt = 1, worker_id = 'w' || (right(t.job_id, 2)::int % 50)
    FROM jobs j WHERE j.job_id = t.job_id AND j.status = 'Completed';
    UPDATE tasks t SET status = 'Running', attempt = 1, started_at = j.created_at,
        lease_expires_at = j.created_at + interval '15 seconds', redispatch_at = NULL,
        pending_dependencies = 0, worker_id = 'w' || (right(t.job_id, 2)::int % 50),
        lease_id = 'lease-1-x'
    FROM jobs j WHERE j.job_id = t.job_id AND j.status = 'Running' AND t.task_id < 't02';
    UPDATE tasks t SET pending_dependencies = 0,
        redispatch_at = j.created_at + interval '10 seconds'
    FROM jobs j WHERE j.job_id = t.job_id AND j.status = 'Running' AND t.task_id >= 't02';
    UPDATE tasks t SET status = 'Failed', attempt = 3, dead_lettered_at = j.created_at,
        error = 'boom', redispatch_at = NULL
    FROM jobs j WHERE j.job_id = t.job_id AND j.status = 'Failed' AND t.task_id = 't00';
    UPDATE jobs SET dead_tasks = 1 WHERE status = 'Failed';
    INSERT INTO workers (worker_id, registered_at, last_heartbeat)
        SELECT 'w' || n, now(), now() FROM generate_series(0, 49) n;
    INSERT INTO audit_events (id, created_at, action, actor, tenant, result)
        SELECT n, timestamptz '2027-01-15 08:00:00+00' + n * interval '1 minute',
            (ARRAY['dead_letter_list', 'dead_letter_requeue', 'job_cancel'])[n % 3 + 1],
            'tok-' || (n % 40), 'tenant-' || (n % 20), (ARRAY['ok', 'rejected'])[n % 2 + 1]
        FROM generate_series(1, 5000) n;
    UPDATE audit_chain_head SET last_id = 5000;
    ANALYZE;
";

/// A store on `schema`, migrated.
async fn migrated_store(schema: &daef_testenv::postgres::TestSchema) -> PostgresStore {
    let store = PostgresStore::connect(&schema.dsn, Some(&schema.schema))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// Stores [`JOBS`] jobs of [`TASKS_PER_JOB`] tasks, concurrently (so in batches).
async fn insert_jobs(store: &PostgresStore) {
    let mut inserts = tokio::task::JoinSet::new();
    for i in 0..JOBS {
        let store = store.clone();
        inserts.spawn(async move {
            let (job, tasks) = job(i);
            store.insert_job(&job, &tasks).await.expect("insert");
        });
    }
    while let Some(done) = inserts.join_next().await {
        done.expect("insert");
    }
}

#[tokio::test]
async fn hot_path_statements_never_scan_a_whole_table() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let store = migrated_store(&schema).await;
    insert_jobs(&store).await;
    let client = connect(&schema.dsn_with_search_path())
        .await
        .expect("connect");
    client.batch_execute(AGE).await.expect("age the data");

    let now = at(86_400).datetime();
    let later = at(86_415).datetime();
    let job = "job-000087";
    let jobs = vec!["job-000087", "job-000091"];
    let tasks = vec!["t01", "t00"];
    let tenants = vec!["tenant-7".to_owned()];
    let doublings = daef_core::transition::MAX_REDISPATCH_DOUBLINGS as i32;
    let (n5, n100): (i64, i64) = (5, 100);
    let (zero, fifty): (i64, i64) = (0, 50);
    let no_limit: Option<i64> = None;
    let json = serde_json::json!([]);
    let caps = serde_json::json!({});
    let yes = true;
    let micros: i64 = 10_000_000;
    let one: i32 = 1;
    let text = "x";
    let big: i64 = 5001;
    let statuses = vec!["Running", "Queued"];
    let two: i64 = 2;
    let ints: Vec<i32> = vec![1, 1];
    let texts: Vec<Option<&str>> = vec![Some("x"), None];
    let times = vec![Some(now), None];

    let list_jobs_all = sql::list_jobs(false, false, false, false);
    let list_jobs_tenant = sql::list_jobs(false, true, false, false);
    let list_jobs_both = sql::list_jobs(true, true, false, false);
    let list_jobs_status = sql::list_jobs(true, false, false, false);
    let list_jobs_keyset = sql::list_jobs(true, true, true, true);
    let listed_jobs = vec![job];
    let listed_tasks = vec!["a"];
    let list_tasks_all = sql::list_tasks(false, false);
    let list_tasks_filtered = sql::list_tasks(true, true);
    let list_audit_all = sql::list_audit([false; 4], false, false);
    let list_audit_action = sql::list_audit([true, false, false, false], true, true);
    let list_audit_actor = sql::list_audit([false, true, false, false], false, false);

    // (name, statement, parameters, must use indexes on the big tables)
    let statements: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>, bool)> = vec![
        (
            "batch: INSERT_JOBS",
            sql::INSERT_JOBS,
            vec![&json, &json, &json],
            true,
        ),
        ("job: SELECT_JOB", sql::SELECT_JOB, vec![&job], true),
        (
            "retention: PURGE_JOBS",
            sql::PURGE_JOBS,
            vec![&"job-00000000-0000", &now, &n100],
            true,
        ),
        (
            "retention: PURGE_KEYS",
            sql::PURGE_KEYS,
            vec![&now, &n100],
            true,
        ),
        (
            "heartbeat: SELECT_LISTED_TASKS",
            sql::SELECT_LISTED_TASKS,
            vec![&listed_jobs, &listed_tasks],
            true,
        ),
        (
            "list_jobs: count, no filter",
            &list_jobs_all.0,
            vec![],
            false,
        ),
        (
            "list_jobs: page, no filter",
            &list_jobs_all.1,
            vec![&fifty, &zero],
            true,
        ),
        (
            "list_jobs: count, tenant",
            &list_jobs_tenant.0,
            vec![&tenants],
            true,
        ),
        (
            "list_jobs: page, tenant",
            &list_jobs_tenant.1,
            vec![&tenants, &fifty, &zero],
            true,
        ),
        (
            "list_jobs: capped count, status and tenant",
            &list_jobs_keyset.0,
            vec![&"Running", &tenants, &n100],
            true,
        ),
        (
            "list_jobs: keyset page, status and tenant",
            &list_jobs_keyset.1,
            vec![&"Running", &tenants, &job, &fifty, &zero],
            true,
        ),
        (
            "list_jobs: count, status (Running)",
            &list_jobs_status.0,
            vec![&"Running"],
            true,
        ),
        (
            "list_jobs: page, status (Running)",
            &list_jobs_status.1,
            vec![&"Running", &fifty, &zero],
            true,
        ),
        (
            "list_jobs: page, status + tenant",
            &list_jobs_both.1,
            vec![&"Completed", &tenants, &fifty, &zero],
            true,
        ),
        ("list_tasks: JOB_EXISTS", sql::JOB_EXISTS, vec![&job], true),
        ("list_tasks: count", &list_tasks_all.0, vec![&job], true),
        (
            "list_tasks: page",
            &list_tasks_all.1,
            vec![&job, &no_limit, &zero],
            true,
        ),
        (
            "list_tasks: page, status + worker",
            &list_tasks_filtered.1,
            vec![&job, &"Running", &"w7", &n5, &zero],
            true,
        ),
        (
            "register_worker: REGISTER_WORKER",
            sql::REGISTER_WORKER,
            vec![&"w1", &caps, &now],
            true,
        ),
        (
            "worker_exists: WORKER_EXISTS",
            sql::WORKER_EXISTS,
            vec![&"w1"],
            false,
        ),
        (
            "heartbeat: WORKER_HEARTBEAT",
            sql::WORKER_HEARTBEAT,
            vec![&"w1", &caps, &now],
            false,
        ),
        (
            "heartbeat: EXTEND_LEASES",
            sql::EXTEND_LEASES,
            vec![&"w7", &now, &later],
            true,
        ),
        ("batch: LOCK_JOBS", sql::LOCK_JOBS, vec![&jobs], true),
        (
            "batch: LOCK_BATCH_TASKS",
            sql::LOCK_BATCH_TASKS,
            vec![&jobs, &tasks, &jobs, &tasks],
            true,
        ),
        (
            "batch: UPDATE_BATCH_TASKS",
            sql::UPDATE_BATCH_TASKS,
            vec![
                &jobs, &tasks, &statuses, &statuses, &ints, &texts, &texts, &times, &times, &texts,
                &texts, &texts, &texts, &times, &times, &ints, &ints, &times, &times, &two,
            ],
            true,
        ),
        (
            "batch: UPDATE_BATCH_JOBS",
            sql::UPDATE_BATCH_JOBS,
            vec![
                &jobs, &statuses, &statuses, &texts, &texts, &ints, &ints, &times, &two,
            ],
            true,
        ),
        ("cancel_job: LOCK_JOB", sql::LOCK_JOB, vec![&job], true),
        (
            "report/expiry: JOB_DEAD_LETTERED",
            sql::JOB_DEAD_LETTERED,
            vec![&job, &"msg", &now],
            true,
        ),
        (
            "report/expiry: PAUSE_DISPATCH",
            sql::PAUSE_DISPATCH,
            vec![&jobs],
            true,
        ),
        (
            "cancel_job: CANCEL_JOB",
            sql::CANCEL_JOB,
            vec![&job, &"canceled", &now],
            true,
        ),
        (
            "cancel_job: CANCEL_TASKS",
            sql::CANCEL_TASKS,
            vec![&job, &now],
            true,
        ),
        (
            "expire_leases: LOCK_JOBS_WITH_LAPSED_LEASES",
            sql::LOCK_JOBS_WITH_LAPSED_LEASES,
            vec![&now, &n100],
            true,
        ),
        (
            "expire_leases: LOCK_LAPSED_TASKS",
            sql::LOCK_LAPSED_TASKS,
            vec![&jobs, &now, &n100],
            true,
        ),
        (
            "expire_leases: FAIL_EXPIRED",
            sql::FAIL_EXPIRED,
            vec![
                &job,
                &"t00",
                &"expired",
                &now,
                &yes,
                &later,
                &"lease-1-x",
                &later,
            ],
            true,
        ),
        (
            "take_orphans: TAKE_ORPHANS",
            sql::TAKE_ORPHANS,
            vec![&now, &n100, &micros, &doublings],
            true,
        ),
        (
            "dead_letters: DEAD_LETTERS",
            sql::DEAD_LETTERS,
            vec![&fifty],
            true,
        ),
        (
            "count_dead_letters: COUNT_DEAD_LETTERS",
            sql::COUNT_DEAD_LETTERS,
            vec![],
            true,
        ),
        (
            "count_dead_among: COUNT_DEAD_AMONG",
            sql::COUNT_DEAD_AMONG,
            vec![&jobs, &tasks],
            true,
        ),
        (
            "requeue_dead: REQUEUE_DEAD",
            sql::REQUEUE_DEAD,
            vec![&jobs, &tasks, &now],
            true,
        ),
        (
            "requeue_dead: JOB_TASKS_REQUEUED",
            sql::JOB_TASKS_REQUEUED,
            vec![&job, &one, &now],
            true,
        ),
        (
            "requeue_dead: REDISPATCH_READY",
            sql::REDISPATCH_READY,
            vec![&jobs, &later, &now],
            true,
        ),
        (
            "append_audit: LOCK_CHAIN_HEAD",
            sql::LOCK_CHAIN_HEAD,
            vec![],
            false,
        ),
        (
            "append_audit: INSERT_AUDIT_EVENT",
            sql::INSERT_AUDIT_EVENT,
            vec![
                &big, &now, &text, &text, &text, &text, &text, &text, &big, &text, &text, &text,
                &text,
            ],
            true,
        ),
        (
            "append_audit: ADVANCE_CHAIN_HEAD",
            sql::ADVANCE_CHAIN_HEAD,
            vec![&big, &text],
            false,
        ),
        (
            "list_audit: no filter",
            &list_audit_all,
            vec![&fifty, &zero],
            true,
        ),
        (
            "list_audit: action + from/to",
            &list_audit_action,
            vec![&"job_cancel", &now, &later, &fifty, &zero],
            false,
        ),
        (
            "list_audit: actor",
            &list_audit_actor,
            vec![&"tok-3", &fifty, &zero],
            false,
        ),
        (
            "audit_chain: AUDIT_CHAIN",
            sql::AUDIT_CHAIN,
            vec![&zero, &n100],
            true,
        ),
    ];

    let mut full_scans = Vec::new();
    for (name, statement, params, indexed) in &statements {
        let rows = client
            .query(&format!("EXPLAIN {statement}"), params)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e:?}"));
        let plan: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let plan = plan.join("\n");
        eprintln!("### {name}\n{plan}\n");
        let scans_big_table = ["jobs", "tasks", "audit_events"].iter().any(|t| {
            plan.contains(&format!("Seq Scan on {t} "))
                || plan.ends_with(&format!("Seq Scan on {t}"))
        });
        if *indexed && scans_big_table {
            full_scans.push(*name);
        }
    }
    assert!(
        full_scans.is_empty(),
        "statements scanning a whole table: {full_scans:?}"
    );
}

/// The batch's statements on tables that grew and were never analysed (autovacuum off, or not
/// yet run), on a connection that ran them while the tables were empty: a generic plan made then
/// would stay. Under the batch's own settings (`batch::BEGIN`) it reaches every row by key.
#[tokio::test]
async fn batch_plans_made_on_empty_tables_still_use_keys_once_they_grew() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let store = migrated_store(&schema).await;
    let client = connect(&schema.dsn_with_search_path())
        .await
        .expect("connect");
    // `PREPARE` with the arguments spelled out, so that `EXPLAIN EXECUTE` later shows the plan
    // the connection caches, not one made for the EXPLAIN.
    let none = "'{}'";
    let statements = [
        ("LOCK_JOBS", sql::LOCK_JOBS, vec![none]),
        ("LOCK_BATCH_TASKS", sql::LOCK_BATCH_TASKS, vec![none; 4]),
        ("UPDATE_BATCH_TASKS", sql::UPDATE_BATCH_TASKS, {
            let mut args = vec![none; 19];
            args.push("0");
            args
        }),
        ("UPDATE_BATCH_JOBS", sql::UPDATE_BATCH_JOBS, {
            let mut args = vec![none; 8];
            args.push("0");
            args
        }),
        ("PAUSE_DISPATCH", sql::PAUSE_DISPATCH, vec![none]),
    ];
    for (i, (_, statement, _)) in statements.iter().enumerate() {
        client
            .batch_execute(&format!("PREPARE p{i} AS {statement}"))
            .await
            .expect("prepare");
    }
    // More runs than Postgres makes custom plans for before it settles on a generic one.
    for _ in 0..7 {
        for (i, (name, _, args)) in statements.iter().enumerate() {
            client
                .batch_execute(&format!(
                    "{}; EXECUTE p{i}({}); COMMIT",
                    super::batch::BEGIN,
                    args.join(", ")
                ))
                .await
                .unwrap_or_else(|e| panic!("EXECUTE {name}: {e:?}"));
        }
    }
    insert_jobs(&store).await;
    let analysed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() \
             AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
            &[],
        )
        .await
        .expect("statistics")
        .get(0);
    assert_eq!(analysed, 0, "the test wants tables never analysed");

    client
        .batch_execute(super::batch::BEGIN)
        .await
        .expect("begin");
    let mut by_scan = Vec::new();
    for (i, (name, _, args)) in statements.iter().enumerate() {
        let rows = client
            .simple_query(&format!("EXPLAIN EXECUTE p{i}({})", args.join(", ")))
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {name}: {e:?}"));
        let plan: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect();
        let plan = plan.join("\n");
        eprintln!("### {name} (planned on empty tables, now grown)\n{plan}\n");
        if plan.contains("Seq Scan on jobs")
            || plan.contains("Seq Scan on tasks")
            || plan.contains("Hash Join")
        {
            by_scan.push(*name);
        }
    }
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert!(
        by_scan.is_empty(),
        "batch statements scanning or hashing a whole table: {by_scan:?}"
    );
}

/// The batch's write-back only writes a row that still has the status read under the lock, and
/// fails (so the batch rolls back) when one does not: a changed row is never overwritten.
#[tokio::test]
async fn a_write_back_that_misses_a_row_fails_and_changes_nothing() {
    let Some(schema) = fresh_schema().await else {
        return;
    };
    let store = migrated_store(&schema).await;
    let (job, tasks) = job(0);
    store.insert_job(&job, &tasks).await.expect("insert");
    let client = connect(&schema.dsn_with_search_path())
        .await
        .expect("connect");
    let now = at(60).datetime();
    // t00 is Queued; the write claims to have read it Running.
    let jobs = vec![job.job_id.as_str()];
    let task_ids = vec!["t00"];
    let read = vec!["Running"];
    let status = vec!["Completed"];
    let ints: Vec<i32> = vec![1];
    let texts: Vec<Option<&str>> = vec![Some("x")];
    let times = vec![Some(now)];
    let updated = vec![now];
    let one: i64 = 1;
    let err = client
        .query_one(
            sql::UPDATE_BATCH_TASKS,
            &[
                &jobs, &task_ids, &read, &status, &ints, &texts, &texts, &times, &times, &texts,
                &texts, &texts, &texts, &times, &times, &ints, &ints, &updated, &times, &one,
            ],
        )
        .await
        .expect_err("a row that does not match must fail the statement");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
        "{err:?}"
    );
    let status: String = client
        .query_one(
            "SELECT status FROM tasks WHERE job_id = $1 AND task_id = 't00'",
            &[&job.job_id.as_str()],
        )
        .await
        .expect("read back")
        .get(0);
    assert_eq!(status, "Queued");
}
