//! The HTTP side of the binary: `/healthz`, `/metrics` (Prometheus) and the control plane's API
//! (`turnpike-api`). Served on `metrics_listen` and, through the shared-port demultiplexer, on
//! `listen_mux` (HTTP and HTTPS).
//! Errors use one JSON shape: `{"error": {"code": "...", "message": "..."}}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use turnpike_server::mux::HttpService;

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": {"code": "not_found", "message": "no such endpoint"}})),
    )
}

/// The router shared by every HTTP entry point: health, metrics and the control plane's API.
pub fn router(metrics: Option<PrometheusHandle>, api: Option<Router>) -> Router {
    let mut r = Router::new().route(
        "/healthz",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    );
    if let Some(h) = metrics {
        r = r.route("/metrics", get(move || std::future::ready(h.render())));
    }
    if let Some(api) = api {
        r = r.merge(api);
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(
            serde_json::json!({"error": {"code": "method_not_allowed", "message": "this endpoint does not take that method"}}),
        ),
    )
}

/// The router as a connection handler for the shared-port listeners. (No HTTP upgrades there:
/// the worker threads' connections are not `Send`, so signalling WebSockets are served on the
/// `metrics_listen` listener.)
pub fn service(router: Router) -> HttpService {
    Arc::new(move |io, peer: SocketAddr, _tls: bool| {
        // Handlers that need the client address (per-IP limits) read it as `ConnectInfo`.
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        Box::pin(async move {
            let io = hyper_util::rt::TokioIo::new(io);
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        })
    })
}
