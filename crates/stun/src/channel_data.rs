//! ChannelData framing (RFC 8656 §12.4).

use crate::StunError;

/// Length of the ChannelData header (channel number and length).
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// A parsed ChannelData message borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// True when `n` is a channel number a client may bind (RFC 8656 §12: 0x4000 through 0x4FFF;
    /// RFC 5766 allowed up to 0x7FFF, which we accept too for older clients).
    pub const fn is_valid_channel(n: u16) -> bool {
        n >= 0x4000 && n <= 0x7FFF
    }

    /// Parses a ChannelData message. Trailing bytes after the payload (UDP padding) are allowed.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < CHANNEL_DATA_HEADER_LEN {
            return Err(StunError::Truncated);
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !Self::is_valid_channel(channel) {
            return Err(StunError::BadChannelNumber);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < CHANNEL_DATA_HEADER_LEN + len {
            return Err(StunError::Truncated);
        }
        Ok(ChannelData {
            channel,
            payload: &buf[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len],
        })
    }

    /// Writes the 4-byte header for a payload of `len` bytes.
    pub fn write_header(channel: u16, len: u16, out: &mut [u8]) {
        out[0..2].copy_from_slice(&channel.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
}
