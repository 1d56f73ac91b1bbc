//! Plain values stored and returned. Kinds are enums, stored as their lowercase names; values
//! read with a name this version does not know are an error of the column
//! ([`UnknownName`]), except where a newer node may write new kinds (revocations and
//! disconnect requests), which are skipped with a warning.

use std::fmt;

use crate::{CredentialId, TenantId};

/// A stored name this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
    /// The tenant this one is a project of (Metered's project API), if any. A project is a
    /// tenant of its own (credentials, keys, usage, quota); deleting the parent deletes it.
    pub parent_id: Option<TenantId>,
    /// When the operator suspended it (unix seconds): its relay credentials are refused, its
    /// live allocations closed and its keys read-only until it is resumed. A project of a
    /// suspended tenant is suspended with it.
    pub suspended_at: Option<i64>,
    /// The regions whose nodes its ICE lists may name (comma-separated), or any (`None`).
    pub allowed_regions: Option<String>,
}

impl Tenant {
    /// The allowed regions as a list (`None`: any region).
    pub fn regions(&self) -> Option<Vec<String>> {
        self.allowed_regions.as_deref().map(|r| {
            r.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The operator: manages tenants.
    Admin,
    /// A tenant's server-side key: full access to that tenant.
    Secret,
    /// One credential's front-end key: may only fetch ICE servers, from allowed origins.
    Publishable,
    /// A project's key (Metered's `projectApiKey`): may only use the project endpoints of the
    /// Metered-compatible API, for its own project (a child tenant).
    Project,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Secret => "secret",
            Self::Publishable => "publishable",
            Self::Project => "project",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "secret" => Some(Self::Secret),
            "publishable" => Some(Self::Publishable),
            "project" => Some(Self::Project),
            _ => None,
        }
    }
}

impl TryFrom<String> for KeyKind {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, UnknownName> {
        Self::parse(&name).ok_or(UnknownName {
            what: "key kind",
            name,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: Option<TenantId>,
    pub kind: KeyKind,
    /// For publishable keys: the credential they belong to.
    pub credential_id: Option<CredentialId>,
    /// For publishable keys: allowed `Origin` values; `*` allows any. Empty (as stored by
    /// earlier versions when none were given) allows none.
    pub allowed_origins: Vec<String>,
    /// The first characters of the key, for recognising it in lists.
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl ApiKey {
    /// Usable at `now`: not revoked and not past its expiry.
    pub fn is_live(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A key to store (by its hash).
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub tenant_id: Option<&'a TenantId>,
    pub kind: KeyKind,
    pub credential_id: Option<&'a CredentialId>,
    pub allowed_origins: &'a [String],
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
    pub expires_at: Option<i64>,
}

/// A credential to create: the long-term keys are derived by the caller (the password itself
/// is never stored).
#[derive(Debug, Clone)]
pub struct NewCredential<'a> {
    pub tenant_id: &'a TenantId,
    pub username: &'a str,
    pub key_md5: &'a [u8],
    pub key_sha256: &'a [u8],
    pub label: Option<&'a str>,
    pub tags: &'a [String],
    pub expires_at: Option<i64>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub username: String,
    pub key_md5: Vec<u8>,
    pub key_sha256: Vec<u8>,
    pub label: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl Credential {
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never printed.
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("label", &self.label)
            .field("enabled", &self.enabled)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Listing filters and cursor pagination.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    pub label: Option<&'a str>,
    pub include_expired: bool,
    /// Return items with ids after this one.
    pub cursor: Option<&'a str>,
    /// Skip this many items first (page-numbered listings; a cursor costs less on deep pages).
    pub offset: u32,
    pub limit: u32,
    /// Only credentials with this tag (case-insensitive).
    pub tag: Option<&'a str>,
    /// Only credentials in this state.
    pub state: Option<CredentialState>,
    /// Only credentials whose username or label contains this text (case-insensitive).
    pub search: Option<&'a str>,
}

/// What a credential listing may be narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialState {
    /// Enabled and not expired.
    Enabled,
    Disabled,
    Expired,
}

impl CredentialState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enabled" => Self::Enabled,
            "disabled" => Self::Disabled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// `text` for `LIKE ... ESCAPE '\'`, lower case, its `\`, `%` and `_` escaped.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl ListQuery<'_> {
    /// The stored tags are joined by newlines: a whole tag is `\n<tag>\n` in
    /// `\n || tags || \n`.
    pub(crate) fn tag_pattern(&self) -> Option<String> {
        self.tag.map(|t| format!("%\n{}\n%", like_escaped(t)))
    }

    pub(crate) fn search_pattern(&self) -> Option<String> {
        self.search.map(|t| format!("%{}%", like_escaped(t)))
    }
}

/// One page and the cursor of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A tenant's shared secret for minting ephemeral credentials.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantSecret {
    pub id: String,
    pub tenant_id: TenantId,
    pub secret: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for TenantSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSecret")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One ephemeral username, until it expires.
    Username,
    /// Every ephemeral credential of one user id of the tenant.
    User,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "username" => Some(Self::Username),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// A revoked ephemeral username or user id, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub tenant_id: TenantId,
    pub kind: RevocationKind,
    pub value: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Whose allocations a disconnect request closes (`value` names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectKind {
    /// One ephemeral username.
    Username,
    /// One stored credential (by id).
    Credential,
    /// A whole tenant (by id).
    Tenant,
    /// One user id of a tenant (`tenant_id` is set).
    User,
}

impl DisconnectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Credential => "credential",
            Self::Tenant => "tenant",
            Self::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "username" => Some(Self::Username),
            "credential" => Some(Self::Credential),
            "tenant" => Some(Self::Tenant),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// A request to close live allocations, recorded so every node sharing the database acts on
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectRequest {
    /// Assigned by the store (ignored on insert).
    pub id: i64,
    /// The node that made the request (it has acted on it already).
    pub node: String,
    pub kind: DisconnectKind,
    /// The tenant of a `User` request; empty for the other kinds (`value` names those, and a
    /// tenant's id there is the value itself).
    pub tenant_id: String,
    pub value: String,
    pub at: i64,
}

/// Exact counters of the four legs of relayed traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Counters {
    pub c2s_bytes: i64,
    pub c2s_packets: i64,
    pub s2p_bytes: i64,
    pub s2p_packets: i64,
    pub p2s_bytes: i64,
    pub p2s_packets: i64,
    pub s2c_bytes: i64,
    pub s2c_packets: i64,
    pub allocations: i64,
    pub allocation_seconds: i64,
}

impl Counters {
    /// All bytes that crossed the server's interfaces for this traffic (the billed total).
    pub fn total_bytes(&self) -> i64 {
        self.c2s_bytes + self.s2p_bytes + self.p2s_bytes + self.s2c_bytes
    }

    pub fn add(&mut self, o: &Self) {
        self.c2s_bytes += o.c2s_bytes;
        self.c2s_packets += o.c2s_packets;
        self.s2p_bytes += o.s2p_bytes;
        self.s2p_packets += o.s2p_packets;
        self.p2s_bytes += o.p2s_bytes;
        self.p2s_packets += o.p2s_packets;
        self.s2c_bytes += o.s2c_bytes;
        self.s2c_packets += o.s2c_packets;
        self.allocations += o.allocations;
        self.allocation_seconds += o.allocation_seconds;
    }
}

/// Counters to add to one hour of one tenant / credential / user id.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageDelta {
    pub tenant_id: TenantId,
    /// Empty for ephemeral credentials not tied to a stored one.
    pub credential_id: String,
    /// Empty when the credential carries no user id.
    pub user_id: String,
    /// Unix time / 3600.
    pub hour: i64,
    #[sqlx(flatten)]
    pub counters: Counters,
}

/// One stored hour of usage.
pub type UsageRow = UsageDelta;

/// A credential's or user's bytes over a range (summed in the database), with the stored
/// credential's username and label when `credential_id` names one that still exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyTotal {
    /// Empty for ephemeral credentials not tied to a stored one.
    pub credential_id: String,
    /// Empty when the credential carries no user id.
    pub user_id: String,
    pub username: Option<String>,
    pub label: Option<String>,
    /// All bytes of the four legs (the billed total, [`Counters::total_bytes`]).
    pub bytes: i64,
}

/// What a paged usage report is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKey {
    /// The user id (`user_id`; empty when the credential carries none).
    User,
    /// The stored credential (`credential_id`; empty for ephemeral credentials).
    Credential,
}

impl UsageKey {
    /// The `usage_hourly` column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::User => "user_id",
            Self::Credential => "credential_id",
        }
    }
}

