-- Liveness of the nodes sharing signalling rooms: each node refreshes its row every few
-- seconds; members of a node silent for longer than the timeout (a crash, a lost network) are
-- removed by the others, which tell the rooms those peers left.
CREATE TABLE signal_nodes (
    node        TEXT PRIMARY KEY,
    seen_at     BIGINT NOT NULL
);
