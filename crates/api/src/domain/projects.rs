//! Projects, as Metered's project API has them: a project is a tenant of its own (credentials,
//! shared secret, usage, quota, notifications) whose parent is the tenant that made it. The
//! parent manages it (with its secret key); the project's own key (`KeyKind::Project`, stored by
//! hash like every key) may use only the project endpoints of the Metered-compatible API, for
//! that project. Deleting the parent deletes its projects; projects have no projects.
//!
//! A project's settings map onto Turnpike's: `quotaInBytes` is the tenant quota per UTC month
//! (none when 0); `quotaExceededAction` its thresholds (`notify`: notify at 80 % and 100 %;
//! `disable`: notify at 80 %, refuse new allocations at 100 %; `none`: no threshold, usage still
//! counted); `webhookUrl` and `notificationEmails` the tenant's notification settings, with the
//! webhook sending Metered's body ([`WebhookFormat::Metered`]).

use turnpike_proto::Disconnect;
use turnpike_store::TenantId;
use turnpike_store::{
    KeyKind, NotificationSettings, QuotaScope, Store, StoreError, Tenant, WebhookFormat,
};

use super::error::{DomainError, DomainResult};
use super::quota::{self, Action, QuotaSpec, Threshold};
use super::tenants::{self, TenantName};
use super::{sync, validate};
use crate::keys::random_token;
use crate::state::AppState;
use crate::webhook_target;

/// The smallest quota a project may have (1 MiB), as Metered's.
pub const MIN_QUOTA: i64 = 1 << 20;

/// At most this many notification addresses, as Metered's.
pub const MAX_EMAILS: usize = 10;

/// Where a project's `quotaExceededAction` is kept (a tenant setting).
const ACTION_SETTING: &str = "metered.quota_exceeded_action";

/// What happens when a project's usage reaches its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExceededAction {
    /// Notify at 80 % and 100 %; credentials keep working.
    Notify,
    /// No notification, no action.
    None,
    /// Notify at 80 %; at 100 % new allocations are refused (486).
    #[default]
    Disable,
}

impl ExceededAction {
    /// Metered's names, and the spellings its responses sometimes use.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "notify" | "NOTIFY" | "NOTIFY_ONLY" | "notify_only" => Some(Self::Notify),
            "none" | "NONE" => Some(Self::None),
            "disable" | "DISABLE" => Some(Self::Disable),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::None => "none",
            Self::Disable => "disable",
        }
    }

    /// The quota thresholds that carry it out.
    pub fn thresholds(self) -> Vec<Threshold> {
        let t = |percent, action| Threshold { percent, action };
        match self {
            Self::Notify => vec![t(80, Action::Notify), t(100, Action::Notify)],
            Self::None => Vec::new(),
            Self::Disable => vec![t(80, Action::Notify), t(100, Action::Refuse)],
        }
    }
}

/// A project as asked for; what is not given is left as it is (or its default, at creation).
#[derive(Debug, Clone, Default)]
pub struct ProjectSpec {
    pub name: Option<String>,
    /// Bytes per month; 0 removes the quota.
    pub quota_bytes: Option<i64>,
    /// `Some(None)` removes the webhook.
    pub webhook_url: Option<Option<String>>,
    pub notification_emails: Option<Vec<String>>,
    pub exceeded_action: Option<String>,
}

/// A project and its settings.
#[derive(Debug, Clone)]
pub struct Project {
    pub tenant: Tenant,
    /// 0: no quota.
    pub quota_bytes: i64,
    pub webhook_url: Option<String>,
    pub notification_emails: Vec<String>,
    pub exceeded_action: ExceededAction,
}

/// A new project, its key (shown only now) and its webhook's signing secret (when one was
/// made).
#[derive(Debug)]
pub struct Created {
    pub project: Project,
    pub api_key: String,
    pub webhook_secret: Option<String>,
}

/// Checked values of a spec.
struct Checked {
    name: Option<TenantName>,
    quota_bytes: Option<i64>,
    webhook_url: Option<Option<String>>,
    emails: Option<Vec<String>>,
    action: Option<ExceededAction>,
}

