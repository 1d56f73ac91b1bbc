//! What the driver asks the control plane for during a join: the token's verification against
//! its tenant's live shared secrets, the tenant's Origin allow-list, and ICE servers with a
//! fresh ephemeral TURN credential.

use turnpike_api::AppState;
use turnpike_store::{Store, TenantId};

use crate::rooms::{JoinRequest, TokenRefused};
use crate::token::{self, TokenError};

/// Verifies a join token (signature with any live secret of its tenant, expiry at the wall
/// clock) and reads the tenant's Origin allow-list.
pub async fn authorize(api: &AppState, t: &str) -> Result<JoinRequest, TokenRefused> {
    let claims = token::peek(t).map_err(|_| TokenRefused::Malformed)?;
    let secrets = turnpike_api::sync::tenant_secrets(api, &claims.tid).await;
    let claims =
        token::verify(t, &secrets, turnpike_api::state::unix_now()).map_err(|e| match e {
            TokenError::Expired => TokenRefused::Expired,
            _ => TokenRefused::Invalid,
        })?;
    if turnpike_api::domain::tenants::is_suspended(api, &TenantId::from(claims.tid.as_str())) {
        return Err(TokenRefused::Suspended);
    }
    let allowed_origins = allowed_origins(api, &claims.tid).await;
    Ok(JoinRequest {
        claims,
        allowed_origins,
    })
}

/// The tenant's Origin allow-list (empty, unset or unreadable: any origin).
pub async fn allowed_origins(api: &AppState, tenant: &str) -> Vec<String> {
    match api
        .store
        .get_setting(&TenantId::from(tenant), "signal_allowed_origins")
        .await
    {
        Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_default(),
        _ => vec![],
    }
}

/// ICE servers with a fresh ephemeral TURN credential for `identity`, naming the nodes
/// nearest to `client` (none if minting fails).
pub async fn ice_servers(
    api: &AppState,
    tenant: &str,
    identity: &str,
    client: Option<std::net::IpAddr>,
) -> serde_json::Value {
    let req = turnpike_api::ephemeral::MintRequest {
        ttl: None,
        user_id: Some(identity.to_string()),
        tags: vec![],
    };
    match turnpike_api::ephemeral::mint(api, &TenantId::from(tenant), None, &req).await {
        Ok(m) => {
            let tid = TenantId::from(tenant);
            let allowed = turnpike_api::fleet::allowed_regions(api, &tid);
            let Ok(targets) = turnpike_api::fleet::targets(api, client, None, allowed.as_deref())
            else {
                tracing::warn!(
                    tenant,
                    "no healthy node in the tenant's allowed regions for a join"
                );
                return serde_json::Value::Array(vec![]);
            };
            serde_json::to_value(turnpike_api::ephemeral::ice_list(api, &m, &targets))
                .unwrap_or_default()
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot mint TURN credentials for a join");
            serde_json::Value::Array(vec![])
        }
    }
}
