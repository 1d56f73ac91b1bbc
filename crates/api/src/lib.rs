//! The control plane: a multi-tenant REST API (`/v1`, OpenAPI at `/openapi.json`) for tenants,
//! keys, stored and ephemeral TURN credentials, ICE-server lists, usage, quotas, alerts and logs;
//! Metered-compatible endpoints (`/api/v1`, `/api/v2`); the meter that turns the relay's
//! accounting events into hourly usage; quota evaluation and alert delivery.
//!
//! What it does not do: serve TURN (the relay reads this crate's decisions through the
//! [`turnpike_proto::Directory`] it publishes) or bind sockets (the binary serves the router).

#![forbid(unsafe_code)]

pub mod alerts;
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
use axum::routing::{delete, get, post, put};
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
/// see [`guard`].
pub fn router(state: Arc<AppState>) -> Router {
    use credentials as c;
    use ephemeral as e;
    let limit = state.cfg.max_body;
    let routes = Router::new()
        .route(
            "/v1/tenants",
            post(tenants::create_tenant).get(tenants::list_tenants),
        )
        .route(
            "/v1/tenants/{id}",
            get(tenants::get_tenant).delete(tenants::delete_tenant),
        )
        .route(
            "/v1/tenants/{id}/keys/rotate",
            post(tenants::admin_rotate_key),
        )
        .route("/v1/keys", get(tenants::list_keys))
        .route("/v1/keys/rotate", post(tenants::tenant_rotate_key))
        .route("/v1/keys/{id}", delete(tenants::revoke_key))
        .route(
            "/v1/shared-secrets/rotate",
            post(tenants::rotate_shared_secret),
        )
        .route(
            "/v1/credentials",
            post(c::create_credential)
                .get(c::list_credentials)
                .delete(c::delete_by_label),
        )
        .route(
            "/v1/credentials/{id}",
            get(c::get_credential)
                .patch(c::update_credential)
                .delete(c::delete_credential),
        )
        .route(
            "/v1/credentials/{id}/publishable-keys",
            post(c::create_publishable_key),
        )
        .route(
            "/v1/credentials/{id}/quota",
            put(settings::put_credential_quota),
        )
        .route("/v1/ephemeral-credentials", post(e::create_ephemeral))
        .route("/v1/revocations", post(e::revoke).get(e::list_revocations))
        .route(
            "/v1/ice-servers",
            get(e::ice_servers).options(e::ice_preflight),
        )
        .route("/v1/usage", get(usage::get_usage))
        .route("/v1/usage/current", get(usage::get_current))
        .route("/v1/quota", put(settings::put_tenant_quota))
        .route("/v1/quotas", get(settings::list_quotas))
        .route("/v1/quotas/{scope}", delete(settings::delete_quota))
        .route(
            "/v1/notifications",
            put(settings::put_notifications).get(settings::get_notifications),
        )
        .route("/v1/alerts", get(settings::list_alerts))
        .route("/v1/audit", get(logs::audit_log))
        .route(
            "/v1/deny-list",
            get(denylist::list_denied).post(denylist::add_denied),
        )
        .route("/v1/deny-list/{id}", delete(denylist::delete_denied))
        .route("/v1/allocations", get(logs::allocation_log))
        .route(
            "/api/v1/turn/credential",
            post(metered::create).delete(metered::delete),
        )
        .route("/api/v1/turn/credentials", get(metered::ice_servers))
        .route("/api/v1/turn/credential/enable", post(metered::enable))
        .route("/api/v1/turn/credential/disable", post(metered::disable))
        .route("/api/v2/turn/credentials", get(metered::list))
        .route(
            "/api/v2/turn/credential/by_label",
            delete(metered::delete_by_label),
        )
        .route("/api/v1/turn/current_usage", get(metered::current_usage))
        .route(
            "/api/v2/turn/current_usage_by_user",
            get(metered::current_usage_by_user),
        )
        .route(
            "/api/v2/turn/usage_daily_by_user",
            get(metered::usage_daily_by_user),
        )
        .route("/openapi.json", get(openapi::serve))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    guard::guarded(state, routes)
}
