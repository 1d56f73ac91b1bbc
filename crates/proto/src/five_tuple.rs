//! The 5-tuple that names an allocation (RFC 8656 §2): client address, server address, transport.

use std::net::SocketAddr;

/// The transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
    Tls = 2,
    Dtls = 3,
}

impl Transport {
    pub const ALL: [Self; 4] = [Self::Udp, Self::Tcp, Self::Tls, Self::Dtls];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Dtls => "dtls",
        }
    }

    /// Stream transports carry ChannelData padded to 4 bytes (RFC 8656 §12.5).
    pub const fn is_stream(self) -> bool {
        matches!(self, Self::Tcp | Self::Tls)
    }
}

/// Client address, server address and transport of one client connection or flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
}
