//! Usage reports from the hourly counters: any time range, grouped by hour, day or month and
//! by credential, user id or tag; and the current billing period against the tenant's quota.
//!
//! `total_bytes` is the sum of the four legs (client→server, server→peer, peer→server,
//! server→client): everything relayed traffic made cross the server's interfaces. Client legs
//! include TURN framing (4-byte ChannelData header and padding, or the Send/Data indication);
//! peer legs are payload only. Control messages are not counted.

use std::collections::{BTreeMap, HashMap};

use turnpike_store::TenantId;
use turnpike_store::{
    Counters, KeyTotal, ListQuery, QuotaPeriod, QuotaScope, Store, UsageKey, UsageRow,
};

use super::error::{DomainError, DomainResult};
use crate::calendar::{civil_from_days, days_from_civil, period_bounds};
use crate::state::AppState;

/// The time unit of a report's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Hour,
    Day,
    Month,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Start of the hour, day or month containing `hour` (hours since 1970), unix seconds.
    fn period_start(self, hour: i64) -> i64 {
        let t = hour * 3600;
        match self {
            Self::Hour => t,
            Self::Day => t.div_euclid(86_400) * 86_400,
            Self::Month => {
                let (y, m, _) = civil_from_days(t.div_euclid(86_400));
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }
}

/// What a report's groups are keyed by besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    None,
    Credential,
    User,
    Tag,
    /// The fleet node that relayed it.
    Node,
    /// The region of that node.
    Region,
}

impl By {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "credential" => Some(Self::Credential),
            "user" => Some(Self::User),
            "tag" => Some(Self::Tag),
            "node" => Some(Self::Node),
            "region" => Some(Self::Region),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Credential => "credential",
            Self::User => "user",
            Self::Tag => "tag",
            Self::Node => "node",
            Self::Region => "region",
        }
    }
}

/// A report as asked for (strings as given; checked by [`report`]).
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// Unix seconds (default: 30 days before `to`); rounded down to the hour.
    pub from: Option<i64>,
    /// Unix seconds, exclusive (default: now); rounded up to the hour.
    pub to: Option<i64>,
    /// `hour`, `day` (default) or `month`.
    pub group_by: Option<String>,
    /// `none` (default), `credential`, `user`, `tag`, `node` or `region`.
    pub by: Option<String>,
    /// Page by key (with `by` = `user` or `credential`): at most this many keys (1 to
    /// [`MAX_PAGE`]), in ascending order.
    pub limit: Option<u32>,
    /// With `limit`: the keys after this one (the previous page's `next_after`).
    pub after: Option<String>,
}

/// The most keys one page of a usage report may hold.
pub const MAX_PAGE: u32 = 1_000;

/// Usage of one period and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub period_start: i64,
    /// The credential id, user id or tag, or none.
    pub key: Option<String>,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    pub group_by: GroupBy,
    pub by: By,
    pub groups: Vec<Group>,
    /// All of the range, or, for a page, the page's keys.
    pub totals: Counters,
    /// For a full page: the key to ask for the next page `after`.
    pub next_after: Option<String>,
}

/// The current billing period of a tenant: its tenant quota's period (a month without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub period: QuotaPeriod,
    pub period_start: i64,
    pub period_end: i64,
    pub counters: Counters,
    /// The tenant's byte quota for the period, if any.
    pub quota_bytes: Option<i64>,
    /// `counters.total_bytes()` in percent of `quota_bytes`.
    pub percent_used: Option<f64>,
}

