//! Typed decoders for attribute values (one per attribute, each checking the RFC's length and
//! layout), and the encoders that need more than a byte slice. A decoder either returns the
//! value or [`StunError::BadAttributeValue`]; what a bad value means for the request (400, 440,
//! or ignoring it) is the caller's decision.

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

/// A decoded ERROR-CODE value: the number (known or not) and the sender's reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCodeValue<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// Decodes an ERROR-CODE value (RFC 8489 §14.8).
pub fn decode_error_code(v: &[u8]) -> Result<ErrorCodeValue<'_>, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttributeValue);
    }
    let class = (v[2] & 0x07) as u16;
    let number = v[3] as u16;
    if !(3..=6).contains(&class) || number > 99 {
        return Err(StunError::BadAttributeValue);
    }
    let reason = std::str::from_utf8(&v[4..]).map_err(|_| StunError::BadAttributeValue)?;
    Ok(ErrorCodeValue {
        code: class * 100 + number,
        reason,
    })
}

/// An address family of REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.5,
/// §18.6, RFC 6156).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

/// The flags of CHANGE-REQUEST (RFC 5780 §7.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeRequest {
    pub change_ip: bool,
    pub change_port: bool,
}

fn exact<const N: usize>(v: &[u8]) -> Result<[u8; N], StunError> {
    v.try_into().map_err(|_| StunError::BadAttributeValue)
}

/// LIFETIME (RFC 8656 §18.4): seconds, 32 bits.
pub fn decode_lifetime(v: &[u8]) -> Result<u32, StunError> {
    Ok(u32::from_be_bytes(exact(v)?))
}

/// REQUESTED-TRANSPORT (RFC 8656 §18.11): the IANA protocol number, then 3 reserved bytes.
pub fn decode_requested_transport(v: &[u8]) -> Result<u8, StunError> {
    Ok(exact::<4>(v)?[0])
}

/// CHANNEL-NUMBER (RFC 8656 §18.2): the number, then 2 reserved bytes.
pub fn decode_channel_number(v: &[u8]) -> Result<u16, StunError> {
    let b = exact::<4>(v)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// EVEN-PORT (RFC 8656 §18.8): one byte whose high bit R asks to reserve the next port.
pub fn decode_even_port(v: &[u8]) -> Result<bool, StunError> {
    match v.first() {
        Some(b) => Ok(b & 0x80 != 0),
        None => Err(StunError::BadAttributeValue),
    }
}

/// RESERVATION-TOKEN (RFC 8656 §18.9): 8 bytes.
pub fn decode_reservation_token(v: &[u8]) -> Result<u64, StunError> {
    Ok(u64::from_be_bytes(exact(v)?))
}

/// REQUESTED- or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.5, §18.6): the family byte, then 3
/// reserved bytes. `Ok(None)` for a family number that is neither IPv4 nor IPv6.
pub fn decode_address_family(v: &[u8]) -> Result<Option<AddressFamily>, StunError> {
    Ok(match exact::<4>(v)?[0] {
        ADDRESS_FAMILY_IPV4 => Some(AddressFamily::Ipv4),
        ADDRESS_FAMILY_IPV6 => Some(AddressFamily::Ipv6),
        _ => None,
    })
}

/// CHANGE-REQUEST (RFC 5780 §7.2): 32 bits of flags, "change IP" 0x4 and "change port" 0x2.
pub fn decode_change_request(v: &[u8]) -> Result<ChangeRequest, StunError> {
    let flags = exact::<4>(v)?[3];
    Ok(ChangeRequest {
        change_ip: flags & 0x04 != 0,
        change_port: flags & 0x02 != 0,
    })
}

/// RESPONSE-PORT (RFC 5780 §7.5): the port, then 2 padding bytes.
pub fn decode_response_port(v: &[u8]) -> Result<u16, StunError> {
    let b = exact::<4>(v)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// CONNECTION-ID (RFC 6062 §6.2.1): 32 bits.
pub fn decode_connection_id(v: &[u8]) -> Result<u32, StunError> {
    Ok(u32::from_be_bytes(exact(v)?))
}

/// PASSWORD-ALGORITHM (RFC 8489 §14.12): the algorithm number, the parameters' length and the
/// parameters. Returns the number.
pub fn decode_password_algorithm(v: &[u8]) -> Result<u16, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttributeValue);
    }
    let params = u16::from_be_bytes([v[2], v[3]]) as usize;
    if v.len() != 4 + params {
        return Err(StunError::BadAttributeValue);
    }
    Ok(u16::from_be_bytes([v[0], v[1]]))
}

