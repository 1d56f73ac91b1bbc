//! Tenants (the operator's) and a tenant's keys and shared secrets: create, list, delete,
//! rotate with an overlap window, revoke. Keys and secrets are returned once, at creation;
//! only their hashes (keys) or the secrets the relay needs are stored.

use turnpike_proto::Disconnect;
use turnpike_store::TenantId;
use turnpike_store::{ApiKey, KeyKind, NewApiKey, Store, StoreError, Tenant};

use super::error::{DomainError, DomainResult};
use super::{sync, validate};
use crate::keys::{hash_key, key_prefix, new_key, random_token};
use crate::state::AppState;

/// A tenant's display name: 1 to 100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(name: &str) -> DomainResult<Self> {
        validate::text("name", name, 100)?;
        Ok(Self(name.to_string()))
    }
}

/// How long old keys or secrets keep working after a rotation: 0 to 30 days, 1 hour when not
/// given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap(i64);

impl Overlap {
    pub fn parse(seconds: Option<i64>) -> DomainResult<Self> {
        let o = seconds.unwrap_or(3600);
        if !(0..=30 * 86_400).contains(&o) {
            return Err(DomainError::invalid(
                "`overlap_seconds` must be between 0 and 2592000",
            ));
        }
        Ok(Self(o))
    }

    pub fn seconds(self) -> i64 {
        self.0
    }
}

/// A new tenant with its first secret key and shared secret (shown only now).
#[derive(Debug)]
pub struct Created {
    pub tenant: Tenant,
    pub secret_key: String,
    pub shared_secret: String,
}

/// A new shared secret (shown only now) and when the previous ones stop working.
#[derive(Debug)]
pub struct RotatedSecret {
    pub id: String,
    pub shared_secret: String,
    pub previous_expire_at: i64,
}

/// Creates a tenant with a secret key and a shared secret.
pub async fn create(state: &AppState, name: &TenantName) -> DomainResult<Created> {
    let tenant = state.store.create_tenant(&name.0, state.now()).await?;
    let (secret_key, _) = new_tenant_key(state, &tenant.id, KeyKind::Secret).await?;
    let (_, shared_secret) = new_shared_secret(state, &tenant.id).await?;
    sync::after_change(state).await;
    Ok(Created {
        tenant,
        secret_key,
        shared_secret,
    })
}

pub async fn get(state: &AppState, id: &TenantId) -> DomainResult<Tenant> {
    Ok(state.store.get_tenant(id).await?)
}

pub async fn list(state: &AppState) -> DomainResult<Vec<Tenant>> {
    Ok(state.store.list_tenants().await?)
}

/// Deletes a tenant with everything it has (its projects too), and closes its live
/// allocations and its projects'.
pub async fn delete(state: &AppState, id: &TenantId) -> DomainResult<()> {
    let projects = state.store.child_tenants(id).await?;
    state.store.delete_tenant(id).await?;
    sync::disconnect(state, Disconnect::Tenant(id.to_string())).await;
    for p in projects {
        sync::disconnect(state, Disconnect::Tenant(p.id.into_string())).await;
    }
    sync::after_change(state).await;
    Ok(())
}

/// Suspends a tenant (with its projects): the relay refuses its credentials from the next
/// request on and its live allocations are closed on every node; its keys may still read
/// (usage, statements) but change nothing and mint no credentials. Suspending twice keeps the
/// first time. `resume` lifts it.
pub async fn suspend(state: &AppState, id: &TenantId) -> DomainResult<Tenant> {
    let t = state.store.get_tenant(id).await?;
    if t.suspended_at.is_none() {
        state.store.suspend_tenant(id, Some(state.now())).await?;
    }
    sync::after_change(state).await;
    sync::disconnect(state, Disconnect::Tenant(id.to_string())).await;
    for p in state.store.child_tenants(id).await? {
        sync::disconnect(state, Disconnect::Tenant(p.id.into_string())).await;
    }
    Ok(state.store.get_tenant(id).await?)
}

/// Lifts a suspension.
pub async fn resume(state: &AppState, id: &TenantId) -> DomainResult<Tenant> {
    state.store.suspend_tenant(id, None).await?;
    sync::after_change(state).await;
    Ok(state.store.get_tenant(id).await?)
}

/// `Suspended` if the operator suspended `id` (or its parent).
pub fn ensure_active(state: &AppState, id: &TenantId) -> DomainResult<()> {
    if is_suspended(state, id) {
        Err(DomainError::Suspended)
    } else {
        Ok(())
    }
}

