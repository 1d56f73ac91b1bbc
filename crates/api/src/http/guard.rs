//! Per-client-address protection of the API: the client deny list (refused with 403
//! `client_denied` before any handler runs) and the throttle of failed API keys (after
//! `auth_failures_per_minute` failures from one address in a minute, 429 without looking any
//! key up until the minute is over).
//!
//! The client address is the TCP peer (`ConnectInfo<SocketAddr>`, set by both the private
//! listener and the shared port). The middleware makes it available to the key check for the
//! rest of the request through [`client_ip`]; the failure counts are in
//! [`crate::auth_failures`].

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::error::ApiError;
use crate::state::Shared;

tokio::task_local! {
    static CLIENT_IP: Option<IpAddr>;
}

/// The address of the client of the request being handled, if the router runs behind
/// [`guarded`] and the server supplied `ConnectInfo`.
pub fn client_ip() -> Option<IpAddr> {
    CLIENT_IP.try_with(|ip| *ip).ok().flatten()
}

/// `router` behind the client guard: requests from denied addresses get 403 `client_denied`;
/// the others run with their address known to [`client_ip`].
pub fn guarded(state: Shared, router: Router) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state, client_guard))
}

async fn client_guard(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    if ip.is_some_and(|ip| state.directory.is_client_denied(ip)) {
        return ApiError::client_denied().into_response();
    }
    CLIENT_IP.scope(ip, next.run(req)).await
}
