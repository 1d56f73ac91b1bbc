//! The fleet's nodes (the operator's): `GET /v1/nodes` lists every registered node with its
//! region, addresses, load and state as routing sees it now.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use turnpike_store::{NodeRecord, Store};
use utoipa::ToSchema;

use super::auth::AdminCaller;
use super::error::{ApiResult, ErrorBody};
use crate::fleet::{now_ms, route};
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/nodes", get(list_nodes))
}

/// One node as the registry holds it.
#[derive(Serialize, ToSchema)]
pub struct NodeOut {
    pub id: String,
    pub name: String,
    pub region: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub version: String,
    /// `healthy` (clients are sent to it), `draining`, `full`, or `dead` (three heartbeats
    /// missed).
    pub state: &'static str,
    /// The node answering this request.
    pub this_node: bool,
    pub urls: Vec<String>,
    pub addresses: Vec<String>,
    pub tls_addresses: Vec<String>,
    pub tls_domain: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix milliseconds of its last heartbeat, and its heartbeat interval.
    pub heartbeat_ms: i64,
    pub heartbeat_interval_ms: i64,
    pub allocations: i64,
    /// Most allocations it takes (0: no cap).
    pub capacity: i64,
    pub relayed_bps: i64,
    pub cpu_percent: f64,
}

/// The state routing gives `n` at `now_ms`.
pub fn node_state(n: &NodeRecord, now_ms: i64) -> &'static str {
    if !route::alive(n, now_ms) {
        "dead"
    } else if n.draining {
        "draining"
    } else if !route::healthy(n, now_ms) {
        "full"
    } else {
        "healthy"
    }
}

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, body = Vec<NodeOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_nodes(
    State(state): State<Shared>,
    _: AdminCaller,
) -> ApiResult<Json<Vec<NodeOut>>> {
    let now = now_ms();
    let nodes = state.store.list_nodes().await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| NodeOut {
                state: node_state(&n, now),
                this_node: n.id == state.node_id,
                id: n.id,
                name: n.name,
                region: n.region,
                latitude: n.latitude,
                longitude: n.longitude,
                version: n.version,
                urls: n.urls,
                addresses: n.addresses,
                tls_addresses: n.tls_addresses,
                tls_domain: n.tls_domain,
                started_at: n.started_at,
                heartbeat_ms: n.heartbeat_ms,
                heartbeat_interval_ms: n.interval_ms,
                allocations: n.allocations,
                capacity: n.capacity,
                relayed_bps: n.relayed_bps,
                cpu_percent: n.cpu_percent,
            })
            .collect(),
    ))
}
