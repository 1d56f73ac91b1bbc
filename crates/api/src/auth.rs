//! Who is calling: the operator (admin key), a tenant (its secret key) or a front-end holding a
//! credential's publishable key. Keys come in `Authorization: Bearer <key>`; the compatibility
//! endpoints also take Metered's `?secretKey=` / `?apiKey=`. Every authenticated request takes a
//! token from its key's rate-limit bucket.

use axum::http::HeaderMap;
use turnpike_store::{KeyKind, Store};

use crate::error::{ApiError, ApiResult};
use crate::keys::{constant_time_eq, hash_key};
use crate::state::{unix_now, AppState};

#[derive(Debug, Clone)]
pub enum Principal {
    Admin {
        key_id: String,
    },
    Tenant {
        tenant_id: String,
        key_id: String,
    },
    Publishable {
        tenant_id: String,
        credential_id: String,
        key_id: String,
        allowed_origins: Vec<String>,
    },
}

impl Principal {
    pub fn key_id(&self) -> &str {
        match self {
            Principal::Admin { key_id }
            | Principal::Tenant { key_id, .. }
            | Principal::Publishable { key_id, .. } => key_id,
        }
    }

    /// The tenant of a tenant key; 403 for anything else.
    pub fn tenant(&self) -> ApiResult<&str> {
        match self {
            Principal::Tenant { tenant_id, .. } => Ok(tenant_id),
            Principal::Admin { .. } => Err(ApiError::forbidden(
                "this endpoint needs a tenant's secret key, not the admin key",
            )),
            Principal::Publishable { .. } => Err(ApiError::forbidden(
                "a publishable key may only fetch ICE servers",
            )),
        }
    }

    pub fn admin(&self) -> ApiResult<()> {
        match self {
            Principal::Admin { .. } => Ok(()),
            _ => Err(ApiError::forbidden("this endpoint needs the admin key")),
        }
    }
}

/// The key in `Authorization: Bearer`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Authenticates `key` (from a header or, for compatibility routes, the query).
pub async fn authenticate(state: &AppState, key: Option<&str>) -> ApiResult<Principal> {
    let key = key.ok_or_else(|| {
        ApiError::unauthorized("missing API key: send `Authorization: Bearer <key>`")
    })?;
    if key.len() > 256 {
        return Err(ApiError::unauthorized("invalid API key"));
    }
    let h = hash_key(key);
    let principal = if state
        .cfg
        .admin_key_hash
        .is_some_and(|a| constant_time_eq(&a, &h))
    {
        Principal::Admin {
            key_id: "admin".into(),
        }
    } else {
        let k = state
            .store
            .api_key_by_hash(&h)
            .await?
            .filter(|k| k.is_live(unix_now()))
            .ok_or_else(|| ApiError::unauthorized("invalid, expired or revoked API key"))?;
        match (k.kind, k.tenant_id) {
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
            _ => return Err(ApiError::unauthorized("invalid API key")),
        }
    };
    state
        .take_token(principal.key_id())
        .map_err(ApiError::rate_limited)?;
    Ok(principal)
}

/// The caller of a `/v1` endpoint (bearer key).
pub async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    authenticate(state, bearer(headers)).await
}
