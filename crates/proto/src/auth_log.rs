//! One structured log line per failed TURN authentication, for operators and for fail2ban:
//!
//! ```text
//! WARN turnpike::auth: TURN authentication failed client_ip=203.0.113.7 username="alice" reason="wrong password" transport="udp"
//! ```
//!
//! (with `log_format = "json"`, the same fields as JSON keys). Lines are rate limited per
//! worker so a password-guessing flood cannot flood the log: beyond [`LINES_PER_SEC`] a second
//! they are counted and the count is logged with the next line that gets through.

use std::net::IpAddr;
use std::time::Instant;

use crate::five_tuple::Transport;

/// Most lines per second per worker (with a burst of as many).
pub(crate) const LINES_PER_SEC: f64 = 20.0;

/// The rate limit of failure lines.
#[derive(Debug)]
pub(crate) struct AuthLog {
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for AuthLog {
    fn default() -> Self {
        Self {
            tokens: LINES_PER_SEC,
            last: None,
            suppressed: 0,
        }
    }
}

impl AuthLog {
    /// Logs one failure, unless over the rate; whether it was logged (the same rate limits
    /// what the control plane records).
    pub(crate) fn failed(
        &mut self,
        now: Instant,
        ip: IpAddr,
        username: Option<&[u8]>,
        reason: &str,
        transport: Transport,
    ) -> bool {
        let elapsed = self
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed * LINES_PER_SEC).min(LINES_PER_SEC);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return false;
        }
        self.tokens -= 1.0;
        // Debug formatting quotes and escapes the name, so a crafted username cannot forge
        // log lines.
        let username = username.map(String::from_utf8_lossy);
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(
            target: "turnpike::auth",
            client_ip = %ip.to_canonical(),
            username = ?username.as_deref().unwrap_or(""),
            reason,
            transport = transport.as_str(),
            suppressed,
            "TURN authentication failed"
        );
        true
    }
}
