-- Admin audit event persistence.

CREATE TABLE audit_events (
    id           BIGINT PRIMARY KEY,
    created_at   TIMESTAMPTZ NOT NULL,
    action       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    remote_addr  TEXT NOT NULL DEFAULT '',
    resource     TEXT NOT NULL DEFAULT '',
    payload_hash TEXT NOT NULL DEFAULT '',
    requested    BIGINT NOT NULL DEFAULT 0,
    result       TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT ''
);

CREATE INDEX audit_events_created_at_idx ON audit_events (created_at);
CREATE INDEX audit_events_action_created_at_idx ON audit_events (action, created_at);
