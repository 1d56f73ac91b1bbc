//! The room server of one node: sessions (with resume), local participants per room, limits,
//! delivery of bus events to local sockets, draining.
//!
//! A session outlives its socket for `resume_grace`: its messages keep being numbered and
//! buffered (the last `resume_buffer`), and a new socket that presents the session id, the
//! resume token and the last sequence number it saw gets the rest. After the grace period the
//! peer is reported gone. A consumer whose outbound queue is full is disconnected (its session
//! may resume); others are unaffected.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::bus::{Bus, BusEvent, RoomBus};
use crate::message::{Peer, VERSION};

/// Limits and timers of the signalling server.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    pub max_message_bytes: usize,
    pub msgs_per_sec: u32,
    pub msg_burst: u32,
    pub bytes_per_sec: u32,
    pub max_conns_per_tenant: usize,
    pub max_conns_per_ip: usize,
    pub max_room_size: usize,
    pub queue: usize,
    pub resume_buffer: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub resume_grace: Duration,
    pub ping_interval: Duration,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            msgs_per_sec: 50,
            msg_burst: 100,
            bytes_per_sec: 256 * 1024,
            max_conns_per_tenant: 1000,
            max_conns_per_ip: 50,
            max_room_size: 16,
            queue: 256,
            resume_buffer: 256,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            resume_grace: Duration::from_secs(20),
            ping_interval: Duration::from_secs(15),
        }
    }
}

/// What the writer of a socket sends.
#[derive(Debug, Clone)]
pub enum Out {
    Text(Arc<str>),
    Close(u16, &'static str),
}

/// A participant's session on this node.
pub struct Session {
    pub id: String,
    resume_hash: [u8; 32],
    pub peer: Peer,
    pub tenant: String,
    pub room_key: String,
    pub room: String,
    pub can_send: bool,
    pub can_broadcast: bool,
    buffer: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
    tx: Option<mpsc::Sender<Out>>,
    /// Wakes the socket's writer to close it (a slow consumer cannot be sent a Close).
    kill: Option<Arc<Notify>>,
    disconnected_at: Option<Instant>,
    ip: IpAddr,
    /// Bumped on every attach, so a stale socket's exit does not detach a resumed one.
    attach: u64,
}

#[derive(Default)]
struct HubState {
    sessions: HashMap<String, Session>,
    by_peer: HashMap<String, String>,
    rooms: HashMap<String, HashSet<String>>,
    per_tenant: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counters for metrics and tests.
#[derive(Default)]
pub struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub drops_slow: AtomicU64,
    pub drops_rate: AtomicU64,
    pub resumes: AtomicU64,
}

pub struct Hub {
    pub cfg: SignalConfig,
    pub bus: Bus,
    state: Mutex<HubState>,
    pub draining: AtomicBool,
    pub counters: Counters,
}

pub fn room_key(tenant: &str, room: &str) -> String {
    format!("{tenant}/{room}")
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What `join` hands the connection.
pub struct Joined {
    pub session: String,
    pub resume_token: String,
    pub peer: Peer,
    pub others: Vec<Peer>,
    pub attach: u64,
}

/// What `resume` hands the connection.
pub struct Resumed {
    pub peer: Peer,
    pub room: String,
    pub attach: u64,
    /// Buffered messages after the client's last sequence number.
    pub missed: Vec<Arc<str>>,
    /// Some messages after that number were already dropped from the buffer.
    pub gap: bool,
}

#[derive(Debug)]
pub enum JoinError {
    TenantFull,
    IpFull,
    RoomFull,
    Bus,
    BadResume,
}

impl Hub {
    pub fn new(cfg: SignalConfig, bus: Bus) -> Arc<Self> {
        let hub = Arc::new(Self {
            cfg,
            bus,
            state: Mutex::default(),
            draining: AtomicBool::new(false),
            counters: Counters::default(),
        });
        tokio::spawn(deliver_task(hub.clone()));
        tokio::spawn(sweep_task(hub.clone()));
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection from `ip` (before it joins); false over the per-IP cap.
    pub fn admit_ip(&self, ip: IpAddr) -> bool {
        let mut s = self.lock();
        let n = s.per_ip.entry(ip).or_default();
        if *n >= self.cfg.max_conns_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release_ip(&self, ip: IpAddr) {
        let mut s = self.lock();
        if let Some(n) = s.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&ip);
            }
        }
    }

    /// A new participant.
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        tenant: &str,
        room: &str,
        identity: &str,
        can_send: bool,
        can_broadcast: bool,
        ip: IpAddr,
        tx: mpsc::Sender<Out>,
        kill: Arc<Notify>,
    ) -> Result<Joined, JoinError> {
        let key = room_key(tenant, room);
        {
            let s = self.lock();
            if s.per_tenant.get(tenant).copied().unwrap_or(0) >= self.cfg.max_conns_per_tenant {
                return Err(JoinError::TenantFull);
            }
        }
        let members = self.bus.members(&key).await.map_err(|_| JoinError::Bus)?;
        if members.len() >= self.cfg.max_room_size {
            return Err(JoinError::RoomFull);
        }
        let peer_id = format!("p_{}", turnpike_api::keys::random_hex(8));
        let (peer, all) = self
            .bus
            .join(&key, &peer_id, identity)
            .await
            .map_err(|_| JoinError::Bus)?;
        let session = format!("s_{}", turnpike_api::keys::random_hex(12));
        let resume_token = turnpike_api::keys::random_token(24);
        {
            let mut s = self.lock();
            *s.per_tenant.entry(tenant.to_string()).or_default() += 1;
            s.by_peer.insert(peer.id.clone(), session.clone());
            s.rooms
                .entry(key.clone())
                .or_default()
                .insert(peer.id.clone());
            s.sessions.insert(
                session.clone(),
                Session {
                    id: session.clone(),
                    resume_hash: hash(&resume_token),
                    peer: peer.clone(),
                    tenant: tenant.to_string(),
                    room_key: key.clone(),
                    room: room.to_string(),
                    can_send,
                    can_broadcast,
                    buffer: VecDeque::new(),
                    next_seq: 1,
                    tx: Some(tx),
                    kill: Some(kill),
                    disconnected_at: None,
                    ip,
                    attach: 1,
                },
            );
        }
        let _ = self
            .bus
            .publish(&BusEvent::Joined {
                room: key,
                peer: peer.clone(),
            })
            .await;
        self.update_gauges();
        Ok(Joined {
            session,
            resume_token,
            others: all.into_iter().filter(|p| p.id != peer.id).collect(),
            peer,
            attach: 1,
        })
    }

