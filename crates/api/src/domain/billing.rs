//! Billing: a price plan per tenant (set by the operator) and monthly statements computed
//! exactly from the metered usage.
//!
//! - **Periods**: a statement is named by the month its period starts in (`YYYY-MM`); the period
//!   runs from the plan's billing day (1 to 28, 00:00 UTC) of that month to the same day of the
//!   next.
//! - **Money**: prices are integers in millionths of the currency's major unit (micros), amounts
//!   integers in its minor unit (cents; none for JPY, thousandths for KWD: ISO 4217). Each
//!   amount is computed exactly (128-bit integers) and rounded once, half up: data =
//!   chargeable bytes x price per 10^9 bytes, allocation time = allocation seconds x price per
//!   3,600 s. The total is the sum of the two rounded amounts.
//! - **Closed means final**: [`close_due`] stores a period's statement
//!   [`CLOSE_AFTER`] seconds after the period ends (the meter's last flushes are in by then) and
//!   it never changes. Usage counted later for hours of a closed period (a node that flushed
//!   late) is billed on the next statement, as `late_*`: every statement records how much usage
//!   it had counted (`cumulative_*`), and the next bills the difference, so nothing is billed
//!   twice or lost.
//! - **Per user**: each user's bytes and allocation time in the period, priced without the
//!   included volume (a breakdown, not an invoice: its amounts need not add up to the total).
//!
//! What it does not do: taxes, discounts, invoices' legal form, payments.

use serde::Serialize;
use turnpike_store::calendar::{civil_from_days, days_from_civil};
use turnpike_store::{
    BillingUsage, PricePlan, StatementSummary, Store, StoreError, StoredStatement, TenantId,
    UserUsage,
};
use utoipa::ToSchema;

use super::error::{DomainError, DomainResult};
use crate::state::AppState;

/// Seconds after a period's end before its statement is stored.
pub const CLOSE_AFTER: i64 = 15 * 60;

/// Statements one pass of [`close_due`] stores at most per tenant (a plan whose first month is
/// years back catches up over a few passes).
const CLOSE_PER_PASS: usize = 24;

const MICROS: i128 = 1_000_000;
const GB: i128 = 1_000_000_000;
const HOUR: i128 = 3600;

/// Digits of the currency's minor unit (ISO 4217): 0, 2 or 3.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A price given as a decimal in the major unit (`"0.40"`, at most six decimals, at most
/// 1,000,000) to micros.
pub fn parse_price(s: &str) -> Option<i64> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 7
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    let micros = whole.checked_mul(1_000_000)?.checked_add(frac)?;
    (micros <= 1_000_000 * 1_000_000).then_some(micros)
}

/// Micros as a decimal in the major unit, at least `digits` decimals (`400000` -> `"0.40"`).
pub fn format_micros(micros: i64, digits: u32) -> String {
    let whole = micros / 1_000_000;
    let mut frac = format!("{:06}", micros % 1_000_000);
    while frac.len() > digits as usize && frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
}

/// An amount in the minor unit as a decimal in the major unit (`1234`, 2 -> `"12.34"`).
pub fn format_minor(minor: i64, digits: u32) -> String {
    if digits == 0 {
        return minor.to_string();
    }
    let scale = 10_i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let scale = scale as u64;
    format!(
        "{sign}{}.{:0width$}",
        m / scale,
        m % scale,
        width = digits as usize
    )
}

