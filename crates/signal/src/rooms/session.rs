//! A participant's session on this node. It outlives its socket for the resume grace period:
//! its room messages keep being numbered and buffered (the last `resume_buffer`), so a new
//! socket presenting the session id, the resume token and the last sequence number it saw gets
//! the rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::output::ConnId;
use crate::message::{Peer, ServerFrame, ServerMessage};

#[derive(Debug)]
pub(super) struct Session {
    /// SHA-256 of the resume token: the token itself is not kept.
    resume_hash: [u8; 32],
    pub(super) peer: Peer,
    pub(super) tenant: String,
    /// The bus key (`tenant/room`).
    pub(super) room_key: String,
    /// The room's name as the tenant knows it.
    pub(super) room: String,
    pub(super) can_send: bool,
    pub(super) can_broadcast: bool,
    buffer: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
    /// The socket it is attached to, if any.
    pub(super) conn: Option<ConnId>,
    /// When it lost its socket (the grace period runs from here).
    pub(super) detached_at: Option<Instant>,
}

/// What a resume gets back.
pub(super) struct Replay {
    /// Buffered messages after the client's last sequence number.
    pub(super) missed: Vec<Arc<str>>,
    /// Some messages after that number were already dropped from the buffer.
    pub(super) gap: bool,
}

/// Who a new session is.
pub(super) struct NewSession {
    pub(super) resume_token: String,
    pub(super) peer: Peer,
    pub(super) tenant: String,
    pub(super) room_key: String,
    pub(super) room: String,
    pub(super) can_send: bool,
    pub(super) can_broadcast: bool,
    pub(super) conn: ConnId,
}

impl Session {
    pub(super) fn new(n: NewSession) -> Self {
        Self {
            resume_hash: hash(&n.resume_token),
            peer: n.peer,
            tenant: n.tenant,
            room_key: n.room_key,
            room: n.room,
            can_send: n.can_send,
            can_broadcast: n.can_broadcast,
            buffer: VecDeque::new(),
            next_seq: 1,
            conn: Some(n.conn),
            detached_at: None,
        }
    }

    /// Compares in constant time.
    pub(super) fn resume_token_matches(&self, token: &str) -> bool {
        hash(token)
            .iter()
            .zip(self.resume_hash.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
    }

    /// Numbers a room message, keeps it for a resume (the last `keep`) and returns its text.
    pub(super) fn number(&mut self, message: &ServerMessage, keep: usize) -> Arc<str> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let text = ServerFrame::encode(Some(seq), message);
        self.buffer.push_back((seq, text.clone()));
        while self.buffer.len() > keep {
            self.buffer.pop_front();
        }
        text
    }

    /// The buffered messages after `last_seq`.
    pub(super) fn replay_after(&self, last_seq: u64) -> Replay {
        Replay {
            gap: self
                .buffer
                .front()
                .is_some_and(|(seq, _)| *seq > last_seq.saturating_add(1)),
            missed: self
                .buffer
                .iter()
                .filter(|(seq, _)| *seq > last_seq)
                .map(|(_, m)| m.clone())
                .collect(),
        }
    }
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}
