//! Per-allocation usage metering: exact packet and byte counts for the four legs of relayed
//! traffic, handed to the driver as events (allocation started, usage since the last poll,
//! allocation ended) for the control plane to aggregate per tenant, credential, user and hour.
//!
//! What is counted: relayed data only. Client legs count the TURN frames as they cross the wire
//! (ChannelData header and padding, or the whole Send/Data indication); peer legs count the
//! application payload. Control messages (Allocate, Refresh, CreatePermission, ChannelBind) are
//! not counted. RFC 6062 data connections are spliced by the driver, which hands their bytes
//! back (`Server::handle_spliced`); they are reported as usage of the account, tagged with the
//! serial of the allocation the connection belongs to.
//! What it does not do: store anything; the events are the only output.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::directory::Account;
use crate::five_tuple::Transport;
use crate::stats::Direction;

/// An allocation's serial in accounting events: unique within the process (the server
/// instance in the high bits, the allocation's generation in the low 40).
pub fn allocation_serial(instance: u64, generation: u64) -> u64 {
    (instance << 40) | (generation & ((1 << 40) - 1))
}

/// Counters of one allocation, by [`Direction`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub packets: [u64; 4],
    pub bytes: [u64; 4],
}

impl Usage {
    #[inline]
    pub fn count(&mut self, d: Direction, bytes: usize) {
        self.packets[d as usize] += 1;
        self.bytes[d as usize] += bytes as u64;
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Self) -> Self {
        let mut u = Self::default();
        for i in 0..4 {
            u.packets[i] = self.packets[i].saturating_sub(earlier.packets[i]);
            u.bytes[i] = self.bytes[i].saturating_sub(earlier.bytes[i]);
        }
        u
    }

    pub fn is_zero(&self) -> bool {
        self.packets == [0; 4]
    }
}

/// What the relay reports to the metering layer.
#[derive(Debug, Clone)]
pub enum AccountingEvent {
    /// An allocation became active.
    Started {
        /// Unique within this server instance.
        serial: u64,
        account: Arc<Account>,
        username: String,
        client: SocketAddr,
        transport: Transport,
        relay: Option<SocketAddr>,
        at_unix: u64,
    },
    /// Traffic since the previous event of this allocation.
    Usage {
        account: Arc<Account>,
        delta: Usage,
        at_unix: u64,
        /// `Some(serial)`: bytes of an RFC 6062 data connection of that allocation, counted by
        /// whichever worker carries the connection (possibly not the allocation's).
        spliced: Option<u64>,
    },
    /// An allocation ended (its last `Usage` event came just before).
    Ended {
        serial: u64,
        account: Arc<Account>,
        started_unix: u64,
        at_unix: u64,
        total: Usage,
        peers: usize,
    },
    /// A request with MESSAGE-INTEGRITY was refused (wrong password, unknown or expired
    /// credential, wrong realm), for the tenants the username belongs to: the tenant named in
    /// an ephemeral username, or every tenant with a stored credential of that name. As rate
    /// limited as the log line.
    AuthFailed {
        tenants: Vec<Arc<str>>,
        username: String,
        client: SocketAddr,
        transport: Transport,
        reason: &'static str,
        at_unix: u64,
    },
}

/// Where a driver hands each worker's metering events (worker index, events), about once a
/// second and a last time at shutdown after the worker closed its allocations. The control
/// plane implements it; the driver only calls it.
pub type AccountingSink = std::sync::Arc<dyn Fn(usize, Vec<AccountingEvent>) + Send + Sync>;
