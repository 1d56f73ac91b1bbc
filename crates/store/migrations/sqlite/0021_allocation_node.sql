-- The node that relayed each allocation: when a node is pruned from the registry (silent for an
-- hour: it crashed), its allocations still open are ended at its last heartbeat instead of
-- staying "live" forever. Rows written before are '' (never ended this way).
ALTER TABLE allocation_log ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
CREATE INDEX allocation_log_node_open ON allocation_log (node_id) WHERE ended_at IS NULL;
