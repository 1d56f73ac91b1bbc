//! The per-source byte budget for unauthenticated answers over UDP (Binding responses and error
//! responses such as 401 challenges), so the server cannot be used to reflect amplified traffic
//! at a spoofed address.
//!
//! Each source earns what it sends (the bytes of its requests) and spends what it gets back;
//! beyond that it has a small surplus (`burst` bytes, refilled at `per_sec` bytes per second).
//! Over any second a source therefore gets back at most what it sent plus `burst + per_sec`
//! bytes: an amplification factor of 1 in the long run, whatever the answer's size. Memory is
//! bounded: the table is swept periodically and cleared wholesale if it ever exceeds its cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 100_000;

/// Per-source budgets.
#[derive(Debug)]
pub struct UnauthBudget {
    burst: f64,
    per_sec: f64,
    /// Allowance in bytes and when it was last brought up to date, per source.
    sources: HashMap<IpAddr, (f64, Instant)>,
}

impl UnauthBudget {
    /// A budget with a surplus of `burst` bytes refilled at `per_sec` bytes per second;
    /// `burst == 0` turns the budget off (every answer is sent).
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: burst as f64,
            per_sec: per_sec as f64,
            sources: HashMap::new(),
        }
    }

    /// Whether `ip` may get an answer of `answer` bytes to a request of `request` bytes (and
    /// if so, spends it). IPv4-mapped addresses count as their IPv4 address.
    pub fn allow(&mut self, now: Instant, ip: IpAddr, request: usize, answer: usize) -> bool {
        if self.burst == 0.0 {
            return true;
        }
        let ip = ip.to_canonical();
        if self.sources.len() >= MAX_ENTRIES && !self.sources.contains_key(&ip) {
            self.sources.clear();
        }
        let (allowance, last) = self.sources.entry(ip).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *last = now;
        // The surplus refills up to `burst`; what the request brought in is earned on top.
        *allowance = (*allowance + elapsed * self.per_sec).min(self.burst) + request as f64;
        if *allowance >= answer as f64 {
            *allowance -= answer as f64;
            true
        } else {
            // Earned bytes stay earned up to the surplus cap; nothing is spent.
            *allowance = allowance.min(self.burst);
            false
        }
    }

    /// Forgets sources whose surplus has been full for a while.
    pub fn sweep(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_sec.max(1.0) + 1.0);
        self.sources
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < full_after);
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests drive the clock from a real starting instant
mod tests {
    use super::*;

    #[test]
    fn out_never_exceeds_in_plus_surplus() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut b = UnauthBudget::new(1000, 100);
        // 20-byte requests, 100-byte answers, 1000 of them within one second.
        let (mut sent_in, mut sent_out) = (0usize, 0usize);
        for i in 0..1000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 1000);
            sent_in += 20;
            if b.allow(now, ip, 20, 100) {
                sent_out += 100;
            }
        }
        assert!(
            sent_out <= sent_in + 1000 + 100,
            "{sent_out} out for {sent_in} in"
        );
        assert!(
            sent_out >= sent_in,
            "earned bytes are spendable: {sent_out} < {sent_in}"
        );
        // Another source has its own budget.
        assert!(b.allow(t0, "192.0.2.2".parse().unwrap(), 20, 100));
        b.sweep(t0 + Duration::from_secs(100));
        assert!(b.is_empty());
    }

    #[test]
    fn off_when_burst_is_zero() {
        let mut b = UnauthBudget::new(0, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..100).all(|_| b.allow(Instant::now(), ip, 1, 10_000)));
    }
}
