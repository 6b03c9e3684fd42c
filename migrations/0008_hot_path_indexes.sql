-- Indexes for the hot-path and reconciler queries of the Postgres store. The partial ones
-- cover only the rows a query can want, so they stay small however many finished tasks pile up.

-- expire_leases: running tasks whose lease lapsed, oldest deadline first.
CREATE INDEX IF NOT EXISTS tasks_running_lease_idx
    ON tasks (lease_expires_at, job_id, task_id) WHERE status = 'Running';

-- heartbeat: the running tasks of one worker.
CREATE INDEX IF NOT EXISTS tasks_running_worker_idx
    ON tasks (worker_id) WHERE status = 'Running';

-- take_orphans: dispatchable queued tasks whose re-dispatch time passed.
CREATE INDEX IF NOT EXISTS tasks_dispatchable_redispatch_idx
    ON tasks (redispatch_at, job_id, task_id)
    WHERE status = 'Queued' AND pending_dependencies = 0 AND redispatch_at IS NOT NULL;

-- dead_letters / count_dead_letters: the dead-letter queue, oldest first.
CREATE INDEX IF NOT EXISTS tasks_dead_letter_idx
    ON tasks (dead_lettered_at, job_id, task_id)
    WHERE status = 'Failed' AND dead_lettered_at IS NOT NULL;

-- list_jobs: newest first within a tenant, a status, or both.
CREATE INDEX IF NOT EXISTS jobs_tenant_job_id_idx ON jobs (tenant, job_id);
CREATE INDEX IF NOT EXISTS jobs_status_job_id_idx ON jobs (status, job_id);
CREATE INDEX IF NOT EXISTS jobs_tenant_status_job_id_idx ON jobs (tenant, status, job_id);

-- 0005's (tenant, status) index is a prefix of the one above; keeping both only slows writes.
DROP INDEX IF EXISTS jobs_tenant_status_idx;
