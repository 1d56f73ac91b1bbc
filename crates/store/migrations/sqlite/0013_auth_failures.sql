-- Refused TURN requests (wrong password, unknown or expired credential) for a tenant's
-- usernames, for the console's logs page (issue 12). Written by the meter at the rate the
-- relay logs them (20 a second per worker at most); pruned to 30 days and 1,000 rows per tenant.
CREATE TABLE auth_failures (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    username    TEXT NOT NULL,
    client      TEXT NOT NULL,
    transport   TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX auth_failures_tenant_time ON auth_failures (tenant_id, at);
