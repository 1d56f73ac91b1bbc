//! The rooms of one node as a sans-IO state machine: connections from the upgrade to their end
//! (handshake, join, resume), sessions that outlive their sockets for the grace period, local
//! participants per room, every per-connection limit, delivery of bus events, kicks, room
//! closes and draining.
//!
//! No I/O, no tasks, no clock: the driver passes `now` into every `handle_*` method, then drains
//! [`Rooms::poll_output`] (in order) and sleeps until [`Rooms::poll_timeout`], where it calls
//! [`Rooms::handle_timeout`]. Outputs that need the network (the bus, the token's tenant) are
//! requests; the driver carries them out and brings the answer back through the `handle_*`
//! method each one names. A test drives the whole thing faster than real time.
//!
//! The life of a connection: [`Rooms::handle_connect`] (per-address cap, draining) →
//! handshake (the first frame must be a join, within `handshake_timeout`) → a token join
//! ([`Output::Authorize`] → [`Rooms::handle_join`]: Origin allow-list, per-tenant cap →
//! [`Output::FetchRoom`] → [`Rooms::handle_room`]: room size → [`Output::JoinRoom`] →
//! [`Rooms::handle_joined`]) or a resume → messages (size, rate, then the message) → the end
//! ([`Rooms::handle_disconnect`], or a close the rooms ask for).
//!
//! A consumer whose queue (frames sent and not yet reported written with
//! [`Rooms::handle_written`]) reaches `queue` when a room message comes is cut off; its session
//! may resume. Others are unaffected.

mod config;
mod conn;
mod deliver;
mod handshake;
mod joined;
mod output;
mod rate;
mod session;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use turnpike_proto::timer::DeadlineQueue;

pub use config::SignalConfig;
pub use output::{
    BusUnavailable, ConnId, ConnectRefused, DropReason, JoinRequest, Membership, Metric, Output,
    RoomInfo, TokenRefused,
};

use crate::bus_event::BusEvent;
use crate::close_code::CloseCode;
use crate::message::{ErrorCode, LeaveReason, ServerFrame, ServerMessage};
use conn::{Conn, ConnState};
use session::Session;

/// What a deadline is for. Entries are not removed early: each is checked when it comes due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The connection must have sent its join.
    Handshake(ConnId),
    /// The connection must have sent something since `idle_timeout` ago.
    Idle(ConnId),
    /// The detached session's grace period is over.
    Grace(String),
}

/// The rooms of one node.
pub struct Rooms {
    cfg: SignalConfig,
    rng: StdRng,
    next_conn: u64,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<String, Session>,
    /// Session id of each local peer id.
    by_peer: HashMap<String, String>,
    /// Local peer ids of each room key.
    rooms: BTreeMap<String, BTreeSet<String>>,
    /// Sessions (and joins in progress) per tenant.
    per_tenant: HashMap<String, usize>,
    /// Connections per client address.
    per_ip: HashMap<IpAddr, usize>,
    /// Joins whose connection ended while the bus was adding them: undone when the answer comes.
    orphans: HashMap<ConnId, (String, String)>,
    /// Sessions attached to a connection.
    attached: usize,
    /// The gauges last reported.
    gauges: Option<(usize, usize)>,
    draining: bool,
    timers: DeadlineQueue<Timer>,
    outputs: VecDeque<Output>,
}

impl Rooms {
    /// `seed` seeds the generator of session ids, peer ids and resume tokens (from the OS in
    /// production: resume tokens are credentials; fixed in tests).
    pub fn new(cfg: SignalConfig, seed: [u8; 32]) -> Self {
        let mut rooms = Self {
            cfg,
            rng: StdRng::from_seed(seed),
            next_conn: 1,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            rooms: BTreeMap::new(),
            per_tenant: HashMap::new(),
            per_ip: HashMap::new(),
            orphans: HashMap::new(),
            attached: 0,
            gauges: None,
            draining: false,
            timers: DeadlineQueue::default(),
            outputs: VecDeque::new(),
        };
        rooms.report_gauges();
        rooms
    }

    pub fn config(&self) -> &SignalConfig {
        &self.cfg
    }

