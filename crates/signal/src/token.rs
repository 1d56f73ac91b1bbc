//! Join tokens: what a tenant's back end mints (through the REST API) so one user may join one
//! room for a while. Stateless: `base64url(claims JSON) "." base64url(HMAC-SHA256(secret,
//! first part))`, signed with the tenant's newest shared secret and checked against all its live
//! secrets (so rotation with overlap works, and every node sharing the database can verify).
//! Tokens are credentials: never logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    pub tid: String,
    /// Room name (scoped to the tenant).
    pub room: String,
    /// The participant's identity, shown to the others.
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// May send targeted messages.
    #[serde(default = "yes")]
    pub send: bool,
    /// May broadcast to the room.
    #[serde(default = "yes")]
    pub broadcast: bool,
}

fn yes() -> bool {
    true
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let sig = B64.encode(mac(secret, &payload));
    format!("{payload}.{sig}")
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

/// The claims, unverified (to find the tenant whose secrets verify it).
pub fn peek(token: &str) -> Result<Claims, TokenError> {
    let (payload, _) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let json = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// Verifies with any of `secrets` and checks expiry at `now`.
pub fn verify(token: &str, secrets: &[Vec<u8>], now: i64) -> Result<Claims, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Malformed);
    }
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let ok = secrets.iter().any(|s| {
        let want = mac(s, payload);
        want.len() == sig.len() && want.iter().zip(&sig).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    });
    if !ok {
        return Err(TokenError::BadSignature);
    }
    let claims = peek(token)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            tid: "ten_1".into(),
            room: "r".into(),
            sub: "alice".into(),
            exp,
            send: true,
            broadcast: false,
        }
    }

    #[test]
    fn round_trip_rotation_tamper_expiry() {
        let t = mint(b"new", &claims(100));
        assert_eq!(
            verify(&t, &[b"old".to_vec(), b"new".to_vec()], 50),
            Ok(claims(100))
        );
        assert_eq!(
            verify(&t, &[b"old".to_vec()], 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&t, &[b"new".to_vec()], 100),
            Err(TokenError::Expired)
        );
        let (p, s) = t.split_once('.').unwrap();
        let forged = B64.encode(
            serde_json::to_vec(&Claims {
                room: "other".into(),
                ..claims(100)
            })
            .unwrap(),
        );
        assert_eq!(
            verify(&format!("{forged}.{s}"), &[b"new".to_vec()], 50),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(p, &[b"new".to_vec()], 50),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify("x.y.z", &[b"new".to_vec()], 50),
            Err(TokenError::Malformed)
        );
    }
}
