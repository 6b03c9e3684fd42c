//! Every statement the Postgres store runs, in one place: what each does, which lifecycle rule
//! of `daef_core::transition` it expresses, and (in `docs/operations.md`) which index serves it.
//!
//! Parameters are numbered as the statement's comment lists them. Column lists are spelled out
//! (never `SELECT *`) so a cached statement keeps its shape whatever later migrations add.

/// The columns `rows::job` reads.
macro_rules! job_columns {
    () => {
        "job_id, tenant, job_type, input, policy, priority, status, message, \
         result_artifact_uri, sink_task_id, task_count, completed_tasks, dead_tasks, \
         schedule_id, scheduled_for, created_at, updated_at"
    };
}

/// The columns `rows::task` reads.
macro_rules! task_columns {
    () => {
        "job_id, task_id, task_type, inputs, dependencies, max_retries, timeout_sec, priority, \
         status, attempt, attempt_limit, pending_dependencies, worker_id, lease_id, \
         lease_expires_at, started_at, last_report_key, last_report_lease, \
         output_artifact_uri, error, dead_lettered_at, redispatch_at, redispatch_count, \
         backoff_initial_ms, backoff_max_ms, next_attempt_at, created_at, updated_at"
    };
}

/// The columns `rows::audit_event` reads.
macro_rules! audit_columns {
    () => {
        "id, created_at, action, actor, tenant, remote_addr, resource, payload_hash, requested, \
         result, details, prev_hash, event_hash"
    };
}

/// See [`job_columns!`].
pub(super) const JOB_COLUMNS: &str = job_columns!();
/// See [`task_columns!`].
pub(super) const TASK_COLUMNS: &str = task_columns!();
/// See [`audit_columns!`].
pub(super) const AUDIT_COLUMNS: &str = audit_columns!();

// ---- jobs ----------------------------------------------------------------------------------

/// `$1` a JSON array of job objects (the columns of [`JOB_COLUMNS`] and `keyed`), `$2` a JSON
/// array of their task objects (the columns below, with `job_id`), `$3` a JSON array of the
/// idempotency keys of the keyed jobs (`tenant`, `key`, `body_hash`, `job_id`, `expires_at`):
/// the jobs of a batch of submits and their whole DAGs in one statement. A keyed job is
/// inserted only when its key was free and is now claimed for it; a job whose id is taken is
/// skipped with its tasks. The result is the `job_id` of each job inserted.
pub(super) const INSERT_JOBS: &str = concat!(
    "WITH claimed AS ( \
         INSERT INTO idempotency_keys (tenant, key, body_hash, job_id, expires_at) \
         SELECT k.tenant, k.key, k.body_hash, k.job_id, k.expires_at \
         FROM jsonb_to_recordset($3::jsonb) AS k(tenant TEXT, key TEXT, body_hash TEXT, \
             job_id TEXT, expires_at TIMESTAMPTZ) \
         ON CONFLICT (tenant, key) DO NOTHING \
         RETURNING job_id), \
     new_jobs AS ( \
         INSERT INTO jobs (",
    job_columns!(),
    ") SELECT j.job_id, j.tenant, j.job_type, j.input, j.policy, j.priority, j.status, \
             j.message, j.result_artifact_uri, j.sink_task_id, j.task_count, \
             j.completed_tasks, j.dead_tasks, j.schedule_id, j.scheduled_for, j.created_at, \
             j.updated_at \
         FROM jsonb_to_recordset($1::jsonb) AS j(job_id TEXT, tenant TEXT, job_type TEXT, \
             input TEXT, policy TEXT, priority TEXT, status TEXT, message TEXT, \
             result_artifact_uri TEXT, sink_task_id TEXT, task_count INTEGER, \
             completed_tasks INTEGER, dead_tasks INTEGER, schedule_id TEXT, \
             scheduled_for TIMESTAMPTZ, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, \
             keyed BOOLEAN) \
         WHERE NOT j.keyed OR j.job_id IN (SELECT job_id FROM claimed) \
         ON CONFLICT (job_id) DO NOTHING \
         RETURNING job_id), \
     new_tasks AS ( \
         INSERT INTO tasks (job_id, task_id, task_type, inputs, dependencies, dependents, \
             max_retries, timeout_sec, priority, status, attempt, attempt_limit, \
             pending_dependencies, worker_id, lease_id, lease_expires_at, started_at, \
             last_report_key, last_report_lease, output_artifact_uri, error, \
             dead_lettered_at, redispatch_at, redispatch_count, backoff_initial_ms, \
             backoff_max_ms, next_attempt_at, created_at, updated_at) \
         SELECT t.job_id, t.task_id, t.task_type, t.inputs, t.dependencies, t.dependents, \
             t.max_retries, t.timeout_sec, t.priority, t.status, t.attempt, t.attempt_limit, \
             t.pending_dependencies, t.worker_id, t.lease_id, t.lease_expires_at, \
             t.started_at, t.last_report_key, t.last_report_lease, t.output_artifact_uri, \
             t.error, t.dead_lettered_at, t.redispatch_at, t.redispatch_count, \
             t.backoff_initial_ms, t.backoff_max_ms, t.next_attempt_at, t.created_at, \
             t.updated_at \
         FROM jsonb_to_recordset($2::jsonb) AS t(job_id TEXT, task_id TEXT, task_type TEXT, \
             inputs JSONB, dependencies TEXT[], dependents TEXT[], max_retries INTEGER, \
             timeout_sec INTEGER, priority TEXT, status TEXT, attempt INTEGER, \
             attempt_limit INTEGER, pending_dependencies INTEGER, worker_id TEXT, \
             lease_id TEXT, lease_expires_at TIMESTAMPTZ, started_at TIMESTAMPTZ, \
             last_report_key TEXT, last_report_lease TEXT, output_artifact_uri TEXT, \
             error TEXT, dead_lettered_at TIMESTAMPTZ, redispatch_at TIMESTAMPTZ, \
             redispatch_count INTEGER, backoff_initial_ms INTEGER, backoff_max_ms INTEGER, \
             next_attempt_at TIMESTAMPTZ, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ) \
         WHERE t.job_id IN (SELECT job_id FROM new_jobs)) \
     SELECT job_id FROM new_jobs"
);

