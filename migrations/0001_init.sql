-- Base tables: jobs, their tasks, and workers.
--
-- Ids use the "C" collation so that ORDER BY follows byte order, as the API promises
-- (jobs newest first by their time-ordered id, tasks sorted by task id).

CREATE TABLE jobs (
    job_id              TEXT COLLATE "C" PRIMARY KEY,
    job_type            TEXT NOT NULL,
    input               TEXT NOT NULL DEFAULT '',
    policy              TEXT,
    priority            TEXT NOT NULL DEFAULT 'interactive',
    status              TEXT NOT NULL
        CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed', 'Canceled')),
    message             TEXT,
    result_artifact_uri TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE tasks (
    job_id              TEXT COLLATE "C" NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    task_id             TEXT COLLATE "C" NOT NULL,
    task_type           TEXT NOT NULL,
    inputs              JSONB NOT NULL DEFAULT '{}',
    dependencies        TEXT[] NOT NULL DEFAULT '{}',
    max_retries         INTEGER NOT NULL,
    timeout_sec         INTEGER NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed', 'Canceled')),
    attempt             INTEGER NOT NULL DEFAULT 0,
    worker_id           TEXT,
    output_artifact_uri TEXT,
    error               TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, task_id)
);

CREATE TABLE workers (
    worker_id      TEXT PRIMARY KEY,
    capabilities   JSONB NOT NULL DEFAULT '{}',
    stats          JSONB NOT NULL DEFAULT '{}',
    registered_at  TIMESTAMPTZ NOT NULL,
    last_heartbeat TIMESTAMPTZ NOT NULL
);
