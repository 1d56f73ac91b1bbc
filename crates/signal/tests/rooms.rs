//! The rooms state machine driven with a virtual clock and a bus simulated in memory: every
//! behaviour of docs/signalling.md that does not need a socket, with no sockets and no sleeps.
#![allow(clippy::disallowed_methods)] // the test driver starts the virtual clock from a real instant

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use turnpike_signal::bus_event::{room_key, BusEvent};
use turnpike_signal::close_code::CloseCode;
use turnpike_signal::message::{Inbound, Peer};
use turnpike_signal::rooms::{
    BusUnavailable, ConnId, ConnectRefused, DropReason, JoinRequest, Membership, Metric, Output,
    RoomInfo, Rooms, SignalConfig, TokenRefused,
};
use turnpike_signal::token::Claims;

/// How a connection ended, as the driver was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed(CloseCode),
    Aborted,
}

/// The rooms plus everything the driver would do, in memory.
struct World {
    rooms: Rooms,
    now: Instant,
    /// Frames each connection was sent, parsed, not yet looked at.
    inbox: HashMap<ConnId, VecDeque<Value>>,
    ended: HashMap<ConnId, End>,
    /// Connections whose socket takes nothing: their frames stay queued.
    stalled: HashSet<ConnId>,
    /// The simulated bus: membership per room key and ranks.
    members: BTreeMap<String, Vec<Peer>>,
    next_rank: u64,
    bus_down: bool,
    /// Events published, in order; delivered back to the rooms like the in-process bus.
    published: Vec<BusEvent>,
    left_rooms: Vec<(String, String)>,
    metrics: Vec<Metric>,
    /// What each join token grants.
    grants: HashMap<String, Result<JoinRequest, TokenRefused>>,
    next_token: u32,
}

/// A joined participant.
#[derive(Debug, Clone)]
struct Who {
    conn: ConnId,
    session: String,
    resume_token: String,
    peer: Peer,
    /// The last `seq` it saw.
    last_seq: u64,
}

const ALICE_IP: &str = "192.0.2.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn text(v: Value) -> Inbound {
    Inbound::text(&v.to_string())
}

impl World {
    fn new(cfg: SignalConfig) -> Self {
        Self {
            rooms: Rooms::new(cfg, [7; 32]),
            now: Instant::now(),
            inbox: HashMap::new(),
            ended: HashMap::new(),
            stalled: HashSet::new(),
            members: BTreeMap::new(),
            next_rank: 1,
            bus_down: false,
            published: vec![],
            left_rooms: vec![],
            metrics: vec![],
            grants: HashMap::new(),
            next_token: 0,
        }
    }

    fn cfg(&self) -> &SignalConfig {
        self.rooms.config()
    }

    /// Carries out every output, as the driver does, until the rooms are quiet.
    fn run(&mut self) {
        let mut deliveries = VecDeque::new();
        loop {
            while let Some(o) = self.rooms.poll_output() {
                self.carry_out(o, &mut deliveries);
            }
            let Some(e) = deliveries.pop_front() else {
                return;
            };
            self.rooms.handle_bus_event(self.now, e);
        }
    }

