//! The codec's one error type.

use std::fmt;

/// Why bytes could not be parsed or written as STUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    /// Fewer bytes than the header or a length field says.
    Truncated,
    /// The two leading bits are not zero, so this is not STUN.
    NotStun,
    /// The magic cookie is missing (RFC 3489 messages are not accepted).
    BadMagicCookie,
    /// The message length is not a multiple of 4 or disagrees with the datagram.
    BadLength,
    /// An attribute's length runs past the end of the message.
    BadAttributeLength,
    /// An attribute follows FINGERPRINT, or FINGERPRINT's value is not 4 bytes.
    BadFingerprintPlacement,
    /// The FINGERPRINT CRC does not match.
    FingerprintMismatch,
    /// An attribute value has the wrong shape (e.g. an address with an unknown family).
    BadAttributeValue,
    /// The output buffer is too small for what is being written.
    BufferTooSmall,
    /// A ChannelData header with a number outside 0x4000-0x7FFF.
    BadChannelNumber,
}

impl fmt::Display for StunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Truncated => "message truncated",
            Self::NotStun => "not a STUN message",
            Self::BadMagicCookie => "missing magic cookie",
            Self::BadLength => "bad message length",
            Self::BadAttributeLength => "attribute length runs past the message",
            Self::BadFingerprintPlacement => "FINGERPRINT misplaced or malformed",
            Self::FingerprintMismatch => "FINGERPRINT does not match",
            Self::BadAttributeValue => "malformed attribute value",
            Self::BufferTooSmall => "output buffer too small",
            Self::BadChannelNumber => "channel number out of range",
        };
        f.write_str(s)
    }
}

impl std::error::Error for StunError {}
