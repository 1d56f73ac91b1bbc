//! Who is calling: the operator (admin key), a tenant (its secret key) or a front-end holding a
//! credential's publishable key. Keys come in `Authorization: Bearer <key>`; the ICE-servers
//! endpoint also takes `?apiKey=`, the compatibility endpoints Metered's `?secretKey=` /
//! `?apiKey=`. Every authenticated request takes a token from its key's rate-limit bucket;
//! failed keys are throttled per client address.
//!
//! Handlers say who may call them with an extractor in their signature: [`AdminCaller`] (the
//! admin key), [`TenantCaller`] (a tenant's secret key), or [`Caller`] (any valid key, for the
//! endpoints that answer each kind differently). Each runs [`authenticate`]: 401 without a valid
//! key, 429 when throttled or rate limited, 403 for a valid key of the wrong kind.

use std::marker::PhantomData;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use turnpike_store::{Store, TenantId};

use super::error::{ApiError, ApiResult};
use super::principal::identify;
pub use super::principal::Principal;
use super::session_auth::session_principal;
use crate::domain::audit;
use crate::state::{AppState, Shared};

/// The key in `Authorization: Bearer`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Authenticates `key` (from a header or, for compatibility routes, the query). A client
/// address that had `auth_failures_per_minute` failed keys in the current minute gets 429
/// without any key being looked up (see [`super::guard`]); a missing key is not a failure.
pub async fn authenticate(state: &AppState, key: Option<&str>) -> ApiResult<Principal> {
    let key = key.ok_or_else(|| {
        ApiError::unauthorized("missing API key: send `Authorization: Bearer <key>`")
    })?;
    let limit = state.cfg.auth_failures_per_minute;
    let ip = super::guard::client_ip();
    if let Some(ip) = ip {
        if let Err(wait) = state.auth_failures.check(ip, limit, Instant::now()) {
            metrics::counter!("turnpike_api_auth_throttled_total").increment(1);
            return Err(ApiError::auth_throttled(wait));
        }
    }
    let principal = match identify(state, key).await {
        Ok(p) => p,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                metrics::counter!("turnpike_api_auth_failures_total").increment(1);
                if let Some(ip) = ip {
                    state.auth_failures.failed(ip, limit, Instant::now());
                }
            }
            return Err(e);
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

/// The header with which the admin key acts in one tenant: every endpoint that takes a
/// tenant's secret key then answers for that tenant.
pub const ACT_AS: &str = "x-turnpike-tenant";

fn acting_header(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(ACT_AS)?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 64).then(|| v.to_string())
}

