//! The meter: receives the relay workers' accounting events, aggregates them per tenant,
//! credential, user id and hour, and writes them to the store every `flush_interval` (and on
//! shutdown), together with the allocation log. Then it evaluates quotas.
//!
//! Nothing counted is lost on a clean stop: workers close their allocations and report, then
//! [`Meter::finish`] drains the channel and flushes. A failed write keeps the counts in memory
//! and retries at the next flush. A power cut loses what was counted since the last flush (at
//! most `flush_interval` plus the workers' one-second reporting period).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use turnpike_proto::AccountingSink;
use turnpike_proto::{Account, AccountingEvent, Usage};
use turnpike_store::{AllocationRecord, AuthFailure, Counters, Store, TenantId, UsageDelta};

use crate::state::AppState;

type Batch = (usize, Vec<AccountingEvent>);
type Bucket = (String, String, String, i64);

/// The sending half is the driver's [`AccountingSink`]; the receiving half runs in [`Meter::run`].
pub struct Meter {
    tx: mpsc::UnboundedSender<Batch>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Batch>>,
    /// Unique per process, so allocation log ids from several nodes never collide.
    node: String,
}

#[derive(Default)]
struct Pending {
    usage: HashMap<Bucket, Counters>,
    allocations: HashMap<String, AllocationRecord>,
    /// Started allocations by serial (unique in the process), until they end.
    live: HashMap<u64, AllocationRecord>,
    /// Bytes of live allocations' RFC 6062 data connections, added to their record at the end.
    spliced: HashMap<u64, Counters>,
    /// Allocations ended lately, for data-connection bytes reported after the end.
    ended: HashMap<u64, AllocationRecord>,
    tenants: HashSet<String>,
    /// Refused TURN requests to record (at most [`AUTH_FAILURES_PENDING`]).
    auth_failures: Vec<AuthFailure>,
    /// Numbers refused requests (ids unique per node).
    seq: u64,
}

impl Pending {
    /// An allocation started: counted in its hour, and logged until it ends.
    fn started(&mut self, serial: u64, account: &Account, at_unix: u64, r: AllocationRecord) {
        self.usage
            .entry(bucket(account, at_unix))
            .or_default()
            .allocations += 1;
        self.tenants.insert(account.tenant_id.to_string());
        self.allocations.insert(r.id.clone(), r.clone());
        self.live.insert(serial, r);
    }

    /// Traffic of an account; `spliced`: the allocation a data connection's bytes belong to,
    /// whose log record gets them too (also shortly after it ended).
    fn used(&mut self, account: &Account, c: &Counters, at_unix: u64, spliced: Option<u64>) {
        self.usage
            .entry(bucket(account, at_unix))
            .or_default()
            .add(c);
        self.tenants.insert(account.tenant_id.to_string());
        if let Some(serial) = spliced {
            if self.live.contains_key(&serial) {
                self.spliced.entry(serial).or_default().add(c);
            } else if let Some(r) = self.ended.get_mut(&serial) {
                add_bytes(r, c);
                self.allocations.insert(r.id.clone(), r.clone());
            }
        }
    }

    /// An allocation ended after `seconds`, having relayed `total` with `peers` peers: its
    /// record is complete (and kept a while for late data-connection bytes).
    fn ended(
        &mut self,
        serial: u64,
        account: &Account,
        at_unix: u64,
        seconds: i64,
        total: &Counters,
        peers: i64,
    ) {
        self.usage
            .entry(bucket(account, at_unix))
            .or_default()
            .allocation_seconds += seconds;
        if let Some(mut r) = self.live.remove(&serial) {
            r.ended_at = Some(at_unix as i64);
            add_bytes(&mut r, total);
            if let Some(extra) = self.spliced.remove(&serial) {
                add_bytes(&mut r, &extra);
            }
            r.peers = peers;
            self.allocations.insert(r.id.clone(), r.clone());
            if self.ended.len() >= ENDED_KEPT {
                self.ended.clear();
            }
            self.ended.insert(serial, r);
        }
    }
}

/// How many ended allocations are remembered for late data-connection bytes (a data connection
/// closes with its allocation, so its last report comes within a second or two).
const ENDED_KEPT: usize = 10_000;

/// Refused requests held for the next flush at most (the relay's log rate keeps far below it;
/// beyond, while the database is unreachable, they are dropped and counted).
const AUTH_FAILURES_PENDING: usize = 10_000;

/// Notification delivery attempts and refused requests kept per tenant (and at most 30 days).
const LOG_ROWS_KEPT: u32 = 1000;

