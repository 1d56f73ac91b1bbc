//! Quotas (tenant-wide and per credential), notification settings (webhook URL and secret,
//! email address) and the fired alerts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_store::{AlertEvent, NotificationSettings, Quota, Store};
use utoipa::ToSchema;

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Path};
use crate::quota::Threshold;
use crate::state::{AppState, Shared};
use crate::util::check_text;

/// Quotas, notification settings and fired alerts.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/credentials/{id}/quota",
            routing::put(put_credential_quota),
        )
        .route("/v1/quota", routing::put(put_tenant_quota))
        .route("/v1/quotas", routing::get(list_quotas))
        .route("/v1/quotas/{scope}", routing::delete(delete_quota))
        .route(
            "/v1/notifications",
            routing::put(put_notifications).get(get_notifications),
        )
        .route("/v1/alerts", routing::get(list_alerts))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// `month` (default) or `day`, UTC.
    pub period: Option<String>,
    /// Bytes (all four legs) per period.
    pub bytes_per_period: Option<i64>,
    /// Most concurrent allocations.
    pub max_allocations: Option<i64>,
    /// Most bits per second per allocation.
    pub max_bitrate_bps: Option<i64>,
    /// The bitrate of the `throttle` action (default 64000).
    pub throttle_bitrate_bps: Option<i64>,
    /// Actions at percentages of `bytes_per_period`.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
}

#[derive(Serialize, ToSchema)]
pub struct QuotaOut {
    /// `tenant` or a credential id.
    pub scope: String,
    #[serde(flatten)]
    pub quota: QuotaBody,
}

fn to_out(q: Quota) -> QuotaOut {
    QuotaOut {
        scope: q.scope,
        quota: QuotaBody {
            period: Some(q.period),
            bytes_per_period: q.bytes_per_period,
            max_allocations: q.max_allocations,
            max_bitrate_bps: q.max_bitrate_bps,
            throttle_bitrate_bps: q.throttle_bitrate_bps,
            thresholds: serde_json::from_str(&q.thresholds).unwrap_or_default(),
        },
    }
}

async fn put(state: &AppState, tenant: &str, scope: &str, b: QuotaBody) -> ApiResult<QuotaOut> {
    let period = b.period.clone().unwrap_or_else(|| "month".into());
    if period != "month" && period != "day" {
        return Err(ApiError::invalid("`period` must be `month` or `day`"));
    }
    let positive = |name: &str, v: Option<i64>| match v {
        Some(x) if x < 1 => Err(ApiError::invalid(format!("`{name}` must be positive"))),
        _ => Ok(()),
    };
    positive("bytes_per_period", b.bytes_per_period)?;
    positive("max_allocations", b.max_allocations)?;
    positive("max_bitrate_bps", b.max_bitrate_bps)?;
    positive("throttle_bitrate_bps", b.throttle_bitrate_bps)?;
    if b.max_allocations.is_some_and(|m| m > u32::MAX as i64) {
        return Err(ApiError::invalid("`max_allocations` is too large"));
    }
    if b.thresholds.len() > 10
        || b.thresholds
            .iter()
            .any(|t| !(1..=1000).contains(&t.percent))
    {
        return Err(ApiError::invalid(
            "at most 10 `thresholds`, each `percent` 1 to 1000",
        ));
    }
    if !b.thresholds.is_empty() && b.bytes_per_period.is_none() {
        return Err(ApiError::invalid("`thresholds` need `bytes_per_period`"));
    }
    let q = Quota {
        tenant_id: tenant.to_string(),
        scope: scope.to_string(),
        period,
        bytes_per_period: b.bytes_per_period,
        max_allocations: b.max_allocations,
        max_bitrate_bps: b.max_bitrate_bps,
        throttle_bitrate_bps: b.throttle_bitrate_bps,
        thresholds: serde_json::to_string(&b.thresholds).unwrap_or_else(|_| "[]".into()),
    };
    state.store.put_quota(&q).await?;
    crate::sync::after_change(state).await;
    crate::quota::evaluate(state, Some(&[tenant.to_string()].into())).await;
    Ok(to_out(q))
}

