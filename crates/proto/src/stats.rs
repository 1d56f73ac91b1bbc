//! Plain counters kept by one server instance. The driver reads them periodically and exports
//! them; nothing here locks or allocates on the packet path.

use crate::error::DropReason;
use crate::five_tuple::Transport;

/// The four legs of relayed traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer = 0,
    ServerToPeer = 1,
    PeerToServer = 2,
    ServerToClient = 3,
}

impl Direction {
    pub const ALL: [Self; 4] = [
        Self::ClientToServer,
        Self::ServerToPeer,
        Self::PeerToServer,
        Self::ServerToClient,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientToServer => "client_to_server",
            Self::ServerToPeer => "server_to_peer",
            Self::PeerToServer => "peer_to_server",
            Self::ServerToClient => "server_to_client",
        }
    }
}

/// Counters. Byte counts are datagram/frame bytes as they cross each leg (ChannelData or STUN
/// framing included on the client legs, payload only on the peer legs).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// `[direction][transport]` packets.
    pub packets: [[u64; 4]; 4],
    /// `[direction][transport]` bytes.
    pub bytes: [[u64; 4]; 4],
    pub dropped: [u64; DropReason::COUNT],
    pub auth_failures: u64,
    pub stale_nonces: u64,
    pub requests: u64,
    pub error_responses: u64,
    pub allocations_created: u64,
    pub allocations_expired: u64,
    pub allocations_deleted: u64,
    pub binding_requests: u64,
    /// Live objects (gauges).
    pub allocations: u64,
    pub permissions: u64,
    pub channels: u64,
}

impl Stats {
    #[inline]
    pub fn count(&mut self, d: Direction, t: Transport, bytes: usize) {
        self.packets[d as usize][t as usize] += 1;
        self.bytes[d as usize][t as usize] += bytes as u64;
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.dropped[r as usize] += 1;
    }
}
