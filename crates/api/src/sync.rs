//! Builds the relay's directory snapshot from the store (credentials, tenant secrets,
//! revocations, quotas) and the meter's quota state, and publishes it. Called after every local
//! change (so a disabled credential is refused by the next request) and every `sync_interval`
//! (so changes made by other nodes sharing PostgreSQL arrive too).

use std::collections::HashMap;
use std::sync::Arc;

use turnpike_proto::{Account, Limits, Snapshot, StoredUser};
use turnpike_store::{Store, StoreError};
use turnpike_stun::Key;

use crate::state::{unix_now, AppState};

/// Rebuilds and publishes the snapshot.
pub async fn reload(state: &AppState) -> Result<(), StoreError> {
    let _one_at_a_time = state.sync_lock.lock().await;
    let now = unix_now();
    let mut s = Snapshot::default();
    for c in state.store.all_credentials().await? {
        let (Some(md5), Some(sha)) = (Key::from_slice(&c.key_md5), Key::from_slice(&c.key_sha256))
        else {
            tracing::warn!(credential = %c.id, "stored credential has malformed keys; skipped");
            continue;
        };
        let tenant: Arc<str> = c.tenant_id.as_str().into();
        s.credentials
            .insert(c.id.clone(), (tenant.clone(), c.enabled));
        s.users.insert(
            c.username.clone(),
            StoredUser {
                key_md5: md5,
                key_sha256: sha,
                enabled: c.enabled,
                expires_at: c.expires_at.map(|e| e.max(0) as u64),
                account: Arc::new(Account {
                    tenant_id: tenant,
                    credential_id: Some(c.id.as_str().into()),
                    user_id: None,
                }),
            },
        );
    }
    for sec in state.store.live_tenant_secrets(now).await? {
        s.tenant_secrets
            .entry(sec.tenant_id)
            .or_default()
            .push(sec.secret);
    }
    for r in state.store.live_revocations(None, now).await? {
        let until = r.expires_at.max(0) as u64;
        match r.kind.as_str() {
            "username" => {
                s.revoked_usernames.insert(r.value, until);
            }
            _ => {
                s.revoked_users.insert((r.tenant_id, r.value), until);
            }
        }
    }
    let qs = state
        .quota_state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut limits: HashMap<String, Limits> = HashMap::new();
    for q in state.store.list_quotas(None).await? {
        let key = crate::quota::scope_key(&q.tenant_id, &q.scope);
        let l = limits.entry(key).or_default();
        l.max_allocations = q
            .max_allocations
            .map(|m| m.clamp(0, u32::MAX as i64) as u32);
        l.max_bitrate_bps = q.max_bitrate_bps.map(|b| b.max(1) as u64);
    }
    for k in &qs.refused {
        limits.entry(k.clone()).or_default().refuse = true;
    }
    for (k, bps) in &qs.throttled {
        let l = limits.entry(k.clone()).or_default();
        l.max_bitrate_bps = Some(l.max_bitrate_bps.map_or(*bps, |b| b.min(*bps)));
    }
    for (k, l) in limits {
        if let Some(t) = k.strip_prefix("t:") {
            s.tenant_limits.insert(t.to_string(), l);
        } else if let Some(c) = k.strip_prefix("c:") {
            s.credential_limits.insert(c.to_string(), l);
        }
    }
    state.directory.publish(s);
    Ok(())
}

/// Reloads after a change; a failure is logged (the periodic reload retries).
pub async fn after_change(state: &AppState) {
    if let Err(e) = reload(state).await {
        tracing::error!(error = %e, "directory reload failed");
    }
}

/// Reloads every `sync_interval`.
pub async fn periodic(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.cfg.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        after_change(&state).await;
    }
}
