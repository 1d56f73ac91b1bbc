//! A worker's UDP relay sockets: found by relayed address (to send a client's data to a peer)
//! and by slot number (the token its [`RelayPoll`](crate::relay_poll::RelayPoll) readiness
//! carries). Slots are reused after a relay goes; a token read from the readiness set is only
//! used within the same synchronous pass, before any relay can be created or released.

use std::net::{SocketAddr, UdpSocket};

use turnpike_proto::FastMap;

use crate::relay_ports::PortLease;

/// A UDP relay socket and the reservation of its address.
pub(crate) struct RelayEntry {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    /// Holds the address reserved until the entry goes.
    _lease: PortLease,
}

/// The relay sockets of one worker.
#[derive(Default)]
pub(crate) struct RelaySet {
    by_addr: FastMap<SocketAddr, usize>,
    slots: Vec<Option<RelayEntry>>,
    free: Vec<usize>,
}

impl RelaySet {
    /// Adds a relay; returns its slot.
    pub(crate) fn insert(&mut self, sock: UdpSocket, addr: SocketAddr, lease: PortLease) -> usize {
        let entry = RelayEntry {
            sock,
            addr,
            _lease: lease,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        if let Some(old) = self.by_addr.insert(addr, slot) {
            // An address is leased to one relay at a time, so this is unreachable; keep the
            // set consistent anyway.
            self.slots[old] = None;
            self.free.push(old);
        }
        slot
    }

    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<&RelayEntry> {
        self.slots[*self.by_addr.get(addr)?].as_ref()
    }

    pub(crate) fn by_slot(&self, slot: usize) -> Option<&RelayEntry> {
        self.slots.get(slot)?.as_ref()
    }

    /// Removes a relay (its socket closes and leaves the readiness set when dropped).
    pub(crate) fn remove(&mut self, addr: &SocketAddr) -> Option<RelayEntry> {
        let slot = self.by_addr.remove(addr)?;
        let e = self.slots[slot].take();
        self.free.push(slot);
        e
    }

    pub(crate) fn clear(&mut self) {
        self.by_addr.clear();
        self.slots.clear();
        self.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn slots_are_reused_and_addresses_find_their_socket() {
        let ports = Arc::new(crate::relay_ports::RelayPorts::default());
        let mut set = RelaySet::default();
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let a = s.local_addr().expect("bound");
            let lease = ports.reserve_exact(a, || Some(())).expect("free address").0;
            (s, a, lease)
        };
        let (s1, a1, l1) = bind();
        let (s2, a2, l2) = bind();
        let t1 = set.insert(s1, a1, l1);
        let t2 = set.insert(s2, a2, l2);
        assert_ne!(t1, t2);
        assert_eq!(set.get(&a2).map(|e| e.addr), Some(a2));
        assert!(set.remove(&a1).is_some());
        assert!(set.get(&a1).is_none() && set.by_slot(t1).is_none());
        let (s3, a3, l3) = bind();
        assert_eq!(set.insert(s3, a3, l3), t1, "a freed slot is reused");
        assert_eq!(set.by_slot(t1).map(|e| e.addr), Some(a3));
    }
}
