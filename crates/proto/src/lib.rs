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
//! Requests are parsed once into typed values ([`request`]); the server ([`server`]) owns its
//! state through small owners and decides each method in its own file, following the RFC's
//! numbered steps (`server/allocate.rs`, `refresh.rs`, `permission.rs`, `channel_bind.rs`,
//! `send_data.rs`, `tcp_relay.rs`, `binding.rs`). Live shared state (quotas, drain switch,
//! RFC 6062 connection ids, directory) is the [`Runtime`], handed in beside the configuration.

#![forbid(unsafe_code)]

pub mod accounting;
pub mod allocation;
pub mod auth;
mod auth_log;
pub mod config;
pub mod directory;
pub mod error;
mod fast_map;
pub mod five_tuple;
#[doc(hidden)]
pub mod fuzzing;
pub mod nonce;
pub mod output;
pub mod policy;
pub mod quota;
mod request;
pub mod runtime;
mod server;
pub mod stats;
pub mod tcp_registry;
pub mod throttle;
pub mod timer;
pub mod unauth_budget;

pub use accounting::{AccountingEvent, AccountingSink, Usage};
pub use auth::{AuthInfo, Credentials, UserSecret};
pub use config::{Rfc5780, ServerConfig};
pub use directory::{
    Account, CredentialRecord, CredentialTable, Directory, Disconnect, Limits, Snapshot, StoredUser,
};
pub use error::{DropReason, TurnError};
pub use fast_map::FastMap;
pub use five_tuple::{FiveTuple, Transport};
pub use output::{
    AllocationId, ConnectionId, Dest, Families, Output, RelayError, RelayRequest, RelayResult,
    RelayTransport, Transmit, PEER_HEADROOM, PEER_TAILROOM,
};
pub use policy::{OwnEndpoints, PeerPolicy};
pub use quota::{AllocationQuota, QuotaLease, QuotaRefusal};
pub use runtime::{AlternateNode, Alternates, Redirect, RegionScope, Runtime};
pub use server::Server;
pub use stats::{Direction, Stats};
pub use tcp_registry::CONNECTION_BIND_TIMEOUT;
