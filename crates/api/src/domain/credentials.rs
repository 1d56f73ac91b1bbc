//! Stored TURN credentials of a tenant: create (the password is returned once; only the
//! long-term keys are stored), list with cursor pagination and a label filter, enable or
//! disable, delete, delete by label, and publishable keys for front-ends. Changes reach the
//! relay before the operation returns; `disconnect` also closes live allocations.

use turnpike_proto::Disconnect;
use turnpike_store::{
    ApiKey, Credential, KeyKind, ListQuery, NewApiKey, NewCredential, Page, Store,
};
use turnpike_store::{CredentialId, CredentialState, TenantId};

use super::error::{DomainError, DomainResult};
use super::{sync, validate};
use crate::keys::{hash_key, key_prefix, long_term_keys, new_key, random_hex, random_token};
use crate::state::AppState;

/// The `allowed_origins` entry that allows any origin.
pub const ANY_ORIGIN: &str = "*";

/// The longest expiry accepted, in seconds from now (100 years).
const MAX_EXPIRY: i64 = 100 * 365 * 86_400;

/// A credential as asked for: what is not given is generated (username, password) or absent.
#[derive(Debug, Clone, Default)]
pub struct CredentialSpec {
    /// Letters, digits and `._@+-`, up to 128; unique within the tenant.
    pub username: Option<String>,
    /// 12 to 128 printable characters.
    pub password: Option<String>,
    pub label: Option<String>,
    pub tags: Vec<String>,
    /// Expiry in unix seconds, or ...
    pub expires_at: Option<i64>,
    /// ... in seconds from now.
    pub expires_in: Option<i64>,
}

/// Which of a tenant's credentials to list, and the page.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub label: Option<String>,
    pub include_expired: bool,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 1000; 100 when not given.
    pub limit: Option<u32>,
    /// Only credentials with this tag (case-insensitive).
    pub tag: Option<String>,
    /// `enabled` (and not expired), `disabled` or `expired`.
    pub state: Option<String>,
    /// Only credentials whose username or label contains this text (case-insensitive).
    pub search: Option<String>,
}

/// A change to a credential: only `enabled` may change (with `disconnect`, disabling also
/// closes live allocations).
#[derive(Debug, Clone, Default)]
pub struct CredentialUpdate {
    pub enabled: Option<bool>,
    pub label: Option<String>,
    pub disconnect: bool,
}

/// Creates a credential; returns it and its password (shown only now).
pub async fn create(
    state: &AppState,
    tenant_id: &TenantId,
    spec: &CredentialSpec,
) -> DomainResult<(Credential, String)> {
    crate::domain::tenants::ensure_active(state, tenant_id)?;
    let now = state.now();
    let username = match &spec.username {
        Some(u) => {
            validate::ident("username", u, 128)?;
            u.clone()
        }
        None => random_hex(12),
    };
    let password = match &spec.password {
        Some(p) => {
            if p.len() < 12 || p.len() > 128 || p.chars().any(|c| c.is_control()) {
                return Err(DomainError::invalid(
                    "`password` must be 12 to 128 printable characters",
                ));
            }
            p.clone()
        }
        None => random_token(18),
    };
    if let Some(l) = &spec.label {
        validate::text("label", l, 100)?;
    }
    validate::tags(&spec.tags)?;
    let expires_at = expiry(spec.expires_at, spec.expires_in, now)?;
    let (md5, sha) = long_term_keys(&username, &state.cfg.realm, &password);
    let c = state
        .store
        .create_credential(
            &NewCredential {
                tenant_id,
                username: &username,
                key_md5: &md5,
                key_sha256: &sha,
                label: spec.label.as_deref(),
                tags: &spec.tags,
                expires_at,
            },
            now,
        )
        .await?;
    sync::after_change(state).await;
    Ok((c, password))
}

/// The expiry in unix seconds from `expires_at` or `expires_in` (not both), if any.
fn expiry(at: Option<i64>, within: Option<i64>, now: i64) -> DomainResult<Option<i64>> {
    match (at, within) {
        (Some(_), Some(_)) => Err(DomainError::invalid(
            "give `expires_at` or `expires_in`, not both",
        )),
        (Some(t), None) if t <= now || t > now + MAX_EXPIRY => Err(DomainError::invalid(
            "`expires_at` must be a future unix time",
        )),
        (None, Some(s)) if s <= 0 || s > MAX_EXPIRY => Err(DomainError::invalid(
            "`expires_in` must be a positive number of seconds",
        )),
        (t, None) => Ok(t),
        (None, Some(s)) => Ok(Some(now + s)),
    }
}

