-- Credentials a key demands beyond itself (HMAC signature, JWT, client
-- certificate), its signing secrets (sealed under the master key: never
-- stored in clear) and its certificate pins, as one JSON document so that a
-- rotation rewrites them in one statement.
ALTER TABLE api_keys ADD COLUMN credentials TEXT NOT NULL DEFAULT '{}';
