//! Rows as the queries of [`super::queries`] return them, where they differ from the model
//! types (which derive `sqlx::FromRow` themselves when a row is the value): lists stored one
//! item per line, and kinds stored by name.

use crate::{
    ApiKey, Change, ChangeEntity, Credential, CredentialId, DisconnectKind, DisconnectRequest,
    KeyKind, Page, Revocation, RevocationKind, StoreError, TenantId,
};

/// Lists are stored one item per line (items are validated to hold no newline).
pub(super) fn join_lines(v: &[String]) -> String {
    v.join("\n")
}

fn split_lines(s: Option<String>) -> Vec<String> {
    s.map(|s| {
        s.split('\n')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    id: String,
    tenant_id: Option<TenantId>,
    kind: String,
    credential_id: Option<CredentialId>,
    allowed_origins: Option<String>,
    prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked: bool,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            tenant_id: r.tenant_id,
            kind: KeyKind::parse(&r.kind).ok_or(StoreError::Corrupt("api_keys.kind"))?,
            credential_id: r.credential_id,
            allowed_origins: split_lines(r.allowed_origins),
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked: r.revoked,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialRow {
    id: CredentialId,
    tenant_id: TenantId,
    username: String,
    key_md5: Vec<u8>,
    key_sha256: Vec<u8>,
    label: Option<String>,
    tags: Option<String>,
    enabled: bool,
    expires_at: Option<i64>,
    created_at: i64,
}

impl From<CredentialRow> for Credential {
    fn from(r: CredentialRow) -> Self {
        Self {
            id: r.id,
            tenant_id: r.tenant_id,
            username: r.username,
            key_md5: r.key_md5,
            key_sha256: r.key_sha256,
            label: r.label,
            tags: split_lines(r.tags),
            enabled: r.enabled,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

/// A page of at most `limit` credentials from `limit + 1` rows; the cursor is the last id when
/// there are more.
pub(super) fn page(rows: Vec<CredentialRow>, limit: usize) -> Page<Credential> {
    let mut items: Vec<Credential> = rows.into_iter().map(Into::into).collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|c| c.id.to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

#[derive(sqlx::FromRow)]
pub(super) struct RevocationRow {
    tenant_id: TenantId,
    kind: String,
    value: String,
    created_at: i64,
    expires_at: i64,
}

impl RevocationRow {
    /// The revocation, unless its kind is unknown to this version (written by a newer node):
    /// then none, with a warning.
    pub(super) fn known(self) -> Option<Revocation> {
        let Some(kind) = RevocationKind::parse(&self.kind) else {
            tracing::warn!(kind = %self.kind, "unknown revocation kind; ignored");
            return None;
        };
        Some(Revocation {
            tenant_id: self.tenant_id,
            kind,
            value: self.value,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DisconnectRow {
    id: i64,
    node: String,
    kind: String,
    tenant_id: String,
    value: String,
    at: i64,
}

impl DisconnectRow {
    /// The request, unless its kind is unknown to this version (written by a newer node): then
    /// none, with a warning.
    pub(super) fn known(self) -> Option<DisconnectRequest> {
        let Some(kind) = DisconnectKind::parse(&self.kind) else {
            tracing::warn!(kind = %self.kind, "unknown disconnect request kind; ignored");
            return None;
        };
        Some(DisconnectRequest {
            id: self.id,
            node: self.node,
            kind,
            tenant_id: self.tenant_id,
            value: self.value,
            at: self.at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserTagsRow {
    user_id: String,
    tags: Option<String>,
}

impl From<UserTagsRow> for (String, Vec<String>) {
    fn from(r: UserTagsRow) -> Self {
        (r.user_id, split_lines(r.tags))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ChangeRow {
    seq: i64,
    entity: String,
    key: String,
}

impl ChangeRow {
    /// The change, unless its entity is unknown to this version (written by a newer node): then
    /// none, with a warning.
    pub(super) fn known(self) -> Option<Change> {
        let Some(entity) = ChangeEntity::parse(&self.entity) else {
            tracing::warn!(entity = %self.entity, "unknown change feed entity; ignored");
            return None;
        };
        Some(Change {
            seq: self.seq,
            entity,
            key: self.key,
        })
    }
}
