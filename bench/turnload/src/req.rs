//! The TURN requests the generator makes (Allocate, ChannelBind, CreatePermission), the
//! data frames it sends, and reading the server's answers, with the project's STUN codec.

use std::net::SocketAddr;

use turnpike_stun::{
    decode_error_code, decode_xor_address, Class, Key, Message, MessageType, MessageWriter,
    TransactionId, ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_ERROR_CODE, ATTR_LIFETIME, ATTR_NONCE,
    ATTR_REALM, ATTR_REQUESTED_TRANSPORT, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
    ATTR_XOR_RELAYED_ADDRESS, CHANNEL_DATA_HEADER_LEN, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, PROTO_UDP,
};

/// What authenticates a request once the server's 401 named the realm and nonce.
pub(crate) struct Auth<'a> {
    pub(crate) user: &'a str,
    pub(crate) realm: &'a [u8],
    pub(crate) nonce: &'a [u8],
    pub(crate) key: &'a Key,
}

/// A TURN request to write.
pub(crate) enum Request {
    Allocate,
    ChannelBind {
        channel: u16,
        peer: SocketAddr,
    },
    CreatePermission {
        peer: SocketAddr,
    },
    /// Refresh with a LIFETIME, in seconds.
    Refresh {
        lifetime: u32,
    },
}

/// Writes `req` into `buf`; returns its length.
pub(crate) fn write(
    buf: &mut [u8],
    tid: TransactionId,
    req: &Request,
    auth: Option<&Auth<'_>>,
) -> Result<usize, String> {
    let method = match req {
        Request::Allocate => METHOD_ALLOCATE,
        Request::ChannelBind { .. } => METHOD_CHANNEL_BIND,
        Request::CreatePermission { .. } => METHOD_CREATE_PERMISSION,
        Request::Refresh { .. } => METHOD_REFRESH,
    };
    let e = |e: turnpike_stun::StunError| format!("writing a request: {e:?}");
    let mut w =
        MessageWriter::new(buf, MessageType::new(method, Class::Request), tid).map_err(e)?;
    match req {
        Request::Allocate => {
            w.attr(ATTR_REQUESTED_TRANSPORT, &[PROTO_UDP, 0, 0, 0])
                .map_err(e)?;
        }
        Request::ChannelBind { channel, peer } => {
            w.attr(
                ATTR_CHANNEL_NUMBER,
                &[(channel >> 8) as u8, *channel as u8, 0, 0],
            )
            .map_err(e)?;
            w.xor_address(ATTR_XOR_PEER_ADDRESS, *peer).map_err(e)?;
        }
        Request::CreatePermission { peer } => {
            w.xor_address(ATTR_XOR_PEER_ADDRESS, *peer).map_err(e)?;
        }
        Request::Refresh { lifetime } => {
            w.attr(ATTR_LIFETIME, &lifetime.to_be_bytes()).map_err(e)?;
        }
    }
    if let Some(a) = auth {
        w.attr(ATTR_USERNAME, a.user.as_bytes()).map_err(e)?;
        w.attr(ATTR_REALM, a.realm).map_err(e)?;
        w.attr(ATTR_NONCE, a.nonce).map_err(e)?;
        w.integrity(a.key).map_err(e)?;
    }
    Ok(w.finish())
}

/// The server's answer to a request.
pub(crate) enum Reply {
    Success {
        relay: Option<SocketAddr>,
    },
    /// 401 or 438: authenticate (again) with this realm and nonce.
    Challenge {
        realm: Vec<u8>,
        nonce: Vec<u8>,
    },
    Error {
        code: u16,
        reason: String,
    },
}

/// Reads a response to transaction `tid`; Ok(None) when `buf` is some other message.
pub(crate) fn read_reply(buf: &[u8], tid: &TransactionId) -> Result<Option<Reply>, String> {
    let msg = Message::parse(buf).map_err(|e| format!("malformed STUN response: {e:?}"))?;
    if &msg.transaction_id() != tid {
        return Ok(None);
    }
    match msg.class() {
        Class::Success => {
            let relay = match msg.get(ATTR_XOR_RELAYED_ADDRESS) {
                Some(v) => Some(
                    decode_xor_address(v, tid)
                        .map_err(|e| format!("bad XOR-RELAYED-ADDRESS: {e:?}"))?,
                ),
                None => None,
            };
            Ok(Some(Reply::Success { relay }))
        }
        Class::Error => {
            let ec = msg
                .get(ATTR_ERROR_CODE)
                .ok_or("error response without ERROR-CODE")?;
            let ec = decode_error_code(ec).map_err(|e| format!("bad ERROR-CODE: {e:?}"))?;
            if ec.code == 401 || ec.code == 438 {
                if let (Some(r), Some(n)) = (msg.get(ATTR_REALM), msg.get(ATTR_NONCE)) {
                    return Ok(Some(Reply::Challenge {
                        realm: r.to_vec(),
                        nonce: n.to_vec(),
                    }));
                }
            }
            Ok(Some(Reply::Error {
                code: ec.code,
                reason: ec.reason.to_string(),
            }))
        }
        _ => Ok(None),
    }
}

/// Bytes at the start of every payload: marker, allocation, step, spare, send time (ns).
pub(crate) const STAMP_LEN: usize = 24;
const MARKER: u32 = 0x544c_4431; // "TLD1"

/// A pre-built data frame of one allocation: ChannelData or a Send indication carrying a
/// `size`-byte payload, and where the payload starts in it.
pub(crate) struct Frame {
    pub(crate) bytes: Vec<u8>,
    pub(crate) payload_at: usize,
}

