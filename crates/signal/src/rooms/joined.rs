//! A joined socket's frames: the size limit, the rate limit, then the message.

use std::time::Instant;

use super::conn::ConnState;
use super::output::{ConnId, DropReason, Metric, Output};
use super::Rooms;
use crate::bus_event::BusEvent;
use crate::close_code::CloseCode;
use crate::message::{BadMessage, ClientMessage, ErrorCode, Inbound, LeaveReason, ServerMessage};

impl Rooms {
    pub(super) fn joined_frame(&mut self, now: Instant, conn: ConnId, inbound: Inbound) {
        let Some(ConnState::Joined(a)) = self.conns.get_mut(&conn).map(|c| &mut c.state) else {
            return;
        };
        a.last_seen = now;
        let (len, message) = match inbound {
            Inbound::Alive => return,
            Inbound::Binary => {
                self.error(
                    conn,
                    ErrorCode::BadMessage,
                    "binary frames are not accepted; send JSON text",
                );
                return;
            }
            Inbound::Text { len, message } => (len, message),
        };
        if len > self.cfg.max_message_bytes {
            self.error(
                conn,
                ErrorCode::TooLarge,
                "message larger than max_message_bytes",
            );
            return;
        }
        if !a.rate.allow(now, len) {
            self.out(Output::Metric(Metric::Drop(DropReason::RateLimited)));
            self.error(
                conn,
                ErrorCode::RateLimited,
                "too many messages or bytes per second; message dropped",
            );
            return;
        }
        let session = a.session.clone();
        match message {
            Err(BadMessage::Version { .. }) => self.error(
                conn,
                ErrorCode::UnsupportedVersion,
                "this server speaks version 1",
            ),
            Err(BadMessage::Json(e)) => self.error(conn, ErrorCode::BadJson, e),
            Err(BadMessage::Shape(e)) => self.error(conn, ErrorCode::BadMessage, e),
            Ok(ClientMessage::Signal { to, data }) => self.forward(conn, &session, Some(to), data),
            Ok(ClientMessage::Broadcast { data }) => self.forward(conn, &session, None, data),
            Ok(ClientMessage::Ping { id }) => self.send(conn, &ServerMessage::Pong { id }),
            Ok(ClientMessage::Leave) => {
                self.end_session(&session, LeaveReason::Left);
                self.close(now, conn, CloseCode::Bye);
            }
            Ok(ClientMessage::Join { .. }) => {
                self.error(conn, ErrorCode::AlreadyJoined, "this socket has joined");
            }
        }
    }

    /// Routes a client's message to the room through the bus (to one peer, or to all).
    fn forward(
        &mut self,
        conn: ConnId,
        session: &str,
        to: Option<String>,
        data: serde_json::Value,
    ) {
        let Some(s) = self.sessions.get(session) else {
            self.error(conn, ErrorCode::Forbidden, "not joined");
            return;
        };
        let refusal = match &to {
            Some(_) if !s.can_send => Some("this token may not send"),
            None if !s.can_broadcast => Some("this token may not broadcast"),
            _ => None,
        };
        if let Some(refusal) = refusal {
            self.error(conn, ErrorCode::Forbidden, refusal);
            return;
        }
        let event = BusEvent::Signal {
            room: s.room_key.clone(),
            from: s.peer.id.clone(),
            to,
            data,
        };
        self.out(Output::Metric(Metric::MessageIn));
        self.out(Output::Publish {
            event,
            failure_to: Some(conn),
        });
    }

    /// A client's message could not be published ([`Output::Publish`] with `failure_to`).
    pub fn handle_publish_failed(&mut self, _now: Instant, conn: ConnId) {
        self.error(conn, ErrorCode::Forbidden, "bus unavailable");
    }
}
