//! The WebSocket close codes the server sends, each with its reason text. The numbers are part
//! of the contract (docs/signalling.md): clients decide from them whether to reconnect.

/// Why the server closes a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: after `leave`.
    Bye,
    /// 1012: the node is draining; reconnect (to another node).
    Draining,
    /// 4000: the session was resumed on another socket.
    ResumedElsewhere,
    /// 4001: the operator kicked the participant.
    Kicked,
    /// 4001: the operator closed the room.
    RoomClosed,
    /// 4002: the first message was not a join.
    ExpectedJoin,
    /// 4002: a join of another protocol version.
    UnsupportedVersion,
    /// 4003: the join token is malformed, forged or expired.
    BadToken,
    /// 4003: the `Origin` is not on the tenant's allow-list.
    OriginNotAllowed,
    /// 4003: unknown or expired session, or a wrong resume token.
    CannotResume,
    /// 4008: no join within the handshake timeout.
    HandshakeTimeout,
    /// 4008: nothing received within the idle timeout.
    IdleTimeout,
    /// 4009: the room is full, the tenant at its connection limit, or the room service failed.
    CannotJoin,
}

impl CloseCode {
    /// The number in the close frame.
    pub fn code(self) -> u16 {
        match self {
            Self::Bye => 1000,
            Self::Draining => 1012,
            Self::ResumedElsewhere => 4000,
            Self::Kicked | Self::RoomClosed => 4001,
            Self::ExpectedJoin | Self::UnsupportedVersion => 4002,
            Self::BadToken | Self::OriginNotAllowed | Self::CannotResume => 4003,
            Self::HandshakeTimeout | Self::IdleTimeout => 4008,
            Self::CannotJoin => 4009,
        }
    }

    /// The reason text in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Bye => "bye",
            Self::Draining => "server restarting: reconnect",
            Self::ResumedElsewhere => "resumed elsewhere",
            Self::Kicked => "kicked by the operator",
            Self::RoomClosed => "room closed by the operator",
            Self::ExpectedJoin => "expected a join message",
            Self::UnsupportedVersion => "unsupported version",
            Self::BadToken => "bad token",
            Self::OriginNotAllowed => "origin not allowed",
            Self::CannotResume => "cannot resume",
            Self::HandshakeTimeout => "handshake timeout",
            Self::IdleTimeout => "idle timeout",
            Self::CannotJoin => "cannot join",
        }
    }
}
