//! What the servers of one process share while they run, as opposed to their configuration:
//! allocation counts (quotas), the drain switch, RFC 6062 connection ids and the control
//! plane's directory. One [`Runtime`] is handed to every [`crate::Server`] beside its
//! [`crate::ServerConfig`]; the binary and the control plane keep a clone to act on it (enter
//! drain mode, publish credentials).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::directory::Directory;
use crate::quota::AllocationQuota;
use crate::tcp_registry::TcpConnectionRegistry;

/// Live state shared by all workers.
#[derive(Debug)]
pub struct Runtime {
    /// Live allocation counts and their caps.
    pub quota: Arc<AllocationQuota>,
    /// While set, new allocations are refused with 508 (existing ones keep working).
    draining: AtomicBool,
    /// RFC 6062 connection ids (a data connection may land on another worker).
    pub tcp_connections: TcpConnectionRegistry,
    /// Stored and ephemeral credentials of the control plane, limits, disconnects, deny list.
    pub directory: Arc<Directory>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new(AllocationQuota::new(0, 0), Arc::default())
    }
}

impl Runtime {
    pub fn new(quota: AllocationQuota, directory: Arc<Directory>) -> Self {
        Self {
            quota: Arc::new(quota),
            draining: AtomicBool::new(false),
            tcp_connections: TcpConnectionRegistry::default(),
            directory,
        }
    }

    /// Enters drain mode: new allocations get 508, existing ones continue.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
