//! Stored TURN credentials of a tenant (see [`crate::domain::credentials`]): create, list with
//! cursor pagination and a label filter, get, enable/disable, delete, delete by label, and
//! publishable keys for front-ends.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::{Credential, CredentialId};
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantCaller;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Body, Path, Query};
use super::idempotency::idempotent;
use super::tenants::{CreatedKey, KeyOut};
use crate::domain::credentials::{self, CredentialSpec, CredentialUpdate, ListFilter};
use crate::state::Shared;

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
            id: c.id.into_string(),
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
    /// Only credentials with this tag (case-insensitive).
    pub tag: Option<String>,
    /// `enabled` (and not expired), `disabled` or `expired` (which lists expired ones).
    pub state: Option<String>,
    /// Only credentials whose username or label contains this text (case-insensitive).
    pub search: Option<String>,
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

impl From<CreateCredential> for CredentialSpec {
    fn from(c: CreateCredential) -> Self {
        Self {
            username: c.username,
            password: c.password,
            label: c.label,
            tags: c.tags,
            expires_at: c.expires_at,
            expires_in: c.expires_in,
        }
    }
}

#[utoipa::path(post, path = "/v1/credentials", tag = "credentials", request_body = CreateCredential,
    responses((status = 201, body = CreatedCredential), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_credential(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: TenantCaller,
    Body(req): Body<CreateCredential>,
) -> Response {
    let spec = CredentialSpec::from(req);
    idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
        let (c, password) = credentials::create(&state, &who.tenant_id, &spec).await?;
        let detail = json!({"username": c.username, "label": c.label});
        who.audit(&state, "credential.create", &c.id, detail).await;
        Ok(CreatedCredential {
            credential: CredentialOut::new(c, state.now()),
            password,
        })
    })
    .await
}

#[utoipa::path(get, path = "/v1/credentials", tag = "credentials", params(ListParams),
    responses((status = 200, body = CredentialPage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_credentials(
    State(state): State<Shared>,
    Query(p): Query<ListParams>,
    who: TenantCaller,
) -> ApiResult<Json<CredentialPage>> {
    let filter = ListFilter {
        label: p.label,
        include_expired: p.include_expired.unwrap_or(false),
        cursor: p.cursor,
        limit: p.limit,
        tag: p.tag,
        state: p.state,
        search: p.search,
    };
    let page = credentials::list(&state, &who.tenant_id, &filter).await?;
    let now = state.now();
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
    Path(id): Path<CredentialId>,
    who: TenantCaller,
) -> ApiResult<Json<CredentialOut>> {
    let c = credentials::get(&state, &who.tenant_id, &id).await?;
    Ok(Json(CredentialOut::new(c, state.now())))
}

#[utoipa::path(patch, path = "/v1/credentials/{id}", tag = "credentials", request_body = UpdateCredential,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = CredentialOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_credential(
    State(state): State<Shared>,
    Path(id): Path<CredentialId>,
    who: TenantCaller,
    Body(req): Body<UpdateCredential>,
) -> ApiResult<Json<CredentialOut>> {
    let update = CredentialUpdate {
        enabled: req.enabled,
        label: req.label,
        disconnect: req.disconnect,
    };
    let c = credentials::update(&state, &who.tenant_id, &id, &update).await?;
    let action = if update.enabled == Some(true) {
        "credential.enable"
    } else {
        "credential.disable"
    };
    let detail = json!({"disconnect": update.disconnect});
    who.audit(&state, action, &id, detail).await;
    Ok(Json(CredentialOut::new(c, state.now())))
}

#[utoipa::path(delete, path = "/v1/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id"), DisconnectParams),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_credential(
    State(state): State<Shared>,
    Path(id): Path<CredentialId>,
    Query(p): Query<DisconnectParams>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    let disconnect = p.disconnect.unwrap_or(false);
    credentials::delete(&state, &who.tenant_id, &id, disconnect).await?;
    let detail = json!({"disconnect": disconnect});
    who.audit(&state, "credential.delete", &id, detail).await;
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
    let disconnect = p.disconnect.unwrap_or(false);
    let deleted =
        credentials::delete_by_label(&state, &who.tenant_id, &p.label, disconnect).await?;
    let detail = json!({"deleted": deleted, "disconnect": disconnect});
    who.audit(&state, "credential.delete_by_label", &p.label, detail)
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
    Path(id): Path<CredentialId>,
    who: TenantCaller,
    Body(req): Body<CreatePublishableKey>,
) -> Response {
    let origins = req.allowed_origins;
    idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
        let (key, info) =
            credentials::publishable_key(&state, &who.tenant_id, &id, &origins).await?;
        let detail = json!({"credential_id": id, "allowed_origins": origins});
        who.audit(&state, "publishable_key.create", &info.id, detail)
            .await;
        Ok(CreatedKey {
            key,
            info: KeyOut::from(info),
        })
    })
    .await
}