async fn check(state: &AppState, spec: &ProjectSpec) -> DomainResult<Checked> {
    let name = match &spec.name {
        Some(n) if n.trim().is_empty() || n.chars().count() >= 100 => {
            return Err(DomainError::invalid(
                "projectName must be a non-empty string of less than 100 characters",
            ))
        }
        Some(n) => Some(TenantName::parse(n)?),
        None => None,
    };
    if let Some(q) = spec.quota_bytes {
        if q != 0 && q < MIN_QUOTA {
            return Err(DomainError::invalid(format!(
                "quotaInBytes must be 0 (no quota) or at least {MIN_QUOTA} (1 MiB)"
            )));
        }
    }
    if let Some(Some(u)) = &spec.webhook_url {
        validate::text("webhookUrl", u, 500)?;
        if !u.starts_with("https://") {
            return Err(DomainError::invalid("webhookUrl must be an https URL"));
        }
        webhook_target::check_url(u, &state.cfg.danger_allow_webhook_ranges)
            .await
            .map_err(|m| DomainError::Invalid(m.replace("`webhook_url`", "webhookUrl")))?;
    }
    if let Some(emails) = &spec.notification_emails {
        if emails.len() > MAX_EMAILS {
            return Err(DomainError::invalid(format!(
                "at most {MAX_EMAILS} notificationEmails"
            )));
        }
        for e in emails {
            validate::text("notificationEmails[]", e, 254)?;
            if e.contains(',') || e.parse::<lettre::Address>().is_err() {
                return Err(DomainError::invalid(format!(
                    "notificationEmails: {e:?} is not an email address"
                )));
            }
        }
    }
    let action = match &spec.exceeded_action {
        Some(a) => Some(ExceededAction::parse(a).ok_or_else(|| {
            DomainError::invalid("quotaExceededAction must be notify, none or disable")
        })?),
        None => None,
    };
    Ok(Checked {
        name,
        quota_bytes: spec.quota_bytes,
        webhook_url: spec.webhook_url.clone(),
        emails: spec.notification_emails.clone(),
        action,
    })
}

/// Creates a project of `parent_id` with its key.
pub async fn create(
    state: &AppState,
    parent_id: &TenantId,
    spec: &ProjectSpec,
) -> DomainResult<Created> {
    let c = check(state, spec).await?;
    let name = c
        .name
        .as_ref()
        .ok_or_else(|| DomainError::invalid("projectName is required"))?;
    let tenant = tenants::create_child(state, parent_id, name).await?;
    let settings = Project {
        tenant,
        quota_bytes: c.quota_bytes.unwrap_or(0),
        webhook_url: c.webhook_url.clone().flatten(),
        notification_emails: c.emails.clone().unwrap_or_default(),
        exceeded_action: c.action.unwrap_or_default(),
    };
    let webhook_secret = write(state, &settings).await?;
    let api_key = new_project_key(state, &settings.tenant.id).await?;
    Ok(Created {
        project: settings,
        api_key,
        webhook_secret,
    })
}

/// Changes what `spec` gives; returns the project and its webhook's signing secret if one was
/// made now.
pub async fn update(
    state: &AppState,
    parent_id: &TenantId,
    id: &TenantId,
    spec: &ProjectSpec,
) -> DomainResult<(Project, Option<String>)> {
    let c = check(state, spec).await?;
    let mut p = get(state, parent_id, id).await?;
    if let Some(name) = &c.name {
        tenants::rename(state, id, name).await?;
        p.tenant = state.store.get_tenant(id).await?;
    }
    if let Some(q) = c.quota_bytes {
        p.quota_bytes = q;
    }
    if let Some(u) = c.webhook_url {
        p.webhook_url = u;
    }
    if let Some(e) = c.emails {
        p.notification_emails = e;
    }
    if let Some(a) = c.action {
        p.exceeded_action = a;
    }
    let secret = write(state, &p).await?;
    Ok((p, secret))
}

