-- Every attempt to deliver a notification (webhook or email), for the tenant's delivery log
-- (issue 12): when, which event, the outcome, the HTTP status or error; the event's body so
-- that a failed event can be sent again. The URL is not kept (it may carry a token): only its
-- host. Pruned to 30 days and 1,000 rows per tenant.
CREATE TABLE notification_deliveries (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    error       TEXT,
    body        TEXT NOT NULL
);
CREATE INDEX notification_deliveries_tenant_time ON notification_deliveries (tenant_id, at);