    /// Reattaches a session to a new socket; returns the messages after `last_seq` and whether
    /// some were already dropped from the buffer.
    pub fn resume(
        &self,
        session: &str,
        token: &str,
        last_seq: u64,
        tx: mpsc::Sender<Out>,
        kill: Arc<Notify>,
    ) -> Result<Resumed, JoinError> {
        let mut s = self.lock();
        let sess = s.sessions.get_mut(session).ok_or(JoinError::BadResume)?;
        let want = hash(token);
        if want
            .iter()
            .zip(sess.resume_hash.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            != 0
        {
            return Err(JoinError::BadResume);
        }
        if let Some(old) = sess.tx.take() {
            let _ = old.try_send(Out::Close(4000, "resumed elsewhere"));
        }
        if let Some(k) = sess.kill.take() {
            k.notify_one();
        }
        sess.tx = Some(tx);
        sess.kill = Some(kill);
        sess.disconnected_at = None;
        sess.attach += 1;
        let gap = sess
            .buffer
            .front()
            .is_some_and(|(seq, _)| *seq > last_seq + 1);
        let missed: Vec<Arc<str>> = sess
            .buffer
            .iter()
            .filter(|(seq, _)| *seq > last_seq)
            .map(|(_, m)| m.clone())
            .collect();
        self.counters.resumes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("turnpike_signal_resumes_total").increment(1);
        Ok(Resumed {
            peer: sess.peer.clone(),
            room: sess.room.clone(),
            attach: sess.attach,
            missed,
            gap,
        })
    }

    /// The next sequence number a session's message will get (for `joined`/`resumed`).
    pub fn push(&self, session: &str, mut msg: serde_json::Value) {
        let mut s = self.lock();
        if let Some(sess) = s.sessions.get_mut(session) {
            Self::push_to(&self.cfg, &self.counters, sess, &mut msg);
        }
    }

    fn push_to(
        cfg: &SignalConfig,
        counters: &Counters,
        sess: &mut Session,
        msg: &mut serde_json::Value,
    ) {
        let seq = sess.next_seq;
        sess.next_seq += 1;
        msg["seq"] = json!(seq);
        msg["v"] = json!(VERSION);
        let text: Arc<str> = msg.to_string().into();
        sess.buffer.push_back((seq, text.clone()));
        while sess.buffer.len() > cfg.resume_buffer {
            sess.buffer.pop_front();
        }
        if let Some(tx) = &sess.tx {
            match tx.try_send(Out::Text(text)) {
                Ok(()) => {
                    counters.messages_out.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("turnpike_signal_messages_total", "direction" => "out")
                        .increment(1);
                }
                Err(_) => {
                    // A slow consumer: cut it off (it may resume); nobody else waits for it.
                    counters.drops_slow.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("turnpike_signal_drops_total", "reason" => "slow_consumer")
                        .increment(1);
                    sess.tx = None;
                    if let Some(k) = sess.kill.take() {
                        k.notify_one();
                    }
                    sess.disconnected_at = Some(Instant::now());
                }
            }
        }
    }

    /// The socket of `session` (attachment `attach`) ended without `leave`.
    pub fn detach(&self, session: &str, attach: u64) {
        let mut s = self.lock();
        if let Some(sess) = s.sessions.get_mut(session) {
            if sess.attach == attach && sess.disconnected_at.is_none() {
                sess.tx = None;
                sess.kill = None;
                sess.disconnected_at = Some(Instant::now());
            }
        }
    }

    /// Ends a session for good and tells the room.
    pub async fn leave(&self, session: &str, reason: &str) {
        let removed = {
            let mut s = self.lock();
            let Some(sess) = s.sessions.remove(session) else {
                return;
            };
            s.by_peer.remove(&sess.peer.id);
            if let Some(r) = s.rooms.get_mut(&sess.room_key) {
                r.remove(&sess.peer.id);
                if r.is_empty() {
                    s.rooms.remove(&sess.room_key);
                }
            }
            if let Some(n) = s.per_tenant.get_mut(&sess.tenant) {
                *n -= 1;
                if *n == 0 {
                    s.per_tenant.remove(&sess.tenant);
                }
            }
            let _ = sess.ip;
            sess
        };
        let _ = self.bus.leave(&removed.room_key, &removed.peer.id).await;
        let _ = self
            .bus
            .publish(&BusEvent::Left {
                room: removed.room_key.clone(),
                peer_id: removed.peer.id.clone(),
                reason: reason.to_string(),
            })
            .await;
        self.update_gauges();
    }

    /// Routes a client's message to the room through the bus.
    pub async fn send(
        &self,
        session: &str,
        to: Option<String>,
        data: serde_json::Value,
    ) -> Result<(), &'static str> {
        let (room, from) = {
            let s = self.lock();
            let sess = s.sessions.get(session).ok_or("not joined")?;
            match &to {
                Some(_) if !sess.can_send => return Err("this token may not send"),
                None if !sess.can_broadcast => return Err("this token may not broadcast"),
                _ => {}
            }
            (sess.room_key.clone(), sess.peer.id.clone())
        };
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("turnpike_signal_messages_total", "direction" => "in").increment(1);
        self.bus
            .publish(&BusEvent::Signal {
                room,
                from,
                to,
                data,
            })
            .await
            .map_err(|_| "bus unavailable")
    }

