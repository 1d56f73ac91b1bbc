//! Quotas (tenant-wide and per credential), notification settings (webhook URL and secret,
//! email address) and the fired alerts; see [`crate::domain::quota`] and
//! [`crate::domain::notifications`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use turnpike_store::Store;
use turnpike_store::{AlertEvent, CredentialId, Quota, QuotaScope};
use utoipa::{IntoParams, ToSchema};

use super::auth::TenantCaller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Path, Query};
use crate::domain::notifications::{self, NotificationSpec};
use crate::domain::quota::{self, QuotaSpec};
use crate::state::Shared;

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
        .route("/v1/notifications/test", routing::post(send_test))
        .route(
            "/v1/notifications/deliveries",
            routing::get(list_deliveries),
        )
        .route(
            "/v1/notifications/deliveries/{event_id}/retry",
            routing::post(retry_delivery),
        )
}

// What a threshold does once usage reaches it (see `crate::domain::quota`; no doc comment:
// it would change the OpenAPI schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Notify,
    Throttle,
    Refuse,
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Percent of `bytes_per_period` (1 to 1000).
    pub percent: u32,
    pub action: Action,
}

impl From<&Threshold> for quota::Threshold {
    fn from(t: &Threshold) -> Self {
        let action = match t.action {
            Action::Notify => quota::Action::Notify,
            Action::Throttle => quota::Action::Throttle,
            Action::Refuse => quota::Action::Refuse,
            Action::Disconnect => quota::Action::Disconnect,
        };
        Self {
            percent: t.percent,
            action,
        }
    }
}

