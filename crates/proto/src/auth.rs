//! Long-term credential authentication (RFC 8489 §9.2, RFC 8656 §7.2) with static users and
//! time-limited shared-secret credentials (the "TURN REST API": username `expiry:user`, password
//! `base64(HMAC-SHA1(secret, username))`; several secrets accepted at once for rotation).
//!
//! This module decides whether a request's MESSAGE-INTEGRITY(-SHA256) is right and which key the
//! response is signed with. It does not write responses.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use turnpike_stun::*;

use crate::directory::{parse_ephemeral, Account, Directory};
use crate::error::TurnError;

/// A static user's secret: the plain password, or the precomputed MD5 key (as `turnadmin -k`
/// prints it), which allows only the MD5 password algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    Password(String),
    Md5Key(Key),
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserSecret(..)")
    }
}

/// The credential sources the relay accepts.
#[derive(Clone, Default)]
pub struct Credentials {
    users: HashMap<String, UserSecret>,
    shared_secrets: Vec<Vec<u8>>,
    /// USERHASH -> username, for the realm given to [`Credentials::for_realm`].
    userhashes: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .field("shared_secrets", &self.shared_secrets.len())
            .finish()
    }
}

/// What a successful authentication yields.
#[derive(Debug, Clone)]
pub struct AuthInfo {
    pub username: String,
    pub key: Key,
    /// The request used MESSAGE-INTEGRITY-SHA256, so the response does too.
    pub sha256: bool,
    /// The control-plane account (stored or ephemeral credentials); `None` for static users.
    pub account: Option<std::sync::Arc<crate::directory::Account>>,
    /// The credential is valid while the unix time is below this (`None`: it does not expire).
    /// Authentication succeeds past it: whether an expired credential may still act (a live
    /// allocation within `credential_grace`) is the server's decision, made in one place.
    pub expires_at: Option<u64>,
}

