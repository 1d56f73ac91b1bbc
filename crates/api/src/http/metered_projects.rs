//! Metered's project API (P1–P13 of its documentation): projects are child tenants of the app
//! (the tenant whose `secretKey` made them; see [`crate::domain::projects`]). The endpoints that
//! manage projects take the app's `secretKey`; the ones inside a project take it or the
//! project's own `projectApiKey`.

use axum::extract::State;
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::TenantId;
use utoipa::ToSchema;

use super::metered::{
    create_in, current_by_date, current_by_user, delete_by_label_in, delete_in, seconds_left,
    DeletedCount, KeyParams, LabelBody, MeteredCreate, MeteredCreated, Pagination, Removed,
    UsernameBody,
};
use super::metered_wire::{
    Keys, MBody, MPath, MQuery, MeteredError, MeteredMessage, MeteredResult, PROJECT,
};
use crate::calendar::date_string;
use crate::domain::credentials;
use crate::domain::error::DomainError;
use crate::domain::projects::{self, Project, ProjectSpec};
use crate::domain::usage;
use crate::state::Shared;

/// Metered's project paths.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v2/turn/project", routing::post(create_project))
        .route("/api/v2/turn/projects", routing::get(list_projects))
        .route(
            "/api/v2/turn/project/{project_id}",
            routing::put(update_project).delete(delete_project),
        )
        .route(
            "/api/v2/turn/project/{project_id}/regenerate_api_key",
            routing::post(regenerate_api_key),
        )
        .route(
            "/api/v2/turn/project/{project_id}/credential",
            routing::post(create_credential).delete(delete_credential),
        )
        .route(
            "/api/v2/turn/project/{project_id}/credentials",
            routing::get(list_credentials),
        )
        .route(
            "/api/v2/turn/project/{project_id}/credential/by_label",
            routing::delete(delete_credentials_by_label),
        )
        .route(
            "/api/v2/turn/project/{project_id}/current_usage",
            routing::get(current_usage),
        )
        .route(
            "/api/v2/turn/project/{project_id}/current_usage_by_date",
            routing::get(current_usage_by_date),
        )
        .route(
            "/api/v2/turn/project/{project_id}/current_usage_by_user",
            routing::get(current_usage_by_user),
        )
        .route(
            "/api/v2/turn/project/{project_id}/current_usage_for_user",
            routing::get(current_usage_for_user),
        )
}

/// A project as asked for: every field optional (`projectName` is required at creation).
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProjectBody {
    pub project_name: Option<String>,
    /// Bytes per UTC month, at least 1 MiB; 0: no quota (usage is still counted).
    pub quota_in_bytes: Option<i64>,
    /// An https URL; null removes the webhook.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    /// At most 10 addresses.
    pub notification_emails: Option<Vec<String>>,
    /// `notify`, `none` or `disable` (default).
    pub quota_exceeded_action: Option<String>,
}

/// A field that may be given as null (`Some(None)`), as opposed to absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

