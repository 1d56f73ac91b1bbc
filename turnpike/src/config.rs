//! Configuration: one definition of every key ([`keys!`] below) gives the typed [`Config`]
//! with its defaults, the command-line flag `--key-name` and the environment variable
//! `TURNPIKE_KEY_NAME` of each key with its help text, and the reference table of
//! docs/configuration.md (a test fails when the document drifts; `turnpike config-reference`
//! prints the table).
//!
//! Sources, later ones winning: the defaults, a TOML file, environment variables, flags.
//! Unknown keys and bad values stop start-up with a message that names the key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use turnpike_proto::config::defaults as PROTO;
use turnpike_server::defaults as DRIVER;

use crate::duration::Span;
use crate::ip_list::IpList;

/// The Rust type of a key's value: `one T`, `list T` (`Vec<T>`, comma-separated on the command
/// line) or `opt T` (`Option<T>`: unset unless given).
macro_rules! value_type {
    (one $t:ty) => { $t };
    (list $t:ty) => { Vec<$t> };
    (opt $t:ty) => { Option<$t> };
}

/// The flag of one key (its env variable and help from the key's doc comment).
macro_rules! key_arg {
    (list $t:ty, $name:expr, $doc:expr) => {
        flag($name, $doc)
            .value_parser(list_item::<$t>)
            .value_delimiter(',')
            .action(clap::ArgAction::Append)
    };
    ($kind:ident $t:ty, $name:expr, $doc:expr) => {
        flag($name, $doc).value_parser(clap::value_parser!($t))
    };
}

/// A key's value given by a flag or variable, merged over the file's.
macro_rules! key_override {
    (list $t:ty, $m:expr, $name:expr, $fig:expr) => {
        if let Some(v) = $m.get_many::<Option<$t>>($name) {
            let list: Vec<$t> = v.flatten().cloned().collect();
            $fig = $fig.merge(Serialized::default($name, list));
        }
    };
    ($kind:ident $t:ty, $m:expr, $name:expr, $fig:expr) => {
        if let Some(v) = $m.get_one::<$t>($name) {
            $fig = $fig.merge(Serialized::default($name, v));
        }
    };
}

/// Every configuration key, once: its doc comment (the help text and the reference), name,
/// type and default.
macro_rules! keys {
    ($( $(#[doc = $doc:literal])* $name:ident : $kind:ident $t:ty = $default:expr; )*) => {
        /// The settled configuration.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub(crate) struct Config {
            $( $(#[doc = $doc])* pub $name: value_type!($kind $t), )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// Every key's name and doc, in definition order.
        pub(crate) const KEYS: &[(&str, &[&str])] = &[ $( (stringify!($name), &[$($doc),*]) ),* ];

        /// The flags (and variables) of every key.
        fn key_args() -> Vec<clap::Arg> {
            vec![ $( key_arg!($kind $t, stringify!($name), &[$($doc),*]) ),* ]
        }

        /// Merges the keys given on the command line or in the environment over `fig`.
        fn merge_overrides(mut fig: Figment, m: &clap::ArgMatches) -> Figment {
            $( key_override!($kind $t, m, stringify!($name), fig); )*
            fig
        }
    };
}

/// A key's flag: `--key-name`, variable `TURNPIKE_KEY_NAME`, help from its doc comment.
fn flag(name: &'static str, doc: &[&str]) -> clap::Arg {
    // Names live for the whole run (the command line is parsed once at start).
    let long: &'static str = Box::leak(name.replace('_', "-").into_boxed_str());
    let env: &'static str =
        Box::leak(format!("TURNPIKE_{}", name.to_ascii_uppercase()).into_boxed_str());
    let text = doc_text(doc);
    let short_help = text.split(". ").next().unwrap_or(&text).to_string();
    // The value is named after the key, so an error names both the flag and the key.
    clap::Arg::new(name)
        .long(long)
        .env(env)
        .value_name(name)
        .global(true)
        .help(short_help)
        .long_help(text)
}

/// One element of a list flag; an empty value (`--listen-tls ""`) stands for no element, so a
/// list can be emptied from the command line.
fn list_item<T: std::str::FromStr>(s: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<T>().map(Some).map_err(|e| e.to_string())
}

/// A doc comment's lines as one paragraph.
fn doc_text(doc: &[&str]) -> String {
    doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// A packaged set of settings (`--profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Profile {
    /// Ports 80 and 443 only: see turnpike/src/profiles/public.toml.
    Public,
}

impl Profile {
    /// The profile's settings, as TOML.
    pub(crate) fn toml(self) -> &'static str {
        match self {
            Self::Public => include_str!("profiles/public.toml"),
        }
    }
}

/// `acme_challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub(crate) enum AcmeChallenge {
    #[serde(rename = "auto")]
    #[value(name = "auto")]
    Auto,
    #[serde(rename = "http-01")]
    #[value(name = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Human,
    Json,
}

/// `smtp_security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

impl SmtpSecurity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Tls => "tls",
            Self::None => "none",
        }
    }
}

