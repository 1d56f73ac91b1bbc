//! Configuration: defaults, then a TOML file, then environment variables and flags (the last
//! wins). Every key of the file is also a flag `--key-name` and a variable `TURNPIKE_KEY_NAME`;
//! `turnpike --help` lists them all. Unknown keys and bad values fail start-up with a message that
//! names the key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The settled configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Realm of long-term credentials.
    pub realm: String,
    /// UDP listeners for STUN/TURN.
    pub listen_udp: Vec<SocketAddr>,
    /// TCP listeners for STUN/TURN.
    pub listen_tcp: Vec<SocketAddr>,
    /// TLS listeners for TURNS.
    pub listen_tls: Vec<SocketAddr>,
    /// UDP listeners for TURN over DTLS (plain STUN/TURN is served on them too).
    pub listen_dtls: Vec<SocketAddr>,
    /// TCP listeners shared by TURN, TURNS, HTTP and HTTPS (e.g. `0.0.0.0:443`).
    pub listen_mux: Vec<SocketAddr>,
    /// Public host name (or IP) put in ICE-server URIs; unset: the listeners' addresses.
    pub public_host: Option<String>,
    /// RFC 5780 NAT behaviour discovery: the node's second IP address (enables it).
    pub rfc5780_alternate_ip: Option<IpAddr>,
    /// RFC 5780: the primary IP (default: the first specific `listen_udp` address of that family).
    pub rfc5780_primary_ip: Option<IpAddr>,
    /// RFC 5780: the alternate port (default: the first `listen_udp` port + 1).
    pub rfc5780_alternate_port: Option<u16>,
    /// PEM certificate chain for TLS; with `tls_key`. Unset: a self-signed development certificate.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Names in the generated self-signed certificate.
    pub tls_self_signed_names: Vec<String>,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout: u64,
    /// IPv4 address relay sockets bind to (default: the address the client reached).
    pub relay_ipv4: Option<IpAddr>,
    /// IPv6 address relay sockets bind to (default: the address the client reached).
    pub relay_ipv6: Option<IpAddr>,
    /// Public IPv4 advertised in XOR-RELAYED-ADDRESS when behind 1:1 NAT.
    pub external_ipv4: Option<IpAddr>,
    /// Public IPv6 advertised in XOR-RELAYED-ADDRESS.
    pub external_ipv6: Option<IpAddr>,
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Static users, each `name:password` (or `name:0x<32 hex digits>` for a precomputed MD5 key).
    pub users: Vec<String>,
    /// Shared secrets for time-limited credentials (first one mints, all are accepted).
    pub shared_secrets: Vec<String>,
    /// Where Turnpike keeps generated state (the default shared secret).
    pub data_dir: PathBuf,
    /// Allocation lifetime when the client asks for none, seconds.
    pub default_lifetime: u64,
    /// Longest allocation lifetime granted, seconds.
    pub max_lifetime: u64,
    /// Nonce validity, seconds.
    pub nonce_lifetime: u64,
    /// Most live allocations on this node (0: unlimited; unset: derived from the file
    /// descriptor limit).
    pub max_allocations: Option<usize>,
    /// Most live allocations per user (0: unlimited; unset: a quarter of the relay capacity).
    pub max_allocations_per_user: Option<usize>,
    /// Most live allocations of a tenant without its own allocation quota (0: unlimited; unset: half the relay capacity).
    pub tenant_max_allocations: Option<usize>,
    /// When non-empty, only peers in these ranges may be reached.
    pub allowed_peer_ranges: Vec<IpNet>,
    /// Peers in these ranges are always refused.
    pub denied_peer_ranges: Vec<IpNet>,
    /// DANGER: opens otherwise-refused special ranges (loopback, private, ...) to relaying.
    pub danger_allow_peer_ranges: Vec<IpNet>,
    /// Client addresses refused on every listener (TURN, STUN, API); re-read on SIGHUP. The API's deny list applies too.
    pub denied_client_ranges: Vec<IpNet>,
    /// Unauthenticated answers over UDP (Binding, challenges, errors): bytes a source may get
    /// back beyond what it sent (0: no budget).
    pub unauth_bytes_burst: u32,
    /// ... refilled at this many bytes per second.
    pub unauth_bytes_per_sec: u32,
    /// Prometheus /metrics listener; empty to disable.
    pub metrics_listen: String,
    /// Bearer token that opens /metrics on the shared (public) port; unset: /metrics only on `metrics_listen`.
    pub metrics_token: Option<String>,
    /// `human` or `json`.
    pub log_format: String,
    /// tracing filter, e.g. `info` or `turnpike=debug`.
    pub log_level: String,
    /// SOFTWARE attribute; empty to send none.
    pub software: String,
    /// Seconds a TCP connection may stay idle between frames.
    pub tcp_idle_timeout: u64,
    /// Most TURN TCP/TLS connections from one source IP (0: an eighth of `max_connections`).
    pub tcp_max_per_source: usize,
    /// Most TURN TCP/TLS client connections at once (0: derived from the file descriptor limit).
    pub max_connections: usize,
    /// Seconds a new TCP/TLS connection has to deliver its first complete STUN message.
    pub tcp_first_frame_timeout: u64,
    /// Seconds a STUN message or ChannelData frame may take to arrive once its first byte did.
    pub tcp_frame_timeout: u64,
    /// Most HTTP connections at once on the API listener and the shared port together (0: derived from the file descriptor limit).
    pub http_max_connections: usize,
    /// Seconds an HTTP client has to send a request's headers (then the connection is closed).
    pub http_header_timeout: u64,
    /// In drain mode, exit once the last allocation is gone.
    pub drain_exit: bool,
    /// Run the control plane (REST API, metering, stored and ephemeral credentials).
    pub control_plane: bool,
    /// Database: `sqlite://PATH` or `postgres://...`; unset: `sqlite://<data_dir>/turnpike.db`.
    pub database_url: Option<String>,
    /// The operator's admin API key; unset: one is generated and printed at first start.
    pub admin_key: Option<String>,
    /// API requests per key: burst.
    pub api_rate_burst: u32,
    /// API requests per key: sustained per second.
    pub api_rate_per_sec: u32,
    /// Largest API request body, bytes.
    pub api_max_body: usize,
    /// Lifetime of minted ephemeral credentials when not asked, seconds.
    pub ephemeral_default_ttl: u64,
    /// Longest lifetime of ephemeral credentials, seconds.
    pub ephemeral_max_ttl: u64,
    /// How often metered usage is written to the database, milliseconds.
    pub usage_flush_interval_ms: u64,
    /// How often credentials are re-read from the database (changes by other nodes), milliseconds.
    pub directory_sync_interval_ms: u64,
    /// SMTP server for alert emails; unset: no email.
    pub smtp_host: Option<String>,
    /// SMTP port.
    pub smtp_port: u16,
    /// `starttls`, `tls` or `none` (DANGER: plain text; for local relays only).
    pub smtp_security: String,
    /// SMTP user.
    pub smtp_username: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<String>,
    /// Sender address of alert emails.
    pub smtp_from: String,
    /// Webhook delivery attempts.
    pub webhook_attempts: u32,
    /// First webhook retry delay (doubles each time), milliseconds.
    pub webhook_first_retry_ms: u64,
    /// DANGER: webhook targets in these otherwise-refused ranges (loopback, private, link-local,
    /// metadata) are allowed, e.g. `127.0.0.0/8` for a receiver on this machine.
    pub danger_allow_webhook_ranges: Vec<IpNet>,
    /// Failed API key lookups allowed per client IP and minute before 429 (0: no limit).
    pub api_auth_failures_per_minute: u32,
    /// Signalling room bus: `memory` (one node), `postgres` (LISTEN/NOTIFY; several nodes sharing `database_url`), or `auto` (postgres when `database_url` is PostgreSQL).
    pub signal_bus: String,
    /// Serve the demo pages (`/demo`, `/demo/ice-test`) and mint tokens for a built-in demo tenant (rate limited, with a daily quota).
    pub demo_enabled: bool,
    /// Serve the demo pages and demo tokens on the shared (public) port too (they mint TURN credentials for anyone).
    pub demo_public: bool,
    /// Largest signalling message, bytes.
    pub signal_max_message_bytes: usize,
    /// Most participants in one room.
    pub signal_max_room_size: usize,
    /// Most signalling connections from one IP address (per node).
    pub signal_max_conns_per_ip: usize,
    /// Most signalling participants of one tenant (per node).
    pub signal_max_conns_per_tenant: usize,
    /// Messages per second per connection (burst twice that).
    pub signal_msgs_per_sec: u32,
    /// Bytes per second per connection.
    pub signal_bytes_per_sec: u32,
    /// Outbound messages queued per connection before a slow consumer is disconnected.
    pub signal_queue: usize,
    /// How long a dropped session may resume before its peer is reported gone, milliseconds.
    pub signal_resume_grace_ms: u64,
    /// Seconds without a message or pong before a socket is closed.
    pub signal_idle_timeout: u64,
    /// Seconds a new socket has to send `join`.
    pub signal_handshake_timeout: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            realm: "turnpike".into(),
            listen_udp: vec![
                "0.0.0.0:3478".parse().expect("literal"),
                "[::]:3478".parse().expect("literal"),
            ],
            listen_tcp: vec![
                "0.0.0.0:3478".parse().expect("literal"),
                "[::]:3478".parse().expect("literal"),
            ],
            listen_tls: vec![
                "0.0.0.0:5349".parse().expect("literal"),
                "[::]:5349".parse().expect("literal"),
            ],
            listen_dtls: vec![
                "0.0.0.0:5349".parse().expect("literal"),
                "[::]:5349".parse().expect("literal"),
            ],
            listen_mux: vec![],
            public_host: None,
            rfc5780_alternate_ip: None,
            rfc5780_primary_ip: None,
            rfc5780_alternate_port: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed_names: vec!["localhost".into()],
            tls_handshake_timeout: 10,
            relay_ipv4: None,
            relay_ipv6: None,
            external_ipv4: None,
            external_ipv6: None,
            relay_port_min: 49152,
            relay_port_max: 65535,
            workers: 0,
            users: vec![],
            shared_secrets: vec![],
            data_dir: "turnpike-data".into(),
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            max_allocations: None,
            max_allocations_per_user: None,
            tenant_max_allocations: None,
            allowed_peer_ranges: vec![],
            denied_peer_ranges: vec![],
            danger_allow_peer_ranges: vec![],
            denied_client_ranges: vec![],
            unauth_bytes_burst: 8192,
            unauth_bytes_per_sec: 2048,
            metrics_listen: "127.0.0.1:9478".into(),
            metrics_token: None,
            log_format: "human".into(),
            log_level: "info".into(),
            software: concat!("Turnpike ", env!("CARGO_PKG_VERSION")).into(),
            tcp_idle_timeout: 600,
            tcp_max_per_source: 0,
            max_connections: 0,
            tcp_first_frame_timeout: 10,
            tcp_frame_timeout: 10,
            http_max_connections: 0,
            http_header_timeout: 10,
            drain_exit: false,
            control_plane: true,
            database_url: None,
            admin_key: None,
            api_rate_burst: 100,
            api_rate_per_sec: 50,
            api_max_body: 65536,
            ephemeral_default_ttl: 3600,
            ephemeral_max_ttl: 604800,
            usage_flush_interval_ms: 2000,
            directory_sync_interval_ms: 2000,
            smtp_host: None,
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_from: "turnpike@localhost".into(),
            webhook_attempts: 6,
            webhook_first_retry_ms: 1000,
            danger_allow_webhook_ranges: vec![],
            api_auth_failures_per_minute: 30,
            signal_bus: "auto".into(),
            demo_enabled: true,
            demo_public: false,
            signal_max_message_bytes: 16384,
            signal_max_room_size: 16,
            signal_max_conns_per_ip: 50,
            signal_max_conns_per_tenant: 1000,
            signal_msgs_per_sec: 50,
            signal_bytes_per_sec: 262144,
            signal_queue: 256,
            signal_resume_grace_ms: 20000,
            signal_idle_timeout: 60,
            signal_handshake_timeout: 10,
        }
    }
}

