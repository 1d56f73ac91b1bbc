//! Minting time-limited credentials (the TURN REST API scheme coturn calls `use-auth-secret`).

use std::time::{SystemTime, UNIX_EPOCH};

use turnpike_proto::Credentials;

/// A minted credential.
pub(crate) struct Minted {
    pub username: String,
    pub password: String,
    pub expires: u64,
}

/// Mints `expiry:user` with `base64(HMAC-SHA1(secret, username))`.
pub(crate) fn mint(secret: &str, user: &str, ttl: u64) -> Minted {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires = now + ttl;
    let username = format!("{expires}:{user}");
    let password = Credentials::shared_secret_password(secret.as_bytes(), &username);
    Minted {
        username,
        password,
        expires,
    }
}
