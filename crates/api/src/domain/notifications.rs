//! Where a tenant's alerts go: a webhook (URL and signing secret) and an email address. The
//! webhook's host must be public (see [`crate::webhook_target`]); the secret is made when a
//! webhook is first set (or on request) and returned only then.

use turnpike_store::TenantId;
use turnpike_store::{NotificationSettings, Store, WebhookFormat};

use super::error::{DomainError, DomainResult};
use super::validate;
use crate::keys::random_token;
use crate::state::AppState;
use crate::webhook_target;

/// The settings as asked for: what is not given is removed.
#[derive(Debug, Clone, Default)]
pub struct NotificationSpec {
    pub webhook_url: Option<String>,
    pub email_to: Option<String>,
    /// Make a new webhook secret even if one exists.
    pub rotate_secret: bool,
    /// The webhook body: `turnpike` (default) or `metered` (Metered's project event).
    pub format: Option<String>,
}

/// Stores the tenant's settings; returns them and whether the webhook secret was just made
/// (then it is to be shown, this once).
pub async fn put(
    state: &AppState,
    tenant_id: &TenantId,
    spec: &NotificationSpec,
) -> DomainResult<(NotificationSettings, bool)> {
    if let Some(u) = &spec.webhook_url {
        validate::text("webhook_url", u, 500)?;
        webhook_target::check_url(u, &state.cfg.danger_allow_webhook_ranges)
            .await
            .map_err(DomainError::Invalid)?;
    }
    if let Some(e) = &spec.email_to {
        validate::text("email_to", e, 254)?;
        if e.parse::<lettre::Address>().is_err() {
            return Err(DomainError::invalid("`email_to` is not an email address"));
        }
    }
    let webhook_format = match spec.format.as_deref() {
        None => WebhookFormat::Turnpike,
        Some(f) => WebhookFormat::parse(f)
            .ok_or_else(|| DomainError::invalid("`format` must be `turnpike` or `metered`"))?,
    };
    let old_secret = state
        .store
        .get_notifications(tenant_id)
        .await?
        .and_then(|o| o.webhook_secret);
    let (secret, fresh) = match (&spec.webhook_url, old_secret, spec.rotate_secret) {
        (None, _, _) => (None, false),
        (Some(_), Some(s), false) => (Some(s), false),
        (Some(_), _, _) => (Some(format!("whsec_{}", random_token(24))), true),
    };
    let n = NotificationSettings {
        tenant_id: tenant_id.clone(),
        webhook_url: spec.webhook_url.clone(),
        webhook_secret: secret,
        email_to: spec.email_to.clone(),
        webhook_format,
    };
    state.store.put_notifications(&n).await?;
    Ok((n, fresh))
}

/// The tenant's settings (none set: all empty).
pub async fn get(state: &AppState, tenant_id: &TenantId) -> DomainResult<NotificationSettings> {
    Ok(state
        .store
        .get_notifications(tenant_id)
        .await?
        .unwrap_or_default())
}
