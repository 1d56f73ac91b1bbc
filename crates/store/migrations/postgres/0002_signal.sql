-- Signalling rooms shared by several nodes (turnpike-signal's PostgreSQL bus).
CREATE TABLE signal_members (
    room        TEXT NOT NULL,
    peer_id     TEXT NOT NULL,
    identity    TEXT NOT NULL,
    rank        BIGSERIAL,
    node        TEXT NOT NULL,
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (room, peer_id)
);
CREATE INDEX signal_members_node ON signal_members (node);

-- Event bodies too large for a NOTIFY payload; deleted after two minutes.
CREATE TABLE signal_payloads (
    id      BIGSERIAL PRIMARY KEY,
    body    TEXT NOT NULL,
    at      BIGINT NOT NULL
);

-- Small per-tenant settings (key/value), e.g. the signalling Origin allow-list.
CREATE TABLE tenant_settings (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
