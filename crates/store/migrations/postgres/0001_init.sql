-- Tenants, API keys (hashed), stored TURN credentials (long-term keys only), the tenants'
-- shared secrets for ephemeral credentials, revocations, hourly usage, the allocation and audit
-- logs, quotas, notification settings and fired alerts.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username    TEXT NOT NULL UNIQUE,
    key_md5     BYTEA NOT NULL,
    key_sha256  BYTEA NOT NULL,
    label       TEXT,
    tags        TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL
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
    key_hash        BYTEA NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    revoked         BOOLEAN NOT NULL DEFAULT FALSE
);


-- Raw, because the relay must compute HMACs with them (they are shown once, at creation).
CREATE TABLE tenant_secrets (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    secret      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);

-- kind: 'username' or 'user' (an ephemeral user id); rows lapse at expires_at.
CREATE TABLE revocations (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
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
    hour                BIGINT NOT NULL,
    c2s_bytes           BIGINT NOT NULL DEFAULT 0,
    c2s_packets         BIGINT NOT NULL DEFAULT 0,
    s2p_bytes           BIGINT NOT NULL DEFAULT 0,
    s2p_packets         BIGINT NOT NULL DEFAULT 0,
    p2s_bytes           BIGINT NOT NULL DEFAULT 0,
    p2s_packets         BIGINT NOT NULL DEFAULT 0,
    s2c_bytes           BIGINT NOT NULL DEFAULT 0,
    s2c_packets         BIGINT NOT NULL DEFAULT 0,
    allocations         BIGINT NOT NULL DEFAULT 0,
    allocation_seconds  BIGINT NOT NULL DEFAULT 0,
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
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    c2s_bytes       BIGINT NOT NULL DEFAULT 0,
    s2p_bytes       BIGINT NOT NULL DEFAULT 0,
    p2s_bytes       BIGINT NOT NULL DEFAULT 0,
    s2c_bytes       BIGINT NOT NULL DEFAULT 0,
    peers           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX allocation_log_tenant_time ON allocation_log (tenant_id, started_at);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT,
    at          BIGINT NOT NULL,
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
    bytes_per_period    BIGINT,
    max_allocations     BIGINT,
    max_bitrate_bps     BIGINT,
    throttle_bitrate_bps BIGINT,
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
    period_start    BIGINT NOT NULL,
    percent         BIGINT NOT NULL,
    action          TEXT NOT NULL,
    bytes_used      BIGINT NOT NULL,
    bytes_quota     BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    UNIQUE (tenant_id, scope, period_start, percent)
);
