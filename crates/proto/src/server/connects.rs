//! RFC 6062 Connect requests waiting for the driver's outbound connection.

use std::net::SocketAddr;

use super::response::ResponseCtx;
use crate::output::AllocationId;

/// A Connect waiting for the driver's outbound connection.
#[derive(Debug, Clone)]
pub(crate) struct PendingConnect {
    pub allocation: AllocationId,
    pub generation: u64,
    pub peer: SocketAddr,
    pub ctx: ResponseCtx,
}