/// Command line. Each option mirrors a config key; unset options leave the file's value.
#[derive(Debug, Parser)]
#[command(
    name = "turnpike",
    version,
    about = "Turnpike: a self-hosted STUN/TURN server for WebRTC."
)]
#[command(
    after_help = "Signals: SIGTERM/SIGINT stop gracefully; SIGUSR1 enters drain mode \
(no new allocations, existing ones finish)."
)]
pub(crate) struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "TURNPIKE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a time-limited TURN credential minted with the first shared secret.
    Credential {
        /// User part of the username (`expiry:user`).
        #[arg(long, default_value = "user")]
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Check the configuration and print it (secrets redacted).
    CheckConfig,
    /// Print the W3C `iceServers` list for this node with a fresh time-limited credential.
    IceServers {
        /// User part of the username.
        #[arg(long, default_value = "user")]
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

/// Flag/env overrides: the same keys as [`Config`].
#[derive(Debug, Default, Args, Serialize)]
pub(crate) struct Overrides {
    #[arg(long, env = "TURNPIKE_REALM", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    realm: Option<String>,
    #[arg(
        long,
        env = "TURNPIKE_LISTEN_UDP",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_udp: Option<Vec<SocketAddr>>,
    #[arg(
        long,
        env = "TURNPIKE_LISTEN_TCP",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_tcp: Option<Vec<SocketAddr>>,
    #[arg(
        long,
        env = "TURNPIKE_LISTEN_TLS",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_tls: Option<Vec<SocketAddr>>,
    #[arg(
        long,
        env = "TURNPIKE_LISTEN_DTLS",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_dtls: Option<Vec<SocketAddr>>,
    #[arg(
        long,
        env = "TURNPIKE_LISTEN_MUX",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_mux: Option<Vec<SocketAddr>>,
    #[arg(long, env = "TURNPIKE_PUBLIC_HOST", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_host: Option<String>,
    #[arg(long, env = "TURNPIKE_RFC5780_ALTERNATE_IP", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rfc5780_alternate_ip: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_RFC5780_PRIMARY_IP", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rfc5780_primary_ip: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_RFC5780_ALTERNATE_PORT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rfc5780_alternate_port: Option<u16>,
    #[arg(long, env = "TURNPIKE_TLS_CERT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "TURNPIKE_TLS_KEY", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    #[arg(
        long,
        env = "TURNPIKE_TLS_SELF_SIGNED_NAMES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_self_signed_names: Option<Vec<String>>,
    #[arg(long, env = "TURNPIKE_TLS_HANDSHAKE_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_handshake_timeout: Option<u64>,
    #[arg(long, env = "TURNPIKE_RELAY_IPV4", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_ipv4: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_RELAY_IPV6", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_ipv6: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_EXTERNAL_IPV4", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    external_ipv4: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_EXTERNAL_IPV6", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    external_ipv6: Option<IpAddr>,
    #[arg(long, env = "TURNPIKE_RELAY_PORT_MIN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_port_min: Option<u16>,
    #[arg(long, env = "TURNPIKE_RELAY_PORT_MAX", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_port_max: Option<u16>,
    #[arg(long, env = "TURNPIKE_WORKERS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    /// Static users `name:password`, comma-separated.
    #[arg(long, env = "TURNPIKE_USERS", value_delimiter = ',', global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<Vec<String>>,
    /// Shared secrets for time-limited credentials, comma-separated.
    #[arg(
        long,
        env = "TURNPIKE_SHARED_SECRETS",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_secrets: Option<Vec<String>>,
    #[arg(long, env = "TURNPIKE_DATA_DIR", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "TURNPIKE_DEFAULT_LIFETIME", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_lifetime: Option<u64>,
    #[arg(long, env = "TURNPIKE_MAX_LIFETIME", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lifetime: Option<u64>,
    #[arg(long, env = "TURNPIKE_NONCE_LIFETIME", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce_lifetime: Option<u64>,
    #[arg(long, env = "TURNPIKE_MAX_ALLOCATIONS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_allocations: Option<usize>,
    #[arg(long, env = "TURNPIKE_MAX_ALLOCATIONS_PER_USER", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_allocations_per_user: Option<usize>,
    /// Most live allocations of a tenant without its own allocation quota (0: unlimited; unset: half the relay capacity).
    #[arg(long, env = "TURNPIKE_TENANT_MAX_ALLOCATIONS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_max_allocations: Option<usize>,
    #[arg(
        long,
        env = "TURNPIKE_ALLOWED_PEER_RANGES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_peer_ranges: Option<Vec<IpNet>>,
    #[arg(
        long,
        env = "TURNPIKE_DENIED_PEER_RANGES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    denied_peer_ranges: Option<Vec<IpNet>>,
    /// DANGER: allow relaying to these otherwise-refused ranges (e.g. 127.0.0.0/8 for tests).
    #[arg(
        long,
        env = "TURNPIKE_DANGER_ALLOW_PEER_RANGES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    danger_allow_peer_ranges: Option<Vec<IpNet>>,
    /// Client addresses refused on every listener (TURN, STUN, API); re-read on SIGHUP. The API's deny list applies too.
    #[arg(
        long,
        env = "TURNPIKE_DENIED_CLIENT_RANGES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    denied_client_ranges: Option<Vec<IpNet>>,
    #[arg(long, env = "TURNPIKE_UNAUTH_BYTES_BURST", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    unauth_bytes_burst: Option<u32>,
    #[arg(long, env = "TURNPIKE_UNAUTH_BYTES_PER_SEC", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    unauth_bytes_per_sec: Option<u32>,
    /// Prometheus listener address; empty disables it.
    #[arg(long, env = "TURNPIKE_METRICS_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
    /// Bearer token that opens /metrics on the shared (public) port; unset: /metrics only on `metrics_listen`.
    #[arg(long, env = "TURNPIKE_METRICS_TOKEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_token: Option<String>,
    /// `human` or `json`.
    #[arg(long, env = "TURNPIKE_LOG_FORMAT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    #[arg(long, env = "TURNPIKE_LOG_LEVEL", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    #[arg(long, env = "TURNPIKE_SOFTWARE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    software: Option<String>,
    #[arg(long, env = "TURNPIKE_TCP_IDLE_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_idle_timeout: Option<u64>,
    #[arg(long, env = "TURNPIKE_TCP_MAX_PER_SOURCE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_max_per_source: Option<usize>,
    /// Most TURN TCP/TLS client connections at once (0: derived from the file descriptor limit).
    #[arg(long, env = "TURNPIKE_MAX_CONNECTIONS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// Seconds a new TCP/TLS connection has to deliver its first complete STUN message.
    #[arg(long, env = "TURNPIKE_TCP_FIRST_FRAME_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_first_frame_timeout: Option<u64>,
    /// Seconds a STUN message or ChannelData frame may take to arrive once its first byte did.
    #[arg(long, env = "TURNPIKE_TCP_FRAME_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_frame_timeout: Option<u64>,
    /// Most HTTP connections at once on the API listener and the shared port together (0: derived from the file descriptor limit).
    #[arg(long, env = "TURNPIKE_HTTP_MAX_CONNECTIONS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_max_connections: Option<usize>,
    /// Seconds an HTTP client has to send a request's headers (then the connection is closed).
    #[arg(long, env = "TURNPIKE_HTTP_HEADER_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_header_timeout: Option<u64>,
    #[arg(long, env = "TURNPIKE_DRAIN_EXIT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_exit: Option<bool>,
    #[arg(long, env = "TURNPIKE_CONTROL_PLANE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane: Option<bool>,
    #[arg(
        long,
        env = "TURNPIKE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[arg(
        long,
        env = "TURNPIKE_ADMIN_KEY",
        global = true,
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_key: Option<String>,
    #[arg(long, env = "TURNPIKE_API_RATE_BURST", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_rate_burst: Option<u32>,
    #[arg(long, env = "TURNPIKE_API_RATE_PER_SEC", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_rate_per_sec: Option<u32>,
    #[arg(long, env = "TURNPIKE_API_MAX_BODY", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_max_body: Option<usize>,
    #[arg(long, env = "TURNPIKE_EPHEMERAL_DEFAULT_TTL", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ephemeral_default_ttl: Option<u64>,
    #[arg(long, env = "TURNPIKE_EPHEMERAL_MAX_TTL", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ephemeral_max_ttl: Option<u64>,
    #[arg(long, env = "TURNPIKE_USAGE_FLUSH_INTERVAL_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_flush_interval_ms: Option<u64>,
    #[arg(long, env = "TURNPIKE_DIRECTORY_SYNC_INTERVAL_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    directory_sync_interval_ms: Option<u64>,
    #[arg(long, env = "TURNPIKE_SMTP_HOST", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_host: Option<String>,
    #[arg(long, env = "TURNPIKE_SMTP_PORT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_port: Option<u16>,
    #[arg(long, env = "TURNPIKE_SMTP_SECURITY", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_security: Option<String>,
    #[arg(long, env = "TURNPIKE_SMTP_USERNAME", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_username: Option<String>,
    #[arg(
        long,
        env = "TURNPIKE_SMTP_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_password: Option<String>,
    #[arg(long, env = "TURNPIKE_SMTP_FROM", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp_from: Option<String>,
    #[arg(long, env = "TURNPIKE_WEBHOOK_ATTEMPTS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_attempts: Option<u32>,
    #[arg(long, env = "TURNPIKE_WEBHOOK_FIRST_RETRY_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_first_retry_ms: Option<u64>,
    /// DANGER: allow webhook targets in these otherwise-refused ranges.
    #[arg(
        long,
        env = "TURNPIKE_DANGER_ALLOW_WEBHOOK_RANGES",
        value_delimiter = ',',
        global = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    danger_allow_webhook_ranges: Option<Vec<IpNet>>,
    #[arg(long, env = "TURNPIKE_API_AUTH_FAILURES_PER_MINUTE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_auth_failures_per_minute: Option<u32>,
    #[arg(long, env = "TURNPIKE_SIGNAL_BUS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_bus: Option<String>,
    #[arg(long, env = "TURNPIKE_DEMO_ENABLED", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    demo_enabled: Option<bool>,
    /// Serve the demo pages and demo tokens on the shared (public) port too (they mint TURN credentials for anyone).
    #[arg(long, env = "TURNPIKE_DEMO_PUBLIC", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    demo_public: Option<bool>,
    #[arg(long, env = "TURNPIKE_SIGNAL_MAX_MESSAGE_BYTES", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_max_message_bytes: Option<usize>,
    #[arg(long, env = "TURNPIKE_SIGNAL_MAX_ROOM_SIZE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_max_room_size: Option<usize>,
    #[arg(long, env = "TURNPIKE_SIGNAL_MAX_CONNS_PER_IP", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_max_conns_per_ip: Option<usize>,
    #[arg(long, env = "TURNPIKE_SIGNAL_MAX_CONNS_PER_TENANT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_max_conns_per_tenant: Option<usize>,
    #[arg(long, env = "TURNPIKE_SIGNAL_MSGS_PER_SEC", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_msgs_per_sec: Option<u32>,
    #[arg(long, env = "TURNPIKE_SIGNAL_BYTES_PER_SEC", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_bytes_per_sec: Option<u32>,
    #[arg(long, env = "TURNPIKE_SIGNAL_QUEUE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_queue: Option<usize>,
    #[arg(long, env = "TURNPIKE_SIGNAL_RESUME_GRACE_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_resume_grace_ms: Option<u64>,
    #[arg(long, env = "TURNPIKE_SIGNAL_IDLE_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_idle_timeout: Option<u64>,
    #[arg(long, env = "TURNPIKE_SIGNAL_HANDSHAKE_TIMEOUT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_handshake_timeout: Option<u64>,
}

impl Config {
    /// The RFC 5780 address pair, if enabled (validated: names the key to fix).
    pub(crate) fn rfc5780(&self) -> Result<Option<turnpike_proto::Rfc5780>> {
        let Some(alt) = self.rfc5780_alternate_ip else {
            return Ok(None);
        };
        let first = self
            .listen_udp
            .iter()
            .find(|a| a.is_ipv4() == alt.is_ipv4())
            .with_context(|| {
                "key `rfc5780_alternate_ip`: no `listen_udp` address of the same family".to_string()
            })?;
        let primary = match self.rfc5780_primary_ip {
            Some(p) => p,
            None if !first.ip().is_unspecified() => first.ip(),
            None => {
                bail!("key `rfc5780_primary_ip` is needed when `listen_udp` is a wildcard address")
            }
        };
        if primary == alt {
            bail!("keys `rfc5780_primary_ip` and `rfc5780_alternate_ip` must differ");
        }
        let alternate_port = self
            .rfc5780_alternate_port
            .unwrap_or(first.port().wrapping_add(1));
        if alternate_port == first.port() {
            bail!("key `rfc5780_alternate_port` must differ from the `listen_udp` port");
        }
        Ok(Some(turnpike_proto::Rfc5780 {
            primary_ip: primary,
            alternate_ip: alt,
            primary_port: first.port(),
            alternate_port,
        }))
    }

    /// Defaults, then `file`, then flags and environment.
    pub(crate) fn load(file: Option<&PathBuf>, overrides: &Overrides) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Self::default()));
        if let Some(f) = file {
            if !f.exists() {
                bail!(
                    "config file {} does not exist (fix the --config flag or TURNPIKE_CONFIG)",
                    f.display()
                );
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Serialized::defaults(overrides));
        let cfg: Self = fig.extract().map_err(|e| {
            let mut msg = String::new();
            for err in e {
                let key = if err.path.is_empty() {
                    "(top level)".to_string()
                } else {
                    err.path.join(".")
                };
                msg.push_str(&format!("\n  key `{key}`: {}", err.kind));
                if let Some(src) = &err.metadata.and_then(|m| m.source) {
                    msg.push_str(&format!(" (from {src})"));
                }
            }
            anyhow::anyhow!("invalid configuration:{msg}")
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that values make sense together; each message names the key and the fix.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.realm.is_empty() {
            bail!("key `realm` must not be empty");
        }
        if self.relay_port_min > self.relay_port_max {
            bail!(
                "key `relay_port_min` ({}) is above `relay_port_max` ({}): swap them",
                self.relay_port_min,
                self.relay_port_max
            );
        }
        if self.relay_port_min < 1024 {
            bail!(
                "key `relay_port_min` ({}) must be 1024 or above",
                self.relay_port_min
            );
        }
        if self.listen_udp.is_empty()
            && self.listen_tcp.is_empty()
            && self.listen_tls.is_empty()
            && self.listen_dtls.is_empty()
        {
            bail!("keys `listen_udp`, `listen_tcp`, `listen_tls` and `listen_dtls` are all empty: give at least one listener");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("keys `tls_cert` and `tls_key` go together: set both or neither");
        }
        for (k, p) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if let Some(p) = p {
                if !p.exists() {
                    bail!("key `{k}`: file {} does not exist", p.display());
                }
            }
        }
        if let Some(alt) = self.rfc5780_alternate_ip {
            self.rfc5780()?;
            if alt.is_unspecified() {
                bail!("key `rfc5780_alternate_ip` must be a specific address");
            }
        }
        if self.tls_handshake_timeout == 0 {
            bail!("key `tls_handshake_timeout` must be at least 1 second");
        }
        if self.default_lifetime == 0 || self.default_lifetime > self.max_lifetime {
            bail!(
                "key `default_lifetime` must be between 1 and `max_lifetime` ({})",
                self.max_lifetime
            );
        }
        if self.nonce_lifetime < 30 {
            bail!(
                "key `nonce_lifetime` ({}) must be at least 30 seconds",
                self.nonce_lifetime
            );
        }
        if let Some(u) = &self.database_url {
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                bail!("key `database_url` must start with `sqlite:` or `postgres://`");
            }
        }
        if let Some(k) = &self.admin_key {
            if k.len() < 24 {
                bail!("key `admin_key` must be at least 24 characters (use a long random value)");
            }
        }
        if !matches!(self.smtp_security.as_str(), "starttls" | "tls" | "none") {
            bail!(
                "key `smtp_security` is `{}`: use `starttls`, `tls` or `none`",
                self.smtp_security
            );
        }
        if self.ephemeral_default_ttl == 0 || self.ephemeral_default_ttl > self.ephemeral_max_ttl {
            bail!(
                "key `ephemeral_default_ttl` must be between 1 and `ephemeral_max_ttl` ({})",
                self.ephemeral_max_ttl
            );
        }
        for (k, v) in [
            ("usage_flush_interval_ms", self.usage_flush_interval_ms),
            (
                "directory_sync_interval_ms",
                self.directory_sync_interval_ms,
            ),
        ] {
            if !(100..=600_000).contains(&v) {
                bail!("key `{k}` ({v}) must be between 100 and 600000 milliseconds");
            }
        }
        if self.api_rate_burst == 0 || self.api_rate_per_sec == 0 {
            bail!("keys `api_rate_burst` and `api_rate_per_sec` must be at least 1");
        }
        if self.api_max_body < 1024 {
            bail!("key `api_max_body` must be at least 1024 bytes");
        }
        if !matches!(self.signal_bus.as_str(), "auto" | "memory" | "postgres") {
            bail!(
                "key `signal_bus` is `{}`: use `auto`, `memory` or `postgres`",
                self.signal_bus
            );
        }
        if self.signal_bus == "postgres"
            && !self
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres"))
        {
            bail!(
                "key `signal_bus` = `postgres` needs `database_url` to name a PostgreSQL database"
            );
        }
        if self.signal_max_message_bytes < 1024
            || self.signal_max_room_size < 2
            || self.signal_queue < 8
        {
            bail!("keys `signal_max_message_bytes` (>= 1024), `signal_max_room_size` (>= 2) and `signal_queue` (>= 8) are too small");
        }
        if self.signal_msgs_per_sec == 0
            || self.signal_bytes_per_sec == 0
            || self.signal_idle_timeout == 0
            || self.signal_handshake_timeout == 0
        {
            bail!("keys `signal_msgs_per_sec`, `signal_bytes_per_sec`, `signal_idle_timeout` and `signal_handshake_timeout` must be at least 1");
        }
        if self.webhook_attempts == 0 {
            bail!("key `webhook_attempts` must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "human" | "json") {
            bail!(
                "key `log_format` is `{}`: use `human` or `json`",
                self.log_format
            );
        }
        if !self.metrics_listen.is_empty() {
            self.metrics_listen.parse::<SocketAddr>().with_context(|| {
                format!(
                    "key `metrics_listen` (`{}`) is not an address like 127.0.0.1:9478",
                    self.metrics_listen
                )
            })?;
        }
        for u in &self.users {
            let Some((name, secret)) = u.split_once(':') else {
                bail!("key `users`: entry without `:` (use `name:password`)");
            };
            if name.is_empty() || secret.is_empty() {
                bail!("key `users`: entry for `{name}` has an empty name or password");
            }
            if let Some(hex) = secret.strip_prefix("0x") {
                if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    bail!("key `users`: key for `{name}` must be 0x followed by 32 hex digits");
                }
            }
        }
        for (i, s) in self.shared_secrets.iter().enumerate() {
            if s.len() < 8 {
                bail!("key `shared_secrets`: entry {i} is shorter than 8 characters; use a long random secret");
            }
        }
        Ok(())
    }
}
