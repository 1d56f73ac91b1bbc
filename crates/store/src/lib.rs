//! The control plane's persistent state: tenants, hashed API keys, stored TURN credentials and
//! hourly usage, behind one [`Store`] trait with two real implementations, SQLite (the embedded
//! default, one file) and PostgreSQL (for many nodes), each with its own migrations applied at
//! connection time. Both run the same SQL (placeholders `$1..$n`, `ON CONFLICT` upserts), so they
//! behave the same; the test suite runs against both.
//!
//! What it does not do: hash keys, derive TURN keys, check authorization or decide quotas; the
//! API layer does that and hands this crate finished values. Secrets are never stored in the
//! clear: API keys as hashes, TURN credentials as long-term keys.

mod any;
mod model;
mod sql;

pub use any::AnyStore;
pub use model::*;
pub use sql::{PgStore, SqliteStore};

/// Errors of the store, mapped by the API to status codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (e.g. a credential username) is taken: 409.
    #[error("already exists: {0}")]
    Conflict(&'static str),
    /// Nothing with that id in this tenant: 404.
    #[error("not found")]
    NotFound,
    /// The database URL is not one we support.
    #[error("unsupported database URL (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl,
    /// Anything the database said.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the control plane needs from persistence.
#[allow(async_fn_in_trait)]
pub trait Store {
    async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant>;
    async fn get_tenant(&self, id: &str) -> Result<Tenant>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    /// Stores a key by its hash; `tenant_id` `None` is an operator (admin) key.
    async fn create_api_key(
        &self,
        tenant_id: Option<&str>,
        key_hash: &[u8],
        prefix: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<ApiKey>;
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>>;
    async fn revoke_api_key(&self, id: &str) -> Result<()>;

    async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential>;
    async fn get_credential(&self, tenant_id: &str, id: &str) -> Result<Credential>;
    async fn credential_by_username(&self, username: &str) -> Result<Option<Credential>>;
    async fn list_credentials(
        &self,
        tenant_id: &str,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<Page<Credential>>;
    async fn set_credential_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<()>;
    async fn delete_credential(&self, tenant_id: &str, id: &str) -> Result<()>;
    async fn delete_credentials_by_label(&self, tenant_id: &str, label: &str) -> Result<u64>;

    /// Adds counters to their hourly buckets (exact: additions, never overwrites).
    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()>;
    /// Usage of a tenant in `[from_hour, to_hour)`, per credential and hour.
    async fn usage(&self, tenant_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<UsageRow>>;
}

/// A random identifier with a readable prefix, e.g. `ten_4f0c…`.
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    let mut s = String::with_capacity(prefix.len() + 25);
    s.push_str(prefix);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}