/// `$1` tenant, `$2` key, `$3` body hash, `$4` job, `$5` expiry: claims a free key; no row
/// when the key is taken (the caller then locks and reads it).
pub(super) const CLAIM_KEY: &str = "INSERT INTO idempotency_keys \
         (tenant, key, body_hash, job_id, expires_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (tenant, key) DO NOTHING RETURNING job_id";

/// Retention runs in one replica at a time: this transaction-scoped lock says which.
pub(super) const TRY_RETENTION_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtext('daef:retention')) AS locked";

/// `$1` the least id of a job created at `$2` or later, `$2` purge jobs last changed before
/// this, `$3` limit: deletes the oldest finished jobs (`transition::is_purgeable`: completed,
/// canceled, or failed with no dead task) with their tasks (`ON DELETE CASCADE`), skipping
/// rows another transaction holds.
pub(super) const PURGE_JOBS: &str = "DELETE FROM jobs WHERE job_id IN ( \
         SELECT job_id FROM jobs \
         WHERE status IN ('Completed', 'Canceled', 'Failed') AND job_id < $1 \
           AND updated_at < $2 AND (status <> 'Failed' OR dead_tasks = 0) \
         ORDER BY job_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING job_id";

/// `$1` now, `$2` limit: deletes the oldest expired idempotency keys.
pub(super) const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE (tenant, key) IN ( \
         SELECT tenant, key FROM idempotency_keys WHERE expires_at <= $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// `$1` tenant, `$2` key: a taken key, locked until the transaction ends.
pub(super) const LOCK_KEY: &str = "SELECT body_hash, job_id, expires_at FROM idempotency_keys \
     WHERE tenant = $1 AND key = $2 FOR UPDATE";

/// `$1` tenant, `$2` key, `$3` body hash, `$4` job, `$5` expiry: rebinds an expired key.
pub(super) const REBIND_KEY: &str = "UPDATE idempotency_keys \
     SET body_hash = $3, job_id = $4, expires_at = $5 WHERE tenant = $1 AND key = $2";

// ---- schedules -----------------------------------------------------------------------------

/// The columns `rows::schedule` reads.
macro_rules! schedule_columns {
    () => {
        "tenant, schedule_id, cron, template, paused, next_fire_at, last_fire_at, last_job_id, \
         created_at, updated_at"
    };
}

/// `$1`…`$10` the columns of [`schedule_columns!`]: a new schedule; no row when its tenant
/// has one of that id.
pub(super) const INSERT_SCHEDULE: &str = concat!(
    "INSERT INTO schedules (",
    schedule_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (tenant, schedule_id) DO NOTHING RETURNING schedule_id"
);

/// `$1` schedule id: each tenant's schedule of that id (`schedules_id_idx`).
pub(super) const SCHEDULES_NAMED: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE schedule_id = $1 ORDER BY tenant"
);

