//! Error codes as a type (RFC 8489 §14.8, RFC 8656 §18.10, RFC 6156 §5, RFC 6062 §6.3), with the
//! reason phrases the RFCs suggest.

/// An error code this codec knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    TryAlternate,
    BadRequest,
    Unauthorized,
    Forbidden,
    MobilityForbidden,
    UnknownAttribute,
    AllocationMismatch,
    StaleNonce,
    AddressFamilyNotSupported,
    WrongCredentials,
    UnsupportedTransportProtocol,
    PeerAddressFamilyMismatch,
    ConnectionAlreadyExists,
    ConnectionTimeoutOrFailure,
    AllocationQuotaReached,
    RoleConflict,
    ServerError,
    InsufficientCapacity,
}

impl ErrorCode {
    const ALL: [Self; 18] = [
        Self::TryAlternate,
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::MobilityForbidden,
        Self::UnknownAttribute,
        Self::AllocationMismatch,
        Self::StaleNonce,
        Self::AddressFamilyNotSupported,
        Self::WrongCredentials,
        Self::UnsupportedTransportProtocol,
        Self::PeerAddressFamilyMismatch,
        Self::ConnectionAlreadyExists,
        Self::ConnectionTimeoutOrFailure,
        Self::AllocationQuotaReached,
        Self::RoleConflict,
        Self::ServerError,
        Self::InsufficientCapacity,
    ];

    /// The numeric code (300-699).
    pub const fn code(self) -> u16 {
        match self {
            Self::TryAlternate => 300,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::MobilityForbidden => 405,
            Self::UnknownAttribute => 420,
            Self::AllocationMismatch => 437,
            Self::StaleNonce => 438,
            Self::AddressFamilyNotSupported => 440,
            Self::WrongCredentials => 441,
            Self::UnsupportedTransportProtocol => 442,
            Self::PeerAddressFamilyMismatch => 443,
            Self::ConnectionAlreadyExists => 446,
            Self::ConnectionTimeoutOrFailure => 447,
            Self::AllocationQuotaReached => 486,
            Self::RoleConflict => 487,
            Self::ServerError => 500,
            Self::InsufficientCapacity => 508,
        }
    }

    /// The reason phrase the RFCs suggest.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::TryAlternate => "Try Alternate",
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::MobilityForbidden => "Mobility Forbidden",
            Self::UnknownAttribute => "Unknown Attribute",
            Self::AllocationMismatch => "Allocation Mismatch",
            Self::StaleNonce => "Stale Nonce",
            Self::AddressFamilyNotSupported => "Address Family not Supported",
            Self::WrongCredentials => "Wrong Credentials",
            Self::UnsupportedTransportProtocol => "Unsupported Transport Protocol",
            Self::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            Self::ConnectionAlreadyExists => "Connection Already Exists",
            Self::ConnectionTimeoutOrFailure => "Connection Timeout or Failure",
            Self::AllocationQuotaReached => "Allocation Quota Reached",
            Self::RoleConflict => "Role Conflict",
            Self::ServerError => "Server Error",
            Self::InsufficientCapacity => "Insufficient Capacity",
        }
    }

    /// The error code of a number, if known.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// The reason phrase the RFCs suggest for a numeric code (`"Error"` for unknown ones).
pub fn reason_phrase(code: u16) -> &'static str {
    ErrorCode::from_code(code).map_or("Error", ErrorCode::reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        for e in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(e.code()), Some(e));
            assert!((300..700).contains(&e.code()));
        }
        assert_eq!(reason_phrase(438), "Stale Nonce");
        assert_eq!(reason_phrase(599), "Error");
    }
}
