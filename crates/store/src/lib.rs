//! The control plane's persistent state: tenants, hashed API keys, stored TURN credentials and
//! hourly usage, behind one [`Store`] trait with two real implementations, SQLite (the embedded
//! default, one file) and PostgreSQL (for many nodes), each with its own migrations applied at
//! connection time. Both run the same SQL (placeholders `$1..$n`, `ON CONFLICT` upserts), so they
//! behave the same; the test suite runs against both.
//!
//! What it does not do: hash keys, derive TURN keys, check authorization or decide quotas; the
//! API layer does that and hands this crate finished values. Secrets are never stored in the
//! clear: API keys as hashes, TURN credentials as long-term keys.

#![forbid(unsafe_code)]

mod any;
mod billing;
pub mod calendar;
mod deliveries;
mod ids;
mod model;
mod nodes;
pub mod signal;
mod sql;

pub use any::AnyStore;
pub use billing::*;
pub use deliveries::{AuthFailure, Delivery};
pub use ids::{CredentialId, TenantId};
pub use model::*;
pub use nodes::NodeRecord;
pub use sql::{ChangeListener, PgStore, SqliteStore};

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
    /// A stored value this version cannot read.
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file was removed or replaced since it was opened: writes would go to an
    /// unlinked file and be lost. Sticky until restart: 503.
    #[error("the database file was removed or replaced while running")]
    DatabaseLost,
    /// Another credential has this username and the same long-term key (the same password):
    /// the relay could not tell them apart. 409 (without saying whose it is).
    #[error("another credential with this username has the same key")]
    KeyCollision,
    /// The SQLite file could not be created or made private.
    #[error("database file: {0}")]
    File(#[source] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the control plane needs from persistence. Every tenant-scoped method takes the tenant id
/// and never touches another tenant's rows.
#[allow(async_fn_in_trait)]
pub trait Store {
    // Tenants.
    async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    async fn delete_tenant(&self, id: &TenantId) -> Result<()>;
    /// A project of `parent_id` (a tenant of its own); `Conflict` if the parent has a project
    /// of that name.
    async fn create_child_tenant(
        &self,
        parent_id: &TenantId,
        name: &str,
        now: i64,
    ) -> Result<Tenant>;
    /// The projects of `parent_id`, oldest first.
    async fn child_tenants(&self, parent_id: &TenantId) -> Result<Vec<Tenant>>;
    /// Renames a tenant; `Conflict` if a sibling project has that name.
    async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<()>;
    /// Suspends a tenant at `at` (unix seconds), or resumes it with `None`; `NotFound` if there
    /// is no such tenant. Recorded in the change feed.
    async fn suspend_tenant(&self, id: &TenantId, at: Option<i64>) -> Result<()>;
    /// Sets the regions a tenant's ICE lists may name (comma-separated; `None`: any);
    /// `NotFound` if there is no such tenant.
    async fn set_tenant_regions(&self, id: &TenantId, regions: Option<&str>) -> Result<()>;
    /// The tenants suspended now, themselves or through their parent.
    async fn suspended_tenants(&self) -> Result<Vec<TenantId>>;
    /// The tenants limited to some regions, with them (a project's list narrowed by its
    /// tenant's; an empty list: no region left).
    async fn tenant_regions(&self) -> Result<Vec<(TenantId, Vec<String>)>>;

    // API keys, stored by hash.
    async fn create_api_key(&self, k: &NewApiKey<'_>, now: i64) -> Result<ApiKey>;
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKey>>;
    async fn revoke_api_key(&self, tenant_id: Option<&TenantId>, id: &str) -> Result<()>;
    /// Whether any admin key was ever stored (so one is generated only at first start).
    async fn has_admin_key(&self) -> Result<bool>;
    /// Makes a tenant's live keys of `kind` lapse at `at` (rotation overlap); returns how many.
    async fn expire_api_keys(&self, tenant_id: &TenantId, kind: KeyKind, at: i64) -> Result<u64>;

    // Stored credentials.
    async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential>;
    async fn get_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<Credential>;
    /// A tenant's credential with `username` (usernames are unique per tenant, not globally).
    async fn credential_by_username(
        &self,
        tenant_id: &TenantId,
        username: &str,
    ) -> Result<Option<Credential>>;
    async fn list_credentials(
        &self,
        tenant_id: &TenantId,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<Page<Credential>>;
    /// How many credentials `list_credentials` would show with this label and expiry filter
    /// (cursor, offset and limit aside).
    async fn count_credentials(
        &self,
        tenant_id: &TenantId,
        q: &ListQuery<'_>,
        now: i64,
    ) -> Result<u64>;
    /// Every tenant's credentials with ids after `after`, in id order, at most `limit` (the
    /// relay's directory loads them page by page).
    async fn credentials_after(&self, after: &str, limit: u32) -> Result<Vec<Credential>>;
    async fn set_credential_enabled(
        &self,
        tenant_id: &TenantId,
        id: &CredentialId,
        enabled: bool,
    ) -> Result<()>;
    async fn delete_credential(&self, tenant_id: &TenantId, id: &CredentialId) -> Result<()>;
    /// Deletes a tenant's credentials with `label`; returns the deleted ones.
    async fn delete_credentials_by_label(
        &self,
        tenant_id: &TenantId,
        label: &str,
    ) -> Result<Vec<Credential>>;

    // Shared secrets for ephemeral credentials.
    async fn add_tenant_secret(
        &self,
        tenant_id: &TenantId,
        secret: &[u8],
        now: i64,
    ) -> Result<TenantSecret>;
    /// Makes a tenant's live secrets lapse at `at` (rotation overlap).
    async fn expire_tenant_secrets(&self, tenant_id: &TenantId, at: i64) -> Result<u64>;
    /// Secrets live at `now`, of all tenants, newest first.
    async fn live_tenant_secrets(&self, now: i64) -> Result<Vec<TenantSecret>>;

    // Revocations of ephemeral credentials.
    async fn add_revocation(&self, r: &Revocation) -> Result<()>;
    /// Live revocations (of one tenant, or all).
    async fn live_revocations(
        &self,
        tenant_id: Option<&TenantId>,
        now: i64,
    ) -> Result<Vec<Revocation>>;
    async fn set_user_tags(
        &self,
        tenant_id: &TenantId,
        user_id: &str,
        tags: &[String],
    ) -> Result<()>;

    // Disconnect requests shared by the nodes of a cluster.
    /// Records one; returns its id.
    async fn add_disconnect(&self, d: &DisconnectRequest) -> Result<i64>;
    /// Requests made at or after `since` (seconds), oldest first.
    async fn recent_disconnects(&self, since: i64) -> Result<Vec<DisconnectRequest>>;
    /// Deletes requests made before `before`; returns how many.
    async fn prune_disconnects(&self, before: i64) -> Result<u64>;
    async fn user_tags(&self, tenant_id: &TenantId) -> Result<Vec<(String, Vec<String>)>>;

    // Usage.
    /// Adds counters to their hourly buckets (exact: additions, never overwrites).
    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()>;
    /// [`Store::add_usage`], and the same deltas per tenant and hour as relayed by `node` of
    /// `region` (the fleet's per-node and per-region reports), in one transaction.
    async fn add_usage_at(&self, deltas: &[UsageDelta], node: &str, region: &str) -> Result<()>;
    /// The tenant's usage per hour and node in `[from_hour, to_hour)`: rows whose
    /// `credential_id` is the node id and `user_id` its region.
    async fn node_usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>>;
    /// Usage of a tenant in `[from_hour, to_hour)`.
    async fn usage(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>>;
    /// The tenant's totals per hour in `[from_hour, to_hour)` (rows with empty credential and
    /// user), from the rollup kept beside the hourly rows: at most one row an hour.
    async fn usage_by_hour(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UsageRow>>;
    /// The tenant's totals per credential and user in `[from_hour, to_hour)`: from the monthly
    /// rollup when the range is whole UTC months, else summed from the hourly rows.
    async fn usage_by_key(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<KeyTotal>>;
    /// Up to `limit` distinct keys with usage in `[from_hour, to_hour)`, ascending, after
    /// `after` (from the first when `None`): one page of a report by user or credential.
    async fn usage_keys(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
        key: UsageKey,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>>;
    /// The hourly rows of these keys in `[from_hour, to_hour)`.
    async fn usage_of(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
        key: UsageKey,
        keys: &[String],
    ) -> Result<Vec<UsageRow>>;

    // Billing.
    /// Sets (inserts or replaces) a tenant's price plan.
    async fn put_price_plan(&self, p: &PricePlan) -> Result<()>;
    async fn get_price_plan(&self, tenant_id: &TenantId) -> Result<Option<PricePlan>>;
    /// `NotFound` when the tenant has none. Stored statements stay.
    async fn delete_price_plan(&self, tenant_id: &TenantId) -> Result<()>;
    /// Every plan, with the month of its tenant's newest stored statement.
    async fn price_plans(&self) -> Result<Vec<PlanWithLastStatement>>;
    /// The tenant's usage of all hours before `end_hour`, split at `split_hour`.
    async fn billing_usage(
        &self,
        tenant_id: &TenantId,
        split_hour: i64,
        end_hour: i64,
    ) -> Result<BillingUsage>;
    /// The tenant's usage per user in `[from_hour, to_hour)`, by user id.
    async fn usage_by_user(
        &self,
        tenant_id: &TenantId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<UserUsage>>;
    /// Stores a closed statement; `false` (and nothing changes) when the tenant has one for
    /// that month already (another node closed it first).
    async fn insert_statement(&self, s: &StoredStatement) -> Result<bool>;
    async fn get_statement(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>>;
    /// The tenant's closed statements, newest first.
    async fn list_statements(&self, tenant_id: &TenantId) -> Result<Vec<StatementSummary>>;
    /// The newest closed statement of a month before `month`.
    async fn statement_before(
        &self,
        tenant_id: &TenantId,
        month: &str,
    ) -> Result<Option<StoredStatement>>;

    // Notification delivery log.
    async fn add_delivery(&self, d: &Delivery) -> Result<()>;
    /// The tenant's newest `limit` attempts, newest first.
    async fn list_deliveries(&self, tenant_id: &TenantId, limit: u32) -> Result<Vec<Delivery>>;
    /// The newest attempt for an event of the tenant.
    async fn delivery_of(&self, tenant_id: &TenantId, event_id: &str) -> Result<Option<Delivery>>;
    /// Refused TURN requests, for tenants that exist (others are skipped).
    async fn add_auth_failures(&self, rows: &[AuthFailure]) -> Result<()>;

    // The fleet's node registry.
    /// Inserts or replaces a node's row (its heartbeat).
    async fn put_node(&self, n: &NodeRecord) -> Result<()>;
    /// Every registered node, by region then id.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Removes one node's row (a clean stop); true if it was there.
    async fn delete_node(&self, id: &str) -> Result<bool>;
    /// The fleet's shared key `name` (e.g. the STUN nonce key): the stored one, or `fresh`
    /// stored at `now` when there is none yet.
    async fn fleet_key(&self, name: &str, fresh: &[u8], now: i64) -> Result<Vec<u8>>;
    /// Removes the rows of nodes silent since `before_ms` (unix ms); returns how many.
    async fn prune_nodes(&self, before_ms: i64) -> Result<u64>;
    /// The tenant's refused requests in `[from, to)`, newest first.
    async fn list_auth_failures(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuthFailure>>;
    /// Drops delivery attempts and refused requests before `before`, and beyond the newest
    /// `keep` of each tenant in each log.
    async fn prune_tenant_logs(&self, before: i64, keep: u32) -> Result<u64>;

    // Logs.
    /// Inserts or completes allocation records, in one transaction (all or none).
    async fn upsert_allocations(&self, records: &[AllocationRecord]) -> Result<()>;
    /// A tenant's allocations that started in `[from, to)`, oldest first.
    async fn list_allocations(
        &self,
        tenant_id: &TenantId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>>;
    /// The tenant's allocations with no end recorded (live, or of a node that stopped without
    /// recording it), newest first, at most `limit` (1 to 100000).
    async fn live_allocations(
        &self,
        tenant_id: &TenantId,
        limit: u32,
    ) -> Result<Vec<AllocationRecord>>;
    async fn add_audit(&self, e: &AuditEntry) -> Result<()>;
    /// Audit entries of a tenant (or the operator's, `None`) in `[from, to)`, oldest first.
    async fn list_audit(
        &self,
        tenant_id: Option<&TenantId>,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;

    // Quotas and alerts.
    async fn put_quota(&self, q: &Quota) -> Result<()>;
    async fn delete_quota(&self, tenant_id: &TenantId, scope: &QuotaScope) -> Result<()>;
    /// Quotas of one tenant, or all.
    async fn list_quotas(&self, tenant_id: Option<&TenantId>) -> Result<Vec<Quota>>;
    async fn put_notifications(&self, n: &NotificationSettings) -> Result<()>;
    async fn get_notifications(&self, tenant_id: &TenantId)
        -> Result<Option<NotificationSettings>>;
    /// Records a fired threshold; false if it had already fired this period.
    async fn record_alert(&self, e: &AlertEvent) -> Result<bool>;
    async fn list_alerts(&self, tenant_id: &TenantId) -> Result<Vec<AlertEvent>>;

    // Small per-tenant settings (e.g. the signalling Origin allow-list).
    async fn put_setting(&self, tenant_id: &TenantId, key: &str, value: &str) -> Result<()>;
    async fn get_setting(&self, tenant_id: &TenantId, key: &str) -> Result<Option<String>>;

    // The client deny list (operator-managed; every node applies it at its next reload).
    /// Adds an entry; `Conflict` if the same CIDR is listed already.
    async fn add_denied_client(&self, d: &DeniedClient) -> Result<()>;
    /// Every entry, oldest first.
    async fn list_denied_clients(&self) -> Result<Vec<DeniedClient>>;
    async fn delete_denied_client(&self, id: &str) -> Result<()>;

    // The change feed: one row per write to credentials, tenant secrets, revocations, quotas,
    // the deny list and tenants, recorded by triggers in the writing transaction.
    /// Up to `limit` changes with `seq > after`, in `seq` order.
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>>;
    /// The changes with these numbers (those visible now; missing ones are left out).
    async fn changes_at(&self, seqs: &[i64]) -> Result<Vec<Change>>;
    /// The highest `seq` handed out so far (0 when none), pruned rows included: a reader
    /// starting here is not told about numbers that will never reappear.
    async fn latest_change(&self) -> Result<i64>;
    /// The lowest `seq` still kept (0 when none): a reader that needs older changes must reload.
    async fn oldest_change(&self) -> Result<i64>;
    /// Drops changes recorded before `before` (unix seconds).
    async fn prune_changes(&self, before: i64) -> Result<u64>;
    /// The stored credentials with these ids (of any tenant; missing ones are left out).
    async fn credentials_by_ids(&self, ids: &[CredentialId]) -> Result<Vec<Credential>>;
    /// One tenant's live shared secrets, newest first.
    async fn live_tenant_secrets_of(
        &self,
        tenant_id: &TenantId,
        now: i64,
    ) -> Result<Vec<TenantSecret>>;
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
