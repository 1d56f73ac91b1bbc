-- A project created under a suspended or region-limited tenant goes through the change feed, so
-- every relay re-reads the suspended and restricted lists with it in them (before, it was
-- unrestricted until the next change to a tenant).
CREATE TRIGGER tenants_project_insert_change AFTER INSERT ON tenants WHEN NEW.parent_id IS NOT NULL
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant', NEW.id); END;
