//! Ephemeral credentials (see [`crate::domain::ephemeral`]): mint, revoke, list revocations;
//! and the ICE-servers endpoint built on them, for tenant keys and for publishable keys from
//! their allowed origins (with CORS).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::TenantId;
use utoipa::{IntoParams, ToSchema};

use super::auth::{BearerOrApiKey, Caller, Principal, TenantCaller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Query};
use super::idempotency::idempotent;
pub use crate::domain::ephemeral::newest_secret;
use crate::domain::ephemeral::{self, MintSpec, RevokeSpec};
use crate::fleet::Target;
use crate::state::{AppState, Shared};

/// Ephemeral credentials, revocations and ICE servers.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/ephemeral-credentials", post(create_ephemeral))
        .route("/v1/revocations", post(revoke).get(list_revocations))
        .route("/v1/ice-servers", get(ice_servers).options(ice_preflight))
        .route("/v1/ice-servers/urls", get(ice_urls))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// Lifetime in seconds (default and maximum are configured; default 3600).
    pub ttl: Option<i64>,
    /// Your user id (letters, digits, `._@+-`), recorded with usage and revocable.
    pub user_id: Option<String>,
    /// Tags recorded for this user id's usage.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Minted {
    pub username: String,
    pub password: String,
    pub ttl: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

impl From<&MintRequest> for MintSpec {
    fn from(r: &MintRequest) -> Self {
        Self {
            ttl: r.ttl,
            user_id: r.user_id.clone(),
            tags: r.tags.clone(),
        }
    }
}

impl From<ephemeral::Minted> for Minted {
    fn from(m: ephemeral::Minted) -> Self {
        Self {
            username: m.username,
            password: m.password,
            ttl: m.ttl,
            expires_at: m.expires_at,
        }
    }
}

/// Mints for a tenant (`credential`: scoped to one of its stored credentials instead), from a
/// request body (signalling mints this way for the ICE servers of a join).
pub async fn mint(
    state: &AppState,
    tenant_id: &TenantId,
    credential: Option<&str>,
    req: &MintRequest,
) -> ApiResult<Minted> {
    let m = ephemeral::mint(state, tenant_id, credential, &req.into()).await?;
    Ok(m.into())
}

