//! Plain values stored and returned.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: Option<String>,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

/// A credential to create: the long-term keys are derived by the caller (the password itself
/// is never stored).
#[derive(Debug, Clone)]
pub struct NewCredential<'a> {
    pub tenant_id: &'a str,
    pub username: &'a str,
    pub key_md5: &'a [u8],
    pub key_sha256: &'a [u8],
    pub label: Option<&'a str>,
    pub expires_at: Option<i64>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub tenant_id: String,
    pub username: String,
    pub key_md5: Vec<u8>,
    pub key_sha256: Vec<u8>,
    pub label: Option<String>,
    pub enabled: bool,
    pub expires_at: Option<i64>,
    pub created_at: i64,
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
    pub limit: u32,
}

/// One page and the cursor of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Counters to add to one hour of one credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub tenant_id: String,
    pub credential_id: String,
    /// Unix time / 3600.
    pub hour: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub packets_in: i64,
    pub packets_out: i64,
    pub allocations: i64,
}

/// One stored hour of usage.
pub type UsageRow = UsageDelta;
