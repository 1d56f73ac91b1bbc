//! Quotas: per tenant (`scope` = `tenant`) or per credential (`scope` = its id): bytes per
//! period (UTC day or month), concurrent allocations, bitrate; thresholds in percent of the byte
//! quota with an action each. The meter evaluates them after every flush:
//!
//! - `notify`: webhook and/or email only (every fired threshold notifies, once per period);
//! - `throttle`: new and live allocations are capped at `throttle_bitrate_bps`;
//! - `refuse`: new allocations get 486 Allocation Quota Reached;
//! - `disconnect`: refuse, and live allocations are closed.
//!
//! The applying actions are recomputed from usage each time, so they lift by themselves when a
//! new period starts or the quota is raised.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use turnpike_proto::Disconnect;
use turnpike_store::{AlertEvent, Quota, QuotaPeriod, QuotaScope, Store, StoreError};
use turnpike_store::{CredentialId, TenantId};

use super::error::{DomainError, DomainResult};
use super::quota_state::{scope_key, QuotaState};
use super::sync;
use crate::calendar::period_bounds;
use crate::keys::random_hex;
use crate::state::AppState;

/// What a threshold does once usage reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Notify,
    Throttle,
    Refuse,
    Disconnect,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Throttle => "throttle",
            Self::Refuse => "refuse",
            Self::Disconnect => "disconnect",
        }
    }
}

/// An action at a percentage of the byte quota (stored as JSON with the quota).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Percent of `bytes_per_period` (1 to 1000).
    pub percent: u32,
    pub action: Action,
}

/// The bitrate of the `throttle` action when the quota names none.
const DEFAULT_THROTTLE_BPS: i64 = 64_000;

/// A quota as asked for.
#[derive(Debug, Clone, Default)]
pub struct QuotaSpec {
    /// `month` (default) or `day`, UTC.
    pub period: Option<String>,
    pub bytes_per_period: Option<i64>,
    pub max_allocations: Option<i64>,
    pub max_bitrate_bps: Option<i64>,
    pub throttle_bitrate_bps: Option<i64>,
    pub thresholds: Vec<Threshold>,
}

impl QuotaSpec {
    /// The stored quota of `scope` of `tenant_id`, if the values are acceptable.
    fn to_quota(&self, tenant_id: &TenantId, scope: QuotaScope) -> DomainResult<Quota> {
        let period = QuotaPeriod::parse(self.period.as_deref().unwrap_or("month"))
            .ok_or_else(|| DomainError::invalid("`period` must be `month` or `day`"))?;
        for (name, v) in [
            ("bytes_per_period", self.bytes_per_period),
            ("max_allocations", self.max_allocations),
            ("max_bitrate_bps", self.max_bitrate_bps),
            ("throttle_bitrate_bps", self.throttle_bitrate_bps),
        ] {
            if v.is_some_and(|x| x < 1) {
                return Err(DomainError::invalid(format!("`{name}` must be positive")));
            }
        }
        if self.max_allocations.is_some_and(|m| m > u32::MAX as i64) {
            return Err(DomainError::invalid("`max_allocations` is too large"));
        }
        if self.thresholds.len() > 10
            || self
                .thresholds
                .iter()
                .any(|t| !(1..=1000).contains(&t.percent))
        {
            return Err(DomainError::invalid(
                "at most 10 `thresholds`, each `percent` 1 to 1000",
            ));
        }
        if !self.thresholds.is_empty() && self.bytes_per_period.is_none() {
            return Err(DomainError::invalid("`thresholds` need `bytes_per_period`"));
        }
        Ok(Quota {
            tenant_id: tenant_id.clone(),
            scope,
            period,
            bytes_per_period: self.bytes_per_period,
            max_allocations: self.max_allocations,
            max_bitrate_bps: self.max_bitrate_bps,
            throttle_bitrate_bps: self.throttle_bitrate_bps,
            thresholds: serde_json::to_string(&self.thresholds).unwrap_or_else(|_| "[]".into()),
        })
    }
}

/// A stored quota's thresholds (none if unreadable).
pub fn thresholds(q: &Quota) -> Vec<Threshold> {
    serde_json::from_str(&q.thresholds).unwrap_or_default()
}

/// Sets the tenant-wide quota; it applies at once.
pub async fn put_tenant(
    state: &AppState,
    tenant_id: &TenantId,
    spec: &QuotaSpec,
) -> DomainResult<Quota> {
    put(state, tenant_id, QuotaScope::Tenant, spec).await
}

