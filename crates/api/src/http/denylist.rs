//! The client deny list (operator, admin key; see [`crate::domain::denylist`]). The API refuses
//! denied clients with 403 `client_denied` (see [`super::guard`]); the relay consults the same
//! directory. An entry that contains the caller's own address is refused (422) unless
//! `?force=true`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::DeniedClient;
use utoipa::{IntoParams, ToSchema};

use super::auth::AdminCaller;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Body, Path, Query};
use super::guard::client_ip;
use super::idempotency::idempotent;
use crate::domain::denylist::{self, Denial};
use crate::state::Shared;

/// The client deny list (admin key).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/deny-list", get(list_denied).post(add_denied))
        .route("/v1/deny-list/{id}", delete(delete_denied))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// An IPv4 or IPv6 network (`203.0.113.0/24`, `2001:db8::/32`) or address (one host).
    #[schema(example = "203.0.113.0/24")]
    pub cidr: String,
    /// Why (1 to 200 printable characters).
    pub note: Option<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct DenyParams {
    /// Add the entry even if it contains the caller's own address (default false).
    pub force: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DenyEntry {
    pub id: String,
    /// The network, normalised (`203.0.113.0/24`, `2001:db8::1/128`).
    pub cidr: String,
    pub note: Option<String>,
    pub created_at: i64,
}

impl From<DeniedClient> for DenyEntry {
    fn from(d: DeniedClient) -> Self {
        Self {
            id: d.id,
            cidr: d.cidr,
            note: d.note,
            created_at: d.created_at,
        }
    }
}

#[utoipa::path(get, path = "/v1/deny-list", tag = "deny-list",
    responses((status = 200, body = Vec<DenyEntry>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_denied(
    State(state): State<Shared>,
    _: AdminCaller,
) -> ApiResult<Json<Vec<DenyEntry>>> {
    let all = denylist::list(&state).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/v1/deny-list", tag = "deny-list", request_body = DenyRequest, params(DenyParams),
    responses((status = 201, body = DenyEntry), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_denied(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<DenyParams>,
    who: AdminCaller,
    Body(req): Body<DenyRequest>,
) -> ApiResult<Response> {
    let force = p.force.unwrap_or(false);
    let denial = Denial::parse(&req.cidr, req.note.as_deref(), client_ip(), force)?;
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let d = denylist::add(&state, &denial).await?;
            let detail = json!({"cidr": d.cidr, "note": d.note, "force": force});
            who.audit(&state, "deny_list.add", &d.id, detail).await;
            Ok(DenyEntry::from(d))
        })
        .await,
    )
}

#[utoipa::path(delete, path = "/v1/deny-list/{id}", tag = "deny-list",
    params(("id" = String, Path, description = "Entry id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_denied(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: AdminCaller,
) -> ApiResult<StatusCode> {
    let cidr = denylist::delete(&state, &id).await?;
    who.audit(&state, "deny_list.delete", &id, json!({"cidr": cidr}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
