//! The client deny list (operator, admin key): networks whose requests are refused on every
//! listener, applied without a restart. Stored in the database; the directory snapshot carries
//! it (`Snapshot::denied_clients`), so this node applies a change at once and every node
//! sharing PostgreSQL at its next reload. The API refuses denied clients with 403
//! `client_denied` (see [`crate::guard`]); the relay consults the same directory.
//!
//! An entry that contains the caller's own address is refused (422) unless `?force=true`, so an
//! operator does not lock themselves out by mistake.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use turnpike_store::{DeniedClient, Store};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AdminCaller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Path, Query};
use crate::state::{unix_now, Shared};
use crate::util::{check_text, idempotent};

/// The client deny list (admin key).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/deny-list", get(list_denied).post(add_denied))
        .route("/v1/deny-list/{id}", delete(delete_denied))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// An IPv4 or IPv6 network (`203.0.113.0/24`, `2001:db8::/32`) or address (one host).
    #[schema(example = "203.0.113.0/24")]
    pub cidr: String,
    /// Why (1 to 200 printable characters).
    pub note: Option<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct DenyParams {
    /// Add the entry even if it contains the caller's own address (default false).
    pub force: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DenyEntry {
    pub id: String,
    /// The network, normalised (`203.0.113.0/24`, `2001:db8::1/128`).
    pub cidr: String,
    pub note: Option<String>,
    pub created_at: i64,
}

impl From<DeniedClient> for DenyEntry {
    fn from(d: DeniedClient) -> Self {
        Self {
            id: d.id,
            cidr: d.cidr,
            note: d.note,
            created_at: d.created_at,
        }
    }
}

/// A network or a bare address (`/32` or `/128`), normalised to its network address;
/// IPv4-mapped IPv6 networks become IPv4 (clients are judged by their IPv4 address).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<std::net::IpAddr>().ok()?),
    };
    let net = match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(v4.into(), n.prefix_len() - 96).ok()?,
            None => net,
        },
        _ => net,
    };
    Some(net.trunc())
}

#[utoipa::path(get, path = "/v1/deny-list", tag = "deny-list",
    responses((status = 200, body = Vec<DenyEntry>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_denied(
    State(state): State<Shared>,
    _: AdminCaller,
) -> ApiResult<Json<Vec<DenyEntry>>> {
    Ok(Json(
        state
            .store
            .list_denied_clients()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/deny-list", tag = "deny-list", request_body = DenyRequest, params(DenyParams),
    responses((status = 201, body = DenyEntry), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_denied(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<DenyParams>,
    who: AdminCaller,
    Body(req): Body<DenyRequest>,
) -> Result<Response, ApiError> {
    let net = parse_cidr(&req.cidr).ok_or_else(|| {
        ApiError::invalid(
            "`cidr` must be an IP address or network, e.g. 203.0.113.0/24 or 2001:db8::/32",
        )
    })?;
    if let Some(n) = &req.note {
        check_text("note", n, 200)?;
    }
    let force = p.force.unwrap_or(false);
    if let Some(me) = crate::guard::client_ip().filter(|ip| net.contains(ip)) {
        if !force {
            return Err(ApiError::invalid(format!(
                "`cidr` {net} contains your own address {me}: you would lock yourself out; add \
                 `?force=true` to deny it anyway"
            )));
        }
    }
    Ok(
        idempotent(&state, &who.key_id, &headers, StatusCode::CREATED, async {
            let d = DeniedClient {
                id: turnpike_store::new_id("deny"),
                cidr: net.to_string(),
                note: req.note.clone(),
                created_at: unix_now(),
            };
            state.store.add_denied_client(&d).await?;
            crate::sync::after_change(&state).await;
            who.audit(
                &state,
                "deny_list.add",
                &d.id,
                serde_json::json!({"cidr": d.cidr, "note": d.note, "force": force}),
            )
            .await;
            Ok(DenyEntry::from(d))
        })
        .await,
    )
}

#[utoipa::path(delete, path = "/v1/deny-list/{id}", tag = "deny-list",
    params(("id" = String, Path, description = "Entry id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_denied(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: AdminCaller,
) -> ApiResult<StatusCode> {
    let cidr = state
        .store
        .list_denied_clients()
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .map(|d| d.cidr);
    state.store.delete_denied_client(&id).await?;
    crate::sync::after_change(&state).await;
    who.audit(
        &state,
        "deny_list.delete",
        &id,
        serde_json::json!({"cidr": cidr}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn networks_and_bare_addresses() {
        let p = |s: &str| parse_cidr(s).map(|n| n.to_string());
        assert_eq!(p("203.0.113.7/24").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(p("127.0.0.2").as_deref(), Some("127.0.0.2/32"));
        assert_eq!(p("2001:db8::1").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(p("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(p("::ffff:192.0.2.1").as_deref(), Some("192.0.2.1/32"));
        assert_eq!(p("::ffff:192.0.2.0/120").as_deref(), Some("192.0.2.0/24"));
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "1.2.3.4/8/8",
            " 10.0.0.1",
            "10.0.0.1 ",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
