//! Who a key belongs to: the operator (admin key), a tenant (its secret key), a front-end
//! holding a credential's publishable key, or a project. Looked up by the key's SHA-256 hash,
//! so a console session (which keeps only the hash) re-checks its key on every request.

use turnpike_store::{CredentialId, KeyKind, Store, TenantId};

use super::error::{ApiError, ApiResult};
use crate::keys::{constant_time_eq, hash_key};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub enum Principal {
    Admin {
        key_id: String,
    },
    Tenant {
        tenant_id: TenantId,
        key_id: String,
    },
    Publishable {
        tenant_id: TenantId,
        credential_id: CredentialId,
        key_id: String,
        allowed_origins: Vec<String>,
    },
    /// A project's key (Metered's `projectApiKey`): the project endpoints of the
    /// Metered-compatible API, for that project (a child tenant) only.
    Project {
        tenant_id: TenantId,
        key_id: String,
    },
}

impl Principal {
    pub fn key_id(&self) -> &str {
        match self {
            Self::Admin { key_id }
            | Self::Tenant { key_id, .. }
            | Self::Publishable { key_id, .. }
            | Self::Project { key_id, .. } => key_id,
        }
    }

    /// The tenant a non-admin key belongs to.
    pub fn tenant_id(&self) -> Option<&TenantId> {
        match self {
            Self::Admin { .. } => None,
            Self::Tenant { tenant_id, .. }
            | Self::Publishable { tenant_id, .. }
            | Self::Project { tenant_id, .. } => Some(tenant_id),
        }
    }

    /// The tenant of a tenant key; 403 for anything else.
    pub fn tenant(&self) -> ApiResult<&TenantId> {
        match self {
            Self::Tenant { tenant_id, .. } => Ok(tenant_id),
            Self::Admin { .. } => Err(ApiError::forbidden(
                "this endpoint needs a tenant's secret key, not the admin key",
            )),
            Self::Publishable { .. } => Err(ApiError::forbidden(
                "a publishable key may only fetch ICE servers",
            )),
            Self::Project { .. } => Err(ApiError::forbidden(
                "a project key may only use the project endpoints of the Metered-compatible API",
            )),
        }
    }

    pub fn admin(&self) -> ApiResult<()> {
        match self {
            Self::Admin { .. } => Ok(()),
            _ => Err(ApiError::forbidden("this endpoint needs the admin key")),
        }
    }
}

/// Who holds `key`: 401 if nobody (or a revoked or expired key).
pub(crate) async fn identify(state: &AppState, key: &str) -> ApiResult<Principal> {
    if key.len() > 256 {
        return Err(ApiError::unauthorized("invalid API key"));
    }
    identify_hash(state, &hash_key(key)).await
}

/// Who holds the key whose SHA-256 is `h`: 401 if nobody (or a revoked or expired key).
pub(crate) async fn identify_hash(state: &AppState, h: &[u8; 32]) -> ApiResult<Principal> {
    if state
        .cfg
        .admin_key_hash
        .is_some_and(|a| constant_time_eq(&a, h))
    {
        return Ok(Principal::Admin {
            key_id: "admin".into(),
        });
    }
    let k = state
        .store
        .api_key_by_hash(h)
        .await?
        .filter(|k| k.is_live(state.now()))
        .ok_or_else(|| ApiError::unauthorized("invalid, expired or revoked API key"))?;
    Ok(match (k.kind, k.tenant_id) {
        (KeyKind::Admin, _) => Principal::Admin { key_id: k.id },
        (KeyKind::Secret, Some(t)) => Principal::Tenant {
            tenant_id: t,
            key_id: k.id,
        },
        (KeyKind::Publishable, Some(t)) => Principal::Publishable {
            tenant_id: t,
            credential_id: k.credential_id.unwrap_or_default(),
            key_id: k.id,
            allowed_origins: k.allowed_origins,
        },
        (KeyKind::Project, Some(t)) => Principal::Project {
            tenant_id: t,
            key_id: k.id,
        },
        _ => return Err(ApiError::unauthorized("invalid API key")),
    })
}
