//! What the state machine asks the driver to do.

use std::net::SocketAddr;

use crate::five_tuple::FiveTuple;

/// Index of an allocation in a server's table.
pub type AllocationId = usize;

/// Where a borrowed [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Back to a client over its 5-tuple.
    Client(FiveTuple),
    /// To a peer, from the relay socket bound at `relay`.
    Peer { relay: SocketAddr, peer: SocketAddr },
}

/// Bytes to send now, borrowed from the input packet or the server's scratch buffer (the hot
/// path: no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub dest: Dest,
    pub data: &'a [u8],
}

/// Bytes the driver must leave free before a peer datagram's payload (the ChannelData header
/// is written there in place).
pub const PEER_HEADROOM: usize = turnpike_stun::CHANNEL_DATA_HEADER_LEN;
/// Bytes the driver must leave free after a peer datagram's payload (TCP ChannelData padding).
pub const PEER_TAILROOM: usize = 3;

/// Address families of a relay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Families {
    pub const IPV4: Self = Self {
        ipv4: true,
        ipv6: false,
    };
    pub const IPV6: Self = Self {
        ipv4: false,
        ipv6: true,
    };
    /// RFC 8656 dual allocation (ADDITIONAL-ADDRESS-FAMILY IPv6).
    pub const DUAL: Self = Self {
        ipv4: true,
        ipv6: true,
    };
}

/// A request for the driver to bind relay socket(s) (RFC 8656 §7.2 "relayed transport address").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    pub allocation: AllocationId,
    pub generation: u64,
    pub five_tuple: FiveTuple,
    pub families: Families,
    /// EVEN-PORT: `Some(reserve_next)` asks for an even port, and with `true` to reserve the next
    /// port under a RESERVATION-TOKEN.
    pub even_port: Option<bool>,
    /// RESERVATION-TOKEN: use the port reserved under this token.
    pub reservation_token: Option<u64>,
    /// DONT-FRAGMENT: set the DF bit on packets to peers.
    pub dont_fragment: bool,
    /// UDP relay sockets, or (RFC 6062) a TCP listener.
    pub transport: RelayTransport,
}

/// Why the driver could not bind a relay of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// No relay address of this family is configured (440).
    FamilyUnsupported,
    /// No free port in the relay range (508).
    Exhausted,
    /// RESERVATION-TOKEN unknown or expired (508).
    BadToken,
}

/// The driver's answer to a [`RelayRequest`]. Families not requested are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayResult {
    pub ipv4: Option<Result<SocketAddr, RelayError>>,
    pub ipv6: Option<Result<SocketAddr, RelayError>>,
    pub reservation_token: Option<u64>,
}

/// Work for the driver that is not an immediate reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `data` to the client on `to`.
    Transmit { to: FiveTuple, data: Vec<u8> },
    /// Bind relay socket(s) and answer with [`crate::Server::handle_relay_created`].
    CreateRelay(RelayRequest),
    /// The relay socket bound at this address is no longer used.
    ReleaseRelay(SocketAddr),
    /// RFC 6062: open a TCP connection from the relayed address `relay` to `peer`, then answer
    /// with [`crate::Server::handle_peer_connect_result`].
    ConnectPeer {
        connection: ConnectionId,
        relay: SocketAddr,
        peer: SocketAddr,
    },
    /// RFC 6062: join the client data connection `data` with the peer connection; from now on
    /// bytes are copied both ways unchanged.
    SpliceData {
        connection: ConnectionId,
        data: FiveTuple,
        /// Whose usage the spliced bytes are (report them with `Server::handle_spliced`).
        account: Option<std::sync::Arc<crate::directory::Account>>,
        /// The serial of the allocation the connection belongs to.
        allocation: u64,
    },
    /// RFC 6062: close the peer connection (and its data connection, if spliced).
    ClosePeerConnection(ConnectionId),
}

/// RFC 6062 CONNECTION-ID.
pub type ConnectionId = u32;

/// The relay transport an allocation asked for with REQUESTED-TRANSPORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTransport {
    Udp,
    /// RFC 6062 TCP allocation: the relayed address is a TCP listener.
    Tcp,
}