/// The tenant's usage over a range.
pub async fn report(
    state: &AppState,
    tenant_id: &TenantId,
    q: &UsageQuery,
) -> DomainResult<Report> {
    let to = q.to.unwrap_or_else(|| state.now());
    let from = q.from.unwrap_or(to - 30 * 86_400);
    if from < 0 || to <= from || to - from > 400 * 86_400 {
        return Err(DomainError::invalid(
            "`from` must be before `to`, both unix seconds, at most 400 days apart",
        ));
    }
    let group_by = GroupBy::parse(q.group_by.as_deref().unwrap_or("day"))
        .ok_or_else(|| DomainError::invalid("`group_by` must be `hour`, `day` or `month`"))?;
    let by = By::parse(q.by.as_deref().unwrap_or("none")).ok_or_else(|| {
        DomainError::invalid("`by` must be `none`, `credential`, `user`, `tag`, `node` or `region`")
    })?;
    let (from_hour, to_hour) = (from.div_euclid(3600), (to + 3599).div_euclid(3600));
    let mut next_after = None;
    let rows = match q.limit {
        // Per node rows: the node id as the credential, its region as the user.
        None if matches!(by, By::Node | By::Region) => {
            state
                .store
                .node_usage(tenant_id, from_hour, to_hour)
                .await?
        }
        None => state.store.usage(tenant_id, from_hour, to_hour).await?,
        Some(limit) => {
            let key = match by {
                By::User => UsageKey::User,
                By::Credential => UsageKey::Credential,
                By::None | By::Tag | By::Node | By::Region => {
                    return Err(DomainError::invalid(
                        "`limit` pages by key: use it with `by` = `user` or `credential`",
                    ))
                }
            };
            if !(1..=MAX_PAGE).contains(&limit) {
                return Err(DomainError::invalid(format!(
                    "`limit` must be 1 to {MAX_PAGE}"
                )));
            }
            let st = &state.store;
            let keys = st
                .usage_keys(
                    tenant_id,
                    from_hour,
                    to_hour,
                    key,
                    q.after.as_deref(),
                    limit,
                )
                .await?;
            if keys.len() == limit as usize {
                next_after = keys.last().cloned();
            }
            st.usage_of(tenant_id, from_hour, to_hour, key, &keys)
                .await?
        }
    };
    let tags = if by == By::Tag {
        tags(state, tenant_id).await?
    } else {
        HashMap::new()
    };
    let (groups, totals) = group(&rows, group_by, &|r| keys(by, &tags, r));
    Ok(Report {
        from,
        to,
        group_by,
        by,
        groups,
        totals,
        next_after,
    })
}

/// Tags by user id, and stored credentials' own tags by `cred:<id>`.
async fn tags(
    state: &AppState,
    tenant_id: &TenantId,
) -> DomainResult<HashMap<String, Vec<String>>> {
    let mut m: HashMap<String, Vec<String>> = state
        .store
        .user_tags(tenant_id)
        .await?
        .into_iter()
        .collect();
    let q = ListQuery {
        include_expired: true,
        limit: 1000,
        ..Default::default()
    };
    let page = state
        .store
        .list_credentials(tenant_id, &q, state.now())
        .await?;
    for c in page.items {
        m.insert(format!("cred:{}", c.id), c.tags);
    }
    Ok(m)
}

/// The keys a row counts under (a row may count under several tags, or none).
fn keys(by: By, tags: &HashMap<String, Vec<String>>, r: &UsageRow) -> Vec<Option<String>> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match by {
        By::Credential | By::Node => vec![nonempty(&r.credential_id)],
        By::User | By::Region => vec![nonempty(&r.user_id)],
        By::Tag => {
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
        By::None => vec![None],
    }
}

/// Groups rows by period and key; also returns the total of all rows.
pub fn group(
    rows: &[UsageRow],
    group_by: GroupBy,
    keys: &dyn Fn(&UsageRow) -> Vec<Option<String>>,
) -> (Vec<Group>, Counters) {
    let mut m: BTreeMap<(i64, Option<String>), Counters> = BTreeMap::new();
    let mut total = Counters::default();
    for r in rows {
        total.add(&r.counters);
        for k in keys(r) {
            m.entry((group_by.period_start(r.hour), k))
                .or_default()
                .add(&r.counters);
        }
    }
    let groups = m
        .into_iter()
        .map(|((period_start, key), counters)| Group {
            period_start,
            key,
            counters,
        })
        .collect();
    (groups, total)
}

