-- The change feed (issue 17): every write to what the relay's directory holds records which
-- row changed, in the writing transaction, by trigger (no write path can forget it), and
-- NOTIFY `turnpike_changes` tells listening nodes at commit. Readers re-read the current state
-- of what changed, so a change applied twice or late is harmless. Sequence numbers may become
-- visible out of order (transactions commit in any order): readers track gaps. Rows are pruned
-- after an hour; a reader further behind reloads everything.
CREATE TABLE changes (
    seq     BIGSERIAL PRIMARY KEY,
    entity  TEXT NOT NULL,
    key     TEXT NOT NULL,
    at      BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT)
);
CREATE INDEX changes_at ON changes (at);

-- TG_ARGV[0]: the entity; TG_ARGV[1]: the column that is the key.
CREATE FUNCTION turnpike_record_change() RETURNS trigger AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    INSERT INTO changes (entity, key) VALUES (TG_ARGV[0], to_jsonb(r) ->> TG_ARGV[1]);
    PERFORM pg_notify('turnpike_changes', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER credentials_change AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('credential', 'id');
CREATE TRIGGER tenant_secrets_change AFTER INSERT OR UPDATE OR DELETE ON tenant_secrets
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('tenant_secrets', 'tenant_id');
CREATE TRIGGER revocations_change AFTER INSERT OR UPDATE OR DELETE ON revocations
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('revocations', 'tenant_id');
CREATE TRIGGER quotas_change AFTER INSERT OR UPDATE OR DELETE ON quotas
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('quotas', 'tenant_id');
CREATE TRIGGER client_deny_list_change AFTER INSERT OR DELETE ON client_deny_list
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('deny_list', 'id');
CREATE TRIGGER tenants_change AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION turnpike_record_change('tenant', 'id');
