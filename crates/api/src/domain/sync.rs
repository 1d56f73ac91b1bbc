//! Builds the relay's directory snapshot from the store (credentials, tenant secrets,
//! revocations, quotas, the client deny list) and the meter's quota state, and publishes it.
//! Called after every local change (so a disabled credential is refused by the next request)
//! and every `sync_interval` (so changes made by other nodes sharing PostgreSQL arrive too).
//!
//! Disconnect requests go the same way: the node that takes one acts at once and records it;
//! every other node sharing the database acts on it at its next reload. Not a message bus: a
//! request reaches the other nodes within `sync_interval`, not instantly.

use std::collections::HashMap;
use std::sync::Arc;

use turnpike_proto::{Account, Disconnect, Limits, Snapshot, StoredUser};
use turnpike_store::{
    Credential, DisconnectKind, DisconnectRequest, Quota, RevocationKind, Store, StoreError,
};
use turnpike_stun::Key;

use crate::state::{scope_key, AppState, QuotaState};

/// Rebuilds and publishes the snapshot.
pub async fn reload(state: &AppState) -> Result<(), StoreError> {
    let _one_at_a_time = state.sync_lock.lock().await;
    let now = state.now();
    let mut s = Snapshot::default();
    add_credentials(&mut s, state.store.all_credentials().await?);
    for d in state.store.list_denied_clients().await? {
        match d.cidr.parse::<ipnet::IpNet>() {
            Ok(n) => s.denied_clients.push(n),
            Err(_) => tracing::warn!(entry = %d.id, "unreadable client deny list entry; skipped"),
        }
    }
    for sec in state.store.live_tenant_secrets(now).await? {
        s.tenant_secrets
            .entry(sec.tenant_id)
            .or_default()
            .push(sec.secret);
    }
    for r in state.store.live_revocations(None, now).await? {
        let until = r.expires_at.max(0) as u64;
        match r.kind {
            RevocationKind::Username => {
                s.revoked_usernames.insert(r.value, until);
            }
            RevocationKind::User => {
                s.revoked_users.insert((r.tenant_id, r.value), until);
            }
        }
    }
    let quota_state = state
        .quota_state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    add_limits(&mut s, state.store.list_quotas(None).await?, &quota_state);
    state.directory.publish(s);
    apply_remote_disconnects(state, now).await
}

/// The stored credentials, by username (several tenants may use one name) and by id.
fn add_credentials(s: &mut Snapshot, credentials: Vec<Credential>) {
    for c in credentials {
        let (Some(md5), Some(sha)) = (Key::from_slice(&c.key_md5), Key::from_slice(&c.key_sha256))
        else {
            tracing::warn!(credential = %c.id, "stored credential has malformed keys; skipped");
            continue;
        };
        let tenant: Arc<str> = c.tenant_id.as_str().into();
        s.credentials
            .insert(c.id.clone(), (tenant.clone(), c.enabled));
        s.users.entry(c.username).or_default().push(StoredUser {
            key_md5: md5,
            key_sha256: sha,
            enabled: c.enabled,
            expires_at: c.expires_at.map(|e| e.max(0) as u64),
            account: Arc::new(Account {
                tenant_id: tenant,
                credential_id: Some(c.id.as_str().into()),
                user_id: None,
            }),
        });
    }
}

