-- Throttling and quotas: subscription cycle anchor, pay-as-you-go flag,
-- per-key quota overrides, committed-use add-ons, and cycle usage counters.
ALTER TABLE orgs ADD COLUMN cycle_anchor INTEGER;
ALTER TABLE orgs ADD COLUMN pay_as_you_go INTEGER NOT NULL DEFAULT 0 CHECK (pay_as_you_go IN (0, 1));
ALTER TABLE api_keys ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}'; -- JSON object meter -> limit

CREATE TABLE commitments (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    quotas      TEXT NOT NULL, -- JSON object meter -> extra units per cycle
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL CHECK (ends_at > starts_at),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX commitments_by_org ON commitments (org_id, starts_at);

-- Counters of the billing cycle that starts at cycle_start; key_id '' is the
-- organization as a whole. Written behind the in-memory counters.
CREATE TABLE quota_usage (
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    key_id       TEXT NOT NULL,
    cycle_start  INTEGER NOT NULL,
    meter        TEXT NOT NULL,
    used         INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (org_id, key_id, cycle_start, meter)
) STRICT;
