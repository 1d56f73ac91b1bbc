//! Compatibility with Metered's TURN REST API, app level (M1–M10a of Metered's documentation):
//! the same paths, query parameters, bodies, response shapes, status codes and error bodies,
//! so an app written against it works by changing only the host name. Projects (P1–P13) are in
//! [`super::metered_projects`]; the wire (errors, keys, bodies, ICE array) in
//! [`super::metered_wire`]. Our own `/v1` API is the primary, documented one; these map onto
//! its operations.
//!
//! Differences, on purpose: passwords are shown once, at creation, never in lists (we store only
//! long-term keys); `apiKey` is a publishable key that mints short-lived credentials scoped to
//! its stored credential instead of returning the stored password. Metered's create has no way
//! to name origins, so its `apiKey` allows any origin (`allowed_origins: ["*"]`, visible in
//! `GET /v1/keys`; revoke it there if unwanted). Usernames are unique per tenant: the endpoints
//! that take one address the caller's own. See docs/control-plane.md for the full list.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::{Credential, KeyTotal, TenantId};
use utoipa::{IntoParams, ToSchema};

use super::auth::{authenticate, Principal};
use super::ephemeral::{mint_for_caller, with_cors, MintRequest};
use super::metered_wire::{
    host_from_request, ice_entries, metered_targets, IceEntry, Keys, MBody, MQuery, MeteredError,
    MeteredErrorText, MeteredMessage, MeteredResult, Who, APP_NOT_FOUND, BY_LABEL, SECRET,
};
use crate::calendar::{date_string, parse_date};
use crate::domain::credentials::{self, CredentialSpec, ANY_ORIGIN};
use crate::domain::usage;
use crate::state::{AppState, Shared};

/// Metered's app-level paths.
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
            "/api/v1/turn/current_usage_by_date",
            routing::get(current_usage_by_date),
        )
        .route(
            "/api/v2/turn/current_usage_by_user",
            routing::get(current_usage_by_user),
        )
        .route(
            "/api/v1/turn/current_usage_by_user",
            routing::get(current_usage_by_user_v1),
        )
        .route(
            "/api/v2/turn/usage_daily_by_user",
            routing::get(usage_daily_by_user),
        )
}

pub const GB: f64 = 1_000_000_000.0;

#[derive(Deserialize, IntoParams, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyParams {
    /// The app's secret key (a tenant secret key).
    pub secret_key: Option<String>,
    /// A credential's publishable key (ICE servers).
    pub api_key: Option<String>,
    /// A project's key (project endpoints).
    pub project_api_key: Option<String>,
    /// Lists: include expired credentials (present and not `false`/`0`).
    pub all: Option<String>,
    /// Lists and usage by user: 1-based page.
    pub page: Option<u32>,
    pub label: Option<String>,
    pub username: Option<String>,
    /// ICE servers: one of Metered's region names.
    pub region: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

impl KeyParams {
    /// `all` as a presence flag (`?all`, `?all=true`) that `false` and `0` turn off.
    pub fn include_expired(&self) -> bool {
        self.all
            .as_deref()
            .is_some_and(|a| a != "false" && a != "0")
    }

    /// The 1-based page (1 when absent or 0).
    pub fn page(&self) -> usize {
        self.page.unwrap_or(1).max(1) as usize
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeteredCreate {
    /// Positive whole seconds; absent: never expires.
    #[schema(value_type = Option<i64>)]
    pub expiry_in_seconds: Option<serde_json::Value>,
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

/// `expiryInSeconds`: a positive whole number, or absent.
pub fn expiry_in_seconds(v: Option<&serde_json::Value>) -> MeteredResult<Option<i64>> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(s) if s > 0 => Ok(Some(s)),
            _ => Err(MeteredError::bad(
                "please enter a positive integer value for expiryInSeconds",
            )),
        },
    }
}