impl From<ProjectBody> for ProjectSpec {
    fn from(b: ProjectBody) -> Self {
        Self {
            name: b.project_name,
            quota_bytes: b.quota_in_bytes,
            webhook_url: b.webhook_url,
            notification_emails: b.notification_emails,
            exceeded_action: b.quota_exceeded_action,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectOut {
    #[serde(rename = "_id")]
    pub id: String,
    pub project_name: String,
    pub quota_in_bytes: i64,
    pub webhook_url: Option<String>,
    pub notification_emails: Vec<String>,
    pub quota_exceeded_action: String,
    /// ISO-8601.
    pub created: String,
    /// The project's key: only when it was just made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The secret the webhook's `Turnpike-Signature` is made with: only when it was just made
    /// (our addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` of a unix time.
fn iso8601(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.000Z",
        date_string(t),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl From<Project> for ProjectOut {
    fn from(p: Project) -> Self {
        Self {
            id: p.tenant.id.into_string(),
            project_name: p.tenant.name,
            quota_in_bytes: p.quota_bytes,
            webhook_url: p.webhook_url,
            notification_emails: p.notification_emails,
            quota_exceeded_action: p.exceeded_action.as_str().into(),
            created: iso8601(p.tenant.created_at),
            api_key: None,
            webhook_secret: None,
        }
    }
}

#[utoipa::path(post, path = "/api/v2/turn/project", tag = "metered", params(KeyParams), request_body = ProjectBody,
    responses((status = 200, body = ProjectOut), (status = "4XX", body = MeteredMessage)))]
pub async fn create_project(
    State(state): State<Shared>,
    keys: Keys,
    MBody(b): MBody<ProjectBody>,
) -> MeteredResult<Json<ProjectOut>> {
    let app = keys.app(&state, &PROJECT).await?;
    let c = projects::create(&state, &app.tenant_id, &b.into()).await?;
    let id = c.project.tenant.id.clone();
    app.audit(
        &state,
        "project.create",
        &id,
        json!({"name": c.project.tenant.name, "api": "metered"}),
    )
    .await;
    Ok(Json(ProjectOut {
        api_key: Some(c.api_key),
        webhook_secret: c.webhook_secret,
        ..c.project.into()
    }))
}

#[utoipa::path(get, path = "/api/v2/turn/projects", tag = "metered", params(KeyParams),
    responses((status = 200, body = Vec<ProjectOut>), (status = "4XX", body = MeteredMessage)))]
pub async fn list_projects(
    State(state): State<Shared>,
    keys: Keys,
) -> MeteredResult<Json<Vec<ProjectOut>>> {
    let app = keys.app(&state, &PROJECT).await?;
    let all = projects::list(&state, &app.tenant_id).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(put, path = "/api/v2/turn/project/{project_id}", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    request_body = ProjectBody,
    responses((status = 200, body = ProjectOut), (status = "4XX", body = MeteredMessage)))]
pub async fn update_project(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
    MBody(b): MBody<ProjectBody>,
) -> MeteredResult<Json<ProjectOut>> {
    let (app, _) = keys.owned_project(&state, &id).await?;
    let (p, secret) = projects::update(&state, &app.tenant_id, &id, &b.into()).await?;
    app.audit(&state, "project.update", &id, json!({"api": "metered"}))
        .await;
    Ok(Json(ProjectOut {
        webhook_secret: secret,
        ..p.into()
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

#[utoipa::path(delete, path = "/api/v2/turn/project/{project_id}", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = Success), (status = "4XX", body = MeteredMessage)))]
pub async fn delete_project(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
) -> MeteredResult<Json<Success>> {
    let (app, _) = keys.owned_project(&state, &id).await?;
    projects::delete(&state, &app.tenant_id, &id).await?;
    app.audit(&state, "project.delete", &id, json!({"api": "metered"}))
        .await;
    Ok(Json(Success { success: true }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewApiKey {
    pub api_key: String,
    pub success: bool,
}

#[utoipa::path(post, path = "/api/v2/turn/project/{project_id}/regenerate_api_key", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = NewApiKey), (status = "4XX", body = MeteredMessage)))]
pub async fn regenerate_api_key(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
) -> MeteredResult<Json<NewApiKey>> {
    let (app, _) = keys.owned_project(&state, &id).await?;
    let api_key = projects::regenerate_key(&state, &app.tenant_id, &id).await?;
    app.audit(
        &state,
        "project.regenerate_api_key",
        &id,
        json!({"api": "metered"}),
    )
    .await;
    Ok(Json(NewApiKey {
        api_key,
        success: true,
    }))
}

#[utoipa::path(post, path = "/api/v2/turn/project/{project_id}/credential", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    request_body = MeteredCreate,
    responses((status = 200, body = MeteredCreated), (status = "4XX", body = MeteredMessage)))]
pub async fn create_credential(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
    MBody(b): MBody<MeteredCreate>,
) -> MeteredResult<Json<MeteredCreated>> {
    let (who, _) = keys.project(&state, &id).await?;
    Ok(Json(create_in(&state, &who, &b).await?))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectCredential {
    #[serde(rename = "_id")]
    pub id: String,
    pub project: String,
    pub username: String,
    pub label: Option<String>,
    pub expiry_in_seconds: Option<i64>,
    pub expired: bool,
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectCredentials {
    pub data: Vec<ProjectCredential>,
    pub pagination: Pagination,
}

const CREDENTIALS_PER_PAGE: usize = 50;
const USERS_PER_PAGE: usize = 25;

#[utoipa::path(get, path = "/api/v2/turn/project/{project_id}/credentials", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = ProjectCredentials), (status = "4XX", body = MeteredMessage)))]
pub async fn list_credentials(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<ProjectCredentials>> {
    let (who, _) = keys.project(&state, &id).await?;
    let now = state.now();
    let label = q.label.as_deref();
    let page = q.page();
    let (items, total) = credentials::numbered_page(
        &state,
        &who.tenant_id,
        label,
        q.include_expired(),
        page,
        CREDENTIALS_PER_PAGE,
    )
    .await?;
    let data = items
        .iter()
        .map(|c| ProjectCredential {
            id: c.id.to_string(),
            project: id.to_string(),
            username: c.username.clone(),
            label: c.label.clone(),
            expiry_in_seconds: seconds_left(c, now),
            expired: c.is_expired(now),
            enabled: c.enabled,
        })
        .collect();
    Ok(Json(ProjectCredentials {
        data,
        pagination: Pagination::of(total, page, CREDENTIALS_PER_PAGE),
    }))
}

#[utoipa::path(delete, path = "/api/v2/turn/project/{project_id}/credential", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    request_body = UsernameBody,
    responses((status = 200, body = Removed), (status = "4XX", body = MeteredMessage)))]
pub async fn delete_credential(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
    MBody(b): MBody<UsernameBody>,
) -> MeteredResult<Json<Removed>> {
    let (who, _) = keys.project(&state, &id).await?;
    let username = b.username.as_deref().or(q.username.as_deref());
    Ok(Json(delete_in(&state, &who, username).await?))
}

#[utoipa::path(delete, path = "/api/v2/turn/project/{project_id}/credential/by_label", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    request_body = LabelBody,
    responses((status = 200, body = DeletedCount), (status = "4XX", body = MeteredMessage)))]
pub async fn delete_credentials_by_label(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
    MBody(b): MBody<LabelBody>,
) -> MeteredResult<Json<DeletedCount>> {
    let (who, _) = keys.project(&state, &id).await?;
    let label = b.label.as_deref().or(q.label.as_deref());
    Ok(Json(delete_by_label_in(&state, &who, label).await?))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUsage {
    /// 0: no quota.
    pub quota_in_bytes: i64,
    pub usage_in_bytes: i64,
    pub overage_in_bytes: i64,
}

#[utoipa::path(get, path = "/api/v2/turn/project/{project_id}/current_usage", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = ProjectUsage), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
) -> MeteredResult<Json<ProjectUsage>> {
    let (who, _) = keys.project(&state, &id).await?;
    let c = usage::current(&state, &who.tenant_id).await?;
    let used = c.counters.total_bytes();
    let quota = c.quota_bytes.unwrap_or(0);
    Ok(Json(ProjectUsage {
        quota_in_bytes: quota,
        usage_in_bytes: used,
        overage_in_bytes: if quota > 0 { (used - quota).max(0) } else { 0 },
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateUsageBytes {
    pub date: String,
    pub usage_in_bytes: i64,
}

#[utoipa::path(get, path = "/api/v2/turn/project/{project_id}/current_usage_by_date", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = Vec<DateUsageBytes>), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage_by_date(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    keys: Keys,
) -> MeteredResult<Json<Vec<DateUsageBytes>>> {
    let (who, _) = keys.project(&state, &id).await?;
    let days = current_by_date(&state, &who.tenant_id).await?;
    Ok(Json(
        days.into_iter()
            .map(|(date, usage_in_bytes)| DateUsageBytes {
                date,
                usage_in_bytes,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUserUsage {
    pub label: Option<String>,
    pub username: String,
    pub usage_in_bytes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectUsageByUser {
    pub data: Vec<ProjectUserUsage>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/api/v2/turn/project/{project_id}/current_usage_by_user", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = ProjectUsageByUser), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage_by_user(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<ProjectUsageByUser>> {
    let (who, _) = keys.project(&state, &id).await?;
    let all = current_by_user(&state, &who.tenant_id).await?;
    let page = q.page();
    let has_more = all.len() > page * USERS_PER_PAGE;
    Ok(Json(ProjectUsageByUser {
        data: all
            .into_iter()
            .skip((page - 1) * USERS_PER_PAGE)
            .take(USERS_PER_PAGE)
            .map(|u| ProjectUserUsage {
                label: u.label,
                username: u.username,
                usage_in_bytes: u.bytes,
            })
            .collect(),
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForUser {
    pub label: Option<String>,
    pub usage_in_bytes: i64,
}

#[utoipa::path(get, path = "/api/v2/turn/project/{project_id}/current_usage_for_user", tag = "metered", params(KeyParams, ("project_id" = String, Path)),
    responses((status = 200, body = ForUser), (status = "4XX", body = MeteredMessage)))]
pub async fn current_usage_for_user(
    State(state): State<Shared>,
    MPath(id): MPath<TenantId>,
    MQuery(q): MQuery<KeyParams>,
    keys: Keys,
) -> MeteredResult<Json<ForUser>> {
    let (who, _) = keys.project(&state, &id).await?;
    let username = q
        .username
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| MeteredError::bad("please pass the username query parameter"))?;
    let label = match credentials::by_username(&state, &who.tenant_id, username).await {
        Ok(c) => c.label,
        Err(DomainError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let bytes = current_by_user(&state, &who.tenant_id)
        .await?
        .into_iter()
        .find(|u| u.username == username)
        .map_or(0, |u| u.bytes);
    Ok(Json(ForUser {
        label,
        usage_in_bytes: bytes,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_is_iso_8601() {
        // 2026-11-30T22:00:00Z.
        assert_eq!(super::iso8601(1_796_076_000), "2026-11-30T22:00:00.000Z");
    }
}
