//! The embedded default: one SQLite file (WAL mode, foreign keys on), private to its owner,
//! whose writes stop once the file is removed or replaced under the running server.

use super::billing;
use super::db_file::DbFile;
use super::errors::{conflict, credential_conflict, found, is_unique_violation};
use super::queries as q;
use super::rows::{
    join_lines, page, ApiKeyRow, ChangeRow, CredentialRow, DisconnectRow, RevocationRow,
    UserTagsRow,
};
use super::usage::{key_totals_query, write_allocations, Placeholder, TENANT_HOURS};
use crate::{
    AlertEvent, AllocationRecord, ApiKey, AuditEntry, AuthFailure, BillingUsage, Change,
    Credential, CredentialId, CredentialState, Delivery, DeniedClient, DisconnectRequest, KeyKind,
    KeyTotal, ListQuery, NewApiKey, NewCredential, NotificationSettings, Page,
    PlanWithLastStatement, PricePlan, Quota, QuotaScope, Result, Revocation, StatementSummary,
    Store, StoreError, StoredStatement, Tenant, TenantId, TenantSecret, UsageDelta, UsageKey,
    UsageRow, UserUsage,
};

/// The embedded default: one SQLite file (WAL mode, foreign keys on), private to its owner.
/// Clones share the pool and the file's state.
#[derive(Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// The file as opened (none for an in-memory database).
    file: Option<std::sync::Arc<DbFile>>,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `url` (`sqlite://PATH`) and
    /// migrates it. An existing file (and its `-wal` and `-shm`) readable by others is made
    /// private first.
    pub async fn connect(url: &str) -> Result<Self> {
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = if in_memory {
            None
        } else {
            Some(std::sync::Arc::new(
                DbFile::prepare(opts.get_filename()).map_err(StoreError::File)?,
            ))
        };
        // The file exists now (DbFile::prepare made it): no connection may create one. A
        // connection opened after the file was removed would otherwise make a new, empty
        // database at the path ("no such table" errors, and an empty database at the next
        // start); it fails instead, and writes are refused with DatabaseLost. The connections
        // are kept open for the process's life (none recycled), so reads keep answering from
        // the file as opened.
        let opts = opts.create_if_missing(in_memory);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        if !in_memory {
            // Open all of them now, one after the other (not beside the migration).
            let mut held = Vec::with_capacity(4);
            for _ in 0..4 {
                held.push(pool.acquire().await?);
            }
        }
        Ok(Self { pool, file })
    }

    /// False once the file was removed or replaced since it was opened.
    pub fn database_ok(&self) -> bool {
        self.file.as_deref().is_none_or(DbFile::still_there)
    }

    fn writable(&self) -> Result<()> {
        if self.database_ok() {
            Ok(())
        } else {
            Err(StoreError::DatabaseLost)
        }
    }
}

