//! The wire of the Metered-compatible API: Metered's error bodies and status codes (not
//! Turnpike's one error shape), its keys in the query string (`secretKey`, `apiKey`,
//! `projectApiKey`), lenient JSON bodies (Metered's `DELETE`s carry one), its region names and
//! the ICE-server array it returns (one URL string per entry).
//!
//! Errors: `{"message": "..."}` with 400 for anything wrong with the request (Metered answers
//! 400 where Turnpike's API says 404, 409 or 422), 401 for a bad key (or 400, on the endpoints
//! where Metered says so), 500 with an event id in the text (the id is logged); the ICE-server
//! and archived v1 usage endpoints use `{"error": "..."}` instead.

use std::net::IpAddr;

use turnpike_store::TenantId;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{authenticate, bearer, Principal};
use super::error::ApiError;
use super::extract::Body;
use crate::domain::audit;
use crate::domain::error::DomainError;
use crate::domain::projects::{self, Project};
use crate::keys::random_hex;
use crate::state::AppState;

/// Metered's usual error body.
#[derive(Serialize, ToSchema)]
pub struct MeteredMessage {
    pub message: String,
}

/// The error body of Metered's ICE-server and archived usage endpoints.
#[derive(Serialize, ToSchema)]
pub struct MeteredErrorText {
    pub error: String,
}

/// An error answered in Metered's shape.
#[derive(Debug, Clone)]
pub struct MeteredError {
    pub status: StatusCode,
    /// `message` or `error`: the body's one field.
    pub field: &'static str,
    pub text: String,
    pub retry_after: Option<u64>,
}

pub type MeteredResult<T> = Result<T, MeteredError>;

impl MeteredError {
    pub fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            field: "message",
            text: text.into(),
            retry_after: None,
        }
    }

    /// 400 `{"message": text}`.
    pub fn bad(text: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, text)
    }

    /// The same error with the body `{"error": text}`.
    pub fn as_error_field(mut self) -> Self {
        self.field = "error";
        self
    }
}

impl From<ApiError> for MeteredError {
    fn from(e: ApiError) -> Self {
        let status = match e.status {
            StatusCode::NOT_FOUND | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                StatusCode::BAD_REQUEST
            }
            s => s,
        };
        let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
            let id = random_hex(8);
            tracing::error!(event_id = %id, "internal error on a Metered-compatible path");
            format!("An internal error occurred, event id: {id}")
        } else {
            e.message
        };
        Self {
            status,
            field: "message",
            text,
            retry_after: e.retry_after,
        }
    }
}

impl From<DomainError> for MeteredError {
    fn from(e: DomainError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<turnpike_store::StoreError> for MeteredError {
    fn from(e: turnpike_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for MeteredError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ self.field: self.text });
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// A query string; a malformed one is a 400 in Metered's shape.
pub struct MQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for MQuery<T> {
    type Rejection = MeteredError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let q = super::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(q.0))
    }
}

/// A path parameter, in Metered's shape when malformed.
pub struct MPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for MPath<T> {
    type Rejection = MeteredError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let p = super::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(p.0))
    }
}

