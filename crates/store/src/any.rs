//! The store chosen by URL at start-up.

use crate::sql::{PgStore, SqliteStore};
use crate::*;

/// SQLite or PostgreSQL, by the scheme of the configured URL. Clones share the pool.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// `sqlite://PATH` or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Wake-ups when any node commits a change (PostgreSQL `LISTEN`); `None` on SQLite, where
    /// this process is the only writer and reads the feed after its own writes.
    pub async fn listen_changes(&self) -> Result<Option<crate::ChangeListener>> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(p) => p.listen_changes().await.map(Some),
        }
    }

    /// False once the SQLite file was removed or replaced since it was opened (then every
    /// write fails with [`StoreError::DatabaseLost`] until restart). One `stat`; always true
    /// for PostgreSQL.
    pub fn database_ok(&self) -> bool {
        match self {
            Self::Sqlite(s) => s.database_ok(),
            Self::Postgres(_) => true,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e.await,
            AnyStore::Postgres($s) => $e.await,
        }
    };
}

impl Store for AnyStore {
    async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        delegate!(self, s => s.create_tenant(name, now))
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        delegate!(self, s => s.get_tenant(id))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        delegate!(self, s => s.list_tenants())
    }
    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        delegate!(self, s => s.delete_tenant(id))
    }
    async fn create_child_tenant(
        &self,
        parent_id: &TenantId,
        name: &str,
        now: i64,
    ) -> Result<Tenant> {
        delegate!(self, s => s.create_child_tenant(parent_id, name, now))
    }
    async fn child_tenants(&self, parent_id: &TenantId) -> Result<Vec<Tenant>> {
        delegate!(self, s => s.child_tenants(parent_id))
    }
    async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<()> {
        delegate!(self, s => s.rename_tenant(id, name))
    }
    async fn suspend_tenant(&self, id: &TenantId, at: Option<i64>) -> Result<()> {
        delegate!(self, s => s.suspend_tenant(id, at))
    }
    async fn set_tenant_regions(&self, id: &TenantId, regions: Option<&str>) -> Result<()> {
        delegate!(self, s => s.set_tenant_regions(id, regions))
    }
    async fn suspended_tenants(&self) -> Result<Vec<TenantId>> {
        delegate!(self, s => s.suspended_tenants())
    }

    async fn tenant_regions(&self) -> Result<Vec<(TenantId, Vec<String>)>> {
        delegate!(self, s => s.tenant_regions())
    }
    async fn create_api_key(&self, k: &NewApiKey<'_>, now: i64) -> Result<ApiKey> {
        delegate!(self, s => s.create_api_key(k, now))
    }
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>> {
        delegate!(self, s => s.api_key_by_hash(key_hash))
    }
    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKey>> {
        delegate!(self, s => s.list_api_keys(tenant_id))
    }
    async fn revoke_api_key(&self, tenant_id: Option<&TenantId>, id: &str) -> Result<()> {
        delegate!(self, s => s.revoke_api_key(tenant_id, id))
    }
    async fn has_admin_key(&self) -> Result<bool> {
        delegate!(self, s => s.has_admin_key())
    }
    async fn expire_api_keys(&self, tenant_id: &TenantId, kind: KeyKind, at: i64) -> Result<u64> {
        delegate!(self, s => s.expire_api_keys(tenant_id, kind, at))
    }
    async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential> {
        delegate!(self, s => s.create_credential(c, now))
    }
    async fn get_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<Credential> {
        delegate!(self, s => s.get_credential(tenant_id, id))
    }
    async fn credential_by_username(
        &self,
        tenant_id: &TenantId,
        username: &str,
    ) -> Result<Option<Credential>> {
        delegate!(self, s => s.credential_by_username(tenant_id, username))
    }
    async fn list_credentials(
        &self,
        tenant_id: &TenantId,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<Page<Credential>> {
        delegate!(self, s => s.list_credentials(tenant_id, q, now))
    }
    async fn count_credentials(
        &self,
        tenant_id: &TenantId,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<u64> {
        delegate!(self, s => s.count_credentials(tenant_id, q, now))
    }

    async fn credentials_after(&self, after: &str, limit: u32) -> Result<Vec<Credential>> {
        delegate!(self, s => s.credentials_after(after, limit))
    }
    async fn set_credential_enabled(
        &self,
        tenant_id: &TenantId,
        id: &CredentialId,
        enabled: bool,
    ) -> Result<()> {
        delegate!(self, s => s.set_credential_enabled(tenant_id, id, enabled))
    }
    async fn delete_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<()> {
        delegate!(self, s => s.delete_credential(tenant_id, id))
    }
    async fn delete_credentials_by_label(
        &self,
        tenant_id: &TenantId,
        label: &str,
    ) -> Result<Vec<Credential>> {
        delegate!(self, s => s.delete_credentials_by_label(tenant_id, label))
    }
    async fn add_tenant_secret(
        &self,
        tenant_id: &TenantId,
        secret: &[u8],
        now: i64,
    ) -> Result<TenantSecret> {
        delegate!(self, s => s.add_tenant_secret(tenant_id, secret, now))
    }
    async fn expire_tenant_secrets(&self, tenant_id: &TenantId, at: i64) -> Result<u64> {
        delegate!(self, s => s.expire_tenant_secrets(tenant_id, at))
    }
    async fn live_tenant_secrets(&self, now: i64) -> Result<Vec<TenantSecret>> {
        delegate!(self, s => s.live_tenant_secrets(now))
    }
    async fn add_revocation(&self, r: &Revocation) -> Result<()> {
        delegate!(self, s => s.add_revocation(r))
    }
    async fn live_revocations(
        &self,
        tenant_id: Option<&TenantId>,
        now: i64,
    ) -> Result<Vec<Revocation>> {
        delegate!(self, s => s.live_revocations(tenant_id, now))
    }
    async fn set_user_tags(
        &self,
        tenant_id: &TenantId,
        user_id: &str,
        tags: &[String],
    ) -> Result<()> {
        delegate!(self, s => s.set_user_tags(tenant_id, user_id, tags))
    }
    async fn add_disconnect(&self, d: &DisconnectRequest) -> Result<i64> {
        delegate!(self, s => s.add_disconnect(d))
    }
    async fn recent_disconnects(&self, since: i64) -> Result<Vec<DisconnectRequest>> {
        delegate!(self, s => s.recent_disconnects(since))
    }
    async fn prune_disconnects(&self, before: i64) -> Result<u64> {
        delegate!(self, s => s.prune_disconnects(before))
    }
    async fn user_tags(&self, tenant_id: &TenantId) -> Result<Vec<(String, Vec<String>)>> {
        delegate!(self, s => s.user_tags(tenant_id))
    }
    async fn add_usage_at(&self, deltas: &[UsageDelta], node: &str, region: &str) -> Result<()> {
        delegate!(self, s => s.add_usage_at(deltas, node, region))
    }
    async fn node_usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        delegate!(self, s => s.node_usage(tenant_id, from_hour, to_hour))
    }
    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        delegate!(self, s => s.add_usage(deltas))
    }
    async fn usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        delegate!(self, s => s.usage(tenant_id, from_hour, to_hour))
    }
    async fn usage_by_hour(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>> {
        delegate!(self, s => s.usage_by_hour(tenant_id, from_hour, to_hour))
    }

    async fn usage_by_key(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<KeyTotal>> {
        delegate!(self, s => s.usage_by_key(tenant_id, from_hour, to_hour))
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
        delegate!(self, s => s.usage_keys(tenant_id, from_hour, to_hour, key, after, limit))
    }
    async fn usage_of(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
        key: UsageKey,
        keys: &[String],
    ) -> Result<Vec<UsageRow>> {
        delegate!(self, s => s.usage_of(tenant_id, from_hour, to_hour, key, keys))
    }
    async fn put_price_plan(&self, p: &PricePlan) -> Result<()> {
        delegate!(self, s => s.put_price_plan(p))
    }
    async fn get_price_plan(&self, tenant_id: &TenantId) -> Result<Option<PricePlan>> {
        delegate!(self, s => s.get_price_plan(tenant_id))
    }
    async fn delete_price_plan(&self, tenant_id: &TenantId) -> Result<()> {
        delegate!(self, s => s.delete_price_plan(tenant_id))
    }
    async fn price_plans(&self) -> Result<Vec<PlanWithLastStatement>> {
        delegate!(self, s => s.price_plans())
    }
    async fn billing_usage(
        &self,
        tenant_id: &TenantId,
        split_hour: i64,
        end_hour: i64,
    ) -> Result<BillingUsage> {
        delegate!(self, s => s.billing_usage(tenant_id, split_hour, end_hour))
    }
    async fn usage_by_user(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UserUsage>> {
        delegate!(self, s => s.usage_by_user(tenant_id, from_hour, to_hour))
    }
    async fn insert_statement(&self, st: &StoredStatement) -> Result<bool> {
        delegate!(self, s => s.insert_statement(st))
    }
    async fn get_statement(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>> {
        delegate!(self, s => s.get_statement(tenant_id, month))
    }
    async fn list_statements(&self, tenant_id: &TenantId) -> Result<Vec<StatementSummary>> {
        delegate!(self, s => s.list_statements(tenant_id))
    }
    async fn statement_before(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>> {
        delegate!(self, s => s.statement_before(tenant_id, month))
    }
    async fn upsert_allocations(&self, records: &[AllocationRecord]) -> Result<()> {
        delegate!(self, s => s.upsert_allocations(records))
    }
    async fn list_allocations(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>> {
        delegate!(self, s => s.list_allocations(tenant_id, from, to, limit))
    }
    async fn add_delivery(&self, d: &Delivery) -> Result<()> {
        delegate!(self, s => s.add_delivery(d))
    }
    async fn list_deliveries(&self, tenant_id: &TenantId, limit: u32) -> Result<Vec<Delivery>> {
        delegate!(self, s => s.list_deliveries(tenant_id, limit))
    }
    async fn delivery_of(&self, tenant_id: &TenantId, event_id: &str) -> Result<Option<Delivery>> {
        delegate!(self, s => s.delivery_of(tenant_id, event_id))
    }
    async fn put_node(&self, n: &NodeRecord) -> Result<()> {
        delegate!(self, s => s.put_node(n))
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        delegate!(self, s => s.list_nodes())
    }
    async fn delete_node(&self, id: &str) -> Result<bool> {
        delegate!(self, s => s.delete_node(id))
    }

    async fn fleet_key(&self, name: &str, fresh: &[u8], now: i64) -> Result<Vec<u8>> {
        delegate!(self, s => s.fleet_key(name, fresh, now))
    }
    async fn prune_nodes(&self, before_ms: i64) -> Result<u64> {
        delegate!(self, s => s.prune_nodes(before_ms))
    }
    async fn add_auth_failures(&self, rows: &[AuthFailure]) -> Result<()> {
        delegate!(self, s => s.add_auth_failures(rows))
    }
    async fn list_auth_failures(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuthFailure>> {
        delegate!(self, s => s.list_auth_failures(tenant_id, from, to, limit))
    }
    async fn prune_tenant_logs(&self, before: i64, keep: u32) -> Result<u64> {
        delegate!(self, s => s.prune_tenant_logs(before, keep))
    }
    async fn live_allocations(
        &self,
        tenant_id: &TenantId,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>> {
        delegate!(self, s => s.live_allocations(tenant_id, limit))
    }
    async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
        delegate!(self, s => s.add_audit(e))
    }
    async fn list_audit(
        &self,
        tenant_id: Option<&TenantId>,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        delegate!(self, s => s.list_audit(tenant_id, from, to, limit))
    }
    async fn put_quota(&self, q: &Quota) -> Result<()> {
        delegate!(self, s => s.put_quota(q))
    }
    async fn delete_quota(&self, tenant_id: &TenantId, scope: &QuotaScope) -> Result<()> {
        delegate!(self, s => s.delete_quota(tenant_id, scope))
    }
    async fn list_quotas(&self, tenant_id: Option<&TenantId>) -> Result<Vec<Quota>> {
        delegate!(self, s => s.list_quotas(tenant_id))
    }
    async fn put_notifications(&self, n: &NotificationSettings) -> Result<()> {
        delegate!(self, s => s.put_notifications(n))
    }
    async fn get_notifications(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Option<NotificationSettings>> {
        delegate!(self, s => s.get_notifications(tenant_id))
    }
    async fn record_alert(&self, e: &AlertEvent) -> Result<bool> {
        delegate!(self, s => s.record_alert(e))
    }
    async fn put_setting(&self, tenant_id: &TenantId, key: &str, value: &str) -> Result<()> {
        delegate!(self, s => s.put_setting(tenant_id, key, value))
    }
    async fn get_setting(&self, tenant_id: &TenantId, key: &str) -> Result<Option<String>> {
        delegate!(self, s => s.get_setting(tenant_id, key))
    }
    async fn list_alerts(&self, tenant_id: &TenantId) -> Result<Vec<AlertEvent>> {
        delegate!(self, s => s.list_alerts(tenant_id))
    }
    async fn add_denied_client(&self, d: &DeniedClient) -> Result<()> {
        delegate!(self, s => s.add_denied_client(d))
    }
    async fn list_denied_clients(&self) -> Result<Vec<DeniedClient>> {
        delegate!(self, s => s.list_denied_clients())
    }
    async fn delete_denied_client(&self, id: &str) -> Result<()> {
        delegate!(self, s => s.delete_denied_client(id))
    }
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        delegate!(self, s => s.changes_since(after, limit))
    }
    async fn changes_at(&self, seqs: &[i64]) -> Result<Vec<Change>> {
        delegate!(self, s => s.changes_at(seqs))
    }
    async fn latest_change(&self) -> Result<i64> {
        delegate!(self, s => s.latest_change())
    }
    async fn oldest_change(&self) -> Result<i64> {
        delegate!(self, s => s.oldest_change())
    }
    async fn prune_changes(&self, before: i64) -> Result<u64> {
        delegate!(self, s => s.prune_changes(before))
    }
    async fn credentials_by_ids(&self, ids: &[CredentialId]) -> Result<Vec<Credential>> {
        delegate!(self, s => s.credentials_by_ids(ids))
    }
    async fn live_tenant_secrets_of(
        &self,
        tenant_id: &TenantId,
        now: i64,
    ) -> Result<Vec<TenantSecret>> {
        delegate!(self, s => s.live_tenant_secrets_of(tenant_id, now))
    }
}
