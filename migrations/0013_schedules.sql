-- Periodic schedules (issue 15): a cron expression, a job template and the next tick. The
-- reconciler of every replica finds due schedules through the partial index; a firing is one
-- transaction that advances next_fire_at only if it is still the tick read, records the tick in
-- schedule_runs (unique per schedule and tick) and inserts the tick's job. New tables and two
-- nullable columns without default: the migration is instant on a populated database.
-- A schedule is named by its tenant and id: ids are unique within a tenant, so no tenant
-- learns which ids another uses. Byte order (COLLATE "C"), as for job and task ids.
CREATE TABLE IF NOT EXISTS schedules (
    tenant       TEXT        COLLATE "C" NOT NULL,
    schedule_id  TEXT        COLLATE "C" NOT NULL,
    cron         TEXT        NOT NULL,
    template     JSONB       NOT NULL,
    paused       BOOLEAN     NOT NULL,
    next_fire_at TIMESTAMPTZ NOT NULL,
    last_fire_at TIMESTAMPTZ,
    last_job_id  TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, schedule_id)
);

-- due_schedules: unpaused schedules by next tick.
CREATE INDEX IF NOT EXISTS schedules_due_idx
    ON schedules (next_fire_at, schedule_id, tenant) WHERE NOT paused;

-- schedules_named, and every operator's list: by id.
CREATE INDEX IF NOT EXISTS schedules_id_idx ON schedules (schedule_id, tenant);

-- One job per schedule and tick, whatever the number of replicas. Retention deletes ticks
-- older than DAEF_RETENTION_HOURS (through the fire_time index); deleting a schedule deletes
-- its ticks.
CREATE TABLE IF NOT EXISTS schedule_runs (
    tenant      TEXT        COLLATE "C" NOT NULL,
    schedule_id TEXT        COLLATE "C" NOT NULL,
    fire_time   TIMESTAMPTZ NOT NULL,
    job_id      TEXT        NOT NULL,
    PRIMARY KEY (tenant, schedule_id, fire_time),
    FOREIGN KEY (tenant, schedule_id) REFERENCES schedules (tenant, schedule_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS schedule_runs_fire_time_idx ON schedule_runs (fire_time);

-- A scheduled job carries its schedule and tick.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule_id TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS scheduled_for TIMESTAMPTZ;
