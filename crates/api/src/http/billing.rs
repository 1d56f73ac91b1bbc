//! Billing: the operator sets a tenant's price plan (`/v1/tenants/{id}/plan`); a tenant reads
//! its plan and its monthly statements (`/v1/billing/...`) as JSON, CSV or a printable HTML
//! page. See [`crate::domain::billing`] for the periods, the arithmetic and the rounding.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use turnpike_store::{StatementSummary, Store, TenantId};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AdminCaller, TenantCaller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Path, Query};
use super::logs::csv_response;
use crate::domain::billing::{self, format_minor, PlanSpec, PlanView, Statement, UserLine};
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/tenants/{id}/plan",
            get(get_tenant_plan).put(put_plan).delete(delete_plan),
        )
        .route("/v1/billing/plan", get(get_plan))
        .route("/v1/billing/plans", get(list_plans))
        .route("/v1/billing/statements", get(statements))
}

/// A price plan. Prices are decimal strings (or numbers) in the currency's major unit, at most
/// six decimals.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Per 10^9 bytes relayed, e.g. `"0.40"`.
    #[schema(value_type = String)]
    pub price_per_gb: Value,
    /// Per hour of allocation time, e.g. `"0.001"`.
    #[schema(value_type = String)]
    pub price_per_allocation_hour: Value,
    /// Bytes each period includes (default 0).
    pub included_bytes: Option<i64>,
    /// Day of the month (1 to 28, UTC) periods start on (default 1).
    pub billing_day: Option<i64>,
    /// `YYYY-MM`: the first month with a statement (default: the period now running).
    pub first_month: Option<String>,
}

/// A price given as a string or a JSON number, as text (numbers keep their written digits).
fn price_text(field: &str, v: &Value) -> ApiResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ApiError::invalid(format!(
            "`{field}` must be a decimal price, e.g. \"0.40\""
        ))),
    }
}

