-- Every column the DAEF lifecycle keeps beyond the seed's: job progress counters and sink task,
-- the attempt budget, dependency bookkeeping, dead letters and orphan re-dispatch.
--
-- Written defensively: a database first migrated by the seed system's own five files (whose
-- column lists are not exactly ours) must be accepted and upgraded by this same file. So every
-- column is added with IF NOT EXISTS and a default, columns we do not know stop being NOT NULL
-- (our inserts never fill them), and rows the seed left behind get our bookkeeping filled in.
-- On a database created by our 0001-0005 every ADD COLUMN of a base column is a no-op.

ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS job_type            TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS input               TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS policy              TEXT,
    ADD COLUMN IF NOT EXISTS priority            TEXT NOT NULL DEFAULT 'interactive',
    ADD COLUMN IF NOT EXISTS message             TEXT,
    ADD COLUMN IF NOT EXISTS result_artifact_uri TEXT,
    ADD COLUMN IF NOT EXISTS tenant              TEXT NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS sink_task_id        TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS task_count          INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS completed_tasks     INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS dead_tasks          INTEGER NOT NULL DEFAULT 0;

ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS task_type            TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS inputs               JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS dependencies         TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS max_retries          INTEGER NOT NULL DEFAULT 2,
    ADD COLUMN IF NOT EXISTS timeout_sec          INTEGER NOT NULL DEFAULT 60,
    ADD COLUMN IF NOT EXISTS attempt              INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS worker_id            TEXT,
    ADD COLUMN IF NOT EXISTS output_artifact_uri  TEXT,
    ADD COLUMN IF NOT EXISTS error                TEXT,
    ADD COLUMN IF NOT EXISTS created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS lease_id             TEXT,
    ADD COLUMN IF NOT EXISTS lease_expires_at     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS last_report_key      TEXT,
    ADD COLUMN IF NOT EXISTS priority             TEXT NOT NULL DEFAULT 'interactive',
    ADD COLUMN IF NOT EXISTS attempt_limit        INTEGER NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS pending_dependencies INTEGER NOT NULL DEFAULT 0,
    -- The inverse of `dependencies`, filled at insert, so a completion finds its dependents
    -- by primary key instead of scanning the job's tasks.
    ADD COLUMN IF NOT EXISTS dependents           TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS started_at           TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS last_report_lease    TEXT,
    ADD COLUMN IF NOT EXISTS dead_lettered_at     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS redispatch_at        TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS redispatch_count     INTEGER NOT NULL DEFAULT 0;

ALTER TABLE workers
    ADD COLUMN IF NOT EXISTS capabilities   JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS stats          JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS registered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS last_heartbeat TIMESTAMPTZ NOT NULL DEFAULT now();

ALTER TABLE audit_events
    ADD COLUMN IF NOT EXISTS created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS action       TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS actor        TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS remote_addr  TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS resource     TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS payload_hash TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS requested    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS result       TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS details      TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS tenant       TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS prev_hash    TEXT NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS event_hash   TEXT NOT NULL DEFAULT '';

-- Columns a seed database has and we never write must not reject our inserts.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT t.relname AS tbl, a.attname AS name
        FROM pg_attribute a
        JOIN pg_class t ON t.oid = a.attrelid
        WHERE t.relnamespace = current_schema()::regnamespace
          AND t.relname IN ('jobs', 'tasks', 'workers', 'audit_events')
          AND a.attnum > 0
          AND NOT a.attisdropped
          AND a.attnotnull
          AND NOT a.atthasdef
          AND NOT EXISTS (
              SELECT 1 FROM pg_index i
              WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey)
          )
          AND (t.relname, a.attname) NOT IN (
              ('jobs', 'job_type'), ('jobs', 'status'), ('jobs', 'created_at'),
              ('jobs', 'updated_at'),
              ('tasks', 'task_type'), ('tasks', 'max_retries'), ('tasks', 'timeout_sec'),
              ('tasks', 'status'), ('tasks', 'created_at'), ('tasks', 'updated_at'),
              ('workers', 'registered_at'), ('workers', 'last_heartbeat'),
              ('audit_events', 'created_at'), ('audit_events', 'action'),
              ('audit_events', 'actor'), ('audit_events', 'result')
          )
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I DROP NOT NULL', col.tbl, col.name);
    END LOOP;
END
$$;

-- Bookkeeping for tasks the seed system left behind, so that its unfinished jobs carry on:
-- attempt budgets, dependency counters, job progress, the sink task, and a re-dispatch time
-- for every dispatchable task (the reconciler enqueues it, since the seed's queue entries are
-- not ours). A no-op on a new database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tasks) THEN
        RETURN;
    END IF;
    UPDATE tasks SET attempt_limit = GREATEST(max_retries + 1, attempt);
    UPDATE tasks t SET priority = j.priority FROM jobs j WHERE j.job_id = t.job_id;
    UPDATE tasks t
    SET dependents = COALESCE((
            SELECT array_agg(d.task_id ORDER BY d.task_id)
            FROM tasks d
            WHERE d.job_id = t.job_id AND t.task_id = ANY (d.dependencies)
        ), '{}'),
        pending_dependencies = (
            SELECT count(*)
            FROM unnest(t.dependencies) AS dep(task_id)
            LEFT JOIN tasks p ON p.job_id = t.job_id AND p.task_id = dep.task_id
            WHERE p.status IS DISTINCT FROM 'Completed'
        );
    UPDATE jobs j
    SET task_count = c.total,
        completed_tasks = c.completed,
        sink_task_id = c.sink
    FROM (
        SELECT job_id,
               count(*) AS total,
               count(*) FILTER (WHERE status = 'Completed') AS completed,
               COALESCE(max(task_id COLLATE "C") FILTER (WHERE dependents = '{}'), '') AS sink
        FROM tasks
        GROUP BY job_id
    ) c
    WHERE j.job_id = c.job_id;
    UPDATE tasks t
    SET redispatch_at = now(), redispatch_count = 0
    FROM jobs j
    WHERE j.job_id = t.job_id
      AND j.status IN ('Queued', 'Running')
      AND t.status = 'Queued'
      AND t.pending_dependencies = 0
      AND t.redispatch_at IS NULL;
END
$$;
