//! Console sessions (issue 12): an API key is exchanged once for a server-side session, so the
//! browser holds only a random session token in an HttpOnly cookie, never the key.
//!
//! The table is sans-IO: times are arguments (unix seconds). Tokens are stored as SHA-256
//! hashes, so a memory dump does not hand out live sessions. A session ends at sign-out, after
//! [`IDLE`] without a request, or [`ABSOLUTE`] after sign-in, whichever comes first. The table
//! holds at most [`MAX_SESSIONS`] (the oldest session gives way) and [`MAX_PER_KEY`] per key.
//!
//! What it does not do: check keys (the caller has authenticated the key first), survive a
//! restart, or span nodes: a node that restarts signs its console users out.

use std::collections::HashMap;

use crate::keys::{constant_time_eq, hash_key, random_token};

/// A session ends after this long without a request (seconds).
pub const IDLE: i64 = 30 * 60;
/// A session ends this long after sign-in, active or not (seconds).
pub const ABSOLUTE: i64 = 12 * 3600;
/// Sessions held at once on a node.
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions one API key may hold at once (the oldest gives way).
pub const MAX_PER_KEY: usize = 20;

/// One signed-in console user; `P` is who they are (the HTTP layer's principal).
#[derive(Debug, Clone)]
pub struct Session<P> {
    pub principal: P,
    /// The API key they signed in with (its id).
    pub key_id: String,
    /// Sent back in `X-CSRF-Token` with every state-changing request.
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// What sign-in hands the browser: the cookie's token and the CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

/// Why a request's session does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefused {
    /// Unknown, ended or expired.
    NoSession,
    /// A state-changing request without the session's CSRF token.
    Csrf,
}

#[derive(Debug)]
pub struct Sessions<P> {
    by_hash: HashMap<[u8; 32], Session<P>>,
    /// Sessions dropped to stay within the caps (the metric
    /// `turnpike_console_sessions_evicted_total`).
    pub evicted: u64,
}

impl<P> Default for Sessions<P> {
    fn default() -> Self {
        Self {
            by_hash: HashMap::new(),
            evicted: 0,
        }
    }
}

impl<P: Clone> Sessions<P> {
    /// Starts a session for `principal`, signed in with the key `key_id`, at `now`.
    pub fn create(&mut self, principal: P, key_id: &str, now: i64) -> NewSession {
        self.expire(now);
        let mine: Vec<([u8; 32], i64)> = self
            .by_hash
            .iter()
            .filter(|(_, s)| s.key_id == key_id)
            .map(|(h, s)| (*h, s.created_at))
            .collect();
        if mine.len() >= MAX_PER_KEY {
            if let Some((h, _)) = mine.iter().min_by_key(|(_, at)| *at) {
                self.by_hash.remove(h);
                self.evicted += 1;
            }
        }
        if self.by_hash.len() >= MAX_SESSIONS {
            let oldest = self
                .by_hash
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(h, _)| *h);
            if let Some(h) = oldest {
                self.by_hash.remove(&h);
                self.evicted += 1;
                tracing::warn!(
                    max = MAX_SESSIONS,
                    "console sessions at their cap: the least recently used one was ended"
                );
            }
        }
        let token = random_token(32);
        let csrf = random_token(24);
        self.by_hash.insert(
            hash_key(&token),
            Session {
                principal,
                key_id: key_id.to_string(),
                csrf: csrf.clone(),
                created_at: now,
                last_seen: now,
            },
        );
        NewSession { token, csrf }
    }

    /// The session of `token` at `now`, if live; a state-changing request (`mutating`) must
    /// carry its CSRF token. A live session's idle clock restarts.
    pub fn check(
        &mut self,
        token: &str,
        csrf: Option<&str>,
        mutating: bool,
        now: i64,
    ) -> Result<Session<P>, SessionRefused> {
        let h = hash_key(token);
        let Some(s) = self.by_hash.get_mut(&h) else {
            return Err(SessionRefused::NoSession);
        };
        if now - s.last_seen >= IDLE || now - s.created_at >= ABSOLUTE {
            self.by_hash.remove(&h);
            return Err(SessionRefused::NoSession);
        }
        if mutating && !csrf.is_some_and(|c| constant_time_eq(c.as_bytes(), s.csrf.as_bytes())) {
            return Err(SessionRefused::Csrf);
        }
        s.last_seen = now;
        Ok(s.clone())
    }

    /// Ends the session of `token`; true if there was one.
    pub fn end(&mut self, token: &str) -> bool {
        self.by_hash.remove(&hash_key(token)).is_some()
    }

    /// Ends every session signed in with the key `key_id` (the key was revoked).
    pub fn end_key(&mut self, key_id: &str) {
        self.by_hash.retain(|_, s| s.key_id != key_id);
    }

    /// Drops expired sessions.
    pub fn expire(&mut self, now: i64) {
        self.by_hash
            .retain(|_, s| now - s.last_seen < IDLE && now - s.created_at < ABSOLUTE);
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Sessions<&'static str> {
        Sessions::default()
    }

    #[test]
    fn a_session_lives_until_idle_absolute_or_sign_out() {
        let mut t = table();
        let s = t.create("tenant", "k1", 1000);
        assert!(t.check(&s.token, None, false, 1000 + IDLE - 1).is_ok());
        // Each request restarts the idle clock, not the absolute one.
        let mut now = 1000;
        while now + IDLE - 1 < 1000 + ABSOLUTE {
            now += IDLE - 1;
            if now - 1000 >= ABSOLUTE {
                break;
            }
            assert!(t.check(&s.token, None, false, now).is_ok(), "at {now}");
        }
        assert_eq!(
            t.check(&s.token, None, false, 1000 + ABSOLUTE).unwrap_err(),
            SessionRefused::NoSession
        );
        let s = t.create("tenant", "k1", 5000);
        assert_eq!(
            t.check(&s.token, None, false, 5000 + IDLE).unwrap_err(),
            SessionRefused::NoSession,
            "idle"
        );
        let s = t.create("tenant", "k1", 9000);
        assert!(t.end(&s.token));
        assert!(t.check(&s.token, None, false, 9000).is_err());
        assert!(!t.end(&s.token));
        assert!(t.check("not-a-token", None, false, 9000).is_err());
    }

    #[test]
    fn state_changes_need_the_csrf_token() {
        let mut t = table();
        let s = t.create("tenant", "k1", 0);
        assert!(t.check(&s.token, None, false, 1).is_ok(), "reads need none");
        assert_eq!(
            t.check(&s.token, None, true, 1).unwrap_err(),
            SessionRefused::Csrf
        );
        assert_eq!(
            t.check(&s.token, Some("wrong"), true, 1).unwrap_err(),
            SessionRefused::Csrf
        );
        assert!(t.check(&s.token, Some(&s.csrf), true, 1).is_ok());
    }

    #[test]
    fn caps_hold_per_key_and_in_all() {
        let mut t = table();
        let first = t.create("tenant", "k1", 0);
        for i in 1..MAX_PER_KEY as i64 {
            t.create("tenant", "k1", i);
        }
        assert_eq!(t.len(), MAX_PER_KEY);
        t.create("tenant", "k1", 100);
        assert_eq!(t.len(), MAX_PER_KEY, "the oldest of the key gave way");
        assert_eq!(t.evicted, 1);
        assert!(t.check(&first.token, None, false, 100).is_err());
        t.create("tenant", "k2", 100);
        assert_eq!(t.len(), MAX_PER_KEY + 1);
        t.end_key("k1");
        assert_eq!(t.len(), 1);
    }
}