/// The tenant's usage in its current billing period.
pub async fn current(state: &AppState, tenant_id: &TenantId) -> DomainResult<Current> {
    let q = state
        .store
        .list_quotas(Some(tenant_id))
        .await?
        .into_iter()
        .find(|q| q.scope == QuotaScope::Tenant);
    let period = q.as_ref().map_or(QuotaPeriod::Month, |q| q.period);
    let (start, end) = period_bounds(period, state.now());
    let rows = hours(state, tenant_id, start / 3600, end / 3600).await?;
    let mut c = Counters::default();
    for r in &rows {
        c.add(&r.counters);
    }
    let quota_bytes = q.and_then(|q| q.bytes_per_period);
    Ok(Current {
        period,
        period_start: start,
        period_end: end,
        percent_used: quota_bytes
            .filter(|q| *q > 0)
            .map(|q| c.total_bytes() as f64 * 100.0 / q as f64),
        counters: c,
        quota_bytes,
    })
}

/// The `limit` users with the most bytes in the tenant's current period (its quota's day or
/// month, else the UTC month), most first; ties by user id.
pub async fn top_users(
    state: &AppState,
    tenant_id: &TenantId,
    limit: usize,
) -> DomainResult<(i64, i64, Vec<turnpike_store::UserUsage>)> {
    let period = state
        .store
        .list_quotas(Some(tenant_id))
        .await?
        .into_iter()
        .find(|q| q.scope == QuotaScope::Tenant)
        .map_or(QuotaPeriod::Month, |q| q.period);
    let (start, end) = period_bounds(period, state.now());
    let mut users = state
        .store
        .usage_by_user(tenant_id, start / 3600, end / 3600)
        .await?;
    users.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    users.truncate(limit);
    Ok((start, end, users))
}

/// The tenant's totals per hour in `[from_hour, to_hour)` (rows with empty credential and
/// user): at most one row an hour, whatever the number of users.
pub async fn hours(
    state: &AppState,
    tenant_id: &TenantId,
    from_hour: i64,
    to_hour: i64,
) -> DomainResult<Vec<UsageRow>> {
    Ok(state
        .store
        .usage_by_hour(tenant_id, from_hour, to_hour)
        .await?)
}

/// The tenant's totals per credential and user in `[from_hour, to_hour)`, named (summed in
/// the database; whole months from the monthly rollup).
pub async fn by_key(
    state: &AppState,
    tenant_id: &TenantId,
    from_hour: i64,
    to_hour: i64,
) -> DomainResult<Vec<KeyTotal>> {
    Ok(state
        .store
        .usage_by_key(tenant_id, from_hour, to_hour)
        .await?)
}

/// Bytes per UTC day of `rows`, for every day from the one containing `from` through the one
/// containing `to` (days without usage count 0): `(day start, bytes)`.
pub fn daily_bytes(rows: &[UsageRow], from: i64, to: i64) -> Vec<(i64, i64)> {
    let first = from.div_euclid(86_400);
    let last = to.div_euclid(86_400);
    let mut days: BTreeMap<i64, i64> = (first..=last).map(|d| (d, 0)).collect();
    for r in rows {
        if let Some(b) = days.get_mut(&(r.hour * 3600).div_euclid(86_400)) {
            *b += r.counters.total_bytes();
        }
    }
    days.into_iter().map(|(d, b)| (d * 86_400, b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_bytes_lists_every_day_of_the_range() {
        let row = |hour: i64, bytes: i64| UsageRow {
            hour,
            counters: Counters {
                c2s_bytes: bytes,
                ..Default::default()
            },
            ..Default::default()
        };
        // Day 10 (hours 240..264) twice, day 12 once; day 11 had nothing.
        let rows = [row(240, 5), row(263, 7), row(12 * 24 + 1, 9)];
        assert_eq!(
            daily_bytes(&rows, 10 * 86_400, 12 * 86_400 + 5),
            vec![(10 * 86_400, 12), (11 * 86_400, 0), (12 * 86_400, 9)]
        );
    }
}
