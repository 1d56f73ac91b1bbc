-- Billing (issue 12): a price plan per tenant, set by the operator, and the monthly statements
-- stored when their period closes (never changed after). Prices are integers in millionths of
-- the currency's major unit (micros), so that sub-cent prices stay exact.
CREATE TABLE price_plans (
    tenant_id                   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    currency                    TEXT NOT NULL,
    per_gb_micros               BIGINT NOT NULL,
    per_allocation_hour_micros  BIGINT NOT NULL,
    included_bytes              BIGINT NOT NULL,
    billing_day                 BIGINT NOT NULL,
    first_month                 TEXT NOT NULL,
    updated_at                  BIGINT NOT NULL
);

-- `month` is `YYYY-MM` of the period's start. `cumulative_*`: all the tenant's usage of hours
-- before `period_end` as counted when the statement was made; the next statement bills what
-- was counted since (late usage of closed periods included), so nothing is billed twice or
-- lost. `body`: the statement as the API serves it (JSON).
CREATE TABLE billing_statements (
    tenant_id                       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    month                           TEXT NOT NULL,
    period_start                    BIGINT NOT NULL,
    period_end                      BIGINT NOT NULL,
    currency                        TEXT NOT NULL,
    total_minor                     BIGINT NOT NULL,
    closed_at                       BIGINT NOT NULL,
    cumulative_bytes                BIGINT NOT NULL,
    cumulative_allocation_seconds   BIGINT NOT NULL,
    body                            TEXT NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
