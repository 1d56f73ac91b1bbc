//! The web console (issue 12): its pages, compiled into the binary, and its sign-in.
//!
//! A tenant signs in with its secret key, the operator with the admin key; the key is sent once
//! (`POST /console/session`) and exchanged for a server-side session ([`crate::domain::sessions`]):
//! the browser keeps a random token in an `HttpOnly; SameSite=Strict` cookie (`Secure` over
//! TLS) and a CSRF token in memory, never the key. The console then calls the same REST API
//! as everyone: [`super::session_auth`] lets `/v1` requests carry the cookie instead of a bearer
//! key, and refuses state changes without `X-CSRF-Token`. Each request re-checks the key the
//! session came from, so revoking the key ends its sessions. Failed sign-ins count toward the
//! per-address throttle of failed keys.
//!
//! Pages are static (HTML, one script, one style sheet) under a strict Content-Security-Policy
//! without `unsafe-inline`; the script renders from the API's JSON.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::authenticate;
use super::error::{ApiError, ApiResult};
use super::extract::Body;
use super::principal::Principal;
use super::session_auth::{checked, not_signed_in, token, COOKIE, CSRF_HEADER};
use crate::keys::hash_key;
use crate::state::{AppState, Shared};

/// Whether the connection a request came on is TLS (set by the binary on the shared port), for
/// the cookie's `Secure` attribute.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverTls(pub bool);

const HTML: &str = include_str!("../../assets/console/index.html");
const JS: &str = include_str!("../../assets/console/console.js");
const CSS: &str = include_str!("../../assets/console/console.css");
// uPlot 1.6.32 (MIT, its licence served beside it): the charts. Vendored from its npm package's
// `dist/`, unchanged, so the console needs no build step and no CDN.
const UPLOT_JS: &str = include_str!("../../assets/console/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/console/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/console/vendor/uPlot.LICENSE");

/// Scripts, styles, images and requests from this origin only; no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route(
            "/console/vendor/uPlot.iife.min.js",
            get(|| async { asset(UPLOT_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/vendor/uPlot.min.css",
            get(|| async { asset(UPLOT_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/vendor/uPlot.LICENSE",
            get(|| async { asset(UPLOT_LICENSE, "text/plain; charset=utf-8") }),
        )
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset(HTML, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

#[derive(Deserialize)]
pub struct SignIn {
    /// A tenant's secret key or the admin key. Sent once; never stored in the browser.
    key: String,
}

/// Who is signed in, and the CSRF token to send with every state change.
#[derive(Serialize)]
pub struct SessionOut {
    /// `admin` or `tenant`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    /// The tenant is suspended by the operator: the console only reads.
    suspended: bool,
    csrf: String,
}

fn describe(state: &AppState, p: &Principal, csrf: String) -> SessionOut {
    match p {
        Principal::Tenant { tenant_id, .. } => SessionOut {
            kind: "tenant",
            tenant_id: Some(tenant_id.to_string()),
            suspended: crate::domain::tenants::is_suspended(state, tenant_id),
            csrf,
        },
        _ => SessionOut {
            kind: "admin",
            tenant_id: None,
            suspended: false,
            csrf,
        },
    }
}

fn cookie(value: &str, max_age: i64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let v =
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).expect("the cookie is made of token characters")
}

async fn sign_in(
    State(state): State<Shared>,
    tls: Option<Extension<OverTls>>,
    Body(b): Body<SignIn>,
) -> ApiResult<Response> {
    let principal = authenticate(&state, Some(b.key.trim())).await?;
    if !matches!(
        principal,
        Principal::Tenant { .. } | Principal::Admin { .. }
    ) {
        return Err(ApiError::forbidden(
            "sign in with a tenant's secret key or the admin key",
        ));
    }
    let now = state.now();
    let s = {
        let mut t = state
            .sessions
            .lock()
            .expect("the session table lock is never poisoned");
        let s = t.create(hash_key(b.key.trim()), principal.key_id(), now);
        metrics::gauge!("turnpike_console_sessions").set(t.len() as f64);
        metrics::counter!("turnpike_console_sessions_evicted_total").absolute(t.evicted);
        s
    };
    let tls = tls.is_some_and(|Extension(t)| t.0);
    let mut resp = (
        StatusCode::CREATED,
        Json(describe(&state, &principal, s.csrf)),
    )
        .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&s.token, crate::domain::sessions::ABSOLUTE, tls),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn current(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let t = token(&headers).ok_or_else(not_signed_in)?;
    let (principal, csrf) = checked(&state, t, None, false).await?;
    let mut resp = Json(describe(&state, &principal, csrf)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn sign_out(
    State(state): State<Shared>,
    tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = token(&headers).ok_or_else(not_signed_in)?;
    let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    checked(&state, t, csrf, true).await?;
    {
        let mut table = state
            .sessions
            .lock()
            .expect("the session table lock is never poisoned");
        table.end(t);
        metrics::gauge!("turnpike_console_sessions").set(table.len() as f64);
    }
    let tls = tls.is_some_and(|Extension(t)| t.0);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, tls));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_same_site_strict_and_secure_over_tls() {
        let c = cookie("abc", 60, true);
        let c = c.to_str().unwrap();
        assert!(
            c.starts_with("turnpike_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60")
        );
        assert!(c.ends_with("; Secure"));
        assert!(!cookie("abc", 60, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