impl Frame {
    /// `pad` rounds ChannelData up to 4 bytes (required over TCP/TLS).
    pub(crate) fn new(
        send_indication: bool,
        channel: u16,
        peer: SocketAddr,
        size: usize,
        idx: u32,
        pad: bool,
    ) -> Result<Self, String> {
        let mut payload = vec![0u8; size];
        for (i, b) in payload.iter_mut().enumerate().skip(STAMP_LEN) {
            *b = i as u8;
        }
        stamp(&mut payload, idx, 0, 0);
        if send_indication {
            let mut buf = vec![0u8; size + 64];
            let tid: TransactionId = [0x54, 0x4c, 0x44, 0x31, 0, 0, 0, 0, 0, 0, 0, 0];
            let e = |e: turnpike_stun::StunError| format!("writing a Send indication: {e:?}");
            let mut w = MessageWriter::new(
                &mut buf,
                MessageType::new(METHOD_SEND, Class::Indication),
                tid,
            )
            .map_err(e)?;
            w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).map_err(e)?;
            let payload_at = w.len() + 4;
            w.attr(ATTR_DATA, &payload).map_err(e)?;
            let n = w.finish();
            buf.truncate(n);
            Ok(Self {
                bytes: buf,
                payload_at,
            })
        } else {
            let total = CHANNEL_DATA_HEADER_LEN + size;
            let total = if pad { (total + 3) & !3 } else { total };
            let mut buf = vec![0u8; total];
            buf[0..2].copy_from_slice(&channel.to_be_bytes());
            buf[2..4].copy_from_slice(&(size as u16).to_be_bytes());
            buf[4..4 + size].copy_from_slice(&payload);
            Ok(Self {
                bytes: buf,
                payload_at: CHANNEL_DATA_HEADER_LEN,
            })
        }
    }
}

/// Writes the stamp at the start of a payload.
#[inline]
pub(crate) fn stamp(p: &mut [u8], idx: u32, step: u32, ts_ns: u64) {
    p[0..4].copy_from_slice(&MARKER.to_be_bytes());
    p[4..8].copy_from_slice(&idx.to_be_bytes());
    p[8..12].copy_from_slice(&step.to_be_bytes());
    p[16..24].copy_from_slice(&ts_ns.to_be_bytes());
}

/// Reads a stamp: (allocation, step, send time) or None when the payload is not ours.
#[inline]
pub(crate) fn read_stamp(p: &[u8]) -> Option<(u32, u32, u64)> {
    if p.len() < STAMP_LEN || p[0..4] != MARKER.to_be_bytes() {
        return None;
    }
    let idx = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let step = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&p[16..24]);
    Some((idx, step, u64::from_be_bytes(ts)))
}

/// The payload of a frame the server relayed to a client: ChannelData, or a Data indication.
#[inline]
pub(crate) fn relayed_payload(frame: &[u8]) -> Option<&[u8]> {
    match frame.first()? >> 6 {
        1 => {
            if frame.len() < CHANNEL_DATA_HEADER_LEN {
                return None;
            }
            let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
            frame.get(CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len)
        }
        0 => {
            let msg = Message::parse(frame).ok()?;
            if msg.class() != Class::Indication {
                return None;
            }
            msg.get(ATTR_DATA)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip_and_foreign_payloads() {
        let mut p = [0u8; 100];
        stamp(&mut p, 7, 3, 123_456_789);
        assert_eq!(read_stamp(&p), Some((7, 3, 123_456_789)));
        assert_eq!(read_stamp(&p[..20]), None);
        p[0] ^= 1;
        assert_eq!(read_stamp(&p), None);
    }

    #[test]
    fn channel_frame_and_padding() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let f = Frame::new(false, 0x4001, peer, 101, 9, true).unwrap();
        assert_eq!(f.bytes.len(), 108); // 4 + 101 padded to 4 (stream)
        assert_eq!(&f.bytes[..4], &[0x40, 0x01, 0, 101]);
        let p = relayed_payload(&f.bytes).unwrap();
        assert_eq!(p.len(), 101);
        assert_eq!(read_stamp(p).map(|s| s.0), Some(9));
        let udp = Frame::new(false, 0x4001, peer, 101, 9, false).unwrap();
        assert_eq!(udp.bytes.len(), 105);
    }

    #[test]
    fn send_indication_carries_the_payload() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let f = Frame::new(true, 0, peer, 100, 4, false).unwrap();
        let msg = Message::parse(&f.bytes).unwrap();
        assert_eq!(msg.class(), Class::Indication);
        assert_eq!(msg.method(), METHOD_SEND);
        let data = msg.get(ATTR_DATA).unwrap();
        assert_eq!(data.len(), 100);
        assert_eq!(&f.bytes[f.payload_at..f.payload_at + 100], data);
        assert_eq!(
            relayed_payload(&f.bytes).map(read_stamp),
            Some(Some((4, 0, 0)))
        );
    }

    #[test]
    fn malformed_frames_are_not_payloads() {
        assert!(relayed_payload(&[]).is_none());
        assert!(relayed_payload(&[0x40, 0x00, 0x00]).is_none());
        assert!(relayed_payload(&[0x40, 0x00, 0x00, 0x10, 1, 2]).is_none()); // truncated
        assert!(relayed_payload(&[0x00, 0x01, 0x00, 0x00]).is_none()); // short STUN
        assert!(relayed_payload(&[0xff; 40]).is_none());
    }
}
