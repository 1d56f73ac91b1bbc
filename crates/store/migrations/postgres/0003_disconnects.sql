-- Operator and quota disconnect requests, so every node sharing the database closes the
-- matching allocations it holds (rows older than an hour are pruned).
CREATE TABLE disconnect_requests (
    id          BIGSERIAL PRIMARY KEY,
    node        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    value       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX disconnect_requests_at ON disconnect_requests (at);
