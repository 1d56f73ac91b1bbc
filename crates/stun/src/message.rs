//! Zero-copy STUN message parsing.
//!
//! [`Message::parse`] validates the header and walks the attributes once, recording where
//! MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT sit. Attribute values are borrowed
//! from the input; nothing is allocated. Attributes after MESSAGE-INTEGRITY other than
//! MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored, as RFC 8489 §14.5 requires.

use crate::{consts::*, StunError, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// The class bits of a message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// A method and class, as packed into the 14-bit message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    pub method: u16,
    pub class: Class,
}

impl MessageType {
    pub const fn new(method: u16, class: Class) -> Self {
        Self { method, class }
    }

    /// Unpacks the 14-bit type field (RFC 8489 §5).
    pub const fn from_u16(t: u16) -> Self {
        let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
        let class = match ((t >> 7) & 0x2) | ((t >> 4) & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        Self { method, class }
    }

    /// Packs method and class into the 14-bit type field.
    pub const fn to_u16(self) -> u16 {
        let m = self.method & 0x0FFF;
        let c: u16 = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }
}

/// One attribute: its type and its value without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// A parsed, validated STUN message borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    typ: MessageType,
    /// End of the attributes the receiver must consider (everything after MESSAGE-INTEGRITY is
    /// ignored except MI-SHA256 and FINGERPRINT).
    considered_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

impl<'a> Message<'a> {
    /// Parses one STUN message. `buf` may be longer than the message (trailing bytes of a
    /// datagram are rejected by [`Message::parse_exact`]; stream framing trims first).
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::Truncated);
        }
        if buf[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
            return Err(StunError::BadMagicCookie);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if !len.is_multiple_of(4) {
            return Err(StunError::BadLength);
        }
        if buf.len() < HEADER_LEN + len {
            return Err(StunError::Truncated);
        }
        let raw = &buf[..HEADER_LEN + len];
        let typ = MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]]));
        let mut msg = Message {
            raw,
            typ,
            considered_end: raw.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        let mut pos = HEADER_LEN;
        while pos < raw.len() {
            if raw.len() - pos < 4 {
                return Err(StunError::BadAttributeLength);
            }
            if msg.fingerprint.is_some() {
                return Err(StunError::BadFingerprintPlacement);
            }
            let at = u16::from_be_bytes([raw[pos], raw[pos + 1]]);
            let alen = u16::from_be_bytes([raw[pos + 2], raw[pos + 3]]) as usize;
            let next = pos + 4 + crate::pad4(alen);
            if next > raw.len() {
                return Err(StunError::BadAttributeLength);
            }
            match at {
                ATTR_MESSAGE_INTEGRITY
                    if msg.integrity.is_none() && msg.integrity_sha256.is_none() =>
                {
                    if alen != 20 {
                        return Err(StunError::BadAttributeValue);
                    }
                    msg.integrity = Some(pos);
                    msg.considered_end = next;
                }
                ATTR_MESSAGE_INTEGRITY_SHA256 if msg.integrity_sha256.is_none() => {
                    if !(16..=32).contains(&alen) || !alen.is_multiple_of(4) {
                        return Err(StunError::BadAttributeValue);
                    }
                    msg.integrity_sha256 = Some(pos);
                    if msg.integrity.is_none() {
                        msg.considered_end = next;
                    }
                }
                ATTR_FINGERPRINT => {
                    if alen != 4 {
                        return Err(StunError::BadFingerprintPlacement);
                    }
                    msg.fingerprint = Some(pos);
                    if msg.integrity.is_none() && msg.integrity_sha256.is_none() {
                        msg.considered_end = pos;
                    }
                }
                _ => {}
            }
            pos = next;
        }
        Ok(msg)
    }

    /// Like [`Message::parse`] but rejects trailing bytes after the message (datagram use).
    pub fn parse_exact(buf: &'a [u8]) -> Result<Self, StunError> {
        let m = Self::parse(buf)?;
        if m.raw.len() != buf.len() {
            return Err(StunError::BadLength);
        }
        Ok(m)
    }

    pub fn typ(&self) -> MessageType {
        self.typ
    }
    pub fn method(&self) -> u16 {
        self.typ.method
    }
    pub fn class(&self) -> Class {
        self.typ.class
    }
    /// The whole message as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
    pub fn transaction_id(&self) -> TransactionId {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.raw[8..20]);
        t
    }
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }
    pub fn has_integrity_sha256(&self) -> bool {
        self.integrity_sha256.is_some()
    }
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// The attributes a receiver must consider, in order (those after MESSAGE-INTEGRITY are
    /// skipped, and the integrity and fingerprint attributes themselves are included).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            raw: &self.raw[..self.considered_end],
            pos: HEADER_LEN,
        }
    }

    /// The value of the first attribute of type `typ`, if any.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// Every attribute of type `typ` (e.g. several XOR-PEER-ADDRESS in CreatePermission).
    pub fn get_all(&self, typ: u16) -> impl Iterator<Item = &'a [u8]> {
        self.attributes()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value)
    }

    /// The first comprehension-required attribute not in `known`, written into `out`; returns how
    /// many unknown ones were found (at most `out.len()` are recorded).
    pub fn unknown_required(&self, known: &[u16], out: &mut [u16]) -> usize {
        let mut n = 0;
        for a in self.attributes() {
            if is_comprehension_required(a.typ) && !known.contains(&a.typ) {
                if n < out.len() {
                    out[n] = a.typ;
                }
                n += 1;
            }
        }
        n.min(out.len())
    }

    /// Verifies the FINGERPRINT attribute if present. Returns `Ok(true)` when it is present and
    /// right, `Ok(false)` when absent.
    pub fn check_fingerprint(&self) -> Result<bool, StunError> {
        let Some(pos) = self.fingerprint else {
            return Ok(false);
        };
        let got = u32::from_be_bytes([
            self.raw[pos + 4],
            self.raw[pos + 5],
            self.raw[pos + 6],
            self.raw[pos + 7],
        ]);
        if crate::integrity::fingerprint(&self.raw[..pos]) == got {
            Ok(true)
        } else {
            Err(StunError::FingerprintMismatch)
        }
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY, with `key`. Returns
    /// false when neither is present or the HMAC does not match (compared in constant time).
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        if let Some(pos) = self.integrity_sha256 {
            let alen = u16::from_be_bytes([self.raw[pos + 2], self.raw[pos + 3]]) as usize;
            let mac = crate::integrity::hmac_sha256_adjusted(key, self.raw, pos, pos + 4 + alen);
            return crate::integrity::ct_eq(&mac[..alen], &self.raw[pos + 4..pos + 4 + alen]);
        }
        if let Some(pos) = self.integrity {
            let mac = crate::integrity::hmac_sha1_adjusted(key, self.raw, pos, pos + 24);
            return crate::integrity::ct_eq(&mac, &self.raw[pos + 4..pos + 24]);
        }
        false
    }
}

