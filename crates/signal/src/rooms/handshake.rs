//! From the upgrade to a session: the per-address cap, the first frame (a join within the
//! handshake timeout), a token join through its three answers from the driver, or a resume.

use std::time::Instant;

use super::conn::{Attached, Conn, ConnState, Pending};
use super::output::{
    BusUnavailable, ConnId, ConnectRefused, JoinRequest, Membership, Metric, Output, RoomInfo,
    TokenRefused,
};
use super::rate::Rate;
use super::session::{NewSession, Session};
use super::{origin_allowed, Rooms, Timer};
use crate::bus_event::{room_key, BusEvent};
use crate::close_code::CloseCode;
use crate::message::{
    BadMessage, ClientMessage, ErrorCode, Inbound, Participant, Resume, ServerMessage,
};

impl Rooms {
    /// A client asks to upgrade from `ip` with `origin`: refused while draining or over the
    /// per-address cap; otherwise the join must come within the handshake timeout.
    pub fn handle_connect(
        &mut self,
        now: Instant,
        ip: std::net::IpAddr,
        origin: Option<String>,
    ) -> Result<ConnId, ConnectRefused> {
        if self.draining {
            return Err(ConnectRefused::Draining);
        }
        let n = self.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= self.cfg.max_conns_per_ip {
            return Err(ConnectRefused::TooManyFromIp);
        }
        self.per_ip.insert(ip, n + 1);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                ip,
                origin,
                queued: 0,
                state: ConnState::Handshake,
            },
        );
        self.timers
            .push(now + self.cfg.handshake_timeout, Timer::Handshake(conn));
        Ok(conn)
    }

    /// A frame from the client, parsed at the edge.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, inbound: Inbound) {
        match self.state(conn) {
            Some(ConnState::Handshake) => self.first_frame(now, conn, inbound),
            Some(ConnState::Joined(_)) => self.joined_frame(now, conn, inbound),
            // While a join is in progress the driver reads nothing more; after a close, frames
            // are ignored.
            _ => {}
        }
        self.report_gauges();
    }

    fn first_frame(&mut self, now: Instant, conn: ConnId, inbound: Inbound) {
        let Inbound::Text { message, .. } = inbound else {
            self.close(now, conn, CloseCode::ExpectedJoin);
            return;
        };
        match message {
            Ok(ClientMessage::Join {
                resume: Some(r), ..
            }) => self.resume(now, conn, r),
            Ok(ClientMessage::Join {
                token: Some(token),
                resume: None,
            }) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state = ConnState::Authorizing;
                }
                self.out(Output::Authorize { conn, token });
            }
            Ok(ClientMessage::Join {
                token: None,
                resume: None,
            }) => {
                self.error(
                    conn,
                    ErrorCode::BadMessage,
                    "join needs `token` or `resume`",
                );
                self.close(now, conn, CloseCode::ExpectedJoin);
            }
            Err(BadMessage::Version { join: true }) => {
                self.error(
                    conn,
                    ErrorCode::UnsupportedVersion,
                    "this server speaks version 1",
                );
                self.close(now, conn, CloseCode::UnsupportedVersion);
            }
            Ok(_) | Err(_) => {
                self.error(
                    conn,
                    ErrorCode::BadMessage,
                    "the first message must be {\"v\":1,\"type\":\"join\",...}",
                );
                self.close(now, conn, CloseCode::ExpectedJoin);
            }
        }
    }

    /// Reattaches a session to this socket and replays what it missed; the old socket, if any,
    /// is closed.
    fn resume(&mut self, now: Instant, conn: ConnId, r: Resume) {
        let Some(s) = self
            .sessions
            .get_mut(&r.session)
            .filter(|s| s.resume_token_matches(&r.token))
        else {
            self.error(
                conn,
                ErrorCode::BadResume,
                "unknown or expired session, or wrong resume token: join again",
            );
            self.close(now, conn, CloseCode::CannotResume);
            return;
        };
        let old = s.conn.replace(conn);
        s.detached_at = None;
        let replay = s.replay_after(r.last_seq);
        let resumed = ServerMessage::Resumed {
            peer: s.peer.clone(),
            room: s.room.clone(),
            replayed: replay.missed.len(),
            gap: replay.gap,
        };
        match old {
            Some(old) => {
                if let Some(c) = self.conns.get_mut(&old) {
                    c.state = ConnState::Closing;
                }
                self.out(Output::Close {
                    conn: old,
                    code: CloseCode::ResumedElsewhere,
                });
            }
            None => self.attached += 1,
        }
        self.attach(now, conn, r.session);
        self.send(conn, &resumed);
        for text in replay.missed {
            self.send_text(conn, text);
        }
        self.out(Output::Metric(Metric::Resume));
    }

    fn attach(&mut self, now: Instant, conn: ConnId, session: String) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Joined(Attached {
                session,
                rate: Rate::new(&self.cfg, now),
                last_seen: now,
            });
            self.timers
                .push(now + self.cfg.idle_timeout, Timer::Idle(conn));
        }
    }

    /// The answer to [`Output::Authorize`]: the token's grant, or why it was refused.
    pub fn handle_join(
        &mut self,
        now: Instant,
        conn: ConnId,
        grant: Result<JoinRequest, TokenRefused>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !matches!(c.state, ConnState::Authorizing) {
            return;
        }
        let origin_ok = grant
            .as_ref()
            .is_ok_and(|g| origin_allowed(&g.allowed_origins, c.origin.as_deref()));
        match grant {
            Err(refused) => {
                let (code, message) = match refused {
                    TokenRefused::Malformed => (ErrorCode::BadToken, "the join token is malformed"),
                    TokenRefused::Invalid => (ErrorCode::BadToken, "the join token is not valid"),
                    TokenRefused::Expired => {
                        (ErrorCode::TokenExpired, "the join token has expired")
                    }
                    TokenRefused::Suspended => {
                        (ErrorCode::Forbidden, "the token's tenant is suspended")
                    }
                };
                self.error(conn, code, message);
                self.close(now, conn, CloseCode::BadToken);
            }
            Ok(_) if !origin_ok => {
                self.error(
                    conn,
                    ErrorCode::OriginNotAllowed,
                    "this Origin is not on the tenant's allow-list",
                );
                self.close(now, conn, CloseCode::OriginNotAllowed);
            }
            Ok(JoinRequest { claims, .. }) => {
                let n = self.per_tenant.get(&claims.tid).copied().unwrap_or(0);
                if n >= self.cfg.max_conns_per_tenant {
                    self.error(
                        conn,
                        ErrorCode::TenantLimit,
                        "the tenant is at its connection limit",
                    );
                    self.close(now, conn, CloseCode::CannotJoin);
                } else {
                    // The slot is taken now, so joins in flight cannot overshoot the cap.
                    self.per_tenant.insert(claims.tid.clone(), n + 1);
                    let pending = Pending {
                        room_key: room_key(&claims.tid, &claims.room),
                        tenant: claims.tid,
                        room: claims.room,
                        identity: claims.sub,
                        can_send: claims.send,
                        can_broadcast: claims.broadcast,
                    };
                    let client = self
                        .conns
                        .get(&conn)
                        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.ip);
                    self.out(Output::FetchRoom {
                        conn,
                        room: pending.room_key.clone(),
                        tenant: pending.tenant.clone(),
                        identity: pending.identity.clone(),
                        client,
                    });
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.state = ConnState::Admitting(pending);
                    }
                }
            }
        }
        self.report_gauges();
    }

    /// The answer to [`Output::FetchRoom`].
    pub fn handle_room(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: Result<RoomInfo, BusUnavailable>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !matches!(c.state, ConnState::Admitting(_)) {
            return;
        }
        match room {
            Err(BusUnavailable) => self.unavailable(now, conn),
            Ok(info) if info.members >= self.cfg.max_room_size => {
                self.error(conn, ErrorCode::RoomFull, "the room is at its size limit");
                self.close(now, conn, CloseCode::CannotJoin);
            }
            Ok(info) => {
                let peer_id = format!("p_{}", self.random_hex::<8>());
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let ConnState::Admitting(pending) =
                    std::mem::replace(&mut c.state, ConnState::Closing)
                else {
                    return;
                };
                let ask = Output::JoinRoom {
                    conn,
                    room: pending.room_key.clone(),
                    peer_id: peer_id.clone(),
                    identity: pending.identity.clone(),
                };
                c.state = ConnState::Joining {
                    pending,
                    peer_id,
                    ice_servers: info.ice_servers,
                };
                self.out(ask);
            }
        }
        self.report_gauges();
    }

    /// The answer to [`Output::JoinRoom`]: the session starts (or the join is refused, or undone
    /// if its socket is gone).
    pub fn handle_joined(
        &mut self,
        now: Instant,
        conn: ConnId,
        membership: Result<Membership, BusUnavailable>,
    ) {
        if let Some((room, peer_id)) = self.orphans.remove(&conn) {
            // The socket went while the bus was adding it: nobody was told, undo.
            if membership.is_ok() {
                self.out(Output::LeaveRoom { room, peer_id });
            }
            return;
        }
        if !matches!(self.state(conn), Some(ConnState::Joining { .. })) {
            return;
        }
        let Ok(Membership { peer, members }) = membership else {
            self.unavailable(now, conn);
            self.report_gauges();
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnState::Joining {
            pending,
            ice_servers,
            ..
        } = std::mem::replace(&mut c.state, ConnState::Closing)
        {
            self.start_session(
                now,
                conn,
                pending,
                ice_servers,
                Membership { peer, members },
            );
        }
        self.report_gauges();
    }

    /// A new session on `conn`: `joined` is its first message, and the room hears of it.
    fn start_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        pending: Pending,
        ice_servers: serde_json::Value,
        Membership { peer, members }: Membership,
    ) {
        let session = format!("s_{}", self.random_hex::<12>());
        let resume_token = self.random_token::<24>();
        let participants = members
            .into_iter()
            .filter(|p| p.id != peer.id)
            .map(|p| Participant {
                polite: peer.rank > p.rank,
                peer: p,
            })
            .collect();
        self.sessions.insert(
            session.clone(),
            Session::new(NewSession {
                resume_token: resume_token.clone(),
                peer: peer.clone(),
                tenant: pending.tenant,
                room_key: pending.room_key.clone(),
                room: pending.room.clone(),
                can_send: pending.can_send,
                can_broadcast: pending.can_broadcast,
                conn,
            }),
        );
        self.by_peer.insert(peer.id.clone(), session.clone());
        self.rooms
            .entry(pending.room_key.clone())
            .or_default()
            .insert(peer.id.clone());
        self.attached += 1;
        self.attach(now, conn, session.clone());
        let joined = ServerMessage::Joined {
            session: session.clone(),
            resume_token,
            peer: peer.clone(),
            room: pending.room,
            participants,
            ice_servers,
            resume_grace_ms: u64::try_from(self.cfg.resume_grace.as_millis()).unwrap_or(u64::MAX),
            max_message_bytes: self.cfg.max_message_bytes,
        };
        self.push(now, &session, &joined);
        self.out(Output::Publish {
            event: BusEvent::Joined {
                room: pending.room_key,
                peer,
            },
            failure_to: None,
        });
    }

    fn unavailable(&mut self, now: Instant, conn: ConnId) {
        self.error(
            conn,
            ErrorCode::Unavailable,
            "the room service is unavailable; retry",
        );
        self.close(now, conn, CloseCode::CannotJoin);
    }
}
