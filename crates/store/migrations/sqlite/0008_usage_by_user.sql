-- Usage reports paged by user (issue 17): the keys of a page in order, and each key's hours,
-- from the index instead of every row of the tenant's range. Reports by credential use the
-- primary key (tenant_id, credential_id, user_id, hour) the same way.
CREATE INDEX usage_hourly_user ON usage_hourly (tenant_id, user_id, hour);