/// `quantity` units of `per` (10^9 bytes, 3,600 s) at `price_micros` each, in the minor unit
/// of a currency with `digits`, rounded half up.
pub fn amount_minor(quantity: i64, price_micros: i64, per: i128, digits: u32) -> i64 {
    let num = i128::from(quantity.max(0)) * i128::from(price_micros) * 10_i128.pow(digits);
    let den = per * MICROS;
    let rounded = (num + den / 2) / den;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// `(year, month)` of `YYYY-MM` (years 2000 to 9999).
pub fn parse_month(s: &str) -> Option<(i64, u32)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    ((2000..=9999).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

fn month_text(y: i64, m: u32) -> String {
    format!("{y:04}-{m:02}")
}

fn following(y: i64, m: u32) -> (i64, u32) {
    if m == 12 {
        (y + 1, 1)
    } else {
        (y, m + 1)
    }
}

/// The month after `YYYY-MM`.
pub fn next_month(month: &str) -> Option<String> {
    let (y, m) = parse_month(month)?;
    let (y, m) = following(y, m);
    Some(month_text(y, m))
}

/// The month before `YYYY-MM`.
pub fn previous_month(month: &str) -> Option<String> {
    let (y, m) = parse_month(month)?;
    Some(if m == 1 {
        month_text(y - 1, 12)
    } else {
        month_text(y, m - 1)
    })
}

/// `[start, end)` (unix seconds) of the period of `month` with periods starting on `day`.
pub fn period(month: &str, day: i64) -> Option<(i64, i64)> {
    let (y, m) = parse_month(month)?;
    let d = u32::try_from(day).ok().filter(|d| (1..=28).contains(d))?;
    let (ny, nm) = following(y, m);
    Some((
        days_from_civil(y, m, d) * 86_400,
        days_from_civil(ny, nm, d) * 86_400,
    ))
}

/// The month whose period (starting on `day`) contains `now`.
pub fn month_at(now: i64, day: i64) -> String {
    let (y, m, d) = civil_from_days(now.div_euclid(86_400));
    if i64::from(d) >= day {
        month_text(y, m)
    } else if m == 1 {
        month_text(y - 1, 12)
    } else {
        month_text(y, m - 1)
    }
}

/// The plan as the API shows and takes it: prices as decimal strings in the major unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanView {
    pub tenant_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Per 10^9 bytes relayed (all four legs, as metered), e.g. `"0.40"`.
    pub price_per_gb: String,
    /// Per hour of allocation time.
    pub price_per_allocation_hour: String,
    /// Bytes each period includes free of the per-GB price.
    pub included_bytes: i64,
    /// Day of the month (1 to 28, UTC) periods start on.
    pub billing_day: i64,
    /// `YYYY-MM`: the first month with a statement.
    pub first_month: String,
    pub updated_at: i64,
}

impl From<&PricePlan> for PlanView {
    fn from(p: &PricePlan) -> Self {
        let digits = minor_digits(&p.currency);
        Self {
            tenant_id: p.tenant_id.to_string(),
            currency: p.currency.clone(),
            price_per_gb: format_micros(p.per_gb_micros, digits),
            price_per_allocation_hour: format_micros(p.per_allocation_hour_micros, digits),
            included_bytes: p.included_bytes,
            billing_day: p.billing_day,
            first_month: p.first_month.clone(),
            updated_at: p.updated_at,
        }
    }
}

/// A plan as asked for, checked by [`set_plan`].
#[derive(Debug, Clone, Default)]
pub struct PlanSpec {
    pub currency: String,
    pub price_per_gb: String,
    pub price_per_allocation_hour: String,
    pub included_bytes: Option<i64>,
    pub billing_day: Option<i64>,
    pub first_month: Option<String>,
}

/// Sets a tenant's plan (404 for an unknown tenant). The first month defaults to the period
/// now running.
pub async fn set_plan(
    state: &AppState,
    tenant_id: &TenantId,
    spec: &PlanSpec,
) -> DomainResult<PricePlan> {
    let currency = spec.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(DomainError::invalid(
            "`currency` must be a three-letter ISO 4217 code, e.g. \"EUR\"",
        ));
    }
    let price = |name: &str, v: &str| {
        parse_price(v).ok_or_else(|| {
            DomainError::invalid(format!(
                "`{name}` must be a decimal price in the currency's major unit, at most six decimals and at most 1000000, e.g. \"0.40\""
            ))
        })
    };
    let per_gb_micros = price("price_per_gb", &spec.price_per_gb)?;
    let per_allocation_hour_micros =
        price("price_per_allocation_hour", &spec.price_per_allocation_hour)?;
    let included_bytes = spec.included_bytes.unwrap_or(0);
    if included_bytes < 0 {
        return Err(DomainError::invalid("`included_bytes` must be 0 or more"));
    }
    let billing_day = spec.billing_day.unwrap_or(1);
    if !(1..=28).contains(&billing_day) {
        return Err(DomainError::invalid(
            "`billing_day` must be 1 to 28 (every month has it)",
        ));
    }
    let now = state.now();
    let first_month = match &spec.first_month {
        Some(m) => {
            parse_month(m).ok_or_else(|| {
                DomainError::invalid("`first_month` must be `YYYY-MM` (2000 to 9999)")
            })?;
            m.clone()
        }
        None => month_at(now, billing_day),
    };
    state.store.get_tenant(tenant_id).await.map_err(not_found)?;
    let plan = PricePlan {
        tenant_id: tenant_id.clone(),
        currency,
        per_gb_micros,
        per_allocation_hour_micros,
        included_bytes,
        billing_day,
        first_month,
        updated_at: now,
    };
    state.store.put_price_plan(&plan).await?;
    Ok(plan)
}

