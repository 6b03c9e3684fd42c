-- The Postgres ceiling: the transactions one task of a one-task job costs the Postgres store,
-- statement for statement as crates/daef-store/src/postgres/sql.rs words them (keep the two in
-- step): submit (insert the job and its DAG), assign (the poll's Queued -> Running step) and
-- complete (the report). pgbench counts one run of this file as one transaction, so its tps
-- is tasks per second. Run with -M prepared (the store prepares and caches every statement)
-- and PGOPTIONS='-c search_path=<a migrated daef_bench_* schema>'.
\set nonce random(1, 2000000000)

-- submit: INSERT_JOB + INSERT_TASKS in one transaction, as the store sends them (the JSON keeps a space after every
-- colon: pgbench would read `:null` as a variable). Ids are time-ordered like the store's
-- UUID v7 job ids, so the primary-key index grows at its right edge as it does in production.
BEGIN;
INSERT INTO jobs (job_id, tenant, job_type, input, policy, priority, status, message,
    result_artifact_uri, sink_task_id, task_count, completed_tasks, dead_tasks, created_at,
    updated_at)
  VALUES ('job-pgb-' || lpad(((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text, 20, '0')
          || '-' || :client_id, 'default', 'bench', 'daef-bench pgbench', NULL, 'interactive',
          'Queued', NULL, NULL, 't1', 1, 0, 0, now(), now())
  RETURNING job_id \gset
INSERT INTO tasks (job_id, task_id, task_type, inputs, dependencies, dependents, max_retries,
    timeout_sec, priority, status, attempt, attempt_limit, pending_dependencies, worker_id,
    lease_id, lease_expires_at, started_at, last_report_key, last_report_lease,
    output_artifact_uri, error, dead_lettered_at, redispatch_at, redispatch_count, created_at,
    updated_at)
  SELECT :job_id, t.task_id, t.task_type, t.inputs, t.dependencies, t.dependents, t.max_retries,
    t.timeout_sec, t.priority, t.status, t.attempt, t.attempt_limit, t.pending_dependencies,
    t.worker_id, t.lease_id, t.lease_expires_at, t.started_at, t.last_report_key,
    t.last_report_lease, t.output_artifact_uri, t.error, t.dead_lettered_at, t.redispatch_at,
    t.redispatch_count, t.created_at, t.updated_at
  FROM jsonb_to_recordset('[{"task_id": "t1","task_type": "llm_inference","inputs": {"prompt": "daef-bench pgbench"},"dependencies": [],"dependents": [],"max_retries": 2,"timeout_sec": 60,"priority": "interactive","status": "Queued","attempt": 0,"attempt_limit": 3,"pending_dependencies": 0,"worker_id": null,"lease_id": null,"lease_expires_at": null,"started_at": null,"last_report_key": null,"last_report_lease": null,"output_artifact_uri": null,"error": null,"dead_lettered_at": null,"redispatch_at": "2026-01-01T00:00:10Z","redispatch_count": 0,"created_at": "2026-01-01T00:00:00Z","updated_at": "2026-01-01T00:00:00Z"}]'::jsonb)
    AS t(task_id TEXT, task_type TEXT, inputs JSONB, dependencies TEXT[], dependents TEXT[],
      max_retries INTEGER, timeout_sec INTEGER, priority TEXT, status TEXT, attempt INTEGER,
      attempt_limit INTEGER, pending_dependencies INTEGER, worker_id TEXT, lease_id TEXT,
      lease_expires_at TIMESTAMPTZ, started_at TIMESTAMPTZ, last_report_key TEXT,
      last_report_lease TEXT, output_artifact_uri TEXT, error TEXT,
      dead_lettered_at TIMESTAMPTZ, redispatch_at TIMESTAMPTZ, redispatch_count INTEGER,
      created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
COMMIT;

-- assign: LOCK_JOBS_FOR_ASSIGN, ASSIGN_TASKS, START_JOBS in one transaction, for a poll that
-- claimed this one task (the gateway assigns every claim of a poll, up to max_tasks, in one
-- such transaction).
BEGIN;
SELECT job_id, status FROM jobs WHERE job_id = ANY(ARRAY[:job_id]::text[])
  ORDER BY job_id FOR NO KEY UPDATE;
WITH claimed AS (
    SELECT DISTINCT ON (job_id, task_id) job_id, task_id, nonce
    FROM unnest(ARRAY[:job_id]::text[], ARRAY['t1']::text[], ARRAY[(:nonce)::text]::text[])
      AS u(job_id, task_id, nonce)
    WHERE job_id = ANY(ARRAY[:job_id]::text[]) ORDER BY job_id, task_id),
  locked AS (
    SELECT t.job_id, t.task_id, t.status, t.pending_dependencies, claimed.nonce
    FROM claimed JOIN tasks t ON t.job_id = claimed.job_id AND t.task_id = claimed.task_id
    ORDER BY t.job_id, t.task_id FOR UPDATE OF t)
UPDATE tasks t SET status = 'Running', attempt = t.attempt + 1, worker_id = 'pgbench-worker',
    lease_id = 'lease-' || (t.attempt + 1)::text || '-' || locked.nonce,
    started_at = now(),
    lease_expires_at = LEAST(now() + interval '15 seconds',
        now() + t.timeout_sec * interval '1 second'),
    redispatch_at = NULL, redispatch_count = 0, updated_at = now()
  FROM locked WHERE t.job_id = locked.job_id AND t.task_id = locked.task_id
    AND locked.status = 'Queued' AND locked.pending_dependencies = 0
  RETURNING t.job_id, t.task_id, t.task_type, t.inputs, t.attempt, t.lease_id,
    t.lease_expires_at, t.timeout_sec \gset
UPDATE jobs SET status = 'Running', updated_at = now()
  WHERE job_id = ANY(ARRAY[:job_id]::text[]) AND status = 'Queued';
COMMIT;

-- complete: LOCK_JOB, LOCK_TASK, COMPLETE_TASK, JOB_TASK_COMPLETED in one transaction (the
-- store sends them two by two, in two round trips).
BEGIN;
SELECT job_id, tenant, job_type, input, policy, priority, status, message,
    result_artifact_uri, sink_task_id, task_count, completed_tasks, dead_tasks, created_at,
    updated_at
  FROM jobs WHERE job_id = :job_id FOR NO KEY UPDATE;
SELECT job_id, task_id, task_type, inputs, dependencies, max_retries, timeout_sec, priority,
    status, attempt, attempt_limit, pending_dependencies, worker_id, lease_id,
    lease_expires_at, started_at, last_report_key, last_report_lease, output_artifact_uri,
    error, dead_lettered_at, redispatch_at, redispatch_count, created_at, updated_at
  FROM tasks WHERE job_id = :job_id AND task_id = 't1' FOR UPDATE;
UPDATE tasks SET status = 'Completed', output_artifact_uri = 'bench://pgbench/t1', error = NULL,
    last_report_key = 'pgbench-' || (:nonce)::text, last_report_lease = :lease_id,
    lease_expires_at = NULL, redispatch_at = NULL, updated_at = now()
  WHERE job_id = :job_id AND task_id = 't1' AND status = 'Running' AND lease_id = :lease_id
  RETURNING dependents;
UPDATE jobs SET completed_tasks = completed_tasks + 1, updated_at = now(),
    status = CASE WHEN completed_tasks + 1 >= task_count THEN 'Completed' ELSE status END,
    message = CASE WHEN completed_tasks + 1 >= task_count THEN NULL ELSE message END,
    result_artifact_uri = CASE WHEN completed_tasks + 1 >= task_count
        THEN (SELECT s.output_artifact_uri FROM tasks s
              WHERE s.job_id = jobs.job_id AND s.task_id = jobs.sink_task_id)
        ELSE result_artifact_uri END
  WHERE job_id = :job_id RETURNING status;
COMMIT;
