//! Usage reports from the hourly counters: any time range, grouped by hour, day or month and
//! by credential, user id or tag; and the current billing period against the tenant's quota.
//!
//! `total_bytes` is the sum of the four legs (client→server, server→peer, peer→server,
//! server→client): everything relayed traffic made cross the server's interfaces. Client legs
//! include TURN framing (4-byte ChannelData header and padding, or the Send/Data indication);
//! peer legs are payload only. Control messages are not counted.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_store::{Counters, Store, UsageRow};
use utoipa::{IntoParams, ToSchema};

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::quota::{civil_from_days, days_from_civil, period_bounds};
use crate::state::{unix_now, AppState, Shared};

/// Usage reports.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/usage", get(get_usage))
        .route("/v1/usage/current", get(get_current))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Start, unix seconds (default: 30 days ago). Rounded down to the hour.
    pub from: Option<i64>,
    /// End, unix seconds, exclusive (default: now). Rounded up to the hour.
    pub to: Option<i64>,
    /// `hour`, `day` (default) or `month`.
    pub group_by: Option<String>,
    /// `none` (default), `credential`, `user` or `tag`.
    pub by: Option<String>,
}

#[derive(Serialize, ToSchema, Default, Clone, Copy)]
pub struct CountersOut {
    pub total_bytes: i64,
    pub client_to_server_bytes: i64,
    pub client_to_server_packets: i64,
    pub server_to_peer_bytes: i64,
    pub server_to_peer_packets: i64,
    pub peer_to_server_bytes: i64,
    pub peer_to_server_packets: i64,
    pub server_to_client_bytes: i64,
    pub server_to_client_packets: i64,
    pub allocations: i64,
    pub allocation_seconds: i64,
}

