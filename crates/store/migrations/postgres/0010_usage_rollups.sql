-- Rollups of usage_hourly (issue 17), written by the store in the same transaction as the
-- hourly rows, so that a billing period's totals and its days read at most 24 rows a day of
-- usage_tenant_hourly, and a month by user reads one row per user of usage_monthly, instead
-- of every hourly row of the tenant (10 million at 100,000 users over a year).
-- `month` is the first hour (unix time / 3600) of the UTC calendar month.
CREATE TABLE usage_tenant_hourly (
    tenant_id           TEXT NOT NULL,
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
    PRIMARY KEY (tenant_id, hour)
);

CREATE TABLE usage_monthly (
    tenant_id           TEXT NOT NULL,
    month               BIGINT NOT NULL,
    credential_id       TEXT NOT NULL,
    user_id             TEXT NOT NULL,
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
    PRIMARY KEY (tenant_id, month, credential_id, user_id)
);

-- What was recorded before this version.
INSERT INTO usage_tenant_hourly (tenant_id, hour, c2s_bytes, c2s_packets, s2p_bytes, s2p_packets, p2s_bytes, p2s_packets, s2c_bytes, s2c_packets, allocations, allocation_seconds)
SELECT tenant_id, hour,
       SUM(c2s_bytes),
       SUM(c2s_packets),
       SUM(s2p_bytes),
       SUM(s2p_packets),
       SUM(p2s_bytes),
       SUM(p2s_packets),
       SUM(s2c_bytes),
       SUM(s2c_packets),
       SUM(allocations),
       SUM(allocation_seconds)
FROM usage_hourly GROUP BY tenant_id, hour;

INSERT INTO usage_monthly (tenant_id, month, credential_id, user_id, c2s_bytes, c2s_packets, s2p_bytes, s2p_packets, p2s_bytes, p2s_packets, s2c_bytes, s2c_packets, allocations, allocation_seconds)
SELECT tenant_id, CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(hour * 3600) AT TIME ZONE 'UTC')) AS BIGINT) / 3600, credential_id, user_id,
       SUM(c2s_bytes),
       SUM(c2s_packets),
       SUM(s2p_bytes),
       SUM(s2p_packets),
       SUM(p2s_bytes),
       SUM(p2s_packets),
       SUM(s2c_bytes),
       SUM(s2c_packets),
       SUM(allocations),
       SUM(allocation_seconds)
FROM usage_hourly GROUP BY 1, 2, 3, 4;