#[utoipa::path(post, path = "/v1/ephemeral-credentials", tag = "ephemeral", request_body = MintRequest,
    responses((status = 201, body = Minted), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_ephemeral(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: TenantCaller,
    Body(req): Body<MintRequest>,
) -> Response {
    let minted = mint(&state, &who.tenant_id, None, &req);
    idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, minted).await
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// An ephemeral username to refuse until it expires.
    pub username: Option<String>,
    /// A user id whose ephemeral credentials are refused for the maximum TTL.
    pub user_id: Option<String>,
    /// Also close live allocations.
    #[serde(default)]
    pub disconnect: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RevocationOut {
    /// `username` or `user`.
    pub kind: String,
    pub value: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl From<turnpike_store::Revocation> for RevocationOut {
    fn from(r: turnpike_store::Revocation) -> Self {
        Self {
            kind: r.kind.as_str().into(),
            value: r.value,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

#[utoipa::path(post, path = "/v1/revocations", tag = "ephemeral", request_body = RevokeRequest,
    responses((status = 201, body = RevocationOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(req): Body<RevokeRequest>,
) -> ApiResult<(StatusCode, Json<RevocationOut>)> {
    let spec = RevokeSpec {
        username: req.username,
        user_id: req.user_id,
        disconnect: req.disconnect,
    };
    let r = ephemeral::revoke(&state, &who.tenant_id, &spec).await?;
    let detail = json!({"kind": r.kind.as_str(), "disconnect": spec.disconnect});
    who.audit(&state, "ephemeral.revoke", &r.value, detail)
        .await;
    Ok((StatusCode::CREATED, Json(r.into())))
}

#[utoipa::path(get, path = "/v1/revocations", tag = "ephemeral",
    responses((status = 200, body = Vec<RevocationOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_revocations(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<RevocationOut>>> {
    let live = ephemeral::live_revocations(&state, &who.tenant_id).await?;
    Ok(Json(live.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct IceParams {
    /// `w3c` (default): `{iceServers, ttl, expiresAt}`; `array`: the bare array; `turn-rest`:
    /// `{username, password, ttl, uris}` (TURN REST API draft).
    pub format: Option<String>,
    /// Credential lifetime in seconds.
    pub ttl: Option<i64>,
    /// Your user id, recorded with usage.
    pub user_id: Option<String>,
    /// A publishable key, for front-ends that cannot send headers (instead of `Authorization`).
    #[serde(rename = "apiKey")]
    pub api_key: Option<String>,
    /// The region to name first (one with a registered node; default: the nearest to the
    /// client, see docs/fleet.md).
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct IceServerOut {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct IceServersOut {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServerOut>,
    pub ttl: i64,
    /// Unix seconds.
    #[serde(rename = "expiresAt")]
    pub expires_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TurnRestOut {
    pub username: String,
    pub password: String,
    pub ttl: i64,
    /// Unix seconds (our addition to the draft's fields).
    pub expires_at: i64,
    pub uris: Vec<String>,
}

/// The ICE servers of `targets` (see [`crate::fleet::targets`]) carrying `m`.
pub fn ice_list(state: &AppState, m: &Minted, targets: &[Target]) -> Vec<IceServerOut> {
    crate::fleet::ice_servers(state, targets, None, &m.username, &m.password)
        .into_iter()
        .map(|s| IceServerOut {
            urls: s.urls,
            username: s.username,
            credential: s.credential,
        })
        .collect()
}

/// 400 naming the known regions, or 503 when the tenant's allowed regions have no healthy node.
pub fn region_error(e: crate::fleet::RouteError) -> ApiError {
    match e {
        crate::fleet::RouteError::UnknownRegion(known) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_region",
            format!("unknown `region`; known regions: {}", known.join(", ")),
        ),
        crate::fleet::RouteError::Unavailable(allowed) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "region_unavailable",
            format!(
                "no healthy node in the tenant's allowed regions ({})",
                allowed.join(", ")
            ),
        ),
        crate::fleet::RouteError::NoHealthyNode => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_node",
            "no node takes new allocations now (this one is draining or full, and no other is healthy)",
        ),
    }
}

/// The request's `Origin`, if any.
fn origin(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Mints for a tenant key or a publishable key (from its allowed origins only); returns the
/// minted credential and the origin to echo in CORS headers.
pub async fn mint_for_caller(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    req: &MintRequest,
) -> ApiResult<(Minted, Option<String>)> {
    match who {
        Principal::Tenant { tenant_id, .. } => Ok((mint(state, tenant_id, None, req).await?, None)),
        Principal::Publishable {
            tenant_id,
            credential_id,
            allowed_origins,
            ..
        } => {
            let origin = origin(headers);
            let spec = MintSpec::from(req);
            let m = ephemeral::mint_for_publishable(
                state,
                tenant_id,
                credential_id,
                allowed_origins,
                origin.as_deref(),
                &spec,
            )
            .await?;
            Ok((m.into(), origin))
        }
        Principal::Admin { .. } | Principal::Project { .. } => Err(ApiError::forbidden(
            "ICE servers are minted for a tenant: use its secret or a publishable key",
        )),
    }
}

/// Adds CORS headers for an allowed origin.
pub fn with_cors(mut r: Response, origin: Option<String>) -> Response {
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

#[utoipa::path(get, path = "/v1/ice-servers", tag = "ephemeral", params(IceParams),
    responses((status = 200, body = IceServersOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn ice_servers(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<IceParams>,
    who: Caller<BearerOrApiKey>,
) -> ApiResult<Response> {
    let req = MintRequest {
        ttl: p.ttl,
        user_id: p.user_id.clone(),
        tags: vec![],
    };
    let client = crate::fleet::client_ip(&state, super::guard::client_ip(), &headers);
    let allowed = match who.principal.tenant_id() {
        Some(t) => crate::fleet::allowed_regions(&state, t),
        None => None,
    };
    let targets = crate::fleet::targets(&state, client, p.region.as_deref(), allowed.as_deref())
        .map_err(region_error)?;
    let (m, origin) = mint_for_caller(&state, &who.principal, &headers, &req).await?;
    let list = ice_list(&state, &m, &targets);
    let r = match p.format.as_deref().unwrap_or("w3c") {
        "w3c" => Json(IceServersOut {
            ice_servers: list,
            ttl: m.ttl,
            expires_at: m.expires_at,
        })
        .into_response(),
        "array" => Json(list).into_response(),
        "turn-rest" => Json(TurnRestOut {
            uris: list.into_iter().flat_map(|s| s.urls).collect(),
            username: m.username,
            password: m.password,
            ttl: m.ttl,
            expires_at: m.expires_at,
        })
        .into_response(),
        _ => {
            return Err(ApiError::invalid(
                "`format` must be `w3c`, `array` or `turn-rest`",
            ))
        }
    };
    Ok(with_cors(r, origin))
}

/// CORS preflight for the ICE-servers endpoint (browsers send one for `Authorization`).
pub async fn ice_preflight(headers: HeaderMap) -> Response {
    let origin = origin(&headers);
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    with_cors(r, origin)
}

/// The node's STUN and TURN URLs, without credentials (for snippets that carry a stored
/// credential's own username and password).
#[derive(Serialize, ToSchema)]
pub struct IceUrls {
    /// One entry per server kind: `stun:` URLs, then `turn:`/`turns:` URLs.
    pub ice_servers: Vec<Vec<String>>,
}

#[utoipa::path(get, path = "/v1/ice-servers/urls", tag = "ephemeral",
    responses((status = 200, body = IceUrls), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn ice_urls(State(state): State<Shared>, _who: TenantCaller) -> Json<IceUrls> {
    Json(IceUrls {
        ice_servers: crate::ice::urls(state.cfg.public_host.as_deref(), &state.cfg.listeners),
    })
}
