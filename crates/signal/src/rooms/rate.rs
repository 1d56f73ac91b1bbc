//! Per-connection token buckets: messages and bytes, refilled with the time passed in.

use std::time::Instant;

use super::config::SignalConfig;

/// Two token buckets, full at the start.
#[derive(Debug, Clone)]
pub(super) struct Rate {
    msgs: f64,
    bytes: f64,
    last: Instant,
}

impl Rate {
    pub(super) fn new(cfg: &SignalConfig, now: Instant) -> Self {
        Self {
            msgs: f64::from(cfg.msg_burst),
            bytes: f64::from(cfg.bytes_per_sec) * 2.0,
            last: now,
        }
    }

    /// Takes one message of `len` bytes if both buckets have room.
    pub(super) fn allow(&mut self, cfg: &SignalConfig, now: Instant, len: usize) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.msgs = (self.msgs + dt * f64::from(cfg.msgs_per_sec)).min(f64::from(cfg.msg_burst));
        self.bytes = (self.bytes + dt * f64::from(cfg.bytes_per_sec))
            .min(f64::from(cfg.bytes_per_sec) * 2.0);
        let len = len as f64;
        if self.msgs >= 1.0 && self.bytes >= len {
            self.msgs -= 1.0;
            self.bytes -= len;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests drive the clock from a real starting instant
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill_for_messages_and_bytes() {
        let cfg = SignalConfig {
            msgs_per_sec: 5,
            msg_burst: 10,
            bytes_per_sec: 1000,
            ..SignalConfig::default()
        };
        let t0 = Instant::now();
        let mut r = Rate::new(&cfg, t0);
        assert_eq!((0..20).filter(|_| r.allow(&cfg, t0, 1)).count(), 10);
        // 5 per second: one more after 200 ms.
        let t1 = t0 + Duration::from_millis(200);
        assert!(r.allow(&cfg, t1, 1));
        assert!(!r.allow(&cfg, t1, 1));
        // Bytes: a burst of 2000, then 1000 per second.
        let t2 = t1 + Duration::from_secs(10);
        let mut r = Rate::new(&cfg, t2);
        assert!(r.allow(&cfg, t2, 1500));
        assert!(!r.allow(&cfg, t2, 600));
        assert!(r.allow(&cfg, t2 + Duration::from_millis(100), 600));
        // A clock that goes backwards refills nothing and breaks nothing.
        assert!(!r.allow(&cfg, t2, 1000));
    }
}
