//! Checks and auditing for handlers outside this crate (signalling's REST endpoints), in the
//! API's error type. The API's own handlers use the extractors of [`super::auth`] and the
//! operations of [`crate::domain`].

use super::auth::Principal;
use super::error::ApiResult;
use crate::domain::{audit, validate};
use crate::state::AppState;
use turnpike_store::TenantId;

/// Printable, no control characters, at most `max` characters.
pub fn check_text(field: &str, v: &str, max: usize) -> ApiResult<()> {
    Ok(validate::text(field, v, max)?)
}

/// Identifiers (usernames, user ids): letters, digits and `._@+-`.
pub fn check_ident(field: &str, v: &str, max: usize) -> ApiResult<()> {
    Ok(validate::ident(field, v, max)?)
}

/// At most 16 tags of 1 to 64 printable characters.
pub fn check_tags(tags: &[String]) -> ApiResult<()> {
    Ok(validate::tags(tags)?)
}

/// Records a change made by `who` in the audit log of `tenant_id` (or the operator's).
pub async fn audit(
    state: &AppState,
    who: &Principal,
    tenant_id: Option<&TenantId>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    audit::record(state, who.key_id(), tenant_id, action, target, detail).await;
}
