//! Per-connection limits: a message-rate and a byte-rate token bucket (proto's), refilled with
//! the time passed in.

use std::time::Instant;

use turnpike_proto::throttle::TokenBucket;

use super::config::SignalConfig;

/// Two token buckets, full at the start: messages (burst `msg_burst`) and bytes (burst two
/// seconds' worth).
#[derive(Debug, Clone)]
pub(super) struct Rate {
    msgs: TokenBucket,
    bytes: TokenBucket,
}

impl Rate {
    pub(super) fn new(cfg: &SignalConfig, now: Instant) -> Self {
        let bytes = u64::from(cfg.bytes_per_sec);
        Self {
            msgs: TokenBucket::with_rate(now, cfg.msgs_per_sec.into(), cfg.msg_burst.into()),
            bytes: TokenBucket::with_rate(now, bytes, bytes * 2),
        }
    }

    /// Takes one message of `len` bytes if both buckets have room.
    pub(super) fn allow(&mut self, now: Instant, len: usize) -> bool {
        if self.msgs.has(now, 1) && self.bytes.has(now, len) {
            self.msgs.take(now, 1);
            self.bytes.take(now, len);
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
        assert_eq!((0..20).filter(|_| r.allow(t0, 1)).count(), 10);
        // 5 per second: one more after 200 ms.
        let t1 = t0 + Duration::from_millis(200);
        assert!(r.allow(t1, 1));
        assert!(!r.allow(t1, 1));
        // Bytes: a burst of 2000, then 1000 per second.
        let t2 = t1 + Duration::from_secs(10);
        let mut r = Rate::new(&cfg, t2);
        assert!(r.allow(t2, 1500));
        assert!(!r.allow(t2, 600));
        assert!(r.allow(t2 + Duration::from_millis(100), 600));
        // A clock that goes backwards refills nothing and breaks nothing.
        assert!(!r.allow(t2, 1000));
    }
}
