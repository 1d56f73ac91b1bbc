-- A project created under a suspended or region-limited tenant goes through the change feed, so
-- every relay re-reads the suspended and restricted lists with it in them (before, it was
-- unrestricted until the next change to a tenant).
CREATE TRIGGER tenants_project_insert_change AFTER INSERT ON tenants
    FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL)
    EXECUTE FUNCTION turnpike_record_change('tenant', 'id');
