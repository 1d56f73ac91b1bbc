//! Bus events delivered to this node's participants of the room: presence, messages, kicks and
//! room closes.

use std::time::Instant;

use super::Rooms;
use crate::bus_event::BusEvent;
use crate::close_code::CloseCode;
use crate::message::{LeaveReason, ServerMessage};

impl Rooms {
    /// An event from the bus (this node's own events come back this way too).
    pub fn handle_bus_event(&mut self, now: Instant, event: BusEvent) {
        let skip = match &event {
            BusEvent::Joined { peer, .. } => Some(peer.id.as_str()),
            BusEvent::Left { peer_id, .. } => Some(peer_id.as_str()),
            BusEvent::Signal { from, .. } => Some(from.as_str()),
            BusEvent::Kick { .. } | BusEvent::Close { .. } => None,
        };
        let Some(local) = self.rooms.get(event.room()) else {
            return;
        };
        let local: Vec<String> = local
            .iter()
            .filter(|p| Some(p.as_str()) != skip)
            .cloned()
            .collect();
        let mut removed = Vec::new();
        for peer_id in local {
            let Some(session) = self.by_peer.get(&peer_id).cloned() else {
                continue;
            };
            let Some(rank) = self.sessions.get(&session).map(|s| s.peer.rank) else {
                continue;
            };
            let Some(message) = message_for(&event, &peer_id, rank) else {
                continue;
            };
            match message {
                ServerMessage::Kicked => {
                    removed.push((session.clone(), CloseCode::Kicked, LeaveReason::Kicked));
                }
                ServerMessage::RoomClosed => removed.push((
                    session.clone(),
                    CloseCode::RoomClosed,
                    LeaveReason::RoomClosed,
                )),
                _ => {}
            }
            self.push(now, &session, &message);
        }
        for (session, code, reason) in removed {
            if let Some(conn) = self.sessions.get(&session).and_then(|s| s.conn) {
                self.close(now, conn, code);
            }
            self.end_session(&session, reason);
        }
        self.report_gauges();
    }
}

/// What local participant `peer_id` (of `rank`) gets for `event`, if anything.
fn message_for(event: &BusEvent, peer_id: &str, rank: u64) -> Option<ServerMessage> {
    Some(match event {
        BusEvent::Joined { peer, .. } => ServerMessage::PeerJoined {
            peer: peer.clone(),
            polite: rank > peer.rank,
        },
        BusEvent::Left {
            peer_id, reason, ..
        } => ServerMessage::PeerLeft {
            peer_id: peer_id.clone(),
            reason: *reason,
        },
        BusEvent::Signal { from, to, data, .. } => {
            if to.as_deref().is_some_and(|t| t != peer_id) {
                return None;
            }
            ServerMessage::Signal {
                from: from.clone(),
                data: data.clone(),
                broadcast: to.is_none(),
            }
        }
        BusEvent::Kick {
            peer_id: kicked, ..
        } if kicked == peer_id => ServerMessage::Kicked,
        BusEvent::Kick { .. } => return None,
        BusEvent::Close { .. } => ServerMessage::RoomClosed,
    })
}
