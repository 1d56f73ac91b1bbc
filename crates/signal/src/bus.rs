//! Room fan-out and membership behind one interface, so several nodes can share rooms:
//!
//! - [`InProcessBus`] (default): one node; membership in memory, events on a broadcast channel.
//! - [`PgBus`]: PostgreSQL `LISTEN`/`NOTIFY` on channel `turnpike_signal`, membership in table
//!   `signal_members`. Chosen over NATS because a multi-node deployment already runs
//!   PostgreSQL for the control plane: no second piece of infrastructure to operate, and
//!   membership changes and notifications share one transactional store. Payloads over
//!   `NOTIFY`'s 8000-byte limit go through table `signal_payloads` and the notification carries
//!   their id. Delivery is at-most-once per node (as `NOTIFY` is); the resume buffer covers
//!   dropped client sockets, not a lost database connection.
//!
//! Every node receives every event and delivers it to its own participants of that room.
//!
//! A node that dies without leaving (a crash, a lost network) stops refreshing its row in
//! `signal_nodes`; after [`NODE_TIMEOUT`] the surviving nodes remove its members and tell their
//! rooms those peers left (reason `node_lost`).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::message::Peer;

/// What travels between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum BusEvent {
    Joined {
        room: String,
        peer: Peer,
    },
    Left {
        room: String,
        peer_id: String,
        reason: String,
    },
    Signal {
        room: String,
        from: String,
        to: Option<String>,
        data: serde_json::Value,
    },
    Kick {
        room: String,
        peer_id: String,
    },
    Close {
        room: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
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
    pool: sqlx::PgPool,
    node: String,
    tx: broadcast::Sender<BusEvent>,
}

const CHANNEL: &str = "turnpike_signal";
/// How often a node refreshes its liveness row and looks for silent nodes.
pub const NODE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// A node silent this long is gone: its members are removed.
pub const NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// NOTIFY payloads must stay under 8000 bytes.
const INLINE_MAX: usize = 7000;

