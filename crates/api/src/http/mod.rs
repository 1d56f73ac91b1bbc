//! The REST API over [`crate::domain`]: who may call what (the caller extractors of [`auth`]),
//! request bodies and parameters ([`extract`]), the one error shape ([`error`]), idempotent
//! creates, the client guard, and one route table per resource module, merged by [`router`].
//! Handlers turn requests into the domain's typed inputs, call one operation, record the change
//! in the audit log and shape the answer; they hold no rules of their own beyond the wire
//! format.

pub mod auth;
pub mod billing;
pub mod console;
pub mod credentials;
pub mod denylist;
pub mod ephemeral;
pub mod error;
pub mod extract;
pub mod guard;
pub mod idempotency;
pub mod logs;
pub mod metered;
pub mod metered_projects;
pub mod metered_wire;
pub mod nodes;
pub mod openapi;
pub mod principal;
pub mod session_auth;
pub mod settings;
pub mod tenants;
pub mod usage;
pub mod util;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::state::Shared;

/// Every route of the control plane, behind the client guard (deny list; failed-key throttle):
/// see [`guard`]. Each module has its own route table.
pub fn router(state: Shared) -> Router {
    let limit = state.cfg.max_body;
    let routes = Router::new()
        .merge(tenants::routes())
        .merge(credentials::routes())
        .merge(ephemeral::routes())
        .merge(usage::routes())
        .merge(billing::routes())
        .merge(settings::routes())
        .merge(logs::routes())
        .merge(denylist::routes())
        .merge(nodes::routes())
        .merge(metered::routes())
        .merge(metered_projects::routes())
        .merge(openapi::routes())
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    guard::guarded(state, routes)
}