    /// Delivers one bus event to this node's participants.
    async fn deliver(&self, e: BusEvent) {
        let mut to_close: Vec<(String, &'static str, &'static str)> = Vec::new();
        {
            let mut guard = self.lock();
            let st = &mut *guard;
            let (room, skip) = match &e {
                BusEvent::Joined { room, peer } => (room, Some(peer.id.clone())),
                BusEvent::Left { room, peer_id, .. } => (room, Some(peer_id.clone())),
                BusEvent::Signal { room, from, .. } => (room, Some(from.clone())),
                BusEvent::Kick { room, .. } | BusEvent::Close { room } => (room, None),
            };
            let Some(local) = st.rooms.get(room).cloned() else {
                return;
            };
            for pid in local {
                if skip.as_deref() == Some(pid.as_str()) {
                    continue;
                }
                let Some(sid) = st.by_peer.get(&pid).cloned() else {
                    continue;
                };
                let Some(sess) = st.sessions.get_mut(&sid) else {
                    continue;
                };
                let mut msg = match &e {
                    BusEvent::Joined { peer, .. } => json!({
                        "type": "peer_joined",
                        "peer": peer,
                        "polite": sess.peer.rank > peer.rank,
                    }),
                    BusEvent::Left {
                        peer_id, reason, ..
                    } => json!({
                        "type": "peer_left", "peer_id": peer_id, "reason": reason,
                    }),
                    BusEvent::Signal { from, to, data, .. } => {
                        if to.as_deref().is_some_and(|t| t != pid) {
                            continue;
                        }
                        json!({"type": "signal", "from": from, "broadcast": to.is_none(), "data": data})
                    }
                    BusEvent::Kick { peer_id, .. } => {
                        if *peer_id != pid {
                            continue;
                        }
                        to_close.push((sid.clone(), "kicked", "kicked by the operator"));
                        json!({"type": "kicked"})
                    }
                    BusEvent::Close { .. } => {
                        to_close.push((sid.clone(), "room_closed", "room closed by the operator"));
                        json!({"type": "room_closed"})
                    }
                };
                Self::push_to(&self.cfg, &self.counters, sess, &mut msg);
            }
        }
        for (sid, reason, why) in to_close {
            if let Some(tx) = self.lock().sessions.get_mut(&sid).and_then(|s| s.tx.take()) {
                let _ = tx.try_send(Out::Close(4001, why));
            }
            self.leave(&sid, reason).await;
        }
    }

