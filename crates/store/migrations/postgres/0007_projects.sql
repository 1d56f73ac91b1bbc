-- Projects (Metered's project API): a project is a tenant with a parent, deleted with it;
-- project names are unique per parent. Webhooks may send Metered's body instead of ours.
ALTER TABLE tenants ADD COLUMN parent_id TEXT REFERENCES tenants(id) ON DELETE CASCADE;
CREATE INDEX tenants_parent ON tenants (parent_id);
CREATE UNIQUE INDEX tenants_parent_name ON tenants (parent_id, name) WHERE parent_id IS NOT NULL;
ALTER TABLE notification_settings ADD COLUMN webhook_format TEXT NOT NULL DEFAULT 'turnpike';
