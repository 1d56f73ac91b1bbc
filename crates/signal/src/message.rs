//! The wire protocol: JSON text frames, each with `"v": 1` and a `type`.
//!
//! Client → server: `join` (first message: a join token, or a resume), `signal` (to one peer),
//! `broadcast`, `ping` (application heartbeat), `leave`.
//! Server → client: `joined`, `resumed`, `peer_joined`, `peer_left`, `signal`, `pong`, `error`,
//! `draining`, `kicked`, `room_closed`. Every server message about the room carries `seq`, the
//! session's sequence number, so a resumed session can say what it already has.
//! Payloads (`data`: SDP offers and answers, ICE candidates, chat) are opaque to the server and
//! only size-checked.

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        v: u32,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        resume: Option<Resume>,
    },
    Signal {
        v: u32,
        to: String,
        data: serde_json::Value,
    },
    Broadcast {
        v: u32,
        data: serde_json::Value,
    },
    Ping {
        v: u32,
        #[serde(default)]
        id: Option<u64>,
    },
    Leave {
        v: u32,
    },
}

impl ClientMessage {
    pub fn version(&self) -> u32 {
        match self {
            Self::Join { v, .. }
            | Self::Signal { v, .. }
            | Self::Broadcast { v, .. }
            | Self::Ping { v, .. }
            | Self::Leave { v } => *v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub session: String,
    pub token: String,
    pub last_seq: u64,
}

/// A participant as others see it. `rank` orders joins: in each pair, the participant with the
/// higher rank is the polite one (perfect negotiation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub identity: String,
    pub rank: u64,
}

/// An error frame.
pub fn error(code: &str, message: &str) -> String {
    serde_json::json!({"v": VERSION, "type": "error", "code": code, "message": message}).to_string()
}
