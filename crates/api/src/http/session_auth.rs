//! Console sessions on API requests: the session cookie stands in for a key on `/v1`
//! ([`session_principal`]), a state change needs the session's CSRF token, and the key a
//! session came from is re-checked on every request (revoking it ends its sessions).

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};

use super::error::{ApiError, ApiResult};
use super::principal::{identify_hash, Principal};
use crate::domain::sessions::SessionRefused;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "turnpike_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token in the request's cookies, if any.
pub(crate) fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

pub(crate) fn not_signed_in() -> ApiError {
    ApiError::unauthorized("not signed in, or the session ended: sign in again")
}

/// The principal and CSRF token of a live session, with its key still valid.
pub(crate) async fn checked(
    state: &AppState,
    token: &str,
    csrf: Option<&str>,
    mutating: bool,
) -> ApiResult<(Principal, String)> {
    let now = state.now();
    let s = state
        .sessions
        .lock()
        .expect("the session table lock is never poisoned")
        .check(token, csrf, mutating, now);
    let s = match s {
        Ok(s) => s,
        Err(SessionRefused::NoSession) => return Err(not_signed_in()),
        Err(SessionRefused::Csrf) => {
            return Err(ApiError::forbidden(
                "a console request that changes something needs its X-CSRF-Token header",
            ))
        }
    };
    match identify_hash(state, &s.principal).await {
        Ok(p) => Ok((p, s.csrf)),
        Err(e) => {
            // The key was revoked or expired: its sessions end with it.
            state
                .sessions
                .lock()
                .expect("the session table lock is never poisoned")
                .end_key(&s.key_id);
            Err(e)
        }
    }
}

/// The caller of a `/v1` request that carries the session cookie instead of a key: `None`
/// without the cookie; 401 for an ended session; 403 for a state change without the CSRF
/// token.
pub async fn session_principal(state: &AppState, parts: &Parts) -> ApiResult<Option<Principal>> {
    let Some(t) = token(&parts.headers) else {
        return Ok(None);
    };
    let mutating = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let (p, _) = checked(state, t, csrf, mutating).await?;
    state
        .take_token(p.key_id())
        .map_err(ApiError::rate_limited)?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_is_read_among_other_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; turnpike_session=tok; b=2"),
        );
        assert_eq!(token(&h), Some("tok"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("xturnpike_session=no"),
        );
        assert_eq!(token(&h), None);
    }
}