impl AuthInfo {
    /// Whether the credential has expired at `now_unix`.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expires_at.is_some_and(|e| now_unix >= e)
    }
}

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_user(&mut self, name: impl Into<String>, secret: UserSecret) {
        self.users.insert(name.into(), secret);
    }

    pub fn add_shared_secret(&mut self, secret: impl Into<Vec<u8>>) {
        self.shared_secrets.push(secret.into());
    }

    /// Precomputes USERHASH values for `realm`.
    pub fn for_realm(mut self, realm: &str) -> Self {
        self.userhashes = self
            .users
            .keys()
            .map(|u| (userhash(u.as_bytes(), realm.as_bytes()), u.clone()))
            .collect();
        self
    }

    pub fn has_static_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether a USERHASH can name every user these credentials accept: static users only
    /// (a shared-secret username is not a finite list, so its hash cannot be looked up).
    pub fn userhash_for_all(&self) -> bool {
        !self.users.is_empty() && self.shared_secrets.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.shared_secrets.is_empty()
    }

    /// The expiry (unix seconds) encoded in a shared-secret username: `expiry:user`, `expiry`, or
    /// the older `user:expiry`.
    pub fn username_expiry(username: &str) -> Option<u64> {
        let mut parts = username.splitn(2, ':');
        let first = parts.next()?;
        if let Ok(t) = first.parse::<u64>() {
            return Some(t);
        }
        username.rsplit(':').next()?.parse::<u64>().ok()
    }

    /// The password a shared secret gives `username`.
    pub fn shared_secret_password(secret: &[u8], username: &str) -> String {
        let mut m =
            <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        m.update(username.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    }

    /// Authenticates `msg` (whose NONCE was already checked) for `realm` at `now_unix`: static
    /// users first, then the control plane's stored and ephemeral credentials in `dir`, then the
    /// configured shared secrets.
    pub fn authenticate(
        &self,
        msg: &Message<'_>,
        realm: &str,
        now_unix: u64,
        dir: &Directory,
    ) -> Result<AuthInfo, TurnError> {
        let username: String = if let Some(u) = msg.get(ATTR_USERNAME) {
            std::str::from_utf8(u)
                .map_err(|_| TurnError::BadRequest("USERNAME is not UTF-8"))?
                .to_string()
        } else if let Some(h) = msg.get(ATTR_USERHASH) {
            let h: [u8; 32] = h
                .try_into()
                .map_err(|_| TurnError::BadRequest("USERHASH must be 32 bytes"))?;
            self.userhashes
                .get(&h)
                .cloned()
                .ok_or(TurnError::Unauthorized("unknown user"))?
        } else {
            return Err(TurnError::BadRequest("USERNAME missing"));
        };
        let algorithm = password_algorithm(msg)?;
        let r = realm.as_bytes();
        let derive = |password: &[u8]| match algorithm {
            PasswordAlgorithm::Md5 => long_term_key(username.as_bytes(), r, password),
            PasswordAlgorithm::Sha256 => long_term_key_sha256(username.as_bytes(), r, password),
        };
        let sha256 = msg.has_integrity_sha256();
        if let Some(secret) = self.users.get(&username) {
            let key = match (secret, algorithm) {
                (UserSecret::Password(p), _) => derive(p.as_bytes()),
                (UserSecret::Md5Key(k), PasswordAlgorithm::Md5) => *k,
                (UserSecret::Md5Key(_), PasswordAlgorithm::Sha256) => {
                    return Err(TurnError::Unauthorized(
                        "SHA-256 password algorithm needs a plain password",
                    ))
                }
            };
            if msg.check_integrity(key.as_bytes()) {
                return Ok(AuthInfo {
                    username,
                    key,
                    sha256,
                    account: None,
                    expires_at: None,
                });
            }
            return Err(TurnError::Unauthorized("wrong password"));
        }
        if let Some(r) = authenticate_directory(dir, msg, &username, &derive, algorithm, now_unix) {
            return r.map(|d| AuthInfo {
                username,
                key: d.key,
                sha256,
                account: Some(d.account),
                expires_at: d.expires_at,
            });
        }
        if !self.shared_secrets.is_empty() {
            let Some(expiry) = Self::username_expiry(&username) else {
                return Err(TurnError::Unauthorized("unknown user"));
            };
            for secret in &self.shared_secrets {
                let password = Self::shared_secret_password(secret, &username);
                let key = derive(password.as_bytes());
                if msg.check_integrity(key.as_bytes()) {
                    // `expiry:user` is valid through its expiry second.
                    return Ok(AuthInfo {
                        username,
                        key,
                        sha256,
                        account: None,
                        expires_at: Some(expiry.saturating_add(1)),
                    });
                }
            }
            return Err(TurnError::Unauthorized("wrong password"));
        }
        Err(TurnError::Unauthorized("unknown user"))
    }
}

/// A control-plane credential that checked out.
struct DirectoryAuth {
    key: Key,
    account: Arc<Account>,
    expires_at: Option<u64>,
}

