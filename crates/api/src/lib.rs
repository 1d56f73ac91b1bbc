//! The control plane: a multi-tenant REST API (`/v1`, OpenAPI at `/openapi.json`) for tenants,
//! keys, stored and ephemeral TURN credentials, ICE-server lists, usage, quotas, alerts and logs;
//! Metered-compatible endpoints (`/api/v1`, `/api/v2`); the meter that turns the relay's
//! accounting events into hourly usage; quota evaluation and alert delivery.
//!
//! What it does not do: serve TURN (the relay reads this crate's decisions through the
//! [`turnpike_proto::Directory`] it publishes) or bind sockets (the binary serves the router).

#![forbid(unsafe_code)]

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod auth_failures;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod denylist;
pub mod ephemeral;
pub mod error;
pub mod extract;
pub mod guard;
pub mod ice;
pub mod keys;
pub mod logs;
pub mod meter;
pub mod metered;
pub mod openapi;
pub mod quota;
pub mod settings;
pub mod state;
pub mod sync;
pub mod tenants;
pub mod usage;
pub mod util;
pub mod webhook_target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use turnpike_proto::Directory;
use turnpike_store::{AnyStore, KeyKind, NewApiKey, Store, StoreError};

pub use config::{ApiConfig, SmtpConfig};
pub use state::AppState;

/// The running control plane.
pub struct ControlPlane {
    pub state: Arc<AppState>,
    meter: Arc<meter::Meter>,
    stop: tokio::sync::watch::Sender<bool>,
    meter_task: tokio::task::JoinHandle<()>,
    sync_task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    /// Loads the directory, makes an admin key at first start (returned, to print once) and
    /// starts the meter and the periodic directory sync.
    pub async fn start(
        store: AnyStore,
        directory: Arc<Directory>,
        cfg: ApiConfig,
    ) -> Result<(Self, Option<String>), StoreError> {
        let state = Arc::new(AppState {
            store,
            directory,
            quota_state: Mutex::default(),
            buckets: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            notifier: alerts::Notifier::new(&cfg),
            cfg,
            sync_lock: tokio::sync::Mutex::new(()),
            node_id: keys::random_hex(6),
            seen_disconnects: Mutex::default(),
            last_miss_reload: Mutex::default(),
            auth_failures: auth_failures::AuthFailures::default(),
        });
        metrics::describe_counter!(
            "turnpike_api_auth_failures_total",
            "API requests with an invalid, expired or revoked key"
        );
        metrics::describe_counter!(
            "turnpike_api_auth_throttled_total",
            "API requests refused (429) because their address had too many failed keys"
        );
        sync::reload(&state).await?;
        let mut generated = None;
        if state.cfg.admin_key_hash.is_none() && !state.store.has_admin_key().await? {
            let key = keys::new_key(KeyKind::Admin);
            state
                .store
                .create_api_key(
                    &NewApiKey {
                        tenant_id: None,
                        kind: KeyKind::Admin,
                        credential_id: None,
                        allowed_origins: &[],
                        key_hash: &keys::hash_key(&key),
                        prefix: &keys::key_prefix(&key),
                        expires_at: None,
                    },
                    state::unix_now(),
                )
                .await?;
            generated = Some(key);
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

    /// Stops the meter after a last flush. Call after the relay workers stopped, so their final
    /// reports are in.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.meter_task.await;
        self.sync_task.abort();
    }
}

/// Every route of the control plane, behind the client guard (deny list; failed-key throttle):
/// see [`guard`]. Each module has its own route table.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body;
    let routes = Router::new()
        .merge(tenants::routes())
        .merge(credentials::routes())
        .merge(ephemeral::routes())
        .merge(usage::routes())
        .merge(settings::routes())
        .merge(logs::routes())
        .merge(denylist::routes())
        .merge(metered::routes())
        .merge(openapi::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    guard::guarded(state, routes)
}
