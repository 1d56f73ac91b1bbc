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
use turnpike_store::{AlertEvent, Quota, Store};
use utoipa::ToSchema;

use crate::state::{scope_key, unix_now, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Percent of `bytes_per_period` (1 to 1000).
    pub percent: u32,
    pub action: Action,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `[start, end)` in unix seconds of the `day` or `month` (UTC) containing `now`.
pub fn period_bounds(period: &str, now: i64) -> (i64, i64) {
    let day = now.div_euclid(86_400);
    if period == "day" {
        return (day * 86_400, (day + 1) * 86_400);
    }
    let (y, m, _) = civil_from_days(day);
    let start = days_from_civil(y, m, 1);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start * 86_400, days_from_civil(ny, nm, 1) * 86_400)
}

/// `YYYY-MM-DD` of a unix time.
pub fn date_string(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` to the unix time of its midnight (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

/// Bytes used by a quota's scope in its current period.
pub async fn used_bytes(
    state: &AppState,
    q: &Quota,
    now: i64,
) -> Result<i64, turnpike_store::StoreError> {
    let (start, end) = period_bounds(&q.period, now);
    let rows = state
        .store
        .usage(&q.tenant_id, start / 3600, (end + 3599) / 3600)
        .await?;
    Ok(rows
        .iter()
        .filter(|r| q.scope == "tenant" || r.credential_id == q.scope)
        .map(|r| r.counters.total_bytes())
        .sum())
}

/// Recomputes which actions apply and fires thresholds newly crossed. `tenants`: only these
/// tenants' quotas were touched (others keep their state); `None`: all.
pub async fn evaluate(state: &AppState, tenants: Option<&HashSet<String>>) {
    if let Err(e) = evaluate_inner(state, tenants).await {
        tracing::error!(error = %e, "quota evaluation failed");
    }
}

async fn evaluate_inner(
    state: &AppState,
    tenants: Option<&HashSet<String>>,
) -> Result<(), turnpike_store::StoreError> {
    let now = unix_now();
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
        if tenants.is_some_and(|t| !t.contains(&q.tenant_id)) {
            continue;
        }
        let key = scope_key(&q.tenant_id, &q.scope);
        next.refused.remove(&key);
        next.throttled.remove(&key);
        let Some(limit) = q.bytes_per_period.filter(|l| *l > 0) else {
            continue;
        };
        let used = used_bytes(state, q, now).await?;
        let thresholds: Vec<Threshold> = serde_json::from_str(&q.thresholds).unwrap_or_default();
        let (period_start, _) = period_bounds(&q.period, now);
        for t in thresholds {
            // used / limit >= percent / 100, in integers.
            if (used as i128) * 100 < (limit as i128) * t.percent as i128 {
                continue;
            }
            match t.action {
                Action::Notify => {}
                Action::Throttle => {
                    let bps = q.throttle_bitrate_bps.unwrap_or(64_000).max(1) as u64;
                    next.throttled.insert(key.clone(), bps);
                }
                Action::Refuse | Action::Disconnect => {
                    next.refused.insert(key.clone());
                }
            }
            let event = AlertEvent {
                id: format!("evt_{}", crate::keys::random_hex(12)),
                tenant_id: q.tenant_id.clone(),
                scope: q.scope.clone(),
                period_start,
                percent: t.percent as i64,
                action: t.action.as_str().into(),
                bytes_used: used,
                bytes_quota: limit,
                at: now,
            };
            if state.store.record_alert(&event).await? {
                tracing::info!(tenant = %q.tenant_id, scope = %q.scope, percent = t.percent, action = t.action.as_str(), "quota threshold reached");
                if t.action == Action::Disconnect {
                    disconnect.push(q.clone());
                }
                state.notifier.send(&state.store, event).await;
            }
        }
    }
    let changed = {
        let mut cur = state.quota_state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *cur != next;
        *cur = next;
        changed
    };
    if changed {
        crate::sync::after_change(state).await;
    }
    for q in disconnect {
        let d = if q.scope == "tenant" {
            turnpike_proto::Disconnect::Tenant(q.tenant_id.clone())
        } else {
            turnpike_proto::Disconnect::Credential(q.scope.clone())
        };
        crate::sync::disconnect(state, d).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 24), 20_781);
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        // 2026-11-24T12:00:00Z: November 2026.
        let now = 20_781 * 86_400 + 43_200;
        assert_eq!(
            period_bounds("month", now),
            (
                days_from_civil(2026, 11, 1) * 86_400,
                days_from_civil(2026, 12, 1) * 86_400
            )
        );
        assert_eq!(
            period_bounds("day", now),
            (20_781 * 86_400, 20_782 * 86_400)
        );
        let dec = days_from_civil(2026, 12, 31) * 86_400;
        assert_eq!(
            period_bounds("month", dec).1,
            days_from_civil(2027, 1, 1) * 86_400
        );
        assert_eq!(date_string(now), "2026-11-24");
        assert_eq!(parse_date("2026-11-24"), Some(20_781 * 86_400));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("x"), None);
    }
}
