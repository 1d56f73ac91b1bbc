-- Tenants, API keys (hashed), stored TURN credentials (long-term keys only), the tenants'
-- shared secrets for ephemeral credentials, revocations, hourly usage, the allocation and audit
-- logs, quotas, notification settings and fired alerts.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username    TEXT NOT NULL UNIQUE,
    key_md5     BLOB NOT NULL,
    key_sha256  BLOB NOT NULL,
    label       TEXT,
    tags        TEXT NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX credentials_tenant_label ON credentials (tenant_id, label);

-- kind: 'admin', 'secret' (a tenant's server-side key) or 'publishable' (one credential's
-- front-end key, limited to fetching ICE servers from the allowed origins).
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    credential_id   TEXT REFERENCES credentials(id) ON DELETE CASCADE,
    allowed_origins TEXT,
    key_hash        BLOB NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    revoked         INTEGER NOT NULL DEFAULT 0
);


-- Raw, because the relay must compute HMACs with them (they are shown once, at creation).
CREATE TABLE tenant_secrets (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);

-- kind: 'username' or 'user' (an ephemeral user id); rows lapse at expires_at.
CREATE TABLE revocations (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
);

-- Tags given to an ephemeral user id when its credentials were minted.
CREATE TABLE user_tags (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    tags        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- Exact counters per tenant, credential ('' for ephemeral), user id ('' for none) and hour.
-- Directions: c2s client->server, s2p server->peer, p2s peer->server, s2c server->client.
CREATE TABLE usage_hourly (
    tenant_id           TEXT NOT NULL,
    credential_id       TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    hour                INTEGER NOT NULL,
    c2s_bytes           INTEGER NOT NULL DEFAULT 0,
    c2s_packets         INTEGER NOT NULL DEFAULT 0,
    s2p_bytes           INTEGER NOT NULL DEFAULT 0,
    s2p_packets         INTEGER NOT NULL DEFAULT 0,
    p2s_bytes           INTEGER NOT NULL DEFAULT 0,
    p2s_packets         INTEGER NOT NULL DEFAULT 0,
    s2c_bytes           INTEGER NOT NULL DEFAULT 0,
    s2c_packets         INTEGER NOT NULL DEFAULT 0,
    allocations         INTEGER NOT NULL DEFAULT 0,
    allocation_seconds  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, credential_id, user_id, hour)
);

-- One row per allocation: written when it starts, completed when it ends.
CREATE TABLE allocation_log (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    credential_id   TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    username        TEXT NOT NULL,
    client          TEXT NOT NULL,
    transport       TEXT NOT NULL,
    relay           TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    c2s_bytes       INTEGER NOT NULL DEFAULT 0,
    s2p_bytes       INTEGER NOT NULL DEFAULT 0,
    p2s_bytes       INTEGER NOT NULL DEFAULT 0,
    s2c_bytes       INTEGER NOT NULL DEFAULT 0,
    peers           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX allocation_log_tenant_time ON allocation_log (tenant_id, started_at);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, at);

-- scope: 'tenant' or a credential id. thresholds: JSON [{"percent":80,"action":"notify"},..].
CREATE TABLE quotas (
    tenant_id           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope               TEXT NOT NULL,
    period              TEXT NOT NULL,
    bytes_per_period    INTEGER,
    max_allocations     INTEGER,
    max_bitrate_bps     INTEGER,
    throttle_bitrate_bps INTEGER,
    thresholds          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, scope)
);

CREATE TABLE notification_settings (
    tenant_id       TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    webhook_url     TEXT,
    webhook_secret  TEXT,
    email_to        TEXT
);

-- A threshold fires once per scope and period.
CREATE TABLE alert_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    period_start    INTEGER NOT NULL,
    percent         INTEGER NOT NULL,
    action          TEXT NOT NULL,
    bytes_used      INTEGER NOT NULL,
    bytes_quota     INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    UNIQUE (tenant_id, scope, period_start, percent)
);
