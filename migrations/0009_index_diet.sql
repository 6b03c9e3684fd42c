-- The index and row diet of the batched write path. Every index left on `tasks` and `jobs` is
-- justified by a hot-path or reconciler plan in docs/operations.md; each one an update touches is
-- one more entry to write, so those no query needs go.
--
-- Safe on a populated database: dropping an index and setting a storage parameter only change
-- the catalog (the brief ACCESS EXCLUSIVE lock of DROP INDEX waits for running transactions
-- only), and no table is rewritten: the fillfactor applies to pages filled from now on.

-- 0002's (job_id, status): tasks are reached by the primary key (job_id, task_id), which also
-- serves a job's task listing and its cancel; the status filters run on the job's few rows.
DROP INDEX IF EXISTS tasks_job_id_status_idx;

-- 0003's (status, lease_expires_at): superseded by 0008's partial tasks_running_lease_idx.
DROP INDEX IF EXISTS tasks_status_lease_expires_at_idx;

-- 0002's workers(last_heartbeat): no query reads workers by heartbeat, and it made every
-- heartbeat rewrite the index instead of updating the row in place.
DROP INDEX IF EXISTS workers_last_heartbeat_idx;

-- Room on each page for the next version of its rows: an update that changes no indexed column
-- (a heartbeat; a job's progress counters) stays on its page as a HOT update, and one that does
-- still finds room there instead of extending the table.
ALTER TABLE tasks SET (fillfactor = 80);
ALTER TABLE jobs SET (fillfactor = 80);
ALTER TABLE workers SET (fillfactor = 50);
