//! What the rooms ask their driver to do, and the answers the driver brings back.

use std::fmt;
use std::sync::Arc;

use crate::bus_event::BusEvent;
use crate::close_code::CloseCode;
use crate::message::Peer;
use crate::token::Claims;

/// A connection (one socket), named by the rooms when the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(super) u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One thing for the driver to carry out, in order. Socket outputs (`Send`, `Close`, `Abort`)
/// and metrics are immediate; the others are asynchronous work whose answer, when there is one,
/// comes back through the `handle_*` method named on the variant.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Output {
    /// Write a text frame. The driver calls [`super::Rooms::handle_written`] once it is written.
    Send { conn: ConnId, text: Arc<str> },
    /// Write the frames already sent, then a close frame with `code`; the connection then ends.
    Close { conn: ConnId, code: CloseCode },
    /// End the connection now: queued frames are discarded, no close frame (a slow consumer).
    Abort { conn: ConnId },
    /// Verify a join token and read its tenant's Origin allow-list; answer with
    /// [`super::Rooms::handle_join`].
    Authorize { conn: ConnId, token: String },
    /// Count the room's participants (all nodes) and mint ICE servers for `identity`; answer
    /// with [`super::Rooms::handle_room`].
    FetchRoom {
        conn: ConnId,
        room: String,
        tenant: String,
        identity: String,
        /// The connection's address (the ICE list names the nodes nearest to it).
        client: std::net::IpAddr,
    },
    /// Add the participant to the room's membership on the bus (which assigns its rank); answer
    /// with [`super::Rooms::handle_joined`].
    JoinRoom {
        conn: ConnId,
        room: String,
        peer_id: String,
        identity: String,
    },
    /// Remove a participant from the room's membership on the bus.
    LeaveRoom { room: String, peer_id: String },
    /// Publish on the bus. When it fails and `failure_to` names a connection, tell the rooms
    /// with [`super::Rooms::handle_publish_failed`].
    Publish {
        event: BusEvent,
        failure_to: Option<ConnId>,
    },
    /// Count something.
    Metric(Metric),
}

/// Metrics events (`turnpike_signal_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A client message accepted for the room (`messages_total{direction="in"}`).
    MessageIn,
    /// A room message handed to a socket (`messages_total{direction="out"}`).
    MessageOut,
    /// `drops_total{reason}`.
    Drop(DropReason),
    /// A session resumed on a new socket (`resumes_total`).
    Resume,
    /// Sessions attached to a socket on this node, and rooms with a participant on this node.
    Gauges { connections: usize, rooms: usize },
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Over the connection's message or byte rate.
    RateLimited,
    /// The receiver's queue was full: it was disconnected.
    SlowConsumer,
}

impl DropReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::SlowConsumer => "slow_consumer",
        }
    }
}

/// Why a connection is refused at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefused {
    /// The node is draining (503): connect to another.
    Draining,
    /// Too many sockets from this address (429).
    TooManyFromIp,
}

/// What a valid join token grants, with its tenant's Origin allow-list (empty: any origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub claims: Claims,
    pub allowed_origins: Vec<String>,
}

/// Why a join token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// Not a token at all.
    Malformed,
    /// A bad signature (or no live secret of that tenant signed it).
    Invalid,
    Expired,
    /// The operator suspended the token's tenant.
    Suspended,
}

/// The room as [`Output::FetchRoom`] found it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    /// Participants on every node.
    pub members: usize,
    /// ICE servers with a fresh TURN credential, for `joined` (opaque here).
    pub ice_servers: serde_json::Value,
}

/// The membership after [`Output::JoinRoom`]: the new participant (with its rank) and everyone
/// in the room, the new one included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub peer: Peer,
    pub members: Vec<Peer>,
}

/// The bus (or the database behind it) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusUnavailable;
