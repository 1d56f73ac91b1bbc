//! Alert delivery: webhooks (JSON, HMAC-SHA256 signed, retried with exponential backoff, with an
//! idempotency key) and email (SMTP). Delivery runs in background tasks; a failure is logged and
//! counted, never blocks metering.
//!
//! Webhook request:
//! - `POST <webhook_url>`, `Content-Type: application/json`, body: the event (see [`payload`];
//!   with the webhook format `metered`, Metered's project event: see [`metered_body`]);
//! - `Turnpike-Event: quota.threshold` (Metered's format: its event name);
//! - `Idempotency-Key: <event id>` (the same on every retry; receivers drop duplicates);
//! - `Turnpike-Signature: t=<unix>,v1=<hex>` where `hex = HMAC-SHA256(webhook_secret,
//!   "<t>.<raw body>")`. Receivers recompute it and reject old timestamps.
//!
//! Retries: up to `webhook_attempts` tries; delays `webhook_first_retry` doubling (1, 2, 4, 8,
//! 16 s by default) on connection errors and non-2xx answers. A target whose address is
//! refused (see [`crate::webhook_target`]) is logged as a warning and not retried.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use turnpike_store::{
    AlertEvent, AnyStore, Delivery, NotificationSettings, Store, TenantId, WebhookFormat,
};

use super::error::{DomainError, DomainResult};
use crate::clock::unix_now;
use crate::config::{ApiConfig, SmtpConfig};
use crate::webhook_target::{self, GuardedResolver};

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    /// None if the client could not be built (then webhooks are not sent, and that is logged).
    http: Option<reqwest::Client>,
    /// Webhook targets opened by `danger_allow_webhook_ranges`.
    danger: Arc<[IpNet]>,
    /// Webhook tries, and the first retry delay (doubling).
    attempts: u32,
    first_retry: Duration,
    smtp: Option<SmtpConfig>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new(&ApiConfig::default())
    }
}

impl Notifier {
    /// Webhooks never reach refused addresses (see [`crate::webhook_target`]) unless in
    /// `danger_allow_webhook_ranges`: the client resolves names through [`GuardedResolver`],
    /// follows no redirect and uses no proxy (a proxy would connect to whatever address it is
    /// given).
    pub fn new(cfg: &ApiConfig) -> Self {
        let danger = &cfg.danger_allow_webhook_ranges;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(danger)))
            .build()
            .inspect_err(|e| {
                tracing::error!(error = %e, "cannot build the webhook client; webhooks will not be sent");
            })
            .ok();
        Self {
            http,
            danger: danger.as_slice().into(),
            attempts: cfg.webhook_attempts.max(1),
            first_retry: cfg.webhook_first_retry,
            smtp: cfg.smtp.clone(),
        }
    }

    /// Delivers `event` to the tenant's webhook and email (as set in `store`), in the
    /// background.
    pub async fn send(&self, store: &AnyStore, event: AlertEvent) {
        let settings = match store.get_notifications(&event.tenant_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read notification settings");
                return;
            }
        };
        let (kind, body) = match settings.webhook_format {
            WebhookFormat::Turnpike => ("quota.threshold".to_string(), payload(&event)),
            WebhookFormat::Metered => {
                let p = metered_payload(store, &event).await;
                (p["event"].as_str().unwrap_or_default().to_string(), p)
            }
        };
        let subject = format!(
            "Turnpike: {}% of the {} quota used ({})",
            event.percent, event.scope, event.action
        );
        let out = Outgoing {
            tenant_id: event.tenant_id.clone(),
            event_id: event.id.clone(),
            kind,
            body: body.to_string(),
        };
        self.dispatch(store, settings, out, Some(subject));
    }

    /// Sends a `test` event to the tenant's webhook and email now (in the background; the
    /// delivery log shows the outcome). Returns its id; 409 when neither is set.
    pub async fn send_test(&self, store: &AnyStore, tenant_id: &TenantId) -> DomainResult<String> {
        let settings = store
            .get_notifications(tenant_id)
            .await?
            .filter(|s| s.webhook_url.is_some() || s.email_to.is_some())
            .ok_or_else(|| {
                DomainError::Conflict(
                    "no webhook_url or email_to set: PUT /v1/notifications first".into(),
                )
            })?;
        let id = format!("evt_test_{}", crate::keys::random_hex(8));
        let body = serde_json::json!({
            "id": id, "type": "test", "created_at": unix_now(), "tenant_id": tenant_id,
            "message": "A test event: your endpoint receives Turnpike's alerts.",
        });
        let out = Outgoing {
            tenant_id: tenant_id.clone(),
            event_id: id.clone(),
            kind: "test".into(),
            body: body.to_string(),
        };
        self.dispatch(store, settings, out, Some("Turnpike: test alert".into()));
        Ok(id)
    }

    /// Sends a logged event again to the tenant's current webhook (same id and body: receivers
    /// that saw it drop it by its idempotency key). 404 when the log has no such event.
    pub async fn resend(
        &self,
        store: &AnyStore,
        tenant_id: &TenantId,
        event_id: &str,
    ) -> DomainResult<()> {
        let d = store
            .delivery_of(tenant_id, event_id)
            .await?
            .ok_or_else(|| DomainError::not_found("no such event in the delivery log"))?;
        let settings = store
            .get_notifications(tenant_id)
            .await?
            .filter(|s| s.webhook_url.is_some())
            .ok_or_else(|| {
                DomainError::Conflict("no webhook_url set: PUT /v1/notifications first".into())
            })?;
        let settings = NotificationSettings {
            email_to: None,
            ..settings
        };
        let out = Outgoing {
            tenant_id: tenant_id.clone(),
            event_id: d.event_id,
            kind: d.kind,
            body: d.body,
        };
        self.dispatch(store, settings, out, None);
        Ok(())
    }

    /// Starts the webhook and email deliveries of `out` that `settings` ask for (email only
    /// with a `subject`), each attempt recorded in the delivery log.
    fn dispatch(
        &self,
        store: &AnyStore,
        settings: NotificationSettings,
        out: Outgoing,
        subject: Option<String>,
    ) {
        let out = Arc::new(out);
        if let (Some(url), Some(secret), Some(http)) = (
            settings.webhook_url,
            settings.webhook_secret,
            self.http.clone(),
        ) {
            let (attempts, first) = (self.attempts, self.first_retry);
            let danger = self.danger.clone();
            let log = Log {
                store: store.clone(),
                out: out.clone(),
            };
            tokio::spawn(async move {
                let target = Target {
                    url: &url,
                    danger: &danger,
                };
                deliver_webhook(&http, target, &secret, &log, attempts, first).await;
            });
        }
        if let (Some(to), Some(smtp), Some(subject)) =
            (settings.email_to, self.smtp.clone(), subject)
        {
            let log = Log {
                store: store.clone(),
                out,
            };
            tokio::spawn(async move {
                let r = send_email(&smtp, &to, &subject, &log.out.body).await;
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "alert email not sent");
                }
                let (outcome, error) = match r {
                    Ok(()) => ("delivered", None),
                    Err(e) => ("failed", Some(e)),
                };
                log.record("email", &to, 1, outcome, None, error).await;
            });
        }
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// An event on its way: its tenant, id, kind and body.
struct Outgoing {
    tenant_id: TenantId,
    event_id: String,
    kind: String,
    body: String,
}