/// `signal_bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SignalBus {
    Auto,
    Memory,
    Postgres,
}

keys! {
    /// REALM of long-term credentials.
    realm: one String = "turnpike".into();
    /// UDP listeners. If IPv6 is unavailable the default falls back to IPv4 with a warning.
    listen_udp: list SocketAddr = vec![
        "0.0.0.0:3478".parse().expect("literal"),
        "[::]:3478".parse().expect("literal"),
    ];
    /// TCP listeners.
    listen_tcp: list SocketAddr = vec![
        "0.0.0.0:3478".parse().expect("literal"),
        "[::]:3478".parse().expect("literal"),
    ];
    /// TLS listeners (TURNS, TLS 1.2/1.3, ALPN `stun.turn`, `stun.nat-discovery`).
    listen_tls: list SocketAddr = vec![
        "0.0.0.0:5349".parse().expect("literal"),
        "[::]:5349".parse().expect("literal"),
    ];
    /// UDP listeners for TURN over DTLS 1.2/1.3; plain STUN/TURN datagrams are served on them too
    /// (RFC 7983 first byte).
    listen_dtls: list SocketAddr = vec![
        "0.0.0.0:5349".parse().expect("literal"),
        "[::]:5349".parse().expect("literal"),
    ];
    /// TCP listeners shared by TURN, TURNS, HTTP and HTTPS, e.g. `["0.0.0.0:443"]` (ALPN and first-
    /// byte sniffing).
    listen_mux: list SocketAddr = vec![];
    /// TCP listeners shared by TURN over TCP and plain HTTP, without TLS (e.g. port 80): HTTP
    /// requests get ACME HTTP-01 challenge answers and `/healthz`, everything else a redirect to
    /// HTTPS (no API over plain HTTP on a public port).
    listen_mux_plain: list SocketAddr = vec![];
    /// Host name (or IP) named in ICE server lists (the API, the Metered path, signalling,
    /// `turnpike ice-servers`). Unset: the listeners' own addresses when they are specific;
    /// with wildcard listeners the address a STUN server sees (`public_ip_stun_server`), else
    /// the default route's interface address, else the first non-loopback one (logged at
    /// start).
    public_host: opt String = None;
    /// A STUN server (`host:port`) asked at start which address it sees, for a VM behind 1:1
    /// NAT: that address is advertised in ICE server lists (when `public_host` is unset) and in
    /// XOR-RELAYED-ADDRESS (when `external_ipv4` is unset). Unset: no discovery.
    public_ip_stun_server: opt String = None;
    /// Enables RFC 5780 NAT behaviour discovery with this second IP: UDP Binding requests may carry
    /// CHANGE-REQUEST/RESPONSE-PORT, responses carry RESPONSE-ORIGIN and OTHER-ADDRESS; the node
    /// listens on both IPs and both ports.
    rfc5780_alternate_ip: opt IpAddr = None;
    /// The first IP of the pair (required when `listen_udp` is a wildcard).
    rfc5780_primary_ip: opt IpAddr = None;
    /// The second port of the pair.
    rfc5780_alternate_port: opt u16 = None;
    /// PEM certificate chain for TLS, with `tls_key`. Reloaded without a restart on SIGHUP and when
    /// the files change; live connections keep theirs. Unset: a self-signed development certificate
    /// for `tls_self_signed_names`, announced with a warning. DTLS needs an ECDSA key; with an RSA
    /// key DTLS uses a generated self-signed ECDSA certificate.
    tls_cert: opt PathBuf = None;
    /// PEM private key for `tls_cert` (reloaded with it).
    tls_key: opt PathBuf = None;
    /// Names in the generated development certificate.
    tls_self_signed_names: list String = vec!["localhost".into()];
    /// Names to get a certificate for from an ACME CA (RFC 8555; Let's Encrypt by default), e.g.
    /// `["turn.example.com"]`: issued at start, stored in the data directory, put in use for TLS,
    /// DTLS and HTTPS without dropping connections, renewed at two thirds of its lifetime.
    /// Empty: no ACME (use `tls_cert`/`tls_key` or the development certificate). The first name
    /// is also the default `public_host`.
    acme_domains: list String = vec![];
    /// Contact address given to the ACME CA (expiry notices).
    acme_email: opt String = None;
    /// The ACME CA's directory URL.
    acme_directory: one String = "https://acme-v02.api.letsencrypt.org/directory".into();
    /// A PEM root certificate to trust for the ACME directory's HTTPS (a private or test CA such
    /// as pebble); unset: the usual web roots.
    acme_ca_file: opt PathBuf = None;
    /// How the CA checks the names: `http-01` (port 80, answered on `listen_mux_plain`),
    /// `tls-alpn-01` (port 443, answered on the TLS listeners), or `auto` (`http-01` when
    /// `listen_mux_plain` is set, else `tls-alpn-01`).
    acme_challenge: one AcmeChallenge = AcmeChallenge::Auto;
    /// When to renew, counted from issuance (unset: at two thirds of the certificate's lifetime).
    acme_renew_after: opt Span = None;
    /// How long a TLS or DTLS handshake (or the first bytes on a shared port) may take.
    tls_handshake_timeout: one Span = Span::from_duration(DRIVER::TLS_HANDSHAKE_TIMEOUT);
    /// IPv4 address(es) relay sockets bind to: one (`"192.0.2.1"`) or a list
    /// (`["192.0.2.1", "192.0.2.2"]`; on the command line comma-separated). With several,
    /// allocations are spread over them in turn, and one whose ports are all taken passes to the
    /// next, so the relay port range is available once per address. Default: the address the
    /// client reached, or for a client that came over IPv6 (and gets an IPv4 relay by default,
    /// RFC 8656), the first specific IPv4 listener address.
    relay_ipv4: one IpList = IpList::default();
    /// IPv6 address(es) relay sockets bind to, one or a list as for `relay_ipv4`. Default: the
    /// address the client reached, or for a client that came over IPv4 and asked for IPv6, the
    /// first specific IPv6 listener address. Set it when the listeners are wildcards (`[::]`).
    relay_ipv6: one IpList = IpList::default();
    /// Public IPv4 address advertised in XOR-RELAYED-ADDRESS when behind 1:1 NAT.
    external_ipv4: opt IpAddr = None;
    /// Public IPv6 address advertised in XOR-RELAYED-ADDRESS when behind 1:1 NAT.
    external_ipv6: opt IpAddr = None;
    /// Lowest relay port (inclusive; 1024 or above).
    relay_port_min: one u16 = DRIVER::RELAY_PORT_MIN;
    /// Highest relay port (inclusive).
    relay_port_max: one u16 = DRIVER::RELAY_PORT_MAX;
    /// Worker threads; 0 = one per core.
    workers: one usize = 0;
    /// Static users, `name:password` or `name:0x<32 hex>` (MD5 key as `turnadmin -k` prints it).
    users: list String = vec![];
    /// Secrets for time-limited credentials; all are accepted (rotation), the first mints.
    shared_secrets: list String = vec![];
    /// Where generated state lives (the shared secret, the SQLite database, `turnpike.lock`).
    /// Created 0700 (an existing looser directory is tightened, with a warning); its files are
    /// 0600, whatever the umask. One Turnpike per data directory: a second one refuses to start.
    data_dir: one PathBuf = "turnpike-data".into();
    /// Allocation lifetime when the client asks for none (whole seconds: the wire carries them).
    default_lifetime: one Span = Span::from_duration(PROTO::DEFAULT_LIFETIME);
    /// Longest allocation lifetime granted.
    max_lifetime: one Span = Span::from_duration(PROTO::MAX_LIFETIME);
    /// Nonce validity before 438 Stale Nonce.
    nonce_lifetime: one Span = Span::from_duration(PROTO::NONCE_LIFETIME);
    /// How long a live allocation may go on after the credential it was made with expired:
    /// Refresh, CreatePermission, ChannelBind and RFC 6062 requests keep working, so a call
    /// outlives a short-lived credential. A new Allocate always needs a valid credential; a
    /// revoked, disabled or deleted credential or a tenant over a `refuse` or `disconnect`
    /// quota still ends the allocation. `0`: every request needs a valid credential.
    credential_grace: one Span = Span::from_duration(PROTO::CREDENTIAL_GRACE);
    /// Live allocations on this node (0 = unlimited); beyond it, 486. Unset: 40 % of the file
    /// descriptors above a reserve (see [security.md](security.md#resource-caps)).
    max_allocations: opt usize = None;
    /// Live allocations per username (0 = unlimited); beyond it, 486. The relay capacity is the
    /// smaller of the relay port range and `max_allocations`: by default no single credential can
    /// take more than a quarter of it.
    max_allocations_per_user: opt usize = None;
    /// Live allocations of a tenant that has no allocation quota of its own (0 = unlimited); beyond
    /// it, 486.
    tenant_max_allocations: opt usize = None;
    /// When non-empty, only these peer ranges are relayed to.
    allowed_peer_ranges: list IpNet = vec![];
    /// Always refused (403).
    denied_peer_ranges: list IpNet = vec![];
    /// Opens otherwise-refused special ranges (loopback, RFC 1918, CGNAT, link-local, multicast,
    /// documentation, ...). Logged as a warning at start. The server's own listener addresses stay
    /// refused whatever this says.
    danger_allow_peer_ranges: list IpNet = vec![];
    /// Client addresses refused on every listener: STUN/TURN datagrams are dropped, TCP/TLS and
    /// HTTP connections closed at accept, their live allocations closed. Re-read on SIGHUP (no
    /// restart). The API's deny list (`/v1/deny-list`) applies too.
    denied_client_ranges: list IpNet = vec![];
    /// Byte budget per source IP for unauthenticated answers over UDP (Binding responses, 401/438
    /// challenges, other errors): a source gets back what it sent plus this surplus, so the server
    /// cannot amplify traffic toward a spoofed address; beyond, requests are dropped and counted
    /// (UDP clients retransmit). `0` turns the budget off. Stream and DTLS clients are not limited:
    /// their handshake already proved the address.
    unauth_bytes_burst: one u32 = PROTO::UNAUTH_BYTES_BURST;
    /// How fast the surplus of `unauth_bytes_burst` refills, bytes per second.
    unauth_bytes_per_sec: one u32 = PROTO::UNAUTH_BYTES_PER_SEC;
    /// The private HTTP listener: `/metrics`, `/healthz`, the API, signalling and the demo pages;
    /// empty disables. Keep it on loopback or a private network (a warning says so when it is not
    /// loopback and no `metrics_token` is set).
    metrics_listen: one String = "127.0.0.1:9478".into();
    /// Bearer token that opens `/metrics` on the shared (public) port too; unset: `/metrics` is
    /// served on `metrics_listen` only.
    metrics_token: opt String = None;
    /// `human` or `json`.
    log_format: one LogFormat = LogFormat::Human;
    /// tracing filter, e.g. `debug` or `turnpike_proto=debug`.
    log_level: one String = "info".into();
    /// SOFTWARE attribute in authenticated responses; empty for none.
    software: one String = concat!("Turnpike ", env!("CARGO_PKG_VERSION")).into();
    /// TCP/TLS connections idle between frames longer than this are closed.
    tcp_idle_timeout: one Span = Span::from_duration(DRIVER::TCP_IDLE_TIMEOUT);
    /// TURN TCP/TLS connections from one source IP, across all workers (0: an eighth of
    /// `max_connections`).
    tcp_max_per_source: one usize = 0;
    /// TURN TCP/TLS/shared-port connections at once, across all workers (0: 40 % of the file
    /// descriptors above a reserve). Beyond it, new connections are closed at accept, counted in
    /// `turnpike_connections_refused_total` and logged (once a minute at most).
    max_connections: one usize = 0;
    /// A new TCP/TLS connection must deliver its first complete STUN message within this.
    tcp_first_frame_timeout: one Span = Span::from_duration(DRIVER::TCP_FIRST_FRAME_TIMEOUT);
    /// A frame, once its first byte arrived, must be complete within this: a client trickling
    /// bytes (slow loris) is closed.
    tcp_frame_timeout: one Span = Span::from_duration(DRIVER::TCP_FRAME_TIMEOUT);
    /// Connections at once on `metrics_listen` (0: 20 % of the file descriptors above a reserve; a
    /// quarter of it per source IP). The shared port's HTTP connections count under
    /// `max_connections`.
    http_max_connections: one usize = 0;
    /// How long an HTTP client has to send a request's headers, on `metrics_listen` and on the
    /// shared port; then the connection is closed.
    http_header_timeout: one Span = Span::secs(10);
    /// In drain mode (SIGUSR1), exit once the last allocation is gone.
    drain_exit: one bool = false;
    /// Run the control plane: REST API, metering, stored and ephemeral credentials ([control-
    /// plane.md](control-plane.md)).
    control_plane: one bool = true;
    /// `sqlite://PATH` or `postgres://user:pass@host/db` (several nodes share one PostgreSQL).
    /// Migrations run at start-up. Redacted in `check-config`.
    database_url: opt String = None;
    /// The operator's API key (at least 24 characters). Unset: one is generated at first start,
    /// printed once, stored hashed.
    admin_key: opt String = None;
    /// Requests per API key: burst (429 with `Retry-After` beyond).
    api_rate_burst: one u32 = 100;
    /// Requests per API key: sustained rate per second.
    api_rate_per_sec: one u32 = 50;
    /// Largest API request body in bytes (413 beyond).
    api_max_body: one usize = 65536;
    /// Lifetime of minted ephemeral credentials when not asked.
    ephemeral_default_ttl: one Span = Span::secs(3600);
    /// Longest lifetime of ephemeral credentials.
    ephemeral_max_ttl: one Span = Span::secs(604800);
    /// How often metered usage is written to the database; a power cut loses at most this plus one
    /// second of counts (SIGTERM loses nothing).
    usage_flush_interval: one Span = Span::secs(2);
    /// Deprecated: `usage_flush_interval` in milliseconds.
    usage_flush_interval_ms: opt u64 = None;
    /// How often the database's change feed is read for changes made by other nodes (to
    /// credentials, secrets, revocations, quotas, the deny list); only what changed is re-read.
    /// Local changes apply at once.
    directory_sync_interval: one Span = Span::millis(500);
    /// Deprecated: `directory_sync_interval` in milliseconds.
    directory_sync_interval_ms: opt u64 = None;
    /// SMTP server for alert emails; unset: no email.
    smtp_host: opt String = None;
    /// SMTP port.
    smtp_port: one u16 = 587;
    /// `starttls`, `tls`, or `none` (plain text: for a local relay only; warned).
    smtp_security: one SmtpSecurity = SmtpSecurity::Starttls;
    /// SMTP AUTH user.
    smtp_username: opt String = None;
    /// SMTP AUTH password (redacted in `check-config`).
    smtp_password: opt String = None;
    /// Sender of alert emails.
    smtp_from: one String = "turnpike@localhost".into();
    /// Webhook delivery attempts.
    webhook_attempts: one u32 = 6;
    /// First webhook retry delay (doubling each time).
    webhook_first_retry: one Span = Span::secs(1);
    /// Deprecated: `webhook_first_retry` in milliseconds.
    webhook_first_retry_ms: opt u64 = None;
    /// DANGER: webhook targets in these otherwise-refused ranges (loopback, private, link-local,
    /// cloud metadata) are allowed, e.g. `["127.0.0.0/8"]` for a receiver on this machine.
    danger_allow_webhook_ranges: list IpNet = vec![];
    /// Failed API key lookups allowed per client IP and minute; beyond that the IP gets 429 without
    /// a lookup (0: no limit).
    api_auth_failures_per_minute: one u32 = 30;
    /// Signalling room bus: `memory` (one node), `postgres` (LISTEN/NOTIFY, nodes sharing
    /// `database_url`), `auto` (postgres when `database_url` is PostgreSQL).
    signal_bus: one SignalBus = SignalBus::Auto;
    /// Serve `/demo` and `/demo/ice-test` with tokens for a built-in demo tenant (rate limited, 5
    /// GB/day) on `metrics_listen`.
    demo_enabled: one bool = true;
    /// Serve the demo pages and `/demo/token` on the shared (public) port too. `/demo/token` hands
    /// TURN credentials to anyone who asks: leave it off in production.
    demo_public: one bool = false;
    /// Largest signalling message.
    signal_max_message_bytes: one usize = 16384;
    /// Most participants per room.
    signal_max_room_size: one usize = 16;
    /// Most signalling connections from one IP address (per node).
    signal_max_conns_per_ip: one usize = 50;
    /// Most signalling participants of one tenant (per node).
    signal_max_conns_per_tenant: one usize = 1000;
    /// Signalling messages per second per connection (burst twice that).
    signal_msgs_per_sec: one u32 = 50;
    /// Signalling bytes per second per connection.
    signal_bytes_per_sec: one u32 = 262144;
    /// Outbound messages queued per connection before a slow consumer is disconnected.
    signal_queue: one usize = 256;
    /// How long a dropped session may resume.
    signal_resume_grace: one Span = Span::secs(20);
    /// Deprecated: `signal_resume_grace` in milliseconds.
    signal_resume_grace_ms: opt u64 = None;
    /// Time without a message or pong before a signalling socket is closed.
    signal_idle_timeout: one Span = Span::secs(60);
    /// How long a new signalling socket has to send `join`.
    signal_handshake_timeout: one Span = Span::secs(10);
    /// This node's name in the fleet's registry (`GET /v1/nodes`, `turnpike nodes`); default
    /// the host name.
    node_name: opt String = None;
    /// This node's region (letters, digits, `-`, `_`), e.g. `eu-central`: ICE lists send each
    /// client to the nearest healthy region (docs/fleet.md).
    region: one String = "default".into();
    /// Where the region is: `LAT,LON` in degrees or a city name (`frankfurt`, `new-york`, ...;
    /// docs/fleet.md lists them). Without it the region is only chosen by name or as the
    /// answering node's own.
    region_location: opt String = None;
    /// Regions an ICE list names after the nearest, as fallback (0: only the nearest).
    fallback_regions: one usize = 0;
    /// MaxMind DB files (GeoLite2/GeoIP2 City, or ip-location-db's city files) that place clients
    /// for routing; several are tried in order (e.g. an IPv4 and an IPv6 file).
    geoip_database: list PathBuf = vec![];
    /// Proxies (load balancers) whose `X-Forwarded-For` names the client for routing.
    trusted_proxies: list IpNet = vec![];
    /// How often the node writes its row in the fleet's registry; three missed and it is dead
    /// for routing.
    heartbeat_interval: one Span = Span::secs(2);
}