    fn carry_out(&mut self, o: Output, deliveries: &mut VecDeque<BusEvent>) {
        let now = self.now;
        match o {
            Output::Send { conn, text } => {
                assert!(
                    !self.ended.contains_key(&conn),
                    "frame after the end: {text}"
                );
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["v"], 1);
                self.inbox.entry(conn).or_default().push_back(v);
                if !self.stalled.contains(&conn) {
                    self.rooms.handle_written(conn, 1);
                }
            }
            Output::Close { conn, code } => {
                assert!(self.ended.insert(conn, End::Closed(code)).is_none());
            }
            Output::Abort { conn } => {
                assert!(self.ended.insert(conn, End::Aborted).is_none());
            }
            Output::Authorize { conn, token } => {
                let grant = self.grants[&token].clone();
                self.rooms.handle_join(now, conn, grant);
            }
            Output::FetchRoom { conn, room, .. } => {
                let info = if self.bus_down {
                    Err(BusUnavailable)
                } else {
                    Ok(RoomInfo {
                        members: self.members.get(&room).map_or(0, Vec::len),
                        ice_servers: json!([{"urls": ["turn:192.0.2.1:3478"], "username": "u", "credential": "c"}]),
                    })
                };
                self.rooms.handle_room(now, conn, info);
            }
            Output::JoinRoom {
                conn,
                room,
                peer_id,
                identity,
            } => {
                let joined = if self.bus_down {
                    Err(BusUnavailable)
                } else {
                    self.next_rank += 1;
                    let peer = Peer {
                        id: peer_id,
                        identity,
                        rank: self.next_rank,
                    };
                    let list = self.members.entry(room).or_default();
                    list.push(peer.clone());
                    Ok(Membership {
                        peer,
                        members: list.clone(),
                    })
                };
                self.rooms.handle_joined(now, conn, joined);
            }
            Output::LeaveRoom { room, peer_id } => {
                if let Some(l) = self.members.get_mut(&room) {
                    l.retain(|p| p.id != peer_id);
                }
                self.left_rooms.push((room, peer_id));
            }
            Output::Publish { event, failure_to } => {
                if self.bus_down {
                    if let Some(conn) = failure_to {
                        self.rooms.handle_publish_failed(now, conn);
                    }
                    return;
                }
                self.published.push(event.clone());
                deliveries.push_back(event);
            }
            Output::Metric(m) => self.metrics.push(m),
        }
    }

    /// Moves the clock forward by `d`, firing every deadline on the way at its time.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.rooms.poll_timeout().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            self.rooms.handle_timeout(self.now);
            self.run();
        }
        self.now = until;
    }

    fn connect_from(&mut self, addr: &str, origin: Option<&str>) -> Result<ConnId, ConnectRefused> {
        let r = self
            .rooms
            .handle_connect(self.now, ip(addr), origin.map(str::to_string));
        self.run();
        r
    }

    fn connect(&mut self) -> ConnId {
        self.connect_from(ALICE_IP, None).unwrap()
    }

    fn frame(&mut self, conn: ConnId, inbound: Inbound) {
        self.rooms.handle_message(self.now, conn, inbound);
        self.run();
    }

    fn send(&mut self, conn: ConnId, v: Value) {
        self.frame(conn, text(v));
    }

    fn disconnect(&mut self, conn: ConnId) {
        self.rooms.handle_disconnect(self.now, conn);
        self.run();
    }

    /// A token the simulated control plane answers with `grant`.
    fn token(&mut self, grant: Result<JoinRequest, TokenRefused>) -> String {
        self.next_token += 1;
        let t = format!("tok{}", self.next_token);
        self.grants.insert(t.clone(), grant);
        t
    }

    fn grant(tenant: &str, room: &str, identity: &str) -> JoinRequest {
        JoinRequest {
            claims: Claims {
                tid: tenant.into(),
                room: room.into(),
                sub: identity.into(),
                exp: i64::MAX,
                send: true,
                broadcast: true,
            },
            allowed_origins: vec![],
        }
    }

    /// Sends a token join on `conn` and returns the first frame it got.
    fn join_with(&mut self, conn: ConnId, grant: Result<JoinRequest, TokenRefused>) -> Value {
        let token = self.token(grant);
        self.send(conn, json!({"v": 1, "type": "join", "token": token}));
        self.next(conn)
    }

    /// Connects and joins `room` of `tenant` as `identity`.
    fn join(&mut self, tenant: &str, room: &str, identity: &str) -> Who {
        let conn = self.connect();
        let j = self.join_with(conn, Ok(Self::grant(tenant, room, identity)));
        assert_eq!(j["type"], "joined", "{j}");
        Who {
            conn,
            session: j["session"].as_str().unwrap().into(),
            resume_token: j["resume_token"].as_str().unwrap().into(),
            peer: serde_json::from_value(j["peer"].clone()).unwrap(),
            last_seq: j["seq"].as_u64().unwrap(),
        }
    }

    /// The next frame `conn` got.
    fn next(&mut self, conn: ConnId) -> Value {
        self.inbox
            .get_mut(&conn)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| panic!("{conn} got nothing"))
    }

    /// Every frame `conn` got since the last look.
    fn all(&mut self, conn: ConnId) -> Vec<Value> {
        self.inbox
            .get_mut(&conn)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn nothing_for(&mut self, conn: ConnId) {
        let got = self.all(conn);
        assert!(got.is_empty(), "{conn} got {got:?}");
    }

    /// The next frame of `conn`, which must be an error with `code`; then the connection's end.
    fn error_then(&mut self, conn: ConnId, code: &str) -> Option<End> {
        let e = self.next(conn);
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{e}"
        );
        assert!(e.get("seq").is_none(), "errors are not numbered: {e}");
        self.ended.get(&conn).copied()
    }

    fn resume(&mut self, who: &Who, token: &str, last_seq: u64) -> ConnId {
        let conn = self.connect();
        self.send(
            conn,
            json!({"v": 1, "type": "join", "resume": {"session": who.session, "token": token, "last_seq": last_seq}}),
        );
        conn
    }

    fn count(&self, m: Metric) -> usize {
        self.metrics.iter().filter(|x| **x == m).count()
    }

    fn last_gauges(&self) -> Option<Metric> {
        self.metrics
            .iter()
            .rev()
            .find(|m| matches!(m, Metric::Gauges { .. }))
            .copied()
    }
}

fn signal(to: &Who, data: Value) -> Value {
    json!({"v": 1, "type": "signal", "to": to.peer.id, "data": data})
}

fn world() -> World {
    World::new(SignalConfig::default())
}

