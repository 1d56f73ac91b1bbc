//! Idempotent creates: a retry with the same `Idempotency-Key` (per API key, within 24 hours)
//! gets the first response again instead of creating twice.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use crate::state::{AppState, Idempotent};

/// How long a create's response is replayed for its `Idempotency-Key`.
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
const IDEMPOTENCY_MAX: usize = 100_000;

/// Runs a create at most once per (key, `Idempotency-Key`): a retry gets the first response
/// again (status and body), without creating anything; a retry while the first is still running
/// gets 409. A failed create is forgotten, so it can be retried with the same key.
///
/// Kept in this node's memory on purpose: create responses carry secrets shown once (keys,
/// passwords), which must not rest in the database in clear.
pub async fn idempotent<T, F>(
    state: &AppState,
    key_id: &str,
    headers: &HeaderMap,
    status: StatusCode,
    create: F,
) -> Response
where
    T: Serialize,
    F: std::future::Future<Output = ApiResult<T>>,
{
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(k) = idem else {
        return match create.await {
            Ok(v) => replay(
                status.as_u16(),
                serde_json::to_string(&v).unwrap_or_default(),
            ),
            Err(e) => e.into_response(),
        };
    };
    if k.is_empty() || k.len() > 255 {
        return ApiError::bad_request("`Idempotency-Key` must be 1 to 255 characters")
            .into_response();
    }
    let slot = (key_id.to_string(), k);
    if let Some(answer) = claim(state, &slot) {
        return answer;
    }
    // Forgets the in-flight mark unless the create finished (also if this future is dropped).
    let mut guard = InFlightGuard {
        state,
        slot: Some(slot),
    };
    match create.await {
        Ok(v) => {
            let body = serde_json::to_string(&v).unwrap_or_default();
            if let Some(slot) = guard.slot.take() {
                let done = Idempotent::Done(Instant::now(), status.as_u16(), body.clone());
                lock(state).insert(slot, done);
            }
            replay(status.as_u16(), body)
        }
        Err(e) => e.into_response(),
    }
}

/// Marks `slot` in flight and returns `None`; or returns the answer instead when it was done
/// already (the first response again), is in flight (409) or the cache is full (503).
fn claim(state: &AppState, slot: &(String, String)) -> Option<Response> {
    let mut cache = lock(state);
    match cache.get(slot) {
        Some(Idempotent::Done(at, code, body)) if at.elapsed() < IDEMPOTENCY_WINDOW => {
            return Some(replay(*code, body.clone()));
        }
        Some(Idempotent::InFlight(since)) if since.elapsed() < IN_FLIGHT_LIMIT => {
            return Some(
                ApiError::conflict(
                    "a request with this `Idempotency-Key` is still being processed; retry shortly",
                )
                .into_response(),
            );
        }
        _ => {}
    }
    if cache.len() >= IDEMPOTENCY_MAX {
        cache.retain(|_, e| match e {
            Idempotent::Done(at, ..) => at.elapsed() < IDEMPOTENCY_WINDOW,
            Idempotent::InFlight(since) => since.elapsed() < IN_FLIGHT_LIMIT,
        });
    }
    if cache.len() >= IDEMPOTENCY_MAX {
        return Some(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many idempotency keys in use; retry later",
            )
            .into_response(),
        );
    }
    cache.insert(slot.clone(), Idempotent::InFlight(Instant::now()));
    None
}

fn lock(state: &AppState) -> std::sync::MutexGuard<'_, crate::state::IdempotencyCache> {
    state.idempotency.lock().unwrap_or_else(|e| e.into_inner())
}

/// The longest a create may hold its `Idempotency-Key` before a retry may run it again.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(60);

struct InFlightGuard<'a> {
    state: &'a AppState,
    slot: Option<(String, String)>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut cache = lock(self.state);
            if matches!(cache.get(&slot), Some(Idempotent::InFlight(_))) {
                cache.remove(&slot);
            }
        }
    }
}

fn replay(code: u16, body: String) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
