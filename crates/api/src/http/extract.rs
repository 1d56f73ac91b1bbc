//! Request extractors whose rejections use the one error shape: JSON bodies (400 malformed,
//! 413 too large, 415 wrong content type, 422 wrong types, unknown fields or NUL characters),
//! query strings and path parameters (400).
//!
//! NUL (U+0000) is refused everywhere: PostgreSQL cannot store it in text, and accepting it on
//! SQLite only would make the two backends behave differently.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        let v = axum::Json::<T>::from_bytes(&bytes).map_err(json_rejection)?;
        // A raw NUL is invalid JSON, so one can only arrive escaped; parse again only then.
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|j| has_nul(&j))
        {
            return Err(ApiError::invalid(
                "strings must not contain NUL (U+0000) characters",
            ));
        }
        Ok(Self(v.0))
    }
}

/// `application/json` or any `+json` media type, as axum's own `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body is larger than the limit",
    )
}

/// True when a raw (percent-encoded) query or path carries an encoded NUL.
fn encoded_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"%00"))
}

fn json_rejection(e: JsonRejection) -> ApiError {
    let text = e.body_text();
    match e {
        JsonRejection::JsonDataError(_) => ApiError::invalid(text),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text)
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(encoded_nul) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "query parameters must not contain NUL (%00)",
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if encoded_nul(parts.uri.path()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "path parameters must not contain NUL (%00)",
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.body_text())
            })
    }
}
