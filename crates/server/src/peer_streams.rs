//! RFC 6062 peer connections shared by all workers, and the relayed TCP listener's socket.
//!
//! Peer connections wait here by connection id because the client's data connection (and so
//! the splice) may land on another worker than the allocation.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use socket2::{Protocol, Socket, Type};
use turnpike_proto::ConnectionId;

use crate::relay_ports::{PortLease, RelayPorts};

enum Slot {
    /// Connected, waiting for the client's ConnectionBind.
    Waiting(std::net::TcpStream),
    /// Being copied to a data connection by a task that can be aborted from any worker.
    Spliced(tokio::task::AbortHandle),
}

/// Peer connections by connection id.
#[derive(Default)]
pub(crate) struct PeerStreams {
    inner: Mutex<HashMap<ConnectionId, Slot>>,
}

impl PeerStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Slot>> {
        // Poisoning only means a worker panicked while holding it; the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn put_waiting(&self, cid: ConnectionId, s: tokio::net::TcpStream) {
        if let Ok(std) = s.into_std() {
            self.lock().insert(cid, Slot::Waiting(std));
        }
    }

    pub(crate) fn take_waiting(&self, cid: ConnectionId) -> Option<std::net::TcpStream> {
        let mut m = self.lock();
        match m.remove(&cid) {
            Some(Slot::Waiting(s)) => Some(s),
            Some(other) => {
                m.insert(cid, other);
                None
            }
            None => None,
        }
    }

    pub(crate) fn set_spliced(&self, cid: ConnectionId, h: tokio::task::AbortHandle) {
        self.lock().insert(cid, Slot::Spliced(h));
    }

    /// Closes the peer connection (drops it, or aborts its splice).
    pub(crate) fn close(&self, cid: ConnectionId) {
        if let Some(Slot::Spliced(h)) = self.lock().remove(&cid) {
            h.abort();
        }
    }

    pub(crate) fn forget(&self, cid: ConnectionId) {
        self.lock().remove(&cid);
    }
}

/// The listener and the outbound connections share the relayed address. Linux lets a
/// connecting socket bind next to a listener only when both are in one `SO_REUSEPORT` group,
/// so both set it; [`RelayPorts`] makes sure no other allocation of this process ever joins
/// that group, and the process refuses to start beside another instance on its listeners.
pub(crate) fn relay_socket(addr: SocketAddr) -> io::Result<Socket> {
    crate::sock::shared(addr, Type::STREAM, Protocol::TCP)
}

/// Binds the relayed TCP listener of a TCP allocation in the port range, reserved in `ports`.
pub(crate) fn bind_listener(
    ports: &Arc<RelayPorts>,
    ip: std::net::IpAddr,
    min: u16,
    max: u16,
) -> Option<(PortLease, std::net::TcpListener)> {
    ports.reserve(ip, min, max, false, |port| {
        let addr = SocketAddr::new(ip, port);
        let s = relay_socket(addr).ok()?;
        s.bind(&addr.into()).ok()?;
        s.listen(128).ok()?;
        Some(s.into())
    })
}