/// `$1` tenants (`NULL`: all), `$2` limit, `$3` offset: by id, then tenant.
pub(super) const LIST_SCHEDULES: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE $1::text[] IS NULL OR tenant = ANY($1) \
     ORDER BY schedule_id, tenant LIMIT $2 OFFSET $3"
);

/// `$1` tenants (`NULL`: all).
pub(super) const COUNT_SCHEDULES: &str =
    "SELECT count(*) AS n FROM schedules WHERE $1::text[] IS NULL OR tenant = ANY($1)";

/// `$1` tenant, `$2` schedule.
pub(super) const DELETE_SCHEDULE: &str =
    "DELETE FROM schedules WHERE tenant = $1 AND schedule_id = $2 RETURNING schedule_id";

/// `$1` tenant, `$2` schedule, `$3` now: pauses it.
pub(super) const PAUSE_SCHEDULE: &str = concat!(
    "UPDATE schedules SET paused = true, updated_at = $3 \
     WHERE tenant = $1 AND schedule_id = $2 RETURNING ",
    schedule_columns!()
);

/// `$1` tenant, `$2` schedule, `$3` its next tick, `$4` now: resumes it if it is paused (no
/// row otherwise; the caller then reads it as it is).
pub(super) const RESUME_SCHEDULE: &str = concat!(
    "UPDATE schedules SET paused = false, next_fire_at = $3, updated_at = $4 \
     WHERE tenant = $1 AND schedule_id = $2 AND paused RETURNING ",
    schedule_columns!()
);

/// `$1` tenant, `$2` schedule.
pub(super) const SELECT_SCHEDULE: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE tenant = $1 AND schedule_id = $2"
);

/// `$1` now, `$2` limit: unpaused schedules due, the most overdue first (`schedules_due_idx`).
pub(super) const DUE_SCHEDULES: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE NOT paused AND next_fire_at <= $1 \
     ORDER BY next_fire_at, schedule_id, tenant LIMIT $2"
);

/// `$1` tenant, `$2` schedule, `$3` its creation, `$4` the tick fired, `$5` the next tick,
/// `$6` the tick's job, `$7` now: `schedule::fired`, only while `schedule::may_fire` holds
/// (the schedule read, unpaused, still at that tick and past the tick it last fired for); a
/// replica that fired it first holds the row until it commits, and this one then finds it
/// moved on.
pub(super) const FIRE_SCHEDULE: &str = "UPDATE schedules \
     SET next_fire_at = $5, last_fire_at = $4, last_job_id = $6, updated_at = $7 \
     WHERE tenant = $1 AND schedule_id = $2 AND created_at = $3 AND next_fire_at = $4 \
       AND NOT paused AND (last_fire_at IS NULL OR last_fire_at < $4) \
     RETURNING schedule_id";

/// `$1` tenant, `$2` schedule, `$3` tick, `$4` job: claims the tick; no row when it was
/// claimed before.
pub(super) const CLAIM_SCHEDULE_RUN: &str = "INSERT INTO schedule_runs \
         (tenant, schedule_id, fire_time, job_id) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (tenant, schedule_id, fire_time) DO NOTHING RETURNING job_id";

/// `$1` ticks fired before this, `$2` limit: retention of the tick claims.
pub(super) const PURGE_SCHEDULE_RUNS: &str = "DELETE FROM schedule_runs \
     WHERE (tenant, schedule_id, fire_time) IN ( \
         SELECT tenant, schedule_id, fire_time FROM schedule_runs WHERE fire_time < $1 \
         ORDER BY fire_time LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// `$1` job.
pub(super) const SELECT_JOB: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE job_id = $1");

/// `$1` job: locks it for a change, before any of its task rows (the lock order).
pub(super) const LOCK_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE job_id = $1 FOR NO KEY UPDATE"
);

/// `$1` job.
pub(super) const JOB_EXISTS: &str = "SELECT 1 FROM jobs WHERE job_id = $1";

