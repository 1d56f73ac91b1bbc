//! Stateless nonces (RFC 8489 §9.2): the server keeps no per-client state to validate them.
//!
//! Form: `obMatJos2` + 4 base64 characters of security-feature bits + 8 hex digits of the unix
//! time it was minted + 16 hex digits of HMAC-SHA1(secret, features || time || client IP). A
//! nonce is valid for the client IP it was minted for, until `minted + lifetime`; its feature
//! bits are under the MAC, so a client (or a man in the middle) cannot flip them and keep the
//! nonce valid (RFC 8489 §9.2's bid-down protection rests on them).

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The RFC 8489 nonce cookie.
pub const NONCE_COOKIE: &str = "obMatJos2";

/// Security feature bits (RFC 8489 §18.1), most significant bit first: bit 0 "password
/// algorithms", bit 1 "username anonymity".
pub fn feature_chars(password_algorithms: bool, username_anonymity: bool) -> [u8; 4] {
    let b0 = (if password_algorithms { 0x80u8 } else { 0 })
        | (if username_anonymity { 0x40 } else { 0 });
    // base64 of the three bytes [b0, 0, 0]: only the first two characters depend on b0.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    [
        ALPHABET[(b0 >> 2) as usize],
        ALPHABET[((b0 & 0x03) << 4) as usize],
        b'A',
        b'A',
    ]
}

/// Whom a nonce is good for.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// The client address it was minted for.
    Client(IpAddr),
    /// Any address, for [`PORTABLE_LIFETIME_SECS`]: the nonce of a signed 300 Try Alternate,
    /// which the client takes to another node of the fleet, where its address may differ
    /// (another interface, another NAT mapping).
    Anywhere,
}

/// How long a portable nonce (see [`mint_portable`]) is good for: long enough to follow a
/// redirect; later requests get a bound nonce with the next 438.
pub const PORTABLE_LIFETIME_SECS: u64 = 60;

fn mac(secret: &[u8; 32], features: &[u8], minted: u32, bound: Bound) -> [u8; 8] {
    let mut m =
        <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    m.update(features);
    m.update(&minted.to_be_bytes());
    match bound {
        Bound::Client(ip) => match ip.to_canonical() {
            IpAddr::V4(v4) => m.update(&v4.octets()),
            IpAddr::V6(v6) => m.update(&v6.octets()),
        },
        // No address is 3 bytes long: this input cannot collide with a bound one.
        Bound::Anywhere => m.update(b"any"),
    }
    let out = m.finalize().into_bytes();
    let mut r = [0u8; 8];
    r.copy_from_slice(&out[..8]);
    r
}

/// Length of a nonce minted here.
pub const NONCE_LEN: usize = 9 + 4 + 8 + 16;

/// Mints a nonce for `ip` at unix time `now_unix`.
pub fn mint(secret: &[u8; 32], features: [u8; 4], now_unix: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
    mint_for(secret, features, now_unix, Bound::Client(ip))
}

/// Mints a nonce good from any address for [`PORTABLE_LIFETIME_SECS`] (see [`Bound::Anywhere`]).
pub fn mint_portable(secret: &[u8; 32], features: [u8; 4], now_unix: u64) -> [u8; NONCE_LEN] {
    mint_for(secret, features, now_unix, Bound::Anywhere)
}

fn mint_for(secret: &[u8; 32], features: [u8; 4], now_unix: u64, bound: Bound) -> [u8; NONCE_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; NONCE_LEN];
    out[..9].copy_from_slice(NONCE_COOKIE.as_bytes());
    out[9..13].copy_from_slice(&features);
    let minted = now_unix as u32;
    for (i, b) in minted.to_be_bytes().iter().enumerate() {
        out[13 + 2 * i] = HEX[(b >> 4) as usize];
        out[14 + 2 * i] = HEX[(b & 15) as usize];
    }
    for (i, b) in mac(secret, &features, minted, bound).iter().enumerate() {
        out[21 + 2 * i] = HEX[(b >> 4) as usize];
        out[22 + 2 * i] = HEX[(b & 15) as usize];
    }
    out
}

fn unhex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let h = (s[2 * i] as char).to_digit(16)?;
        let l = (s[2 * i + 1] as char).to_digit(16)?;
        *o = (h * 16 + l) as u8;
    }
    Some(())
}

