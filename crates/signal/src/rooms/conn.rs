//! One socket as the rooms see it: its address, its queue, and where it is in its life.

use std::net::IpAddr;
use std::time::Instant;

use super::rate::Rate;

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) ip: IpAddr,
    /// The `Origin` header of the upgrade.
    pub(super) origin: Option<String>,
    /// Frames handed to the driver and not yet written to the socket.
    pub(super) queued: usize,
    pub(super) state: ConnState,
}

#[derive(Debug)]
pub(super) enum ConnState {
    /// Waiting for the join (until the handshake deadline).
    Handshake,
    /// The driver is checking the join token.
    Authorizing,
    /// The driver is counting the room and minting ICE servers; a tenant slot is reserved.
    Admitting(Pending),
    /// The driver is adding the participant to the room; a tenant slot is reserved.
    Joining {
        pending: Pending,
        peer_id: String,
        ice_servers: serde_json::Value,
    },
    /// Attached to a session.
    Joined(Attached),
    /// Closed or aborted by the rooms: frames are ignored until the driver reports the end.
    Closing,
}

/// A join in progress: what the token granted.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) tenant: String,
    pub(super) room: String,
    pub(super) room_key: String,
    pub(super) identity: String,
    pub(super) can_send: bool,
    pub(super) can_broadcast: bool,
}

#[derive(Debug)]
pub(super) struct Attached {
    pub(super) session: String,
    pub(super) rate: Rate,
    /// The last frame of any kind (the idle timer runs from here).
    pub(super) last_seen: Instant,
}

impl ConnState {
    /// The tenant whose slot a join in progress holds.
    pub(super) fn reserved_tenant(&self) -> Option<&str> {
        match self {
            Self::Admitting(p) | Self::Joining { pending: p, .. } => Some(&p.tenant),
            _ => None,
        }
    }
}
