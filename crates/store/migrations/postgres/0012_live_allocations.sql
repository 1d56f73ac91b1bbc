-- The allocations still open (no end recorded), per tenant: the console's "live now" reads
-- them without scanning the tenant's whole allocation log.
CREATE INDEX allocation_log_live ON allocation_log (tenant_id, started_at) WHERE ended_at IS NULL;
