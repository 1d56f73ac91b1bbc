//! The audit log: who (which key) changed what. Never secrets.

use turnpike_store::{AuditEntry, Store};

use crate::state::{unix_now, AppState};

/// Records a change made with the key `actor` (`tenant_id`: the tenant whose log it goes to, or
/// the operator's). Failures are logged, not returned: the change is done.
pub async fn record(
    state: &AppState,
    actor: &str,
    tenant_id: Option<&str>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    let e = AuditEntry {
        id: format!("aud_{}", crate::keys::random_hex(12)),
        tenant_id: tenant_id.map(str::to_string),
        at: unix_now(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    };
    if let Err(err) = state.store.add_audit(&e).await {
        tracing::error!(error = %err, action, "audit log write failed");
    }
}
