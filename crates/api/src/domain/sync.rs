//! Keeps the relay's directory in step with the store (credentials, tenant secrets,
//! revocations, quotas, the client deny list) and the meter's quota state.
//!
//! A full load at start (credentials page by page), then the store's change feed: every write
//! is recorded there by trigger, and a node reads the feed after every local change (so a
//! disabled credential is refused by the next request, before the API answers) and every
//! `sync_interval` (changes made by other nodes sharing PostgreSQL). Each change names what
//! changed; the sync re-reads just that (one credential, one tenant's secrets, ...), so a write
//! costs the same with a thousand stored credentials or a million. A node that fell behind the
//! feed (pruned after [`CHANGE_KEEP`] seconds) or failed halfway loads everything again.
//!
//! Disconnect requests go the same way: the node that takes one acts at once and records it;
//! every other node sharing the database acts on it at its next read. Not a message bus: a
//! request reaches the other nodes within `sync_interval`, not instantly.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use turnpike_proto::{CredentialRecord, CredentialTable, Disconnect, Limits, Snapshot};
use turnpike_store::{
    Change, ChangeEntity, ChangeListener, Credential, CredentialId, DisconnectKind,
    DisconnectRequest, RevocationKind, Store, StoreError, TenantId,
};

use super::feed::FeedCursor;
use super::quota_state::{scope_key, QuotaState};
use super::sync_state::SyncState;
use crate::state::AppState;

/// Credentials per page of a full load.
const LOAD_PAGE: u32 = 10_000;
/// Changes per read of the feed, and ids per credential query.
const FEED_PAGE: u32 = 1_000;
/// Seconds the feed keeps a change; a node away longer loads everything again.
pub const CHANGE_KEEP: i64 = 3_600;
/// How long after losing PostgreSQL's notifications the sync listens again.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// Seconds between housekeeping rounds (pruning, expiries, the behind check).
const HOUSEKEEPING_EVERY: i64 = 60;

/// Loads everything again and publishes it.
pub async fn reload(state: &AppState) -> Result<(), StoreError> {
    let mut sync = state.sync_lock.lock().await;
    full_load(state, &mut sync).await?;
    apply_remote_disconnects(state, state.now()).await
}

/// Applies what changed since the last read of the feed (loads everything when it must).
pub async fn catch_up(state: &AppState) -> Result<(), StoreError> {
    let mut sync = state.sync_lock.lock().await;
    if sync.cursor.is_none() {
        full_load(state, &mut sync).await?;
    } else if let Err(e) = read_feed(state, &mut sync).await {
        // Some changes may be half applied: start over from a full load next time.
        sync.cursor = None;
        return Err(e);
    }
    let now = state.now();
    let quota_state = current_quota_state(state);
    if quota_state != sync.applied {
        let mut s = Snapshot::clone(&state.directory.load());
        sync.applied = quota_state;
        set_limits(&mut s, &sync);
        state.directory.publish(s);
    }
    if now - sync.last_housekeeping >= HOUSEKEEPING_EVERY {
        sync.last_housekeeping = now;
        housekeeping(state, &mut sync, now).await?;
    }
    apply_remote_disconnects(state, now).await
}