#[utoipa::path(put, path = "/v1/tenants/{id}/plan", tag = "billing", request_body = PlanBody,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = PlanView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_plan(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
    Body(b): Body<PlanBody>,
) -> ApiResult<Json<PlanView>> {
    let spec = PlanSpec {
        currency: b.currency,
        price_per_gb: price_text("price_per_gb", &b.price_per_gb)?,
        price_per_allocation_hour: price_text(
            "price_per_allocation_hour",
            &b.price_per_allocation_hour,
        )?,
        included_bytes: b.included_bytes,
        billing_day: b.billing_day,
        first_month: b.first_month,
    };
    let plan = billing::set_plan(&state, &id, &spec).await?;
    let view = PlanView::from(&plan);
    let detail = serde_json::to_value(&view).unwrap_or_default();
    who.audit(&state, "billing.plan.put", &id, detail).await;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/tenants/{id}/plan", tag = "billing",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = PlanView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_tenant_plan(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    _who: AdminCaller,
) -> ApiResult<Json<PlanView>> {
    Ok(Json(PlanView::from(&billing::plan(&state, &id).await?)))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}/plan", tag = "billing",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_plan(
    State(state): State<Shared>,
    Path(id): Path<TenantId>,
    who: AdminCaller,
) -> ApiResult<StatusCode> {
    billing::delete_plan(&state, &id).await?;
    who.audit(&state, "billing.plan.delete", &id, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/billing/plan", tag = "billing",
    responses((status = 200, body = PlanView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_plan(State(state): State<Shared>, who: TenantCaller) -> ApiResult<Json<PlanView>> {
    Ok(Json(PlanView::from(
        &billing::plan(&state, &who.tenant_id).await?,
    )))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    /// `YYYY-MM`: that month's statement (without it: the list).
    pub month: Option<String>,
    /// With `month`: `json` (default), `csv` or `html` (a printable page).
    pub format: Option<String>,
}

/// One statement in a list.
#[derive(Serialize, ToSchema)]
pub struct StatementItem {
    pub month: String,
    pub period_start: i64,
    pub period_end: i64,
    /// `open` (the period runs or is about to close) or `closed` (final).
    pub status: String,
    pub closed_at: Option<i64>,
    pub currency: String,
    pub total_minor: i64,
    pub total: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatementList {
    /// The tenant's plan, if it has one.
    pub plan: Option<PlanView>,
    pub items: Vec<StatementItem>,
}

#[utoipa::path(get, path = "/v1/billing/plans", tag = "billing",
    responses((status = 200, body = Vec<PlanView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_plans(
    State(state): State<Shared>,
    _who: AdminCaller,
) -> ApiResult<Json<Vec<PlanView>>> {
    let plans = billing::plans(&state).await?;
    Ok(Json(plans.iter().map(PlanView::from).collect()))
}

impl From<StatementSummary> for StatementItem {
    fn from(s: StatementSummary) -> Self {
        let digits = billing::minor_digits(&s.currency);
        let closed = s.closed_at > 0;
        Self {
            month: s.month,
            period_start: s.period_start,
            period_end: s.period_end,
            status: if closed { "closed" } else { "open" }.into(),
            closed_at: closed.then_some(s.closed_at),
            total: format_minor(s.total_minor, digits),
            currency: s.currency,
            total_minor: s.total_minor,
        }
    }
}

#[utoipa::path(get, path = "/v1/billing/statements", tag = "billing", params(StatementParams),
    responses((status = 200, body = Statement, description = "With `month`: that statement (JSON, CSV or HTML)"),
              (status = 200, body = StatementList, description = "Without `month`: the list, newest first"),
              (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn statements(
    State(state): State<Shared>,
    Query(p): Query<StatementParams>,
    who: TenantCaller,
) -> ApiResult<Response> {
    let Some(month) = p.month else {
        if p.format.is_some() {
            return Err(ApiError::invalid("`format` needs `month`"));
        }
        let items = billing::list(&state, &who.tenant_id).await?;
        let items = items.into_iter().map(StatementItem::from).collect();
        let plan = state.store.get_price_plan(&who.tenant_id).await?;
        let plan = plan.as_ref().map(PlanView::from);
        return Ok(Json(StatementList { plan, items }).into_response());
    };
    let s = billing::statement(&state, &who.tenant_id, &month).await?;
    match p.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(s).into_response()),
        "csv" => Ok(csv(&s)),
        "html" => Ok(html(&s)),
        _ => Err(ApiError::invalid(
            "`format` must be `json`, `csv` or `html`",
        )),
    }
}

/// The statement as CSV: one row per line item, then one per user.
fn csv(s: &Statement) -> Response {
    let d = s.minor_digits;
    let money = |m: i64| format_minor(m, d);
    // kind, the user line (user rows only), bytes, allocation seconds, amount.
    let row = |kind: &str, u: Option<&UserLine>, bytes: i64, secs: i64, minor: Option<i64>| {
        vec![
            s.month.clone(),
            s.status.clone(),
            kind.to_string(),
            u.map(|u| u.user_id.clone()).unwrap_or_default(),
            u.map(|u| u.credential_id.clone()).unwrap_or_default(),
            u.and_then(|u| u.username.clone()).unwrap_or_default(),
            bytes.to_string(),
            secs.to_string(),
            minor.map(|m| m.to_string()).unwrap_or_default(),
            minor.map(money).unwrap_or_default(),
            s.currency.clone(),
        ]
    };
    let (b, secs) = (s.billable_bytes, s.billable_allocation_seconds);
    let mut rows = vec![
        row(
            "period",
            None,
            s.bytes_in_period,
            s.allocation_seconds_in_period,
            None,
        ),
        row("late", None, s.late_bytes, s.late_allocation_seconds, None),
        row("included", None, s.included_bytes, 0, None),
        row("data", None, s.chargeable_bytes, 0, Some(s.data_minor)),
        row("allocation_time", None, 0, secs, Some(s.allocation_minor)),
        row("total", None, b, secs, Some(s.total_minor)),
    ];
    for u in &s.users {
        let amount = Some(u.data_minor + u.allocation_minor);
        rows.push(row("user", Some(u), u.bytes, u.allocation_seconds, amount));
    }
    csv_response(
        &format!("statement-{}", s.month),
        "month,status,kind,user_id,credential_id,username,bytes,allocation_seconds,amount_minor,amount,currency",
        rows,
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A printable page (no script; the console's style sheet for the screen, its print rules for
/// paper).
fn html(s: &Statement) -> Response {
    let d = s.minor_digits;
    let cur = escape(&s.currency);
    let money = |m: i64| format!("{} {cur}", format_minor(m, d));
    let date = |t: i64| turnpike_store::calendar::date_string(t);
    let mut users = String::new();
    for u in &s.users {
        let who = escape(&billing::line_name(u));
        users.push_str(&format!(
            "<tr><td>{who}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            u.bytes,
            u.allocation_seconds,
            money(u.data_minor + u.allocation_minor)
        ));
    }
    let status = if s.status == "closed" {
        "Closed: final.".to_string()
    } else {
        "Open: figures so far; final when the period closes.".to_string()
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Statement {month} for {tenant}</title>
<link rel="stylesheet" href="/console/console.css">
</head>
<body class="statement">
<main>
<h1>Statement {month}</h1>
<p>Tenant <code>{tenant}</code>. Period {start} to {end} (UTC, end excluded). {status}</p>
<table>
<caption>Charges</caption>
<thead><tr><th scope="col">Item</th><th scope="col">Quantity</th><th scope="col">Price</th><th scope="col">Amount</th></tr></thead>
<tbody>
<tr><td>Data relayed in the period</td><td class="num">{bytes_in} bytes</td><td></td><td></td></tr>
<tr><td>Late data of earlier periods</td><td class="num">{late} bytes</td><td></td><td></td></tr>
<tr><td>Included</td><td class="num">{included} bytes</td><td></td><td></td></tr>
<tr><td>Data charged</td><td class="num">{chargeable} bytes</td><td class="num">{per_gb} {cur} per GB (10<sup>9</sup> bytes)</td><td class="num">{data}</td></tr>
<tr><td>Allocation time</td><td class="num">{secs} s</td><td class="num">{per_hour} {cur} per hour</td><td class="num">{alloc}</td></tr>
</tbody>
<tfoot><tr><th scope="row" colspan="3">Total</th><td class="num"><strong>{total}</strong></td></tr></tfoot>
</table>
<table>
<caption>By user or credential (before the included volume)</caption>
<thead><tr><th scope="col">User or credential</th><th scope="col">Bytes</th><th scope="col">Allocation seconds</th><th scope="col">Amount</th></tr></thead>
<tbody>
{users}</tbody>
</table>
<p class="hint">Amounts are computed exactly and rounded once, half up, to the currency's minor unit.</p>
</main>
</body>
</html>
"#,
        month = escape(&s.month),
        tenant = escape(&s.tenant_id),
        start = date(s.period_start),
        end = date(s.period_end),
        bytes_in = s.bytes_in_period,
        late = s.late_bytes,
        included = s.included_bytes,
        chargeable = s.chargeable_bytes,
        per_gb = escape(&s.price_per_gb),
        per_hour = escape(&s.price_per_allocation_hour),
        data = money(s.data_minor),
        secs = s.billable_allocation_seconds,
        alloc = money(s.allocation_minor),
        total = money(s.total_minor),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
