//! STUN methods as a type (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1).

use crate::consts::*;

/// A method this codec knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Binding,
    Allocate,
    Refresh,
    Send,
    Data,
    CreatePermission,
    ChannelBind,
    Connect,
    ConnectionBind,
    ConnectionAttempt,
}

impl Method {
    /// The method of a 12-bit method number, if known.
    pub const fn from_number(n: u16) -> Option<Self> {
        Some(match n {
            METHOD_BINDING => Self::Binding,
            METHOD_ALLOCATE => Self::Allocate,
            METHOD_REFRESH => Self::Refresh,
            METHOD_SEND => Self::Send,
            METHOD_DATA => Self::Data,
            METHOD_CREATE_PERMISSION => Self::CreatePermission,
            METHOD_CHANNEL_BIND => Self::ChannelBind,
            METHOD_CONNECT => Self::Connect,
            METHOD_CONNECTION_BIND => Self::ConnectionBind,
            METHOD_CONNECTION_ATTEMPT => Self::ConnectionAttempt,
            _ => return None,
        })
    }

    /// The 12-bit method number.
    pub const fn number(self) -> u16 {
        match self {
            Self::Binding => METHOD_BINDING,
            Self::Allocate => METHOD_ALLOCATE,
            Self::Refresh => METHOD_REFRESH,
            Self::Send => METHOD_SEND,
            Self::Data => METHOD_DATA,
            Self::CreatePermission => METHOD_CREATE_PERMISSION,
            Self::ChannelBind => METHOD_CHANNEL_BIND,
            Self::Connect => METHOD_CONNECT,
            Self::ConnectionBind => METHOD_CONNECTION_BIND,
            Self::ConnectionAttempt => METHOD_CONNECTION_ATTEMPT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..0x1000 {
            if let Some(m) = Method::from_number(n) {
                assert_eq!(m.number(), n);
            }
        }
        assert_eq!(Method::from_number(0x003), Some(Method::Allocate));
        assert_eq!(Method::from_number(0x00B), Some(Method::ConnectionBind));
        assert_eq!(Method::from_number(0x0FF), None);
    }
}