/// The control plane's credentials: a stored credential by username, or an ephemeral one
/// (`expiry:scope:user`) signed with its tenant's shared secret. `None`: not a directory user.
fn authenticate_directory(
    dir: &Directory,
    msg: &Message<'_>,
    username: &str,
    derive: &dyn Fn(&[u8]) -> Key,
    algorithm: PasswordAlgorithm,
    now_unix: u64,
) -> Option<Result<DirectoryAuth, TurnError>> {
    let candidates = dir.stored_users(username);
    if !candidates.is_empty() {
        // The same name in several tenants: the key that checks out says whose it is.
        let found = candidates.iter().find_map(|u| {
            let key = match algorithm {
                PasswordAlgorithm::Md5 => u.key_md5,
                PasswordAlgorithm::Sha256 => u.key_sha256,
            };
            msg.check_integrity(key.as_bytes())
                .then_some((u.clone(), key))
        });
        let Some((u, key)) = found else {
            return Some(Err(TurnError::Unauthorized("wrong password")));
        };
        if !u.enabled {
            return Some(Err(TurnError::Unauthorized("credential disabled")));
        }
        if dir.load().suspended_tenants.contains(&*u.account.tenant_id) {
            return Some(Err(TurnError::Unauthorized("tenant suspended")));
        }
        // A stored credential is valid before its `expires_at`.
        return Some(Ok(DirectoryAuth {
            key,
            account: u.account.clone(),
            expires_at: u.expires_at,
        }));
    }
    let (expiry, scope, user) = parse_ephemeral(username)?;
    let (tenant, credential) = if scope.starts_with("cred_") {
        let (tenant, enabled) = dir.credential(scope)?;
        if !enabled {
            return Some(Err(TurnError::Unauthorized("credential disabled")));
        }
        (tenant, Some(Arc::<str>::from(scope)))
    } else {
        (Arc::<str>::from(scope), None)
    };
    let snap = dir.load();
    let secrets = snap.tenant_secrets.get(&*tenant)?;
    for secret in secrets {
        let password = Credentials::shared_secret_password(secret, username);
        let key = derive(password.as_bytes());
        if msg.check_integrity(key.as_bytes()) {
            let account = Arc::new(Account {
                tenant_id: tenant,
                credential_id: credential,
                user_id: user.map(Arc::from),
            });
            if snap.is_revoked(&account, username, now_unix) {
                return Some(Err(TurnError::Unauthorized("credential revoked")));
            }
            if snap.suspended_tenants.contains(&*account.tenant_id) {
                return Some(Err(TurnError::Unauthorized("tenant suspended")));
            }
            // `expiry:scope:user` is valid through its expiry second.
            return Some(Ok(DirectoryAuth {
                key,
                account,
                expires_at: Some(expiry.saturating_add(1)),
            }));
        }
    }
    Some(Err(TurnError::Unauthorized("wrong password")))
}

/// The PASSWORD-ALGORITHMS value we offer: MD5 then SHA-256 (RFC 8489 §14.11).
pub const OFFERED_PASSWORD_ALGORITHMS: [u8; 8] = [0, 1, 0, 0, 0, 2, 0, 0];

/// Checks PASSWORD-ALGORITHM/PASSWORD-ALGORITHMS per RFC 8489 §9.2.4 and returns the algorithm.
fn password_algorithm(msg: &Message<'_>) -> Result<PasswordAlgorithm, TurnError> {
    match (
        msg.get(ATTR_PASSWORD_ALGORITHM),
        msg.get(ATTR_PASSWORD_ALGORITHMS),
    ) {
        (None, None) => Ok(PasswordAlgorithm::Md5),
        (Some(alg), Some(list)) => {
            // The list must be the one we sent (bid-down protection).
            if list != OFFERED_PASSWORD_ALGORITHMS {
                return Err(TurnError::BadRequest("PASSWORD-ALGORITHMS does not match"));
            }
            if alg.len() < 4 {
                return Err(TurnError::BadRequest("PASSWORD-ALGORITHM malformed"));
            }
            PasswordAlgorithm::from_number(u16::from_be_bytes([alg[0], alg[1]]))
                .ok_or(TurnError::BadRequest("unsupported PASSWORD-ALGORITHM"))
        }
        _ => Err(TurnError::BadRequest(
            "PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS go together",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        assert_eq!(
            Credentials::username_expiry("1700000000:alice"),
            Some(1_700_000_000)
        );
        assert_eq!(
            Credentials::username_expiry("1700000000"),
            Some(1_700_000_000)
        );
        assert_eq!(
            Credentials::username_expiry("alice:1700000000"),
            Some(1_700_000_000)
        );
        assert_eq!(Credentials::username_expiry("alice"), None);
    }

    #[test]
    fn rest_password_matches_known_value() {
        // Expected value computed independently with Python's hmac/hashlib/base64.
        let p = Credentials::shared_secret_password(b"north", "1600000000:someuser");
        assert_eq!(p, "tpYVKx2OgSIh1QzRWc4vzW1BU0I=");
    }
}
