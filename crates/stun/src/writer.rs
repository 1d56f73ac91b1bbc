//! Allocation-free STUN message writing into a caller-provided buffer.

use std::net::SocketAddr;

use crate::{
    attr::encode_xor_address, consts::*, integrity, pad4, ErrorCode, Key, MessageType, StunError,
    TransactionId, HEADER_LEN, MAGIC_COOKIE,
};

/// Writes one STUN message into `buf`. Attributes are appended in call order; the header length is
/// kept current so integrity and fingerprint can be added last. Every method fails with
/// [`StunError::BufferTooSmall`] rather than panicking when `buf` runs out.
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    tid: TransactionId,
}

impl<'b> MessageWriter<'b> {
    pub fn new(buf: &'b mut [u8], typ: MessageType, tid: TransactionId) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::BufferTooSmall);
        }
        buf[0..2].copy_from_slice(&typ.to_u16().to_be_bytes());
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&tid);
        Ok(MessageWriter {
            buf,
            len: HEADER_LEN,
            tid,
        })
    }

    fn set_len(&mut self, body: usize) {
        self.buf[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    }

    /// Reserves an attribute of `vlen` value bytes (plus padding) and returns the value slot.
    fn reserve(&mut self, typ: u16, vlen: usize) -> Result<&mut [u8], StunError> {
        let total = 4 + pad4(vlen);
        if vlen > u16::MAX as usize
            || self.len + total > self.buf.len()
            || self.len + total - HEADER_LEN > 0xFFFC
        {
            return Err(StunError::BufferTooSmall);
        }
        let p = self.len;
        self.buf[p..p + 2].copy_from_slice(&typ.to_be_bytes());
        self.buf[p + 2..p + 4].copy_from_slice(&(vlen as u16).to_be_bytes());
        for b in &mut self.buf[p + 4 + vlen..p + total] {
            *b = 0;
        }
        self.len += total;
        self.set_len(self.len - HEADER_LEN);
        Ok(&mut self.buf[p + 4..p + 4 + vlen])
    }

    /// Appends an attribute with a raw value.
    pub fn attr(&mut self, typ: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(self)
    }

    /// Appends a 32-bit attribute (LIFETIME and friends).
    pub fn attr_u32(&mut self, typ: u16, v: u32) -> Result<&mut Self, StunError> {
        self.attr(typ, &v.to_be_bytes())
    }

    /// Appends an XOR-*-ADDRESS attribute.
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let mut v = [0u8; 20];
        let n = encode_xor_address(addr, &self.tid, &mut v);
        self.attr(typ, &v[..n])
    }

    /// Appends a plain address attribute (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, ...).
    pub fn address(&mut self, typ: u16, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&addr.port().to_be_bytes());
        let n = match addr.ip() {
            std::net::IpAddr::V4(ip) => {
                v[1] = crate::ADDRESS_FAMILY_IPV4;
                v[4..8].copy_from_slice(&ip.octets());
                8
            }
            std::net::IpAddr::V6(ip) => {
                v[1] = crate::ADDRESS_FAMILY_IPV6;
                v[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        self.attr(typ, &v[..n])
    }

    /// Appends an ERROR-CODE (or ADDRESS-ERROR-CODE with `typ`) attribute.
    fn error_code_typed(
        &mut self,
        typ: u16,
        family: u8,
        code: u16,
        reason: &str,
    ) -> Result<&mut Self, StunError> {
        let r = reason.as_bytes();
        let slot = self.reserve(typ, 4 + r.len())?;
        slot[0] = family;
        slot[1] = 0;
        slot[2] = (code / 100) as u8;
        slot[3] = (code % 100) as u8;
        slot[4..].copy_from_slice(r);
        Ok(self)
    }

    /// Appends ERROR-CODE with the standard reason phrase.
    pub fn error_code(&mut self, code: ErrorCode) -> Result<&mut Self, StunError> {
        self.error_code_typed(ATTR_ERROR_CODE, 0, code.code(), code.reason())
    }

    /// Appends ADDRESS-ERROR-CODE (RFC 8656 §18.12) for `family`, as attribute `typ`
    /// ([`ATTR_ADDRESS_ERROR_CODE`], or the draft number for clients that used it).
    pub fn address_error_code(
        &mut self,
        typ: u16,
        family: u8,
        code: ErrorCode,
    ) -> Result<&mut Self, StunError> {
        self.error_code_typed(typ, family, code.code(), code.reason())
    }

    /// Appends UNKNOWN-ATTRIBUTES listing `attrs`.
    pub fn unknown_attributes(&mut self, attrs: &[u16]) -> Result<&mut Self, StunError> {
        let slot = self.reserve(ATTR_UNKNOWN_ATTRIBUTES, attrs.len() * 2)?;
        for (i, a) in attrs.iter().enumerate() {
            slot[2 * i..2 * i + 2].copy_from_slice(&a.to_be_bytes());
        }
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1 with `key`).
    pub fn integrity(&mut self, key: &Key) -> Result<&mut Self, StunError> {
        let pos = self.len;
        self.reserve(ATTR_MESSAGE_INTEGRITY, 20)?;
        let mac = integrity::hmac_sha1_adjusted(key.as_bytes(), self.buf, pos, pos + 24);
        self.buf[pos + 4..pos + 24].copy_from_slice(&mac);
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (full 32-byte HMAC-SHA256 with `key`).
    pub fn integrity_sha256(&mut self, key: &Key) -> Result<&mut Self, StunError> {
        let pos = self.len;
        self.reserve(ATTR_MESSAGE_INTEGRITY_SHA256, 32)?;
        let mac = integrity::hmac_sha256_adjusted(key.as_bytes(), self.buf, pos, pos + 36);
        self.buf[pos + 4..pos + 36].copy_from_slice(&mac);
        Ok(self)
    }

    /// Appends FINGERPRINT; must be the last attribute.
    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let pos = self.len;
        self.reserve(ATTR_FINGERPRINT, 4)?;
        let crc = integrity::fingerprint(&self.buf[..pos]);
        self.buf[pos + 4..pos + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self)
    }

    /// The message length so far (header included).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Finishes the message and returns its length.
    pub fn finish(self) -> usize {
        self.len
    }
}
