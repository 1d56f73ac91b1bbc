//! Ephemeral credentials: minted on request from the tenant's newest shared secret (the TURN
//! REST API scheme, username `expiry:scope:user`, password `base64(HMAC-SHA1(secret, username))`),
//! never stored; revocable before expiry by username or user id (a denylist whose entries lapse
//! when the credentials would have expired). Also the ICE-servers endpoint built on them.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_proto::{Credentials, Disconnect};
use turnpike_store::{Revocation, Store};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{BearerOrApiKey, Caller, Principal, TenantCaller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Query};
use crate::state::{unix_now, AppState, Shared};
use crate::util::{check_ident, check_tags, idempotent};

/// Ephemeral credentials, revocations and ICE servers.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/ephemeral-credentials", post(create_ephemeral))
        .route("/v1/revocations", post(revoke).get(list_revocations))
        .route("/v1/ice-servers", get(ice_servers).options(ice_preflight))
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

/// The tenant's newest live shared secret: what new credentials and join tokens are signed with.
pub async fn newest_secret(state: &AppState, tenant: &str) -> ApiResult<Vec<u8>> {
    crate::sync::tenant_secrets(state, tenant)
        .await
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::conflict("the tenant has no live shared secret; rotate one in"))
}

/// Mints for a tenant (`credential`: scoped to one stored credential instead).
pub async fn mint(
    state: &AppState,
    tenant: &str,
    credential: Option<&str>,
    req: &MintRequest,
) -> ApiResult<Minted> {
    let ttl = req.ttl.unwrap_or(state.cfg.default_ttl as i64);
    if ttl < 1 || ttl > state.cfg.max_ttl as i64 {
        return Err(ApiError::invalid(format!(
            "`ttl` must be 1 to {} seconds",
            state.cfg.max_ttl
        )));
    }
    if let Some(u) = &req.user_id {
        check_ident("user_id", u, 64)?;
    }
    check_tags(&req.tags)?;
    let secret = newest_secret(state, tenant).await?;
    let expires_at = unix_now() + ttl;
    let scope = credential.unwrap_or(tenant);
    let username = match &req.user_id {
        Some(u) => format!("{expires_at}:{scope}:{u}"),
        None => format!("{expires_at}:{scope}"),
    };
    if let (Some(u), false) = (&req.user_id, req.tags.is_empty()) {
        state.store.set_user_tags(tenant, u, &req.tags).await?;
    }
    let password = Credentials::shared_secret_password(&secret, &username);
    Ok(Minted {
        username,
        password,
        ttl,
        expires_at,
    })
}