fn not_found(e: StoreError) -> DomainError {
    match e {
        StoreError::NotFound => DomainError::not_found("no tenant with this id"),
        e => e.into(),
    }
}

/// The tenant's plan; 404 when it has none.
pub async fn plan(state: &AppState, tenant_id: &TenantId) -> DomainResult<PricePlan> {
    state.store.get_price_plan(tenant_id).await?.ok_or_else(|| {
        DomainError::not_found("this tenant has no price plan (the operator sets it)")
    })
}

/// Every tenant's plan.
pub async fn plans(state: &AppState) -> DomainResult<Vec<PricePlan>> {
    Ok(state
        .store
        .price_plans()
        .await?
        .into_iter()
        .map(|p| p.plan)
        .collect())
}

/// Removes the tenant's plan: no more statements are made; stored ones stay.
pub async fn delete_plan(state: &AppState, tenant_id: &TenantId) -> DomainResult<()> {
    state
        .store
        .delete_price_plan(tenant_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => DomainError::not_found("this tenant has no price plan"),
            e => e.into(),
        })
}

/// One user's line of a statement: a user id, or (for credentials without one) a stored
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct UserLine {
    /// Empty for credentials without a user id.
    pub user_id: String,
    /// Without a user id: the stored credential (empty for ephemeral credentials).
    #[serde(default)]
    pub credential_id: String,
    /// The stored credential's username, when it still existed at the time of the statement.
    #[serde(default)]
    pub username: Option<String>,
    pub bytes: i64,
    pub allocation_seconds: i64,
    /// The user's bytes at the per-GB price (no included volume).
    pub data_minor: i64,
    pub allocation_minor: i64,
}

/// What a statement line is named by: the user id, else the credential's username (or id).
pub fn line_name(u: &UserLine) -> String {
    if !u.user_id.is_empty() {
        u.user_id.clone()
    } else if let Some(name) = &u.username {
        format!("credential {name}")
    } else if !u.credential_id.is_empty() {
        format!("credential {}", u.credential_id)
    } else {
        "(ephemeral, no user id)".into()
    }
}

/// A monthly statement: closed (stored, final) or open (the period runs or is about to be
/// closed; figures so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Statement {
    pub tenant_id: String,
    /// `YYYY-MM` of the period's start.
    pub month: String,
    pub period_start: i64,
    pub period_end: i64,
    /// `open` or `closed`.
    pub status: String,
    pub closed_at: Option<i64>,
    pub currency: String,
    /// Decimals of the currency's minor unit: amounts `*_minor` are in 10^-digits of the unit.
    pub minor_digits: u32,
    pub price_per_gb: String,
    pub price_per_allocation_hour: String,
    pub included_bytes: i64,
    /// Bytes of hours in the period (as counted).
    pub bytes_in_period: i64,
    /// Bytes of hours of earlier, closed periods counted after they closed.
    pub late_bytes: i64,
    /// `bytes_in_period + late_bytes`.
    pub billable_bytes: i64,
    /// `billable_bytes - included_bytes`, at least 0: priced per GB.
    pub chargeable_bytes: i64,
    pub data_minor: i64,
    pub allocations_in_period: i64,
    pub allocation_seconds_in_period: i64,
    pub late_allocation_seconds: i64,
    pub billable_allocation_seconds: i64,
    pub allocation_minor: i64,
    /// `data_minor + allocation_minor`.
    pub total_minor: i64,
    /// The total as a decimal in the major unit.
    pub total: String,
    /// Per user, by user id.
    pub users: Vec<UserLine>,
    /// The tenant's usage of all hours before `period_end` as counted for this statement.
    #[serde(skip)]
    pub cumulative_bytes: i64,
    #[serde(skip)]
    pub cumulative_allocation_seconds: i64,
}

/// What a statement is computed from.
pub struct Inputs<'a> {
    pub plan: &'a PricePlan,
    pub month: &'a str,
    pub period: (i64, i64),
    /// The tenant's usage before `end`, split at `start`.
    pub usage: BillingUsage,
    /// `(bytes, allocation seconds)` the previous statement had counted before its end (its
    /// `cumulative_*`), when it is the statement of the month just before; `None` bills the
    /// usage of the period's hours alone.
    pub previous: Option<(i64, i64)>,
    pub users: Vec<UserUsage>,
    pub closed_at: Option<i64>,
}