#[test]
fn join_presence_ranks_and_ice_servers() {
    let mut w = world();
    let conn = w.connect();
    let j = w.join_with(conn, Ok(World::grant("t1", "standup", "alice")));
    assert_eq!(j["type"], "joined");
    assert_eq!(j["seq"], 1);
    assert_eq!(j["room"], "standup");
    assert_eq!(j["participants"], json!([]));
    assert_eq!(j["peer"]["identity"], "alice");
    assert_eq!(j["resume_grace_ms"], 20_000);
    assert_eq!(j["max_message_bytes"], 16 * 1024);
    assert_eq!(j["ice_servers"][0]["urls"][0], "turn:192.0.2.1:3478");
    assert!(j["session"].as_str().unwrap().starts_with("s_"));
    assert!(j["peer"]["id"].as_str().unwrap().starts_with("p_"));
    assert!(j["resume_token"].as_str().unwrap().len() >= 32);
    let alice_id = j["peer"]["id"].clone();

    let bob = w.join("t1", "standup", "bob");
    assert_eq!(w.published.len(), 2, "each join is published");
    // Bob joined later: higher rank, polite towards alice.
    let alice_rank = w.members[&room_key("t1", "standup")][0].rank;
    assert!(bob.peer.rank > alice_rank);
    let pj = w.next(conn);
    assert_eq!(pj["type"], "peer_joined");
    assert_eq!(pj["peer"]["identity"], "bob");
    assert_eq!(pj["polite"], false);
    assert_eq!(pj["seq"], 2);
    w.nothing_for(conn);

    // A third participant sees both, polite towards both.
    let carol_conn = w.connect();
    let jc = w.join_with(carol_conn, Ok(World::grant("t1", "standup", "carol")));
    let ps = jc["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0]["id"], alice_id);
    assert!(ps.iter().all(|p| p["polite"] == true));
    assert_eq!(w.next(bob.conn)["type"], "peer_joined");
    assert_eq!(
        w.last_gauges(),
        Some(Metric::Gauges {
            connections: 3,
            rooms: 1
        })
    );
    assert_eq!(w.rooms.local_counts(), (3, 1));
}

#[test]
fn targeted_and_broadcast_delivery_permissions_and_tenant_isolation() {
    let mut w = world();
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    let c = w.join("t1", "r", "c");
    // Another tenant's room of the same name is another room.
    let m = w.join("t2", "r", "mallory");
    for x in [&a, &b, &c, &m] {
        w.all(x.conn);
    }
    let offer = json!({"description": {"type": "offer", "sdp": "v=0\r\n..."}});
    w.send(a.conn, signal(&b, offer.clone()));
    let s = w.next(b.conn);
    assert_eq!(s["type"], "signal");
    assert_eq!(s["from"], json!(a.peer.id));
    assert_eq!(s["data"], offer);
    assert_eq!(s["broadcast"], false);
    w.nothing_for(c.conn);
    w.nothing_for(a.conn);
    // Broadcast reaches the others, not the sender.
    w.send(
        b.conn,
        json!({"v": 1, "type": "broadcast", "data": {"chat": "hi"}}),
    );
    for x in [&a, &c] {
        let s = w.next(x.conn);
        assert_eq!(
            (s["broadcast"].clone(), s["data"].clone()),
            (json!(true), json!({"chat": "hi"}))
        );
    }
    w.nothing_for(b.conn);
    w.nothing_for(m.conn);
    // Mallory cannot reach a peer of another tenant's room.
    w.send(m.conn, signal(&a, json!({"x": 1})));
    w.nothing_for(a.conn);
    assert_eq!(w.count(Metric::MessageIn), 3);
    // Ping.
    w.send(a.conn, json!({"v": 1, "type": "ping", "id": 7}));
    let p = w.next(a.conn);
    assert_eq!(
        (p["type"].clone(), p["id"].clone()),
        (json!("pong"), json!(7))
    );
    assert!(p.get("seq").is_none());
    w.send(a.conn, json!({"v": 1, "type": "ping"}));
    assert_eq!(w.next(a.conn)["id"], Value::Null);

    // Tokens without send or broadcast rights.
    let quiet = w.connect();
    let mut g = World::grant("t1", "r", "quiet");
    g.claims.send = false;
    g.claims.broadcast = false;
    assert_eq!(w.join_with(quiet, Ok(g))["type"], "joined");
    w.send(quiet, signal(&a, json!(1)));
    assert_eq!(w.error_then(quiet, "forbidden"), None);
    w.send(quiet, json!({"v": 1, "type": "broadcast", "data": 1}));
    assert_eq!(w.error_then(quiet, "forbidden"), None);
}

#[test]
fn leave_ends_the_session_and_tells_the_room() {
    let mut w = world();
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    w.send(b.conn, json!({"v": 1, "type": "leave"}));
    assert_eq!(w.ended[&b.conn], End::Closed(CloseCode::Bye));
    assert_eq!(CloseCode::Bye.code(), 1000);
    let pl = w.next(a.conn);
    assert_eq!(pl["type"], "peer_left");
    assert_eq!(pl["peer_id"], json!(b.peer.id));
    assert_eq!(pl["reason"], "left");
    assert_eq!(w.left_rooms, vec![(room_key("t1", "r"), b.peer.id.clone())]);
    assert_eq!(w.members[&room_key("t1", "r")].len(), 1);
    // Frames after the leave are ignored; the session cannot be resumed.
    w.send(b.conn, json!({"v": 1, "type": "ping"}));
    w.nothing_for(b.conn);
    w.disconnect(b.conn);
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    assert_eq!(
        w.error_then(b2, "bad_resume"),
        Some(End::Closed(CloseCode::CannotResume))
    );
}

#[test]
fn resume_within_the_grace_period_replays_what_was_missed() {
    let mut w = world();
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    w.disconnect(b.conn);
    assert_eq!(w.rooms.local_counts(), (1, 1));
    w.advance(Duration::from_secs(5));
    for n in 0..3 {
        w.send(a.conn, signal(&b, json!({"n": n})));
    }
    // Still in the room for the others.
    w.nothing_for(a.conn);
    w.advance(Duration::from_secs(10));
    // A wrong token is refused and changes nothing.
    let bad = w.resume(&b, "nope", 0);
    assert_eq!(
        w.error_then(bad, "bad_resume"),
        Some(End::Closed(CloseCode::CannotResume))
    );
    assert_eq!(CloseCode::CannotResume.code(), 4003);
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    let r = w.next(b2);
    assert_eq!(r["type"], "resumed");
    assert_eq!(r["replayed"], 3);
    assert_eq!(r["gap"], false);
    assert_eq!(r["peer"]["id"], json!(b.peer.id));
    assert_eq!(r["room"], "r");
    assert!(r.get("seq").is_none(), "resumed is not numbered");
    let got = w.all(b2);
    assert_eq!(
        got.iter()
            .map(|g| g["data"]["n"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1), json!(2)]
    );
    assert_eq!(
        got.iter()
            .map(|g| g["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [b.last_seq + 1, b.last_seq + 2, b.last_seq + 3]
    );
    assert_eq!(w.count(Metric::Resume), 1);
    assert_eq!(w.rooms.local_counts(), (2, 1));
    // New messages continue the numbering on the new socket.
    w.send(a.conn, signal(&b, json!({"n": 3})));
    assert_eq!(w.next(b2)["seq"], b.last_seq + 4);
    // After the first grace period would have ended, nobody left.
    w.advance(w.cfg().resume_grace + Duration::from_secs(5));
    assert!(w.all(a.conn).iter().all(|m| m["type"] != "peer_left"));

    // Resuming while the old socket is still attached closes the old one.
    let b3 = w.resume(&b, &b.resume_token, b.last_seq + 4);
    assert_eq!(w.next(b3)["replayed"], 0);
    assert_eq!(w.ended[&b2], End::Closed(CloseCode::ResumedElsewhere));
    w.send(a.conn, signal(&b, json!({"n": 4})));
    assert_eq!(w.next(b3)["data"]["n"], 4);
    w.nothing_for(b2);
    // The old socket's end does not detach the session from the new one.
    w.disconnect(b2);
    assert_eq!(w.rooms.local_counts(), (2, 1));
}

#[test]
fn after_the_grace_period_the_peer_is_gone() {
    let mut w = world();
    let grace = w.cfg().resume_grace;
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    w.disconnect(b.conn);
    w.advance(grace - Duration::from_millis(1));
    w.nothing_for(a.conn);
    w.advance(Duration::from_millis(1));
    let pl = w.next(a.conn);
    assert_eq!(
        (pl["type"].clone(), pl["reason"].clone()),
        (json!("peer_left"), json!("gone"))
    );
    assert_eq!(pl["peer_id"], json!(b.peer.id));
    assert_eq!(w.left_rooms.len(), 1);
    assert_eq!(w.rooms.local_counts(), (1, 1));
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    assert_eq!(
        w.error_then(b2, "bad_resume"),
        Some(End::Closed(CloseCode::CannotResume))
    );
    // The last one gone, the room is gone from this node.
    w.disconnect(a.conn);
    w.advance(grace);
    assert_eq!(w.rooms.local_counts(), (0, 0));
    assert_eq!(
        w.last_gauges(),
        Some(Metric::Gauges {
            connections: 0,
            rooms: 0
        })
    );
}

#[test]
fn resume_reports_a_gap_when_the_buffer_no_longer_has_everything() {
    let mut w = World::new(SignalConfig {
        resume_buffer: 4,
        ..SignalConfig::default()
    });
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    w.disconnect(b.conn);
    for n in 0..10 {
        w.send(a.conn, signal(&b, json!({"n": n})));
    }
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    let r = w.next(b2);
    assert_eq!(
        (r["replayed"].clone(), r["gap"].clone()),
        (json!(4), json!(true))
    );
    let got = w.all(b2);
    assert_eq!(
        got.iter()
            .map(|g| g["data"]["n"].clone())
            .collect::<Vec<_>>(),
        [json!(6), json!(7), json!(8), json!(9)]
    );
    assert_eq!(got[0]["seq"], b.last_seq + 7);
    // A client that already has everything: no replay, no gap.
    let last = got[3]["seq"].as_u64().unwrap();
    let b3 = w.resume(&b, &b.resume_token, last);
    let r = w.next(b3);
    assert_eq!(
        (r["replayed"].clone(), r["gap"].clone()),
        (json!(0), json!(false))
    );
    // A client claiming more than was sent (even the largest number) gets nothing, and no panic.
    let b4 = w.resume(&b, &b.resume_token, u64::MAX);
    let r = w.next(b4);
    assert_eq!(
        (r["replayed"].clone(), r["gap"].clone()),
        (json!(0), json!(false))
    );
    // A client that saw nothing yet gets the buffer and the gap.
    let b5 = w.resume(&b, &b.resume_token, 0);
    assert_eq!(w.next(b5)["gap"], true);
    assert_eq!(w.all(b5).len(), 4);
}

#[test]
fn a_slow_consumer_is_cut_off_and_may_resume_others_unaffected() {
    let mut w = World::new(SignalConfig {
        queue: 4,
        msgs_per_sec: 100_000,
        msg_burst: 100_000,
        ..SignalConfig::default()
    });
    let sender = w.join("t1", "flood", "sender");
    let fast = w.join("t1", "flood", "fast");
    let slow = w.join("t1", "flood", "slow");
    for x in [&sender, &fast, &slow] {
        w.all(x.conn);
    }
    // The slow socket stops taking frames: four fit in its queue, the fifth cuts it off.
    w.stalled.insert(slow.conn);
    for n in 0..4 {
        w.send(sender.conn, json!({"v": 1, "type": "broadcast", "data": n}));
    }
    assert!(!w.ended.contains_key(&slow.conn));
    // Frames that are not about the room are dropped when the queue is full, without a cut-off.
    w.send(slow.conn, json!({"v": 1, "type": "ping", "id": 1}));
    assert!(!w.ended.contains_key(&slow.conn));
    w.send(sender.conn, json!({"v": 1, "type": "broadcast", "data": 4}));
    assert_eq!(w.ended[&slow.conn], End::Aborted);
    assert_eq!(w.count(Metric::Drop(DropReason::SlowConsumer)), 1);
    let got = w.all(slow.conn);
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().all(|g| g["type"] == "signal"),
        "no pong: {got:?}"
    );
    // Others got everything; nobody was told the slow one left.
    for n in 5..8 {
        w.send(sender.conn, json!({"v": 1, "type": "broadcast", "data": n}));
    }
    let got = w.all(fast.conn);
    assert_eq!(
        got.iter().map(|g| g["data"].clone()).collect::<Vec<_>>(),
        (0..8).map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert!(w.all(sender.conn).is_empty());
    // The session survives: it resumes from its last frame and gets the rest.
    w.disconnect(slow.conn);
    let last = slow.last_seq + 4;
    let again = w.resume(&slow, &slow.resume_token, last);
    assert_eq!(w.next(again)["replayed"], 4);
    let got = w.all(again);
    assert_eq!(
        got.iter().map(|g| g["data"].clone()).collect::<Vec<_>>(),
        (4..8).map(|n| json!(n)).collect::<Vec<_>>()
    );
    // A consumer that keeps up is never cut off, however many frames go by.
    for n in 0..100 {
        w.send(sender.conn, json!({"v": 1, "type": "broadcast", "data": n}));
    }
    assert_eq!(w.all(fast.conn).len(), 100);
    assert!(!w.ended.contains_key(&fast.conn));
}

#[test]
fn message_size_limit() {
    let mut w = World::new(SignalConfig {
        max_message_bytes: 200,
        ..SignalConfig::default()
    });
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    let envelope = json!({"v": 1, "type": "broadcast", "data": ""})
        .to_string()
        .len();
    let fits = json!({"v": 1, "type": "broadcast", "data": "x".repeat(200 - envelope)});
    assert_eq!(fits.to_string().len(), 200);
    w.send(b.conn, fits);
    assert_eq!(w.next(a.conn)["type"], "signal");
    w.send(
        b.conn,
        json!({"v": 1, "type": "broadcast", "data": "x".repeat(201 - envelope)}),
    );
    assert_eq!(w.error_then(b.conn, "too_large"), None);
    w.nothing_for(a.conn);
    // Even an unparsable frame over the limit is "too large", and the socket stays.
    w.frame(b.conn, Inbound::text(&"{".repeat(300)));
    assert_eq!(w.error_then(b.conn, "too_large"), None);
    w.send(b.conn, json!({"v": 1, "type": "ping"}));
    assert_eq!(w.next(b.conn)["type"], "pong");
}

#[test]
fn message_and_byte_rate_limits() {
    let mut w = World::new(SignalConfig {
        msgs_per_sec: 5,
        msg_burst: 10,
        ..SignalConfig::default()
    });
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    for n in 0..25 {
        w.send(a.conn, json!({"v": 1, "type": "broadcast", "data": n}));
    }
    assert_eq!(w.all(b.conn).len(), 10);
    let errors = w.all(a.conn);
    assert_eq!(errors.len(), 15);
    assert!(errors.iter().all(|e| e["code"] == "rate_limited"));
    assert_eq!(w.count(Metric::Drop(DropReason::RateLimited)), 15);
    // Five per second come back.
    w.advance(Duration::from_secs(1));
    for n in 0..6 {
        w.send(a.conn, json!({"v": 1, "type": "broadcast", "data": n}));
    }
    assert_eq!(w.all(b.conn).len(), 5);
    assert_eq!(w.all(a.conn).len(), 1);
    // A frame over the rate is refused before it is read: `rate_limited`, not
    // `unsupported_version`.
    w.send(a.conn, json!({"v": 2, "type": "ping"}));
    assert_eq!(w.error_then(a.conn, "rate_limited"), None);

    // Bytes: a burst of twice the rate, then the rate.
    let mut w = World::new(SignalConfig {
        bytes_per_sec: 1000,
        ..SignalConfig::default()
    });
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    let big = json!({"v": 1, "type": "broadcast", "data": "x".repeat(850)});
    assert!(big.to_string().len() > 850 && big.to_string().len() < 1000);
    for _ in 0..3 {
        w.send(a.conn, big.clone());
    }
    assert_eq!(w.all(b.conn).len(), 2);
    assert_eq!(w.error_then(a.conn, "rate_limited"), None);
    w.advance(Duration::from_secs(1));
    w.send(a.conn, big);
    assert_eq!(w.all(b.conn).len(), 1);
}

#[test]
fn room_size_limit() {
    let mut w = World::new(SignalConfig {
        max_room_size: 2,
        max_conns_per_tenant: 3,
        ..SignalConfig::default()
    });
    let _a = w.join("t1", "small", "a");
    let b = w.join("t1", "small", "b");
    let c = w.connect();
    let e = w.join_with(c, Ok(World::grant("t1", "small", "c")));
    assert_eq!(e["code"], "room_full");
    assert_eq!(w.ended[&c], End::Closed(CloseCode::CannotJoin));
    assert_eq!(CloseCode::CannotJoin.code(), 4009);
    assert_eq!(w.members[&room_key("t1", "small")].len(), 2);
    // The refused join held no tenant slot: a third session of the tenant fits elsewhere.
    let _d = w.join("t1", "other", "d");
    // A place frees up when someone leaves.
    w.send(b.conn, json!({"v": 1, "type": "leave"}));
    let e = w.connect();
    assert_eq!(
        w.join_with(e, Ok(World::grant("t1", "small", "e")))["type"],
        "joined"
    );
}

#[test]
fn per_ip_connection_limit_and_draining_at_the_upgrade() {
    let mut w = World::new(SignalConfig {
        max_conns_per_ip: 2,
        ..SignalConfig::default()
    });
    let one = w.connect();
    let _two = w.connect();
    assert_eq!(
        w.connect_from(ALICE_IP, None),
        Err(ConnectRefused::TooManyFromIp)
    );
    // Another address is counted apart.
    assert!(w.connect_from("192.0.2.11", None).is_ok());
    w.disconnect(one);
    assert!(w.connect_from(ALICE_IP, None).is_ok());
    assert_eq!(
        w.connect_from(ALICE_IP, None),
        Err(ConnectRefused::TooManyFromIp)
    );
    w.rooms.handle_drain(w.now, &|_| None);
    w.run();
    assert_eq!(
        w.connect_from("192.0.2.12", None),
        Err(ConnectRefused::Draining)
    );
}

#[test]
fn per_tenant_connection_limit() {
    let mut w = World::new(SignalConfig {
        max_conns_per_tenant: 2,
        ..SignalConfig::default()
    });
    let a = w.join("t1", "r1", "a");
    let b = w.join("t1", "r2", "b");
    let c = w.connect();
    let e = w.join_with(c, Ok(World::grant("t1", "r3", "c")));
    assert_eq!(e["code"], "tenant_limit");
    assert_eq!(w.ended[&c], End::Closed(CloseCode::CannotJoin));
    // Other tenants are not affected.
    let _m = w.join("t2", "r1", "m");
    // A session in its grace period still counts.
    w.disconnect(a.conn);
    let c = w.connect();
    assert_eq!(
        w.join_with(c, Ok(World::grant("t1", "r3", "c")))["code"],
        "tenant_limit"
    );
    // A leave frees the slot.
    w.send(b.conn, json!({"v": 1, "type": "leave"}));
    let c = w.connect();
    assert_eq!(
        w.join_with(c, Ok(World::grant("t1", "r3", "c")))["type"],
        "joined"
    );
}

#[test]
fn handshake_timeout() {
    let mut w = world();
    let handshake = w.cfg().handshake_timeout;
    let slow = w.connect();
    w.advance(Duration::from_secs(1));
    let joined = w.join("t1", "r", "a");
    w.advance(handshake - Duration::from_secs(1) - Duration::from_millis(1));
    assert!(!w.ended.contains_key(&slow));
    w.advance(Duration::from_millis(1));
    assert_eq!(
        w.error_then(slow, "handshake_timeout"),
        Some(End::Closed(CloseCode::HandshakeTimeout))
    );
    assert_eq!(CloseCode::HandshakeTimeout.code(), 4008);
    // The one that joined in time is untouched.
    w.advance(handshake * 2);
    assert!(!w.ended.contains_key(&joined.conn));
    // A join after the timeout is ignored.
    w.send(slow, json!({"v": 1, "type": "join", "token": "x"}));
    w.nothing_for(slow);
}

#[test]
fn the_first_frame_must_be_a_valid_join() {
    let mut w = World::new(SignalConfig::default());
    let expect = |w: &mut World, inbound: Inbound, code: Option<&str>, close: CloseCode| {
        let conn = w.connect();
        w.frame(conn, inbound);
        match code {
            Some(code) => assert_eq!(w.error_then(conn, code), Some(End::Closed(close))),
            None => {
                w.nothing_for(conn);
                assert_eq!(w.ended[&conn], End::Closed(close));
            }
        }
        assert_eq!(close.code(), 4002);
    };
    expect(&mut w, Inbound::Binary, None, CloseCode::ExpectedJoin);
    expect(&mut w, Inbound::Alive, None, CloseCode::ExpectedJoin);
    expect(
        &mut w,
        text(json!({"v": 1, "type": "ping"})),
        Some("bad_message"),
        CloseCode::ExpectedJoin,
    );
    expect(
        &mut w,
        Inbound::text("{not json"),
        Some("bad_message"),
        CloseCode::ExpectedJoin,
    );
    expect(
        &mut w,
        text(json!({"v": 1, "type": "join"})),
        Some("bad_message"),
        CloseCode::ExpectedJoin,
    );
    expect(
        &mut w,
        text(json!({"v": 2, "type": "join", "token": "t"})),
        Some("unsupported_version"),
        CloseCode::UnsupportedVersion,
    );
    expect(
        &mut w,
        text(json!({"v": 2, "type": "ping"})),
        Some("bad_message"),
        CloseCode::ExpectedJoin,
    );
}

#[test]
fn tokens_origins_and_bus_failures_at_the_join() {
    let mut w = world();
    for (refused, code) in [
        (TokenRefused::Malformed, "bad_token"),
        (TokenRefused::Invalid, "bad_token"),
        (TokenRefused::Expired, "token_expired"),
    ] {
        let conn = w.connect();
        let e = w.join_with(conn, Err(refused));
        assert_eq!(e["code"], code);
        assert_eq!(w.ended[&conn], End::Closed(CloseCode::BadToken));
        assert_eq!(CloseCode::BadToken.code(), 4003);
    }
    // The tenant's Origin allow-list.
    let mut g = World::grant("t1", "o", "x");
    g.allowed_origins = vec!["https://app.example.com".into()];
    for (origin, ok) in [
        (Some("https://evil.example.com"), false),
        (None, false),
        (Some("https://app.example.com"), true),
    ] {
        let conn = w.connect_from(ALICE_IP, origin).unwrap();
        let m = w.join_with(conn, Ok(g.clone()));
        if ok {
            assert_eq!(m["type"], "joined");
        } else {
            assert_eq!(m["code"], "origin_not_allowed");
            assert_eq!(w.ended[&conn], End::Closed(CloseCode::OriginNotAllowed));
        }
    }
    // An empty list allows any origin, and none.
    let conn = w
        .connect_from(ALICE_IP, Some("https://anything.example"))
        .unwrap();
    assert_eq!(
        w.join_with(conn, Ok(World::grant("t1", "o", "y")))["type"],
        "joined"
    );
    // The bus fails: the join is refused, nobody hears of it, no slot is held.
    w.bus_down = true;
    let conn = w.connect();
    let published = w.published.len();
    assert_eq!(
        w.join_with(conn, Ok(World::grant("t1", "o", "z")))["code"],
        "unavailable"
    );
    assert_eq!(w.ended[&conn], End::Closed(CloseCode::CannotJoin));
    assert_eq!(w.published.len(), published);
}

#[test]
fn idle_timeout_counts_every_frame_then_closes_and_keeps_the_session() {
    let mut w = world();
    let idle = w.cfg().idle_timeout;
    let grace = w.cfg().resume_grace;
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    // Pongs (or any frame) keep a socket alive.
    for _ in 0..3 {
        w.advance(idle - Duration::from_secs(1));
        w.frame(b.conn, Inbound::Alive);
        w.send(a.conn, json!({"v": 1, "type": "ping"}));
        w.all(a.conn);
    }
    assert!(!w.ended.contains_key(&b.conn));
    w.advance(idle / 2);
    w.send(a.conn, json!({"v": 1, "type": "ping"}));
    w.all(a.conn);
    w.advance(idle / 2 - Duration::from_millis(1));
    assert!(!w.ended.contains_key(&b.conn));
    w.advance(Duration::from_millis(1));
    assert_eq!(
        w.error_then(b.conn, "idle_timeout"),
        Some(End::Closed(CloseCode::IdleTimeout))
    );
    // The session outlives the socket: it may resume, else it is gone after the grace period.
    w.disconnect(b.conn);
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    assert_eq!(w.next(b2)["type"], "resumed");
    w.disconnect(b2);
    w.advance(grace);
    let left: Vec<_> = w
        .all(a.conn)
        .into_iter()
        .filter(|m| m["type"] == "peer_left")
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["reason"], "gone");
}

#[test]
fn kick_and_room_close_from_the_operator() {
    let mut w = world();
    let a = w.join("t1", "o", "a");
    let b = w.join("t1", "o", "b");
    w.all(a.conn);
    let room = room_key("t1", "o");
    // The admin API publishes a kick; every node delivers it.
    w.rooms.handle_bus_event(
        w.now,
        BusEvent::Kick {
            room: room.clone(),
            peer_id: b.peer.id.clone(),
        },
    );
    w.run();
    let k = w.next(b.conn);
    assert_eq!(k["type"], "kicked");
    assert!(k["seq"].as_u64().is_some());
    assert_eq!(w.ended[&b.conn], End::Closed(CloseCode::Kicked));
    assert_eq!(CloseCode::Kicked.code(), 4001);
    let pl = w.next(a.conn);
    assert_eq!(
        (pl["type"].clone(), pl["reason"].clone()),
        (json!("peer_left"), json!("kicked"))
    );
    // Kicked is final: no resume.
    w.disconnect(b.conn);
    let b2 = w.resume(&b, &b.resume_token, b.last_seq);
    assert_eq!(
        w.error_then(b2, "bad_resume"),
        Some(End::Closed(CloseCode::CannotResume))
    );
    // A kick for someone else in another room changes nothing here.
    w.rooms.handle_bus_event(
        w.now,
        BusEvent::Kick {
            room: room_key("t1", "elsewhere"),
            peer_id: a.peer.id.clone(),
        },
    );
    w.run();
    w.nothing_for(a.conn);

    let c = w.join("t1", "o", "c");
    w.all(a.conn);
    w.rooms
        .handle_bus_event(w.now, BusEvent::Close { room: room.clone() });
    w.run();
    for x in [&a, &c] {
        let m = w.all(x.conn);
        assert_eq!(m[0]["type"], "room_closed", "{m:?}");
        assert_eq!(w.ended[&x.conn], End::Closed(CloseCode::RoomClosed));
    }
    assert_eq!(w.rooms.local_counts(), (0, 0));
    assert!(w.members[&room].is_empty());
    assert!(w.published.iter().any(|e| matches!(e,
        BusEvent::Left { peer_id, reason, .. }
            if *peer_id == c.peer.id && *reason == turnpike_signal::message::LeaveReason::RoomClosed)));
}

#[test]
fn drain_tells_everyone_to_reconnect_elsewhere() {
    let mut w = world();
    let grace = w.cfg().resume_grace;
    let a = w.join("t1", "r", "a");
    let b = w.join("t1", "r", "b");
    // A tenant limited to regions with no other node: told to reconnect, without a URL.
    let eu = w.join("t-eu", "r", "e");
    let waiting = w.connect();
    w.all(a.conn);
    w.all(eu.conn);
    w.rooms.handle_drain(w.now, &|tenant| {
        (tenant != "t-eu").then(|| "wss://b.example.com/v1/signal".to_string())
    });
    w.run();
    let d = w.next(eu.conn);
    assert_eq!(
        (d["type"].clone(), d.get("url")),
        (json!("draining"), None),
        "{d}"
    );
    assert!(w.rooms.is_draining());
    for x in [&a, &b] {
        let d = w.next(x.conn);
        assert_eq!(
            (d["type"].clone(), d["reconnect"].clone(), d["url"].clone()),
            (
                json!("draining"),
                json!(true),
                json!("wss://b.example.com/v1/signal")
            )
        );
        assert!(d.get("seq").is_none());
        assert_eq!(w.ended[&x.conn], End::Closed(CloseCode::Draining));
    }
    assert_eq!(CloseCode::Draining.code(), 1012);
    // A socket still in its handshake is left alone; new ones are refused.
    assert!(!w.ended.contains_key(&waiting));
    assert_eq!(
        w.connect_from("192.0.2.99", None),
        Err(ConnectRefused::Draining)
    );
    assert_eq!(w.rooms.local_counts(), (0, 2));
    // Sessions wait for their resume (on another node); then they are gone.
    w.disconnect(a.conn);
    w.disconnect(b.conn);
    w.disconnect(eu.conn);
    w.advance(grace);
    assert_eq!(w.rooms.local_counts(), (0, 0));
    assert_eq!(w.left_rooms.len(), 3);
}

#[test]
fn bad_frames_of_a_joined_socket_get_errors_and_keep_it_open() {
    let mut w = world();
    let a = w.join("t1", "r", "a");
    for (frame, code) in [
        (Inbound::text("{not json"), "bad_json"),
        (text(json!({"v": 1, "type": "dance"})), "bad_message"),
        (text(json!({"v": 2, "type": "ping"})), "unsupported_version"),
        (
            text(json!({"v": 1, "type": "signal", "to": "x"})),
            "bad_message",
        ),
        (
            text(json!({"v": 1, "type": "join", "token": "x"})),
            "already_joined",
        ),
        (Inbound::Binary, "bad_message"),
    ] {
        w.frame(a.conn, frame);
        assert_eq!(w.error_then(a.conn, code), None);
    }
    w.send(a.conn, json!({"v": 1, "type": "ping", "id": 1}));
    assert_eq!(w.next(a.conn)["id"], 1);
    // A message the bus cannot carry is refused to its sender.
    let b = w.join("t1", "r", "b");
    w.all(a.conn);
    w.bus_down = true;
    w.send(a.conn, signal(&b, json!(1)));
    assert_eq!(w.error_then(a.conn, "forbidden"), None);
    w.nothing_for(b.conn);
}

#[test]
fn a_socket_that_ends_during_its_join_leaves_nothing_behind() {
    let mut w = world();
    let conn = w.connect();
    let token = w.token(Ok(World::grant("t1", "r", "ghost")));
    w.rooms.handle_message(
        w.now,
        conn,
        text(json!({"v": 1, "type": "join", "token": token})),
    );
    // Carry out the outputs by hand up to the bus join, then lose the socket.
    let Some(Output::Authorize { conn: c, token }) = w.rooms.poll_output() else {
        panic!("expected an authorization request");
    };
    let grant = w.grants[&token].clone();
    w.rooms.handle_join(w.now, c, grant);
    let Some(Output::FetchRoom { room, .. }) = w.rooms.poll_output() else {
        panic!("expected a room fetch");
    };
    w.rooms.handle_room(
        w.now,
        c,
        Ok(RoomInfo {
            members: 0,
            ice_servers: json!([]),
        }),
    );
    let Some(Output::JoinRoom { peer_id, .. }) = w.rooms.poll_output() else {
        panic!("expected a bus join");
    };
    w.rooms.handle_disconnect(w.now, c);
    w.run();
    // The bus join completes after all: it is undone, nobody is told.
    w.rooms.handle_joined(
        w.now,
        c,
        Ok(Membership {
            peer: Peer {
                id: peer_id.clone(),
                identity: "ghost".into(),
                rank: 9,
            },
            members: vec![],
        }),
    );
    w.run();
    assert_eq!(w.left_rooms, vec![(room, peer_id)]);
    assert!(w.published.is_empty());
    assert_eq!(w.rooms.local_counts(), (0, 0));
    // Its tenant slot was released.
    let mut w2 = World::new(SignalConfig {
        max_conns_per_tenant: 1,
        ..SignalConfig::default()
    });
    let conn = w2.connect();
    let token = w2.token(Ok(World::grant("t1", "r", "ghost")));
    w2.rooms.handle_message(
        w2.now,
        conn,
        text(json!({"v": 1, "type": "join", "token": token})),
    );
    let Some(Output::Authorize { .. }) = w2.rooms.poll_output() else {
        panic!()
    };
    let grant = w2.grants[&token].clone();
    w2.rooms.handle_join(w2.now, conn, grant);
    w2.rooms.handle_disconnect(w2.now, conn);
    w2.run();
    w2.join("t1", "r", "next");
}

#[test]
fn deadlines_are_reported_for_the_driver() {
    let mut w = world();
    assert_eq!(w.rooms.poll_timeout(), None);
    let t0 = w.now;
    let conn = w.connect();
    assert_eq!(w.rooms.poll_timeout(), Some(t0 + w.cfg().handshake_timeout));
    w.disconnect(conn);
    // A stale deadline may stay; handling it does nothing.
    w.advance(Duration::from_secs(3600));
    assert_eq!(w.rooms.poll_timeout(), None);
    assert!(w.ended.is_empty());
}
