//! Reading the audit log (every credential, key, quota and setting change) and the allocation
//! log (every allocation: start, end, bytes per leg, peers, client address, credential).

use turnpike_store::TenantId;
use turnpike_store::{AllocationRecord, AuditEntry, Store};

use super::error::{DomainError, DomainResult};
use crate::state::AppState;

/// A time range and a number of entries, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub limit: u32,
}

impl Range {
    /// `[from, to)` in unix seconds (default: the 30 days to `now`, inclusive) and at most
    /// `limit` entries (1 to 100000; default 1000).
    pub fn parse(
        from: Option<i64>,
        to: Option<i64>,
        limit: Option<u32>,
        now: i64,
    ) -> DomainResult<Self> {
        let to = to.unwrap_or(now + 1);
        let from = from.unwrap_or(to - 30 * 86_400);
        if to <= from {
            return Err(DomainError::invalid("`from` must be before `to`"));
        }
        let limit = limit.unwrap_or(1000);
        if !(1..=100_000).contains(&limit) {
            return Err(DomainError::invalid("`limit` must be 1 to 100000"));
        }
        Ok(Self { from, to, limit })
    }
}

/// Audit entries of a tenant, or the operator's (`None`), oldest first.
pub async fn audit(
    state: &AppState,
    tenant_id: Option<&TenantId>,
    r: Range,
) -> DomainResult<Vec<AuditEntry>> {
    Ok(state
        .store
        .list_audit(tenant_id, r.from, r.to, r.limit)
        .await?)
}

/// A tenant's allocations that started in the range, oldest first.
pub async fn allocations(
    state: &AppState,
    tenant_id: &TenantId,
    r: Range,
) -> DomainResult<Vec<AllocationRecord>> {
    Ok(state
        .store
        .list_allocations(tenant_id, r.from, r.to, r.limit)
        .await?)
}

/// A tenant's allocations with no end recorded, newest first.
pub async fn live_allocations(
    state: &AppState,
    tenant_id: &TenantId,
    limit: u32,
) -> DomainResult<Vec<AllocationRecord>> {
    Ok(state.store.live_allocations(tenant_id, limit).await?)
}

/// The tenant's refused TURN requests in the range, newest first.
pub async fn auth_failures(
    state: &AppState,
    tenant_id: &TenantId,
    r: Range,
) -> DomainResult<Vec<turnpike_store::AuthFailure>> {
    Ok(state
        .store
        .list_auth_failures(tenant_id, r.from, r.to, r.limit)
        .await?)
}
