-- Organizations and their API keys. Times are Unix milliseconds.
CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    plan        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES orgs(id),
    name                        TEXT NOT NULL,
    products                    TEXT NOT NULL, -- JSON array of product names, ["*"] for any
    status                      TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    expires_at                  INTEGER,
    secret_hash                 BLOB NOT NULL CHECK (length(secret_hash) = 32),
    previous_secret_hash        BLOB CHECK (previous_secret_hash IS NULL OR length(previous_secret_hash) = 32),
    previous_secret_expires_at  INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    revoked_at                  INTEGER
) STRICT;

CREATE INDEX api_keys_by_org ON api_keys (org_id, id);