/// Command line: the subcommands and `--config`; every key's flag is added from [`keys!`].
#[derive(Debug, Parser)]
#[command(
    name = "turnpike",
    version,
    about = "Turnpike: a self-hosted STUN/TURN server for WebRTC."
)]
#[command(
    after_help = "Signals: SIGTERM/SIGINT stop gracefully; SIGUSR1 enters drain mode \
(no new allocations, existing ones finish); SIGHUP reloads certificates and the client deny list."
)]
pub(crate) struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "TURNPIKE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// A packaged set of settings under the file, variables and flags: `public` listens on
    /// ports 80 and 443 only (TURN over UDP/TCP/TLS/DTLS, HTTPS, wss, ACME HTTP-01), as the
    /// hosted services do.
    #[arg(long, env = "TURNPIKE_PROFILE", global = true, value_enum)]
    pub profile: Option<Profile>,
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
    /// Print the reference table of every configuration key (Markdown, as in
    /// docs/configuration.md).
    ConfigReference {
        /// Write the table into this Markdown file between its markers instead of printing it.
        #[arg(long)]
        update: Option<PathBuf>,
    },
    /// List the fleet's nodes from the database (`database_url`): region, state, load.
    Nodes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Test any STUN/TURN server end to end: Binding, Allocate, a relay round trip, clean-up.
    /// Exits 1 when a probe failed.
    Probe(crate::probe::ProbeArgs),
    /// RFC 5780 NAT behaviour discovery against a STUN server with OTHER-ADDRESS: mapping,
    /// filtering, hairpinning, binding lifetime (`--lifetime`) and the NAT's common name.
    NatCheck(crate::nat_check::NatCheckArgs),
}