#[utoipa::path(post, path = "/v1/ephemeral-credentials", tag = "ephemeral", request_body = MintRequest,
    responses((status = 201, body = Minted), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_ephemeral(
    State(state): State<Shared>,
    headers: HeaderMap,
    who: TenantCaller,
    Body(req): Body<MintRequest>,
) -> Result<Response, ApiError> {
    let t = who.tenant_id.clone();
    Ok(idempotent(
        &state,
        &who.key_id,
        &headers,
        StatusCode::CREATED,
        mint(&state, &t, None, &req),
    )
    .await)
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

#[utoipa::path(post, path = "/v1/revocations", tag = "ephemeral", request_body = RevokeRequest,
    responses((status = 201, body = RevocationOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(req): Body<RevokeRequest>,
) -> ApiResult<(StatusCode, Json<RevocationOut>)> {
    let t = who.tenant_id.clone();
    let now = unix_now();
    let (kind, value, expires_at, d) = match (&req.username, &req.user_id) {
        (Some(u), None) => {
            let Some((expiry, scope, _)) = turnpike_proto::directory::parse_ephemeral(u) else {
                return Err(ApiError::invalid("`username` is not an ephemeral username"));
            };
            let owned = scope == t
                || (scope.starts_with("cred_")
                    && state.store.get_credential(&t, scope).await.is_ok());
            if !owned {
                return Err(ApiError::not_found("no such credential"));
            }
            (
                "username",
                u.clone(),
                (expiry as i64).max(now + 1),
                Disconnect::Username(u.clone()),
            )
        }
        (None, Some(u)) => {
            check_ident("user_id", u, 64)?;
            (
                "user",
                u.clone(),
                now + state.cfg.max_ttl as i64,
                Disconnect::User {
                    tenant_id: t.clone(),
                    user_id: u.clone(),
                },
            )
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `username` and `user_id`",
            ))
        }
    };
    let r = Revocation {
        tenant_id: t.clone(),
        kind: kind.into(),
        value: value.clone(),
        created_at: now,
        expires_at,
    };
    state.store.add_revocation(&r).await?;
    crate::sync::after_change(&state).await;
    if req.disconnect {
        crate::sync::disconnect(&state, d).await;
    }
    who.audit(
        &state,
        "ephemeral.revoke",
        &value,
        serde_json::json!({"kind": kind, "disconnect": req.disconnect}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(RevocationOut {
            kind: kind.into(),
            value,
            created_at: now,
            expires_at,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/revocations", tag = "ephemeral",
    responses((status = 200, body = Vec<RevocationOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_revocations(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<RevocationOut>>> {
    let t = &who.tenant_id;
    Ok(Json(
        state
            .store
            .live_revocations(Some(t), unix_now())
            .await?
            .into_iter()
            .map(|r| RevocationOut {
                kind: r.kind,
                value: r.value,
                created_at: r.created_at,
                expires_at: r.expires_at,
            })
            .collect(),
    ))
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
    pub uris: Vec<String>,
}

/// The node's ICE servers carrying `m`.
pub fn ice_list(state: &AppState, m: &Minted) -> Vec<IceServerOut> {
    crate::ice::ice_servers(
        state.cfg.public_host.as_deref(),
        &state.cfg.listeners,
        &m.username,
        &m.password,
        false,
    )
    .into_iter()
    .map(|s| IceServerOut {
        urls: s.urls,
        username: s.username,
        credential: s.credential,
    })
    .collect()
}

/// Whether a publishable key with `origins` may be used from `origin`. `*` allows any (and no
/// `Origin` header); an empty list (stored by earlier versions when none was given) allows none.
fn origin_allowed(origins: &[String], origin: Option<&str>) -> bool {
    origins.iter().any(|a| a == crate::credentials::ANY_ORIGIN)
        || origin.is_some_and(|o| origins.iter().any(|a| a == o))
}

/// Mints for a tenant key or a publishable key (checking its origins); returns the minted
/// credential and the origin to echo in CORS headers.
pub async fn mint_for_caller(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    req: &MintRequest,
) -> ApiResult<(Minted, Option<String>)> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match who {
        Principal::Tenant { tenant_id, .. } => Ok((mint(state, tenant_id, None, req).await?, None)),
        Principal::Publishable {
            tenant_id,
            credential_id,
            allowed_origins,
            ..
        } => {
            if !origin_allowed(allowed_origins, origin.as_deref()) {
                return Err(ApiError::forbidden("this origin may not use this key"));
            }
            let cred = state.store.get_credential(tenant_id, credential_id).await?;
            if !cred.enabled || cred.is_expired(unix_now()) {
                return Err(ApiError::forbidden(
                    "the key's credential is disabled or expired",
                ));
            }
            let m = mint(state, tenant_id, Some(credential_id), req).await?;
            Ok((m, origin))
        }
        Principal::Admin { .. } => Err(ApiError::forbidden(
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
) -> Result<Response, ApiError> {
    let req = MintRequest {
        ttl: p.ttl,
        user_id: p.user_id.clone(),
        tags: vec![],
    };
    let (m, origin) = mint_for_caller(&state, &who.principal, &headers, &req).await?;
    let list = ice_list(&state, &m);
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
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
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
