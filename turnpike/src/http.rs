//! The HTTP side of the binary for now: `/healthz`, `/metrics` (Prometheus) and `/ice-servers`
//! is not here yet (the API issue brings the authenticated endpoints). Served on
//! `metrics_listen` and, through the shared-port demultiplexer, on `listen_mux` (HTTP and HTTPS).
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

/// The router shared by every HTTP entry point.
pub fn router(metrics: Option<PrometheusHandle>) -> Router {
    let mut r = Router::new().route(
        "/healthz",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    );
    if let Some(h) = metrics {
        r = r.route("/metrics", get(move || std::future::ready(h.render())));
    }
    r.fallback(not_found)
}

/// The router as a connection handler for the shared-port listeners.
pub fn service(router: Router) -> HttpService {
    Arc::new(move |io, _peer: SocketAddr, _tls: bool| {
        let router = router.clone();
        Box::pin(async move {
            let io = hyper_util::rt::TokioIo::new(io);
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        })
    })
}