/// Iterator over a message's attributes.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;
    fn next(&mut self) -> Option<Attribute<'a>> {
        // Bounds were validated by `Message::parse`; the checks here only keep the iterator total.
        if self.raw.len().saturating_sub(self.pos) < 4 {
            return None;
        }
        let p = self.pos;
        let typ = u16::from_be_bytes([self.raw[p], self.raw[p + 1]]);
        let len = u16::from_be_bytes([self.raw[p + 2], self.raw[p + 3]]) as usize;
        let end = p + 4 + len;
        if end > self.raw.len() {
            return None;
        }
        self.pos = p + 4 + crate::pad4(len);
        Some(Attribute {
            typ,
            value: &self.raw[p + 4..end],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_roundtrip() {
        for method in [
            METHOD_BINDING,
            METHOD_ALLOCATE,
            METHOD_CHANNEL_BIND,
            METHOD_CONNECTION_ATTEMPT,
            0xFFF,
        ] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let t = MessageType::new(method, class);
                assert_eq!(MessageType::from_u16(t.to_u16()), t);
            }
        }
        assert_eq!(
            MessageType::new(METHOD_BINDING, Class::Request).to_u16(),
            0x0001
        );
        assert_eq!(
            MessageType::new(METHOD_BINDING, Class::Success).to_u16(),
            0x0101
        );
        assert_eq!(
            MessageType::new(METHOD_BINDING, Class::Error).to_u16(),
            0x0111
        );
        assert_eq!(
            MessageType::new(METHOD_ALLOCATE, Class::Request).to_u16(),
            0x0003
        );
        assert_eq!(
            MessageType::new(METHOD_SEND, Class::Indication).to_u16(),
            0x0016
        );
        assert_eq!(
            MessageType::new(METHOD_DATA, Class::Indication).to_u16(),
            0x0017
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            Message::parse(&[0u8; 10]).unwrap_err(),
            StunError::Truncated
        );
        let mut h = [0u8; 20];
        h[0] = 0x40;
        assert_eq!(Message::parse(&h).unwrap_err(), StunError::NotStun);
        h[0] = 0;
        assert_eq!(Message::parse(&h).unwrap_err(), StunError::BadMagicCookie);
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[3] = 2;
        assert_eq!(Message::parse(&h).unwrap_err(), StunError::BadLength);
        h[3] = 4;
        assert_eq!(Message::parse(&h).unwrap_err(), StunError::Truncated);
        let mut m = h.to_vec();
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
        m[3] = 4;
        assert_eq!(
            Message::parse(&m).unwrap_err(),
            StunError::BadAttributeLength
        );
    }
}