/// Where attempts at delivering one event are recorded.
struct Log {
    store: AnyStore,
    out: Arc<Outgoing>,
}

impl Log {
    async fn record(
        &self,
        channel: &str,
        target: &str,
        attempt: u32,
        outcome: &str,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let d = Delivery {
            // Time-ordered (the log lists newest first, attempts of one second included).
            id: format!("dlv_{:013}_{}", unix_millis(), crate::keys::random_hex(4)),
            tenant_id: self.out.tenant_id.clone(),
            event_id: self.out.event_id.clone(),
            kind: self.out.kind.clone(),
            channel: channel.into(),
            target: target.into(),
            at: unix_now(),
            attempt: i64::from(attempt),
            outcome: outcome.into(),
            status: status.map(i64::from),
            error,
            body: self.out.body.clone(),
        };
        if let Err(e) = self.store.add_delivery(&d).await {
            tracing::warn!(error = %e, "notification delivery not logged");
        }
    }
}

/// The JSON body of an alert.
pub fn payload(e: &AlertEvent) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "type": "quota.threshold",
        "created_at": e.at,
        "tenant_id": e.tenant_id,
        "scope": e.scope.as_str(),
        "period_start": e.period_start,
        "percent": e.percent,
        "action": e.action,
        "bytes_used": e.bytes_used,
        "bytes_quota": e.bytes_quota,
    })
}

/// Metered's event name for a threshold: `project_quota_exceeded` at 100 % and above,
/// `project_quota_80_percent` at 80 %, `project_quota_<n>_percent` for other thresholds (set
/// through Turnpike's own API).
pub fn metered_event(percent: i64) -> String {
    if percent >= 100 {
        "project_quota_exceeded".into()
    } else {
        format!("project_quota_{percent}_percent")
    }
}

/// Metered's webhook body: `{event, project, projectName, app, quota, usage}` (bytes). `app` is
/// the parent tenant's name (the tenant's own for a tenant that is not a project).
pub fn metered_body(e: &AlertEvent, project_name: &str, app: &str) -> serde_json::Value {
    serde_json::json!({
        "event": metered_event(e.percent),
        "project": e.tenant_id,
        "projectName": project_name,
        "app": app,
        "quota": e.bytes_quota,
        "usage": e.bytes_used,
    })
}