/// Sets the quota of one of the tenant's credentials (404 for another tenant's).
pub async fn put_credential(
    state: &AppState,
    tenant_id: &TenantId,
    credential_id: &CredentialId,
    spec: &QuotaSpec,
) -> DomainResult<Quota> {
    state.store.get_credential(tenant_id, credential_id).await?;
    let scope = QuotaScope::Credential(credential_id.clone());
    put(state, tenant_id, scope, spec).await
}

async fn put(
    state: &AppState,
    tenant_id: &TenantId,
    scope: QuotaScope,
    spec: &QuotaSpec,
) -> DomainResult<Quota> {
    let q = spec.to_quota(tenant_id, scope)?;
    state.store.put_quota(&q).await?;
    sync::after_change(state).await;
    evaluate(state, Some(&[tenant_id.to_string()].into())).await;
    Ok(q)
}

/// Removes a quota; what it applied lifts at once.
pub async fn delete(
    state: &AppState,
    tenant_id: &TenantId,
    scope: &QuotaScope,
) -> DomainResult<()> {
    state.store.delete_quota(tenant_id, scope).await?;
    evaluate(state, None).await;
    sync::after_change(state).await;
    Ok(())
}

/// The tenant's quotas.
pub async fn list(state: &AppState, tenant_id: &TenantId) -> DomainResult<Vec<Quota>> {
    Ok(state.store.list_quotas(Some(tenant_id)).await?)
}

/// The tenant's fired thresholds, oldest first.
pub async fn alerts(state: &AppState, tenant_id: &TenantId) -> DomainResult<Vec<AlertEvent>> {
    Ok(state.store.list_alerts(tenant_id).await?)
}

/// Bytes used by a quota's scope in its period containing `now`.
pub async fn used_bytes(state: &AppState, q: &Quota, now: i64) -> Result<i64, StoreError> {
    let (start, end) = period_bounds(q.period, now);
    let rows = state
        .store
        .usage(&q.tenant_id, start / 3600, (end + 3599) / 3600)
        .await?;
    Ok(rows
        .iter()
        .filter(|r| match &q.scope {
            QuotaScope::Tenant => true,
            QuotaScope::Credential(id) => r.credential_id == id.as_str(),
        })
        .map(|r| r.counters.total_bytes())
        .sum())
}

/// The thresholds `used` bytes reach, of a quota of `limit` bytes.
pub fn crossed(thresholds: &[Threshold], used: i64, limit: i64) -> Vec<Threshold> {
    thresholds
        .iter()
        // used / limit >= percent / 100, in integers.
        .filter(|t| (used as i128) * 100 >= (limit as i128) * t.percent as i128)
        .cloned()
        .collect()
}

/// Recomputes which actions apply, at the state's clock's time, and fires thresholds newly
/// crossed. `tenants`: only these tenants' quotas were touched (others keep their state);
/// `None`: all. Failures are logged (the next evaluation retries).
pub async fn evaluate(state: &AppState, tenants: Option<&HashSet<String>>) {
    if let Err(e) = evaluate_at(state, tenants, state.now()).await {
        tracing::error!(error = %e, "quota evaluation failed");
    }
}

async fn evaluate_at(
    state: &AppState,
    tenants: Option<&HashSet<String>>,
    now: i64,
) -> Result<(), StoreError> {
    let quotas = state.store.list_quotas(None).await?;
    let mut next = state
        .quota_state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let live: HashSet<String> = quotas
        .iter()
        .map(|q| scope_key(&q.tenant_id, &q.scope))
        .collect();
    next.refused.retain(|k| live.contains(k));
    next.throttled.retain(|k, _| live.contains(k));
    let mut disconnect = Vec::new();
    for q in &quotas {
        if tenants.is_some_and(|t| !t.contains(q.tenant_id.as_str())) {
            continue;
        }
        let key = scope_key(&q.tenant_id, &q.scope);
        next.refused.remove(&key);
        next.throttled.remove(&key);
        let Some(limit) = q.bytes_per_period.filter(|l| *l > 0) else {
            continue;
        };
        let used = used_bytes(state, q, now).await?;
        for t in crossed(&thresholds(q), used, limit) {
            apply(&mut next, &key, q, t.action);
            if fire(state, q, &t, used, limit, now).await? && t.action == Action::Disconnect {
                disconnect.push(q.clone());
            }
        }
    }
    publish(state, next, &disconnect).await;
    Ok(())
}

