//! The audit log: which key changed what, through which endpoint. Never secrets. The API
//! writes an entry per change it makes, with the parameters that matter for that endpoint.

use turnpike_store::TenantId;
use turnpike_store::{AuditEntry, Store};

use crate::keys::random_hex;
use crate::state::AppState;

/// Records a change made with the key `actor` (`tenant_id`: the tenant whose log it goes to, or
/// the operator's). Failures are logged, not returned: the change is done.
pub async fn record(
    state: &AppState,
    actor: &str,
    tenant_id: Option<&TenantId>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    let e = AuditEntry {
        id: format!("aud_{}", random_hex(12)),
        tenant_id: tenant_id.cloned(),
        at: state.now(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    };
    if let Err(err) = state.store.add_audit(&e).await {
        tracing::error!(error = %err, action, "audit log write failed");
    }
}
