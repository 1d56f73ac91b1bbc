//! Room fan-out and membership behind one interface, so several nodes can share rooms:
//!
//! - [`InProcessBus`] (default): one node; membership in memory, events on a broadcast channel.
//! - [`PgBus`]: PostgreSQL `LISTEN`/`NOTIFY`, membership in table `signal_members` (the
//!   statements live in `turnpike_store::signal`). Chosen over NATS because a multi-node
//!   deployment already runs PostgreSQL for the control plane: no second piece of
//!   infrastructure to operate, and membership changes and notifications share one
//!   transactional store. Payloads over `NOTIFY`'s 8000-byte limit go through table
//!   `signal_payloads` and the notification carries their id. Delivery is at-most-once per node
//!   (as `NOTIFY` is); the resume buffer covers dropped client sockets, not a lost database
//!   connection.
//!
//! Every node receives every event and delivers it to its own participants of that room.
//!
//! A node that dies without leaving (a crash, a lost network) stops refreshing its row in
//! `signal_nodes`; after [`NODE_TIMEOUT`] the surviving nodes remove its members and tell their
//! rooms those peers left (reason `node_lost`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use turnpike_store::signal::{Member, SignalDb};
use turnpike_store::StoreError;

use crate::bus_event::BusEvent;
use crate::message::{LeaveReason, Peer};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The database behind the bus failed: the operation did not happen.
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, BusError>;

/// The interface both buses implement.
#[allow(async_fn_in_trait)]
pub trait RoomBus {
    /// Adds `peer` (its `rank` is assigned here) and returns the members, the new one included.
    async fn join(&self, room: &str, id: &str, identity: &str) -> Result<(Peer, Vec<Peer>)>;
    async fn leave(&self, room: &str, peer_id: &str) -> Result<bool>;
    async fn members(&self, room: &str) -> Result<Vec<Peer>>;
    /// Rooms whose key starts with `prefix`, with member counts.
    async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>>;
    async fn publish(&self, e: &BusEvent) -> Result<()>;
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;
}

/// One node: everything in memory.
pub struct InProcessBus {
    members: Mutex<HashMap<String, Vec<Peer>>>,
    next_rank: Mutex<u64>,
    tx: broadcast::Sender<BusEvent>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            members: Mutex::default(),
            next_rank: Mutex::new(1),
            tx: broadcast::channel(4096).0,
        }
    }
}

impl RoomBus for InProcessBus {
    async fn join(&self, room: &str, id: &str, identity: &str) -> Result<(Peer, Vec<Peer>)> {
        let rank = {
            let mut r = self.next_rank.lock().unwrap_or_else(|e| e.into_inner());
            *r += 1;
            *r
        };
        let peer = Peer {
            id: id.into(),
            identity: identity.into(),
            rank,
        };
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(room.to_string()).or_default();
        list.push(peer.clone());
        Ok((peer, list.clone()))
    }
    async fn leave(&self, room: &str, peer_id: &str) -> Result<bool> {
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = m.get_mut(room) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|p| p.id != peer_id);
        let removed = list.len() != before;
        if list.is_empty() {
            m.remove(room);
        }
        Ok(removed)
    }
    async fn members(&self, room: &str) -> Result<Vec<Peer>> {
        let m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get(room).cloned().unwrap_or_default())
    }
    async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>> {
        let m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, l)| (k.clone(), l.len()))
            .collect();
        v.sort();
        Ok(v)
    }
    async fn publish(&self, e: &BusEvent) -> Result<()> {
        // No receiver only means no participant on this node yet.
        let _ = self.tx.send(e.clone());
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

/// Several nodes sharing PostgreSQL.
pub struct PgBus {
    db: SignalDb,
    node: String,
    tx: broadcast::Sender<BusEvent>,
}

/// How often a node refreshes its liveness row and looks for silent nodes.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(5);
/// A node silent this long is gone: its members are removed.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(20);
/// NOTIFY payloads must stay under 8000 bytes.
const INLINE_MAX: usize = 7000;
/// Large payloads are only needed for a moment: older ones are removed every minute.
const PAYLOAD_KEEP_SECS: i64 = 120;

fn unix_now() -> i64 {
    turnpike_api::state::unix_now()
}

impl PgBus {
    /// Connects, refreshes this node's liveness row and starts listening, cleaning old large
    /// payloads and watching for silent nodes.
    pub async fn connect(url: &str, node: &str) -> Result<Arc<Self>> {
        let bus = Arc::new(Self {
            db: SignalDb::connect(url).await?,
            node: node.to_string(),
            tx: broadcast::channel(4096).0,
        });
        bus.db.heartbeat(&bus.node, unix_now()).await?;
        let listener = bus.db.listen().await?;
        tokio::spawn(bus.clone().listen(listener));
        tokio::spawn(bus.clone().clean_payloads());
        tokio::spawn(bus.clone().liveness());
        Ok(bus)
    }

    /// Notifications in, events out to the subscribers.
    async fn listen(self: Arc<Self>, mut listener: turnpike_store::signal::Listener) {
        loop {
            let payload = match listener.recv().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "signalling bus connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let body = match payload
                .strip_prefix("p:")
                .and_then(|id| id.parse::<i64>().ok())
            {
                Some(id) => match self.db.payload(id).await {
                    Ok(Some(body)) => body,
                    _ => continue,
                },
                None => payload,
            };
            match serde_json::from_str::<BusEvent>(&body) {
                Ok(e) => {
                    let _ = self.tx.send(e);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable bus event dropped"),
            }
        }
    }

    async fn clean_payloads(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let _ = self
                .db
                .delete_payloads_before(unix_now() - PAYLOAD_KEEP_SECS)
                .await;
        }
    }

    /// Refreshes this node's row and removes the members of silent nodes.
    async fn liveness(self: Arc<Self>) {
        let mut tick = tokio::time::interval(NODE_HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.db.heartbeat(&self.node, unix_now()).await {
                tracing::warn!(error = %e, "signalling node heartbeat failed");
                continue;
            }
            match self.reap_silent_nodes().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(members = n, "removed members of silent signalling nodes");
                }
                Err(e) => tracing::warn!(error = %e, "cannot remove members of silent nodes"),
            }
        }
    }

    /// Removes the members of nodes silent for [`NODE_TIMEOUT`] (and of nodes with no liveness
    /// row at all, joined that long ago) and tells their rooms; returns how many. When several
    /// nodes reap at once, each member is removed, and announced, by exactly one of them.
    pub async fn reap_silent_nodes(&self) -> Result<usize> {
        let cutoff = unix_now() - NODE_TIMEOUT.as_secs() as i64;
        let lost = self.db.remove_silent_nodes(&self.node, cutoff).await?;
        for m in &lost {
            self.publish(&BusEvent::Left {
                room: m.room.clone(),
                peer_id: m.peer_id.clone(),
                reason: LeaveReason::NodeLost,
            })
            .await?;
        }
        Ok(lost.len())
    }

    /// Removes this node's members and liveness row (at shutdown).
    pub async fn forget_node(&self) -> Result<u64> {
        Ok(self.db.forget_node(&self.node).await?)
    }
}

