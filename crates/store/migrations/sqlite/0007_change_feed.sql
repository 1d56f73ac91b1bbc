-- The change feed (issue 17): every write to what the relay's directory holds records which
-- row changed, in the writing transaction, by trigger (no write path can forget it). Readers
-- re-read the current state of what changed, so a change applied twice or late is harmless.
-- Rows are pruned after an hour; a reader further behind reloads everything.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    entity  TEXT NOT NULL,
    key     TEXT NOT NULL,
    at      INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);
CREATE INDEX changes_at ON changes (at);

CREATE TRIGGER credentials_insert_change AFTER INSERT ON credentials
BEGIN INSERT INTO changes (entity, key) VALUES ('credential', NEW.id); END;
CREATE TRIGGER credentials_update_change AFTER UPDATE ON credentials
BEGIN INSERT INTO changes (entity, key) VALUES ('credential', NEW.id); END;
CREATE TRIGGER credentials_delete_change AFTER DELETE ON credentials
BEGIN INSERT INTO changes (entity, key) VALUES ('credential', OLD.id); END;

CREATE TRIGGER tenant_secrets_insert_change AFTER INSERT ON tenant_secrets
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant_secrets', NEW.tenant_id); END;
CREATE TRIGGER tenant_secrets_update_change AFTER UPDATE ON tenant_secrets
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant_secrets', NEW.tenant_id); END;
CREATE TRIGGER tenant_secrets_delete_change AFTER DELETE ON tenant_secrets
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant_secrets', OLD.tenant_id); END;

CREATE TRIGGER revocations_insert_change AFTER INSERT ON revocations
BEGIN INSERT INTO changes (entity, key) VALUES ('revocations', NEW.tenant_id); END;
CREATE TRIGGER revocations_update_change AFTER UPDATE ON revocations
BEGIN INSERT INTO changes (entity, key) VALUES ('revocations', NEW.tenant_id); END;
CREATE TRIGGER revocations_delete_change AFTER DELETE ON revocations
BEGIN INSERT INTO changes (entity, key) VALUES ('revocations', OLD.tenant_id); END;

CREATE TRIGGER quotas_insert_change AFTER INSERT ON quotas
BEGIN INSERT INTO changes (entity, key) VALUES ('quotas', NEW.tenant_id); END;
CREATE TRIGGER quotas_update_change AFTER UPDATE ON quotas
BEGIN INSERT INTO changes (entity, key) VALUES ('quotas', NEW.tenant_id); END;
CREATE TRIGGER quotas_delete_change AFTER DELETE ON quotas
BEGIN INSERT INTO changes (entity, key) VALUES ('quotas', OLD.tenant_id); END;

CREATE TRIGGER client_deny_list_insert_change AFTER INSERT ON client_deny_list
BEGIN INSERT INTO changes (entity, key) VALUES ('deny_list', NEW.id); END;
CREATE TRIGGER client_deny_list_delete_change AFTER DELETE ON client_deny_list
BEGIN INSERT INTO changes (entity, key) VALUES ('deny_list', OLD.id); END;

CREATE TRIGGER tenants_delete_change AFTER DELETE ON tenants
BEGIN INSERT INTO changes (entity, key) VALUES ('tenant', OLD.id); END;
