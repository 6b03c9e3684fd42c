-- The audit chain head: one row holding the last event's id and hash. An append locks it
-- (SELECT ... FOR UPDATE) in the same transaction as its insert, so concurrent appends from any
-- number of gateways queue up behind each other and the chain never forks.

CREATE TABLE IF NOT EXISTS audit_chain_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last_id   BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);

-- Start from whatever the log already holds (events written by the seed system).
INSERT INTO audit_chain_head (singleton, last_id, last_hash)
SELECT TRUE,
       COALESCE(max(id), 0),
       COALESCE((SELECT event_hash FROM audit_events ORDER BY id DESC LIMIT 1), '')
FROM audit_events
ON CONFLICT (singleton) DO NOTHING;