/// `list_jobs`, newest first: (count statement, page statement). Both take the filter
/// parameters first (`status`, then `tenants` as a text array, each only when filtered on).
/// The count then takes its cap when `capped` (it stops counting there); the page takes the
/// keyset bound when `before` (only smaller ids), then limit and offset.
pub(super) fn list_jobs(
    status: bool,
    tenants: bool,
    before: bool,
    capped: bool,
) -> (String, String) {
    let mut filters = Vec::new();
    if status {
        filters.push(format!("status = ${}", filters.len() + 1));
    }
    if tenants {
        filters.push(format!("tenant = ANY(${})", filters.len() + 1));
    }
    let n = filters.len();
    let count = if capped {
        format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM jobs{} LIMIT ${}) AS capped",
            where_clause(&filters),
            n + 1
        )
    } else {
        format!("SELECT count(*) AS n FROM jobs{}", where_clause(&filters))
    };
    if before {
        filters.push(format!("job_id < ${}", n + 1));
    }
    let n = filters.len();
    (
        count,
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs{} ORDER BY job_id DESC LIMIT ${} OFFSET ${}",
            where_clause(&filters),
            n + 1,
            n + 2
        ),
    )
}

/// `$1` job, `$2` message, `$3` now: `job_task_dead_lettered`.
pub(super) const JOB_DEAD_LETTERED: &str = "UPDATE jobs SET dead_tasks = dead_tasks + 1, \
     status = 'Failed', message = $2, updated_at = $3 WHERE job_id = $1";

/// `$1` job, `$2` message, `$3` now: `cancel_job` of an unfinished job.
pub(super) const CANCEL_JOB: &str = "UPDATE jobs SET status = 'Canceled', message = $2, \
     updated_at = $3 WHERE job_id = $1 AND status IN ('Queued', 'Running')";

/// `$1` job ids: locks the jobs of a dead-letter requeue, in id order.
pub(super) const LOCK_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE job_id = ANY($1) ORDER BY job_id FOR NO KEY UPDATE"
);

/// `$1` job, `$2` how many of its dead tasks were requeued, `$3` now: `job_task_requeued`;
/// with no dead task left a failed job runs again.
pub(super) const JOB_TASKS_REQUEUED: &str = "UPDATE jobs SET \
         dead_tasks = GREATEST(dead_tasks - $2, 0), updated_at = $3, \
         status = CASE WHEN dead_tasks - $2 <= 0 AND status = 'Failed' \
             THEN 'Running' ELSE status END, \
         message = CASE WHEN dead_tasks - $2 <= 0 AND status = 'Failed' \
             THEN NULL ELSE message END \
     WHERE job_id = $1";

// ---- tasks ---------------------------------------------------------------------------------

