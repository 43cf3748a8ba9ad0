-- Money: one account per organization, an append-only ledger whose entries
-- each carry a unique reference (so no retry writes one twice), and
-- notifications recorded exactly once per reference. Amounts are integer
-- micro-units.
CREATE TABLE accounts (
    org_id             TEXT PRIMARY KEY REFERENCES orgs(id),
    balance            INTEGER NOT NULL DEFAULT 0,
    credit_limit       INTEGER NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    daily_spend_limit  INTEGER CHECK (daily_spend_limit IS NULL OR daily_spend_limit >= 0),
    budget             INTEGER CHECK (budget IS NULL OR budget >= 0),
    budget_thresholds  TEXT NOT NULL DEFAULT '[70,85,95]',
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE ledger (
    id             INTEGER PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    kind           TEXT NOT NULL CHECK (kind IN ('charge', 'top_up', 'autocharge', 'adjustment', 'refund')),
    amount         INTEGER NOT NULL, -- signed effect on the balance
    reference      TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT '{}',
    balance_after  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (org_id, reference)
) STRICT;
CREATE INDEX ledger_by_org ON ledger (org_id, id);
CREATE INDEX ledger_by_time ON ledger (org_id, kind, created_at);

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    kind        TEXT NOT NULL,
    reference   TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, reference)
) STRICT;