async fn metered_payload(store: &AnyStore, e: &AlertEvent) -> serde_json::Value {
    let tenant = store.get_tenant(&e.tenant_id).await.ok();
    let name = tenant.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    let app = match tenant.and_then(|t| t.parent_id) {
        Some(p) => store
            .get_tenant(&p)
            .await
            .map(|t| t.name)
            .unwrap_or_default(),
        None => name.clone(),
    };
    metered_body(e, &name, &app)
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(format!("{t}.").as_bytes());
    m.update(body.as_bytes());
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// A webhook URL and the ranges opened for it.
struct Target<'a> {
    url: &'a str,
    danger: &'a [IpNet],
}

const REFUSED_SHORT: &str = "the target's address is internal (not allowed); not retried";

const REFUSED_LOG: &str = "webhook target refused: its address is loopback, private, link-local \
    or otherwise internal (open a range with danger_allow_webhook_ranges); not retried";

async fn deliver_webhook(
    http: &reqwest::Client,
    target: Target<'_>,
    secret: &str,
    log: &Log,
    attempts: u32,
    first_retry: Duration,
) {
    let (id, kind, body) = (&log.out.event_id, &log.out.kind, &log.out.body);
    let Ok(url) = reqwest::Url::parse(target.url) else {
        tracing::warn!(event = id, "webhook URL unparsable; not sent");
        log.record(
            "webhook",
            "",
            1,
            "refused",
            None,
            Some("unparsable URL".into()),
        )
        .await;
        return;
    };
    let host = url.host_str().unwrap_or("").to_string();
    if webhook_target::literal_refused(&url, target.danger) {
        tracing::warn!(event = id, host, "{REFUSED_LOG}");
        log.record(
            "webhook",
            &host,
            1,
            "refused",
            None,
            Some(REFUSED_SHORT.into()),
        )
        .await;
        return;
    }
    let mut delay = first_retry;
    for attempt in 1..=attempts {
        let t = unix_now();
        let r = http
            .post(url.clone())
            .header("content-type", "application/json")
            .header("turnpike-event", kind.as_str())
            .header("idempotency-key", id.as_str())
            .header("turnpike-signature", signature(secret, t, body))
            .body(body.to_string())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(event = id, attempt, "webhook delivered");
                let status = Some(resp.status().as_u16());
                log.record("webhook", &host, attempt, "delivered", status, None)
                    .await;
                return;
            }
            Ok(resp) => {
                tracing::warn!(event = id, attempt, status = %resp.status(), "webhook refused");
                let status = Some(resp.status().as_u16());
                log.record("webhook", &host, attempt, "failed", status, None)
                    .await;
            }
            Err(e) if webhook_target::is_refused(&e) => {
                tracing::warn!(event = id, host, "{REFUSED_LOG}");
                log.record(
                    "webhook",
                    &host,
                    attempt,
                    "refused",
                    None,
                    Some(REFUSED_SHORT.into()),
                )
                .await;
                return;
            }
            Err(e) => {
                let e = e.without_url();
                tracing::warn!(event = id, attempt, error = %e, "webhook failed");
                log.record(
                    "webhook",
                    &host,
                    attempt,
                    "failed",
                    None,
                    Some(e.to_string()),
                )
                .await;
            }
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    tracing::error!(event = id, attempts, "webhook given up");
}

async fn send_email(smtp: &SmtpConfig, to: &str, subject: &str, body: &str) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut msg = Message::builder();
    for a in to.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        msg = msg.to(a.parse().map_err(|e| format!("to address: {e}"))?);
    }
    let msg = msg
        .from(
            smtp.from
                .parse()
                .map_err(|e| format!("from address: {e}"))?,
        )
        .subject(subject)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| e.to_string())?;
    let builder = match smtp.security.as_str() {
        "tls" => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?
        }
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| e.to_string())?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(15)));
    if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            u.clone(),
            p.clone(),
        ));
    }
    builder.build().send(msg).await.map_err(|e| e.to_string())?;
    tracing::info!("alert email sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_an_independent_computation() {
        // Python: hmac.new(b"whsec", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            super::signature("whsec", 1_700_000_000, "{}"),
            "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
        );
    }

    #[test]
    fn metered_bodies_name_metered_events_in_bytes() {
        let e = turnpike_store::AlertEvent {
            tenant_id: "ten_p".into(),
            percent: 80,
            bytes_used: 900,
            bytes_quota: 1000,
            ..Default::default()
        };
        assert_eq!(
            super::metered_body(&e, "proj", "app"),
            serde_json::json!({"event": "project_quota_80_percent", "project": "ten_p",
                "projectName": "proj", "app": "app", "quota": 1000, "usage": 900})
        );
        assert_eq!(super::metered_event(100), "project_quota_exceeded");
        assert_eq!(super::metered_event(150), "project_quota_exceeded");
        assert_eq!(super::metered_event(50), "project_quota_50_percent");
    }
}