/// Stores a project's quota, action and notification settings; returns the webhook's signing
/// secret when it was made now.
async fn write(state: &AppState, p: &Project) -> DomainResult<Option<String>> {
    let id = &p.tenant.id;
    state
        .store
        .put_setting(id, ACTION_SETTING, p.exceeded_action.as_str())
        .await?;
    let old = state.store.get_notifications(id).await?;
    let old_secret = old.and_then(|o| o.webhook_secret);
    let (secret, fresh) = match (&p.webhook_url, old_secret) {
        (None, _) => (None, None),
        (Some(_), Some(s)) => (Some(s), None),
        (Some(_), None) => {
            let s = format!("whsec_{}", random_token(24));
            (Some(s.clone()), Some(s))
        }
    };
    let emails = (!p.notification_emails.is_empty()).then(|| p.notification_emails.join(", "));
    state
        .store
        .put_notifications(&NotificationSettings {
            tenant_id: id.clone(),
            webhook_url: p.webhook_url.clone(),
            webhook_secret: secret,
            email_to: emails,
            webhook_format: WebhookFormat::Metered,
        })
        .await?;
    if p.quota_bytes > 0 {
        let spec = QuotaSpec {
            bytes_per_period: Some(p.quota_bytes),
            thresholds: p.exceeded_action.thresholds(),
            ..Default::default()
        };
        quota::put_tenant(state, id, &spec).await?;
    } else {
        match quota::delete(state, id, &QuotaScope::Tenant).await {
            Ok(()) | Err(DomainError::Store(StoreError::NotFound)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(fresh)
}

/// A new key for the project; its previous keys stop working at once. Returns the key (shown
/// only now).
pub async fn regenerate_key(
    state: &AppState,
    parent_id: &TenantId,
    id: &TenantId,
) -> DomainResult<String> {
    get(state, parent_id, id).await?;
    state
        .store
        .expire_api_keys(id, KeyKind::Project, state.now())
        .await?;
    new_project_key(state, id).await
}

async fn new_project_key(state: &AppState, tenant_id: &TenantId) -> DomainResult<String> {
    let (key, _) = tenants::new_tenant_key(state, tenant_id, KeyKind::Project).await?;
    Ok(key)
}

fn not_found() -> DomainError {
    DomainError::not_found("Project not found")
}

/// The project `id` of `parent_id` (not found for anything else, another tenant's project
/// included).
pub async fn get(state: &AppState, parent_id: &TenantId, id: &TenantId) -> DomainResult<Project> {
    let t = match state.store.get_tenant(id).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if t.parent_id.as_ref() != Some(parent_id) {
        return Err(not_found());
    }
    read(state, t).await
}

/// The projects of `parent_id`, oldest first.
pub async fn list(state: &AppState, parent_id: &TenantId) -> DomainResult<Vec<Project>> {
    let mut out = Vec::new();
    for t in state.store.child_tenants(parent_id).await? {
        out.push(read(state, t).await?);
    }
    Ok(out)
}

async fn read(state: &AppState, tenant: Tenant) -> DomainResult<Project> {
    let id = &tenant.id;
    let quota_bytes = state
        .store
        .list_quotas(Some(id))
        .await?
        .into_iter()
        .find(|q| q.scope == QuotaScope::Tenant)
        .and_then(|q| q.bytes_per_period)
        .unwrap_or(0);
    let exceeded_action = state
        .store
        .get_setting(id, ACTION_SETTING)
        .await?
        .and_then(|a| ExceededAction::parse(&a))
        .unwrap_or_default();
    let n = state.store.get_notifications(id).await?.unwrap_or_default();
    let notification_emails = n
        .email_to
        .map(|e| e.split(',').map(|a| a.trim().to_string()).collect())
        .unwrap_or_default();
    Ok(Project {
        tenant,
        quota_bytes,
        webhook_url: n.webhook_url,
        notification_emails,
        exceeded_action,
    })
}

/// Deletes a project with its credentials and keys, and closes its live allocations.
pub async fn delete(state: &AppState, parent_id: &TenantId, id: &TenantId) -> DomainResult<()> {
    get(state, parent_id, id).await?;
    state.store.delete_tenant(id).await?;
    sync::disconnect(state, Disconnect::Tenant(id.to_string())).await;
    sync::after_change(state).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceeded_actions_map_onto_thresholds() {
        assert_eq!(
            ExceededAction::parse("NOTIFY_ONLY"),
            Some(ExceededAction::Notify)
        );
        assert_eq!(
            ExceededAction::parse("DISABLE"),
            Some(ExceededAction::Disable)
        );
        assert_eq!(ExceededAction::parse("none"), Some(ExceededAction::None));
        assert_eq!(ExceededAction::parse("refuse"), None);
        assert_eq!(ExceededAction::default(), ExceededAction::Disable);
        assert!(ExceededAction::None.thresholds().is_empty());
        let d = ExceededAction::Disable.thresholds();
        assert_eq!(
            d.iter().map(|t| (t.percent, t.action)).collect::<Vec<_>>(),
            vec![(80, Action::Notify), (100, Action::Refuse)]
        );
        let n = ExceededAction::Notify.thresholds();
        assert!(n.iter().all(|t| t.action == Action::Notify) && n.len() == 2);
    }
}
