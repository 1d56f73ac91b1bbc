//! What the driver needs beyond the protocol configuration.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The one default of each driver setting an operator may change (the binary's configuration
/// keys take theirs from here).
pub mod defaults {
    use std::time::Duration;

    pub const RELAY_PORT_MIN: u16 = 49152;
    pub const RELAY_PORT_MAX: u16 = 65535;
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
    pub const TCP_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
    pub const TCP_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
}

/// Sockets, ports and threads.
#[derive(Clone)]
pub struct DriverConfig {
    /// UDP listeners for STUN/TURN.
    pub udp_listen: Vec<SocketAddr>,
    /// TCP listeners for STUN/TURN.
    pub tcp_listen: Vec<SocketAddr>,
    /// TLS listeners for TURNS (need `tls`).
    pub tls_listen: Vec<SocketAddr>,
    /// TLS configuration for the TLS listeners.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// A TLS handshake that takes longer than this is abandoned.
    pub tls_handshake_timeout: Duration,
    /// UDP listeners that carry DTLS (TURN over DTLS) and, demultiplexed by first byte, plain
    /// STUN/TURN too.
    pub dtls_listen: Vec<SocketAddr>,
    /// TCP listeners shared by TURN, TURNS, HTTP and HTTPS (see [`crate::mux`]).
    pub mux_listen: Vec<SocketAddr>,
    /// TLS configuration of the shared listeners (ALPN includes `http/1.1`).
    pub mux_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Where HTTP connections on shared listeners go.
    pub http: Option<crate::mux::HttpService>,
    /// TCP listeners shared by TURN and plain HTTP only (no TLS), e.g. port 80.
    pub mux_plain_listen: Vec<SocketAddr>,
    /// Where HTTP connections on the plain shared listeners go (ACME HTTP-01 challenges and a
    /// redirect to HTTPS).
    pub http_plain: Option<crate::mux::HttpService>,
    /// DTLS settings for the DTLS listeners.
    pub dtls: Option<std::sync::Arc<crate::dtls::DtlsContext>>,
    /// IPv4 addresses relay sockets bind to, taken in turn (one whose ports are all taken
    /// passes to the next). Empty: the address the client reached us on, or for a client that
    /// reached us over IPv6, the first specific IPv4 listener address.
    pub relay_ipv4: Vec<IpAddr>,
    /// IPv6 addresses relay sockets bind to, as `relay_ipv4`. Empty: the address the client
    /// reached us on, or for a client that reached us over IPv4, the first specific IPv6
    /// listener address.
    pub relay_ipv6: Vec<IpAddr>,
    /// Relay port range (inclusive).
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    /// Worker threads (one per core is the design).
    pub workers: usize,
    /// Socket buffer size requested for listeners and relays.
    pub socket_buffer: usize,
    /// TCP connections idle longer than this between frames are closed.
    pub tcp_idle_timeout: Duration,
    /// A new TCP/TLS connection must deliver its first complete frame within this.
    pub tcp_first_frame_timeout: Duration,
    /// A frame, once its first byte arrived, must be complete within this.
    pub tcp_frame_timeout: Duration,
    /// Caps on client TCP/TLS connections (total and per source IP), across all workers.
    pub connections: std::sync::Arc<crate::conn_limit::ConnectionLimits>,
    /// Frames queued for a slow TCP reader before further frames are dropped.
    pub tcp_queue_frames: usize,
    /// Where metering events go (none: not metered).
    pub accounting: Option<turnpike_proto::AccountingSink>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            udp_listen: vec!["0.0.0.0:3478".parse().expect("literal")],
            tcp_listen: vec!["0.0.0.0:3478".parse().expect("literal")],
            tls_listen: vec![],
            tls: None,
            tls_handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
            dtls_listen: vec![],
            mux_listen: vec![],
            mux_tls: None,
            http: None,
            mux_plain_listen: vec![],
            http_plain: None,
            dtls: None,
            relay_ipv4: Vec::new(),
            relay_ipv6: Vec::new(),
            relay_port_min: defaults::RELAY_PORT_MIN,
            relay_port_max: defaults::RELAY_PORT_MAX,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            socket_buffer: 4 << 20,
            tcp_idle_timeout: defaults::TCP_IDLE_TIMEOUT,
            tcp_first_frame_timeout: defaults::TCP_FIRST_FRAME_TIMEOUT,
            tcp_frame_timeout: defaults::TCP_FRAME_TIMEOUT,
            connections: crate::conn_limit::ConnectionLimits::new("turn", 0, 1000),
            tcp_queue_frames: 512,
            accounting: None,
        }
    }
}

impl DriverConfig {
    /// The first listener address of the family that is a specific address (not `0.0.0.0` or
    /// `::`): where relays of that family bind for clients that reached us over the other one.
    pub fn listener_ip(&self, ipv6: bool) -> Option<IpAddr> {
        self.udp_listen
            .iter()
            .chain(&self.tcp_listen)
            .chain(&self.tls_listen)
            .chain(&self.dtls_listen)
            .map(|a| a.ip().to_canonical())
            .find(|ip| ip.is_ipv6() == ipv6 && !ip.is_unspecified())
    }
}
