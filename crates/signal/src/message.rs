//! The wire protocol: JSON text frames, each with `"v": 1` and a `type`.
//!
//! Client → server ([`ClientMessage`], parsed once at the edge by [`Inbound::text`]): `join`
//! (first message: a join token, or a resume), `signal` (to one peer), `broadcast`, `ping`
//! (application heartbeat), `leave`.
//! Server → client ([`ServerMessage`], written by [`ServerFrame::encode`]): `joined`, `resumed`,
//! `peer_joined`, `peer_left`, `signal`, `pong`, `error`, `draining`, `kicked`, `room_closed`.
//! Every server message about the room carries `seq`, the session's sequence number, so a resumed
//! session can say what it already has.
//! Payloads (`data`: SDP offers and answers, ICE candidates, chat) are opaque to the server and
//! only size-checked.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

/// A client's message, without its version (checked at the edge).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// The first message: a join token, or a resume (which wins when both are given).
    Join {
        token: Option<String>,
        resume: Option<Resume>,
    },
    /// To one participant.
    Signal { to: String, data: serde_json::Value },
    /// To every other participant.
    Broadcast { data: serde_json::Value },
    /// Answered by `pong` with the same `id`.
    Ping { id: Option<u64> },
    /// Ends the session.
    Leave,
}

/// What a client presents to take its session over on a new socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub session: String,
    pub token: String,
    /// The last sequence number the client processed.
    pub last_seq: u64,
}

/// The frame as it travels: every variant carries the version.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
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

impl Wire {
    fn into_message(self) -> (u32, ClientMessage) {
        match self {
            Self::Join { v, token, resume } => (v, ClientMessage::Join { token, resume }),
            Self::Signal { v, to, data } => (v, ClientMessage::Signal { to, data }),
            Self::Broadcast { v, data } => (v, ClientMessage::Broadcast { data }),
            Self::Ping { v, id } => (v, ClientMessage::Ping { id }),
            Self::Leave { v } => (v, ClientMessage::Leave),
        }
    }
}

/// Why a text frame is not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMessage {
    /// Not JSON (`bad_json`); the parser's words.
    Json(String),
    /// JSON, but none of the messages (`bad_message`); the parser's words.
    Shape(String),
    /// A well-formed message of another version (`unsupported_version`); `join` says whether it
    /// was a join.
    Version { join: bool },
}

/// One frame from a client, as the edge read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A text frame of `len` bytes, parsed.
    Text {
        len: usize,
        message: Result<ClientMessage, BadMessage>,
    },
    /// A binary frame (never accepted).
    Binary,
    /// A WebSocket ping or pong: the client is alive.
    Alive,
}

impl Inbound {
    /// Parses a text frame (once, here at the edge).
    pub fn text(text: &str) -> Self {
        let message = match serde_json::from_str::<Wire>(text) {
            Ok(w) => match w.into_message() {
                (VERSION, m) => Ok(m),
                (_, m) => Err(BadMessage::Version {
                    join: matches!(m, ClientMessage::Join { .. }),
                }),
            },
            Err(e) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() => {
                Err(BadMessage::Json(e.to_string()))
            }
            Err(e) => Err(BadMessage::Shape(e.to_string())),
        };
        Self::Text {
            len: text.len(),
            message,
        }
    }
}

/// A participant as others see it. `rank` orders joins: in each pair, the participant with the
/// higher rank is the polite one (perfect negotiation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub identity: String,
    pub rank: u64,
}

/// Another participant in `joined`, with whether the receiver is the polite one towards it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Participant {
    #[serde(flatten)]
    pub peer: Peer,
    pub polite: bool,
}

/// Why a participant left (`peer_left.reason`, and on the bus).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It sent `leave`.
    Left,
    /// Its socket dropped and it did not resume within the grace period.
    Gone,
    /// The operator kicked it.
    Kicked,
    /// The operator closed the room.
    RoomClosed,
    /// Its node stopped refreshing its liveness row.
    NodeLost,
}

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadMessage,
    UnsupportedVersion,
    TooLarge,
    RateLimited,
    Forbidden,
    BadToken,
    TokenExpired,
    OriginNotAllowed,
    RoomFull,
    TenantLimit,
    /// The room service (the bus) failed during a join: retry.
    Unavailable,
    BadResume,
    HandshakeTimeout,
    IdleTimeout,
    AlreadyJoined,
}