/// The statement of `i`: pure arithmetic, see the module's doc.
pub fn compute(i: Inputs<'_>) -> Statement {
    let p = i.plan;
    let digits = minor_digits(&p.currency);
    let u = i.usage;
    let (late_bytes, late_seconds) = match i.previous {
        Some((b, s)) => (
            (u.bytes_before - b).max(0),
            (u.allocation_seconds_before - s).max(0),
        ),
        None => (0, 0),
    };
    let billable_bytes = u.bytes_within + late_bytes;
    let billable_seconds = u.allocation_seconds_within + late_seconds;
    let chargeable_bytes = (billable_bytes - p.included_bytes).max(0);
    let data_minor = amount_minor(chargeable_bytes, p.per_gb_micros, GB, digits);
    let allocation_minor =
        amount_minor(billable_seconds, p.per_allocation_hour_micros, HOUR, digits);
    let total_minor = data_minor.saturating_add(allocation_minor);
    let users = i
        .users
        .into_iter()
        .map(|x| UserLine {
            data_minor: amount_minor(x.bytes, p.per_gb_micros, GB, digits),
            allocation_minor: amount_minor(
                x.allocation_seconds,
                p.per_allocation_hour_micros,
                HOUR,
                digits,
            ),
            user_id: x.user_id,
            credential_id: x.credential_id,
            username: x.username,
            bytes: x.bytes,
            allocation_seconds: x.allocation_seconds,
        })
        .collect();
    Statement {
        tenant_id: p.tenant_id.to_string(),
        month: i.month.to_string(),
        period_start: i.period.0,
        period_end: i.period.1,
        status: if i.closed_at.is_some() {
            "closed"
        } else {
            "open"
        }
        .into(),
        closed_at: i.closed_at,
        currency: p.currency.clone(),
        minor_digits: digits,
        price_per_gb: format_micros(p.per_gb_micros, digits),
        price_per_allocation_hour: format_micros(p.per_allocation_hour_micros, digits),
        included_bytes: p.included_bytes,
        bytes_in_period: u.bytes_within,
        late_bytes,
        billable_bytes,
        chargeable_bytes,
        data_minor,
        allocations_in_period: u.allocations_within,
        allocation_seconds_in_period: u.allocation_seconds_within,
        late_allocation_seconds: late_seconds,
        billable_allocation_seconds: billable_seconds,
        allocation_minor,
        total_minor,
        total: format_minor(total_minor, digits),
        users,
        cumulative_bytes: u.bytes_before + u.bytes_within,
        cumulative_allocation_seconds: u.allocation_seconds_before + u.allocation_seconds_within,
    }
}

/// Computes `month`'s statement from the store as it is now (`closed_at`: stamp it closed).
async fn make(
    state: &AppState,
    plan: &PricePlan,
    month: &str,
    closed_at: Option<i64>,
) -> DomainResult<Statement> {
    let (start, end) = period(month, plan.billing_day)
        .ok_or_else(|| DomainError::invalid("`month` must be `YYYY-MM` (2000 to 9999)"))?;
    let t = &plan.tenant_id;
    let (start_h, end_h) = (start / 3600, end / 3600);
    let usage = state.store.billing_usage(t, start_h, end_h).await?;
    let prev_month = previous_month(month).unwrap_or_default();
    let previous = state
        .store
        .statement_before(t, month)
        .await?
        .filter(|s| s.summary.month == prev_month)
        .map(|s| (s.cumulative_bytes, s.cumulative_allocation_seconds));
    let users = state.store.usage_by_user(t, start_h, end_h).await?;
    Ok(compute(Inputs {
        plan,
        month,
        period: (start, end),
        usage,
        previous,
        users,
        closed_at,
    }))
}

fn from_stored(s: &StoredStatement) -> DomainResult<Statement> {
    let mut st: Statement = serde_json::from_str(&s.body)
        .map_err(|_| DomainError::Store(StoreError::Corrupt("billing_statements")))?;
    st.cumulative_bytes = s.cumulative_bytes;
    st.cumulative_allocation_seconds = s.cumulative_allocation_seconds;
    Ok(st)
}

