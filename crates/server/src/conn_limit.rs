//! Caps on connections an outside party can make the process hold: in total and per source IP,
//! shared by every worker (connections from one source land on several workers through
//! `SO_REUSEPORT`, so a per-worker count would multiply the cap by the number of cores).
//!
//! A connection holds a [`ConnPermit`] for its whole life; dropping it gives the slot back.
//! Refusals are counted in `turnpike_connections_refused_total{listener, reason}` and logged
//! once when a cap is first hit, then at most once a minute with the number refused meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a cap that keeps being hit is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The process holds its most connections of this kind.
    Total,
    /// This source IP holds its most.
    PerSource,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerSource => "per_source",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
    /// When each refusal kind was last logged, and how many were refused since.
    logged: [(Option<Instant>, u64); 2],
}

/// The caps of one kind of connection (TURN over TCP/TLS, or HTTP).
#[derive(Debug)]
pub struct ConnectionLimits {
    /// A label for metrics and logs (`turn`, `http`).
    listener: &'static str,
    max_total: usize,
    max_per_source: usize,
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limits.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.ip);
            }
        }
        metrics::gauge!("turnpike_connections", "listener" => self.limits.listener)
            .set(c.total as f64);
    }
}

impl ConnectionLimits {
    /// Caps of `max_total` connections, `max_per_source` from one IP (0: no cap).
    pub fn new(listener: &'static str, max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            listener,
            max_total,
            max_per_source,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Poisoning only means a thread panicked mid-update of plain counters.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_source(&self) -> usize {
        self.max_per_source
    }

    /// Connections held now.
    pub fn current(&self) -> usize {
        self.lock().total
    }

    /// Admits a connection from `ip` (IPv4-mapped addresses count as IPv4), or says why not.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        let ip = ip.to_canonical();
        let mut c = self.lock();
        let refusal = if self.max_total != 0 && c.total >= self.max_total {
            Some(Refusal::Total)
        } else if self.max_per_source != 0
            && c.per_source.get(&ip).copied().unwrap_or(0) >= self.max_per_source
        {
            Some(Refusal::PerSource)
        } else {
            None
        };
        if let Some(r) = refusal {
            metrics::counter!("turnpike_connections_refused_total", "listener" => self.listener, "reason" => r.as_str())
                .increment(1);
            let (last, since) = &mut c.logged[r as usize];
            *since += 1;
            let now = Instant::now();
            if last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
                let cap = match r {
                    Refusal::Total => self.max_total,
                    Refusal::PerSource => self.max_per_source,
                };
                tracing::warn!(
                    listener = self.listener,
                    cap,
                    reason = r.as_str(),
                    source = %ip,
                    refused = *since,
                    "connection cap reached: refusing new connections (keys `max_connections`, `tcp_max_per_source`, `http_max_connections`; the file descriptor limit sets their defaults)"
                );
                *last = Some(now);
                *since = 0;
            }
            return Err(r);
        }
        c.total += 1;
        *c.per_source.entry(ip).or_insert(0) += 1;
        metrics::gauge!("turnpike_connections", "listener" => self.listener).set(c.total as f64);
        drop(c);
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_source_and_releases_on_drop() {
        let l = ConnectionLimits::new("turn", 3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refusal::PerSource);
        let _p3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), Refusal::Total);
        drop(p1);
        assert_eq!(l.current(), 2);
        assert!(l.try_acquire("::ffff:192.0.2.1".parse().unwrap()).is_ok());
    }
}
