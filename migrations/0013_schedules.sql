-- Periodic schedules (issue 15): a cron expression, a job template and the next tick. The
-- reconciler of every replica finds due schedules through the partial index; a firing is one
-- transaction that advances next_fire_at only if it is still the tick read, records the tick in
-- schedule_runs (unique per schedule and tick) and inserts the tick's job. New tables and two
-- nullable columns without default: the migration is instant on a populated database.
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id  TEXT        PRIMARY KEY,
    tenant       TEXT        NOT NULL,
    cron         TEXT        NOT NULL,
    template     JSONB       NOT NULL,
    paused       BOOLEAN     NOT NULL,
    next_fire_at TIMESTAMPTZ NOT NULL,
    last_fire_at TIMESTAMPTZ,
    last_job_id  TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- due_schedules: unpaused schedules by next tick.
CREATE INDEX IF NOT EXISTS schedules_due_idx ON schedules (next_fire_at) WHERE NOT paused;

-- list_schedules for a tenant-scoped token.
CREATE INDEX IF NOT EXISTS schedules_tenant_idx ON schedules (tenant, schedule_id);

-- One job per schedule and tick, whatever the number of replicas. Retention deletes ticks
-- older than DAEF_RETENTION_HOURS (through the fire_time index); deleting a schedule deletes
-- its ticks.
CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule_id TEXT        NOT NULL REFERENCES schedules (schedule_id) ON DELETE CASCADE,
    fire_time   TIMESTAMPTZ NOT NULL,
    job_id      TEXT        NOT NULL,
    PRIMARY KEY (schedule_id, fire_time)
);
CREATE INDEX IF NOT EXISTS schedule_runs_fire_time_idx ON schedule_runs (fire_time);

-- A scheduled job carries its schedule and tick.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_id TEXT;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS scheduled_for TIMESTAMPTZ;