/// Creates a credential of `who`'s tenant with its publishable key (M1, P6).
pub async fn create_in(
    state: &AppState,
    who: &Who,
    b: &MeteredCreate,
) -> MeteredResult<MeteredCreated> {
    let t = &who.tenant_id;
    let expiry = expiry_in_seconds(b.expiry_in_seconds.as_ref())?;
    let spec = CredentialSpec {
        label: b.label.clone(),
        expires_in: expiry,
        ..Default::default()
    };
    let (c, password) = credentials::create(state, t, &spec).await?;
    let any = [ANY_ORIGIN.to_string()];
    let (api_key, _) = credentials::publishable_key(state, t, &c.id, &any).await?;
    let detail = json!({"username": c.username, "label": c.label, "api": "metered"});
    who.audit(state, "credential.create", &c.id, detail).await;
    Ok(MeteredCreated {
        username: c.username,
        password,
        expiry_in_seconds: expiry,
        label: b.label.clone(),
        api_key,
    })
}

#[utoipa::path(post, path = "/api/v1/turn/credential", tag = "metered", params(KeyParams), request_body = MeteredCreate,
    responses((status = 200, body = MeteredCreated), (status = "4XX", body = MeteredMessage)))]
pub async fn create(
    State(state): State<Shared>,
    keys: Keys,
    MBody(b): MBody<MeteredCreate>,
) -> MeteredResult<Json<MeteredCreated>> {
    let who = keys.app(&state, &SECRET).await?;
    Ok(Json(create_in(&state, &who, &b).await?))
}

#[utoipa::path(get, path = "/api/v1/turn/credentials", tag = "metered", params(KeyParams),
    responses((status = 200, body = Vec<IceEntry>), (status = "4XX", body = MeteredErrorText)))]