/// `list_tasks`, by task id: (count statement, page statement). `$1` job, then `status` and
/// `worker_id` when filtered on, then limit (NULL for all) and offset.
pub(super) fn list_tasks(status: bool, worker: bool) -> (String, String) {
    let mut filters = vec!["job_id = $1".to_owned()];
    if status {
        filters.push(format!("status = ${}", filters.len() + 1));
    }
    if worker {
        filters.push(format!("worker_id = ${}", filters.len() + 1));
    }
    let filter = where_clause(&filters);
    let n = filters.len();
    (
        format!("SELECT count(*) AS n FROM tasks{filter}"),
        format!(
            "SELECT {TASK_COLUMNS} FROM tasks{filter} ORDER BY task_id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ),
    )
}

/// The outcome of `fail_attempt` (`$4` now, `$5` job dispatching, `$6` when the reconciler is
/// to enqueue it (its back-off's end, or now + orphan delay), `$8` the back-off's end or NULL):
/// back to `Queued` while attempts remain (dispatchable when the job is dispatching, once its
/// back-off is over), else `Failed` and dead-lettered.
macro_rules! fail_attempt_outcome {
    () => {
        "lease_expires_at = NULL, updated_at = $4::timestamptz, \
         status = CASE WHEN attempt < attempt_limit THEN 'Queued' ELSE 'Failed' END, \
         next_attempt_at = CASE WHEN attempt < attempt_limit \
             THEN $8::timestamptz ELSE next_attempt_at END, \
         dead_lettered_at = CASE WHEN attempt < attempt_limit \
             THEN dead_lettered_at ELSE $4::timestamptz END, \
         redispatch_at = CASE WHEN attempt < attempt_limit AND $5::boolean \
             THEN $6::timestamptz ELSE NULL END, \
         redispatch_count = CASE WHEN attempt < attempt_limit AND $5::boolean \
             THEN 0 ELSE redispatch_count END "
    };
}

/// `$1` job, `$2` task, `$3` error, `$4` now, `$5` job dispatching, `$6` when to enqueue,
/// `$7` lease, `$8` the back-off's end: `fail_attempt` for a lapsed lease, only while the lease
/// is the one seen and still lapsed.
pub(super) const FAIL_EXPIRED: &str = concat!(
    "UPDATE tasks SET error = $3, ",
    fail_attempt_outcome!(),
    "WHERE job_id = $1 AND task_id = $2 AND status = 'Running' AND lease_id = $7 \
       AND lease_expires_at <= $4::timestamptz \
     RETURNING status, attempt"
);

/// `$1` job ids: failed jobs dispatch nothing, so their waiting tasks stop being re-enqueued.
pub(super) const PAUSE_DISPATCH: &str = "WITH waiting AS ( \
         SELECT job_id, task_id FROM tasks \
         WHERE job_id = ANY($1) AND redispatch_at IS NOT NULL \
         ORDER BY job_id, task_id FOR UPDATE) \
     UPDATE tasks t SET redispatch_at = NULL FROM waiting \
     WHERE t.job_id = waiting.job_id AND t.task_id = waiting.task_id";

/// `$1`, `$2` job and task ids (pairwise) a batch names, `$3`, `$4` those reported: locks them,
/// with the dependents of the reported ones and their jobs' sink tasks (whose output a
/// completed job takes), in `(job_id, task_id)` order. Their jobs are locked first.
pub(super) const LOCK_BATCH_TASKS: &str = concat!(
    "WITH wanted AS ( \
         SELECT n.job_id, n.task_id FROM unnest($1::text[], $2::text[]) AS n(job_id, task_id) \
         UNION \
         SELECT r.job_id, d.task_id \
         FROM unnest($3::text[], $4::text[]) AS r(job_id, task_id) \
         JOIN tasks p ON p.job_id = r.job_id AND p.task_id = r.task_id \
         CROSS JOIN LATERAL unnest(p.dependents) AS d(task_id) \
         UNION \
         SELECT j.job_id, j.sink_task_id FROM jobs j WHERE j.job_id = ANY($3)) \
     SELECT ",
    task_columns!(),
    ", dependents FROM tasks \
     WHERE (job_id, task_id) IN (SELECT job_id, task_id FROM wanted) \
     ORDER BY job_id, task_id FOR UPDATE"
);

/// The changed tasks of a batch, pairwise arrays: `$1` job, `$2` task, `$3` the status read
/// under the lock, then the new `status`, `attempt`, `worker_id`, `lease_id`,
/// `lease_expires_at`, `started_at`, `last_report_key`, `last_report_lease`,
/// `output_artifact_uri`, `error`, `dead_lettered_at`, `redispatch_at`, `redispatch_count`,
/// `pending_dependencies`, `updated_at` (`$4`–`$18`); `$19` how many there are. Fails with a
/// division by zero unless every one matched, so that the batch rolls back.
pub(super) const UPDATE_BATCH_TASKS: &str = "WITH changed AS ( \
         UPDATE tasks t SET status = u.status, attempt = u.attempt, worker_id = u.worker_id, \
             lease_id = u.lease_id, lease_expires_at = u.lease_expires_at, \
             started_at = u.started_at, last_report_key = u.last_report_key, \
             last_report_lease = u.last_report_lease, \
             output_artifact_uri = u.output_artifact_uri, error = u.error, \
             dead_lettered_at = u.dead_lettered_at, redispatch_at = u.redispatch_at, \
             redispatch_count = u.redispatch_count, \
             pending_dependencies = u.pending_dependencies, updated_at = u.updated_at, \
             next_attempt_at = u.next_attempt_at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], \
             $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[], \
             $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[], \
             $16::integer[], $17::integer[], $18::timestamptz[], $19::timestamptz[]) \
             AS u(job_id, task_id, read_status, status, attempt, worker_id, lease_id, \
                 lease_expires_at, started_at, last_report_key, last_report_lease, \
                 output_artifact_uri, error, dead_lettered_at, redispatch_at, \
                 redispatch_count, pending_dependencies, updated_at, next_attempt_at) \
         WHERE t.job_id = u.job_id AND t.task_id = u.task_id AND t.status = u.read_status \
         RETURNING 1) \
     SELECT 1 / (count(*) = $20)::integer AS all_matched FROM changed";

/// The changed jobs of a batch, pairwise arrays: `$1` job, `$2` the status read under the
/// lock, then the new `status`, `message`, `result_artifact_uri`, `completed_tasks`,
/// `dead_tasks`, `updated_at` (`$3`–`$8`): each job's counters once per batch; `$9` how many
/// there are. Fails with a division by zero unless every one matched.
pub(super) const UPDATE_BATCH_JOBS: &str = "WITH changed AS ( \
         UPDATE jobs j SET status = u.status, message = u.message, \
             result_artifact_uri = u.result_artifact_uri, \
             completed_tasks = u.completed_tasks, dead_tasks = u.dead_tasks, \
             updated_at = u.updated_at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::integer[], $7::integer[], $8::timestamptz[]) \
             AS u(job_id, read_status, status, message, result_artifact_uri, \
                 completed_tasks, dead_tasks, updated_at) \
         WHERE j.job_id = u.job_id AND j.status = u.read_status \
         RETURNING 1) \
     SELECT 1 / (count(*) = $9)::integer AS all_matched FROM changed";

/// `$1` job, `$2` now: `cancel_task` for every unfinished task of a canceled job.
pub(super) const CANCEL_TASKS: &str = "WITH open AS ( \
         SELECT job_id, task_id FROM tasks \
         WHERE job_id = $1 AND status IN ('Queued', 'Running') \
         ORDER BY task_id FOR UPDATE) \
     UPDATE tasks t SET status = 'Canceled', lease_expires_at = NULL, redispatch_at = NULL, \
         updated_at = $2 \
     FROM open WHERE t.job_id = open.job_id AND t.task_id = open.task_id";

/// `$1` worker, `$2` now, `$3` now + lease: `extend_lease` for the worker's running tasks
/// whose lease is still live, never past the attempt's timeout, never shortened.
pub(super) const EXTEND_LEASES: &str = "WITH live AS ( \
         SELECT job_id, task_id FROM tasks \
         WHERE worker_id = $1 AND status = 'Running' AND started_at IS NOT NULL \
           AND lease_expires_at > $2 \
         ORDER BY job_id, task_id FOR UPDATE) \
     UPDATE tasks t SET lease_expires_at = GREATEST(t.lease_expires_at, \
         LEAST($3::timestamptz, t.started_at + t.timeout_sec * interval '1 second')) \
     FROM live WHERE t.job_id = live.job_id AND t.task_id = live.task_id";

/// `$1` now, `$2` limit: the jobs of the oldest lapsed leases, locked, skipping those another
/// transaction holds (another replica's reconciler, or a reporter: the next pass gets them).
/// `= ANY(ARRAY(…))` rather than `IN (…)`: the ids become one array looked up through the
/// primary key, where `IN` may be planned as a hash join over every job.
pub(super) const LOCK_JOBS_WITH_LAPSED_LEASES: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE job_id = ANY(ARRAY( \
         SELECT job_id FROM tasks WHERE status = 'Running' AND lease_expires_at <= $1 \
         ORDER BY lease_expires_at, job_id, task_id LIMIT $2)) \
     ORDER BY job_id FOR NO KEY UPDATE SKIP LOCKED"
);

