//! Tenants (admin key) and a tenant's own keys and shared secrets (tenant key): create, list,
//! delete, rotate with an overlap window. Keys and secrets are returned once, at creation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::TenantId;
use turnpike_store::{ApiKey, Tenant};
use utoipa::ToSchema;

use super::auth::{AdminCaller, Caller, Principal, TenantCaller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Path};
use super::idempotency::idempotent;
use crate::domain::audit;
use crate::domain::tenants::{self, Overlap, TenantName};
use crate::state::Shared;

/// The operator's tenant endpoints and a tenant's own keys and shared secrets.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{id}", get(get_tenant).delete(delete_tenant))
        .route("/v1/tenants/{id}/suspend", post(suspend_tenant))
        .route("/v1/tenants/{id}/resume", post(resume_tenant))
        .route("/v1/tenants/{id}/regions", axum::routing::put(put_regions))
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
    /// For a project made through the Metered-compatible project API: the tenant it belongs
    /// to (deleted with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// When the operator suspended it (unix seconds); absent while it is active. A suspended
    /// tenant's TURN credentials are refused and its keys may only read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<i64>,
    /// The regions its ICE lists may name (docs/fleet.md); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_regions: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRegions {
    /// Region names, or null for any region.
    pub regions: Option<Vec<String>>,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        let allowed_regions = t.regions();
        Self {
            id: t.id.into_string(),
            name: t.name,
            created_at: t.created_at,
            parent_id: t.parent_id.map(String::from),
            allowed_regions,
            suspended_at: t.suspended_at,
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
    /// `secret`, `publishable` or `project`.
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
            credential_id: k.credential_id.map(String::from),
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

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: AdminCaller,
    Body(req): Body<CreateTenant>,
) -> ApiResult<Response> {
    let name = TenantName::parse(&req.name)?;
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let c = tenants::create(&state, &name).await?;
            let detail = json!({"name": c.tenant.name});
            who.audit(&state, "tenant.create", &c.tenant.id, detail)
                .await;
            Ok(CreatedTenant {
                tenant: c.tenant.into(),
                secret_key: c.secret_key,
                shared_secret: c.shared_secret,
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
    let all = tenants::list(&state).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
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
    Ok(Json(tenants::get(&state, &id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_tenant(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
) -> ApiResult<StatusCode> {
    tenants::delete(&state, &id).await?;
    who.audit(&state, "tenant.delete", &id, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/tenants/{id}/suspend", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
/// Suspends a tenant and its projects: the relay refuses their credentials and closes their
/// live allocations on every node; their keys may only read until `resume`.
pub async fn suspend_tenant(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
) -> ApiResult<Json<TenantOut>> {
    let t = tenants::suspend(&state, &id).await?;
    who.audit(&state, "tenant.suspend", &id, json!({})).await;
    Ok(Json(t.into()))
}

#[utoipa::path(post, path = "/v1/tenants/{id}/resume", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
/// Lifts a suspension.
pub async fn resume_tenant(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
) -> ApiResult<Json<TenantOut>> {
    let t = tenants::resume(&state, &id).await?;
    who.audit(&state, "tenant.resume", &id, json!({})).await;
    Ok(Json(t.into()))
}

#[utoipa::path(put, path = "/v1/tenants/{id}/regions", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")), request_body = PutRegions,
    responses((status = 200, body = TenantOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
/// Sets the regions a tenant's ICE lists may name (data residency); null: any.
pub async fn put_regions(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
    Body(req): Body<PutRegions>,
) -> ApiResult<Json<TenantOut>> {
    let t = tenants::set_regions(&state, &id, req.regions.as_deref()).await?;
    who.audit(
        &state,
        "tenant.regions",
        &id,
        json!({"regions": req.regions}),
    )
    .await;
    Ok(Json(t.into()))
}

/// Rotates the secret key of `tenant_id` for the caller `actor` (audited in the tenant's log).
async fn rotate_key(
    state: &Shared,
    actor: &str,
    tenant_id: &TenantId,
    r: &Rotate,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let overlap = Overlap::parse(r.overlap_seconds)?;
    let (key, info) = tenants::rotate_key(state, tenant_id, overlap).await?;
    let detail = json!({"overlap_seconds": overlap.seconds()});
    audit::record(
        state,
        actor,
        Some(tenant_id),
        "key.rotate",
        &info.id,
        detail,
    )
    .await;
    let info = info.into();
    Ok((StatusCode::CREATED, Json(CreatedKey { key, info })))
}

#[utoipa::path(post, path = "/v1/tenants/{id}/keys/rotate", tag = "tenants", request_body = Rotate,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn admin_rotate_key(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
    Body(r): Body<Rotate>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    rotate_key(&state, &who.key_id, &id, &r).await
}

#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", request_body = Rotate,
    responses((status = 201, body = CreatedKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tenant_rotate_key(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(r): Body<Rotate>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    rotate_key(&state, &who.key_id, &who.tenant_id, &r).await
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<KeyOut>>> {
    let keys = tenants::list_keys(&state, &who.tenant_id).await?;
    Ok(Json(keys.into_iter().map(Into::into).collect()))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    tenants::revoke_key(&state, &who.tenant_id, &id).await?;
    who.audit(&state, "key.revoke", &id, json!({})).await;
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
    let overlap = Overlap::parse(r.overlap_seconds)?;
    let s = tenants::rotate_shared_secret(&state, &who.tenant_id, overlap).await?;
    let detail = json!({"overlap_seconds": overlap.seconds()});
    who.audit(&state, "shared_secret.rotate", &s.id, detail)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSecret {
            id: s.id,
            shared_secret: s.shared_secret,
            previous_expire_at: s.previous_expire_at,
        }),
    ))
}
