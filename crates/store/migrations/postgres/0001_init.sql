-- Tenants, API keys (hashed), stored TURN credentials (long-term keys only) and hourly usage.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash    BYTEA NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username    TEXT NOT NULL UNIQUE,
    key_md5     BYTEA NOT NULL,
    key_sha256  BYTEA NOT NULL,
    label       TEXT,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX credentials_tenant_label ON credentials (tenant_id, label);

CREATE TABLE usage_hourly (
    tenant_id      TEXT NOT NULL,
    credential_id  TEXT NOT NULL,
    hour           BIGINT NOT NULL,
    bytes_in       BIGINT NOT NULL DEFAULT 0,
    bytes_out      BIGINT NOT NULL DEFAULT 0,
    packets_in     BIGINT NOT NULL DEFAULT 0,
    packets_out    BIGINT NOT NULL DEFAULT 0,
    allocations    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, credential_id, hour)
);
