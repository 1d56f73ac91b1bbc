//! WebSocket signalling tied to Turnpike's TURN credentials: tenant-scoped rooms carrying offers,
//! answers and ICE candidates between peers (opaque to the server), presence, polite/impolite
//! ranks for perfect negotiation, resume after a dropped socket, limits, admin endpoints, a
//! message-bus interface so several nodes share rooms, and the demo pages.
//!
//! Layers, each above what it uses: [`message`], [`close_code`] and [`bus_event`] (the wire);
//! [`rooms`], the sans-IO state machine that makes every decision (no I/O, no tasks, no clock:
//! `crates/signal/clippy.toml` bans clock reads); [`bus`] (in-process or PostgreSQL, whose
//! statements live in `turnpike_store::signal`) and [`grant`] (token checks against the
//! control plane); [`hub`], the tokio driver that owns the clock and feeds the rooms; [`ws`]
//! (the handshake and the pump of each socket) and [`rest`] (the endpoints).
//!
//! What it does not do: look inside SDP, relay media (the TURN server does), or keep rooms
//! across restarts (clients reconnect when told to drain).
//!
//! Endpoints: `GET /v1/signal` (WebSocket), `POST /v1/signal/tokens`, `GET /v1/signal/rooms`,
//! `GET /v1/signal/rooms/{room}`, `POST /v1/signal/rooms/{room}/kick`,
//! `DELETE /v1/signal/rooms/{room}`, `PUT|GET /v1/signal/settings`; `GET /demo`,
//! `GET /demo/ice-test`, `POST /demo/token` (when the demo is enabled).

#![forbid(unsafe_code)]

pub mod bus;
pub mod bus_event;
pub mod close_code;
pub mod grant;
pub mod hub;
pub mod message;
pub mod rest;
pub mod rooms;
pub mod token;
pub mod ws;

use std::sync::Arc;

use turnpike_api::AppState;

pub use bus::{Bus, InProcessBus, PgBus};
pub use hub::Hub;
pub use rooms::SignalConfig;

/// Everything the signalling endpoints share.
pub struct Signal {
    pub hub: Arc<Hub>,
    pub api: Arc<AppState>,
    /// The tenant the demo pages mint tokens for, when the demo is enabled.
    pub demo_tenant: Option<String>,
}

/// Starts the hub on `bus`.
pub fn start(
    api: Arc<AppState>,
    cfg: SignalConfig,
    bus: Bus,
    demo_tenant: Option<String>,
) -> Arc<Signal> {
    Arc::new(Signal {
        hub: Hub::new(cfg, bus, api.clone()),
        api,
        demo_tenant,
    })
}
