//! A token bucket: caps one allocation's relayed bitrate (quota "throttle" and per-account
//! `max_bitrate_bps`), and serves any other "so many per second, with a burst" limit (the
//! signalling rooms' message and byte rates). Owned by one worker or state machine: no lock,
//! and time only as an argument.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    bytes_per_sec: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket for `bits_per_sec`, allowing a burst of a quarter second (at least 16 KiB, so one
    /// full-size datagram always fits).
    pub fn new(now: Instant, bits_per_sec: u64) -> Self {
        let bytes_per_sec = (bits_per_sec / 8).max(1);
        Self::with_rate(now, bytes_per_sec, (bytes_per_sec / 4).max(16 * 1024))
    }

    /// A full bucket of `burst` tokens refilled at `per_sec` tokens a second (at least 1).
    pub fn with_rate(now: Instant, per_sec: u64, burst: u64) -> Self {
        Self {
            bytes_per_sec: per_sec.max(1),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether `n` tokens are there now (nothing is taken).
    pub fn has(&mut self, now: Instant, n: usize) -> bool {
        self.refill(now);
        self.tokens >= n as u64
    }

    pub fn bits_per_sec(&self) -> u64 {
        self.bytes_per_sec * 8
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        if !elapsed.is_zero() {
            let add = (elapsed.as_micros() as u64).saturating_mul(self.bytes_per_sec) / 1_000_000;
            if add > 0 {
                self.tokens = (self.tokens + add).min(self.burst);
                self.last = now;
            }
        }
    }

    /// For a stream, where bytes are delayed rather than dropped: takes `n` bytes and returns
    /// how long to wait before sending them (zero while the burst lasts).
    pub fn pace(&mut self, now: Instant, n: usize) -> std::time::Duration {
        self.refill(now);
        let n = n as u64;
        if self.tokens >= n {
            self.tokens -= n;
            return std::time::Duration::ZERO;
        }
        let owed = n - self.tokens;
        self.tokens = 0;
        let wait =
            std::time::Duration::from_micros(owed.saturating_mul(1_000_000) / self.bytes_per_sec);
        // The wait pays the debt: the bucket resumes filling after it.
        self.last = now + wait;
        wait
    }

    /// Takes `n` bytes if available.
    #[inline]
    pub fn take(&mut self, now: Instant, n: usize) -> bool {
        self.refill(now);
        if self.tokens >= n as u64 {
            self.tokens -= n as u64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests drive the clock from a real starting instant
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 8 * 100_000); // 100 kB/s, 25 kB burst
        let mut sent = 0;
        for ms in 0..1000u64 {
            let now = t0 + Duration::from_millis(ms);
            while b.take(now, 1000) {
                sent += 1000;
            }
        }
        // One second: the burst plus about a second's worth.
        assert!((100_000..=126_000).contains(&sent), "{sent}");
    }

    #[test]
    fn paces_a_stream() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 8 * 100_000); // 100 kB/s, 25 kB burst
        let mut now = t0;
        let mut waited = Duration::ZERO;
        for _ in 0..125 {
            let w = b.pace(now, 1000);
            waited += w;
            now += w;
        }
        // 125 kB: the 25 kB burst at once, then 100 kB at 100 kB/s.
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1010),
            "{waited:?}"
        );
        assert_eq!(b.pace(now, 0), Duration::ZERO);
    }
}