#[utoipa::path(put, path = "/v1/quota", tag = "quotas", request_body = QuotaBody,
    responses((status = 200, body = QuotaOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_tenant_quota(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(b): Body<QuotaBody>,
) -> ApiResult<Json<QuotaOut>> {
    let t = who.tenant_id.clone();
    let out = put(&state, &t, "tenant", b).await?;
    who.audit(
        &state,
        "quota.put",
        "tenant",
        serde_json::to_value(&out.quota).unwrap_or_default(),
    )
    .await;
    Ok(Json(out))
}

#[utoipa::path(put, path = "/v1/credentials/{id}/quota", tag = "quotas", request_body = QuotaBody,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = QuotaOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_credential_quota(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: TenantCaller,
    Body(b): Body<QuotaBody>,
) -> ApiResult<Json<QuotaOut>> {
    let t = who.tenant_id.clone();
    state.store.get_credential(&t, &id).await?;
    let out = put(&state, &t, &id, b).await?;
    who.audit(
        &state,
        "quota.put",
        &id,
        serde_json::to_value(&out.quota).unwrap_or_default(),
    )
    .await;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/quotas", tag = "quotas",
    responses((status = 200, body = Vec<QuotaOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_quotas(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<QuotaOut>>> {
    let t = &who.tenant_id;
    Ok(Json(
        state
            .store
            .list_quotas(Some(t))
            .await?
            .into_iter()
            .map(to_out)
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/v1/quotas/{scope}", tag = "quotas",
    params(("scope" = String, Path, description = "`tenant` or a credential id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_quota(
    State(state): State<Shared>,
    Path(scope): Path<String>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    let t = who.tenant_id.clone();
    state.store.delete_quota(&t, &scope).await?;
    crate::quota::evaluate(&state, None).await;
    crate::sync::after_change(&state).await;
    who.audit(&state, "quota.delete", &scope, serde_json::json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NotificationsBody {
    /// HTTPS (or HTTP) URL that receives signed JSON alerts; null: none. Its host must be (or
    /// resolve to) a public address: loopback, private, link-local, metadata and other internal
    /// addresses are refused (422), here and at each delivery.
    pub webhook_url: Option<String>,
    /// Address that receives alert emails; null: none.
    pub email_to: Option<String>,
    /// Make a new webhook secret even if one exists.
    #[serde(default)]
    pub rotate_secret: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationsOut {
    pub webhook_url: Option<String>,
    pub email_to: Option<String>,
    /// The webhook signing secret: present only when it was just created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    pub has_webhook_secret: bool,
}

#[utoipa::path(put, path = "/v1/notifications", tag = "quotas", request_body = NotificationsBody,
    responses((status = 200, body = NotificationsOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_notifications(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(b): Body<NotificationsBody>,
) -> ApiResult<Json<NotificationsOut>> {
    let t = who.tenant_id.clone();
    if let Some(u) = &b.webhook_url {
        check_text("webhook_url", u, 500)?;
        crate::webhook_target::check_url(u, &state.cfg.danger_allow_webhook_ranges)
            .await
            .map_err(ApiError::invalid)?;
    }
    if let Some(e) = &b.email_to {
        check_text("email_to", e, 254)?;
        if e.parse::<lettre::Address>().is_err() {
            return Err(ApiError::invalid("`email_to` is not an email address"));
        }
    }
    let old = state.store.get_notifications(&t).await?;
    let old_secret = old.and_then(|o| o.webhook_secret);
    let (secret, fresh) = match (&b.webhook_url, old_secret, b.rotate_secret) {
        (None, _, _) => (None, false),
        (Some(_), Some(s), false) => (Some(s), false),
        (Some(_), _, _) => (
            Some(format!("whsec_{}", crate::keys::random_token(24))),
            true,
        ),
    };
    let n = NotificationSettings {
        tenant_id: t.clone(),
        webhook_url: b.webhook_url.clone(),
        webhook_secret: secret.clone(),
        email_to: b.email_to.clone(),
    };
    state.store.put_notifications(&n).await?;
    who.audit(&state, "notifications.put", "tenant", serde_json::json!({"webhook_url": n.webhook_url, "email_to": n.email_to, "secret_rotated": fresh})).await;
    Ok(Json(NotificationsOut {
        webhook_url: n.webhook_url,
        email_to: n.email_to,
        has_webhook_secret: secret.is_some(),
        webhook_secret: if fresh { secret } else { None },
    }))
}

#[utoipa::path(get, path = "/v1/notifications", tag = "quotas",
    responses((status = 200, body = NotificationsOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_notifications(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<NotificationsOut>> {
    let t = &who.tenant_id;
    let n = state.store.get_notifications(t).await?.unwrap_or_default();
    Ok(Json(NotificationsOut {
        webhook_url: n.webhook_url,
        email_to: n.email_to,
        has_webhook_secret: n.webhook_secret.is_some(),
        webhook_secret: None,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AlertOut {
    pub id: String,
    pub scope: String,
    pub period_start: i64,
    pub percent: i64,
    pub action: String,
    pub bytes_used: i64,
    pub bytes_quota: i64,
    pub at: i64,
}

impl From<AlertEvent> for AlertOut {
    fn from(e: AlertEvent) -> Self {
        Self {
            id: e.id,
            scope: e.scope,
            period_start: e.period_start,
            percent: e.percent,
            action: e.action,
            bytes_used: e.bytes_used,
            bytes_quota: e.bytes_quota,
            at: e.at,
        }
    }
}

#[utoipa::path(get, path = "/v1/alerts", tag = "quotas",
    responses((status = 200, body = Vec<AlertOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<AlertOut>>> {
    let t = &who.tenant_id;
    Ok(Json(
        state
            .store
            .list_alerts(t)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}