    /// The next thing to do. Poll until `None` after every `handle_*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next (it may find nothing due: deadlines are
    /// checked lazily). Ask again after every `handle_*` call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Whether [`Self::handle_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Sessions attached to a socket, and rooms with a participant, on this node.
    pub fn local_counts(&self) -> (usize, usize) {
        (self.attached, self.rooms.len())
    }

    /// A socket's writer wrote `frames` of the frames sent to it.
    pub fn handle_written(&mut self, conn: ConnId, frames: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued = c.queued.saturating_sub(frames);
        }
    }

    /// The socket ended (closed by either side, failed, or its writer gave up). A joined
    /// session without `leave` stays for the grace period.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        if let Some(t) = c.state.reserved_tenant() {
            let t = t.to_string();
            self.release_tenant(&t);
        }
        match c.state {
            ConnState::Joined(a) => self.detach(now, &a.session, conn),
            ConnState::Joining {
                pending, peer_id, ..
            } => {
                self.orphans.insert(conn, (pending.room_key, peer_id));
            }
            _ => {}
        }
        self.report_gauges();
    }

    /// Tells every attached client to reconnect elsewhere (to `url_for` its tenant: another
    /// node's signalling endpoint the tenant may use, if any) and closes their sockets;
    /// refuses new connections from now on (SIGTERM).
    pub fn handle_drain(&mut self, now: Instant, url_for: &dyn Fn(&str) -> Option<String>) {
        self.draining = true;
        let conns: BTreeMap<ConnId, String> = self
            .sessions
            .values()
            .filter_map(|s| s.conn.map(|c| (c, s.tenant.clone())))
            .collect();
        for (conn, tenant) in conns {
            let msg = ServerMessage::Draining {
                reconnect: true,
                url: url_for(&tenant),
            };
            self.send(conn, &msg);
            self.close(now, conn, CloseCode::Draining);
        }
        self.report_gauges();
    }

    /// The operator suspended `tenants`: each of their participants on this node gets an
    /// error (`forbidden`), its socket is closed (4001) and it leaves its room (the others hear
    /// `kicked`); a detached session ends too, so it cannot resume.
    pub fn handle_suspended(&mut self, now: Instant, tenants: &HashSet<String>) {
        let ended: Vec<(String, Option<ConnId>)> = self
            .sessions
            .iter()
            .filter(|(_, s)| tenants.contains(&s.tenant))
            .map(|(id, s)| (id.clone(), s.conn))
            .collect();
        for (session, conn) in ended {
            if let Some(conn) = conn {
                self.error(conn, ErrorCode::Forbidden, "the tenant is suspended");
                self.close(now, conn, CloseCode::Kicked);
            }
            self.end_session(&session, LeaveReason::Kicked);
        }
        self.report_gauges();
    }

    /// Handshake and idle timeouts, and the end of grace periods, due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Handshake(conn) => {
                    if matches!(self.state(conn), Some(ConnState::Handshake)) {
                        self.error(
                            conn,
                            ErrorCode::HandshakeTimeout,
                            "send `join` first, within the handshake timeout",
                        );
                        self.close(now, conn, CloseCode::HandshakeTimeout);
                    }
                }
                Timer::Idle(conn) => {
                    let Some(ConnState::Joined(a)) = self.state(conn) else {
                        continue;
                    };
                    let due = a.last_seen + self.cfg.idle_timeout;
                    if due > now {
                        self.timers.push(due, Timer::Idle(conn));
                        continue;
                    }
                    self.error(
                        conn,
                        ErrorCode::IdleTimeout,
                        "no message or pong within the idle timeout",
                    );
                    self.close(now, conn, CloseCode::IdleTimeout);
                }
                Timer::Grace(session) => {
                    let grace = self.cfg.resume_grace;
                    let over = self.sessions.get(&session).is_some_and(|s| {
                        s.conn.is_none() && s.detached_at.is_some_and(|t| t + grace <= now)
                    });
                    if over {
                        self.end_session(&session, LeaveReason::Gone);
                    }
                }
            }
        }
        self.report_gauges();
    }

    fn state(&self, conn: ConnId) -> Option<&ConnState> {
        self.conns.get(&conn).map(|c| &c.state)
    }

    fn out(&mut self, o: Output) {
        self.outputs.push_back(o);
    }

    /// Sends a frame that is not about the room (not numbered, not kept): dropped when the
    /// connection's queue is full.
    fn send(&mut self, conn: ConnId, message: &ServerMessage) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.queued >= self.cfg.queue {
            return;
        }
        c.queued += 1;
        let text = ServerFrame::encode(None, message);
        self.out(Output::Send { conn, text });
    }

    /// Sends a frame whatever the queue holds (a resume's replay, bounded by `resume_buffer`).
    fn send_text(&mut self, conn: ConnId, text: Arc<str>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued += 1;
            self.out(Output::Send { conn, text });
        }
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.send(conn, &ServerMessage::error(code, message));
    }

    /// Numbers a room message for a session, keeps it for a resume and sends it if the session
    /// has a socket; a socket whose queue is full is cut off (its session detached).
    fn push(&mut self, now: Instant, session: &str, message: &ServerMessage) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let text = s.number(message, self.cfg.resume_buffer);
        let Some(conn) = s.conn else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.queued >= self.cfg.queue {
            c.state = ConnState::Closing;
            self.out(Output::Metric(Metric::Drop(DropReason::SlowConsumer)));
            self.out(Output::Abort { conn });
            self.detach(now, session, conn);
            return;
        }
        c.queued += 1;
        self.out(Output::Send { conn, text });
        self.out(Output::Metric(Metric::MessageOut));
    }

    /// Closes a connection: its session (if any) is detached, a join in progress is dropped.
    fn close(&mut self, now: Instant, conn: ConnId, code: CloseCode) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let state = std::mem::replace(&mut c.state, ConnState::Closing);
        self.out(Output::Close { conn, code });
        if let Some(t) = state.reserved_tenant() {
            let t = t.to_string();
            self.release_tenant(&t);
        }
        if let ConnState::Joined(a) = state {
            self.detach(now, &a.session, conn);
        }
    }

    /// The session loses its socket `conn` (if that is still its socket): the grace period
    /// starts.
    fn detach(&mut self, now: Instant, session: &str, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if s.conn != Some(conn) {
            return;
        }
        s.conn = None;
        s.detached_at = Some(now);
        self.attached -= 1;
        self.timers.push(
            now + self.cfg.resume_grace,
            Timer::Grace(session.to_string()),
        );
    }

    /// Ends a session for good and tells the room.
    fn end_session(&mut self, session: &str, reason: LeaveReason) {
        let Some(s) = self.sessions.remove(session) else {
            return;
        };
        self.by_peer.remove(&s.peer.id);
        if let Some(r) = self.rooms.get_mut(&s.room_key) {
            r.remove(&s.peer.id);
            if r.is_empty() {
                self.rooms.remove(&s.room_key);
            }
        }
        self.release_tenant(&s.tenant);
        if let Some(conn) = s.conn {
            self.attached -= 1;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.state = ConnState::Closing;
            }
        }
        self.out(Output::LeaveRoom {
            room: s.room_key.clone(),
            peer_id: s.peer.id.clone(),
        });
        self.out(Output::Publish {
            event: BusEvent::Left {
                room: s.room_key,
                peer_id: s.peer.id,
                reason,
            },
            failure_to: None,
        });
    }

    fn release_tenant(&mut self, tenant: &str) {
        if let Some(n) = self.per_tenant.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(tenant);
            }
        }
    }

    fn report_gauges(&mut self) {
        let now = self.local_counts();
        if self.gauges != Some(now) {
            self.gauges = Some(now);
            self.out(Output::Metric(Metric::Gauges {
                connections: now.0,
                rooms: now.1,
            }));
        }
    }

    fn random_bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill_bytes(&mut b);
        b
    }

    fn random_hex<const N: usize>(&mut self) -> String {
        self.random_bytes::<N>()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    fn random_token<const N: usize>(&mut self) -> String {
        B64.encode(self.random_bytes::<N>())
    }
}

/// The tenant's Origin allow-list: empty allows any origin (and none).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    allowed.is_empty() || origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}