pub async fn ice_servers(
    State(state): State<Shared>,
    headers: HeaderMap,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Response> {
    let err = |e: MeteredError| e.as_error_field();
    let key = keys
        .api
        .as_deref()
        .or(keys.secret.as_deref())
        .ok_or_else(|| err(MeteredError::bad("Please specify API Key")))?;
    let who = authenticate(&state, Some(key)).await.map_err(|e| {
        if e.status == StatusCode::UNAUTHORIZED {
            err(MeteredError::new(
                StatusCode::UNAUTHORIZED,
                "Invalid API Key",
            ))
        } else {
            err(e.into())
        }
    })?;
    if !matches!(
        who,
        Principal::Publishable { .. } | Principal::Tenant { .. }
    ) {
        return Err(err(MeteredError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid API Key",
        )));
    }
    let client = crate::fleet::client_ip(&state, super::guard::client_ip(), &headers);
    let allowed = match who.tenant_id() {
        Some(t) => crate::fleet::allowed_regions(&state, t),
        None => None,
    };
    let targets = metered_targets(&state, client, q.region.as_deref(), allowed.as_deref())?;
    let (m, origin) = mint_for_caller(&state, &who, &headers, &MintRequest::default())
        .await
        .map_err(|e| err(e.into()))?;
    let host = host_from_request(&state, &headers);
    let list = ice_entries(&state, &targets, host.as_deref(), &m.username, &m.password);
    Ok(with_cors(Json(list).into_response(), origin))
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

impl Pagination {
    /// The pagination of `page` of `total` records, `per_page` a page.
    pub fn of(total: usize, page: usize, per_page: usize) -> Self {
        let total_pages = total.div_ceil(per_page).max(1);
        Self {
            total_records: total,
            current_page: page,
            total_pages,
            next_page: (page < total_pages).then_some(page + 1),
            prev_page: (page > 1).then_some(page - 1),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeteredList {
    pub data: Vec<MeteredCredential>,
    pub pagination: Pagination,
}

const PER_PAGE: usize = 100;

/// Seconds left before `c` expires (0 once expired), if it expires.
pub fn seconds_left(c: &Credential, now: i64) -> Option<i64> {
    c.expires_at.map(|e| (e - now).max(0))
}

#[utoipa::path(get, path = "/api/v2/turn/credentials", tag = "metered", params(KeyParams),
    responses((status = 200, body = MeteredList), (status = "4XX", body = MeteredMessage)))]
pub async fn list(
    State(state): State<Shared>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<MeteredList>> {
    let who = keys.app(&state, &SECRET).await?;
    let now = state.now();
    let label = q.label.as_deref();
    let page = q.page();
    let (items, total) = credentials::numbered_page(
        &state,
        &who.tenant_id,
        label,
        q.include_expired(),
        page,
        PER_PAGE,
    )
    .await?;
    let data = items
        .iter()
        .map(|c| MeteredCredential {
            username: c.username.clone(),
            label: c.label.clone(),
            expiry_in_seconds: seconds_left(c, now),
            expired: c.is_expired(now),
            enabled: c.enabled,
        })
        .collect();
    Ok(Json(MeteredList {
        data,
        pagination: Pagination::of(total, page, PER_PAGE),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct UsernameBody {
    pub username: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

async fn enable_disable(
    state: &AppState,
    who: &Who,
    username: Option<&str>,
    enabled: bool,
) -> MeteredResult<Json<Message>> {
    let t = &who.tenant_id;
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| MeteredError::bad("`username` field missing"))?;
    let c = credentials::by_username(state, t, username)
        .await
        .map_err(|_| {
            MeteredError::new(
                StatusCode::UNAUTHORIZED,
                if enabled {
                    "Credential not found"
                } else {
                    "credential not found"
                },
            )
        })?;
    if c.enabled == enabled {
        return Err(MeteredError::bad(if enabled {
            "Credential is already enabled"
        } else {
            "Credential is already disabled"
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
    responses((status = 200, body = Message), (status = "4XX", body = MeteredMessage)))]
pub async fn enable(
    State(state): State<Shared>,
    keys: Keys,
    MBody(b): MBody<UsernameBody>,
) -> MeteredResult<Json<Message>> {
    let who = keys.app(&state, &SECRET).await?;
    enable_disable(&state, &who, b.username.as_deref(), true).await
}

#[utoipa::path(post, path = "/api/v1/turn/credential/disable", tag = "metered", params(KeyParams), request_body = UsernameBody,
    responses((status = 200, body = Message), (status = "4XX", body = MeteredMessage)))]
pub async fn disable(
    State(state): State<Shared>,
    keys: Keys,
    MBody(b): MBody<UsernameBody>,
) -> MeteredResult<Json<Message>> {
    let who = keys.app(&state, &APP_NOT_FOUND).await?;
    enable_disable(&state, &who, b.username.as_deref(), false).await
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub success: bool,
    pub message: String,
}

/// Deletes `who`'s credential `username` (M6, P8): from the body, else the query.
pub async fn delete_in(
    state: &AppState,
    who: &Who,
    username: Option<&str>,
) -> MeteredResult<Removed> {
    let t = &who.tenant_id;
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| MeteredError::bad("username is required"))?;
    let c = credentials::by_username(state, t, username)
        .await
        .map_err(|_| MeteredError::bad("credential of the specified username is not found"))?;
    credentials::delete(state, t, &c.id, false).await?;
    who.audit(state, "credential.delete", &c.id, json!({"api": "metered"}))
        .await;
    Ok(Removed {
        success: true,
        message: "credential removed".into(),
    })
}

#[utoipa::path(delete, path = "/api/v1/turn/credential", tag = "metered", params(KeyParams), request_body = UsernameBody,
    responses((status = 200, body = Removed), (status = "4XX", body = MeteredMessage)))]
pub async fn delete(
    State(state): State<Shared>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
    MBody(b): MBody<UsernameBody>,
) -> MeteredResult<Json<Removed>> {
    let who = keys.app(&state, &SECRET).await?;
    let username = b.username.as_deref().or(q.username.as_deref());
    Ok(Json(delete_in(&state, &who, username).await?))
}

#[derive(Serialize, ToSchema)]
pub struct DeletedCount {
    pub deleted: u64,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LabelBody {
    pub label: Option<String>,
}

/// Deletes `who`'s unexpired credentials with `label` (M7, P9).
pub async fn delete_by_label_in(
    state: &AppState,
    who: &Who,
    label: Option<&str>,
) -> MeteredResult<DeletedCount> {
    let t = &who.tenant_id;
    let label = label
        .filter(|l| !l.is_empty() && l.chars().count() < 100)
        .ok_or_else(|| {
            MeteredError::bad("label must be a non-empty string of less than 100 characters")
        })?;
    let mut deleted = 0;
    for c in credentials::all(state, t, Some(label), false).await? {
        credentials::delete(state, t, &c.id, false).await?;
        deleted += 1;
    }
    who.audit(
        state,
        "credential.delete_by_label",
        label,
        json!({"deleted": deleted, "api": "metered"}),
    )
    .await;
    Ok(DeletedCount { deleted })
}

#[utoipa::path(delete, path = "/api/v2/turn/credential/by_label", tag = "metered", params(KeyParams), request_body = LabelBody,
    responses((status = 200, body = DeletedCount), (status = "4XX", body = MeteredMessage)))]
pub async fn delete_by_label(
    State(state): State<Shared>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
    MBody(b): MBody<LabelBody>,
) -> MeteredResult<Json<DeletedCount>> {
    let who = keys.app(&state, &BY_LABEL).await?;
    let label = q.label.as_deref().or(b.label.as_deref());
    Ok(Json(delete_by_label_in(&state, &who, label).await?))
}

#[derive(Serialize, ToSchema)]
pub struct MeteredCurrentUsage {
    /// 0: no quota.
    #[serde(rename = "quotaInGB")]
    pub quota_in_gb: f64,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
    #[serde(rename = "overageInGB")]
    pub overage_in_gb: f64,
}

#[utoipa::path(get, path = "/api/v1/turn/current_usage", tag = "metered", params(KeyParams),
    responses((status = 200, body = MeteredCurrentUsage), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage(
    State(state): State<Shared>,
    keys: Keys,
) -> MeteredResult<Json<MeteredCurrentUsage>> {
    let who = keys.app(&state, &SECRET).await?;
    let c = usage::current(&state, &who.tenant_id).await?;
    let used = c.counters.total_bytes();
    let quota = c.quota_bytes.unwrap_or(0);
    let over = if quota > 0 { (used - quota).max(0) } else { 0 };
    Ok(Json(MeteredCurrentUsage {
        quota_in_gb: quota as f64 / GB,
        usage_in_gb: used as f64 / GB,
        overage_in_gb: over as f64 / GB,
    }))
}

/// `(date, bytes)` of each day of `tenant_id`'s current billing period up to today.
pub async fn current_by_date(
    state: &AppState,
    tenant_id: &TenantId,
) -> MeteredResult<Vec<(String, i64)>> {
    let c = usage::current(state, tenant_id).await?;
    let rows = usage::hours(state, tenant_id, c.period_start / 3600, c.period_end / 3600).await?;
    let today = state.now().min(c.period_end - 1);
    Ok(usage::daily_bytes(&rows, c.period_start, today)
        .into_iter()
        .map(|(d, b)| (date_string(d), b))
        .collect())
}

#[derive(Serialize, ToSchema)]
pub struct DateUsageGb {
    pub date: String,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
}

#[utoipa::path(get, path = "/api/v1/turn/current_usage_by_date", tag = "metered", params(KeyParams),
    responses((status = 200, body = Vec<DateUsageGb>), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage_by_date(
    State(state): State<Shared>,
    keys: Keys,
) -> MeteredResult<Json<Vec<DateUsageGb>>> {
    let who = keys.app(&state, &SECRET).await?;
    let days = current_by_date(&state, &who.tenant_id).await?;
    Ok(Json(
        days.into_iter()
            .map(|(date, b)| DateUsageGb {
                date,
                usage_in_gb: b as f64 / GB,
            })
            .collect(),
    ))
}

/// One user's usage: a credential's username and label, or an ephemeral user id.
#[derive(Debug, Clone)]
pub struct UserBytes {
    pub username: String,
    pub label: Option<String>,
    pub bytes: i64,
}

/// Usage by user, most first: a stored credential's username and label, else the user id
/// (`ephemeral` when there is none); totals of the same name add up.
pub fn by_user(totals: Vec<KeyTotal>) -> Vec<UserBytes> {
    let mut m: HashMap<(String, Option<String>), i64> = HashMap::new();
    for t in totals {
        let bytes = t.bytes;
        let key = match t.username {
            Some(u) => (u, t.label),
            None if t.user_id.is_empty() => ("ephemeral".to_string(), None),
            None => (t.user_id, None),
        };
        *m.entry(key).or_default() += bytes;
    }
    let mut v: Vec<UserBytes> = m
        .into_iter()
        .map(|((username, label), bytes)| UserBytes {
            username,
            label,
            bytes,
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.username.cmp(&b.username)));
    v
}

/// Usage by user of `tenant_id`'s current billing period.
pub async fn current_by_user(
    state: &AppState,
    tenant_id: &TenantId,
) -> MeteredResult<Vec<UserBytes>> {
    let c = usage::current(state, tenant_id).await?;
    let totals =
        usage::by_key(state, tenant_id, c.period_start / 3600, c.period_end / 3600).await?;
    Ok(by_user(totals))
}

#[derive(Serialize, ToSchema)]
pub struct UserUsage {
    pub username: String,
    pub label: Option<String>,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
    /// Exact bytes (our addition).
    pub bytes: i64,
}

impl From<UserBytes> for UserUsage {
    fn from(u: UserBytes) -> Self {
        Self {
            username: u.username,
            label: u.label,
            usage_in_gb: u.bytes as f64 / GB,
            bytes: u.bytes,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsageByUser {
    pub data: Vec<UserUsage>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/api/v2/turn/current_usage_by_user", tag = "metered", params(KeyParams),
    responses((status = 200, body = UsageByUser), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage_by_user(
    State(state): State<Shared>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<UsageByUser>> {
    let who = keys.app(&state, &SECRET).await?;
    let all = current_by_user(&state, &who.tenant_id).await?;
    let page = q.page();
    let has_more = all.len() > page * PER_PAGE;
    Ok(Json(UsageByUser {
        data: all
            .into_iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .map(Into::into)
            .collect(),
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UserUsageV1 {
    pub username: String,
    #[serde(rename = "usageInGB")]
    pub usage_in_gb: f64,
}

#[utoipa::path(get, path = "/api/v1/turn/current_usage_by_user", tag = "metered", params(KeyParams),
    responses((status = 200, body = Vec<UserUsageV1>), (status = "4XX", body = MeteredErrorText)))]
pub async fn current_usage_by_user_v1(
    State(state): State<Shared>,
    keys: Keys,
) -> MeteredResult<Json<Vec<UserUsageV1>>> {
    // Archived: its example passes the app's key as `apiKey`; `secretKey` works too.
    let keys = Keys {
        secret: keys.secret.or(keys.api),
        ..Keys::default()
    };
    let invalid = super::metered_wire::Flavor {
        missing: (StatusCode::BAD_REQUEST, "Please specify API Key"),
        invalid: (StatusCode::UNAUTHORIZED, "Invalid API Key"),
    };
    let who = keys
        .app(&state, &invalid)
        .await
        .map_err(MeteredError::as_error_field)?;
    let all = current_by_user(&state, &who.tenant_id)
        .await
        .map_err(MeteredError::as_error_field)?;
    Ok(Json(
        all.into_iter()
            .map(|u| UserUsageV1 {
                username: u.username,
                usage_in_gb: u.bytes as f64 / GB,
            })
            .collect(),
    ))
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

/// Turnpike's addition (not in Metered's documentation): usage by user per day over a range,
/// seven days a page.
#[utoipa::path(get, path = "/api/v2/turn/usage_daily_by_user", tag = "metered", params(KeyParams),
    responses((status = 200, body = DailyUsage), (status = "4XX", body = MeteredMessage)))]
pub async fn usage_daily_by_user(
    State(state): State<Shared>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<DailyUsage>> {
    let who = keys.app(&state, &SECRET).await?;
    let t = who.tenant_id.clone();
    let today = state.now().div_euclid(86_400) * 86_400;
    let bad = || MeteredError::bad("dates must be YYYY-MM-DD");
    let end = match &q.end_date {
        Some(d) => parse_date(d).ok_or_else(bad)?.min(today),
        None => today,
    };
    let start = match &q.start_date {
        Some(d) => parse_date(d).ok_or_else(bad)?,
        None => end - 6 * 86_400,
    };
    if start > end || end - start > 366 * 86_400 {
        return Err(MeteredError::bad(
            "startDate must be on or before endDate, at most a year apart",
        ));
    }
    let page = q.page() as i64;
    let page_start = start + (page - 1) * 7 * 86_400;
    let page_end = (page_start + 7 * 86_400).min(end + 86_400);
    let mut data = Vec::new();
    let mut day = page_start;
    while day < page_end {
        let totals = usage::by_key(&state, &t, day / 3600, (day + 86_400) / 3600).await?;
        data.push(DayUsage {
            date: date_string(day),
            usage: by_user(totals).into_iter().map(Into::into).collect(),
        });
        day += 86_400;
    }
    Ok(Json(DailyUsage {
        data,
        has_more: page_end <= end,
    }))
}
