-- Stored usernames are unique per tenant, not globally (two tenants may each have `alice`: a
-- global rule told one tenant which names another used). No two credentials with one username
-- may share a long-term key (the same name and password in two tenants): the relay could not
-- tell them apart.
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_username_key;
ALTER TABLE credentials ADD CONSTRAINT credentials_tenant_username_key UNIQUE (tenant_id, username);
CREATE UNIQUE INDEX credentials_username_long_term_key ON credentials (username, key_sha256);
