-- Retry back-off and delayed jobs (issue 15). A `Queued` task is not dispatched before
-- `next_attempt_at`; each task keeps its own back-off. Columns with constant defaults and a
-- nullable one: catalog-only on Postgres 11 and later, so instant on a populated database.
ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS backoff_initial_ms INTEGER NOT NULL DEFAULT 1000,
    ADD COLUMN IF NOT EXISTS backoff_max_ms INTEGER NOT NULL DEFAULT 300000;
