//! Stored TURN credentials of a tenant: create (password shown once; only the long-term keys are
//! stored), list with cursor pagination and label filter, get, enable/disable, delete, delete by
//! label, and publishable keys for front-ends. Changes reach the relay at once; `disconnect`
//! also closes live allocations.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_proto::Disconnect;
use turnpike_store::{Credential, KeyKind, ListQuery, NewApiKey, NewCredential, Store};
use utoipa::{IntoParams, ToSchema};

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::keys::{hash_key, key_prefix, long_term_keys, new_key, random_hex, random_token};
use crate::state::{unix_now, AppState, Shared};
use crate::tenants::{CreatedKey, KeyOut};
use crate::util::{check_ident, check_tags, check_text, idempotent};

/// Stored credentials and their publishable keys.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/credentials",
            post(create_credential)
                .get(list_credentials)
                .delete(delete_by_label),
        )
        .route(
            "/v1/credentials/{id}",
            get(get_credential)
                .patch(update_credential)
                .delete(delete_credential),
        )
        .route(
            "/v1/credentials/{id}/publishable-keys",
            post(create_publishable_key),
        )
}

#[derive(Serialize, ToSchema)]
pub struct CredentialOut {
    pub id: String,
    pub username: String,
    pub label: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<i64>,
    pub expired: bool,
    pub created_at: i64,
}

