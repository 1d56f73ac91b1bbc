//! The fleet's node registry: each node's row, as it last reported itself (its heartbeat).
//! Written by the node itself every few seconds; read by every node to route clients.

/// One node as it last reported itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Random per start (a restarted node is a new row; the old one goes dead and is pruned).
    pub id: String,
    /// The operator's name for it (`node_name`, default the host name).
    pub name: String,
    pub region: String,
    /// Where the region is (degrees), when configured.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub version: String,
    /// The `stun:`/`turn:`/`turns:` URLs clients use to reach it (what its ICE lists name).
    pub urls: Vec<String>,
    /// `ip:port` of its UDP and TCP TURN listeners, for ALTERNATE-SERVER (RFC 8489 §14.15).
    pub addresses: Vec<String>,
    /// `ip:port` of its TLS listeners, with the domain its certificate names.
    pub tls_addresses: Vec<String>,
    pub tls_domain: Option<String>,
    /// Its public signalling endpoint (`wss://host/v1/signal`), when it has one.
    pub signal_url: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix milliseconds of the last heartbeat.
    pub heartbeat_ms: i64,
    /// The node's heartbeat interval (ms): three missed and it is dead for routing.
    pub interval_ms: i64,
    pub draining: bool,
    pub allocations: i64,
    /// Most allocations it takes (0: no cap).
    pub capacity: i64,
    /// Relayed bits per second, all directions, over the last interval.
    pub relayed_bps: i64,
    /// Its process's CPU use over the last interval (100 = one core).
    pub cpu_percent: f64,
}

/// The row as stored (lists as JSON text).
#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    pub id: String,
    pub name: String,
    pub region: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub version: String,
    pub urls: String,
    pub addresses: String,
    pub tls_addresses: String,
    pub tls_domain: Option<String>,
    pub signal_url: Option<String>,
    pub started_at: i64,
    pub heartbeat_ms: i64,
    pub interval_ms: i64,
    pub draining: bool,
    pub allocations: i64,
    pub capacity: i64,
    pub relayed_bps: i64,
    pub cpu_percent: f64,
}

impl From<NodeRow> for NodeRecord {
    fn from(r: NodeRow) -> Self {
        let list = |s: &str| serde_json::from_str::<Vec<String>>(s).unwrap_or_default();
        Self {
            urls: list(&r.urls),
            addresses: list(&r.addresses),
            tls_addresses: list(&r.tls_addresses),
            id: r.id,
            name: r.name,
            region: r.region,
            latitude: r.latitude,
            longitude: r.longitude,
            version: r.version,
            tls_domain: r.tls_domain,
            signal_url: r.signal_url,
            started_at: r.started_at,
            heartbeat_ms: r.heartbeat_ms,
            interval_ms: r.interval_ms,
            draining: r.draining,
            allocations: r.allocations,
            capacity: r.capacity,
            relayed_bps: r.relayed_bps,
            cpu_percent: r.cpu_percent,
        }
    }
}
