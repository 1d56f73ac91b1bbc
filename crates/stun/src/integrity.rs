//! Integrity and fingerprint computations (RFC 8489 §9.2.2, §14.5, §14.6, §14.7).
//!
//! The HMACs are computed over the message as it stood when the integrity attribute was added:
//! the header's length field is rewritten on the fly, so no copy of the message is made.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// Password algorithms of RFC 8489 §18.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithm {
    Md5,
    Sha256,
}

impl PasswordAlgorithm {
    pub const fn number(self) -> u16 {
        match self {
            Self::Md5 => 0x0001,
            Self::Sha256 => 0x0002,
        }
    }
    pub const fn from_number(n: u16) -> Option<Self> {
        match n {
            0x0001 => Some(Self::Md5),
            0x0002 => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// A long-term credential key: 16 bytes (MD5) or 32 bytes (SHA-256).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; 32],
    len: u8,
}

impl Key {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        if b.len() > 32 {
            return None;
        }
        let mut bytes = [0u8; 32];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self {
            bytes,
            len: b.len() as u8,
        })
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never print them.
        f.write_str("Key(..)")
    }
}

/// key = MD5(username ":" realm ":" password) (RFC 8489 §9.2.2, algorithm MD5).
pub fn long_term_key(username: &[u8], realm: &[u8], password: &[u8]) -> Key {
    let mut h = Md5::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    let d = h.finalize();
    Key::from_slice(&d).expect("an MD5 digest is 16 bytes, within Key's 32")
}

/// key = SHA-256(username ":" realm ":" password) (RFC 8489 §9.2.2, algorithm SHA-256).
pub fn long_term_key_sha256(username: &[u8], realm: &[u8], password: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    let d = h.finalize();
    Key::from_slice(&d).expect("a SHA-256 digest is 32 bytes, within Key's 32")
}

/// USERHASH = SHA-256(username ":" realm) (RFC 8489 §14.4).
pub fn userhash(username: &[u8], realm: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.finalize().into()
}

fn feed_adjusted<M: Mac>(mac: &mut M, raw: &[u8], attr_pos: usize, len_end: usize) {
    let len = (len_end - crate::HEADER_LEN) as u16;
    mac.update(&raw[0..2]);
    mac.update(&len.to_be_bytes());
    mac.update(&raw[4..attr_pos]);
}

/// HMAC-SHA1 over `raw[..attr_pos]` with the header length set to `len_end - 20`.
pub(crate) fn hmac_sha1_adjusted(
    key: &[u8],
    raw: &[u8],
    attr_pos: usize,
    len_end: usize,
) -> [u8; 20] {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    feed_adjusted(&mut mac, raw, attr_pos, len_end);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 over `raw[..attr_pos]` with the header length set to `len_end - 20`.
pub(crate) fn hmac_sha256_adjusted(
    key: &[u8],
    raw: &[u8],
    attr_pos: usize,
    len_end: usize,
) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    feed_adjusted(&mut mac, raw, attr_pos, len_end);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of `data` XOR 0x5354554e (RFC 8489 §14.7).
pub(crate) fn fingerprint(data: &[u8]) -> u32 {
    crc32fast::hash(data) ^ 0x5354_554E
}

/// Constant-time comparison of equal-length byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    d == 0
}
