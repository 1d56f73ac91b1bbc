//! Typed encoders and decoders for attribute values that need more than a byte slice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{StunError, TransactionId, MAGIC_COOKIE};

pub const ADDRESS_FAMILY_IPV4: u8 = 0x01;
pub const ADDRESS_FAMILY_IPV6: u8 = 0x02;

/// Decodes a plain (MAPPED-ADDRESS style) address value.
pub fn decode_address(v: &[u8]) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttributeValue);
    }
    let port = u16::from_be_bytes([v[2], v[3]]);
    match (v[1], v.len()) {
        (ADDRESS_FAMILY_IPV4, 8) => Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])),
            port,
        )),
        (ADDRESS_FAMILY_IPV6, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&v[4..20]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => Err(StunError::BadAttributeValue),
    }
}

/// Decodes an XOR-*-ADDRESS value (RFC 8489 §14.2).
pub fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttributeValue);
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (v[1], v.len()) {
        (ADDRESS_FAMILY_IPV4, 8) => {
            let mut o = [0u8; 4];
            for i in 0..4 {
                o[i] = v[4 + i] ^ cookie[i];
            }
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
        }
        (ADDRESS_FAMILY_IPV6, 20) => {
            let mut o = [0u8; 16];
            for i in 0..16 {
                let k = if i < 4 { cookie[i] } else { tid[i - 4] };
                o[i] = v[4 + i] ^ k;
            }
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => Err(StunError::BadAttributeValue),
    }
}

/// Encodes an XOR-*-ADDRESS value into `out` (8 or 20 bytes); returns the length written.
pub fn encode_xor_address(addr: SocketAddr, tid: &TransactionId, out: &mut [u8; 20]) -> usize {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    out[0] = 0;
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = ADDRESS_FAMILY_IPV4;
            let o = ip.octets();
            for i in 0..4 {
                out[4 + i] = o[i] ^ cookie[i];
            }
            8
        }
        IpAddr::V6(ip) => {
            out[1] = ADDRESS_FAMILY_IPV6;
            let o = ip.octets();
            for i in 0..16 {
                let k = if i < 4 { cookie[i] } else { tid[i - 4] };
                out[4 + i] = o[i] ^ k;
            }
            20
        }
    }
}

/// A decoded ERROR-CODE value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// Decodes an ERROR-CODE value (RFC 8489 §14.8).
pub fn decode_error_code(v: &[u8]) -> Result<ErrorCode<'_>, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttributeValue);
    }
    let class = (v[2] & 0x07) as u16;
    let number = v[3] as u16;
    if !(3..=6).contains(&class) || number > 99 {
        return Err(StunError::BadAttributeValue);
    }
    let reason = std::str::from_utf8(&v[4..]).map_err(|_| StunError::BadAttributeValue)?;
    Ok(ErrorCode {
        code: class * 100 + number,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_roundtrip() {
        let tid = [7u8; 12];
        for a in ["192.0.2.1:32853", "[2001:db8::1]:9", "0.0.0.0:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut b = [0u8; 20];
            let n = encode_xor_address(a, &tid, &mut b);
            assert_eq!(decode_xor_address(&b[..n], &tid).unwrap(), a);
        }
        assert!(decode_xor_address(&[0, 1, 0], &tid).is_err());
        assert!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &tid).is_err());
    }
}
