//! Per-source token bucket for unauthenticated answers (401), so the server cannot be used to
//! flood a spoofed address with challenges. Memory is bounded: the table is swept periodically and
//! cleared wholesale if it ever exceeds its cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(burst: u32, per_sec: u32) -> Self {
        RateLimiter {
            burst: burst as f64,
            per_sec: per_sec as f64,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip` (IPv4-mapped addresses count as their IPv4 address); false when
    /// the source is over its rate.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.burst == 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_ENTRIES && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_sec).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has been full for a while.
    pub fn sweep(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_sec.max(1.0) + 1.0);
        self.buckets
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < full_after);
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut r = RateLimiter::new(3, 1);
        assert!(r.allow(t0, ip));
        assert!(r.allow(t0, ip));
        assert!(r.allow(t0, ip));
        assert!(!r.allow(t0, ip));
        assert!(r.allow(t0 + Duration::from_secs(1), ip));
        assert!(!r.allow(t0 + Duration::from_secs(1), ip));
        r.sweep(t0 + Duration::from_secs(100));
        assert!(r.is_empty());
    }
}
