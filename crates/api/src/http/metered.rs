//! Compatibility with Metered's TURN REST API: the same paths, query parameters and response
//! shapes, so an app written against it works by changing only the host name. Our own `/v1` API
//! is the primary, documented one; these map onto it.
//!
//! Differences, on purpose: passwords are shown once, at creation, never in lists (we store only
//! long-term keys); errors use our one JSON error shape; `apiKey` is a publishable key that
//! mints short-lived credentials scoped to its stored credential instead of returning the stored
//! password. Metered's create has no way to name origins, so its `apiKey` allows any origin
//! (`allowed_origins: ["*"]`, visible in `GET /v1/keys`; revoke it there if unwanted).
//! Usernames are unique per tenant: the endpoints that take one address the caller's own.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, MeteredKey, TenantCaller};
use super::ephemeral::{ice_list, mint_for_caller, with_cors, MintRequest};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Query};
use crate::calendar::{date_string, parse_date};
use crate::domain::credentials::{self, CredentialSpec, ANY_ORIGIN};
use crate::domain::usage;
use crate::state::{AppState, Shared};

/// Metered's paths.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/turn/credential",
            routing::post(create).delete(delete),
        )
        .route("/api/v1/turn/credentials", routing::get(ice_servers))
        .route("/api/v1/turn/credential/enable", routing::post(enable))
        .route("/api/v1/turn/credential/disable", routing::post(disable))
        .route("/api/v2/turn/credentials", routing::get(list))
        .route(
            "/api/v2/turn/credential/by_label",
            routing::delete(delete_by_label),
        )
        .route("/api/v1/turn/current_usage", routing::get(current_usage))
        .route(
            "/api/v2/turn/current_usage_by_user",
            routing::get(current_usage_by_user),
        )
        .route(
            "/api/v2/turn/usage_daily_by_user",
            routing::get(usage_daily_by_user),
        )
}

const GB: f64 = 1_000_000_000.0;

#[derive(Deserialize, IntoParams, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyParams {
    /// The tenant's secret key.
    pub secret_key: Option<String>,
    /// A credential's publishable key.
    pub api_key: Option<String>,
    /// v2 list: include expired credentials.
    pub all: Option<bool>,
    /// v2 list / usage: 1-based page.
    pub page: Option<u32>,
    pub label: Option<String>,
    pub username: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

/// A tenant's secret key, in `?secretKey=` (or the bearer header).
type MeteredTenant = TenantCaller<MeteredKey>;

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeteredCreate {
    pub expiry_in_seconds: Option<i64>,
    pub label: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeteredCreated {
    pub username: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub api_key: String,
}

#[utoipa::path(post, path = "/api/v1/turn/credential", tag = "metered", params(KeyParams), request_body = MeteredCreate,
    responses((status = 200, body = MeteredCreated), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    State(state): State<Shared>,
    Query(_): Query<KeyParams>,
    who: MeteredTenant,
    Body(b): Body<MeteredCreate>,
) -> ApiResult<Json<MeteredCreated>> {
    let t = &who.tenant_id;
    if b.expiry_in_seconds.is_some_and(|e| e <= 0) {
        return Err(ApiError::invalid(
            "please enter a positive integer value for expiryInSeconds",
        ));
    }
    let spec = CredentialSpec {
        label: b.label.clone(),
        expires_in: b.expiry_in_seconds,
        ..Default::default()
    };
    let (c, password) = credentials::create(&state, t, &spec).await?;
    let any = [ANY_ORIGIN.to_string()];
    let (api_key, _) = credentials::publishable_key(&state, t, &c.id, &any).await?;
    let detail = json!({"username": c.username, "label": c.label, "api": "metered"});
    who.audit(&state, "credential.create", &c.id, detail).await;
    Ok(Json(MeteredCreated {
        username: c.username,
        password,
        expiry_in_seconds: b.expiry_in_seconds,
        label: b.label,
        api_key,
    }))
}

#[utoipa::path(get, path = "/api/v1/turn/credentials", tag = "metered", params(KeyParams),
    responses((status = 200, body = Vec<super::ephemeral::IceServerOut>), (status = "4XX", body = ErrorBody)))]
