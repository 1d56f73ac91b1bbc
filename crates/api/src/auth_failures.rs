//! The throttle of failed API keys per client address: after `auth_failures_per_minute`
//! failures from one address (IPv6: one /64) in a minute, that address gets 429 without any key
//! being looked up until the minute is over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures count, and how long an address that used them up waits.
const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses (or IPv6 /64 networks) tracked at once.
const MAX_TRACKED: usize = 65_536;

/// Failed API key lookups per client address in fixed one-minute windows. IPv6 clients are
/// counted per /64 (one subscriber's network), so changing addresses within it does not help.
#[derive(Default)]
pub struct AuthFailures {
    table: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn current(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) < WINDOW
    }
}

/// The unit counted: an IPv4 address, or the /64 of an IPv6 address.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl AuthFailures {
    /// `Err(seconds to wait)` while `ip` has had `limit` failures in the current window
    /// (`limit` 0: never).
    pub fn check(&self, ip: IpAddr, limit: u32, now: Instant) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.get(&bucket(ip)) {
            Some(w) if w.current(now) && w.failures >= limit => {
                let left = WINDOW.saturating_sub(now.saturating_duration_since(w.start));
                Err(left.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `ip`. The table is bounded: when full, finished windows and then
    /// addresses still under the limit make room; if every tracked address is being refused,
    /// a new one is not tracked.
    pub fn failed(&self, ip: IpAddr, limit: u32, now: Instant) {
        if limit == 0 {
            return;
        }
        let key = bucket(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED {
            table.retain(|_, w| w.current(now));
            if table.len() >= MAX_TRACKED {
                table.retain(|_, w| w.failures >= limit);
            }
            if table.len() >= MAX_TRACKED {
                return;
            }
        }
        let w = table.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if !w.current(now) {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test addresses are valid")
    }

    #[test]
    fn refuses_after_the_limit_until_the_window_passes() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(f.check(a, 3, t0), Ok(()), "failure {i}");
            f.failed(a, 3, t0);
        }
        assert_eq!(f.check(a, 3, t0), Err(60));
        assert_eq!(f.check(a, 3, t0 + Duration::from_millis(30_500)), Err(30));
        // Another address is not affected.
        assert_eq!(f.check(ip("192.0.2.2"), 3, t0), Ok(()));
        // Once the window has passed the address may try again, with a fresh count.
        let later = t0 + WINDOW;
        assert_eq!(f.check(a, 3, later), Ok(()));
        f.failed(a, 3, later);
        assert_eq!(f.check(a, 3, later), Ok(()));
    }

    #[test]
    fn zero_means_no_limit() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            f.failed(ip("192.0.2.1"), 0, t0);
        }
        assert_eq!(f.check(ip("192.0.2.1"), 0, t0), Ok(()));
        assert_eq!(f.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        f.failed(ip("2001:db8:1:2::1"), 2, t0);
        f.failed(ip("2001:db8:1:2:ffff::9"), 2, t0);
        assert!(f.check(ip("2001:db8:1:2::77"), 2, t0).is_err());
        assert!(f.check(ip("2001:db8:1:3::1"), 2, t0).is_ok());
        f.failed(ip("::ffff:192.0.2.7"), 1, t0);
        assert!(f.check(ip("192.0.2.7"), 1, t0).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_refused_addresses() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        let blocked = ip("198.51.100.1");
        for _ in 0..3 {
            f.failed(blocked, 3, t0);
        }
        for i in 0..MAX_TRACKED as u32 + 10 {
            f.failed(IpAddr::V4((0x0a00_0000 + i).into()), 3, t0);
        }
        assert!(f.tracked() <= MAX_TRACKED);
        assert!(f.check(blocked, 3, t0).is_err());
    }
}
