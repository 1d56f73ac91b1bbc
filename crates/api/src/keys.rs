//! API keys and TURN passwords: generation, hashing, and derivation of long-term keys.
//!
//! Keys are 32 random bytes, base64url, with a kind prefix (`tpa_` admin, `tps_` tenant secret,
//! `tpp_` publishable, `tpk_`
//! a project's key). Only their SHA-256 is stored (the keys are random, so a fast hash does
//! not make guessing easier); they are shown once, at creation.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use turnpike_store::KeyKind;

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new key of `kind`.
pub fn new_key(kind: KeyKind) -> String {
    let p = match kind {
        KeyKind::Admin => "tpa_",
        KeyKind::Secret => "tps_",
        KeyKind::Publishable => "tpp_",
        KeyKind::Project => "tpk_",
    };
    format!("{p}{}", random_token(32))
}

/// What is stored of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The visible start of a key, for lists.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The two long-term keys (RFC 8489 §9.2.2) of `username` in `realm`.
pub fn long_term_keys(username: &str, realm: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
    let md5 =
        turnpike_stun::long_term_key(username.as_bytes(), realm.as_bytes(), password.as_bytes());
    let sha = turnpike_stun::long_term_key_sha256(
        username.as_bytes(),
        realm.as_bytes(),
        password.as_bytes(),
    );
    (md5.as_bytes().to_vec(), sha.as_bytes().to_vec())
}
