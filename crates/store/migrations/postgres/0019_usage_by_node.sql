-- Usage per node and region (issue 13): the same counters as usage_tenant_hourly, per node
-- that relayed them and the region it was in; written in the usage flush's transaction.
CREATE TABLE usage_node_hourly (
    tenant_id           TEXT NOT NULL,
    hour                BIGINT NOT NULL,
    node_id             TEXT NOT NULL,
    region              TEXT NOT NULL,
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
    PRIMARY KEY (tenant_id, hour, node_id, region)
);
