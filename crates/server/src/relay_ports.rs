//! The process-wide reservation of relayed transport addresses.
//!
//! Every relay address (IP and port) the process hands out is reserved here first, whatever the
//! transport (a UDP and a TCP relay never share an IP:port) and whichever worker asks, and stays
//! reserved until its [`PortLease`] is dropped. The kernel alone cannot guarantee this: RFC 6062
//! TCP relays bind with `SO_REUSEPORT` (their outbound peer connections must originate from the
//! relayed address next to its listener), which would otherwise let two allocations share a
//! listener and split each other's peer connections.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::Rng;

/// Ports tried with a real bind before giving up (ports the registry holds are skipped without
/// a bind, so a full range fails at once).
const BIND_ATTEMPTS: usize = 64;
/// Random ports looked at before scanning the range in order. A scan from a random start walks
/// through runs of taken ports (they cluster), which made a relay cost O(range) when the
/// range was mostly full; random probes find a free port in a few looks up to ~90 % full.
const RANDOM_PROBES: usize = 32;

/// Reserved relay addresses, shared by all workers.
#[derive(Debug, Default)]
pub struct RelayPorts {
    taken: Mutex<Taken>,
}

/// The reserved addresses, and how many of them each IP has.
#[derive(Debug, Default)]
struct Taken {
    set: HashSet<(IpAddr, u16)>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Taken {
    fn insert(&mut self, key: (IpAddr, u16)) -> bool {
        let new = self.set.insert(key);
        if new {
            *self.per_ip.entry(key.0).or_default() += 1;
        }
        new
    }

    fn remove(&mut self, key: &(IpAddr, u16)) {
        if self.set.remove(key) {
            if let Some(n) = self.per_ip.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&key.0);
                }
            }
        }
    }
}

/// One reserved relay address; dropping it gives the address back.
#[derive(Debug)]
pub(crate) struct PortLease {
    ports: Arc<RelayPorts>,
    key: (IpAddr, u16),
}

impl PortLease {
    pub(crate) fn port(&self) -> u16 {
        self.key.1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.ports.lock().remove(&self.key);
    }
}

impl RelayPorts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        // Poisoning only means a worker panicked while holding it; the set is still consistent.
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Addresses currently reserved.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// `ips` ordered by how many addresses each has reserved, fewest first (ties keep their
    /// order): where the next relay should go so allocations spread evenly over them.
    pub(crate) fn least_used_first(&self, ips: &[IpAddr]) -> Vec<IpAddr> {
        let taken = self.lock();
        let mut v = ips.to_vec();
        v.sort_by_key(|ip| taken.per_ip.get(ip).copied().unwrap_or(0));
        v
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reserves a free port of `ip` in `[min, max]` (even ones only with `even`) for which
    /// `bind` succeeds, and returns the lease with what `bind` made. `None` when the range has
    /// no free port (the caller answers 508) or binds keep failing.
    pub(crate) fn reserve<T>(
        self: &Arc<Self>,
        ip: IpAddr,
        min: u16,
        max: u16,
        even: bool,
        mut bind: impl FnMut(u16) -> Option<T>,
    ) -> Option<(PortLease, T)> {
        if min > max {
            return None;
        }
        let span = u32::from(max) - u32::from(min) + 1;
        let mut rng = rand::thread_rng();
        let start = rng.gen_range(0..span);
        let mut attempts = 0;
        let random = (0..RANDOM_PROBES).map(|_| rng.gen_range(0..span));
        for offset in random.chain((0..span).map(|i| (start + i) % span)) {
            let port = (u32::from(min) + offset) as u16;
            if even && port % 2 == 1 {
                continue;
            }
            // Reserve before binding, so two workers never race for one port.
            if !self.lock().insert((ip, port)) {
                continue;
            }
            let lease = PortLease {
                ports: self.clone(),
                key: (ip, port),
            };
            if let Some(made) = bind(port) {
                return Some((lease, made));
            }
            drop(lease);
            attempts += 1;
            if attempts >= BIND_ATTEMPTS {
                break;
            }
        }
        None
    }

    /// Reserves exactly `addr` (the port after an EVEN-PORT relay), binding with `bind`.
    pub(crate) fn reserve_exact<T>(
        self: &Arc<Self>,
        addr: SocketAddr,
        bind: impl FnOnce() -> Option<T>,
    ) -> Option<(PortLease, T)> {
        let key = (addr.ip(), addr.port());
        if !self.lock().insert(key) {
            return None;
        }
        let lease = PortLease {
            ports: self.clone(),
            key,
        };
        bind().map(|made| (lease, made))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_never_handed_out_twice_and_comes_back_on_drop() {
        let ports = Arc::new(RelayPorts::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, pa) = ports.reserve(ip, 5000, 5001, false, Some).unwrap();
        let (b, pb) = ports.reserve(ip, 5000, 5001, false, Some).unwrap();
        assert_ne!(pa, pb);
        assert!(ports.reserve(ip, 5000, 5001, false, Some).is_none());
        // Another IP has its own ports.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(ports.reserve(other, 5000, 5001, false, Some).is_some());
        drop(a);
        let (_c, pc) = ports.reserve(ip, 5000, 5001, false, Some).unwrap();
        assert_eq!(pc, pa);
        assert_eq!(b.port(), pb);
    }

    #[test]
    fn failed_binds_release_and_even_ports_are_even() {
        let ports = Arc::new(RelayPorts::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(ports
            .reserve(ip, 6000, 6009, false, |_| None::<()>)
            .is_none());
        assert!(ports.is_empty());
        for _ in 0..5 {
            let (l, p) = ports.reserve(ip, 6000, 6009, true, Some).unwrap();
            assert_eq!(p % 2, 0);
            std::mem::forget(l);
        }
        assert!(ports.reserve(ip, 6000, 6009, true, Some).is_none());
        let exact: SocketAddr = "192.0.2.1:6001".parse().unwrap();
        assert!(ports.reserve_exact(exact, || Some(())).is_some());
    }

    #[test]
    fn the_address_with_fewest_relays_comes_first() {
        let ports = Arc::new(RelayPorts::default());
        let ips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ports.least_used_first(&ips), ips);
        let a = ports.reserve(ips[0], 5000, 5009, false, Some).unwrap();
        let b = ports.reserve(ips[1], 5000, 5009, false, Some).unwrap();
        let c = ports.reserve(ips[1], 5000, 5009, false, Some).unwrap();
        assert_eq!(ports.least_used_first(&ips), vec![ips[2], ips[0], ips[1]]);
        drop((b, c));
        assert_eq!(ports.least_used_first(&ips), vec![ips[1], ips[2], ips[0]]);
        drop(a);
        assert_eq!(ports.len(), 0);
    }
}
