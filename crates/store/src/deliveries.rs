//! Two per-tenant logs kept 30 days and 1,000 rows: the notification delivery log (one row per
//! attempt to deliver an alert or test event by webhook or email) and refused TURN requests.

use crate::TenantId;

#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Delivery {
    /// Ordered by time within a second (the log lists newest first by `at`, then `id`).
    pub id: String,
    pub tenant_id: TenantId,
    /// The event's id (the webhook's `Idempotency-Key`): the same on every attempt.
    pub event_id: String,
    /// `quota.threshold`, `test`, or Metered's event name.
    pub kind: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The webhook URL's host, or the email addresses.
    pub target: String,
    pub at: i64,
    /// 1 for the first try.
    pub attempt: i64,
    /// `delivered`, `failed` (retried unless it was the last try), `refused` (the target's
    /// address is not allowed; not retried).
    pub outcome: String,
    /// The HTTP status answered, if any.
    pub status: Option<i64>,
    pub error: Option<String>,
    /// The event as sent (JSON), to send it again.
    pub body: String,
}

/// A refused TURN request for one of the tenant's usernames.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AuthFailure {
    /// Ordered by time within a second.
    pub id: String,
    pub tenant_id: TenantId,
    pub at: i64,
    pub username: String,
    /// `ip:port` of the client.
    pub client: String,
    pub transport: String,
    pub reason: String,
}
