-- Tenants, API keys (hashed), stored TURN credentials (long-term keys only) and hourly usage.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash    BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username    TEXT NOT NULL UNIQUE,
    key_md5     BLOB NOT NULL,
    key_sha256  BLOB NOT NULL,
    label       TEXT,
    enabled     INTEGER NOT NULL DEFAULT 1,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX credentials_tenant_label ON credentials (tenant_id, label);

CREATE TABLE usage_hourly (
    tenant_id      TEXT NOT NULL,
    credential_id  TEXT NOT NULL,
    hour           INTEGER NOT NULL,
    bytes_in       INTEGER NOT NULL DEFAULT 0,
    bytes_out      INTEGER NOT NULL DEFAULT 0,
    packets_in     INTEGER NOT NULL DEFAULT 0,
    packets_out    INTEGER NOT NULL DEFAULT 0,
    allocations    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, credential_id, hour)
);