/// One allocation, as logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AllocationRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub credential_id: String,
    pub user_id: String,
    pub username: String,
    pub client: String,
    pub transport: String,
    pub relay: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub c2s_bytes: i64,
    pub s2p_bytes: i64,
    pub p2s_bytes: i64,
    pub s2c_bytes: i64,
    pub peers: i64,
    /// The node that relayed it (empty in rows written before nodes were recorded): when that
    /// node is pruned from the registry, its rows still open are ended.
    pub node_id: String,
}

/// One audit log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: String,
    pub tenant_id: Option<TenantId>,
    pub at: i64,
    /// Key id (or `admin`) that made the change.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Non-secret detail (JSON text).
    pub detail: String,
}

/// Whose usage a quota limits: the whole tenant, or one of its credentials. Stored as
/// `tenant` or the credential's id (ids never read `tenant`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum QuotaScope {
    #[default]
    Tenant,
    Credential(CredentialId),
}

impl QuotaScope {
    /// `tenant` or the credential id.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tenant => "tenant",
            Self::Credential(id) => id,
        }
    }
}

impl From<String> for QuotaScope {
    fn from(s: String) -> Self {
        if s == "tenant" {
            Self::Tenant
        } else {
            Self::Credential(CredentialId::from(s))
        }
    }
}