/// The command line as parsed: the subcommand, the file, and the keys given by flag or variable.
pub(crate) struct Invocation {
    pub cli: Cli,
    matches: clap::ArgMatches,
}

impl Invocation {
    /// Parses the process's arguments (exits with clap's message on a bad one).
    pub(crate) fn from_env() -> Self {
        let matches = Cli::command().args(key_args()).get_matches();
        let cli = match Cli::from_arg_matches(&matches) {
            Ok(c) => c,
            Err(e) => e.exit(),
        };
        Self { cli, matches }
    }

    /// Defaults, then the file, then variables and flags.
    pub(crate) fn load(&self) -> Result<Config> {
        Config::load(self.cli.profile, self.cli.config.as_ref(), &self.matches)
    }
}

/// The markers around the generated table in docs/configuration.md.
const TABLE_BEGIN: &str = "<!-- keys: generated by `turnpike config-reference`; edit the doc comments in turnpike/src/config.rs -->\n";
const TABLE_END: &str = "<!-- end of keys -->";

/// The range of `doc` between the table markers.
fn table_range(doc: &str) -> Option<std::ops::Range<usize>> {
    let start = doc.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = doc[start..].find(TABLE_END)? + start;
    Some(start..end)
}

/// Rewrites the table between the markers of the Markdown file `path`.
pub(crate) fn update_reference(path: &std::path::Path) -> Result<()> {
    let mut doc =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let range = table_range(&doc)
        .with_context(|| format!("{} has no `{}` marker", path.display(), TABLE_BEGIN.trim()))?;
    doc.replace_range(range, &reference_table());
    std::fs::write(path, doc).with_context(|| format!("cannot write {}", path.display()))
}

