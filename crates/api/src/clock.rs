//! Wall-clock time of the control plane, in unix seconds. The operations read it through a
//! [`Clock`] held by the state, so a test can set the time ([`ManualClock`]) and see what
//! happens at the end of a quota period without waiting for it.

use std::sync::atomic::{AtomicI64, Ordering};

/// Where the control plane reads the time.
pub trait Clock: Send + Sync {
    /// Seconds since 1970 (UTC).
    fn now(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        unix_now()
    }
}

/// A clock that stands still until it is set or advanced: for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(now: i64) -> Self {
        Self {
            now: AtomicI64::new(now),
        }
    }

    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::Relaxed);
    }

    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// Seconds since 1970, from the system's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
