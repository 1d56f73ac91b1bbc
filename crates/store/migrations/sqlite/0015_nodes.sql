-- The fleet's node registry (issue 13): each node's row, refreshed by its heartbeat every few
-- seconds; a node three heartbeats late is dead for routing, and rows silent for a day are
-- removed. Lists (URLs, addresses) are JSON text.
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    region          TEXT NOT NULL,
    latitude        REAL,
    longitude       REAL,
    version         TEXT NOT NULL,
    urls            TEXT NOT NULL,
    addresses       TEXT NOT NULL,
    tls_addresses   TEXT NOT NULL,
    tls_domain      TEXT,
    started_at      INTEGER NOT NULL,
    heartbeat_ms    INTEGER NOT NULL,
    interval_ms     INTEGER NOT NULL,
    draining        BOOLEAN NOT NULL,
    allocations     INTEGER NOT NULL,
    capacity        INTEGER NOT NULL,
    relayed_bps     INTEGER NOT NULL,
    cpu_percent     REAL NOT NULL
);
