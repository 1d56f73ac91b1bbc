//! Configuration of the sans-IO server. Built by the binary from its TOML/flags/env; validated
//! there (this crate trusts it).

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::Credentials;
use crate::policy::PeerPolicy;

/// The one default of each setting an operator may change (the binary's configuration keys
/// take theirs from here).
pub mod defaults {
    use std::time::Duration;

    /// Nonce validity before 438 Stale Nonce.
    pub const NONCE_LIFETIME: Duration = Duration::from_secs(600);
    /// Allocation lifetime when the client asks for none (RFC 8656: 600 s).
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
    /// Longest allocation lifetime granted.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
    /// Unauthenticated answers: surplus bytes per source, and its refill per second.
    pub const UNAUTH_BYTES_BURST: u32 = 8192;
    pub const UNAUTH_BYTES_PER_SEC: u32 = 2048;
    /// How long an allocation made with a valid credential may go on refreshing, permitting and
    /// binding after the credential expired.
    pub const CREDENTIAL_GRACE: Duration = Duration::from_secs(24 * 3600);
}

/// RFC 5780 NAT behaviour discovery: the server's two IP addresses and two ports. The driver
/// listens on all four combinations; Binding requests with CHANGE-REQUEST are answered from the
/// one asked for, with OTHER-ADDRESS and RESPONSE-ORIGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc5780 {
    pub primary_ip: IpAddr,
    pub alternate_ip: IpAddr,
    pub primary_port: u16,
    pub alternate_port: u16,
}

impl Rfc5780 {
    /// The other IP of the pair (`ip` itself when it is neither).
    pub fn other_ip(&self, ip: IpAddr) -> IpAddr {
        if ip == self.alternate_ip {
            self.primary_ip
        } else {
            self.alternate_ip
        }
    }

    /// The other port of the pair.
    pub fn other_port(&self, port: u16) -> u16 {
        if port == self.alternate_port {
            self.primary_port
        } else {
            self.alternate_port
        }
    }
}

/// Everything a [`crate::Server`] needs to know: settings only, fixed for the process's life.
/// Shared (`Arc`) by the per-core workers; what they share that changes while running is the
/// [`crate::Runtime`].
#[derive(Debug)]
pub struct ServerConfig {
    /// REALM sent in challenges.
    pub realm: String,
    /// SOFTWARE sent in authenticated responses; empty for none.
    pub software: String,
    /// Static users and shared secrets.
    pub credentials: Credentials,
    /// Secret key for stateless nonces (shared by all workers so a nonce minted by one is valid
    /// on the others).
    pub nonce_secret: [u8; 32],
    /// How long a nonce stays valid before 438 Stale Nonce.
    pub nonce_lifetime: Duration,
    /// Allocation lifetime when the client does not ask (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Longest lifetime granted.
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s, not configurable by clients).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// Peer address policy.
    pub peer_policy: PeerPolicy,
    /// Address advertised in XOR-RELAYED-ADDRESS instead of the bound IPv4 relay address (NAT).
    pub external_ipv4: Option<IpAddr>,
    /// Address advertised instead of the bound IPv6 relay address.
    pub external_ipv6: Option<IpAddr>,
    /// Most permissions one allocation may hold.
    pub max_permissions_per_allocation: usize,
    /// Most channels one allocation may hold.
    pub max_channels_per_allocation: usize,
    /// Unauthenticated answers over UDP (Binding responses, challenges, errors): the bytes a
    /// source may get back beyond what it sent (0: no budget), see [`crate::unauth_budget`].
    pub unauth_bytes_burst: u32,
    /// ... refilled at this many bytes per second.
    pub unauth_bytes_per_sec: u32,
    /// RFC 5780 behaviour discovery, when the node has two addresses.
    pub rfc5780: Option<Rfc5780>,
    /// Whether the directory's credentials (control plane) are in use. Username anonymity
    /// (USERHASH) is advertised only when every credential kind can honour it, and ephemeral
    /// or shared-secret usernames cannot be recovered from their hash.
    pub directory_credentials: bool,
    /// Most live allocations of a tenant that has no allocation quota of its own (`None`:
    /// unlimited).
    pub default_tenant_max_allocations: Option<u32>,
    /// How long a live allocation may go on (Refresh, CreatePermission, ChannelBind, Connect,
    /// ConnectionBind) after its credential expired; a new Allocate always needs a valid one.
    /// Zero: every request needs a valid credential.
    pub credential_grace: Duration,
}

impl ServerConfig {
    /// A configuration with the RFC defaults, for `realm` and `credentials`.
    pub fn new(realm: impl Into<String>, credentials: Credentials, nonce_secret: [u8; 32]) -> Self {
        Self {
            realm: realm.into(),
            software: concat!("Turnpike ", env!("CARGO_PKG_VERSION")).to_string(),
            credentials,
            nonce_secret,
            nonce_lifetime: defaults::NONCE_LIFETIME,
            default_lifetime: defaults::DEFAULT_LIFETIME,
            max_lifetime: defaults::MAX_LIFETIME,
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            peer_policy: PeerPolicy::default(),
            external_ipv4: None,
            external_ipv6: None,
            max_permissions_per_allocation: 256,
            max_channels_per_allocation: 256,
            unauth_bytes_burst: defaults::UNAUTH_BYTES_BURST,
            unauth_bytes_per_sec: defaults::UNAUTH_BYTES_PER_SEC,
            rfc5780: None,
            directory_credentials: true,
            default_tenant_max_allocations: None,
            credential_grace: defaults::CREDENTIAL_GRACE,
        }
    }
}
