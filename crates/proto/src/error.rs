//! `TurnError`: every way a request can fail, with its one mapping to a STUN error code or to
//! "drop silently".

use turnpike_stun::*;

/// Why a packet was dropped without an answer (counted per reason in [`crate::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not parseable as STUN or ChannelData, or a bad FINGERPRINT.
    Malformed = 0,
    /// A response or indication we do not accept, or an unknown method in an indication.
    Unexpected = 1,
    /// ChannelData or Send indication without an allocation on this 5-tuple.
    NoAllocation = 2,
    /// Data to or from a peer without a permission.
    NoPermission = 3,
    /// ChannelData on a channel that is not bound.
    NoChannel = 4,
    /// An unauthenticated answer over this source's byte budget.
    RateLimited = 5,
    /// Retransmission of an Allocate whose relay is still being created.
    InProgress = 6,
    /// The peer address is refused by policy (indications get no error response).
    Policy = 7,
    /// The socket could not take the packet (full buffer).
    SendFailed = 8,
    /// Over the account's bitrate limit (quota throttle or `max_bitrate_bps`).
    Throttled = 9,
    /// A stream connection missed its first-frame or frame deadline and was closed.
    Timeout = 10,
    /// The client's address is on the deny list.
    Denied = 11,
}

impl DropReason {
    pub const COUNT: usize = 12;
    pub const ALL: [Self; Self::COUNT] = [
        Self::Malformed,
        Self::Unexpected,
        Self::NoAllocation,
        Self::NoPermission,
        Self::NoChannel,
        Self::RateLimited,
        Self::InProgress,
        Self::Policy,
        Self::SendFailed,
        Self::Throttled,
        Self::Timeout,
        Self::Denied,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unexpected => "unexpected",
            Self::NoAllocation => "no_allocation",
            Self::NoPermission => "no_permission",
            Self::NoChannel => "no_channel",
            Self::RateLimited => "rate_limited",
            Self::InProgress => "in_progress",
            Self::Policy => "policy",
            Self::SendFailed => "send_failed",
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::Denied => "denied",
        }
    }
}

/// The most unknown attributes we list in one 420 response.
pub const MAX_UNKNOWN: usize = 8;

/// Every failure of request processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnError {
    BadRequest(&'static str),
    /// Authentication needed or failed: 401 with REALM and NONCE.
    Unauthorized(&'static str),
    Forbidden(&'static str),
    UnknownAttributes([u16; MAX_UNKNOWN], usize),
    AllocationMismatch,
    /// 438 with a fresh NONCE.
    StaleNonce,
    AddressFamilyNotSupported,
    WrongCredentials,
    UnsupportedTransport,
    PeerAddressFamilyMismatch,
    QuotaReached,
    ConnectionAlreadyExists,
    InsufficientCapacity(&'static str),
    ServerError(&'static str),
    /// No response at all.
    Drop(DropReason),
}

impl TurnError {
    /// The STUN error code, or `None` for "drop silently".
    pub fn code(&self) -> Option<u16> {
        Some(match self {
            Self::BadRequest(_) => ERR_BAD_REQUEST,
            Self::Unauthorized(_) => ERR_UNAUTHORIZED,
            Self::Forbidden(_) => ERR_FORBIDDEN,
            Self::UnknownAttributes(..) => ERR_UNKNOWN_ATTRIBUTE,
            Self::AllocationMismatch => ERR_ALLOCATION_MISMATCH,
            Self::StaleNonce => ERR_STALE_NONCE,
            Self::AddressFamilyNotSupported => ERR_ADDRESS_FAMILY_NOT_SUPPORTED,
            Self::WrongCredentials => ERR_WRONG_CREDENTIALS,
            Self::UnsupportedTransport => ERR_UNSUPPORTED_TRANSPORT_PROTOCOL,
            Self::PeerAddressFamilyMismatch => ERR_PEER_ADDRESS_FAMILY_MISMATCH,
            Self::QuotaReached => ERR_ALLOCATION_QUOTA_REACHED,
            Self::ConnectionAlreadyExists => ERR_CONNECTION_ALREADY_EXISTS,
            Self::InsufficientCapacity(_) => ERR_INSUFFICIENT_CAPACITY,
            Self::ServerError(_) => ERR_SERVER_ERROR,
            Self::Drop(_) => return None,
        })
    }

    /// Whether the error response carries REALM and NONCE so the client can (re)authenticate.
    pub fn carries_challenge(&self) -> bool {
        matches!(self, Self::Unauthorized(_) | Self::StaleNonce)
    }
}