/// `month`'s statement: the stored one once closed, else the figures so far (404 before the
/// plan's first month or without a plan).
pub async fn statement(
    state: &AppState,
    tenant_id: &TenantId,
    month: &str,
) -> DomainResult<Statement> {
    parse_month(month)
        .ok_or_else(|| DomainError::invalid("`month` must be `YYYY-MM` (2000 to 9999)"))?;
    if let Some(s) = state.store.get_statement(tenant_id, month).await? {
        return from_stored(&s);
    }
    let plan = plan(state, tenant_id).await?;
    if month < plan.first_month.as_str() {
        return Err(DomainError::not_found(format!(
            "no statement for {month}: this tenant's statements start with {}",
            plan.first_month
        )));
    }
    let now_month = month_at(state.now(), plan.billing_day);
    if month > now_month.as_str() {
        return Err(DomainError::not_found(format!(
            "no statement for {month} yet: the current period is {now_month}"
        )));
    }
    make(state, &plan, month, None).await
}

/// The tenant's statements, newest first: the open period's (when it has a plan) and the
/// closed ones.
pub async fn list(state: &AppState, tenant_id: &TenantId) -> DomainResult<Vec<StatementSummary>> {
    let mut out = Vec::new();
    if let Some(plan) = state.store.get_price_plan(tenant_id).await? {
        let month = month_at(state.now(), plan.billing_day);
        if month >= plan.first_month {
            let s = make(state, &plan, &month, None).await?;
            if state
                .store
                .get_statement(tenant_id, &month)
                .await?
                .is_none()
            {
                out.push(StatementSummary {
                    tenant_id: tenant_id.clone(),
                    month: s.month,
                    period_start: s.period_start,
                    period_end: s.period_end,
                    currency: s.currency,
                    total_minor: s.total_minor,
                    closed_at: 0,
                });
            }
        }
    }
    out.extend(state.store.list_statements(tenant_id).await?);
    Ok(out)
}

