-- A tenant's allowed regions travel to every node's relay through the change feed (the relay
-- never redirects a tenant's client to a node outside them), like a suspension.
CREATE TRIGGER tenants_regions_change AFTER UPDATE OF allowed_regions ON tenants
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant', NEW.id); END;
