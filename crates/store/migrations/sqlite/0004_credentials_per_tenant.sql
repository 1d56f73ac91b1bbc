-- Stored usernames are unique per tenant, not globally (two tenants may each have `alice`: a
-- global rule told one tenant which names another used). No two credentials with one username
-- may share a long-term key (the same name and password in two tenants): the relay could not
-- tell them apart.
--
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt. Dropping the old table would
-- cascade to the publishable keys that reference it (foreign keys are on while migrating), so
-- they are kept aside and put back.
CREATE TEMP TABLE api_keys_kept AS
    SELECT id, tenant_id, kind, credential_id, allowed_origins, key_hash, prefix, created_at,
           expires_at, revoked
    FROM api_keys WHERE credential_id IS NOT NULL;

CREATE TABLE credentials_new (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username    TEXT NOT NULL,
    key_md5     BLOB NOT NULL,
    key_sha256  BLOB NOT NULL,
    label       TEXT,
    tags        TEXT NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, username)
);
INSERT INTO credentials_new
    (id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at, created_at)
    SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at, created_at
    FROM credentials;
DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;
CREATE INDEX credentials_tenant_label ON credentials (tenant_id, label);
CREATE UNIQUE INDEX credentials_username_long_term_key ON credentials (username, key_sha256);

INSERT INTO api_keys
    (id, tenant_id, kind, credential_id, allowed_origins, key_hash, prefix, created_at,
     expires_at, revoked)
    SELECT id, tenant_id, kind, credential_id, allowed_origins, key_hash, prefix, created_at,
           expires_at, revoked
    FROM api_keys_kept WHERE id NOT IN (SELECT id FROM api_keys);
DROP TABLE api_keys_kept;