impl From<quota::Threshold> for Threshold {
    fn from(t: quota::Threshold) -> Self {
        let action = match t.action {
            quota::Action::Notify => Action::Notify,
            quota::Action::Throttle => Action::Throttle,
            quota::Action::Refuse => Action::Refuse,
            quota::Action::Disconnect => Action::Disconnect,
        };
        Self {
            percent: t.percent,
            action,
        }
    }
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

impl From<&QuotaBody> for QuotaSpec {
    fn from(b: &QuotaBody) -> Self {
        Self {
            period: b.period.clone(),
            bytes_per_period: b.bytes_per_period,
            max_allocations: b.max_allocations,
            max_bitrate_bps: b.max_bitrate_bps,
            throttle_bitrate_bps: b.throttle_bitrate_bps,
            thresholds: b.thresholds.iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QuotaOut {
    /// `tenant` or a credential id.
    pub scope: String,
    #[serde(flatten)]
    pub quota: QuotaBody,
}

impl From<Quota> for QuotaOut {
    fn from(q: Quota) -> Self {
        let thresholds = quota::thresholds(&q).into_iter().map(Into::into).collect();
        Self {
            scope: q.scope.as_str().into(),
            quota: QuotaBody {
                period: Some(q.period.as_str().into()),
                bytes_per_period: q.bytes_per_period,
                max_allocations: q.max_allocations,
                max_bitrate_bps: q.max_bitrate_bps,
                throttle_bitrate_bps: q.throttle_bitrate_bps,
                thresholds,
            },
        }
    }
}

#[utoipa::path(put, path = "/v1/quota", tag = "quotas", request_body = QuotaBody,
    responses((status = 200, body = QuotaOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_tenant_quota(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(b): Body<QuotaBody>,
) -> ApiResult<Json<QuotaOut>> {
    let q = quota::put_tenant(&state, &who.tenant_id, &(&b).into()).await?;
    let out = QuotaOut::from(q);
    let detail = serde_json::to_value(&out.quota).unwrap_or_default();
    who.audit(&state, "quota.put", "tenant", detail).await;
    Ok(Json(out))
}

#[utoipa::path(put, path = "/v1/credentials/{id}/quota", tag = "quotas", request_body = QuotaBody,
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 200, body = QuotaOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_credential_quota(
    State(state): State<Shared>,
    Path(id): Path<CredentialId>,
    who: TenantCaller,
    Body(b): Body<QuotaBody>,
) -> ApiResult<Json<QuotaOut>> {
    let q = quota::put_credential(&state, &who.tenant_id, &id, &(&b).into()).await?;
    let out = QuotaOut::from(q);
    let detail = serde_json::to_value(&out.quota).unwrap_or_default();
    who.audit(&state, "quota.put", &id, detail).await;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/quotas", tag = "quotas",
    responses((status = 200, body = Vec<QuotaOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_quotas(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<QuotaOut>>> {
    let all = quota::list(&state, &who.tenant_id).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
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
    quota::delete(&state, &who.tenant_id, &QuotaScope::from(scope.as_str())).await?;
    who.audit(&state, "quota.delete", &scope, json!({})).await;
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
    /// The webhook's body: `turnpike` (default, `type: quota.threshold`) or `metered`
    /// (Metered's `{event, project, projectName, app, quota, usage}`); signed the same way.
    pub format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationsOut {
    pub webhook_url: Option<String>,
    pub email_to: Option<String>,
    /// The webhook signing secret: present only when it was just created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    pub has_webhook_secret: bool,
    /// `turnpike` or `metered`.
    pub format: String,
}

#[utoipa::path(put, path = "/v1/notifications", tag = "quotas", request_body = NotificationsBody,
    responses((status = 200, body = NotificationsOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_notifications(
    State(state): State<Shared>,
    who: TenantCaller,
    Body(b): Body<NotificationsBody>,
) -> ApiResult<Json<NotificationsOut>> {
    let spec = NotificationSpec {
        webhook_url: b.webhook_url,
        email_to: b.email_to,
        rotate_secret: b.rotate_secret,
        format: b.format,
    };
    let (n, fresh) = notifications::put(&state, &who.tenant_id, &spec).await?;
    let detail =
        json!({"webhook_url": n.webhook_url, "email_to": n.email_to, "secret_rotated": fresh});
    who.audit(&state, "notifications.put", "tenant", detail)
        .await;
    Ok(Json(NotificationsOut {
        has_webhook_secret: n.webhook_secret.is_some(),
        webhook_secret: if fresh { n.webhook_secret } else { None },
        webhook_url: n.webhook_url,
        email_to: n.email_to,
        format: n.webhook_format.as_str().into(),
    }))
}

#[utoipa::path(get, path = "/v1/notifications", tag = "quotas",
    responses((status = 200, body = NotificationsOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_notifications(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<Json<NotificationsOut>> {
    let n = notifications::get(&state, &who.tenant_id).await?;
    Ok(Json(NotificationsOut {
        webhook_url: n.webhook_url,
        email_to: n.email_to,
        has_webhook_secret: n.webhook_secret.is_some(),
        webhook_secret: None,
        format: n.webhook_format.as_str().into(),
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
            scope: e.scope.as_str().into(),
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
    let all = quota::alerts(&state, &who.tenant_id).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct EventSent {
    /// The event's id (its `Idempotency-Key`); its attempts appear in the delivery log.
    pub event_id: String,
}

#[utoipa::path(post, path = "/v1/notifications/test", tag = "quotas",
    responses((status = 202, body = EventSent), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn send_test(
    State(state): State<Shared>,
    who: TenantCaller,
) -> ApiResult<(StatusCode, Json<EventSent>)> {
    let event_id = state
        .notifier
        .send_test(&state.store, &who.tenant_id)
        .await?;
    who.audit(&state, "notifications.test", &event_id, json!({}))
        .await;
    Ok((StatusCode::ACCEPTED, Json(EventSent { event_id })))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// At most this many attempts, newest first, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub event_id: String,
    pub kind: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The webhook URL's host, or the email addresses.
    pub target: String,
    pub at: i64,
    pub attempt: i64,
    /// `delivered`, `failed` or `refused` (internal address; not retried).
    pub outcome: String,
    pub status: Option<i64>,
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/v1/notifications/deliveries", tag = "quotas", params(DeliveryParams),
    responses((status = 200, body = Vec<DeliveryOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_deliveries(
    State(state): State<Shared>,
    Query(p): Query<DeliveryParams>,
    who: TenantCaller,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be 1 to 1000"));
    }
    let all = state.store.list_deliveries(&who.tenant_id, limit).await?;
    Ok(Json(
        all.into_iter()
            .map(|d| DeliveryOut {
                id: d.id,
                event_id: d.event_id,
                kind: d.kind,
                channel: d.channel,
                target: d.target,
                at: d.at,
                attempt: d.attempt,
                outcome: d.outcome,
                status: d.status,
                error: d.error,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/notifications/deliveries/{event_id}/retry", tag = "quotas",
    params(("event_id" = String, Path, description = "The event's id")),
    responses((status = 202), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_delivery(
    State(state): State<Shared>,
    Path(event_id): Path<String>,
    who: TenantCaller,
) -> ApiResult<StatusCode> {
    state
        .notifier
        .resend(&state.store, &who.tenant_id, &event_id)
        .await?;
    who.audit(&state, "notifications.retry", &event_id, json!({}))
        .await;
    Ok(StatusCode::ACCEPTED)
}
