//! REST side of signalling: join tokens, room administration, the tenant's Origin allow-list,
//! the WebSocket upgrade, and the demo pages (compiled into the binary).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_api::auth::{BearerKey, Principal, TenantCaller};
use turnpike_api::error::{ApiError, ApiResult};
use turnpike_api::extract::{Body, Path};
use turnpike_api::util::{audit, check_ident, check_text};
use turnpike_store::{Store, TenantId};

use crate::bus::{BusError, RoomBus};
use crate::bus_event::{room_key, BusEvent};
use crate::token::{self, Claims};
use crate::{grant, ws, Signal};

type S = State<Arc<Signal>>;

/// The tenant calling a signalling endpoint, by the API's rules for tenant endpoints: its
/// secret key, or a console session (with its CSRF token for changes), or the admin key acting
/// in a tenant.
struct Tenant {
    id: TenantId,
    who: Principal,
}

impl FromRequestParts<Arc<Signal>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sig: &Arc<Signal>) -> ApiResult<Self> {
        let c = TenantCaller::<BearerKey>::from_request_parts(parts, &sig.api).await?;
        Ok(Self {
            who: Principal::Tenant {
                tenant_id: c.tenant_id.clone(),
                key_id: c.key_id,
            },
            id: c.tenant_id,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub room: String,
    pub identity: String,
    /// Seconds (default 600, at most 86400).
    pub ttl: Option<i64>,
    pub can_send: Option<bool>,
    pub can_broadcast: Option<bool>,
}

#[derive(Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: i64,
    /// Path of the WebSocket endpoint.
    pub url: &'static str,
}

fn check_room(room: &str) -> ApiResult<()> {
    check_ident("room", room, 64)
}

async fn mint(sig: &Signal, tenant: &TenantId, req: &TokenRequest) -> ApiResult<TokenResponse> {
    // A suspended tenant (or the demo tenant, suspended) gets no join tokens: 403.
    turnpike_api::domain::tenants::ensure_active(&sig.api, tenant)?;
    check_room(&req.room)?;
    check_ident("identity", &req.identity, 64)?;
    let ttl = req.ttl.unwrap_or(600);
    if !(1..=86_400).contains(&ttl) {
        return Err(ApiError::invalid("`ttl` must be 1 to 86400 seconds"));
    }
    let secret = turnpike_api::ephemeral::newest_secret(&sig.api, tenant).await?;
    let exp = turnpike_api::state::unix_now() + ttl;
    let claims = Claims {
        tid: tenant.to_string(),
        room: req.room.clone(),
        sub: req.identity.clone(),
        exp,
        send: req.can_send.unwrap_or(true),
        broadcast: req.can_broadcast.unwrap_or(true),
    };
    Ok(TokenResponse {
        token: token::mint(&secret, &claims),
        expires_at: exp,
        url: "/v1/signal",
    })
}

async fn create_token(
    State(sig): S,
    who: Tenant,
    Body(req): Body<TokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    Ok((StatusCode::CREATED, Json(mint(&sig, &who.id, &req).await?)))
}

#[derive(Serialize)]
struct RoomOut {
    room: String,
    participants: usize,
}

async fn list_rooms(State(sig): S, who: Tenant) -> ApiResult<Json<Vec<RoomOut>>> {
    let t = &who.id;
    let prefix = room_key(t, "");
    let rooms = sig.hub.bus.rooms(&prefix).await?;
    Ok(Json(
        rooms
            .into_iter()
            .map(|(k, n)| RoomOut {
                room: k[prefix.len()..].to_string(),
                participants: n,
            })
            .collect(),
    ))
}

async fn room(
    State(sig): S,
    Path(room): Path<String>,
    who: Tenant,
) -> ApiResult<Json<serde_json::Value>> {
    let t = &who.id;
    check_room(&room)?;
    let members = sig.hub.bus.members(&room_key(t, &room)).await?;
    if members.is_empty() {
        return Err(ApiError::not_found("no such room"));
    }
    Ok(Json(
        serde_json::json!({"room": room, "participants": members}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kick {
    peer_id: String,
}

async fn kick(
    State(sig): S,
    Path(room): Path<String>,
    who: Tenant,
    Body(k): Body<Kick>,
) -> ApiResult<StatusCode> {
    let t = who.id.clone();
    check_room(&room)?;
    let key = room_key(&t, &room);
    let members = sig.hub.bus.members(&key).await?;
    if !members.iter().any(|m| m.id == k.peer_id) {
        return Err(ApiError::not_found("no such participant in this room"));
    }
    sig.hub
        .bus
        .publish(&BusEvent::Kick {
            room: key,
            peer_id: k.peer_id.clone(),
        })
        .await?;
    audit(
        &sig.api,
        &who.who,
        Some(&t),
        "signal.kick",
        &k.peer_id,
        serde_json::json!({"room": room}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn close_room(State(sig): S, Path(room): Path<String>, who: Tenant) -> ApiResult<StatusCode> {
    let t = who.id.clone();
    check_room(&room)?;
    let key = room_key(&t, &room);
    if sig.hub.bus.members(&key).await?.is_empty() {
        return Err(ApiError::not_found("no such room"));
    }
    sig.hub.bus.publish(&BusEvent::Close { room: key }).await?;
    audit(
        &sig.api,
        &who.who,
        Some(&t),
        "signal.close_room",
        &room,
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `Origin` values allowed to open signalling sockets with this tenant's tokens; empty: any.
    #[serde(default)]
    allowed_origins: Vec<String>,
}

async fn put_settings(
    State(sig): S,
    who: Tenant,
    Body(s): Body<Settings>,
) -> ApiResult<Json<Settings>> {
    let t = who.id.clone();
    if s.allowed_origins.len() > 32 {
        return Err(ApiError::invalid("at most 32 `allowed_origins`"));
    }
    for o in &s.allowed_origins {
        check_text("allowed_origins[]", o, 200)?;
        if !(o.starts_with("http://") || o.starts_with("https://")) {
            return Err(ApiError::invalid(
                "`allowed_origins[]` must be http(s) origins",
            ));
        }
    }
    let v = serde_json::to_string(&s.allowed_origins).unwrap_or_default();
    sig.api
        .store
        .put_setting(&t, "signal_allowed_origins", &v)
        .await?;
    audit(
        &sig.api,
        &who.who,
        Some(&t),
        "signal.settings",
        "tenant",
        serde_json::json!({"allowed_origins": s.allowed_origins}),
    )
    .await;
    Ok(Json(s))
}

async fn get_settings(State(sig): S, who: Tenant) -> ApiResult<Json<Settings>> {
    let t = &who.id;
    let allowed_origins = match sig
        .api
        .store
        .get_setting(t, "signal_allowed_origins")
        .await?
    {
        Some(v) => serde_json::from_str(&v).unwrap_or_default(),
        None => vec![],
    };
    Ok(Json(Settings { allowed_origins }))
}

const DEMO_HTML: &str = include_str!("../assets/demo.html");
const ICE_TEST_HTML: &str = include_str!("../assets/ice-test.html");
const CLIENT_JS: &str = include_str!("../assets/signal-client.js");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTokenRequest {
    room: String,
    identity: String,
}

/// Tokens for the demo tenant, for anyone who can reach the page (rate limited per address).
async fn demo_token(
    State(sig): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Body(req): Body<DemoTokenRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let Some(t) = sig.demo_tenant.clone() else {
        return Err(ApiError::not_found("the demo is disabled"));
    };
    let client = turnpike_api::fleet::client_ip(&sig.api, Some(peer.ip()), &headers)
        .unwrap_or_else(|| peer.ip().to_canonical());
    sig.api
        .take_token(&format!("demo:{client}"))
        .map_err(ApiError::rate_limited)?;
    let r = TokenRequest {
        room: req.room,
        identity: req.identity,
        ttl: Some(3600),
        can_send: None,
        can_broadcast: None,
    };
    let tok = mint(&sig, &TenantId::from(t.as_str()), &r).await?;
    let ice = grant::ice_servers(&sig.api, &t, &r.identity, Some(client)).await;
    Ok(Json(serde_json::json!({
        "token": tok.token, "expires_at": tok.expires_at, "url": tok.url, "ice_servers": ice,
    })))
}

fn page(sig: &Signal, html: &'static str) -> Response {
    if sig.demo_tenant.is_none() {
        return ApiError::not_found("the demo is disabled").into_response();
    }
    Html(html).into_response()
}

/// The signalling API: the WebSocket and its REST endpoints (authenticated by API keys and
/// join tokens).
pub fn router(sig: Arc<Signal>) -> Router {
    Router::new()
        .route("/v1/signal", get(ws::handshake))
        .route("/v1/signal/tokens", post(create_token))
        .route("/v1/signal/rooms", get(list_rooms))
        .route("/v1/signal/rooms/{room}", get(room).delete(close_room))
        .route("/v1/signal/rooms/{room}/kick", post(kick))
        .route("/v1/signal/settings", get(get_settings).put(put_settings))
        .with_state(sig)
}

/// The demo pages and `/demo/token`, which mints demo-tenant TURN credentials for anyone who
/// asks: the binary serves them on the private listener, and on public ones only when the
/// operator opts in (`demo_public`).
pub fn demo_router(sig: Arc<Signal>) -> Router {
    Router::new()
        .route(
            "/demo",
            get(|State(s): S| async move { page(&s, DEMO_HTML) }),
        )
        .route(
            "/demo/ice-test",
            get(|State(s): S| async move { page(&s, ICE_TEST_HTML) }),
        )
        .route(
            "/demo/signal-client.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CLIENT_JS,
                )
            }),
        )
        .route("/demo/token", post(demo_token))
        .with_state(sig)
}

/// Bus failures answer 500 with the one error shape; the cause is logged, not returned.
impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        tracing::error!(error = %e, "signalling bus error");
        Self::internal()
    }
}
