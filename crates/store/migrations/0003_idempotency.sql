-- Idempotency records: one per (org, key). in_flight while the first request
-- runs (locked until locked_until, after which a crashed holder's lock is
-- taken over); completed with the stored response until expires_at.
CREATE TABLE idempotency (
    org_id        TEXT NOT NULL REFERENCES orgs(id),
    key           TEXT NOT NULL,
    fingerprint   BLOB NOT NULL CHECK (length(fingerprint) = 32),
    state         TEXT NOT NULL CHECK (state IN ('in_flight', 'completed')),
    locked_until  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    status        INTEGER,
    headers       TEXT,    -- JSON array of [name, value] pairs
    body          BLOB,
    body_omitted  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, key)
) STRICT;
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