/// `$1` job ids (locked), `$2` now, `$3` limit: their lapsed running tasks, oldest deadline
/// first, locked.
pub(super) const LOCK_LAPSED_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks \
     WHERE job_id = ANY($1) AND status = 'Running' AND lease_expires_at <= $2 \
     ORDER BY lease_expires_at, job_id, task_id LIMIT $3 FOR UPDATE SKIP LOCKED"
);

/// `$1` now, `$2` limit, `$3` orphan delay in microseconds, `$4` most doublings:
/// `redispatched` for the dispatchable tasks whose re-dispatch time passed (skipping those
/// another replica holds); the next time backs off by 2^min(count, $4).
pub(super) const TAKE_ORPHANS: &str = "WITH due AS ( \
         SELECT job_id, task_id, redispatch_at AS due_at FROM tasks \
         WHERE status = 'Queued' AND pending_dependencies = 0 \
           AND redispatch_at IS NOT NULL AND redispatch_at <= $1 \
         ORDER BY redispatch_at, job_id, task_id LIMIT $2 \
         FOR UPDATE SKIP LOCKED) \
     UPDATE tasks t SET \
         redispatch_count = LEAST(t.redispatch_count, 2147483646) + 1, \
         redispatch_at = $1::timestamptz + ($3::bigint \
             * (1 << LEAST(LEAST(t.redispatch_count, 2147483646) + 1, $4::integer))) \
             * interval '1 microsecond' \
     FROM due WHERE t.job_id = due.job_id AND t.task_id = due.task_id \
     RETURNING t.job_id, t.task_id, t.priority, due.due_at";