impl From<Counters> for CountersOut {
    fn from(c: Counters) -> Self {
        Self {
            total_bytes: c.total_bytes(),
            client_to_server_bytes: c.c2s_bytes,
            client_to_server_packets: c.c2s_packets,
            server_to_peer_bytes: c.s2p_bytes,
            server_to_peer_packets: c.s2p_packets,
            peer_to_server_bytes: c.p2s_bytes,
            peer_to_server_packets: c.p2s_packets,
            server_to_client_bytes: c.s2c_bytes,
            server_to_client_packets: c.s2c_packets,
            allocations: c.allocations,
            allocation_seconds: c.allocation_seconds,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsageGroup {
    /// Start of the hour/day/month, unix seconds.
    pub period_start: i64,
    /// The credential id, user id or tag (`by`), or null.
    pub key: Option<String>,
    #[serde(flatten)]
    pub counters: CountersOut,
}

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    pub from: i64,
    pub to: i64,
    pub group_by: String,
    pub by: String,
    pub groups: Vec<UsageGroup>,
    pub totals: CountersOut,
}

/// Start of the hour/day/month containing `hour` (hours since 1970).
fn period_start(group_by: &str, hour: i64) -> i64 {
    let t = hour * 3600;
    match group_by {
        "hour" => t,
        "day" => t.div_euclid(86_400) * 86_400,
        _ => {
            let (y, m, _) = civil_from_days(t.div_euclid(86_400));
            days_from_civil(y, m, 1) * 86_400
        }
    }
}

/// Groups rows; `keys` gives each row's keys (a row may count under several tags).
pub fn group(
    rows: &[UsageRow],
    group_by: &str,
    keys: &dyn Fn(&UsageRow) -> Vec<Option<String>>,
) -> (Vec<UsageGroup>, Counters) {
    let mut m: BTreeMap<(i64, Option<String>), Counters> = BTreeMap::new();
    let mut total = Counters::default();
    for r in rows {
        total.add(&r.counters);
        for k in keys(r) {
            m.entry((period_start(group_by, r.hour), k))
                .or_default()
                .add(&r.counters);
        }
    }
    let groups = m
        .into_iter()
        .map(|((p, k), c)| UsageGroup {
            period_start: p,
            key: k,
            counters: c.into(),
        })
        .collect();
    (groups, total)
}

pub async fn report(state: &AppState, tenant: &str, p: &UsageParams) -> ApiResult<UsageReport> {
    let now = unix_now();
    let to = p.to.unwrap_or(now);
    let from = p.from.unwrap_or(to - 30 * 86_400);
    if from < 0 || to <= from || to - from > 400 * 86_400 {
        return Err(ApiError::invalid(
            "`from` must be before `to`, both unix seconds, at most 400 days apart",
        ));
    }
    let group_by = p.group_by.clone().unwrap_or_else(|| "day".into());
    if !["hour", "day", "month"].contains(&group_by.as_str()) {
        return Err(ApiError::invalid(
            "`group_by` must be `hour`, `day` or `month`",
        ));
    }
    let by = p.by.clone().unwrap_or_else(|| "none".into());
    let rows = state
        .store
        .usage(tenant, from.div_euclid(3600), (to + 3599).div_euclid(3600))
        .await?;
    let tags: HashMap<String, Vec<String>> = if by == "tag" {
        let mut m: HashMap<String, Vec<String>> =
            state.store.user_tags(tenant).await?.into_iter().collect();
        // Stored credentials' own tags, keyed by credential id.
        let page = state
            .store
            .list_credentials(
                tenant,
                &turnpike_store::ListQuery {
                    include_expired: true,
                    limit: 1000,
                    ..Default::default()
                },
                now,
            )
            .await?;
        for c in page.items {
            m.insert(format!("cred:{}", c.id), c.tags);
        }
        m
    } else {
        HashMap::new()
    };
    let keys = |r: &UsageRow| -> Vec<Option<String>> {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match by.as_str() {
            "credential" => vec![nonempty(&r.credential_id)],
            "user" => vec![nonempty(&r.user_id)],
            "tag" => {
                let mut t: Vec<Option<String>> = Vec::new();
                if let Some(v) = tags.get(&r.user_id) {
                    t.extend(v.iter().cloned().map(Some));
                }
                if let Some(v) = tags.get(&format!("cred:{}", r.credential_id)) {
                    t.extend(v.iter().cloned().map(Some));
                }
                if t.is_empty() {
                    t.push(None);
                }
                t
            }
            _ => vec![None],
        }
    };
    if !["none", "credential", "user", "tag"].contains(&by.as_str()) {
        return Err(ApiError::invalid(
            "`by` must be `none`, `credential`, `user` or `tag`",
        ));
    }
    let (groups, totals) = group(&rows, &group_by, &keys);
    Ok(UsageReport {
        from,
        to,
        group_by,
        by,
        groups,
        totals: totals.into(),
    })
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_usage(
    State(state): State<Shared>,
    Query(p): Query<UsageParams>,
    who: TenantCaller,
) -> ApiResult<Json<UsageReport>> {
    let t = &who.tenant_id;
    Ok(Json(report(&state, t, &p).await?))
}

#[derive(Serialize, ToSchema)]
pub struct CurrentUsage {
    /// `month` or `day`: the tenant quota's period (month when there is none).
    pub period: String,
    pub period_start: i64,
    pub period_end: i64,
    pub usage: CountersOut,
    /// The tenant's byte quota for the period, if any.
    pub quota_bytes: Option<i64>,
    /// `usage.total_bytes` in percent of `quota_bytes`.
    pub percent_used: Option<f64>,
}

pub async fn current(state: &AppState, tenant: &str) -> ApiResult<CurrentUsage> {
    let now = unix_now();
    let q = state
        .store
        .list_quotas(Some(tenant))
        .await?
        .into_iter()
        .find(|q| q.scope == "tenant");
    let period = q.as_ref().map_or("month".to_string(), |q| q.period.clone());
    let (start, end) = period_bounds(&period, now);
    let rows = state.store.usage(tenant, start / 3600, end / 3600).await?;
    let mut c = Counters::default();
    for r in &rows {
        c.add(&r.counters);
    }
    let quota_bytes = q.and_then(|q| q.bytes_per_period);
    Ok(CurrentUsage {
        period,
        period_start: start,
        period_end: end,
        percent_used: quota_bytes
            .filter(|q| *q > 0)
            .map(|q| c.total_bytes() as f64 * 100.0 / q as f64),
        usage: c.into(),
        quota_bytes,
    })
}

#[utoipa::path(get, path = "/v1/usage/current", tag = "usage",
    responses((status = 200, body = CurrentUsage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_current(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<CurrentUsage>> {
    let t = &who.tenant_id;
    Ok(Json(current(&state, t).await?))
}