    /// Sessions whose grace period ran out.
    fn expired(&self) -> Vec<String> {
        let s = self.lock();
        s.sessions
            .values()
            .filter(|x| {
                x.disconnected_at
                    .is_some_and(|t| t.elapsed() >= self.cfg.resume_grace)
            })
            .map(|x| x.id.clone())
            .collect()
    }

    /// Tells every client to reconnect elsewhere and closes their sockets (SIGTERM).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let mut s = self.lock();
        for sess in s.sessions.values_mut() {
            if let Some(tx) = sess.tx.take() {
                let m: Arc<str> = json!({"v": VERSION, "type": "draining", "reconnect": true})
                    .to_string()
                    .into();
                let _ = tx.try_send(Out::Text(m));
                let _ = tx.try_send(Out::Close(1012, "server restarting: reconnect"));
            }
        }
    }

    /// Local participants, for metrics and admin.
    pub fn local_counts(&self) -> (usize, usize) {
        let s = self.lock();
        (
            s.sessions.values().filter(|x| x.tx.is_some()).count(),
            s.rooms.len(),
        )
    }

    fn update_gauges(&self) {
        let (conns, rooms) = self.local_counts();
        metrics::gauge!("turnpike_signal_connections").set(conns as f64);
        metrics::gauge!("turnpike_signal_rooms").set(rooms as f64);
    }

    /// The session of a local peer (for kicks from the admin API on this node).
    pub fn session_of(&self, peer_id: &str) -> Option<String> {
        self.lock().by_peer.get(peer_id).cloned()
    }
}

async fn deliver_task(hub: Arc<Hub>) {
    let mut rx = hub.bus.subscribe();
    loop {
        match rx.recv().await {
            Ok(e) => hub.deliver(e).await,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "signalling events lagged");
                metrics::counter!("turnpike_signal_drops_total", "reason" => "lagged").increment(n);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn sweep_task(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for sid in hub.expired() {
            hub.leave(&sid, "gone").await;
        }
        hub.update_gauges();
    }
}