impl CredentialOut {
    pub fn new(c: Credential, now: i64) -> Self {
        Self {
            expired: c.is_expired(now),
            id: c.id,
            username: c.username,
            label: c.label,
            tags: c.tags,
            enabled: c.enabled,
            expires_at: c.expires_at,
            created_at: c.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// TURN username (letters, digits, `._@+-`, up to 128), unique within the tenant;
    /// generated when absent. Other tenants may use the same name, but not with the same
    /// password (409: choose another password).
    pub username: Option<String>,
    /// TURN password (12 to 128 printable characters); generated when absent.
    pub password: Option<String>,
    pub label: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Expiry in unix seconds.
    pub expires_at: Option<i64>,
    /// Expiry as seconds from now (instead of `expires_at`).
    pub expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedCredential {
    pub credential: CredentialOut,
    /// The TURN password. Shown only now.
    pub password: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only credentials with this label.
    pub label: Option<String>,
    /// Include expired credentials (default false).
    pub include_expired: Option<bool>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialPage {
    pub items: Vec<CredentialOut>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    pub enabled: Option<bool>,
    pub label: Option<String>,
    /// With `enabled: false`: also close the credential's live allocations.
    #[serde(default)]
    pub disconnect: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DisconnectParams {
    /// Also close live allocations (default false).
    pub disconnect: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LabelParams {
    pub label: String,
    /// Also close live allocations (default false).
    pub disconnect: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatePublishableKey {
    /// `Origin` values allowed to use the key (e.g. `https://app.example.com`), at least one;
    /// `"*"` allows any origin (and requests without one).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// Creates a credential (shared with the compatibility API).
pub async fn create(
    state: &AppState,
    tenant: &str,
    req: &CreateCredential,
) -> ApiResult<(Credential, String)> {
    let now = unix_now();
    let username = match &req.username {
        Some(u) => {
            check_ident("username", u, 128)?;
            u.clone()
        }
        None => random_hex(12),
    };
    let password = match &req.password {
        Some(p) => {
            if p.len() < 12 || p.len() > 128 || p.chars().any(|c| c.is_control()) {
                return Err(ApiError::invalid(
                    "`password` must be 12 to 128 printable characters",
                ));
            }
            p.clone()
        }
        None => random_token(18),
    };
    if let Some(l) = &req.label {
        check_text("label", l, 100)?;
    }
    check_tags(&req.tags)?;
    let expires_at = match (req.expires_at, req.expires_in) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give `expires_at` or `expires_in`, not both",
            ))
        }
        (Some(t), None) if t <= now || t > now + 100 * 365 * 86_400 => {
            return Err(ApiError::invalid("`expires_at` must be a future unix time"))
        }
        (None, Some(s)) if s <= 0 || s > 100 * 365 * 86_400 => {
            return Err(ApiError::invalid(
                "`expires_in` must be a positive number of seconds",
            ))
        }
        (t, None) => t,
        (None, Some(s)) => Some(now + s),
    };
    let (md5, sha) = long_term_keys(&username, &state.cfg.realm, &password);
    let c = state
        .store
        .create_credential(
            &NewCredential {
                tenant_id: tenant,
                username: &username,
                key_md5: &md5,
                key_sha256: &sha,
                label: req.label.as_deref(),
                tags: &req.tags,
                expires_at,
            },
            now,
        )
        .await?;
    crate::sync::after_change(state).await;
    Ok((c, password))
}

/// Enables or disables; with `disconnect`, closes live allocations too.
pub async fn set_enabled(
    state: &AppState,
    tenant: &str,
    id: &str,
    enabled: bool,
    disconnect: bool,
) -> ApiResult<()> {
    state
        .store
        .set_credential_enabled(tenant, id, enabled)
        .await?;
    crate::sync::after_change(state).await;
    if disconnect && !enabled {
        crate::sync::disconnect(state, Disconnect::Credential(id.to_string())).await;
    }
    Ok(())
}

/// Deletes; with `disconnect`, closes live allocations too.
pub async fn delete(state: &AppState, tenant: &str, id: &str, disconnect: bool) -> ApiResult<()> {
    state.store.delete_credential(tenant, id).await?;
    crate::sync::after_change(state).await;
    if disconnect {
        crate::sync::disconnect(state, Disconnect::Credential(id.to_string())).await;
    }
    Ok(())
}

/// Deletes by label; returns how many.
pub async fn delete_label(
    state: &AppState,
    tenant: &str,
    label: &str,
    disconnect: bool,
) -> ApiResult<u64> {
    check_text("label", label, 100)?;
    let gone = state
        .store
        .delete_credentials_by_label(tenant, label)
        .await?;
    crate::sync::after_change(state).await;
    if disconnect {
        for c in &gone {
            crate::sync::disconnect(state, Disconnect::Credential(c.id.clone())).await;
        }
    }
    Ok(gone.len() as u64)
}

/// The `allowed_origins` entry that allows any origin.
pub const ANY_ORIGIN: &str = "*";

/// A publishable key for a credential, for `origins` (at least one; [`ANY_ORIGIN`] for any).
pub async fn publishable_key(
    state: &AppState,
    tenant: &str,
    credential_id: &str,
    origins: &[String],
) -> ApiResult<(String, turnpike_store::ApiKey)> {
    if origins.is_empty() {
        return Err(ApiError::invalid(
            "`allowed_origins` must list the origins that may use the key (e.g. \
             [\"https://app.example.com\"]), or [\"*\"] to allow any",
        ));
    }
    if origins.len() > 32 {
        return Err(ApiError::invalid("at most 32 `allowed_origins`"));
    }
    for o in origins {
        if o == ANY_ORIGIN {
            continue;
        }
        check_text("allowed_origins[]", o, 200)?;
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            return Err(ApiError::invalid(
                "`allowed_origins[]` must look like https://app.example.com (scheme, host, optional port, no path)",
            ));
        }
    }
    state.store.get_credential(tenant, credential_id).await?;
    let key = new_key(KeyKind::Publishable);
    let h = hash_key(&key);
    let info = state
        .store
        .create_api_key(
            &NewApiKey {
                tenant_id: Some(tenant),
                kind: KeyKind::Publishable,
                credential_id: Some(credential_id),
                allowed_origins: origins,
                key_hash: &h,
                prefix: &key_prefix(&key),
                expires_at: None,
            },
            unix_now(),
        )
        .await?;
    Ok((key, info))
}

#[utoipa::path(post, path = "/v1/credentials", tag = "credentials", request_body = CreateCredential,
    responses((status = 201, body = CreatedCredential), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_credential(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: TenantCaller,
    Body(req): Body<CreateCredential>,
) -> Result<Response, ApiError> {
    let t = who.tenant_id.clone();
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let (c, password) = create(&state, &t, &req).await?;
            who.audit(
                &state,
                "credential.create",
                &c.id,
                serde_json::json!({"username": c.username, "label": c.label}),
            )
            .await;
            Ok(CreatedCredential {
                credential: CredentialOut::new(c, unix_now()),
                password,
            })
        })
        .await,
    )
}

#[utoipa::path(get, path = "/v1/credentials", tag = "credentials", params(ListParams),
    responses((status = 200, body = CredentialPage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_credentials(
    State(state): State<Shared>,
    Query(p): Query<ListParams>,
    who: TenantCaller,
) -> ApiResult<Json<CredentialPage>> {
    let t = &who.tenant_id;
    let now = unix_now();
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be 1 to 1000"));
    }
    let page = state
        .store
        .list_credentials(
            t,
            &ListQuery {
                label: p.label.as_deref(),
                include_expired: p.include_expired.unwrap_or(false),
                cursor: p.cursor.as_deref(),
                limit,
            },
            now,
        )
        .await?;
    Ok(Json(CredentialPage {
        items: page
            .items
            .into_iter()
            .map(|c| CredentialOut::new(c, now))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = CredentialOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_credential(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: TenantCaller,
) -> ApiResult<Json<CredentialOut>> {
    let t = &who.tenant_id;
    Ok(Json(CredentialOut::new(
        state.store.get_credential(t, &id).await?,
        unix_now(),
    )))
}

#[utoipa::path(patch, path = "/v1/credentials/{id}", tag = "credentials", request_body = UpdateCredential,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = CredentialOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_credential(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: TenantCaller,
    Body(req): Body<UpdateCredential>,
) -> ApiResult<Json<CredentialOut>> {
    let t = who.tenant_id.clone();
    if req.label.is_some() {
        return Err(ApiError::invalid(
            "`label` cannot be changed; create a new credential",
        ));
    }
    let Some(enabled) = req.enabled else {
        return Err(ApiError::invalid("nothing to change: give `enabled`"));
    };
    set_enabled(&state, &t, &id, enabled, req.disconnect).await?;
    let action = if enabled {
        "credential.enable"
    } else {
        "credential.disable"
    };
    who.audit(
        &state,
        action,
        &id,
        serde_json::json!({"disconnect": req.disconnect}),
    )
    .await;
    Ok(Json(CredentialOut::new(
        state.store.get_credential(&t, &id).await?,
        unix_now(),
    )))
}

#[utoipa::path(delete, path = "/v1/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id"), DisconnectParams),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_credential(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<DisconnectParams>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    let t = who.tenant_id.clone();
    let disconnect = p.disconnect.unwrap_or(false);
    delete(&state, &t, &id, disconnect).await?;
    who.audit(
        &state,
        "credential.delete",
        &id,
        serde_json::json!({"disconnect": disconnect}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/credentials", tag = "credentials", params(LabelParams),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_by_label(
    State(state): State<Shared>,
    Query(p): Query<LabelParams>,
    who: TenantCaller,
) -> ApiResult<Json<Deleted>> {
    let t = who.tenant_id.clone();
    let disconnect = p.disconnect.unwrap_or(false);
    let deleted = delete_label(&state, &t, &p.label, disconnect).await?;
    who.audit(
        &state,
        "credential.delete_by_label",
        &p.label,
        serde_json::json!({"deleted": deleted, "disconnect": disconnect}),
    )
    .await;
    Ok(Json(Deleted { deleted }))
}

#[utoipa::path(post, path = "/v1/credentials/{id}/publishable-keys", tag = "credentials", request_body = CreatePublishableKey,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_publishable_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    who: TenantCaller,
    Body(req): Body<CreatePublishableKey>,
) -> Result<Response, ApiError> {
    let t = who.tenant_id.clone();
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let (key, info) = publishable_key(&state, &t, &id, &req.allowed_origins).await?;
            who.audit(
                &state,
                "publishable_key.create",
                &info.id,
                serde_json::json!({"credential_id": id, "allowed_origins": req.allowed_origins}),
            )
            .await;
            Ok(CreatedKey {
                key,
                info: KeyOut::from(info),
            })
        })
        .await,
    )
}