fn peer(m: Member) -> Peer {
    Peer {
        id: m.peer_id,
        identity: m.identity,
        rank: m.rank,
    }
}

impl RoomBus for PgBus {
    async fn join(&self, room: &str, id: &str, identity: &str) -> Result<(Peer, Vec<Peer>)> {
        let rank = self
            .db
            .add_member(room, id, identity, &self.node, unix_now())
            .await?;
        let peer = Peer {
            id: id.into(),
            identity: identity.into(),
            rank,
        };
        Ok((peer, self.members(room).await?))
    }
    async fn leave(&self, room: &str, peer_id: &str) -> Result<bool> {
        Ok(self.db.remove_member(room, peer_id).await?)
    }
    async fn members(&self, room: &str) -> Result<Vec<Peer>> {
        Ok(self.db.members(room).await?.into_iter().map(peer).collect())
    }
    async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>> {
        Ok(self.db.rooms(prefix).await?)
    }
    async fn publish(&self, e: &BusEvent) -> Result<()> {
        let body = serde_json::to_string(e).expect("bus events serialize: string keys only");
        let payload = if body.len() <= INLINE_MAX {
            body
        } else {
            format!("p:{}", self.db.put_payload(&body, unix_now()).await?)
        };
        self.db.notify(&payload).await?;
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

/// The bus chosen at start-up.
pub enum Bus {
    InProcess(InProcessBus),
    Postgres(Arc<PgBus>),
}

macro_rules! delegate {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Bus::InProcess($b) => $e.await,
            Bus::Postgres($b) => $e.await,
        }
    };
}

impl RoomBus for Bus {
    async fn join(&self, room: &str, id: &str, identity: &str) -> Result<(Peer, Vec<Peer>)> {
        delegate!(self, b => b.join(room, id, identity))
    }
    async fn leave(&self, room: &str, peer_id: &str) -> Result<bool> {
        delegate!(self, b => b.leave(room, peer_id))
    }
    async fn members(&self, room: &str) -> Result<Vec<Peer>> {
        delegate!(self, b => b.members(room))
    }
    async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>> {
        delegate!(self, b => b.rooms(prefix))
    }
    async fn publish(&self, e: &BusEvent) -> Result<()> {
        delegate!(self, b => b.publish(e))
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        match self {
            Self::InProcess(b) => b.subscribe(),
            Self::Postgres(b) => b.subscribe(),
        }
    }
}
