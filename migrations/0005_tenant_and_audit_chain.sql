-- Tenant and audit integrity additions.

ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX jobs_tenant_status_idx ON jobs (tenant, status);

ALTER TABLE audit_events
    ADD COLUMN tenant     TEXT NOT NULL DEFAULT '',
    ADD COLUMN prev_hash  TEXT NOT NULL DEFAULT '',
    ADD COLUMN event_hash TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_events_tenant_created_at_idx ON audit_events (tenant, created_at);
CREATE INDEX audit_events_actor_created_at_idx ON audit_events (actor, created_at);
