//! Usage reports (see [`crate::domain::usage`]): any time range, grouped by hour, day or month
//! and by credential, user id or tag; and the current billing period against the tenant's
//! quota.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_store::Counters;
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantCaller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Query;
use crate::domain::usage::{self, UsageQuery};
use crate::state::Shared;

/// Usage reports.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/usage", get(get_usage))
        .route("/v1/usage/current", get(get_current))
        .route("/v1/usage/top-users", get(get_top_users))
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
    /// `none` (default), `credential`, `user`, `tag`, `node` or `region` (the fleet node that relayed it).
    pub by: Option<String>,
    /// Page by key, with `by` = `user` or `credential`: at most this many keys (1 to 1000),
    /// ascending; the report holds their groups and totals, and `next_after` when there may be
    /// more. Without it, every key of the range (slow for a tenant with many users).
    pub limit: Option<u32>,
    /// With `limit`: the page after this key (the previous page's `next_after`).
    pub after: Option<String>,
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
    /// The whole range, or, with `limit`, the page's keys.
    pub totals: CountersOut,
    /// With `limit`, when the page is full: ask for the next page with `after` = this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

impl From<usage::Report> for UsageReport {
    fn from(r: usage::Report) -> Self {
        Self {
            from: r.from,
            to: r.to,
            group_by: r.group_by.as_str().into(),
            by: r.by.as_str().into(),
            groups: r
                .groups
                .into_iter()
                .map(|g| UsageGroup {
                    period_start: g.period_start,
                    key: g.key,
                    counters: g.counters.into(),
                })
                .collect(),
            totals: r.totals.into(),
            next_after: r.next_after,
        }
    }
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_usage(
    State(state): State<Shared>,
    Query(p): Query<UsageParams>,
    who: TenantCaller,
) -> ApiResult<Json<UsageReport>> {
    let q = UsageQuery {
        from: p.from,
        to: p.to,
        group_by: p.group_by,
        by: p.by,
        limit: p.limit,
        after: p.after,
    };
    Ok(Json(
        usage::report(&state, &who.tenant_id, &q).await?.into(),
    ))
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

impl From<usage::Current> for CurrentUsage {
    fn from(c: usage::Current) -> Self {
        Self {
            period: c.period.as_str().into(),
            period_start: c.period_start,
            period_end: c.period_end,
            usage: c.counters.into(),
            quota_bytes: c.quota_bytes,
            percent_used: c.percent_used,
        }
    }
}

#[utoipa::path(get, path = "/v1/usage/current", tag = "usage",
    responses((status = 200, body = CurrentUsage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_current(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<CurrentUsage>> {
    Ok(Json(usage::current(&state, &who.tenant_id).await?.into()))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct TopParams {
    /// How many users, 1 to 100 (default 10).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct TopUser {
    /// Empty for credentials without a user id.
    pub user_id: String,
    pub total_bytes: i64,
    pub allocation_seconds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TopUsers {
    pub period_start: i64,
    pub period_end: i64,
    pub items: Vec<TopUser>,
}

#[utoipa::path(get, path = "/v1/usage/top-users", tag = "usage", params(TopParams),
    responses((status = 200, body = TopUsers), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_top_users(
    State(state): State<Shared>,
    Query(p): Query<TopParams>,
    who: TenantCaller,
) -> ApiResult<Json<TopUsers>> {
    let limit = p.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be 1 to 100"));
    }
    let (start, end, users) = usage::top_users(&state, &who.tenant_id, limit).await?;
    Ok(Json(TopUsers {
        period_start: start,
        period_end: end,
        items: users
            .into_iter()
            .map(|u| TopUser {
                user_id: u.user_id,
                total_bytes: u.bytes,
                allocation_seconds: u.allocation_seconds,
            })
            .collect(),
    }))
}