impl From<&str> for QuotaScope {
    fn from(s: &str) -> Self {
        Self::from(s.to_string())
    }
}

impl fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The period a quota's bytes are counted over, in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    #[default]
    Month,
}

impl QuotaPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

impl TryFrom<String> for QuotaPeriod {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, UnknownName> {
        Self::parse(&name).ok_or(UnknownName {
            what: "quota period",
            name,
        })
    }
}

/// A quota of a tenant or of one of its credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Quota {
    pub tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    pub scope: QuotaScope,
    #[sqlx(try_from = "String")]
    pub period: QuotaPeriod,
    pub bytes_per_period: Option<i64>,
    pub max_allocations: Option<i64>,
    pub max_bitrate_bps: Option<i64>,
    pub throttle_bitrate_bps: Option<i64>,
    /// JSON `[{"percent":80,"action":"notify"}, ...]`.
    pub thresholds: String,
}

/// The body a tenant's webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Turnpike's own event (`type: quota.threshold`).
    #[default]
    Turnpike,
    /// Metered's project event (`event: project_quota_80_percent` / `project_quota_exceeded`).
    Metered,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Turnpike => "turnpike",
            Self::Metered => "metered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "turnpike" => Some(Self::Turnpike),
            "metered" => Some(Self::Metered),
            _ => None,
        }
    }
}

impl TryFrom<String> for WebhookFormat {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, UnknownName> {
        Self::parse(&name).ok_or(UnknownName {
            what: "webhook format",
            name,
        })
    }
}

/// Where a tenant's alerts go.
#[derive(Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationSettings {
    pub tenant_id: TenantId,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// One address, or several separated by commas.
    pub email_to: Option<String>,
    #[sqlx(try_from = "String")]
    pub webhook_format: WebhookFormat,
}

impl std::fmt::Debug for NotificationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSettings")
            .field("tenant_id", &self.tenant_id)
            .field("webhook_url", &self.webhook_url)
            .field("email_to", &self.email_to)
            .field("webhook_format", &self.webhook_format)
            .finish_non_exhaustive()
    }
}

/// A quota threshold that fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertEvent {
    pub id: String,
    pub tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    pub scope: QuotaScope,
    pub period_start: i64,
    pub percent: i64,
    pub action: String,
    pub bytes_used: i64,
    pub bytes_quota: i64,
    pub at: i64,
}

/// An entry of the client deny list: requests from addresses in `cidr` are refused.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeniedClient {
    pub id: String,
    /// Normalised network, e.g. `203.0.113.0/24` or `2001:db8::1/128`.
    pub cidr: String,
    pub note: Option<String>,
    pub created_at: i64,
}

/// What a row of the change feed says changed (issue 17): every write to these tables records
/// one, by trigger, in the same transaction, so no write path can forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeEntity {
    /// A stored credential; the key is its id.
    Credential,
    /// A tenant's shared secrets; the key is the tenant id.
    TenantSecrets,
    /// A tenant's revocations; the key is the tenant id.
    Revocations,
    /// A tenant's quotas; the key is the tenant id.
    Quotas,
    /// The client deny list; the key is the entry's id.
    DenyList,
    /// A tenant was deleted; the key is its id.
    Tenant,
}

impl ChangeEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credential => "credential",
            Self::TenantSecrets => "tenant_secrets",
            Self::Revocations => "revocations",
            Self::Quotas => "quotas",
            Self::DenyList => "deny_list",
            Self::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "credential" => Self::Credential,
            "tenant_secrets" => Self::TenantSecrets,
            "revocations" => Self::Revocations,
            "quotas" => Self::Quotas,
            "deny_list" => Self::DenyList,
            "tenant" => Self::Tenant,
            _ => return None,
        })
    }
}

/// One row of the change feed: what changed, not how; a reader reads the current state of
/// `key` (so applying a change twice, or late, is harmless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Ascending, assigned by the database. On PostgreSQL a lower number may become visible after
    /// a higher one (transactions commit out of order): readers track gaps.
    pub seq: i64,
    pub entity: ChangeEntity,
    pub key: String,
}