pub async fn ice_servers(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(_): Query<KeyParams>,
    who: Caller<MeteredKey>,
) -> Result<Response, ApiError> {
    let req = MintRequest::default();
    let (m, origin) = mint_for_caller(&state, &who.principal, &headers, &req).await?;
    Ok(with_cors(
        Json(ice_list(&state, &m)).into_response(),
        origin,
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeteredCredential {
    pub username: String,
    pub label: Option<String>,
    pub expiry_in_seconds: Option<i64>,
    pub expired: bool,
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub total_records: usize,
    pub current_page: usize,
    pub total_pages: usize,
    pub next_page: Option<usize>,
    pub prev_page: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct MeteredList {
    pub data: Vec<MeteredCredential>,
    pub pagination: Pagination,
}

const PER_PAGE: usize = 100;

#[utoipa::path(get, path = "/api/v2/turn/credentials", tag = "metered", params(KeyParams),
    responses((status = 200, body = MeteredList), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    Query(q): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<MeteredList>> {
    let now = state.now();
    let (label, include_expired) = (q.label.as_deref(), q.all.unwrap_or(false));
    let all = credentials::all(&state, &who.tenant_id, label, include_expired).await?;
    let page = q.page.unwrap_or(1).max(1) as usize;
    let total_pages = all.len().div_ceil(PER_PAGE).max(1);
    let data = all
        .iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|c| MeteredCredential {
            username: c.username.clone(),
            label: c.label.clone(),
            expiry_in_seconds: c.expires_at.map(|e| (e - now).max(0)),
            expired: c.is_expired(now),
            enabled: c.enabled,
        })
        .collect();
    Ok(Json(MeteredList {
        data,
        pagination: Pagination {
            total_records: all.len(),
            current_page: page,
            total_pages,
            next_page: (page < total_pages).then_some(page + 1),
            prev_page: (page > 1).then_some(page - 1),
        },
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UsernameBody {
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

async fn enable_disable(
    state: &AppState,
    who: &MeteredTenant,
    username: &str,
    enabled: bool,
) -> ApiResult<Json<Message>> {
    let t = &who.tenant_id;
    let c = credentials::by_username(state, t, username).await?;
    if c.enabled == enabled {
        return Err(ApiError::conflict(if enabled {
            "credential is already enabled"
        } else {
            "credential is already disabled"
        }));
    }
    credentials::set_enabled(state, t, &c.id, enabled, false).await?;
    let action = if enabled {
        "credential.enable"
    } else {
        "credential.disable"
    };
    who.audit(state, action, &c.id, json!({"api": "metered"}))
        .await;
    Ok(Json(Message {
        message: if enabled {
            "Credential enabled successfully".into()
        } else {
            "Turn credential disabled successfully".into()
        },
    }))
}

#[utoipa::path(post, path = "/api/v1/turn/credential/enable", tag = "metered", params(KeyParams), request_body = UsernameBody,
    responses((status = 200, body = Message), (status = "4XX", body = ErrorBody)))]
pub async fn enable(
    State(state): State<Shared>,
    Query(_): Query<KeyParams>,
    who: MeteredTenant,
    Body(b): Body<UsernameBody>,
) -> ApiResult<Json<Message>> {
    enable_disable(&state, &who, &b.username, true).await
}

#[utoipa::path(post, path = "/api/v1/turn/credential/disable", tag = "metered", params(KeyParams), request_body = UsernameBody,
    responses((status = 200, body = Message), (status = "4XX", body = ErrorBody)))]
pub async fn disable(
    State(state): State<Shared>,
    Query(_): Query<KeyParams>,
    who: MeteredTenant,
    Body(b): Body<UsernameBody>,
) -> ApiResult<Json<Message>> {
    enable_disable(&state, &who, &b.username, false).await
}

#[utoipa::path(delete, path = "/api/v1/turn/credential", tag = "metered", params(KeyParams),
    responses((status = 200, body = Message), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    State(state): State<Shared>,
    Query(q): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<Message>> {
    let t = who.tenant_id.clone();
    let username = q
        .username
        .as_deref()
        .ok_or_else(|| ApiError::invalid("`username` query parameter missing"))?;
    let c = credentials::by_username(&state, &t, username).await?;
    credentials::delete(&state, &t, &c.id, false).await?;
    who.audit(
        &state,
        "credential.delete",
        &c.id,
        json!({"api": "metered"}),
    )
    .await;
    Ok(Json(Message {
        message: "Credential deleted successfully".into(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeletedCount {
    pub deleted: u64,
}

#[utoipa::path(delete, path = "/api/v2/turn/credential/by_label", tag = "metered", params(KeyParams),
    responses((status = 200, body = DeletedCount), (status = "4XX", body = ErrorBody)))]
pub async fn delete_by_label(
    State(state): State<Shared>,
    Query(q): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<DeletedCount>> {
    let t = who.tenant_id.clone();
    let label = q
        .label
        .as_deref()
        .ok_or_else(|| ApiError::invalid("Label must be a string of less than 100 characters"))?;
    let deleted = credentials::delete_by_label(&state, &t, label, false).await?;
    who.audit(
        &state,
        "credential.delete_by_label",
        label,
        json!({"deleted": deleted, "api": "metered"}),
    )
    .await;
    Ok(Json(DeletedCount { deleted }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeteredCurrentUsage {
    #[serde(rename = "quotaInGB")]
    pub quota_in_gb: Option<f64>,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
    #[serde(rename = "overageInGB")]
    pub overage_in_gb: f64,
}

#[utoipa::path(get, path = "/api/v1/turn/current_usage", tag = "metered", params(KeyParams),
    responses((status = 200, body = MeteredCurrentUsage), (status = "4XX", body = ErrorBody)))]
pub async fn current_usage(
    State(state): State<Shared>,
    Query(_): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<MeteredCurrentUsage>> {
    let t = who.tenant_id.clone();
    let c = usage::current(&state, &t).await?;
    let used = c.counters.total_bytes() as f64 / GB;
    let quota = c.quota_bytes.map(|q| q as f64 / GB);
    Ok(Json(MeteredCurrentUsage {
        quota_in_gb: quota,
        usage_in_gb: used,
        overage_in_gb: quota.map_or(0.0, |q| (used - q).max(0.0)),
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserUsage {
    pub username: String,
    pub label: String,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
    /// Exact bytes (our addition).
    pub bytes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageByUser {
    pub data: Vec<UserUsage>,
    pub has_more: bool,
}

/// Credential id -> (username, label) of a tenant, for naming usage rows.
async fn names(state: &AppState, t: &str) -> ApiResult<HashMap<String, (String, String)>> {
    Ok(credentials::all(state, t, None, true)
        .await?
        .into_iter()
        .map(|c| {
            (
                c.id,
                (c.username, c.label.unwrap_or_else(|| "unlabeled".into())),
            )
        })
        .collect())
}

fn by_user(
    rows: &[turnpike_store::UsageRow],
    names: &HashMap<String, (String, String)>,
) -> Vec<UserUsage> {
    let mut m: HashMap<(String, String), i64> = HashMap::new();
    for r in rows {
        let (u, l) = names.get(&r.credential_id).cloned().unwrap_or_else(|| {
            let u = if r.user_id.is_empty() {
                "ephemeral".to_string()
            } else {
                r.user_id.clone()
            };
            (u, "unlabeled".into())
        });
        *m.entry((u, l)).or_default() += r.counters.total_bytes();
    }
    let mut v: Vec<UserUsage> = m
        .into_iter()
        .map(|((username, label), bytes)| UserUsage {
            username,
            label,
            usage_in_gb: bytes as f64 / GB,
            bytes,
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.username.cmp(&b.username)));
    v
}

#[utoipa::path(get, path = "/api/v2/turn/current_usage_by_user", tag = "metered", params(KeyParams),
    responses((status = 200, body = UsageByUser), (status = "4XX", body = ErrorBody)))]
pub async fn current_usage_by_user(
    State(state): State<Shared>,
    Query(q): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<UsageByUser>> {
    let t = who.tenant_id.clone();
    let c = usage::current(&state, &t).await?;
    let rows = usage::rows(&state, &t, c.period_start / 3600, c.period_end / 3600).await?;
    let all = by_user(&rows, &names(&state, &t).await?);
    let page = q.page.unwrap_or(1).max(1) as usize;
    let has_more = all.len() > page * PER_PAGE;
    Ok(Json(UsageByUser {
        data: all
            .into_iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .collect(),
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DayUsage {
    pub date: String,
    pub usage: Vec<UserUsage>,
}

#[derive(Serialize, ToSchema)]
pub struct DailyUsage {
    pub data: Vec<DayUsage>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/api/v2/turn/usage_daily_by_user", tag = "metered", params(KeyParams),
    responses((status = 200, body = DailyUsage), (status = "4XX", body = ErrorBody)))]
pub async fn usage_daily_by_user(
    State(state): State<Shared>,
    Query(q): Query<KeyParams>,
    who: MeteredTenant,
) -> ApiResult<Json<DailyUsage>> {
    let t = who.tenant_id.clone();
    let today = state.now().div_euclid(86_400) * 86_400;
    let bad = || ApiError::invalid("dates must be YYYY-MM-DD");
    let end = match &q.end_date {
        Some(d) => parse_date(d).ok_or_else(bad)?.min(today),
        None => today,
    };
    let start = match &q.start_date {
        Some(d) => parse_date(d).ok_or_else(bad)?,
        None => end - 6 * 86_400,
    };
    if start > end || end - start > 366 * 86_400 {
        return Err(ApiError::invalid(
            "startDate must be on or before endDate, at most a year apart",
        ));
    }
    let page = q.page.unwrap_or(1).max(1) as i64;
    let page_start = start + (page - 1) * 7 * 86_400;
    let page_end = (page_start + 7 * 86_400).min(end + 86_400);
    let rows = usage::rows(
        &state,
        &t,
        page_start / 3600,
        page_end.max(page_start) / 3600,
    )
    .await?;
    let names = names(&state, &t).await?;
    let mut data = Vec::new();
    let mut day = page_start;
    while day < page_end {
        let day_rows: Vec<_> = rows
            .iter()
            .filter(|r| r.hour * 3600 >= day && r.hour * 3600 < day + 86_400)
            .cloned()
            .collect();
        data.push(DayUsage {
            date: date_string(day),
            usage: by_user(&day_rows, &names),
        });
        day += 86_400;
    }
    Ok(Json(DailyUsage {
        data,
        has_more: page_end <= end,
    }))
}