/// `$1` limit: the oldest dead letters.
pub(super) const DEAD_LETTERS: &str = "SELECT t.job_id, t.task_id, j.tenant, t.attempt, \
         t.error, t.dead_lettered_at \
     FROM tasks t JOIN jobs j ON j.job_id = t.job_id \
     WHERE t.status = 'Failed' AND t.dead_lettered_at IS NOT NULL \
     ORDER BY t.dead_lettered_at, t.job_id, t.task_id LIMIT $1";

/// The dead-letter queue's length.
pub(super) const COUNT_DEAD_LETTERS: &str = "SELECT count(*) AS n FROM tasks \
     WHERE status = 'Failed' AND dead_lettered_at IS NOT NULL";

/// `$1` job ids, `$2` task ids (pairwise): how many of the listed tasks are dead letters.
pub(super) const COUNT_DEAD_AMONG: &str = "SELECT count(*) AS n \
     FROM unnest($1::text[], $2::text[]) AS l(job_id, task_id) \
     JOIN tasks t ON t.job_id = l.job_id AND t.task_id = l.task_id \
     WHERE t.status = 'Failed' AND t.dead_lettered_at IS NOT NULL";

/// The listed tasks (`$1` job ids, `$2` task ids, pairwise) that are dead letters, locked in key
/// order, as the CTE `dead`: what a requeue and a discard act on.
macro_rules! listed_dead_letters {
    () => {
        "WITH listed AS ( \
             SELECT DISTINCT job_id, task_id \
             FROM unnest($1::text[], $2::text[]) AS l(job_id, task_id)), \
         dead AS ( \
             SELECT t.job_id, t.task_id FROM tasks t \
             JOIN listed ON listed.job_id = t.job_id AND listed.task_id = t.task_id \
             WHERE t.status = 'Failed' AND t.dead_lettered_at IS NOT NULL \
             ORDER BY t.job_id, t.task_id FOR UPDATE OF t) "
    };
}

/// `$1` job ids, `$2` task ids (pairwise), `$3` now: `requeue_dead` for the listed dead letters,
/// a fresh attempt budget each.
pub(super) const REQUEUE_DEAD: &str = concat!(
    listed_dead_letters!(),
    "UPDATE tasks t SET status = 'Queued', dead_lettered_at = NULL, next_attempt_at = NULL, \
         attempt_limit = t.attempt + t.max_retries + 1, lease_expires_at = NULL, \
         updated_at = $3 \
     FROM dead WHERE t.job_id = dead.job_id AND t.task_id = dead.task_id \
     RETURNING t.job_id, t.task_id"
);

/// `$1` job ids, `$2` task ids (pairwise), `$3` now: `discard_dead` for the listed dead
/// letters, which stay `Failed`.
pub(super) const DISCARD_DEAD: &str = concat!(
    listed_dead_letters!(),
    "UPDATE tasks t SET dead_lettered_at = NULL, updated_at = $3 \
     FROM dead WHERE t.job_id = dead.job_id AND t.task_id = dead.task_id \
     RETURNING t.job_id, t.task_id"
);

/// `$1` job, `$2` how many of its dead tasks were discarded, `$3` now: `job_task_discarded`.
pub(super) const JOB_TASKS_DISCARDED: &str = "UPDATE jobs SET \
         dead_tasks = GREATEST(dead_tasks - $2, 0), updated_at = $3 WHERE job_id = $1";

/// `$1` job ids, `$2` now + orphan delay, `$3` now: every dispatchable task of jobs that run
/// again is dispatchable (`mark_dispatchable`); those due now are returned, to be enqueued.
pub(super) const REDISPATCH_READY: &str = "WITH ready AS ( \
         SELECT job_id, task_id FROM tasks \
         WHERE job_id = ANY($1) AND status = 'Queued' AND pending_dependencies = 0 \
         ORDER BY job_id, task_id FOR UPDATE) \
     UPDATE tasks t SET redispatch_at = CASE WHEN t.next_attempt_at > $3::timestamptz \
             THEN t.next_attempt_at ELSE $2::timestamptz END, redispatch_count = 0 \
     FROM ready WHERE t.job_id = ready.job_id AND t.task_id = ready.task_id \
     RETURNING t.job_id, t.task_id, t.priority, \
         (t.next_attempt_at IS NULL OR t.next_attempt_at <= $3::timestamptz) AS due";

// ---- workers -------------------------------------------------------------------------------

