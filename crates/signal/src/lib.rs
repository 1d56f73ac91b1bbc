//! WebSocket signalling tied to Turnpike's TURN credentials: tenant-scoped rooms carrying offers,
//! answers and ICE candidates between peers (opaque to the server), presence, polite/impolite
//! ranks for perfect negotiation, resume after a dropped socket, limits, admin endpoints, a
//! message-bus interface so several nodes share rooms, and the demo pages.
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
pub mod hub;
pub mod message;
pub mod rest;
pub mod token;
pub mod ws;

use std::sync::Arc;

use turnpike_api::AppState;
use turnpike_store::Store;

pub use bus::{Bus, InProcessBus, PgBus};
pub use hub::{Hub, SignalConfig};

/// Everything the signalling endpoints share.
pub struct Signal {
    pub hub: Arc<Hub>,
    pub api: Arc<AppState>,
    /// The tenant the demo pages mint tokens for, when the demo is enabled.
    pub demo_tenant: Option<String>,
}

impl Signal {
    /// Verifies a join token against its tenant's live shared secrets.
    pub async fn verify_token(
        &self,
        t: &str,
    ) -> Result<token::Claims, (&'static str, &'static str)> {
        let claims = token::peek(t).map_err(|_| ("bad_token", "the join token is malformed"))?;
        let secrets = turnpike_api::sync::tenant_secrets(&self.api, &claims.tid).await;
        token::verify(t, &secrets, turnpike_api::state::unix_now()).map_err(|e| match e {
            token::TokenError::Expired => ("token_expired", "the join token has expired"),
            _ => ("bad_token", "the join token is not valid"),
        })
    }

    /// The tenant's Origin allow-list (empty or unset: any origin).
    pub async fn origin_allowed(&self, tenant: &str, origin: Option<&str>) -> bool {
        let list: Vec<String> = match self
            .api
            .store
            .get_setting(tenant, "signal_allowed_origins")
            .await
        {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_default(),
            _ => vec![],
        };
        list.is_empty() || origin.is_some_and(|o| list.iter().any(|a| a == o))
    }

    /// ICE servers with a fresh ephemeral TURN credential for `identity`.
    pub async fn ice_servers(&self, tenant: &str, identity: &str) -> serde_json::Value {
        let req = turnpike_api::ephemeral::MintRequest {
            ttl: None,
            user_id: Some(identity.to_string()),
            tags: vec![],
        };
        match turnpike_api::ephemeral::mint(&self.api, tenant, None, &req).await {
            Ok(m) => serde_json::to_value(turnpike_api::ephemeral::ice_list(&self.api, &m))
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot mint TURN credentials for a join");
                serde_json::json!([])
            }
        }
    }
}

/// Starts the hub on `bus`.
pub fn start(
    api: Arc<AppState>,
    cfg: SignalConfig,
    bus: Bus,
    demo_tenant: Option<String>,
) -> Arc<Signal> {
    Arc::new(Signal {
        hub: Hub::new(cfg, bus),
        api,
        demo_tenant,
    })
}
