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
    /// 300 with ALTERNATE-SERVER (and ALTERNATE-DOMAIN): this node drains or is full.
    TryAlternate(crate::runtime::Redirect),
    ServerError(&'static str),
    /// No response at all.
    Drop(DropReason),
}

impl TurnError {
    /// The STUN error code, or `None` for "drop silently". The one mapping of failures to
    /// the wire.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::UnknownAttributes(..) => ErrorCode::UnknownAttribute,
            Self::AllocationMismatch => ErrorCode::AllocationMismatch,
            Self::StaleNonce => ErrorCode::StaleNonce,
            Self::AddressFamilyNotSupported => ErrorCode::AddressFamilyNotSupported,
            Self::WrongCredentials => ErrorCode::WrongCredentials,
            Self::UnsupportedTransport => ErrorCode::UnsupportedTransportProtocol,
            Self::PeerAddressFamilyMismatch => ErrorCode::PeerAddressFamilyMismatch,
            Self::QuotaReached => ErrorCode::AllocationQuotaReached,
            Self::ConnectionAlreadyExists => ErrorCode::ConnectionAlreadyExists,
            Self::InsufficientCapacity(_) => ErrorCode::InsufficientCapacity,
            Self::TryAlternate(_) => ErrorCode::TryAlternate,
            Self::ServerError(_) => ErrorCode::ServerError,
            Self::Drop(_) => return None,
        })
    }

    /// Whether the error response carries REALM and NONCE so the client can (re)authenticate.
    pub fn carries_challenge(&self) -> bool {
        matches!(self, Self::Unauthorized(_) | Self::StaleNonce)
    }
}
