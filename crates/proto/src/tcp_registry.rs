//! RFC 6062 connection ids shared by all workers.
//!
//! A client's data connection (which carries ConnectionBind) is a new TCP connection and may be
//! accepted by another worker than the one holding the allocation. The connection id, the user it
//! belongs to and whether it was bound are therefore kept here, behind a mutex that is taken on
//! Connect/ConnectionAttempt/ConnectionBind only, never per byte relayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::output::ConnectionId;

/// How long a peer connection waits for its ConnectionBind (RFC 6062 §5.3, §5.4: 30 seconds).
pub const CONNECTION_BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug)]
struct Entry {
    username: String,
    bound: bool,
    /// The serial of the allocation the connection belongs to (for metering).
    owner: u64,
}

/// Why a ConnectionBind cannot claim a connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// No such id (never issued, timed out, or closed).
    Unknown,
    /// Already bound to a data connection.
    AlreadyBound,
    /// The id belongs to another user's allocation.
    WrongUser,
}

/// Connection ids in flight between Connect/ConnectionAttempt and ConnectionBind.
#[derive(Debug, Default)]
pub struct TcpConnectionRegistry {
    next: AtomicU32,
    inner: Mutex<HashMap<ConnectionId, Entry>>,
}

impl TcpConnectionRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        // Poisoning only means a worker panicked while holding it; the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh id (never 0), registered as waiting for a ConnectionBind by `username`, for the
    /// allocation with serial `owner`.
    pub fn issue(&self, username: &str, owner: u64) -> ConnectionId {
        let mut m = self.lock();
        loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 && !m.contains_key(&id) {
                m.insert(
                    id,
                    Entry {
                        username: username.to_string(),
                        bound: false,
                        owner,
                    },
                );
                return id;
            }
        }
    }

    /// Binds `id` for `username` (RFC 6062 §5.4); returns the owning allocation's serial.
    pub fn claim(&self, id: ConnectionId, username: &str) -> Result<u64, ClaimError> {
        let mut m = self.lock();
        let e = m.get_mut(&id).ok_or(ClaimError::Unknown)?;
        if e.username != username {
            return Err(ClaimError::WrongUser);
        }
        if e.bound {
            return Err(ClaimError::AlreadyBound);
        }
        e.bound = true;
        Ok(e.owner)
    }

    pub fn is_bound(&self, id: ConnectionId) -> bool {
        self.lock().get(&id).is_some_and(|e| e.bound)
    }

    pub fn contains(&self, id: ConnectionId) -> bool {
        self.lock().contains_key(&id)
    }

    pub fn remove(&self, id: ConnectionId) {
        self.lock().remove(&id);
    }
}
