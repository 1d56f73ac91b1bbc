//! The control plane's operations, apart from HTTP: tenants and their keys and shared secrets,
//! stored and ephemeral credentials, quotas and their evaluation, the meter, alerts, usage
//! reports, the client deny list, the audit log, and the directory sync that publishes all of
//! it to the relay.
//!
//! Operations take typed inputs and the [`AppState`](crate::state::AppState) (store, directory,
//! settings, clock), read the time from the state's [`Clock`](crate::clock::Clock), and fail
//! with [`DomainError`](error::DomainError). Nothing here imports axum: who may call an
//! operation, and how its result and errors look on the wire, is the `http` layer's business.

pub mod alerts;
pub mod audit;
pub mod billing;
pub mod credentials;
pub mod denylist;
pub mod ephemeral;
pub mod error;
pub mod feed;
pub mod logs;
pub mod meter;
pub mod notifications;
pub mod projects;
pub mod quota;
pub mod quota_state;
pub mod sessions;
pub mod sync;
pub mod sync_state;
pub mod tenants;
pub mod usage;
pub mod validate;