/// For endpoints that answer the operator and tenants differently: the tenant the admin key
/// acts in ([`ACT_AS`]), checked to exist; `None` without the header or for other keys.
pub async fn acting_tenant(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> ApiResult<Option<TenantId>> {
    let (Principal::Admin { .. }, Some(t)) = (principal, acting_header(headers)) else {
        return Ok(None);
    };
    let tenant_id = TenantId::from(t);
    state
        .store
        .get_tenant(&tenant_id)
        .await
        .map_err(|_| ApiError::not_found(format!("no tenant `{tenant_id}` ({ACT_AS})")))?;
    Ok(Some(tenant_id))
}

/// Where a request's API key is read from.
pub trait KeySource {
    /// Whether a console session cookie may stand in for the key (the `/v1` API).
    const SESSION: bool = false;
    /// The key the request carries, if any.
    fn key(parts: &Parts) -> Option<String>;
}

/// `Authorization: Bearer <key>`: every `/v1` endpoint.
pub struct BearerKey;

/// The bearer key, else `?apiKey=`: the ICE-servers endpoint, for front-ends that cannot send
/// headers.
pub struct BearerOrApiKey;

/// Metered's `?secretKey=`, else `?apiKey=`, else the bearer key: the compatibility endpoints.
pub struct MeteredKey;

impl KeySource for BearerKey {
    const SESSION: bool = true;

    fn key(parts: &Parts) -> Option<String> {
        bearer(&parts.headers).map(str::to_string)
    }
}

impl KeySource for BearerOrApiKey {
    fn key(parts: &Parts) -> Option<String> {
        BearerKey::key(parts).or_else(|| query_value(parts, "apiKey"))
    }
}

impl KeySource for MeteredKey {
    fn key(parts: &Parts) -> Option<String> {
        query_value(parts, "secretKey")
            .or_else(|| query_value(parts, "apiKey"))
            .or_else(|| BearerKey::key(parts))
    }
}

/// The first value of `name` in the query string.
fn query_value(parts: &Parts, name: &str) -> Option<String> {
    url::form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Any valid key: the endpoint answers each kind of caller in its own way.
pub struct Caller<K = BearerKey> {
    pub principal: Principal,
    source: PhantomData<K>,
}

/// The operator's admin key; 403 for any other key.
pub struct AdminCaller {
    pub key_id: String,
}

/// A tenant's secret key; 403 for the admin key and publishable keys.
pub struct TenantCaller<K = BearerKey> {
    pub tenant_id: TenantId,
    pub key_id: String,
    source: PhantomData<K>,
}

impl AdminCaller {
    /// Records a change in the operator's audit log.
    pub async fn audit(&self, state: &AppState, action: &str, target: &str, detail: Value) {
        audit::record(state, &self.key_id, None, action, target, detail).await;
    }
}

impl<K> TenantCaller<K> {
    /// Records a change in the tenant's audit log.
    pub async fn audit(&self, state: &AppState, action: &str, target: &str, detail: Value) {
        let tenant = Some(&self.tenant_id);
        audit::record(state, &self.key_id, tenant, action, target, detail).await;
    }
}

/// A suspended tenant's secret key (or console session) may only read (GET, HEAD); every
/// change, and any use of its publishable or project keys, gets 403 `tenant_suspended`. The
/// operator's admin key, acting in it or not, is never refused.
fn refuse_suspended(state: &AppState, p: &Principal, method: &Method) -> ApiResult<()> {
    let (tenant, may_read) = match p {
        Principal::Admin { .. } => return Ok(()),
        Principal::Tenant { tenant_id, .. } => (tenant_id, true),
        Principal::Publishable { tenant_id, .. } | Principal::Project { tenant_id, .. } => {
            (tenant_id, false)
        }
    };
    if may_read && matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    Ok(crate::domain::tenants::ensure_active(state, tenant)?)
}

impl<K: KeySource> FromRequestParts<Shared> for Caller<K> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> ApiResult<Self> {
        let key = K::key(parts);
        if key.is_none() && K::SESSION {
            if let Some(principal) = session_principal(state, parts).await? {
                refuse_suspended(state, &principal, &parts.method)?;
                return Ok(Self {
                    principal,
                    source: PhantomData,
                });
            }
        }
        let principal = authenticate(state, key.as_deref()).await?;
        refuse_suspended(state, &principal, &parts.method)?;
        Ok(Self {
            principal,
            source: PhantomData,
        })
    }
}

impl FromRequestParts<Shared> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> ApiResult<Self> {
        let who = Caller::<BearerKey>::from_request_parts(parts, state).await?;
        who.principal.admin()?;
        Ok(Self {
            key_id: who.principal.key_id().to_string(),
        })
    }
}

impl<K: KeySource> FromRequestParts<Shared> for TenantCaller<K> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> ApiResult<Self> {
        let principal = Caller::<K>::from_request_parts(parts, state)
            .await?
            .principal;
        // The operator acting in a tenant (the console's "switch into"): the tenant must exist;
        // its audit log names the admin key.
        if let Some(tenant_id) = acting_tenant(state, &principal, &parts.headers).await? {
            return Ok(Self {
                tenant_id,
                key_id: principal.key_id().to_string(),
                source: PhantomData,
            });
        }
        let tenant_id = principal.tenant()?.clone();
        Ok(Self {
            tenant_id,
            key_id: principal.key_id().to_string(),
            source: PhantomData,
        })
    }
}