impl Store for SqliteStore {
    async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        self.writable()?;
        let t = Tenant {
            id: TenantId::from(crate::new_id("ten")),
            name: name.to_string(),
            created_at: now,
            parent_id: None,
            suspended_at: None,
            allowed_regions: None,
        };
        sqlx::query(q::INSERT_TENANT)
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at)
            .bind(&t.parent_id)
            .execute(&self.pool)
            .await?;
        Ok(t)
    }

    async fn create_child_tenant(
        &self,
        parent_id: &TenantId,
        name: &str,
        now: i64,
    ) -> Result<Tenant> {
        self.writable()?;
        let t = Tenant {
            id: TenantId::from(crate::new_id("ten")),
            name: name.to_string(),
            created_at: now,
            parent_id: Some(parent_id.clone()),
            suspended_at: None,
            allowed_regions: None,
        };
        sqlx::query(q::INSERT_TENANT)
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at)
            .bind(&t.parent_id)
            .execute(&self.pool)
            .await
            .map_err(conflict("project name"))?;
        Ok(t)
    }

    async fn child_tenants(&self, parent_id: &TenantId) -> Result<Vec<Tenant>> {
        Ok(sqlx::query_as(q::CHILD_TENANTS)
            .bind(parent_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::RENAME_TENANT)
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(conflict("project name"))?;
        found(r.rows_affected())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        sqlx::query_as(q::TENANT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(sqlx::query_as(q::ALL_TENANTS).fetch_all(&self.pool).await?)
    }

    async fn suspend_tenant(&self, id: &TenantId, at: Option<i64>) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::SUSPEND_TENANT)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn set_tenant_regions(&self, id: &TenantId, regions: Option<&str>) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::SET_TENANT_REGIONS)
            .bind(regions)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn suspended_tenants(&self) -> Result<Vec<TenantId>> {
        let rows: Vec<(String,)> = sqlx::query_as(q::SUSPENDED_TENANTS)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id,)| TenantId::from(id)).collect())
    }

    async fn tenant_regions(&self) -> Result<Vec<(TenantId, Vec<String>)>> {
        Ok(super::reads::tenant_regions(&self.pool).await?)
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::DELETE_TENANT)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn create_api_key(&self, k: &NewApiKey<'_>, now: i64) -> Result<ApiKey> {
        self.writable()?;
        let key = ApiKey {
            id: crate::new_id("key"),
            tenant_id: k.tenant_id.cloned(),
            kind: k.kind,
            credential_id: k.credential_id.cloned(),
            allowed_origins: k.allowed_origins.to_vec(),
            prefix: k.prefix.to_string(),
            created_at: now,
            expires_at: k.expires_at,
            revoked: false,
        };
        sqlx::query(q::INSERT_API_KEY)
            .bind(&key.id)
            .bind(&key.tenant_id)
            .bind(key.kind.as_str())
            .bind(&key.credential_id)
            .bind(join_lines(&key.allowed_origins))
            .bind(&key.prefix)
            .bind(key.created_at)
            .bind(key.expires_at)
            .bind(false)
            .bind(k.key_hash)
            .execute(&self.pool)
            .await
            .map_err(conflict("api key"))?;
        Ok(key)
    }

    async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(q::API_KEY_BY_HASH)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(q::API_KEYS_OF_TENANT)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_api_key(&self, tenant_id: Option<&TenantId>, id: &str) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::REVOKE_API_KEY)
            .bind(true)
            .bind(id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn has_admin_key(&self) -> Result<bool> {
        let id: Option<String> = sqlx::query_scalar(q::ANY_KEY_OF_KIND)
            .bind(KeyKind::Admin.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.is_some())
    }

    async fn expire_api_keys(&self, tenant_id: &TenantId, kind: KeyKind, at: i64) -> Result<u64> {
        self.writable()?;
        let r = sqlx::query(q::EXPIRE_API_KEYS)
            .bind(at)
            .bind(tenant_id)
            .bind(kind.as_str())
            .bind(false)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential> {
        self.writable()?;
        let cred = Credential {
            id: CredentialId::from(crate::new_id("cred")),
            tenant_id: c.tenant_id.clone(),
            username: c.username.to_string(),
            key_md5: c.key_md5.to_vec(),
            key_sha256: c.key_sha256.to_vec(),
            label: c.label.map(str::to_string),
            tags: c.tags.to_vec(),
            enabled: true,
            expires_at: c.expires_at,
            created_at: now,
        };
        let r = sqlx::query(q::INSERT_CREDENTIAL)
            .bind(&cred.id)
            .bind(&cred.tenant_id)
            .bind(&cred.username)
            .bind(&cred.key_md5)
            .bind(&cred.key_sha256)
            .bind(&cred.label)
            .bind(join_lines(&cred.tags))
            .bind(true)
            .bind(cred.expires_at)
            .bind(cred.created_at)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(cred),
            Err(e) if is_unique_violation(&e) => {
                let taken = self
                    .credential_by_username(c.tenant_id, c.username)
                    .await?
                    .is_some();
                Err(credential_conflict(e, taken))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<Credential> {
        let row: Option<CredentialRow> = sqlx::query_as(q::CREDENTIAL_BY_ID)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Into::into).ok_or(StoreError::NotFound)
    }

    async fn credential_by_username(
        &self,
        tenant_id: &TenantId,
        username: &str,
    ) -> Result<Option<Credential>> {
        let row: Option<CredentialRow> = sqlx::query_as(q::CREDENTIAL_BY_USERNAME)
            .bind(tenant_id)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_credentials(
        &self,
        tenant_id: &TenantId,
        lq: &ListQuery<'_>,
        now: i64,
    ) -> Result<Page<Credential>> {
        let limit = lq.limit.clamp(1, 1000);
        let rows: Vec<CredentialRow> = sqlx::query_as(&q::CREDENTIALS_PAGE)
            .bind(tenant_id)
            .bind(lq.label)
            .bind(lq.include_expired)
            .bind(now)
            .bind(lq.cursor)
            .bind(i64::from(limit) + 1)
            .bind(i64::from(lq.offset))
            .bind(lq.tag_pattern())
            .bind("\n")
            .bind(lq.state.map(CredentialState::as_str))
            .bind(lq.search_pattern())
            .fetch_all(&self.pool)
            .await?;
        Ok(page(rows, limit as usize))
    }

    async fn count_credentials(
        &self,
        tenant_id: &TenantId,
        lq: &ListQuery<'_>,
        now: i64,
    ) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(&q::CREDENTIALS_COUNT)
            .bind(tenant_id)
            .bind(lq.label)
            .bind(lq.include_expired)
            .bind(now)
            .bind(lq.tag_pattern())
            .bind("\n")
            .bind(lq.state.map(CredentialState::as_str))
            .bind(lq.search_pattern())
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn credentials_after(&self, after: &str, limit: u32) -> Result<Vec<Credential>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(q::CREDENTIALS_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_credential_enabled(
        &self,
        tenant_id: &TenantId,
        id: &CredentialId,
        enabled: bool,
    ) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::SET_CREDENTIAL_ENABLED)
            .bind(enabled)
            .bind(id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn delete_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::DELETE_CREDENTIAL)
            .bind(id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn delete_credentials_by_label(
        &self,
        tenant_id: &TenantId,
        label: &str,
    ) -> Result<Vec<Credential>> {
        self.writable()?;
        let rows: Vec<CredentialRow> = sqlx::query_as(q::DELETE_CREDENTIALS_BY_LABEL)
            .bind(tenant_id)
            .bind(label)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn add_tenant_secret(
        &self,
        tenant_id: &TenantId,
        secret: &[u8],
        now: i64,
    ) -> Result<TenantSecret> {
        self.writable()?;
        let s = TenantSecret {
            id: crate::new_id("sec"),
            tenant_id: tenant_id.clone(),
            secret: secret.to_vec(),
            created_at: now,
            expires_at: None,
        };
        sqlx::query(q::INSERT_TENANT_SECRET)
            .bind(&s.id)
            .bind(&s.tenant_id)
            .bind(&s.secret)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(s)
    }

    async fn expire_tenant_secrets(&self, tenant_id: &TenantId, at: i64) -> Result<u64> {
        self.writable()?;
        let r = sqlx::query(q::EXPIRE_TENANT_SECRETS)
            .bind(at)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn live_tenant_secrets(&self, now: i64) -> Result<Vec<TenantSecret>> {
        Ok(sqlx::query_as(q::LIVE_TENANT_SECRETS)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn add_revocation(&self, r: &Revocation) -> Result<()> {
        self.writable()?;
        sqlx::query(q::UPSERT_REVOCATION)
            .bind(&r.tenant_id)
            .bind(r.kind.as_str())
            .bind(&r.value)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn live_revocations(
        &self,
        tenant_id: Option<&TenantId>,
        now: i64,
    ) -> Result<Vec<Revocation>> {
        let rows: Vec<RevocationRow> = sqlx::query_as(q::LIVE_REVOCATIONS)
            .bind(now)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(RevocationRow::known).collect())
    }

    async fn set_user_tags(
        &self,
        tenant_id: &TenantId,
        user_id: &str,
        tags: &[String],
    ) -> Result<()> {
        self.writable()?;
        sqlx::query(q::UPSERT_USER_TAGS)
            .bind(tenant_id)
            .bind(user_id)
            .bind(join_lines(tags))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_disconnect(&self, d: &DisconnectRequest) -> Result<i64> {
        self.writable()?;
        Ok(sqlx::query_scalar(q::INSERT_DISCONNECT)
            .bind(&d.node)
            .bind(d.kind.as_str())
            .bind(&d.tenant_id)
            .bind(&d.value)
            .bind(d.at)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn recent_disconnects(&self, since: i64) -> Result<Vec<DisconnectRequest>> {
        let rows: Vec<DisconnectRow> = sqlx::query_as(q::RECENT_DISCONNECTS)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(DisconnectRow::known).collect())
    }

    async fn prune_disconnects(&self, before: i64) -> Result<u64> {
        self.writable()?;
        let r = sqlx::query(q::PRUNE_DISCONNECTS)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn user_tags(&self, tenant_id: &TenantId) -> Result<Vec<(String, Vec<String>)>> {
        let rows: Vec<UserTagsRow> = sqlx::query_as(q::USER_TAGS)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        self.writable()?;
        let style = Placeholder::Anonymous;
        Ok(super::usage::add_usage_tx(&self.pool, deltas, None, style).await?)
    }

    async fn add_usage_at(&self, deltas: &[UsageDelta], node: &str, region: &str) -> Result<()> {
        self.writable()?;
        let (at, style) = (Some((node, region)), Placeholder::Anonymous);
        Ok(super::usage::add_usage_tx(&self.pool, deltas, at, style).await?)
    }

    async fn node_usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        Ok(super::usage::node_usage(&self.pool, tenant_id, from_hour, to_hour).await?)
    }

    async fn usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        Ok(sqlx::query_as(q::USAGE)
            .bind(tenant_id)
            .bind(from_hour)
            .bind(to_hour)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn usage_by_hour(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        Ok(sqlx::query_as(&TENANT_HOURS)
            .bind(tenant_id)
            .bind(from_hour)
            .bind(to_hour)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn usage_by_key(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<KeyTotal>> {
        let (sql, from, to) = key_totals_query(from_hour, to_hour);
        Ok(sqlx::query_as(sql)
            .bind(tenant_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn usage_keys(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
        key: UsageKey,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let sql = q::usage_keys(key.column(), after.is_some());
        let mut query = sqlx::query_scalar(&sql).bind(tenant_id);
        if let Some(a) = after {
            query = query.bind(a);
        }
        Ok(query
            .bind(from_hour)
            .bind(to_hour)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn usage_of(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
        key: UsageKey,
        keys: &[String],
    ) -> Result<Vec<UsageRow>> {
        let sql = q::usage_of(key.column(), "IN (SELECT value FROM json_each($4))");
        Ok(sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(from_hour)
            .bind(to_hour)
            .bind(serde_json::to_string(keys).expect("a list of strings serializes"))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_price_plan(&self, p: &PricePlan) -> Result<()> {
        self.writable()?;
        Ok(billing::put_plan(&self.pool, p).await?)
    }

    async fn get_price_plan(&self, tenant_id: &TenantId) -> Result<Option<PricePlan>> {
        Ok(billing::get_plan(&self.pool, tenant_id).await?)
    }

    async fn delete_price_plan(&self, tenant_id: &TenantId) -> Result<()> {
        self.writable()?;
        match billing::delete_plan(&self.pool, tenant_id).await? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        }
    }

    async fn price_plans(&self) -> Result<Vec<PlanWithLastStatement>> {
        Ok(billing::plans(&self.pool).await?)
    }

    async fn billing_usage(
        &self,
        tenant_id: &TenantId,
        split_hour: i64,
        end_hour: i64,
    ) -> Result<BillingUsage> {
        Ok(billing::billing_usage(&self.pool, tenant_id, split_hour, end_hour).await?)
    }

    async fn usage_by_user(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UserUsage>> {
        Ok(billing::usage_by_user(&self.pool, tenant_id, from_hour, to_hour).await?)
    }

    async fn insert_statement(&self, s: &StoredStatement) -> Result<bool> {
        self.writable()?;
        Ok(billing::insert_statement(&self.pool, s).await?)
    }

    async fn get_statement(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>> {
        Ok(billing::get_statement(&self.pool, tenant_id, month, false).await?)
    }

    async fn list_statements(&self, tenant_id: &TenantId) -> Result<Vec<StatementSummary>> {
        Ok(billing::list_statements(&self.pool, tenant_id).await?)
    }

    async fn statement_before(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>> {
        Ok(billing::get_statement(&self.pool, tenant_id, month, true).await?)
    }

    async fn upsert_allocations(&self, records: &[AllocationRecord]) -> Result<()> {
        self.writable()?;
        let mut tx = self.pool.begin().await?;
        write_allocations::<sqlx::Sqlite>(&mut *tx, records, Placeholder::Anonymous).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_allocations(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>> {
        Ok(sqlx::query_as(q::ALLOCATIONS)
            .bind(tenant_id)
            .bind(from)
            .bind(to)
            .bind(i64::from(limit.clamp(1, 100_000)))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn add_delivery(&self, d: &Delivery) -> Result<()> {
        self.writable()?;
        Ok(super::reads::add_delivery(&self.pool, d).await?)
    }

    async fn list_deliveries(&self, tenant_id: &TenantId, limit: u32) -> Result<Vec<Delivery>> {
        Ok(super::reads::deliveries(&self.pool, tenant_id, None, limit).await?)
    }

    async fn delivery_of(&self, tenant_id: &TenantId, event_id: &str) -> Result<Option<Delivery>> {
        let mut v = super::reads::deliveries(&self.pool, tenant_id, Some(event_id), 1).await?;
        Ok(v.pop())
    }

    async fn put_node(&self, n: &crate::NodeRecord) -> Result<()> {
        Ok(super::nodes::put_node(&self.pool, n).await?)
    }
    async fn list_nodes(&self) -> Result<Vec<crate::NodeRecord>> {
        Ok(super::nodes::list_nodes(&self.pool).await?)
    }
    async fn delete_node(&self, id: &str) -> Result<bool> {
        Ok(super::nodes::delete_nodes(&self.pool, Some(id), 0).await? > 0)
    }
    async fn fleet_key(&self, name: &str, fresh: &[u8], now: i64) -> Result<Vec<u8>> {
        Ok(super::nodes::fleet_key(&self.pool, name, fresh, now).await?)
    }
    async fn prune_nodes(&self, before_ms: i64) -> Result<u64> {
        Ok(super::nodes::delete_nodes(&self.pool, None, before_ms).await?)
    }
    async fn add_auth_failures(&self, rows: &[AuthFailure]) -> Result<()> {
        self.writable()?;
        Ok(super::reads::add_auth_failures(&self.pool, rows).await?)
    }

    async fn list_auth_failures(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuthFailure>> {
        Ok(super::reads::auth_failures(&self.pool, tenant_id, from, to, limit).await?)
    }

    async fn prune_tenant_logs(&self, before: i64, keep: u32) -> Result<u64> {
        self.writable()?;
        let mut n = 0;
        for table in ["notification_deliveries", "auth_failures"] {
            n += super::reads::prune_log(&self.pool, table, before, keep).await?;
        }
        Ok(n)
    }

    async fn live_allocations(
        &self,
        tenant_id: &TenantId,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>> {
        Ok(super::reads::live_allocations(&self.pool, tenant_id, limit).await?)
    }

    async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
        self.writable()?;
        sqlx::query(q::INSERT_AUDIT)
            .bind(&e.id)
            .bind(&e.tenant_id)
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant_id: Option<&TenantId>,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as(q::AUDIT)
            .bind(tenant_id)
            .bind(from)
            .bind(to)
            .bind(i64::from(limit.clamp(1, 100_000)))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_quota(&self, quota: &Quota) -> Result<()> {
        self.writable()?;
        sqlx::query(q::UPSERT_QUOTA)
            .bind(&quota.tenant_id)
            .bind(quota.scope.as_str())
            .bind(quota.period.as_str())
            .bind(quota.bytes_per_period)
            .bind(quota.max_allocations)
            .bind(quota.max_bitrate_bps)
            .bind(quota.throttle_bitrate_bps)
            .bind(&quota.thresholds)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_quota(&self, tenant_id: &TenantId, scope: &QuotaScope) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::DELETE_QUOTA)
            .bind(tenant_id)
            .bind(scope.as_str())
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn list_quotas(&self, tenant_id: Option<&TenantId>) -> Result<Vec<Quota>> {
        Ok(sqlx::query_as(q::QUOTAS)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_notifications(&self, n: &NotificationSettings) -> Result<()> {
        self.writable()?;
        sqlx::query(q::UPSERT_NOTIFICATIONS)
            .bind(&n.tenant_id)
            .bind(&n.webhook_url)
            .bind(&n.webhook_secret)
            .bind(&n.email_to)
            .bind(n.webhook_format.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_notifications(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Option<NotificationSettings>> {
        Ok(sqlx::query_as(q::NOTIFICATIONS)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn record_alert(&self, e: &AlertEvent) -> Result<bool> {
        self.writable()?;
        let r = sqlx::query(q::INSERT_ALERT)
            .bind(&e.id)
            .bind(&e.tenant_id)
            .bind(e.scope.as_str())
            .bind(e.period_start)
            .bind(e.percent)
            .bind(&e.action)
            .bind(e.bytes_used)
            .bind(e.bytes_quota)
            .bind(e.at)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_alerts(&self, tenant_id: &TenantId) -> Result<Vec<AlertEvent>> {
        Ok(sqlx::query_as(q::ALERTS)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_setting(&self, tenant_id: &TenantId, key: &str, value: &str) -> Result<()> {
        self.writable()?;
        sqlx::query(q::UPSERT_SETTING)
            .bind(tenant_id)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_setting(&self, tenant_id: &TenantId, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(q::SETTING)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn add_denied_client(&self, d: &DeniedClient) -> Result<()> {
        self.writable()?;
        sqlx::query(q::INSERT_DENIED_CLIENT)
            .bind(&d.id)
            .bind(&d.cidr)
            .bind(&d.note)
            .bind(d.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict("deny list entry for this network"))?;
        Ok(())
    }

    async fn list_denied_clients(&self) -> Result<Vec<DeniedClient>> {
        Ok(sqlx::query_as(q::DENIED_CLIENTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn delete_denied_client(&self, id: &str) -> Result<()> {
        self.writable()?;
        let r = sqlx::query(q::DELETE_DENIED_CLIENT)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(r.rows_affected())
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(q::CHANGES_SINCE)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(ChangeRow::known).collect())
    }

    async fn changes_at(&self, seqs: &[i64]) -> Result<Vec<Change>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(CHANGES_AT)
            .bind(serde_json::to_string(seqs).expect("a list of numbers serializes"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(ChangeRow::known).collect())
    }

    async fn latest_change(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(LATEST_CHANGE)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn oldest_change(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(q::OLDEST_CHANGE)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn prune_changes(&self, before: i64) -> Result<u64> {
        self.writable()?;
        let r = sqlx::query(q::PRUNE_CHANGES)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn live_tenant_secrets_of(
        &self,
        tenant_id: &TenantId,
        now: i64,
    ) -> Result<Vec<TenantSecret>> {
        Ok(sqlx::query_as(q::LIVE_TENANT_SECRETS_OF)
            .bind(tenant_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn credentials_by_ids(&self, ids: &[CredentialId]) -> Result<Vec<Credential>> {
        // SQLite has no array parameter: the ids travel as one JSON array.
        let list = serde_json::to_string(ids).expect("a list of strings serializes");
        let rows: Vec<CredentialRow> = sqlx::query_as(CREDENTIALS_BY_IDS)
            .bind(list)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

/// The changes with any of the given numbers (a list parameter, as below).
const CHANGES_AT: &str = "
    SELECT seq, entity, key FROM changes WHERE seq IN (SELECT value FROM json_each($1)) ORDER BY seq";

/// The sequence's high-water mark: AUTOINCREMENT's (SQLite) or the sequence's (PostgreSQL),
/// which outlive pruned rows.
const LATEST_CHANGE: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)";

/// The stored credentials with any of the given ids (a query whose text differs between the
/// backends: how a list travels as a parameter).
const CREDENTIALS_BY_IDS: &str = "
    SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
           created_at
    FROM credentials WHERE id IN (SELECT value FROM json_each($1))";