/// An optional JSON body (Metered's clients send none on some calls, and a body on `DELETE`):
/// empty is the default value; otherwise it must be JSON with a JSON content type. Unknown
/// fields are ignored, as Metered does.
pub struct MBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for MBody<T> {
    type Rejection = MeteredError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        if !typed || empty {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| MeteredError::bad(e.body_text()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            return Err(MeteredError::bad(
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let Body(v) = Body::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// The keys a request carries: Metered's query parameters, and a bearer header (Turnpike's
/// way) as a fallback for `secretKey`.
#[derive(Debug, Default)]
pub struct Keys {
    pub secret: Option<String>,
    pub api: Option<String>,
    pub project: Option<String>,
    /// The request only reads (GET or HEAD): allowed for a suspended tenant.
    pub reads: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Keys {
    type Rejection = MeteredError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut k = Self {
            reads: matches!(parts.method, Method::GET | Method::HEAD),
            ..Self::default()
        };
        if let Some(q) = parts.uri.query() {
            for (name, v) in url::form_urlencoded::parse(q.as_bytes()) {
                let slot = match &*name {
                    "secretKey" => &mut k.secret,
                    "apiKey" => &mut k.api,
                    "projectApiKey" => &mut k.project,
                    _ => continue,
                };
                if slot.is_none() && !v.is_empty() {
                    *slot = Some(v.into_owned());
                }
            }
        }
        if k.secret.is_none() {
            k.secret = bearer(&parts.headers).map(str::to_string);
        }
        Ok(k)
    }
}

/// How an endpoint answers a missing or a bad `secretKey` (Metered's endpoints differ).
pub struct Flavor {
    pub missing: (StatusCode, &'static str),
    pub invalid: (StatusCode, &'static str),
}

const MISSING: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "secretKey is required");

/// Most app endpoints: 400 missing, 401 invalid.
pub const SECRET: Flavor = Flavor {
    missing: MISSING,
    invalid: (StatusCode::UNAUTHORIZED, "Invalid secretKey"),
};

/// Disable (M5): a bad key is 400 `Invalid request. App not found`.
pub const APP_NOT_FOUND: Flavor = Flavor {
    missing: MISSING,
    invalid: (StatusCode::BAD_REQUEST, "Invalid request. App not found"),
};

/// Delete by label (M7): 400 for both.
pub const BY_LABEL: Flavor = Flavor {
    missing: MISSING,
    invalid: (StatusCode::BAD_REQUEST, "invalid secretKey"),
};

/// The project endpoints: 400 for both.
pub const PROJECT: Flavor = Flavor {
    missing: MISSING,
    invalid: (StatusCode::BAD_REQUEST, "invalid secretKey app not found"),
};

/// Who called: the tenant (an app, or a project) and the key used, for the audit log.
#[derive(Debug, Clone)]
pub struct Who {
    pub tenant_id: TenantId,
    pub key_id: String,
}

impl Who {
    /// Records a change in the tenant's audit log.
    pub async fn audit(
        &self,
        state: &AppState,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) {
        let t = Some(&self.tenant_id);
        audit::record(state, &self.key_id, t, action, target, detail).await;
    }
}

/// A key check's error: throttling and rate limits keep their 429; a key that is not valid
/// (or of the wrong kind) is `invalid`.
fn refused(e: ApiError, invalid: (StatusCode, &'static str)) -> MeteredError {
    if e.status == StatusCode::UNAUTHORIZED {
        MeteredError::new(invalid.0, invalid.1)
    } else {
        e.into()
    }
}

impl Keys {
    /// The app (a tenant's secret key in `secretKey`).
    pub async fn app(&self, state: &AppState, f: &Flavor) -> MeteredResult<Who> {
        let key = self
            .secret
            .as_deref()
            .ok_or_else(|| MeteredError::new(f.missing.0, f.missing.1))?;
        match authenticate(state, Some(key))
            .await
            .map_err(|e| refused(e, f.invalid))?
        {
            Principal::Tenant { tenant_id, key_id } => {
                if !self.reads {
                    crate::domain::tenants::ensure_active(state, &tenant_id)?;
                }
                Ok(Who { tenant_id, key_id })
            }
            _ => Err(MeteredError::new(f.invalid.0, f.invalid.1)),
        }
    }

    /// Project `id` of the caller: its parent's `secretKey`, or its own `projectApiKey`.
    pub async fn project(&self, state: &AppState, id: &TenantId) -> MeteredResult<(Who, Project)> {
        check_project_id(id)?;
        if let Some(key) = self.project.as_deref() {
            let invalid = (StatusCode::UNAUTHORIZED, "Invalid projectApiKey");
            match authenticate(state, Some(key))
                .await
                .map_err(|e| refused(e, invalid))?
            {
                Principal::Project { tenant_id, key_id } if tenant_id == *id => {
                    crate::domain::tenants::ensure_active(state, &tenant_id)?;
                    let t = tenant(state, &tenant_id).await?;
                    let parent = t.parent_id.clone().unwrap_or_default();
                    let p = projects::get(state, &parent, id).await?;
                    return Ok((Who { tenant_id, key_id }, p));
                }
                _ => return Err(MeteredError::new(invalid.0, invalid.1)),
            }
        }
        let app = self.app(state, &PROJECT).await?;
        let p = projects::get(state, &app.tenant_id, id).await?;
        Ok((
            Who {
                tenant_id: p.tenant.id.clone(),
                key_id: app.key_id,
            },
            p,
        ))
    }

    /// A project the app (`secretKey` only) manages.
    pub async fn owned_project(
        &self,
        state: &AppState,
        id: &TenantId,
    ) -> MeteredResult<(Who, Project)> {
        check_project_id(id)?;
        let app = self.app(state, &PROJECT).await?;
        let p = projects::get(state, &app.tenant_id, id).await?;
        Ok((app, p))
    }
}

/// Project ids are tenant ids (`ten_` and 24 hex digits); anything else is 400 `Invalid
/// projectId`, as Metered answers ids that are not ObjectIds.
pub fn check_project_id(id: &str) -> MeteredResult<()> {
    let ok = id
        .strip_prefix("ten_")
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(MeteredError::bad("Invalid projectId"))
    }
}

async fn tenant(state: &AppState, id: &TenantId) -> MeteredResult<turnpike_store::Tenant> {
    use turnpike_store::Store;
    match state.store.get_tenant(id).await {
        Ok(t) => Ok(t),
        Err(turnpike_store::StoreError::NotFound) => Err(MeteredError::bad("Project not found")),
        Err(e) => Err(e.into()),
    }
}

/// Metered's region names (`region` of the ICE-server endpoint).
pub const REGIONS: &[&str] = &[
    "global",
    "north_america",
    "europe",
    "eu",
    "asia",
    "oceania",
    "us_west",
    "us_central",
    "us_east",
    "canada_central",
    "canada_east",
    "europe_west",
    "europe_central",
    "asia_west",
    "asia_east",
    "canada",
    "usa",
    "uk",
    "singapore",
    "india",
    "australia",
    "standard",
];

/// The nodes for Metered's `region`: a region of the fleet is routed to; one of Metered's own
/// names that is not a fleet region means "the nearest" (as when absent); anything else is 400
/// listing both.
pub fn metered_targets(
    state: &AppState,
    client: Option<IpAddr>,
    region: Option<&str>,
    allowed: Option<&[String]>,
) -> MeteredResult<Vec<crate::fleet::Target>> {
    let asked = region.filter(|r| !REGIONS.contains(r) || fleet_knows(state, r));
    crate::fleet::targets(state, client, asked, allowed).map_err(|e| match e {
        crate::fleet::RouteError::UnknownRegion(mut known) => {
            known.extend(REGIONS.iter().map(|r| r.to_string()));
            MeteredError::bad(format!(
                "Invalid region. Valid regions: {}",
                known.join(", ")
            ))
            .as_error_field()
        }
        e
        @ (crate::fleet::RouteError::Unavailable(_) | crate::fleet::RouteError::NoHealthyNode) => {
            MeteredError::from(super::ephemeral::region_error(e)).as_error_field()
        }
    })
}

fn fleet_knows(state: &AppState, region: &str) -> bool {
    state.fleet.nodes().iter().any(|n| n.region == region)
}

/// The address ICE lists should name for this request instead of the detected public host:
/// the `Host` header, when the public host was detected rather than configured and the header
/// is an IP literal of this machine (see `ApiConfig::host_header_ips`).
pub fn host_from_request(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if state.cfg.host_header_ips.is_empty() {
        return None;
    }
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    let ip: IpAddr = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else {
        match host.split_once(':') {
            Some((h, port)) if !port.contains(':') => h.parse().ok()?,
            Some(_) => host.parse().ok()?,
            None => host.parse().ok()?,
        }
    };
    state
        .cfg
        .host_header_ips
        .contains(&ip)
        .then(|| ip.to_string())
}

/// One entry of Metered's ICE-server array: a single URL string.
#[derive(Serialize, ToSchema, Debug, PartialEq, Eq)]
pub struct IceEntry {
    pub urls: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers of `targets` carrying a username and password, as Metered's array: one
/// entry per URL. `host`: the address to name for this node instead of its public host.
pub fn ice_entries(
    state: &AppState,
    targets: &[crate::fleet::Target],
    host: Option<&str>,
    username: &str,
    password: &str,
) -> Vec<IceEntry> {
    crate::fleet::ice_servers(state, targets, host, username, password)
        .into_iter()
        .flat_map(|s| {
            s.urls.into_iter().map(move |u| IceEntry {
                urls: u,
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_tenant_ids() {
        assert!(check_project_id("ten_0123456789abcdef01234567").is_ok());
        for bad in [
            "",
            "ten_",
            "6500f1b2c3d4e5f6a7b8c9d0",
            "ten_0123456789abcdef0123456z",
        ] {
            let e = check_project_id(bad).expect_err(bad);
            assert_eq!(
                (e.status, e.text.as_str()),
                (StatusCode::BAD_REQUEST, "Invalid projectId")
            );
        }
    }

    #[test]
    fn turnpike_errors_become_metered_ones() {
        let e = MeteredError::from(ApiError::not_found("credential not found"));
        assert_eq!(
            (e.status, e.field, e.text.as_str()),
            (StatusCode::BAD_REQUEST, "message", "credential not found")
        );
        let e = MeteredError::from(ApiError::internal());
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.text.contains("event id: "), "{}", e.text);
        let e = MeteredError::from(ApiError::rate_limited(3));
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(3))
        );
    }
}
