//! The TURN server as a sans-IO state machine (RFC 8656, RFC 5766, RFC 6156, RFC 8489).
//!
//! What it does: everything a TURN server decides — authentication, allocations, permissions,
//! channels, lifetimes, quotas, peer policy, the bytes of every response and relayed packet.
//! What it does not do: touch a socket, read a clock, spawn a task or pick a port. The driver
//! (`turnpike-server`) feeds it packets and time and carries out what it asks:
//!
//! - inputs: `handle_client_packet(now, ..)`, `handle_peer_packet(now, ..)`,
//!   `handle_relay_created(now, ..)`, `handle_connection_closed(now, ..)`,
//!   `handle_timeout(now)`;
//! - outputs: the borrowed [`Transmit`] a packet handler returns (responses and relayed data,
//!   without allocation), then [`Server::poll_output`] for queued work and
//!   [`Server::poll_timeout`] for the next deadline of the one deadline queue.
//!
//! One file per method, each following the RFC's numbered steps: [`binding`](crate::binding),
//! `allocate`, `refresh`, `permission`, `channel_bind`, `send_data`.

#![forbid(unsafe_code)]

pub mod accounting;
mod allocate;
pub mod allocation;
pub mod auth;
mod auth_log;
mod binding;
mod channel_bind;
pub mod config;
pub mod directory;
pub mod error;
pub mod five_tuple;
#[doc(hidden)]
pub mod fuzzing;
pub mod nonce;
pub mod output;
mod permission;
pub mod policy;
pub mod quota;
mod refresh;
mod send_data;
mod server;
pub mod stats;
pub mod tcp_registry;
mod tcp_relay;
pub mod throttle;
pub mod timer;
pub mod unauth_budget;

pub use accounting::{AccountingEvent, AccountingSink, Usage};
pub use allocation::AllocationId;
pub use auth::{AuthInfo, Credentials, UserSecret};
pub use config::{Rfc5780, ServerConfig};
pub use directory::{Account, Directory, Disconnect, Limits, Snapshot, StoredUser};
pub use error::{DropReason, TurnError};
pub use five_tuple::{FiveTuple, Transport};
pub use output::{
    ConnectionId, Dest, Families, Output, RelayError, RelayRequest, RelayResult, RelayTransport,
    Transmit,
};
pub use policy::{OwnEndpoints, PeerPolicy};
pub use quota::AllocationQuota;
pub use send_data::{PEER_HEADROOM, PEER_TAILROOM};
pub use server::Server;
pub use stats::{Direction, Stats};
pub use tcp_relay::CONNECTION_BIND_TIMEOUT;