/// Whether `nonce` was minted with `secret` (here, or by another node of the fleet) for `ip`
/// and is younger than `lifetime_secs`; with `portable_ok` (an Allocate: what a client sends
/// first after a redirect), also one minted portable and younger than both `lifetime_secs`
/// and [`PORTABLE_LIFETIME_SECS`]. Any other request with a portable nonce gets 438 and a
/// bound nonce, so a replay of a client's later requests from elsewhere fails as before.
pub fn verify(
    secret: &[u8; 32],
    nonce: &[u8],
    now_unix: u64,
    lifetime_secs: u64,
    ip: IpAddr,
    portable_ok: bool,
) -> bool {
    verify_for(secret, nonce, now_unix, lifetime_secs, Bound::Client(ip))
        || (portable_ok
            && verify_for(
                secret,
                nonce,
                now_unix,
                lifetime_secs.min(PORTABLE_LIFETIME_SECS),
                Bound::Anywhere,
            ))
}

fn verify_for(
    secret: &[u8; 32],
    nonce: &[u8],
    now_unix: u64,
    lifetime_secs: u64,
    bound: Bound,
) -> bool {
    if nonce.len() != NONCE_LEN || !nonce.starts_with(NONCE_COOKIE.as_bytes()) {
        return false;
    }
    let mut ts = [0u8; 4];
    let mut got = [0u8; 8];
    if unhex(&nonce[13..21], &mut ts).is_none() || unhex(&nonce[21..37], &mut got).is_none() {
        return false;
    }
    let minted = u32::from_be_bytes(ts);
    let want = mac(secret, &nonce[9..13], minted, bound);
    let mut d = 0u8;
    for (a, b) in want.iter().zip(&got) {
        d |= a ^ b;
    }
    if d != 0 {
        return false;
    }
    // Compare in the u32 time domain the nonce was minted in.
    let age = (now_unix as u32).wrapping_sub(minted) as u64;
    age < lifetime_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_verify() {
        let s = [9u8; 32];
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let n = mint(&s, feature_chars(true, false), 1_000_000, ip);
        assert!(n.starts_with(b"obMatJos2gAAA"));
        assert!(verify(&s, &n, 1_000_000, 600, ip, true));
        assert!(verify(&s, &n, 1_000_599, 600, ip, true));
        assert!(!verify(&s, &n, 1_000_600, 600, ip, true));
        assert!(!verify(
            &s,
            &n,
            1_000_000,
            600,
            "192.0.2.8".parse().unwrap(),
            true
        ));
        assert!(!verify(&[8u8; 32], &n, 1_000_000, 600, ip, true));
        let mut bad = n;
        bad[30] = b'z';
        assert!(!verify(&s, &bad, 1_000_000, 600, ip, true));
        // The feature bits are under the MAC: clearing "password algorithms" (a bid-down to
        // MD5) makes the nonce invalid.
        let mut downgraded = n;
        downgraded[9..13].copy_from_slice(&feature_chars(false, false));
        assert!(!verify(&s, &downgraded, 1_000_000, 600, ip, true));
        assert!(!verify(&s, b"short", 1_000_000, 600, ip, true));
    }

    /// A portable nonce is good from any address, for a minute at most; a bound one is not
    /// portable.
    #[test]
    fn portable_nonces_work_from_anywhere_for_a_minute() {
        let s = [9u8; 32];
        let n = mint_portable(&s, feature_chars(true, false), 1_000_000);
        for ip in ["192.0.2.7", "198.51.100.1", "2001:db8::1"] {
            assert!(verify(&s, &n, 1_000_059, 600, ip.parse().unwrap(), true));
        }
        assert!(!verify(
            &s,
            &n,
            1_000_060,
            600,
            "192.0.2.7".parse().unwrap(),
            true
        ));
        assert!(!verify(
            &s,
            &n,
            1_000_010,
            5,
            "192.0.2.7".parse().unwrap(),
            true
        ));
        // Only where the caller allows it (an Allocate).
        assert!(!verify(
            &s,
            &n,
            1_000_001,
            600,
            "192.0.2.7".parse().unwrap(),
            false
        ));
        assert!(!verify(
            &[8u8; 32],
            &n,
            1_000_000,
            600,
            "192.0.2.7".parse().unwrap(),
            true
        ));
    }
}