/// Records what `action` makes apply to the scope `key`.
fn apply(next: &mut QuotaState, key: &str, q: &Quota, action: Action) {
    match action {
        Action::Notify => {}
        Action::Throttle => {
            let bps = q
                .throttle_bitrate_bps
                .unwrap_or(DEFAULT_THROTTLE_BPS)
                .max(1) as u64;
            next.throttled.insert(key.to_string(), bps);
        }
        Action::Refuse | Action::Disconnect => {
            next.refused.insert(key.to_string());
        }
    }
}

/// Records a crossed threshold and notifies the tenant, unless it fired already this period;
/// true if it fired now.
async fn fire(
    state: &AppState,
    q: &Quota,
    t: &Threshold,
    used: i64,
    limit: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let (period_start, _) = period_bounds(q.period, now);
    let event = AlertEvent {
        id: format!("evt_{}", random_hex(12)),
        tenant_id: q.tenant_id.clone(),
        scope: q.scope.clone(),
        period_start,
        percent: t.percent as i64,
        action: t.action.as_str().into(),
        bytes_used: used,
        bytes_quota: limit,
        at: now,
    };
    if !state.store.record_alert(&event).await? {
        return Ok(false);
    }
    tracing::info!(tenant = %q.tenant_id, scope = %q.scope, percent = t.percent, action = t.action.as_str(), "quota threshold reached");
    metrics::counter!("turnpike_quota_thresholds_fired_total", "action" => t.action.as_str())
        .increment(1);
    state.notifier.send(&state.store, event).await;
    Ok(true)
}

/// Installs the new quota state (republishing the directory if it changed) and closes the
/// allocations of scopes whose `disconnect` threshold fired.
async fn publish(state: &AppState, next: QuotaState, disconnect: &[Quota]) {
    metrics::gauge!("turnpike_quota_refused_scopes").set(next.refused.len() as f64);
    metrics::gauge!("turnpike_quota_throttled_scopes").set(next.throttled.len() as f64);
    let changed = {
        let mut cur = state.quota_state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *cur != next;
        *cur = next;
        changed
    };
    if changed {
        sync::after_change(state).await;
    }
    for q in disconnect {
        let d = match &q.scope {
            QuotaScope::Tenant => Disconnect::Tenant(q.tenant_id.to_string()),
            QuotaScope::Credential(id) => Disconnect::Credential(id.to_string()),
        };
        sync::disconnect(state, d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(percent: u32, action: Action) -> Threshold {
        Threshold { percent, action }
    }

    #[test]
    fn thresholds_are_crossed_at_their_percentage_exactly() {
        let all = [
            t(50, Action::Notify),
            t(100, Action::Refuse),
            t(150, Action::Disconnect),
        ];
        assert!(crossed(&all, 499, 1000).is_empty());
        assert_eq!(crossed(&all, 500, 1000), vec![t(50, Action::Notify)]);
        assert_eq!(crossed(&all, 1000, 1000).len(), 2);
        assert_eq!(crossed(&all, 1500, 1000).len(), 3);
        // No overflow with the largest quotas.
        assert_eq!(crossed(&all, i64::MAX, i64::MAX).len(), 2);
    }

    #[test]
    fn specs_are_checked() {
        let ok = QuotaSpec {
            bytes_per_period: Some(10),
            thresholds: vec![t(80, Action::Notify)],
            ..Default::default()
        };
        let q = ok
            .to_quota(&"ten_1".into(), QuotaScope::Tenant)
            .expect("a valid spec");
        assert_eq!(q.period, QuotaPeriod::Month);
        assert_eq!(thresholds(&q), vec![t(80, Action::Notify)]);
        for bad in [
            QuotaSpec {
                period: Some("week".into()),
                ..Default::default()
            },
            QuotaSpec {
                bytes_per_period: Some(0),
                ..Default::default()
            },
            QuotaSpec {
                max_allocations: Some(u32::MAX as i64 + 1),
                ..Default::default()
            },
            QuotaSpec {
                thresholds: vec![t(80, Action::Notify)],
                ..Default::default()
            },
            QuotaSpec {
                bytes_per_period: Some(1),
                thresholds: vec![t(0, Action::Notify)],
                ..Default::default()
            },
        ] {
            assert!(
                matches!(
                    bad.to_quota(&"ten_1".into(), QuotaScope::Tenant),
                    Err(DomainError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }
}