/// One page of the tenant's credentials, by id.
pub async fn list(
    state: &AppState,
    tenant_id: &TenantId,
    filter: &ListFilter,
) -> DomainResult<Page<Credential>> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(DomainError::invalid("`limit` must be 1 to 1000"));
    }
    let state_filter = match filter.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(CredentialState::parse(s).ok_or_else(|| {
            DomainError::invalid("`state` must be `enabled`, `disabled` or `expired`")
        })?),
    };
    fn non_empty(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|t| !t.is_empty())
    }
    let q = ListQuery {
        label: filter.label.as_deref(),
        // Asking for expired credentials lists them.
        include_expired: filter.include_expired || state_filter == Some(CredentialState::Expired),
        cursor: filter.cursor.as_deref(),
        offset: 0,
        limit,
        tag: non_empty(&filter.tag),
        state: state_filter,
        search: non_empty(&filter.search),
    };
    Ok(state
        .store
        .list_credentials(tenant_id, &q, state.now())
        .await?)
}

/// Page `page` (from 1) of `per_page` of the tenant's credentials in id order, and how many
/// there are in all (Metered's page-numbered lists): counted and paged in SQL, so a page costs
/// the same whatever the number of credentials (but the count).
pub async fn numbered_page(
    state: &AppState,
    tenant_id: &TenantId,
    label: Option<&str>,
    include_expired: bool,
    page: usize,
    per_page: usize,
) -> DomainResult<(Vec<Credential>, usize)> {
    let now = state.now();
    let offset = page.saturating_sub(1).saturating_mul(per_page);
    let q = ListQuery {
        label,
        include_expired,
        cursor: None,
        offset: u32::try_from(offset).unwrap_or(u32::MAX),
        limit: u32::try_from(per_page).unwrap_or(1000),
        ..Default::default()
    };
    let total = state.store.count_credentials(tenant_id, &q, now).await?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    if offset >= total {
        return Ok((Vec::new(), total));
    }
    let items = state
        .store
        .list_credentials(tenant_id, &q, now)
        .await?
        .items;
    Ok((items, total))
}

/// Every credential of the tenant (with `label`, and expired ones if asked), page after page
/// (at most a million).
pub async fn all(
    state: &AppState,
    tenant_id: &TenantId,
    label: Option<&str>,
    include_expired: bool,
) -> DomainResult<Vec<Credential>> {
    let now = state.now();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = ListQuery {
            label,
            include_expired,
            cursor: cursor.as_deref(),
            limit: 1000,
            ..Default::default()
        };
        let page = state.store.list_credentials(tenant_id, &q, now).await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if out.len() < 1_000_000 => cursor = Some(c),
            _ => break,
        }
    }
    Ok(out)
}

pub async fn get(
    state: &AppState,
    tenant_id: &TenantId,
    id: &CredentialId,
) -> DomainResult<Credential> {
    Ok(state.store.get_credential(tenant_id, id).await?)
}

/// The tenant's credential with `username`.
pub async fn by_username(
    state: &AppState,
    tenant_id: &TenantId,
    username: &str,
) -> DomainResult<Credential> {
    state
        .store
        .credential_by_username(tenant_id, username)
        .await?
        .ok_or_else(|| DomainError::not_found("credential not found"))
}

/// Applies `update`; returns the credential as it is now.
pub async fn update(
    state: &AppState,
    tenant_id: &TenantId,
    id: &CredentialId,
    update: &CredentialUpdate,
) -> DomainResult<Credential> {
    if update.label.is_some() {
        return Err(DomainError::invalid(
            "`label` cannot be changed; create a new credential",
        ));
    }
    let Some(enabled) = update.enabled else {
        return Err(DomainError::invalid("nothing to change: give `enabled`"));
    };
    set_enabled(state, tenant_id, id, enabled, update.disconnect).await?;
    get(state, tenant_id, id).await
}