/// Stores the statement of every period that ended [`CLOSE_AFTER`] ago and has none, oldest
/// first. Several nodes may run this at once: the first to store a month wins, the others'
/// inserts change nothing. Returns how many it stored.
pub async fn close_due(state: &AppState) -> DomainResult<usize> {
    let now = state.now();
    let mut stored = 0;
    for p in state.store.price_plans().await? {
        let plan = &p.plan;
        let mut month = match p.last_month.as_deref().and_then(next_month) {
            Some(m) if m > plan.first_month => m,
            _ => plan.first_month.clone(),
        };
        for _ in 0..CLOSE_PER_PASS {
            let Some((_, end)) = period(&month, plan.billing_day) else {
                break;
            };
            if end + CLOSE_AFTER > now {
                break;
            }
            let s = make(state, plan, &month, Some(now)).await?;
            let body = serde_json::to_string(&s).expect("a statement serializes to JSON");
            let row = StoredStatement {
                summary: StatementSummary {
                    tenant_id: plan.tenant_id.clone(),
                    month: month.clone(),
                    period_start: s.period_start,
                    period_end: s.period_end,
                    currency: s.currency.clone(),
                    total_minor: s.total_minor,
                    closed_at: now,
                },
                cumulative_bytes: s.cumulative_bytes,
                cumulative_allocation_seconds: s.cumulative_allocation_seconds,
                body,
            };
            if state.store.insert_statement(&row).await? {
                stored += 1;
                tracing::info!(tenant = %plan.tenant_id, month = %month, total_minor = s.total_minor,
                    currency = %s.currency, "billing statement closed");
                metrics::counter!("turnpike_billing_statements_closed_total").increment(1);
            }
            let Some(next) = next_month(&month) else {
                break;
            };
            month = next;
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_and_print_exactly() {
        assert_eq!(parse_price("0.40"), Some(400_000));
        assert_eq!(parse_price("0.000001"), Some(1));
        assert_eq!(parse_price("12"), Some(12_000_000));
        assert_eq!(parse_price(".5"), Some(500_000));
        assert_eq!(parse_price("1000000"), Some(1_000_000_000_000));
        for bad in [
            "",
            ".",
            "-1",
            "0.0000001",
            "1e3",
            "1,5",
            "1000001",
            "abc",
            " . ",
        ] {
            assert_eq!(parse_price(bad), None, "{bad}");
        }
        assert_eq!(format_micros(400_000, 2), "0.40");
        assert_eq!(format_micros(1_000, 2), "0.001");
        assert_eq!(format_micros(12_000_000, 0), "12");
        assert_eq!(format_micros(12_500_000, 0), "12.5");
        assert_eq!(format_minor(1234, 2), "12.34");
        assert_eq!(format_minor(5, 3), "0.005");
        assert_eq!(format_minor(7, 0), "7");
        assert_eq!(format_minor(-5, 2), "-0.05");
    }

    #[test]
    fn amounts_round_half_up_once() {
        // 1.5 GB at 0.01 = 1.5 cents -> 2; 1.4999... -> 1.
        assert_eq!(amount_minor(1_500_000_000, 10_000, GB, 2), 2);
        assert_eq!(amount_minor(1_499_999_999, 10_000, GB, 2), 1);
        // 25,920 bytes at 0.40 per GB: 0.0010368 cents -> 0.
        assert_eq!(amount_minor(25_920, 400_000, GB, 2), 0);
        // An hour and a half at 0.001 per hour in a three-digit currency: 1.5 -> 2.
        assert_eq!(amount_minor(5400, 1_000, HOUR, 3), 2);
        // No overflow at the largest inputs.
        assert_eq!(amount_minor(i64::MAX, 1_000_000_000_000, GB, 3), i64::MAX);
        assert_eq!(minor_digits("JPY"), 0);
        assert_eq!(minor_digits("KWD"), 3);
        assert_eq!(minor_digits("EUR"), 2);
    }

    #[test]
    fn periods_start_on_the_billing_day() {
        // 2026-11-01T00:00Z and 2026-12-01T00:00Z.
        assert_eq!(period("2026-11", 1), Some((1_793_491_200, 1_796_083_200)));
        // The 15th to the 15th, across the year.
        let (s, e) = period("2026-12", 15).unwrap();
        assert_eq!((s, e), (1_797_292_800, 1_799_971_200));
        assert_eq!(month_at(s, 15), "2026-12");
        assert_eq!(month_at(s - 1, 15), "2026-11");
        assert_eq!(month_at(e - 1, 15), "2026-12");
        assert_eq!(month_at(e, 15), "2027-01");
        assert_eq!(period("2026-11", 29), None);
        assert_eq!(period("2026-13", 1), None);
        assert_eq!(next_month("2026-12").as_deref(), Some("2027-01"));
        assert_eq!(previous_month("2027-01").as_deref(), Some("2026-12"));
    }

    fn plan() -> PricePlan {
        PricePlan {
            tenant_id: "ten_1".into(),
            currency: "EUR".into(),
            per_gb_micros: 400_000,
            per_allocation_hour_micros: 10_000,
            included_bytes: 1_000_000_000,
            billing_day: 1,
            first_month: "2026-11".into(),
            updated_at: 0,
        }
    }

    #[test]
    fn a_statement_bills_its_period_and_late_usage() {
        let p = plan();
        let usage = BillingUsage {
            bytes_before: 700,
            allocation_seconds_before: 60,
            bytes_within: 3_500_000_000,
            allocation_seconds_within: 7200,
            allocations_within: 4,
        };
        let users = vec![UserUsage {
            user_id: "u1".into(),
            bytes: 3_500_000_000,
            allocation_seconds: 7200,
            ..UserUsage::default()
        }];
        let s = compute(Inputs {
            plan: &p,
            month: "2026-12",
            period: period("2026-12", 1).unwrap(),
            usage,
            // The November statement had counted 500 bytes and 60 s before its end.
            previous: Some((500, 60)),
            users,
            closed_at: Some(9),
        });
        assert_eq!((s.late_bytes, s.late_allocation_seconds), (200, 0));
        assert_eq!(s.billable_bytes, 3_500_000_200);
        assert_eq!(s.chargeable_bytes, 2_500_000_200);
        // 2.5000002 GB x 0.40 = 1.00000008 EUR -> 100 cents; 2 h x 0.01 = 2 cents.
        assert_eq!(
            (s.data_minor, s.allocation_minor, s.total_minor),
            (100, 2, 102)
        );
        assert_eq!(s.total, "1.02");
        assert_eq!(s.status, "closed");
        assert_eq!(s.users[0].data_minor, 140);
        assert_eq!(s.cumulative_bytes, 3_500_000_700);
        // Without a previous statement, usage before the period is not this statement's.
        let first = compute(Inputs {
            plan: &p,
            month: "2026-12",
            period: period("2026-12", 1).unwrap(),
            usage,
            previous: None,
            users: Vec::new(),
            closed_at: None,
        });
        assert_eq!((first.late_bytes, first.billable_bytes), (0, 3_500_000_000));
        assert_eq!(first.status, "open");
    }
}
