//! The store chosen by URL at start-up.

use crate::sql::{PgStore, SqliteStore};
use crate::{
    ApiKey, Credential, ListQuery, NewCredential, Page, Result, Store, StoreError, Tenant,
    UsageDelta, UsageRow,
};

/// SQLite or PostgreSQL, by the scheme of the configured URL.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// `sqlite://PATH` or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(PgStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
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
    async fn get_tenant(&self, id: &str) -> Result<Tenant> {
        delegate!(self, s => s.get_tenant(id))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        delegate!(self, s => s.list_tenants())
    }
    async fn create_api_key(
        &self,
        tenant_id: Option<&str>,
        key_hash: &[u8],
        prefix: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<ApiKey> {
        delegate!(self, s => s.create_api_key(tenant_id, key_hash, prefix, now, expires_at))
    }
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>> {
        delegate!(self, s => s.api_key_by_hash(key_hash))
    }
    async fn revoke_api_key(&self, id: &str) -> Result<()> {
        delegate!(self, s => s.revoke_api_key(id))
    }
    async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential> {
        delegate!(self, s => s.create_credential(c, now))
    }
    async fn get_credential(&self, tenant_id: &str, id: &str) -> Result<Credential> {
        delegate!(self, s => s.get_credential(tenant_id, id))
    }
    async fn credential_by_username(&self, username: &str) -> Result<Option<Credential>> {
        delegate!(self, s => s.credential_by_username(username))
    }
    async fn list_credentials(
        &self,
        tenant_id: &str,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<Page<Credential>> {
        delegate!(self, s => s.list_credentials(tenant_id, q, now))
    }
    async fn set_credential_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<()> {
        delegate!(self, s => s.set_credential_enabled(tenant_id, id, enabled))
    }
    async fn delete_credential(&self, tenant_id: &str, id: &str) -> Result<()> {
        delegate!(self, s => s.delete_credential(tenant_id, id))
    }
    async fn delete_credentials_by_label(&self, tenant_id: &str, label: &str) -> Result<u64> {
        delegate!(self, s => s.delete_credentials_by_label(tenant_id, label))
    }
    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        delegate!(self, s => s.add_usage(deltas))
    }
    async fn usage(&self, tenant_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<UsageRow>> {
        delegate!(self, s => s.usage(tenant_id, from_hour, to_hour))
    }
}
