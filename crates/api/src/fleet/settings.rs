//! This node's fleet settings, as the binary builds them from its configuration.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::geo::Place;
use super::geoip::GeoIp;

/// This node's place in the fleet (built by the binary from its configuration).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The operator's name for the node (`node_name`).
    pub node_name: String,
    /// Its region (`region`).
    pub region: String,
    /// Where the region is (`region_location`).
    pub location: Option<Place>,
    /// Regions named after the nearest (`fallback_regions`).
    pub fallback_regions: usize,
    /// How often the node writes its row (`heartbeat_interval`).
    pub heartbeat: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// Where clients are (`geoip_database`).
    pub geoip: Option<Arc<GeoIp>>,
    /// The domain of the node's TLS certificate, for ALTERNATE-DOMAIN.
    pub tls_domain: Option<String>,
    /// The node's public signalling endpoint (`wss://host/v1/signal`), when it serves one.
    pub signal_url: Option<String>,
    pub version: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            node_name: "turnpike".into(),
            region: "default".into(),
            location: None,
            fallback_regions: 0,
            heartbeat: Duration::from_secs(2),
            trusted_proxies: Vec::new(),
            geoip: None,
            tls_domain: None,
            signal_url: None,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Whether `name` may name a region: 1 to 64 letters, digits, `-` or `_`.
pub fn region_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