fn current_quota_state(state: &AppState) -> QuotaState {
    state
        .quota_state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Everything from the store: credentials page by page into a new table, the rest into a new
/// snapshot; the feed is read from a little before the number taken before the load (changes
/// made meanwhile, or by transactions still open then, are applied again, which is harmless).
async fn full_load(state: &AppState, sync: &mut SyncState) -> Result<(), StoreError> {
    let started = Instant::now();
    let latest = state.store.latest_change().await?;
    let oldest = state.store.oldest_change().await?;
    let now = state.now();
    let mut table = CredentialTable::new();
    let mut after = String::new();
    loop {
        let page = state.store.credentials_after(&after, LOAD_PAGE).await?;
        for c in &page {
            if let Some(r) = record(c) {
                table.upsert(&r);
            }
        }
        match page.last() {
            Some(last) if page.len() == LOAD_PAGE as usize => after = last.id.to_string(),
            _ => break,
        }
    }
    let credentials = table.len();
    state.directory.replace_credentials(table);
    let mut s = Snapshot::default();
    set_denied_clients(&mut s, state).await?;
    for sec in state.store.live_tenant_secrets(now).await? {
        s.tenant_secrets
            .entry(sec.tenant_id.into_string())
            .or_default()
            .push(sec.secret);
    }
    for r in state.store.live_revocations(None, now).await? {
        add_revocation(&mut s, r);
    }
    set_tenant_states(&mut s, state).await?;
    sync.quotas.clear();
    for q in state.store.list_quotas(None).await? {
        sync.quotas
            .entry(q.tenant_id.to_string())
            .or_default()
            .push(q);
    }
    sync.applied = current_quota_state(state);
    set_limits(&mut s, sync);
    state.directory.publish(s);
    sync.cursor = Some(FeedCursor::starting(latest, oldest));
    tracing::info!(
        credentials,
        ms = started.elapsed().as_millis() as u64,
        "directory loaded"
    );
    Ok(())
}

/// Reads the feed to its end and applies what is new.
async fn read_feed(state: &AppState, sync: &mut SyncState) -> Result<(), StoreError> {
    loop {
        let after = cursor(sync).after();
        let rows = state.store.changes_since(after, FEED_PAGE).await?;
        take(state, sync, &rows).await?;
        if rows.len() < FEED_PAGE as usize {
            break;
        }
    }
    // Numbers skipped by the forward reads: transactions that had not committed yet.
    let holes = cursor(sync).holes_to_check(FEED_PAGE as usize);
    if !holes.is_empty() {
        let rows = state.store.changes_at(&holes).await?;
        take(state, sync, &rows).await?;
    }
    Ok(())
}

fn cursor(sync: &mut SyncState) -> &mut FeedCursor {
    sync.cursor
        .as_mut()
        .expect("the feed is read only with a cursor")
}

/// Hands rows read from the feed to the cursor and applies those it had not handed out before.
async fn take(state: &AppState, sync: &mut SyncState, rows: &[Change]) -> Result<(), StoreError> {
    let fresh: Vec<Change> = cursor(sync)
        .accept(Instant::now(), rows)
        .into_iter()
        .cloned()
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    apply(state, sync, &fresh).await
}

/// Re-reads what `changes` name and puts it in the directory.
async fn apply(
    state: &AppState,
    sync: &mut SyncState,
    changes: &[Change],
) -> Result<(), StoreError> {
    let mut credentials = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut revocations = BTreeSet::new();
    let mut quotas = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut deny_list = false;
    for c in changes {
        let key = c.key.as_str();
        match c.entity {
            ChangeEntity::Credential => credentials.insert(key),
            ChangeEntity::TenantSecrets => secrets.insert(key),
            ChangeEntity::Revocations => revocations.insert(key),
            ChangeEntity::Quotas => quotas.insert(key),
            ChangeEntity::Tenant => deleted.insert(key),
            ChangeEntity::DenyList => {
                deny_list = true;
                true
            }
        };
    }
    let ids: Vec<&str> = credentials.into_iter().collect();
    for chunk in ids.chunks(FEED_PAGE as usize) {
        let wanted: Vec<CredentialId> = chunk.iter().map(|s| CredentialId::from(*s)).collect();
        let found = state.store.credentials_by_ids(&wanted).await?;
        let upserts: Vec<CredentialRecord<'_>> = found.iter().filter_map(record).collect();
        let present: BTreeSet<&str> = found.iter().map(|c| c.id.as_str()).collect();
        let removed: Vec<&str> = chunk
            .iter()
            .copied()
            .filter(|id| !present.contains(id))
            .collect();
        state.directory.change_credentials(&upserts, &removed);
    }
    if secrets.is_empty()
        && revocations.is_empty()
        && quotas.is_empty()
        && deleted.is_empty()
        && !deny_list
    {
        return Ok(());
    }
    let now = state.now();
    let mut s = Snapshot::clone(&state.directory.load());
    for t in secrets {
        let list: Vec<Vec<u8>> = state
            .store
            .live_tenant_secrets_of(&TenantId::from(t), now)
            .await?
            .into_iter()
            .map(|x| x.secret)
            .collect();
        if list.is_empty() {
            s.tenant_secrets.remove(t);
        } else {
            s.tenant_secrets.insert(t.to_string(), list);
        }
    }
    for t in revocations {
        s.revoked_users.retain(|(tenant, _), _| tenant != t);
        for r in state
            .store
            .live_revocations(Some(&TenantId::from(t)), now)
            .await?
        {
            add_revocation(&mut s, r);
        }
    }
    for t in quotas {
        let rows = state.store.list_quotas(Some(&TenantId::from(t))).await?;
        if rows.is_empty() {
            sync.quotas.remove(t);
        } else {
            sync.quotas.insert(t.to_string(), rows);
        }
    }
    for t in &deleted {
        match state.store.get_tenant(&TenantId::from(*t)).await {
            Ok(_) => continue, // suspended or resumed, not deleted
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        s.tenant_secrets.remove(*t);
        s.revoked_users.retain(|(tenant, _), _| tenant != t);
        sync.quotas.remove(*t);
    }
    if !deleted.is_empty() {
        set_tenant_states(&mut s, state).await?;
    }
    if deny_list {
        set_denied_clients(&mut s, state).await?;
    }
    set_limits(&mut s, sync);
    state.directory.publish(s);
    Ok(())
}

/// Once a minute: expired credentials and revocations leave memory, the feed is pruned, and a
/// node that fell behind it loads everything again.
async fn housekeeping(state: &AppState, sync: &mut SyncState, now: i64) -> Result<(), StoreError> {
    let grace = state.cfg.credential_grace.as_secs() as i64;
    let gone = state
        .directory
        .remove_expired_credentials(now.saturating_sub(grace).max(0) as u64);
    let unix = now.max(0) as u64;
    let s = state.directory.load();
    if s.revoked_usernames.values().any(|&t| t <= unix)
        || s.revoked_users.values().any(|&t| t <= unix)
    {
        let mut s = (**s).clone();
        s.revoked_usernames.retain(|_, t| *t > unix);
        s.revoked_users.retain(|_, t| *t > unix);
        state.directory.publish(s);
    }
    if gone > 0 {
        tracing::debug!(gone, "expired stored credentials left the directory");
    }
    state.store.prune_changes(now - CHANGE_KEEP).await?;
    let oldest = state.store.oldest_change().await?;
    if sync.cursor.as_ref().is_some_and(|c| c.fell_behind(oldest)) {
        tracing::warn!("this node fell behind the change feed; loading the directory again");
        full_load(state, sync).await?;
    }
    Ok(())
}

/// A stored credential as the relay holds it (none, with a warning, if its keys are malformed).
fn record(c: &Credential) -> Option<CredentialRecord<'_>> {
    let (Ok(md5), Ok(sha)) = (
        <[u8; 16]>::try_from(c.key_md5.as_slice()),
        <[u8; 32]>::try_from(c.key_sha256.as_slice()),
    ) else {
        tracing::warn!(credential = %c.id, "stored credential has malformed keys; skipped");
        return None;
    };
    Some(CredentialRecord {
        id: &c.id,
        tenant_id: &c.tenant_id,
        username: &c.username,
        key_md5: md5,
        key_sha256: sha,
        enabled: c.enabled,
        expires_at: c.expires_at.map(|e| e.max(0) as u64),
    })
}

fn add_revocation(s: &mut Snapshot, r: turnpike_store::Revocation) {
    let until = r.expires_at.max(0) as u64;
    match r.kind {
        RevocationKind::Username => {
            s.revoked_usernames.insert(r.value, until);
        }
        RevocationKind::User => {
            s.revoked_users
                .insert((r.tenant_id.into_string(), r.value), until);
        }
    }
}

/// The suspended tenants and the tenants limited to some regions (few: both lists are read
/// again on any tenant change).
async fn set_tenant_states(s: &mut Snapshot, state: &AppState) -> Result<(), StoreError> {
    s.suspended_tenants = state
        .store
        .suspended_tenants()
        .await?
        .into_iter()
        .map(TenantId::into_string)
        .collect();
    s.tenant_regions = state
        .store
        .tenant_regions()
        .await?
        .into_iter()
        .map(|(t, regions)| (t.into_string(), regions))
        .collect();
    Ok(())
}

async fn set_denied_clients(s: &mut Snapshot, state: &AppState) -> Result<(), StoreError> {
    s.denied_clients.clear();
    for d in state.store.list_denied_clients().await? {
        match d.cidr.parse::<ipnet::IpNet>() {
            Ok(n) => s.denied_clients.push(n),
            Err(_) => tracing::warn!(entry = %d.id, "unreadable client deny list entry; skipped"),
        }
    }
    Ok(())
}

/// Limits per tenant and credential: the quotas' caps, and what the meter's evaluation applies
/// (refuse; throttle, the lower of the cap and the throttle rate).
fn set_limits(s: &mut Snapshot, sync: &SyncState) {
    let mut limits: HashMap<String, Limits> = HashMap::new();
    for q in sync.quotas.values().flatten() {
        let l = limits.entry(scope_key(&q.tenant_id, &q.scope)).or_default();
        l.max_allocations = q
            .max_allocations
            .map(|m| m.clamp(0, u32::MAX as i64) as u32);
        l.max_bitrate_bps = q.max_bitrate_bps.map(|b| b.max(1) as u64);
    }
    for k in &sync.applied.refused {
        limits.entry(k.clone()).or_default().refuse = true;
    }
    for (k, bps) in &sync.applied.throttled {
        let l = limits.entry(k.clone()).or_default();
        l.max_bitrate_bps = Some(l.max_bitrate_bps.map_or(*bps, |b| b.min(*bps)));
    }
    s.tenant_limits.clear();
    s.credential_limits.clear();
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

/// Applies a change just made (and whatever else the feed holds); a failure is logged (the
/// periodic read retries, from a full load).
pub async fn after_change(state: &AppState) {
    if let Err(e) = catch_up(state).await {
        tracing::error!(error = %e, "directory sync failed");
    }
}

/// Reads the change feed every `sync_interval`, and at once when PostgreSQL notifies that
/// another node committed a change (a lost listener is tried again every 30 s).
pub async fn periodic(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.cfg.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener = listen(&state).await;
    let mut listen_again = Instant::now() + LISTEN_RETRY;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            woke = changed(&mut listener) => {
                if let Err(e) = woke {
                    tracing::warn!(error = %e, "lost the change notifications; reading the feed every directory_sync_interval until they are back");
                    listener = None;
                }
            }
        }
        if listener.is_none() && Instant::now() >= listen_again {
            listener = listen(&state).await;
            listen_again = Instant::now() + LISTEN_RETRY;
        }
        after_change(&state).await;
    }
}

/// PostgreSQL's change notifications, when the store has them and they can be had now.
async fn listen(state: &AppState) -> Option<ChangeListener> {
    match state.store.listen_changes().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for change notifications; reading the feed every directory_sync_interval");
            None
        }
    }
}

/// The next wake-up from `listener`; never, without one.
async fn changed(listener: &mut Option<ChangeListener>) -> Result<(), StoreError> {
    match listener {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}