impl PgBus {
    /// Connects, removes this node's stale members (none: the id is new) and starts listening.
    pub async fn connect(url: &str, node: &str) -> Result<std::sync::Arc<Self>> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(5)
            .connect(url)
            .await?;
        let bus = std::sync::Arc::new(Self {
            pool,
            node: node.to_string(),
            tx: broadcast::channel(4096).0,
        });
        bus.heartbeat().await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&bus.pool).await?;
        listener.listen(CHANNEL).await?;
        let b = bus.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        let payload = n.payload();
                        let body = match payload
                            .strip_prefix("p:")
                            .and_then(|id| id.parse::<i64>().ok())
                        {
                            Some(id) => {
                                match sqlx::query_scalar::<_, String>(
                                    "SELECT body FROM signal_payloads WHERE id = $1",
                                )
                                .bind(id)
                                .fetch_optional(&b.pool)
                                .await
                                {
                                    Ok(Some(body)) => body,
                                    _ => continue,
                                }
                            }
                            None => payload.to_string(),
                        };
                        match serde_json::from_str::<BusEvent>(&body) {
                            Ok(e) => {
                                let _ = b.tx.send(e);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable bus event dropped"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "signalling bus connection lost; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        // Old large payloads are only needed for a moment.
        let b = bus.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let _ = sqlx::query("DELETE FROM signal_payloads WHERE at < $1")
                    .bind(turnpike_api::state::unix_now() - 120)
                    .execute(&b.pool)
                    .await;
            }
        });
        // Liveness: refresh this node's row, remove the members of silent nodes.
        let b = bus.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NODE_HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = b.heartbeat().await {
                    tracing::warn!(error = %e, "signalling node heartbeat failed");
                    continue;
                }
                match b.reap_silent_nodes().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(members = n, "removed members of silent signalling nodes");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot remove members of silent nodes"),
                }
            }
        });
        Ok(bus)
    }

    async fn heartbeat(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO signal_nodes (node, seen_at) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(&self.node)
        .bind(turnpike_api::state::unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the members of nodes silent for [`NODE_TIMEOUT`] (and of nodes with no liveness
    /// row at all, joined that long ago) and tells their rooms; returns how many. When several
    /// nodes reap at once, each member is removed, and announced, by exactly one of them.
    pub async fn reap_silent_nodes(&self) -> Result<usize> {
        use sqlx::Row;
        let cutoff = turnpike_api::state::unix_now() - NODE_TIMEOUT.as_secs() as i64;
        let rows = sqlx::query(
            "DELETE FROM signal_members m WHERE m.node <> $2 AND ( \
               m.node IN (SELECT node FROM signal_nodes WHERE seen_at < $1) \
               OR (m.joined_at < $1 AND NOT EXISTS (SELECT 1 FROM signal_nodes n WHERE n.node = m.node))) \
             RETURNING m.room, m.peer_id",
        )
        .bind(cutoff)
        .bind(&self.node)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query("DELETE FROM signal_nodes WHERE seen_at < $1 AND node <> $2")
            .bind(cutoff)
            .bind(&self.node)
            .execute(&self.pool)
            .await?;
        for r in &rows {
            self.publish(&BusEvent::Left {
                room: r.try_get("room")?,
                peer_id: r.try_get("peer_id")?,
                reason: "node_lost".into(),
            })
            .await?;
        }
        Ok(rows.len())
    }

    /// Removes this node's members and liveness row (at shutdown).
    pub async fn forget_node(&self) -> Result<u64> {
        let n = sqlx::query("DELETE FROM signal_members WHERE node = $1")
            .bind(&self.node)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM signal_nodes WHERE node = $1")
            .bind(&self.node)
            .execute(&self.pool)
            .await?;
        Ok(n)
    }
}

fn peer_row(r: &sqlx::postgres::PgRow) -> Result<Peer> {
    use sqlx::Row;
    Ok(Peer {
        id: r.try_get("peer_id")?,
        identity: r.try_get("identity")?,
        rank: r.try_get::<i64, _>("rank")? as u64,
    })
}

impl RoomBus for PgBus {
    async fn join(&self, room: &str, id: &str, identity: &str) -> Result<(Peer, Vec<Peer>)> {
        let rank: i64 = sqlx::query_scalar(
            "INSERT INTO signal_members (room, peer_id, identity, node, joined_at) VALUES ($1, $2, $3, $4, $5) RETURNING rank",
        )
        .bind(room)
        .bind(id)
        .bind(identity)
        .bind(&self.node)
        .bind(turnpike_api::state::unix_now())
        .fetch_one(&self.pool)
        .await?;
        let peer = Peer {
            id: id.into(),
            identity: identity.into(),
            rank: rank as u64,
        };
        Ok((peer, self.members(room).await?))
    }
    async fn leave(&self, room: &str, peer_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM signal_members WHERE room = $1 AND peer_id = $2")
                .bind(room)
                .bind(peer_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }
    async fn members(&self, room: &str) -> Result<Vec<Peer>> {
        let rows = sqlx::query(
            "SELECT peer_id, identity, rank FROM signal_members WHERE room = $1 ORDER BY rank",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(peer_row).collect()
    }
    async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT room, COUNT(*) AS n FROM signal_members WHERE starts_with(room, $1) GROUP BY room ORDER BY room",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("room")?, r.try_get::<i64, _>("n")? as usize)))
            .collect()
    }
    async fn publish(&self, e: &BusEvent) -> Result<()> {
        let body = serde_json::to_string(e).expect("events serialize");
        let payload = if body.len() <= INLINE_MAX {
            body
        } else {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO signal_payloads (body, at) VALUES ($1, $2) RETURNING id",
            )
            .bind(&body)
            .bind(turnpike_api::state::unix_now())
            .fetch_one(&self.pool)
            .await?;
            format!("p:{id}")
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

/// The bus chosen at start-up.
pub enum Bus {
    InProcess(InProcessBus),
    Postgres(std::sync::Arc<PgBus>),
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
