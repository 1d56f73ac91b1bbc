-- The fleet's node registry (issue 13): each node's row, refreshed by its heartbeat every few
-- seconds; a node three heartbeats late is dead for routing, and rows silent for a day are
-- removed. Lists (URLs, addresses) are JSON text.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    region          TEXT NOT NULL,
    latitude        DOUBLE PRECISION,
    longitude       DOUBLE PRECISION,
    version         TEXT NOT NULL,
    urls            TEXT NOT NULL,
    addresses       TEXT NOT NULL,
    tls_addresses   TEXT NOT NULL,
    tls_domain      TEXT,
    started_at      BIGINT NOT NULL,
    heartbeat_ms    BIGINT NOT NULL,
    interval_ms     BIGINT NOT NULL,
    draining        BOOLEAN NOT NULL,
    allocations     BIGINT NOT NULL,
    capacity        BIGINT NOT NULL,
    relayed_bps     BIGINT NOT NULL,
    cpu_percent     DOUBLE PRECISION NOT NULL
);
