-- Submits' Idempotency-Key (issue 15): within its lifetime (DAEF_IDEMPOTENCY_TTL_SECONDS), the
-- same key from the same tenant names the same job, across replicas and restarts. A new table,
-- so the migration is instant on a populated database.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant     TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    body_hash  TEXT        NOT NULL,
    job_id     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, key)
);
