//! One JSON error shape for every endpoint: `{"error": {"code": "...", "message": "..."}}` with
//! the status code that fits (400 malformed, 401 no or bad key, 403 not allowed, 404 unknown or
//! another tenant's, 409 conflict, 413 too large, 415 not JSON, 422 well-formed but invalid,
//! 429 rate limited with `Retry-After`, 500 internal, 503 `database_lost` when the SQLite file
//! was removed or replaced under the running server). Messages never carry secrets.
//!
//! Domain and store errors become this shape here and nowhere else: see the `From` impls.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use turnpike_store::StoreError;
use utoipa::ToSchema;

use crate::domain::error::DomainError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_field`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged on the server)",
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this key; retry later",
            )
        }
    }

    /// Too many failed API keys from the caller's address (no key is looked up meanwhile).
    pub fn auth_throttled(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed API key attempts from this address; retry later",
            )
        }
    }
    /// The caller's tenant is suspended by the operator.
    pub fn suspended(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "tenant_suspended", m)
    }
    /// The caller's address is on the client deny list.
    pub fn client_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "client_denied",
            "requests from this address are refused",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => Self::invalid(m),
            DomainError::Forbidden(m) => Self::forbidden(m),
            DomainError::NotFound(m) => Self::not_found(m),
            DomainError::Conflict(m) => Self::conflict(m),
            e @ DomainError::Suspended => Self::suspended(e.to_string()),
            DomainError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such object"),
            StoreError::Conflict(what) => Self::conflict(format!("{what} already exists")),
            // Says nothing of the other credential (it may be another tenant's).
            StoreError::KeyCollision => Self::conflict(
                "this username cannot be used with this password; choose another password",
            ),
            // Logged once by the store.
            StoreError::DatabaseLost => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_lost",
                "the database file was removed or replaced while the server was running; writes \
                 are refused so that nothing is silently lost: restore the file and restart the \
                 server",
            ),
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_statuses_and_codes() {
        let cases = [
            (DomainError::Invalid("`x` bad".into()), 422, "invalid_field"),
            (DomainError::Forbidden("no".into()), 403, "forbidden"),
            (DomainError::NotFound("none".into()), 404, "not_found"),
            (DomainError::Conflict("again".into()), 409, "conflict"),
            (DomainError::Suspended, 403, "tenant_suspended"),
            (StoreError::NotFound.into(), 404, "not_found"),
            (
                StoreError::Conflict("credential username").into(),
                409,
                "conflict",
            ),
            (StoreError::KeyCollision.into(), 409, "conflict"),
            (StoreError::DatabaseLost.into(), 503, "database_lost"),
            (StoreError::Corrupt("api_keys.kind").into(), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let text = e.to_string();
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{text}");
        }
        // The domain's message is the API's message; a store failure's is not shown.
        assert_eq!(
            ApiError::from(DomainError::Invalid("`x` bad".into())).message,
            "`x` bad"
        );
        let internal = ApiError::from(DomainError::Store(StoreError::Corrupt("api_keys.kind")));
        assert_eq!(internal.message, "internal error (logged on the server)");
    }
}