/// Limits per tenant and credential: the quotas' caps, and what the meter's evaluation applies
/// (refuse; throttle, the lower of the cap and the throttle rate).
fn add_limits(s: &mut Snapshot, quotas: Vec<Quota>, applied: &QuotaState) {
    let mut limits: HashMap<String, Limits> = HashMap::new();
    for q in quotas {
        let l = limits.entry(scope_key(&q.tenant_id, &q.scope)).or_default();
        l.max_allocations = q
            .max_allocations
            .map(|m| m.clamp(0, u32::MAX as i64) as u32);
        l.max_bitrate_bps = q.max_bitrate_bps.map(|b| b.max(1) as u64);
    }
    for k in &applied.refused {
        limits.entry(k.clone()).or_default().refuse = true;
    }
    for (k, bps) in &applied.throttled {
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
}

/// Reloads prompted by lookups that miss are at most this frequent.
const MISS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// A tenant's live shared secrets, newest first. A tenant the directory does not know yet (made
/// on another node moments ago) prompts one reload from the store rather than a wait for the
/// next periodic one; such reloads are rate limited, so unknown tenant ids cannot load the
/// database.
pub async fn tenant_secrets(state: &AppState, tenant: &str) -> Vec<Vec<u8>> {
    let get = || {
        state
            .directory
            .load()
            .tenant_secrets
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    };
    let found = get();
    if !found.is_empty() {
        return found;
    }
    let due = {
        let mut last = state
            .last_miss_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let due = last.is_none_or(|t| now.duration_since(t) >= MISS_RELOAD_EVERY);
        if due {
            *last = Some(now);
        }
        due
    };
    if due {
        after_change(state).await;
    } else {
        // A reload prompted by another miss may be running: wait for it.
        drop(state.sync_lock.lock().await);
    }
    get()
}

/// How far back other nodes' disconnect requests are read, and when rows are pruned.
const DISCONNECT_WINDOW: i64 = 120;
const DISCONNECT_KEEP: i64 = 3600;

/// Closes this node's allocations matching `d` and records the request for the other nodes.
/// A failure to record is logged: this node has acted, the others have not.
pub async fn disconnect(state: &AppState, d: Disconnect) {
    let (kind, tenant_id, value) = match &d {
        Disconnect::Username(u) => (DisconnectKind::Username, String::new(), u.clone()),
        Disconnect::Credential(c) => (DisconnectKind::Credential, String::new(), c.clone()),
        Disconnect::Tenant(t) => (DisconnectKind::Tenant, String::new(), t.clone()),
        Disconnect::User { tenant_id, user_id } => {
            (DisconnectKind::User, tenant_id.clone(), user_id.clone())
        }
    };
    state.directory.disconnect(d);
    let req = DisconnectRequest {
        id: 0,
        node: state.node_id.clone(),
        kind,
        tenant_id,
        value,
        at: state.now(),
    };
    if let Err(e) = state.store.add_disconnect(&req).await {
        tracing::error!(error = %e, "cannot record a disconnect request for the other nodes");
    }
}

/// What a recorded request asks the relay to close. (Requests of kinds this version does not
/// know are left out by the store, with a warning.)
fn to_disconnect(r: &DisconnectRequest) -> Disconnect {
    match r.kind {
        DisconnectKind::Username => Disconnect::Username(r.value.clone()),
        DisconnectKind::Credential => Disconnect::Credential(r.value.clone()),
        DisconnectKind::Tenant => Disconnect::Tenant(r.value.clone()),
        DisconnectKind::User => Disconnect::User {
            tenant_id: r.tenant_id.clone(),
            user_id: r.value.clone(),
        },
    }
}

/// Acts once on each disconnect request other nodes made in the last two minutes; prunes the
/// table about once a minute.
async fn apply_remote_disconnects(state: &AppState, now: i64) -> Result<(), StoreError> {
    let rows = state
        .store
        .recent_disconnects(now - DISCONNECT_WINDOW)
        .await?;
    let prune = {
        let mut seen = state
            .seen_disconnects
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for r in rows.iter().filter(|r| r.node != state.node_id) {
            if seen.0.insert(r.id, r.at).is_none() {
                state.directory.disconnect(to_disconnect(r));
            }
        }
        seen.0.retain(|_, at| *at >= now - 2 * DISCONNECT_WINDOW);
        let due = now - seen.1 >= 60;
        if due {
            seen.1 = now;
        }
        due
    };
    if prune {
        state.store.prune_disconnects(now - DISCONNECT_KEEP).await?;
    }
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
