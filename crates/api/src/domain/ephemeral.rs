//! Ephemeral credentials: minted on request from the tenant's newest shared secret (the TURN
//! REST API scheme, username `expiry:scope:user`, password `base64(HMAC-SHA1(secret,
//! username))`), never stored; revocable before expiry by username or user id (a denylist whose
//! entries lapse when the credentials would have expired).

use turnpike_proto::{Credentials, Disconnect};
use turnpike_store::{CredentialId, TenantId};
use turnpike_store::{Revocation, RevocationKind, Store};

use super::credentials::ANY_ORIGIN;
use super::error::{DomainError, DomainResult};
use super::{sync, validate};
use crate::state::AppState;

/// What to mint.
#[derive(Debug, Clone, Default)]
pub struct MintSpec {
    /// Lifetime in seconds (the configured default when not given; at most the maximum).
    pub ttl: Option<i64>,
    /// The tenant's user id (letters, digits, `._@+-`), recorded with usage and revocable.
    pub user_id: Option<String>,
    /// Tags recorded for this user id's usage.
    pub tags: Vec<String>,
}

/// A minted credential.
#[derive(Debug, Clone)]
pub struct Minted {
    pub username: String,
    pub password: String,
    pub ttl: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What to revoke: exactly one of an ephemeral username (until it expires) or a user id (for
/// the longest lifetime credentials can have).
#[derive(Debug, Clone, Default)]
pub struct RevokeSpec {
    pub username: Option<String>,
    pub user_id: Option<String>,
    /// Also close live allocations.
    pub disconnect: bool,
}

/// The tenant's newest live shared secret: what new credentials and join tokens are signed with.
pub async fn newest_secret(state: &AppState, tenant_id: &TenantId) -> DomainResult<Vec<u8>> {
    sync::tenant_secrets(state, tenant_id)
        .await
        .into_iter()
        .next()
        .ok_or_else(|| DomainError::conflict("the tenant has no live shared secret; rotate one in"))
}

/// Mints for a tenant (`credential`: scoped to one of its stored credentials instead).
pub async fn mint(
    state: &AppState,
    tenant_id: &TenantId,
    credential: Option<&str>,
    spec: &MintSpec,
) -> DomainResult<Minted> {
    crate::domain::tenants::ensure_active(state, tenant_id)?;
    let max = state.cfg.max_ttl as i64;
    let ttl = spec.ttl.unwrap_or(state.cfg.default_ttl as i64);
    if ttl < 1 || ttl > max {
        return Err(DomainError::invalid(format!(
            "`ttl` must be 1 to {max} seconds"
        )));
    }
    if let Some(u) = &spec.user_id {
        validate::ident("user_id", u, 64)?;
    }
    validate::tags(&spec.tags)?;
    let secret = newest_secret(state, tenant_id).await?;
    let expires_at = state.now() + ttl;
    let scope = credential.unwrap_or(tenant_id);
    let username = match &spec.user_id {
        Some(u) => format!("{expires_at}:{scope}:{u}"),
        None => format!("{expires_at}:{scope}"),
    };
    if let (Some(u), false) = (&spec.user_id, spec.tags.is_empty()) {
        state.store.set_user_tags(tenant_id, u, &spec.tags).await?;
    }
    let password = Credentials::shared_secret_password(&secret, &username);
    Ok(Minted {
        username,
        password,
        ttl,
        expires_at,
    })
}

/// Whether a publishable key with `origins` may be used from `origin`. `*` allows any (and no
/// `Origin` header); an empty list (stored by earlier versions when none was given) allows none.
pub fn origin_allowed(origins: &[String], origin: Option<&str>) -> bool {
    origins.iter().any(|a| a == ANY_ORIGIN)
        || origin.is_some_and(|o| origins.iter().any(|a| a == o))
}

/// Mints for a publishable key of `credential_id`, used from `origin`: only from an allowed
/// origin, and only while the credential is enabled and not expired.
pub async fn mint_for_publishable(
    state: &AppState,
    tenant_id: &TenantId,
    credential_id: &CredentialId,
    allowed_origins: &[String],
    origin: Option<&str>,
    spec: &MintSpec,
) -> DomainResult<Minted> {
    if !origin_allowed(allowed_origins, origin) {
        return Err(DomainError::forbidden("this origin may not use this key"));
    }
    let cred = state.store.get_credential(tenant_id, credential_id).await?;
    if !cred.enabled || cred.is_expired(state.now()) {
        return Err(DomainError::forbidden(
            "the key's credential is disabled or expired",
        ));
    }
    mint(state, tenant_id, Some(credential_id.as_str()), spec).await
}

/// Revokes an ephemeral username or user id of the tenant; returns what is stored.
pub async fn revoke(
    state: &AppState,
    tenant_id: &TenantId,
    spec: &RevokeSpec,
) -> DomainResult<Revocation> {
    let now = state.now();
    let (kind, value, expires_at, d) = match (&spec.username, &spec.user_id) {
        (Some(u), None) => {
            let Some((expiry, scope, _)) = turnpike_proto::directory::parse_ephemeral(u) else {
                return Err(DomainError::invalid(
                    "`username` is not an ephemeral username",
                ));
            };
            let owned = scope == tenant_id.as_str()
                || (scope.starts_with("cred_")
                    && state
                        .store
                        .get_credential(tenant_id, &CredentialId::from(scope))
                        .await
                        .is_ok());
            if !owned {
                return Err(DomainError::not_found("no such credential"));
            }
            (
                RevocationKind::Username,
                u.clone(),
                (expiry as i64).max(now + 1),
                Disconnect::Username(u.clone()),
            )
        }
        (None, Some(u)) => {
            validate::ident("user_id", u, 64)?;
            (
                RevocationKind::User,
                u.clone(),
                now + state.cfg.max_ttl as i64,
                Disconnect::User {
                    tenant_id: tenant_id.to_string(),
                    user_id: u.clone(),
                },
            )
        }
        _ => {
            return Err(DomainError::invalid(
                "give exactly one of `username` and `user_id`",
            ))
        }
    };
    let r = Revocation {
        tenant_id: tenant_id.clone(),
        kind,
        value,
        created_at: now,
        expires_at,
    };
    state.store.add_revocation(&r).await?;
    sync::after_change(state).await;
    if spec.disconnect {
        sync::disconnect(state, d).await;
    }
    Ok(r)
}

/// The tenant's revocations still in force.
pub async fn live_revocations(
    state: &AppState,
    tenant_id: &TenantId,
) -> DomainResult<Vec<Revocation>> {
    Ok(state
        .store
        .live_revocations(Some(tenant_id), state.now())
        .await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        let list = vec!["https://a.example".to_string()];
        assert!(!super::origin_allowed(&[], None));
        assert!(!super::origin_allowed(&[], Some("https://a.example")));
        let any = vec!["*".to_string()];
        assert!(super::origin_allowed(&any, None));
        assert!(super::origin_allowed(&any, Some("https://b.example")));
        assert!(super::origin_allowed(&list, Some("https://a.example")));
        assert!(!super::origin_allowed(&list, Some("https://b.example")));
        assert!(!super::origin_allowed(&list, None));
    }
}
