//! Tenants (admin key) and a tenant's own keys and shared secrets (tenant key): create, list,
//! delete, rotate with an overlap window. Keys and secrets are returned once, at creation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_store::{ApiKey, KeyKind, NewApiKey, Store, Tenant};
use utoipa::ToSchema;

use crate::auth::{AdminCaller, Caller, Principal, TenantCaller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Path};
use crate::keys::{hash_key, key_prefix, new_key, random_token};
use crate::state::{unix_now, AppState, Shared};
use crate::util::{check_text, idempotent};

/// The operator's tenant endpoints and a tenant's own keys and shared secrets.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{id}", get(get_tenant).delete(delete_tenant))
        .route("/v1/tenants/{id}/keys/rotate", post(admin_rotate_key))
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/rotate", post(tenant_rotate_key))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/shared-secrets/rotate", post(rotate_shared_secret))
}

#[derive(Serialize, ToSchema)]
pub struct TenantOut {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Display name (1 to 100 characters).
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: TenantOut,
    /// The tenant's secret API key. Shown only now.
    pub secret_key: String,
    /// The tenant's shared secret for minting ephemeral TURN credentials itself (TURN REST API
    /// style). Shown only now.
    pub shared_secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// `secret` or `publishable`.
    pub kind: String,
    pub prefix: String,
    pub credential_id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl From<ApiKey> for KeyOut {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            kind: k.kind.as_str().into(),
            prefix: k.prefix,
            credential_id: k.credential_id,
            allowed_origins: k.allowed_origins,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked: k.revoked,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old keys (or secrets) keep working, in seconds (0 to 30 days; default 3600).
    pub overlap_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The new key. Shown only now.
    pub key: String,
    pub info: KeyOut,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedSecret {
    pub id: String,
    /// The new shared secret. Shown only now.
    pub shared_secret: String,
    /// When the previous secrets stop working.
    pub previous_expire_at: i64,
}

pub async fn new_secret_key(state: &AppState, tenant_id: &str) -> ApiResult<(String, ApiKey)> {
    let key = new_key(KeyKind::Secret);
    let h = hash_key(&key);
    let info = state
        .store
        .create_api_key(
            &NewApiKey {
                tenant_id: Some(tenant_id),
                kind: KeyKind::Secret,
                credential_id: None,
                allowed_origins: &[],
                key_hash: &h,
                prefix: &key_prefix(&key),
                expires_at: None,
            },
            unix_now(),
        )
        .await?;
    Ok((key, info))
}

async fn new_shared_secret(state: &AppState, tenant_id: &str) -> ApiResult<(String, String)> {
    let secret = random_token(32);
    let s = state
        .store
        .add_tenant_secret(tenant_id, secret.as_bytes(), unix_now())
        .await?;
    Ok((s.id, secret))
}

fn overlap(r: &Rotate) -> ApiResult<i64> {
    let o = r.overlap_seconds.unwrap_or(3600);
    if !(0..=30 * 86_400).contains(&o) {
        return Err(ApiError::invalid(
            "`overlap_seconds` must be between 0 and 2592000",
        ));
    }
    Ok(o)
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: AdminCaller,
    Body(req): Body<CreateTenant>,
) -> Result<Response, ApiError> {
    check_text("name", &req.name, 100)?;
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let t = state.store.create_tenant(&req.name, unix_now()).await?;
            let (secret_key, _) = new_secret_key(&state, &t.id).await?;
            let (_, shared_secret) = new_shared_secret(&state, &t.id).await?;
            who.audit(
                &state,
                "tenant.create",
                &t.id,
                serde_json::json!({"name": t.name}),
            )
            .await;
            crate::sync::after_change(&state).await;
            Ok(CreatedTenant {
                tenant: t.into(),
                secret_key,
                shared_secret,
            })
        })
        .await,
    )
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = Vec<TenantOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<Shared>,
    _: AdminCaller,
) -> ApiResult<Json<Vec<TenantOut>>> {
    Ok(Json(
        state
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: Caller,
) -> ApiResult<Json<TenantOut>> {
    // A tenant may read itself; the admin any tenant.
    if let Principal::Tenant { tenant_id, .. } = &who.principal {
        if *tenant_id != id {
            return Err(ApiError::not_found("no such object"));
        }
    } else {
        who.principal.admin()?;
    }
    Ok(Json(state.store.get_tenant(&id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_tenant(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: AdminCaller,
) -> ApiResult<StatusCode> {
    state.store.delete_tenant(&id).await?;
    crate::sync::disconnect(&state, turnpike_proto::Disconnect::Tenant(id.clone())).await;
    who.audit(&state, "tenant.delete", &id, serde_json::json!({}))
        .await;
    crate::sync::after_change(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_key(
    state: &AppState,
    actor: &str,
    tenant_id: &str,
    r: &Rotate,
) -> ApiResult<CreatedKey> {
    let o = overlap(r)?;
    state.store.get_tenant(tenant_id).await?;
    state
        .store
        .expire_api_keys(tenant_id, KeyKind::Secret, unix_now() + o)
        .await?;
    let (key, info) = new_secret_key(state, tenant_id).await?;
    crate::audit::record(
        state,
        actor,
        Some(tenant_id),
        "key.rotate",
        &info.id,
        serde_json::json!({"overlap_seconds": o}),
    )
    .await;
    Ok(CreatedKey {
        key,
        info: info.into(),
    })
}

#[utoipa::path(post, path = "/v1/tenants/{id}/keys/rotate", tag = "tenants", request_body = Rotate,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn admin_rotate_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: AdminCaller,
    Body(r): Body<Rotate>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    Ok((
        StatusCode::CREATED,
        Json(rotate_key(&state, &who.key_id, &id, &r).await?),
    ))
}

#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", request_body = Rotate,
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tenant_rotate_key(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(r): Body<Rotate>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let t = who.tenant_id.clone();
    Ok((
        StatusCode::CREATED,
        Json(rotate_key(&state, &who.key_id, &t, &r).await?),
    ))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<KeyOut>>> {
    let t = &who.tenant_id;
    Ok(Json(
        state
            .store
            .list_api_keys(t)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    let t = who.tenant_id.clone();
    state.store.revoke_api_key(Some(&t), &id).await?;
    who.audit(&state, "key.revoke", &id, serde_json::json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/shared-secrets/rotate", tag = "keys", request_body = Rotate,
    responses((status = 201, body = CreatedSecret), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_shared_secret(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(r): Body<Rotate>,
) -> ApiResult<(StatusCode, Json<CreatedSecret>)> {
    let t = who.tenant_id.clone();
    let o = overlap(&r)?;
    let until = unix_now() + o;
    state.store.expire_tenant_secrets(&t, until).await?;
    let (id, shared_secret) = new_shared_secret(&state, &t).await?;
    who.audit(
        &state,
        "shared_secret.rotate",
        &id,
        serde_json::json!({"overlap_seconds": o}),
    )
    .await;
    crate::sync::after_change(&state).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSecret {
            id,
            shared_secret,
            previous_expire_at: until,
        }),
    ))
}