/// Sets the regions `id`'s ICE lists may name (data residency): region names, or `None` for
/// any. Regions need not have a node yet (one may be added later).
pub async fn set_regions(
    state: &AppState,
    id: &TenantId,
    regions: Option<&[String]>,
) -> DomainResult<Tenant> {
    let joined = match regions {
        None => None,
        Some([]) => {
            return Err(DomainError::invalid(
                "`regions` must name at least one region, or be null for any",
            ))
        }
        Some(list) => {
            if list.len() > 32 {
                return Err(DomainError::invalid(
                    "`regions` may name at most 32 regions",
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|r| !crate::fleet::settings::region_name_ok(r))
            {
                return Err(DomainError::invalid(format!(
                    "`regions`: `{bad}` is not a region name (1 to 64 letters, digits, `-`, `_`)"
                )));
            }
            let mut v = list.to_vec();
            v.sort();
            v.dedup();
            // A project can only narrow its tenant's regions.
            let tenant = state.store.get_tenant(id).await?;
            if let Some(parent) = &tenant.parent_id {
                if let Some(outer) = state.store.get_tenant(parent).await?.regions() {
                    if !v.iter().any(|r| outer.contains(r)) {
                        return Err(DomainError::invalid(format!(
                            "`regions`: a project may only use its tenant's regions ({})",
                            outer.join(", ")
                        )));
                    }
                }
            }
            Some(v.join(","))
        }
    };
    state
        .store
        .set_tenant_regions(id, joined.as_deref())
        .await?;
    // The relay reads them too (a 300 Try Alternate never leaves them).
    sync::after_change(state).await;
    Ok(state.store.get_tenant(id).await?)
}

/// Whether `id` is suspended (itself or through its parent), as the relay sees it now.
pub fn is_suspended(state: &AppState, id: &TenantId) -> bool {
    state
        .directory
        .load()
        .suspended_tenants
        .contains(id.as_str())
}

/// Creates a project of `parent_id` (a child tenant) with a shared secret, for minting the
/// short-lived credentials its ICE servers carry; it gets no secret key (see
/// [`super::projects`]). A project cannot have projects.
pub async fn create_child(
    state: &AppState,
    parent_id: &TenantId,
    name: &TenantName,
) -> DomainResult<Tenant> {
    let parent = state.store.get_tenant(parent_id).await?;
    if parent.parent_id.is_some() {
        return Err(DomainError::invalid("a project cannot have projects"));
    }
    let tenant = state
        .store
        .create_child_tenant(parent_id, &name.0, state.now())
        .await?;
    new_shared_secret(state, &tenant.id).await?;
    sync::after_change(state).await;
    Ok(tenant)
}

/// Renames a tenant (a project's name is unique within its parent).
pub async fn rename(state: &AppState, id: &TenantId, name: &TenantName) -> DomainResult<()> {
    Ok(state.store.rename_tenant(id, &name.0).await?)
}

/// A new secret key for the tenant; its other secret keys lapse after `overlap`.
pub async fn rotate_key(
    state: &AppState,
    tenant_id: &TenantId,
    overlap: Overlap,
) -> DomainResult<(String, ApiKey)> {
    state.store.get_tenant(tenant_id).await?;
    state
        .store
        .expire_api_keys(tenant_id, KeyKind::Secret, state.now() + overlap.0)
        .await?;
    new_tenant_key(state, tenant_id, KeyKind::Secret).await
}

/// The tenant's keys (secret and publishable), without the keys themselves.
pub async fn list_keys(state: &AppState, tenant_id: &TenantId) -> DomainResult<Vec<ApiKey>> {
    Ok(state.store.list_api_keys(tenant_id).await?)
}

/// Revokes one of the tenant's keys (404 for another tenant's).
pub async fn revoke_key(state: &AppState, tenant_id: &TenantId, id: &str) -> DomainResult<()> {
    Ok(state.store.revoke_api_key(Some(tenant_id), id).await?)
}

/// A new shared secret for the tenant; the previous ones lapse after `overlap`.
pub async fn rotate_shared_secret(
    state: &AppState,
    tenant_id: &TenantId,
    overlap: Overlap,
) -> DomainResult<RotatedSecret> {
    let until = state.now() + overlap.0;
    state.store.expire_tenant_secrets(tenant_id, until).await?;
    let (id, shared_secret) = new_shared_secret(state, tenant_id).await?;
    sync::after_change(state).await;
    Ok(RotatedSecret {
        id,
        shared_secret,
        previous_expire_at: until,
    })
}

/// An admin key, stored by its hash (at first start, when none is configured or stored).
pub async fn new_admin_key(state: &AppState) -> Result<String, StoreError> {
    let key = new_key(KeyKind::Admin);
    state
        .store
        .create_api_key(
            &NewApiKey {
                tenant_id: None,
                kind: KeyKind::Admin,
                credential_id: None,
                allowed_origins: &[],
                key_hash: &hash_key(&key),
                prefix: &key_prefix(&key),
                expires_at: None,
            },
            state.now(),
        )
        .await?;
    Ok(key)
}

/// A new key of `kind` (a tenant's secret key or a project's key) for the tenant: the key
/// (shown only now) and what is stored of it (its hash and prefix).
pub(super) async fn new_tenant_key(
    state: &AppState,
    tenant_id: &TenantId,
    kind: KeyKind,
) -> DomainResult<(String, ApiKey)> {
    let key = new_key(kind);
    let info = state
        .store
        .create_api_key(
            &NewApiKey {
                tenant_id: Some(tenant_id),
                kind,
                credential_id: None,
                allowed_origins: &[],
                key_hash: &hash_key(&key),
                prefix: &key_prefix(&key),
                expires_at: None,
            },
            state.now(),
        )
        .await?;
    Ok((key, info))
}

async fn new_shared_secret(
    state: &AppState,
    tenant_id: &TenantId,
) -> DomainResult<(String, String)> {
    let secret = random_token(32);
    let s = state
        .store
        .add_tenant_secret(tenant_id, secret.as_bytes(), state.now())
        .await?;
    Ok((s.id, secret))
}
