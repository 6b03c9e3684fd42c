-- Lease and idempotency columns for task execution.

ALTER TABLE tasks
    ADD COLUMN lease_id         TEXT,
    ADD COLUMN lease_expires_at TIMESTAMPTZ,
    ADD COLUMN last_report_key  TEXT;

CREATE INDEX tasks_status_lease_expires_at_idx ON tasks (status, lease_expires_at);
