//! The audit log (every credential, key, quota and setting change) and the allocation log
//! (every allocation: start, end, bytes per leg, peers, client address, credential), as JSON or
//! CSV (`format=csv`).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{acting_tenant, Caller, Principal, TenantCaller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Query;
use crate::domain::logs::{self, Range};
use crate::state::{AppState, Shared};

/// The audit and allocation logs.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/audit", get(audit_log))
        .route("/v1/allocations", get(allocation_log))
        .route("/v1/allocations/live", get(live_allocations))
        .route("/v1/auth-failures", get(auth_failures))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Start, unix seconds (default: 30 days ago).
    pub from: Option<i64>,
    /// End, unix seconds, exclusive (default: now + 1).
    pub to: Option<i64>,
    /// At most this many entries, 1 to 100000 (default 1000).
    pub limit: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    pub id: String,
    pub at: i64,
    /// Key id that made the change (`admin` for the configured admin key).
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON text.
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct AllocationOut {
    pub id: String,
    pub credential_id: String,
    pub user_id: String,
    pub username: String,
    pub client: String,
    pub transport: String,
    pub relay: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub client_to_server_bytes: i64,
    pub server_to_peer_bytes: i64,
    pub peer_to_server_bytes: i64,
    pub server_to_client_bytes: i64,
    pub peers: i64,
}

/// The range asked for, and whether as CSV.
fn range(state: &AppState, p: &LogParams) -> ApiResult<(Range, bool)> {
    let r = Range::parse(p.from, p.to, p.limit, state.now())?;
    let csv = match p.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        _ => return Err(ApiError::invalid("`format` must be `json` or `csv`")),
    };
    Ok((r, csv))
}

/// One CSV field (RFC 4180 quoting), with a leading `'` against spreadsheet formula injection.
pub(super) fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub(super) fn csv_response(name: &str, header_row: &str, rows: Vec<Vec<String>>) -> Response {
    let mut out = String::from(header_row);
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        out,
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/audit", tag = "logs", params(LogParams),
    responses((status = 200, body = Vec<AuditOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<LogParams>,
    who: Caller,
) -> Result<Response, ApiError> {
    // The operator reads its own log (or a tenant's, acting in it); a tenant its own.
    let tenant = match &who.principal {
        Principal::Admin { .. } => acting_tenant(&state, &who.principal, &headers).await?,
        _ => Some(who.principal.tenant()?.clone()),
    };
    let (r, csv) = range(&state, &p)?;
    let entries = logs::audit(&state, tenant.as_ref(), r).await?;
    let out: Vec<AuditOut> = entries
        .into_iter()
        .map(|e| AuditOut {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        })
        .collect();
    if csv {
        let rows = out
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    e.at.to_string(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                ]
            })
            .collect();
        return Ok(csv_response(
            "audit",
            "id,at,actor,action,target,detail",
            rows,
        ));
    }
    Ok(Json(out).into_response())
}

#[utoipa::path(get, path = "/v1/allocations", tag = "logs", params(LogParams),
    responses((status = 200, body = Vec<AllocationOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn allocation_log(
    State(state): State<Shared>,
    Query(p): Query<LogParams>,
    who: TenantCaller,
) -> Result<Response, ApiError> {
    let (r, csv) = range(&state, &p)?;
    let recs = logs::allocations(&state, &who.tenant_id, r).await?;
    let out: Vec<AllocationOut> = recs.into_iter().map(AllocationOut::from).collect();
    if csv {
        let rows = out
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    a.credential_id.clone(),
                    a.user_id.clone(),
                    a.username.clone(),
                    a.client.clone(),
                    a.transport.clone(),
                    a.relay.clone(),
                    a.started_at.to_string(),
                    a.ended_at.map(|e| e.to_string()).unwrap_or_default(),
                    a.client_to_server_bytes.to_string(),
                    a.server_to_peer_bytes.to_string(),
                    a.peer_to_server_bytes.to_string(),
                    a.server_to_client_bytes.to_string(),
                    a.peers.to_string(),
                ]
            })
            .collect();
        return Ok(csv_response(
            "allocations",
            "id,credential_id,user_id,username,client,transport,relay,started_at,ended_at,client_to_server_bytes,server_to_peer_bytes,peer_to_server_bytes,server_to_client_bytes,peers",
            rows,
        ));
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// At most this many, 1 to 10000 (default 100).
    pub limit: Option<u32>,
}

/// The allocations open now (as of the last flush of each node, every `usage_flush_interval`).
#[derive(Serialize, ToSchema)]
pub struct LiveOut {
    /// How many are listed (at most `limit`; newest first).
    pub count: usize,
    pub items: Vec<AllocationOut>,
}

#[utoipa::path(get, path = "/v1/allocations/live", tag = "logs", params(LiveParams),
    responses((status = 200, body = LiveOut), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn live_allocations(
    State(state): State<Shared>,
    Query(p): Query<LiveParams>,
    who: TenantCaller,
) -> ApiResult<Json<LiveOut>> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be 1 to 10000"));
    }
    let recs = logs::live_allocations(&state, &who.tenant_id, limit).await?;
    let items: Vec<AllocationOut> = recs.into_iter().map(AllocationOut::from).collect();
    Ok(Json(LiveOut {
        count: items.len(),
        items,
    }))
}

impl From<turnpike_store::AllocationRecord> for AllocationOut {
    fn from(a: turnpike_store::AllocationRecord) -> Self {
        Self {
            id: a.id,
            credential_id: a.credential_id,
            user_id: a.user_id,
            username: a.username,
            client: a.client,
            transport: a.transport,
            relay: a.relay,
            started_at: a.started_at,
            ended_at: a.ended_at,
            client_to_server_bytes: a.c2s_bytes,
            server_to_peer_bytes: a.s2p_bytes,
            peer_to_server_bytes: a.p2s_bytes,
            server_to_client_bytes: a.s2c_bytes,
            peers: a.peers,
        }
    }
}

/// A refused TURN request for one of the tenant's usernames.
#[derive(Serialize, ToSchema)]
pub struct AuthFailureOut {
    pub at: i64,
    pub username: String,
    /// `ip:port`.
    pub client: String,
    pub transport: String,
    /// e.g. `wrong password`, `unknown user`, `credential expired`.
    pub reason: String,
}

#[utoipa::path(get, path = "/v1/auth-failures", tag = "logs", params(LogParams),
    responses((status = 200, body = Vec<AuthFailureOut>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn auth_failures(
    State(state): State<Shared>,
    Query(p): Query<LogParams>,
    who: TenantCaller,
) -> Result<Response, ApiError> {
    let (r, csv) = range(&state, &p)?;
    let rows = logs::auth_failures(&state, &who.tenant_id, r).await?;
    let out: Vec<AuthFailureOut> = rows
        .into_iter()
        .map(|f| AuthFailureOut {
            at: f.at,
            username: f.username,
            client: f.client,
            transport: f.transport,
            reason: f.reason,
        })
        .collect();
    if csv {
        let rows = out
            .iter()
            .map(|f| {
                vec![
                    f.at.to_string(),
                    f.username.clone(),
                    f.client.clone(),
                    f.transport.clone(),
                    f.reason.clone(),
                ]
            })
            .collect();
        return Ok(csv_response(
            "auth-failures",
            "at,username,client,transport,reason",
            rows,
        ));
    }
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields() {
        assert_eq!(super::field("plain"), "plain");
        assert_eq!(super::field("a,b"), "\"a,b\"");
        assert_eq!(super::field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::field("=1+2"), "'=1+2");
    }
}
