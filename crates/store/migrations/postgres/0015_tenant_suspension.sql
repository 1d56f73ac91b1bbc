-- Tenant suspension (issue 12): the operator suspends a tenant; the relay refuses its
-- credentials and the API its changes until it is resumed. The change feed carries it to every
-- node (the same 'tenant' entity as a deletion: readers re-read the tenant).
ALTER TABLE tenants ADD COLUMN suspended_at BIGINT;

CREATE TRIGGER tenants_suspend_change AFTER UPDATE OF suspended_at ON tenants
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('tenant', 'id');