/// A server-to-client message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        session: String,
        resume_token: String,
        peer: Peer,
        room: String,
        participants: Vec<Participant>,
        /// As the driver minted them (opaque here).
        ice_servers: serde_json::Value,
        resume_grace_ms: u64,
        max_message_bytes: usize,
    },
    /// Not numbered: tells where the replay starts.
    Resumed {
        peer: Peer,
        room: String,
        replayed: usize,
        gap: bool,
    },
    PeerJoined {
        peer: Peer,
        polite: bool,
    },
    PeerLeft {
        peer_id: String,
        reason: LeaveReason,
    },
    Signal {
        from: String,
        data: serde_json::Value,
        broadcast: bool,
    },
    Pong {
        id: Option<u64>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Draining {
        reconnect: bool,
        /// Where to reconnect: another healthy node's signalling URL, when the fleet knows one
        /// (absent: reconnect to the same address, which a load balancer sends elsewhere).
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    Kicked,
    RoomClosed,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// A server message with its envelope: the version, and `seq` for room messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerFrame {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerFrame {
    /// The JSON text of `message` (numbered `seq` when it is about the room).
    pub fn encode(seq: Option<u64>, message: &ServerMessage) -> Arc<str> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            v: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            seq: Option<u64>,
            #[serde(flatten)]
            message: &'a ServerMessage,
        }
        serde_json::to_string(&Borrowed {
            v: VERSION,
            seq,
            message,
        })
        .expect("server messages serialize: string keys, no failing Serialize impl")
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Result<ClientMessage, BadMessage> {
        match Inbound::text(s) {
            Inbound::Text { len, message } => {
                assert_eq!(len, s.len());
                message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_messages_parse_once_with_their_errors() {
        assert_eq!(
            parsed(r#"{"v":1,"type":"join","token":"t"}"#),
            Ok(ClientMessage::Join {
                token: Some("t".into()),
                resume: None
            })
        );
        assert_eq!(
            parsed(r#"{"v":1,"type":"join","resume":{"session":"s","token":"r","last_seq":4}}"#),
            Ok(ClientMessage::Join {
                token: None,
                resume: Some(Resume {
                    session: "s".into(),
                    token: "r".into(),
                    last_seq: 4
                })
            })
        );
        assert_eq!(
            parsed(r#"{"v":1,"type":"ping"}"#),
            Ok(ClientMessage::Ping { id: None })
        );
        assert_eq!(
            parsed(r#"{"v":1,"type":"leave"}"#),
            Ok(ClientMessage::Leave)
        );
        assert!(matches!(parsed("{not json"), Err(BadMessage::Json(_))));
        assert!(matches!(
            parsed(r#"{"v":1,"type":"dance"}"#),
            Err(BadMessage::Shape(_))
        ));
        assert!(matches!(
            parsed(r#"{"v":1,"type":"signal","to":"x"}"#),
            Err(BadMessage::Shape(_))
        ));
        assert!(matches!(
            parsed(r#"{"v":1,"type":"ping","extra":1}"#),
            Err(BadMessage::Shape(_))
        ));
        assert_eq!(
            parsed(r#"{"v":2,"type":"ping"}"#),
            Err(BadMessage::Version { join: false })
        );
        assert_eq!(
            parsed(r#"{"v":2,"type":"join"}"#),
            Err(BadMessage::Version { join: true })
        );
    }

    #[test]
    fn server_frames_carry_version_type_and_seq() {
        let text = ServerFrame::encode(
            Some(3),
            &ServerMessage::PeerLeft {
                peer_id: "p_1".into(),
                reason: LeaveReason::NodeLost,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"v": 1, "seq": 3, "type": "peer_left", "peer_id": "p_1", "reason": "node_lost"})
        );
        let text = ServerFrame::encode(None, &ServerMessage::Pong { id: None });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"v": 1, "type": "pong", "id": null}));
        let text = ServerFrame::encode(Some(1), &ServerMessage::Kicked);
        let back: ServerFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            ServerFrame {
                v: 1,
                seq: Some(1),
                message: ServerMessage::Kicked
            }
        );
    }
}
