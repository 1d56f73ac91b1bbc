//! An allocation and what hangs off it: permissions and channel bindings (RFC 8656 §2.2, §9, §12).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use turnpike_stun::{Key, TransactionId};

use crate::five_tuple::FiveTuple;
use crate::output::{ConnectionId, RelayTransport};
use crate::quota::QuotaLease;

/// After a channel binding expires, its number and peer stay reserved this long (RFC 8656 §12).
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

/// A channel binding: a number standing for a peer transport address.
#[derive(Debug, Clone, Copy)]
pub struct ChannelBinding {
    pub peer: SocketAddr,
    pub expires: Instant,
    /// Whether this binding is counted in the live-channels gauge (true until it lapses).
    pub counted: bool,
}

impl ChannelBinding {
    pub fn is_active(&self, now: Instant) -> bool {
        now < self.expires
    }
}

/// The state of an allocation while its relay socket is created by the driver.
#[derive(Debug, Clone)]
pub enum AllocationState {
    /// The relay was requested; the response goes out when the driver reports back.
    Pending {
        tid: TransactionId,
        fingerprint: bool,
        lifetime: Duration,
        dual: bool,
        /// The request used the draft attribute numbers (0x8032) for the additional family.
        draft_dual: bool,
    },
    Active,
}

/// One allocation.
#[derive(Debug)]
pub struct Allocation {
    pub five_tuple: FiveTuple,
    pub state: AllocationState,
    /// Relayed transport addresses as bound by the driver: `[ipv4, ipv6]`.
    pub relays: [Option<SocketAddr>; 2],
    pub username: String,
    pub key: Key,
    pub sha256: bool,
    pub expires: Instant,
    /// Generation, so timer entries of a reused slot are recognised as stale.
    pub generation: u64,
    /// Permissions by peer IP (port is ignored, RFC 8656 §9).
    pub permissions: crate::FastMap<IpAddr, Instant>,
    /// Channels by number, including ones cooling down after expiry.
    pub channels: crate::FastMap<u16, ChannelBinding>,
    /// Peer address -> channel number (active or cooling down).
    pub peer_channels: crate::FastMap<SocketAddr, u16>,
    /// The last response sent, for answering a retransmitted request identically.
    pub last_response: Option<(TransactionId, Vec<u8>)>,
    /// UDP relay, or an RFC 6062 TCP allocation.
    pub transport: RelayTransport,
    /// RFC 6062 peer connections of this allocation, by peer address.
    pub tcp_connections: HashMap<SocketAddr, ConnectionId>,
    /// The control-plane account billed for it (none for static users).
    pub account: Option<std::sync::Arc<crate::directory::Account>>,
    /// Exact relayed traffic so far, and what of it was already reported.
    pub usage: crate::accounting::Usage,
    pub usage_reported: crate::accounting::Usage,
    /// Wall-clock start (unix seconds), for the allocation log.
    pub started_unix: u64,
    /// Distinct peer IPs ever permitted (capped), for the allocation log.
    pub peers: std::collections::HashSet<IpAddr>,
    /// Bitrate cap, when the account has one.
    pub throttle: Option<crate::throttle::TokenBucket>,
    /// When the credential it was made with expires (unix seconds), if it does: past it, the
    /// allocation lives on within `credential_grace` unless a `refuse` quota ends it.
    pub credential_expires: Option<u64>,
    /// This allocation's share of the quotas, given back when it is dropped.
    pub _quota: QuotaLease,
}

/// Distinct peers remembered per allocation for the log.
pub const MAX_LOGGED_PEERS: usize = 1024;

impl Allocation {
    pub fn has_permission(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions
            .get(&ip.to_canonical())
            .is_some_and(|&e| now < e)
    }

    pub fn relay_for_family(&self, ipv6: bool) -> Option<SocketAddr> {
        self.relays[ipv6 as usize]
    }

    /// The relay address used to reach `peer`, if the allocation has one of its family.
    pub fn relay_for_peer(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        self.relay_for_family(peer.is_ipv6())
    }

    pub fn active_channel_for(&self, now: Instant, peer: &SocketAddr) -> Option<u16> {
        let n = *self.peer_channels.get(peer)?;
        self.channels
            .get(&n)
            .filter(|c| c.is_active(now))
            .map(|_| n)
    }
}