/// Enables or disables; with `disconnect`, disabling also closes live allocations.
pub async fn set_enabled(
    state: &AppState,
    tenant_id: &TenantId,
    id: &CredentialId,
    enabled: bool,
    disconnect: bool,
) -> DomainResult<()> {
    state
        .store
        .set_credential_enabled(tenant_id, id, enabled)
        .await?;
    sync::after_change(state).await;
    if disconnect && !enabled {
        sync::disconnect(state, Disconnect::Credential(id.to_string())).await;
    }
    Ok(())
}

/// Deletes; with `disconnect`, closes live allocations too.
pub async fn delete(
    state: &AppState,
    tenant_id: &TenantId,
    id: &CredentialId,
    disconnect: bool,
) -> DomainResult<()> {
    state.store.delete_credential(tenant_id, id).await?;
    sync::after_change(state).await;
    if disconnect {
        sync::disconnect(state, Disconnect::Credential(id.to_string())).await;
    }
    Ok(())
}

/// Deletes the tenant's credentials with `label`; returns how many.
pub async fn delete_by_label(
    state: &AppState,
    tenant_id: &TenantId,
    label: &str,
    disconnect: bool,
) -> DomainResult<u64> {
    validate::text("label", label, 100)?;
    let gone = state
        .store
        .delete_credentials_by_label(tenant_id, label)
        .await?;
    sync::after_change(state).await;
    if disconnect {
        for c in &gone {
            sync::disconnect(state, Disconnect::Credential(c.id.to_string())).await;
        }
    }
    Ok(gone.len() as u64)
}

/// A publishable key for one of the tenant's credentials, usable from `origins` (at least one;
/// [`ANY_ORIGIN`] for any). Returns the key (shown only now) and what is stored of it.
pub async fn publishable_key(
    state: &AppState,
    tenant_id: &TenantId,
    credential_id: &CredentialId,
    origins: &[String],
) -> DomainResult<(String, ApiKey)> {
    check_origins(origins)?;
    state.store.get_credential(tenant_id, credential_id).await?;
    let key = new_key(KeyKind::Publishable);
    let info = state
        .store
        .create_api_key(
            &NewApiKey {
                tenant_id: Some(tenant_id),
                kind: KeyKind::Publishable,
                credential_id: Some(credential_id),
                allowed_origins: origins,
                key_hash: &hash_key(&key),
                prefix: &key_prefix(&key),
                expires_at: None,
            },
            state.now(),
        )
        .await?;
    Ok((key, info))
}

fn check_origins(origins: &[String]) -> DomainResult<()> {
    if origins.is_empty() {
        return Err(DomainError::invalid(
            "`allowed_origins` must list the origins that may use the key (e.g. \
             [\"https://app.example.com\"]), or [\"*\"] to allow any",
        ));
    }
    if origins.len() > 32 {
        return Err(DomainError::invalid("at most 32 `allowed_origins`"));
    }
    for o in origins.iter().filter(|o| *o != ANY_ORIGIN) {
        validate::text("allowed_origins[]", o, 200)?;
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            return Err(DomainError::invalid(
                "`allowed_origins[]` must look like https://app.example.com (scheme, host, optional port, no path)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_absolute_or_relative_never_both() {
        let now = 1_000_000;
        assert_eq!(expiry(None, None, now).ok(), Some(None));
        assert_eq!(expiry(Some(now + 5), None, now).ok(), Some(Some(now + 5)));
        assert_eq!(expiry(None, Some(60), now).ok(), Some(Some(now + 60)));
        assert!(expiry(Some(now), None, now).is_err());
        assert!(expiry(None, Some(0), now).is_err());
        assert!(expiry(Some(now + 5), Some(5), now).is_err());
        assert!(expiry(None, Some(MAX_EXPIRY + 1), now).is_err());
    }

    #[test]
    fn origins_are_explicit() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_origins(&v(&["*"])).is_ok());
        assert!(check_origins(&v(&["https://a.example", "http://b.example:8080"])).is_ok());
        assert!(check_origins(&[]).is_err());
        assert!(check_origins(&v(&["https://a.example/"])).is_err());
        assert!(check_origins(&v(&["a.example"])).is_err());
    }
}
