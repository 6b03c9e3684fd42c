-- Indexes for scheduler hot paths.

CREATE INDEX tasks_job_id_status_idx ON tasks (job_id, status);
CREATE INDEX workers_last_heartbeat_idx ON workers (last_heartbeat);