/// `$1` job ids, `$2` task ids (pairwise): the listed tasks (for `stale_leases`).
pub(super) const SELECT_LISTED_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE (job_id, task_id) IN \
     (SELECT * FROM unnest($1::text[], $2::text[]))"
);

/// `$1` worker, `$2` capabilities, `$3` now: registers, or updates a registered worker.
pub(super) const REGISTER_WORKER: &str = "INSERT INTO workers \
         (worker_id, capabilities, stats, registered_at, last_heartbeat) \
     VALUES ($1, $2, '{}', $3, $3) \
     ON CONFLICT (worker_id) DO UPDATE \
     SET capabilities = EXCLUDED.capabilities, last_heartbeat = EXCLUDED.last_heartbeat";

/// `$1` limit, `$2` offset: registered workers by id.
pub(super) const LIST_WORKERS: &str = "SELECT worker_id, capabilities, stats, registered_at, \
     last_heartbeat FROM workers ORDER BY worker_id LIMIT $1 OFFSET $2";

/// How many workers are registered.
pub(super) const COUNT_WORKERS: &str = "SELECT count(*) AS n FROM workers";

/// `$1` worker.
pub(super) const WORKER_EXISTS: &str = "SELECT 1 FROM workers WHERE worker_id = $1";

/// `$1` worker, `$2` stats, `$3` now.
pub(super) const WORKER_HEARTBEAT: &str =
    "UPDATE workers SET stats = $2, last_heartbeat = $3 WHERE worker_id = $1";

// ---- audit ---------------------------------------------------------------------------------

/// Locks the chain head: appends queue up here, so the chain never forks.
pub(super) const LOCK_CHAIN_HEAD: &str =
    "SELECT last_id, last_hash FROM audit_chain_head WHERE singleton FOR UPDATE";

/// `$1`–`$13`: the event's columns in [`AUDIT_COLUMNS`] order.
pub(super) const INSERT_AUDIT_EVENT: &str = concat!(
    "INSERT INTO audit_events (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);

/// `$1` id, `$2` hash of the event just appended.
pub(super) const ADVANCE_CHAIN_HEAD: &str =
    "UPDATE audit_chain_head SET last_id = $1, last_hash = $2 WHERE singleton";

/// Exact-match audit filters, in parameter order.
pub(super) const AUDIT_FILTERS: [&str; 4] = ["action", "actor", "tenant", "result"];

/// `list_audit`, newest first. `filters` says which of [`AUDIT_FILTERS`] are set, then `from`
/// and `to`; their parameters come in that order, then limit and offset.
pub(super) fn list_audit(filters: [bool; 4], from: bool, to: bool) -> String {
    let mut clauses = Vec::new();
    for (column, set) in AUDIT_FILTERS.iter().zip(filters) {
        if set {
            clauses.push(format!("{column} = ${}", clauses.len() + 1));
        }
    }
    if from {
        clauses.push(format!("created_at >= ${}", clauses.len() + 1));
    }
    if to {
        clauses.push(format!("created_at <= ${}", clauses.len() + 1));
    }
    let n = clauses.len();
    format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events{} ORDER BY id DESC LIMIT ${} OFFSET ${}",
        where_clause(&clauses),
        n + 1,
        n + 2
    )
}

/// `$1` after id, `$2` limit: the chain in id order, for verification.
pub(super) const AUDIT_CHAIN: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2"
);

fn where_clause(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_statements_number_their_parameters_in_order() {
        assert_eq!(
            list_jobs(true, true, false, false).1,
            format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 AND tenant = ANY($2) \
                 ORDER BY job_id DESC LIMIT $3 OFFSET $4"
            )
        );
        assert_eq!(
            list_jobs(false, false, false, false).0,
            "SELECT count(*) AS n FROM jobs"
        );
        let (count, page) = list_jobs(true, false, true, true);
        assert_eq!(
            count,
            "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE status = $1 LIMIT $2) AS capped"
        );
        assert_eq!(
            page,
            format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 AND job_id < $2 \
                 ORDER BY job_id DESC LIMIT $3 OFFSET $4"
            )
        );
        assert_eq!(
            list_tasks(false, true).0,
            "SELECT count(*) AS n FROM tasks WHERE job_id = $1 AND worker_id = $2"
        );
        assert_eq!(
            list_audit([false, true, false, true], false, true),
            format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE actor = $1 AND result = $2 \
                 AND created_at <= $3 ORDER BY id DESC LIMIT $4 OFFSET $5"
            )
        );
    }
}
