//! Telling STUN from ChannelData and splitting them out of a byte stream.

use crate::{pad4, StunError, CHANNEL_DATA_HEADER_LEN, HEADER_LEN};

/// What the first byte of a packet says it is (RFC 7983 §7 demultiplexing, restricted to what a
/// TURN listener sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstByte {
    /// 0-3: STUN.
    Stun,
    /// 64-79: ChannelData (channel numbers 0x4000-0x4FFF).
    ChannelData,
    /// 20-63: DTLS.
    Dtls,
    /// Anything else.
    Other,
}

/// Classifies a packet by its first byte.
pub fn classify(b: u8) -> FirstByte {
    match b {
        0..=3 => FirstByte::Stun,
        20..=63 => FirstByte::Dtls,
        64..=127 => FirstByte::ChannelData,
        _ => FirstByte::Other,
    }
}

/// Given the start of a stream buffer, the length of the first complete frame (STUN message, or
/// ChannelData padded to 4 bytes as RFC 8656 §12.5 requires over TCP). `Ok(None)` means more
/// bytes are needed; `Err` means the stream is not STUN/ChannelData and must be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, StunError> {
    Ok(frame_size(buf)?.filter(|&need| buf.len() >= need))
}

/// The whole length of the frame that starts `buf`, once its first 4 bytes are in (so a reader
/// can size its buffer for it); `Ok(None)` before that.
pub fn frame_size(buf: &[u8]) -> Result<Option<usize>, StunError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    match buf[0] >> 6 {
        0 => {
            if !len.is_multiple_of(4) {
                return Err(StunError::BadLength);
            }
            Ok(Some(HEADER_LEN + len))
        }
        1 => Ok(Some(CHANNEL_DATA_HEADER_LEN + pad4(len))),
        _ => Err(StunError::NotStun),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame_len(&[0, 1]).unwrap(), None);
        assert_eq!(
            frame_len(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]).unwrap(),
            None
        );
        assert_eq!(
            frame_len(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]).unwrap(),
            Some(12)
        );
        assert!(frame_len(&[0x80, 0, 0, 0]).is_err());
        assert_eq!(frame_size(&[0x40, 0x00, 0x00, 0x05]).unwrap(), Some(12));
        assert_eq!(frame_size(&[0x00, 0x01, 0x00, 0x08]).unwrap(), Some(28));
        assert_eq!(frame_size(&[0x00, 0x01]).unwrap(), None);
        assert!(frame_len(&[0x00, 1, 0, 3]).is_err());
        assert_eq!(classify(0x00), FirstByte::Stun);
        assert_eq!(classify(0x40), FirstByte::ChannelData);
        assert_eq!(classify(22), FirstByte::Dtls);
    }
}