/// USERHASH (RFC 8489 §14.4): 32 bytes.
pub fn decode_userhash(v: &[u8]) -> Result<[u8; 32], StunError> {
    exact(v)
}

/// USERNAME (RFC 8489 §14.3): UTF-8, fewer than 509 bytes.
pub fn decode_username(v: &[u8]) -> Result<&str, StunError> {
    if v.len() >= 509 {
        return Err(StunError::BadAttributeValue);
    }
    std::str::from_utf8(v).map_err(|_| StunError::BadAttributeValue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime() {
        assert_eq!(decode_lifetime(&[0, 0, 2, 0x58]), Ok(600));
        assert!(decode_lifetime(&[0, 0, 2]).is_err());
    }

    #[test]
    fn requested_transport() {
        assert_eq!(decode_requested_transport(&[17, 0, 0, 0]), Ok(17));
        assert!(decode_requested_transport(&[17]).is_err());
    }

    #[test]
    fn channel_number() {
        assert_eq!(decode_channel_number(&[0x40, 0x01, 0, 0]), Ok(0x4001));
        assert!(decode_channel_number(&[0x40, 0x01]).is_err());
    }

    #[test]
    fn even_port() {
        assert_eq!(decode_even_port(&[0x80]), Ok(true));
        assert_eq!(decode_even_port(&[0x00, 0, 0, 0]), Ok(false));
        assert!(decode_even_port(&[]).is_err());
    }

    #[test]
    fn reservation_token() {
        assert_eq!(
            decode_reservation_token(&[0, 0, 0, 0, 0, 0, 1, 2]),
            Ok(0x102)
        );
        assert!(decode_reservation_token(&[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn address_family() {
        assert_eq!(
            decode_address_family(&[1, 0, 0, 0]),
            Ok(Some(AddressFamily::Ipv4))
        );
        assert_eq!(
            decode_address_family(&[2, 0, 0, 0]),
            Ok(Some(AddressFamily::Ipv6))
        );
        assert_eq!(decode_address_family(&[3, 0, 0, 0]), Ok(None));
        assert!(decode_address_family(&[1]).is_err());
    }

    #[test]
    fn change_request() {
        let both = ChangeRequest {
            change_ip: true,
            change_port: true,
        };
        assert_eq!(decode_change_request(&[0, 0, 0, 6]), Ok(both));
        assert_eq!(
            decode_change_request(&[0, 0, 0, 0]),
            Ok(ChangeRequest::default())
        );
        assert!(decode_change_request(&[6]).is_err());
    }

    #[test]
    fn response_port() {
        assert_eq!(decode_response_port(&[0x13, 0x88, 0, 0]), Ok(5000));
        assert!(decode_response_port(&[0x13, 0x88]).is_err());
    }

    #[test]
    fn connection_id() {
        assert_eq!(decode_connection_id(&[0, 0, 1, 0]), Ok(256));
        assert!(decode_connection_id(&[0, 0, 1]).is_err());
    }

    #[test]
    fn password_algorithm() {
        assert_eq!(decode_password_algorithm(&[0, 2, 0, 0]), Ok(2));
        assert_eq!(decode_password_algorithm(&[0, 1, 0, 2, 9, 9]), Ok(1));
        assert!(decode_password_algorithm(&[0, 1, 0, 2]).is_err());
        assert!(decode_password_algorithm(&[0, 1]).is_err());
    }

    #[test]
    fn userhash_and_username() {
        assert_eq!(decode_userhash(&[7; 32]), Ok([7; 32]));
        assert!(decode_userhash(&[7; 31]).is_err());
        assert_eq!(decode_username(b"alice"), Ok("alice"));
        assert!(decode_username(&[0xff, 0xfe]).is_err());
        assert!(decode_username(&[b'a'; 509]).is_err());
    }

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
