-- Retention (DAEF_RETENTION_HOURS): expired idempotency keys are deleted oldest first, found
-- through this index instead of a scan of the table. Finished jobs are found through the
-- existing jobs (status, job_id) index. A new index on a small, new table.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
