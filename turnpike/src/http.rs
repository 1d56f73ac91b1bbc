//! The HTTP side of the binary: `/healthz`, `/metrics` (Prometheus), the demo pages and the
//! control plane's API (`turnpike-api`, `turnpike-signal`). Two routers:
//!
//! - the private one, served on `metrics_listen` (loopback by default): everything;
//! - the public one, served through the shared-port demultiplexer on `listen_mux` (meant for
//!   port 443): the API (authenticated by keys) and `/healthz`; `/metrics` only with the
//!   `metrics_token` bearer token, and the demo pages (which mint TURN credentials for anyone)
//!   only with `demo_public = true`.
//!
//! Every connection gets a header-read deadline (`http_header_timeout`); the private listener
//! admits connections within the HTTP connection caps and refuses denied client addresses.
//! Errors use one JSON shape: `{"error": {"code": "...", "message": "..."}}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use turnpike_proto::Directory;
use turnpike_server::conn_limit::ConnectionLimits;
use turnpike_server::mux::HttpService;

fn error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn not_found() -> impl IntoResponse {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> impl IntoResponse {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

/// What the routers are made of.
pub(crate) struct Parts {
    pub metrics: PrometheusHandle,
    pub metrics_token: Option<String>,
    pub api: Option<Router>,
    pub demo: Option<Router>,
    pub demo_public: bool,
    pub health: Arc<crate::health::Health>,
}

/// The private router (everything) and the public one (see the module doc).
pub(crate) fn routers(p: Parts) -> (Router, Router) {
    let health = p.health.clone();
    let healthz = get(move || {
        let health = health.clone();
        async move {
            match health.liveness() {
                None => Json(serde_json::json!({"status": "ok"})).into_response(),
                Some(why) => error(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", why),
            }
        }
    });
    let health = p.health.clone();
    let readyz = get(move || {
        let health = health.clone();
        async move {
            let why = health.readiness().await;
            if why.is_empty() {
                Json(serde_json::json!({"status": "ready"})).into_response()
            } else {
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    &why.join("; "),
                )
            }
        }
    });
    let mut private = Router::new()
        .route("/healthz", healthz.clone())
        .route("/readyz", readyz.clone());
    let mut public = Router::new()
        .route("/healthz", healthz)
        .route("/readyz", readyz);
    let h = p.metrics.clone();
    private = private.route("/metrics", get(move || std::future::ready(h.render())));
    if let Some(token) = p.metrics_token {
        let h = p.metrics;
        let token = Arc::new(token);
        public = public.route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let ok = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
                let body = ok.then(|| h.render());
                async move {
                    match body {
                        Some(b) => b.into_response(),
                        None => error(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "/metrics needs the configured bearer token",
                        ),
                    }
                }
            }),
        );
    }
    if let Some(api) = p.api {
        private = private.merge(api.clone());
        public = public.merge(api);
    }
    if let Some(demo) = p.demo {
        if p.demo_public {
            public = public.merge(demo.clone());
        }
        private = private.merge(demo);
    }
    let finish = |r: Router| {
        r.fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
    };
    (finish(private), finish(public))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// An HTTP/1.1 connection builder with the header-read deadline.
fn builder(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    b
}

/// The router as a connection handler for the shared-port listeners (whose caps and deny list
/// the TURN side applies), with HTTP upgrades: signalling WebSockets work on 443 too
/// (`wss://host/v1/signal`), served by the worker thread that accepted the connection.
pub(crate) fn service(router: Router, header_timeout: Duration) -> HttpService {
    Arc::new(move |io, peer: SocketAddr, tls: bool| {
        // Handlers that need the client address (per-IP limits) read it as `ConnectInfo`; the
        // console marks its session cookie `Secure` on TLS connections.
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
            .layer(axum::Extension(turnpike_api::http::console::OverTls(tls)));
        Box::pin(async move {
            let io = hyper_util::rt::TokioIo::new(io);
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let _ = builder(header_timeout)
                .serve_connection(io, svc)
                .with_upgrades()
                .await;
        })
    })
}

/// Serves `router` on the private listener: connections within `limits`, denied clients
/// refused, a header-read deadline, WebSocket upgrades allowed.
pub(crate) async fn serve_listener(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Arc<ConnectionLimits>,
    directory: Arc<Directory>,
    header_timeout: Duration,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "http accept error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if directory.is_client_denied(peer.ip()) {
            continue;
        }
        let Ok(permit) = limits.try_acquire(peer.ip()) else {
            continue;
        };
        // Small writes (API answers, signalling messages) go out at once: without this, Nagle
        // and delayed ACKs stall a busy WebSocket by tens of milliseconds per exchange.
        let _ = stream.set_nodelay(true);
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let _ = builder(header_timeout)
                .serve_connection(io, svc)
                .with_upgrades()
                .await;
        });
    }
}

/// The router of the plain shared listeners (port 80): `/healthz`, ACME HTTP-01 challenges
/// (added by the ACME module), and a permanent redirect of everything else to HTTPS on the same
/// host, so nothing (API keys, signalling tokens) travels in clear on a public port.
pub(crate) fn redirect_router(
    health: Arc<crate::health::Health>,
    public_host: Option<String>,
    http01: Option<Arc<crate::acme::Http01>>,
) -> Router {
    let challenge: axum::routing::MethodRouter = get(
        move |axum::extract::Path(token): axum::extract::Path<String>| {
            let answer = http01.as_ref().and_then(|h| h.answer(&token));
            async move {
                match answer {
                    Some(key_authorization) => key_authorization.into_response(),
                    None => error(StatusCode::NOT_FOUND, "not_found", "no such challenge"),
                }
            }
        },
    );
    let healthz = get(move || {
        let health = health.clone();
        async move {
            match health.liveness() {
                None => Json(serde_json::json!({"status": "ok"})).into_response(),
                Some(why) => error(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", why),
            }
        }
    });
    Router::new()
        .route("/healthz", healthz)
        .route("/.well-known/acme-challenge/{token}", challenge)
        .fallback(move |headers: HeaderMap, uri: axum::http::Uri| {
            let public_host = public_host.clone();
            async move {
                // The host the client asked for (its port dropped: HTTPS is on 443), else ours.
                let host = headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| match h.rsplit_once(':') {
                        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                            name.to_string()
                        }
                        _ => h.to_string(),
                    })
                    .filter(|h| {
                        !h.is_empty()
                            && h.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
                    })
                    .or(public_host);
                let Some(host) = host else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "use_https",
                        "this port serves TURN and redirects HTTP to HTTPS; no host to redirect to",
                    );
                };
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                axum::response::Redirect::permanent(&format!("https://{host}{path}"))
                    .into_response()
            }
        })
}
