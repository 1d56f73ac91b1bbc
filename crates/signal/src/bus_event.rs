//! What travels between nodes on the room bus. Every node receives every event and delivers it
//! to its own participants of that room.

use serde::{Deserialize, Serialize};

use crate::message::{LeaveReason, Peer};

/// One room event. `room` is the tenant-scoped room key (`tenant/room`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum BusEvent {
    Joined {
        room: String,
        peer: Peer,
    },
    Left {
        room: String,
        peer_id: String,
        reason: LeaveReason,
    },
    Signal {
        room: String,
        from: String,
        /// One participant, or `None` for everyone else in the room.
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

impl BusEvent {
    /// The room the event is about.
    pub fn room(&self) -> &str {
        match self {
            Self::Joined { room, .. }
            | Self::Left { room, .. }
            | Self::Signal { room, .. }
            | Self::Kick { room, .. }
            | Self::Close { room } => room,
        }
    }
}

/// The key of a tenant's room on the bus: another tenant's room of the same name is another room.
pub fn room_key(tenant: &str, room: &str) -> String {
    format!("{tenant}/{room}")
}