fn add_bytes(r: &mut AllocationRecord, c: &Counters) {
    r.c2s_bytes += c.c2s_bytes;
    r.s2p_bytes += c.s2p_bytes;
    r.p2s_bytes += c.p2s_bytes;
    r.s2c_bytes += c.s2c_bytes;
}

fn counters(u: &Usage) -> Counters {
    let b = |i: usize| u.bytes[i] as i64;
    let p = |i: usize| u.packets[i] as i64;
    Counters {
        c2s_bytes: b(0),
        c2s_packets: p(0),
        s2p_bytes: b(1),
        s2p_packets: p(1),
        p2s_bytes: b(2),
        p2s_packets: p(2),
        s2c_bytes: b(3),
        s2c_packets: p(3),
        allocations: 0,
        allocation_seconds: 0,
    }
}

fn bucket(a: &Account, at_unix: u64) -> Bucket {
    (
        a.tenant_id.to_string(),
        a.credential_id.as_deref().unwrap_or("").to_string(),
        a.user_id.as_deref().unwrap_or("").to_string(),
        (at_unix / 3600) as i64,
    )
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            node: crate::keys::random_hex(4),
        }
    }

    /// The sink to give the relay driver.
    pub fn sink(&self) -> AccountingSink {
        let tx = self.tx.clone();
        Arc::new(move |worker, events| {
            // The receiver lives as long as the process; a send after it closed (shutdown
            // finished) has nobody left to count for.
            let _ = tx.send((worker, events));
        })
    }

    /// Aggregates and flushes until `stop` fires, then drains what is queued and flushes a last
    /// time.
    pub async fn run(
        self: Arc<Self>,
        state: Arc<AppState>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut rx = self.rx.lock().await;
        let mut pending = Pending::default();
        let mut tick = tokio::time::interval(state.cfg.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut full_eval = tokio::time::interval(std::time::Duration::from_secs(30));
        let mut stop = stop;
        loop {
            tokio::select! {
                Some((w, events)) = rx.recv() => self.absorb(&mut pending, w, events),
                _ = tick.tick() => {
                    let touched = self.flush(&state, &mut pending).await;
                    if !touched.is_empty() {
                        crate::domain::quota::evaluate(&state, Some(&touched)).await;
                    }
                }
                _ = full_eval.tick() => {
                    crate::domain::quota::evaluate(&state, None).await;
                    if let Err(e) = crate::domain::billing::close_due(&state).await {
                        tracing::warn!(error = %e, "billing statements could not be closed; retrying in 30 s");
                    }
                    let month_ago = state.now() - 30 * 86_400;
                    if let Err(e) = state.store.prune_tenant_logs(month_ago, LOG_ROWS_KEPT).await {
                        tracing::warn!(error = %e, "the delivery log and refused requests could not be pruned");
                    }
                }
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        while let Ok((w, events)) = rx.try_recv() {
            self.absorb(&mut pending, w, events);
        }
        // Allocations still live had their end reported by the workers' shutdown; any left
        // here belong to workers that did not stop cleanly: log them as ended now.
        let now = state.now();
        for (serial, mut r) in pending.live.drain() {
            if let Some(extra) = pending.spliced.remove(&serial) {
                add_bytes(&mut r, &extra);
            }
            r.ended_at = Some(now);
            pending.allocations.insert(r.id.clone(), r);
        }
        self.flush(&state, &mut pending).await;
        if !pending.usage.is_empty() {
            tracing::error!(
                buckets = pending.usage.len(),
                "usage could not be written at shutdown"
            );
        }
    }

    fn absorb(&self, p: &mut Pending, worker: usize, events: Vec<AccountingEvent>) {
        for e in events {
            match e {
                AccountingEvent::Started {
                    serial,
                    account,
                    username,
                    client,
                    transport,
                    relay,
                    at_unix,
                } => {
                    let r = AllocationRecord {
                        id: format!("alc_{}{:02x}{:x}{:x}", self.node, worker, at_unix, serial),
                        tenant_id: TenantId::from(&*account.tenant_id),
                        credential_id: account.credential_id.as_deref().unwrap_or("").into(),
                        user_id: account.user_id.as_deref().unwrap_or("").into(),
                        username,
                        client: client.to_string(),
                        transport: transport.as_str().into(),
                        relay: relay.map(|r| r.to_string()).unwrap_or_default(),
                        started_at: at_unix as i64,
                        ..Default::default()
                    };
                    p.started(serial, &account, at_unix, r);
                }
                AccountingEvent::Usage {
                    account,
                    delta,
                    at_unix,
                    spliced,
                } => p.used(&account, &counters(&delta), at_unix, spliced),
                AccountingEvent::Ended {
                    serial,
                    account,
                    started_unix,
                    at_unix,
                    total,
                    peers,
                } => {
                    let seconds = at_unix.saturating_sub(started_unix) as i64;
                    let total = counters(&total);
                    p.ended(serial, &account, at_unix, seconds, &total, peers as i64);
                }
                AccountingEvent::AuthFailed {
                    tenants,
                    username,
                    client,
                    transport,
                    reason,
                    at_unix,
                } => {
                    for t in tenants {
                        if p.auth_failures.len() >= AUTH_FAILURES_PENDING {
                            metrics::counter!("turnpike_auth_failures_dropped_total").increment(1);
                            continue;
                        }
                        p.seq += 1;
                        p.auth_failures.push(AuthFailure {
                            id: format!("af_{at_unix:x}_{}{:x}", self.node, p.seq),
                            tenant_id: TenantId::from(&*t),
                            at: at_unix as i64,
                            username: username.clone(),
                            client: client.to_string(),
                            transport: transport.as_str().into(),
                            reason: reason.into(),
                        });
                    }
                }
            }
        }
    }

    /// Writes pending usage and allocation records; returns the tenants whose usage changed.
    async fn flush(&self, state: &AppState, p: &mut Pending) -> HashSet<String> {
        if !p.usage.is_empty() {
            let deltas: Vec<UsageDelta> = p
                .usage
                .iter()
                .map(|((t, c, u, h), counters)| UsageDelta {
                    tenant_id: TenantId::from(t.as_str()),
                    credential_id: c.clone(),
                    user_id: u.clone(),
                    hour: *h,
                    counters: *counters,
                })
                .collect();
            let (node, region) = (&state.node_id, &state.cfg.fleet.region);
            match state.store.add_usage_at(&deltas, node, region).await {
                Ok(()) => p.usage.clear(),
                Err(e) => {
                    tracing::error!(error = %e, "usage flush failed; kept for the next try");
                    return HashSet::new();
                }
            }
        }
        if !p.allocations.is_empty() {
            let records: Vec<_> = p
                .allocations
                .values()
                .map(|r| AllocationRecord {
                    node_id: state.node_id.clone(),
                    ..r.clone()
                })
                .collect();
            match state.store.upsert_allocations(&records).await {
                Ok(()) => p.allocations.clear(),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        records = records.len(),
                        "allocation log write failed; kept for the next try"
                    );
                }
            }
        }
        if !p.auth_failures.is_empty() {
            match state.store.add_auth_failures(&p.auth_failures).await {
                Ok(()) => p.auth_failures.clear(),
                Err(e) => {
                    tracing::error!(error = %e, "refused requests not recorded; kept for the next try");
                }
            }
        }
        std::mem::take(&mut p.tenants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> AllocationRecord {
        AllocationRecord {
            id: id.into(),
            tenant_id: "ten_a".into(),
            ..Default::default()
        }
    }

    fn bytes(n: i64) -> Counters {
        Counters {
            c2s_bytes: n,
            c2s_packets: 1,
            ..Counters::default()
        }
    }

    #[test]
    fn data_connection_bytes_reach_their_allocation_record_even_late() {
        let account = Account {
            tenant_id: "ten_a".into(),
            credential_id: Some("cred_a".into()),
            user_id: None,
        };
        let hour = 1_800_000_000;
        let mut p = Pending::default();
        p.started(7, &account, hour, record("alc_1"));
        p.used(&account, &bytes(100), hour + 1, None);
        p.used(&account, &bytes(10), hour + 2, Some(7));
        p.ended(7, &account, hour + 3, 3, &bytes(100), 2);
        let r = &p.allocations["alc_1"];
        assert_eq!(
            (r.c2s_bytes, r.peers, r.ended_at),
            (110, 2, Some(hour as i64 + 3))
        );
        // Reported after the end: still added to the record, and written again.
        p.allocations.clear();
        p.used(&account, &bytes(5), hour + 4, Some(7));
        assert_eq!(p.allocations["alc_1"].c2s_bytes, 115);
        // Usage counts every byte once, in its hour, with the allocation and its seconds.
        let u = &p.usage[&bucket(&account, hour)];
        assert_eq!(
            (u.c2s_bytes, u.allocations, u.allocation_seconds),
            (115, 1, 3)
        );
        assert!(p.live.is_empty() && p.spliced.is_empty());
    }
}
