//! The control plane: a multi-tenant REST API (`/v1`, OpenAPI at `/openapi.json`) for tenants,
//! keys, stored and ephemeral TURN credentials, ICE-server lists, usage, quotas, alerts and logs;
//! Metered-compatible endpoints (`/api/v1`, `/api/v2`); the meter that turns the relay's
//! accounting events into hourly usage; quota evaluation and alert delivery.
//!
//! The operations live in [`domain`] (no HTTP there: typed inputs, [`domain::error::DomainError`],
//! time from a [`clock::Clock`]); the REST API over them in [`http`].
//!
//! What it does not do: serve TURN (the relay reads this crate's decisions through the
//! [`turnpike_proto::Directory`] it publishes) or bind sockets (the binary serves the router).

#![forbid(unsafe_code)]

pub mod auth_failures;
pub use turnpike_store::calendar;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fleet;
pub mod http;
pub mod ice;
pub mod keys;
pub mod state;
pub mod webhook_target;

use std::sync::Arc;

use axum::Router;
use turnpike_proto::Directory;
use turnpike_store::{AnyStore, Store, StoreError};

use crate::clock::{Clock, SystemClock};
use crate::domain::{meter, tenants};

pub use config::{ApiConfig, SmtpConfig};
// The paths turnpike-signal and the binary use.
pub use domain::sync;
pub use http::{auth, ephemeral, error, extract, guard, router, util};
pub use state::AppState;

/// HELP lines of the control plane's metrics, and zero values for those alerts watch (so a
/// rule sees 0, not an absent series, before the first event).
fn describe_metrics() {
    metrics::describe_counter!(
        "turnpike_quota_thresholds_fired_total",
        "Quota thresholds reached, by action (each fires once per period and scope)"
    );
    metrics::describe_gauge!(
        "turnpike_quota_refused_scopes",
        "Tenants and credentials whose new allocations a quota refuses now"
    );
    metrics::describe_gauge!(
        "turnpike_quota_throttled_scopes",
        "Tenants and credentials a quota throttles now"
    );
    metrics::describe_gauge!(
        "turnpike_fleet_nodes",
        "Nodes of the fleet by state, as this node read the registry at its last heartbeat"
    );
    metrics::describe_counter!(
        "turnpike_fleet_heartbeat_failures_total",
        "Heartbeats that could not be written to or read from the node registry"
    );
    for action in ["notify", "throttle", "refuse", "disconnect"] {
        metrics::counter!("turnpike_quota_thresholds_fired_total", "action" => action).increment(0);
    }
    metrics::gauge!("turnpike_quota_refused_scopes").set(0.0);
    metrics::gauge!("turnpike_quota_throttled_scopes").set(0.0);
    metrics::counter!("turnpike_fleet_heartbeat_failures_total").increment(0);
    metrics::counter!("turnpike_api_auth_failures_total").increment(0);
}

/// The running control plane.
pub struct ControlPlane {
    pub state: Arc<AppState>,
    meter: Arc<meter::Meter>,
    stop: tokio::sync::watch::Sender<bool>,
    meter_task: tokio::task::JoinHandle<()>,
    sync_task: tokio::task::JoinHandle<()>,
    fleet_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ControlPlane {
    /// The STUN nonce key every node of this database shares: the stored one, or `fresh`
    /// stored now by the first node to ask.
    pub async fn fleet_nonce_key(&self, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let key = self
            .state
            .store
            .fleet_key("stun_nonce", &fresh, self.state.now())
            .await?;
        <[u8; 32]>::try_from(key.as_slice()).map_err(|_| StoreError::Corrupt("fleet_keys"))
    }

    /// Loads the directory, makes an admin key at first start (returned, to print once) and
    /// starts the meter and the periodic directory sync.
    pub async fn start(
        store: AnyStore,
        directory: Arc<Directory>,
        cfg: ApiConfig,
    ) -> Result<(Self, Option<String>), StoreError> {
        Self::start_with_clock(store, directory, cfg, Arc::new(SystemClock)).await
    }

    /// [`ControlPlane::start`] with the time read from `clock`.
    pub async fn start_with_clock(
        store: AnyStore,
        directory: Arc<Directory>,
        cfg: ApiConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Option<String>), StoreError> {
        let state = Arc::new(AppState::new(store, directory, cfg, clock));
        metrics::describe_counter!(
            "turnpike_api_auth_failures_total",
            "API requests with an invalid, expired or revoked key"
        );
        metrics::describe_counter!(
            "turnpike_api_auth_throttled_total",
            "API requests refused (429) because their address had too many failed keys"
        );
        describe_metrics();
        sync::reload(&state).await?;
        let mut generated = None;
        if state.cfg.admin_key_hash.is_none() && !state.store.has_admin_key().await? {
            generated = Some(tenants::new_admin_key(&state).await?);
        }
        let meter = Arc::new(meter::Meter::new());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let meter_task = tokio::spawn(meter.clone().run(state.clone(), stop_rx));
        let sync_task = tokio::spawn(sync::periodic(state.clone()));
        Ok((
            Self {
                state,
                meter,
                stop,
                meter_task,
                sync_task,
                fleet_task: std::sync::Mutex::new(None),
            },
            generated,
        ))
    }

    /// False once the SQLite database file was removed or replaced under the running server
    /// (see [`AppState::database_ok`]); for `/healthz`.
    pub fn database_ok(&self) -> bool {
        self.state.database_ok()
    }

    /// The relay driver's accounting sink.
    pub fn sink(&self) -> turnpike_proto::AccountingSink {
        self.meter.sink()
    }

    /// The API routes (without a fallback: the binary adds its own pages and one).
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Registers this node in the fleet's registry and starts its heartbeat (see
    /// [`fleet::run`]), once the relay's listeners are bound at `addrs`.
    pub fn start_fleet(&self, relay: Arc<turnpike_proto::Runtime>, addrs: fleet::NodeAddresses) {
        let task = tokio::spawn(fleet::run(
            self.state.clone(),
            relay,
            addrs,
            self.stop.subscribe(),
        ));
        *self.fleet_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the meter after a last flush and removes this node from the fleet's registry.
    /// Call after the relay workers stopped, so their final reports are in.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let fleet = self
            .fleet_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = fleet {
            let _ = t.await;
        }
        let _ = self.meter_task.await;
        self.sync_task.abort();
    }
}