/// The reference table of every key: name, default, meaning.
pub(crate) fn reference_table() -> String {
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialize");
    let mut out = String::from("| key | default | meaning |\n| --- | --- | --- |\n");
    for (name, doc) in KEYS {
        let d = match &defaults[*name] {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::Array(a) if a.is_empty() => "`[]`".to_string(),
            v => format!("`{}`", v.to_string().replace(',', ", ")),
        };
        let d = d.replace(env!("CARGO_PKG_VERSION"), "<version>");
        out.push_str(&format!("| `{name}` | {d} | {} |\n", doc_text(doc)));
    }
    out
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
    fn load(
        profile: Option<Profile>,
        file: Option<&PathBuf>,
        overrides: &clap::ArgMatches,
    ) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Self::default()));
        if let Some(p) = profile {
            fig = fig.merge(Toml::string(p.toml()));
        }
        if let Some(f) = file {
            if !f.exists() {
                bail!(
                    "config file {} does not exist (fix the --config flag or TURNPIKE_CONFIG)",
                    f.display()
                );
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = merge_overrides(fig, overrides);
        let mut cfg: Self = fig.extract().map_err(|e| {
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
        cfg.apply_deprecated();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The keys renamed when durations got one unit: `X_ms = N` still works, as `X = "Nms"`.
    fn deprecated_ms(&mut self) -> [(&'static str, Option<u64>, &mut Span); 4] {
        [
            (
                "usage_flush_interval",
                self.usage_flush_interval_ms,
                &mut self.usage_flush_interval,
            ),
            (
                "directory_sync_interval",
                self.directory_sync_interval_ms,
                &mut self.directory_sync_interval,
            ),
            (
                "webhook_first_retry",
                self.webhook_first_retry_ms,
                &mut self.webhook_first_retry,
            ),
            (
                "signal_resume_grace",
                self.signal_resume_grace_ms,
                &mut self.signal_resume_grace,
            ),
        ]
    }

    fn apply_deprecated(&mut self) {
        for (_, old, new) in self.deprecated_ms() {
            if let Some(ms) = old {
                *new = Span::millis(ms);
            }
        }
    }

    /// One warning per deprecated key in use, naming its replacement.
    pub(crate) fn deprecations(&self) -> Vec<String> {
        self.clone()
            .deprecated_ms()
            .into_iter()
            .filter_map(|(new, old, _)| {
                old.map(|ms| {
                    format!("key `{new}_ms` is deprecated: write `{new} = \"{ms}ms\"` instead")
                })
            })
            .collect()
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
        for (key, list, v6, external) in [
            ("relay_ipv4", &self.relay_ipv4, false, self.external_ipv4),
            ("relay_ipv6", &self.relay_ipv6, true, self.external_ipv6),
        ] {
            if let Some(ip) = list.0.iter().find(|ip| ip.is_ipv6() != v6) {
                let other = if v6 { "relay_ipv4" } else { "relay_ipv6" };
                bail!("key `{key}` holds {ip}, of the other family: move it to `{other}`");
            }
            if let Some(ip) = list.0.iter().find(|ip| ip.is_unspecified()) {
                bail!("key `{key}` holds {ip}: give the specific address(es) relays bind to");
            }
            if list.0.len() > 1 && external.is_some() {
                let ext = if v6 { "external_ipv6" } else { "external_ipv4" };
                bail!(
                    "key `{key}` lists {} addresses but `{ext}` names one public address for \
                     all of them (two relays on the same port would be advertised alike): give \
                     `{key}` one address, or leave `{ext}` unset when the relay addresses are public",
                    list.0.len()
                );
            }
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
        if !self.acme_domains.is_empty() && self.tls_cert.is_some() {
            bail!("keys `acme_domains` and `tls_cert` both give the certificate: set one of them");
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
        if self.tls_handshake_timeout < Span::secs(1) {
            bail!("key `tls_handshake_timeout` must be at least 1 second");
        }
        if self.default_lifetime < Span::secs(1) || self.default_lifetime > self.max_lifetime {
            bail!(
                "key `default_lifetime` must be between 1 second and `max_lifetime` ({})",
                self.max_lifetime
            );
        }
        if self.nonce_lifetime < Span::secs(30) {
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
        if self.ephemeral_default_ttl < Span::secs(1)
            || self.ephemeral_default_ttl > self.ephemeral_max_ttl
        {
            bail!(
                "key `ephemeral_default_ttl` must be between 1 second and `ephemeral_max_ttl` ({})",
                self.ephemeral_max_ttl
            );
        }
        for (k, v) in [
            ("usage_flush_interval", self.usage_flush_interval),
            ("directory_sync_interval", self.directory_sync_interval),
        ] {
            if v < Span::millis(100) || v > Span::secs(600) {
                bail!("key `{k}` ({v}) must be between 100ms and 600s");
            }
        }
        if self.api_rate_burst == 0 || self.api_rate_per_sec == 0 {
            bail!("keys `api_rate_burst` and `api_rate_per_sec` must be at least 1");
        }
        if self.api_max_body < 1024 {
            bail!("key `api_max_body` must be at least 1024 bytes");
        }
        if self.signal_bus == SignalBus::Postgres
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
            || self.signal_idle_timeout < Span::secs(1)
            || self.signal_handshake_timeout < Span::secs(1)
        {
            bail!("keys `signal_msgs_per_sec`, `signal_bytes_per_sec`, `signal_idle_timeout` and `signal_handshake_timeout` must be at least 1 (second)");
        }
        if self.webhook_attempts == 0 {
            bail!("key `webhook_attempts` must be at least 1");
        }
        if !turnpike_api::fleet::settings::region_name_ok(&self.region) {
            bail!("key `region` (`{}`) must be 1 to 64 letters, digits, `-` or `_`, e.g. `eu-central`", self.region);
        }
        if let Some(l) = &self.region_location {
            turnpike_api::fleet::geo::Place::parse(l)
                .map_err(|e| anyhow::anyhow!("key `region_location`: {e}"))?;
        }
        if self.heartbeat_interval < Span::millis(200) || self.heartbeat_interval > Span::secs(60) {
            bail!(
                "key `heartbeat_interval` ({}) must be between 200ms and 60s",
                self.heartbeat_interval
            );
        }
        for p in &self.geoip_database {
            if !p.exists() {
                bail!("key `geoip_database`: file {} does not exist", p.display());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_in_the_docs_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md is readable");
        let range = table_range(&doc).expect("docs/configuration.md has the table markers");
        assert!(
            doc[range] == reference_table(),
            "docs/configuration.md is out of date: run `cargo run -- config-reference --update docs/configuration.md`"
        );
    }

    #[test]
    fn every_key_has_a_flag_and_a_variable() {
        let cmd = Cli::command().args(key_args());
        for (name, doc) in KEYS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == *name)
                .unwrap_or_else(|| panic!("no flag for {name}"));
            assert_eq!(arg.get_long(), Some(name.replace('_', "-").as_str()));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(format!("TURNPIKE_{}", name.to_ascii_uppercase()).as_str())
            );
            assert!(!doc.is_empty(), "{name} has no doc comment");
        }
    }

    #[test]
    fn flags_and_variables_override_the_file() {
        let m = Cli::command().args(key_args()).get_matches_from([
            "turnpike",
            "--listen-udp",
            "127.0.0.1:5000,127.0.0.1:5001",
            "--relay-port-min",
            "2000",
            "--public-host",
            "turn.example.com",
            "--demo-public",
            "true",
            "--listen-tls",
            "",
        ]);
        let cfg = Config::load(None, None, &m).unwrap();
        assert_eq!(cfg.listen_udp.len(), 2);
        assert_eq!(cfg.relay_port_min, 2000);
        assert_eq!(cfg.public_host.as_deref(), Some("turn.example.com"));
        assert!(cfg.demo_public);
        assert!(
            cfg.listen_tls.is_empty(),
            "an empty list flag empties the list"
        );
        assert_eq!(cfg.realm, Config::default().realm);
    }

    #[test]
    fn the_public_profile_listens_on_80_and_443_under_the_file_and_flags() {
        let m = Cli::command().args(key_args()).get_matches_from([
            "turnpike",
            "--listen-udp",
            "127.0.0.1:80",
        ]);
        let cfg = Config::load(Some(Profile::Public), None, &m).unwrap();
        let ports = |v: &[SocketAddr]| v.iter().map(SocketAddr::port).collect::<Vec<_>>();
        assert_eq!(ports(&cfg.listen_mux), [443, 443]);
        assert_eq!(ports(&cfg.listen_mux_plain), [80, 80]);
        assert_eq!(ports(&cfg.listen_dtls), [443, 443]);
        assert!(cfg.listen_tcp.is_empty() && cfg.listen_tls.is_empty());
        // A flag still wins over the profile.
        assert_eq!(
            cfg.listen_udp,
            ["127.0.0.1:80".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn durations_take_seconds_or_units_everywhere_and_old_ms_keys_still_work() {
        let dir = std::env::temp_dir().join(format!("turnpike-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("durations.toml");
        std::fs::write(
            &file,
            "credential_grace = \"2h\"\ntcp_idle_timeout = 90\nusage_flush_interval_ms = 250\n\
             signal_resume_grace = \"1s 500ms\"\n",
        )
        .unwrap();
        let m = Cli::command().args(key_args()).get_matches_from([
            "turnpike",
            "--directory-sync-interval",
            "750ms",
            "--tls-handshake-timeout",
            "3",
        ]);
        let cfg = Config::load(None, Some(&file), &m).unwrap();
        assert_eq!(cfg.credential_grace, Span::secs(7200));
        assert_eq!(cfg.tcp_idle_timeout, Span::secs(90));
        assert_eq!(cfg.usage_flush_interval, Span::millis(250));
        assert_eq!(cfg.signal_resume_grace, Span::millis(1500));
        assert_eq!(cfg.directory_sync_interval, Span::millis(750));
        assert_eq!(cfg.tls_handshake_timeout, Span::secs(3));
        let warnings = cfg.deprecations();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("usage_flush_interval = \"250ms\""));
        // A bad duration names the key and shows the accepted forms.
        std::fs::write(&file, "tcp_idle_timeout = \"ten minutes\"\n").unwrap();
        let e = Config::load(None, Some(&file), &m).unwrap_err().to_string();
        assert!(e.contains("tcp_idle_timeout") && e.contains("10s"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
