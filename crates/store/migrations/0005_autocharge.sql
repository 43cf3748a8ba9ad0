-- Autocharge: per-account settings and state, and one row per top-up
-- attempt. The attempt and its idempotency key are recorded before the
-- payment provider is called; the ledger credit is written only when the
-- payment succeeds, with the same key as its reference.
ALTER TABLE accounts ADD COLUMN autocharge_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN autocharge_threshold INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN autocharge_amount INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN autocharge_monthly_cap INTEGER;
ALTER TABLE accounts ADD COLUMN payment_customer TEXT;
ALTER TABLE accounts ADD COLUMN payment_method TEXT;
ALTER TABLE accounts ADD COLUMN autocharge_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN autocharge_disabled_reason TEXT;
ALTER TABLE accounts ADD COLUMN payment_action_required INTEGER NOT NULL DEFAULT 0;

CREATE TABLE autocharges (
    idempotency_key  TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs(id),
    amount           INTEGER NOT NULL CHECK (amount > 0),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'requires_action')),
    payment_id       TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX autocharges_by_org ON autocharges (org_id, created_at);
