//! The sans-IO server driven with a virtual clock: every RFC step and timeout, with no sockets.
#![allow(clippy::disallowed_methods)] // the test driver starts the virtual clock from a real instant

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_proto::*;
use turnpike_stun::*;

const REALM: &str = "example.org";
const UNIX0: u64 = 1_800_000_000;

fn ft(client: &str) -> FiveTuple {
    FiveTuple {
        client: client.parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
        transport: Transport::Udp,
    }
}

/// A server's configuration and the runtime it shares (reachable through `Deref`, so a test
/// reads `env.directory` or `env.quota` as the binary does on its `Runtime`).
#[derive(Clone)]
struct Env {
    cfg: Arc<ServerConfig>,
    rt: Arc<Runtime>,
}

impl std::ops::Deref for Env {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.rt
    }
}

impl From<ServerConfig> for Env {
    fn from(cfg: ServerConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            rt: Arc::new(Runtime::default()),
        }
    }
}

fn config(f: impl FnOnce(&mut ServerConfig)) -> Env {
    let mut creds = Credentials::new();
    creds.add_user("alice", UserSecret::Password("secret".into()));
    creds.add_user("bob", UserSecret::Password("hunter2".into()));
    creds.add_shared_secret(b"north".to_vec());
    let mut cfg = ServerConfig::new(REALM, creds.for_realm(REALM), [5u8; 32]);
    cfg.peer_policy = PeerPolicy::new(
        vec![],
        vec![],
        vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
    );
    f(&mut cfg);
    cfg.into()
}

/// A minimal TURN client that builds requests with our writer.
struct Client {
    ft: FiveTuple,
    user: String,
    password: String,
    nonce: Vec<u8>,
    next_tid: u8,
}

impl Client {
    fn new(addr: &str, user: &str, password: &str) -> Self {
        Self {
            ft: ft(addr),
            user: user.into(),
            password: password.into(),
            nonce: vec![],
            next_tid: 1,
        }
    }

    fn tid(&mut self) -> TransactionId {
        self.next_tid += 1;
        [self.next_tid; 12]
    }

    fn request(
        &mut self,
        method: u16,
        auth: bool,
        attrs: impl FnOnce(&mut MessageWriter<'_>),
    ) -> Vec<u8> {
        let tid = self.tid();
        self.request_with_tid(method, tid, auth, attrs)
    }

    fn request_with_tid(
        &mut self,
        method: u16,
        tid: TransactionId,
        auth: bool,
        attrs: impl FnOnce(&mut MessageWriter<'_>),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut w =
            MessageWriter::new(&mut buf, MessageType::new(method, Class::Request), tid).unwrap();
        attrs(&mut w);
        if auth {
            w.attr(ATTR_USERNAME, self.user.as_bytes()).unwrap();
            w.attr(ATTR_REALM, REALM.as_bytes()).unwrap();
            w.attr(ATTR_NONCE, &self.nonce).unwrap();
            let key = long_term_key(
                self.user.as_bytes(),
                REALM.as_bytes(),
                self.password.as_bytes(),
            );
            w.integrity(&key).unwrap();
        }
        w.fingerprint().unwrap();
        let n = w.finish();
        buf.truncate(n);
        buf
    }

    fn key(&self) -> Key {
        long_term_key(
            self.user.as_bytes(),
            REALM.as_bytes(),
            self.password.as_bytes(),
        )
    }
}

/// Sends `req` and returns the response bytes (from the immediate transmit or the output queue
/// after the relay was "bound").
fn exchange(s: &mut Server, now: Instant, c: &Client, req: &[u8]) -> Option<Vec<u8>> {
    let r = s.handle_client_packet(now, c.ft, req).map(|t| {
        assert_eq!(t.dest, Dest::Client(c.ft));
        t.data.to_vec()
    });
    if r.is_some() {
        return r;
    }
    // Allocate: play the driver.
    let mut port = 50_000;
    while let Some(o) = s.poll_output() {
        match o {
            Output::CreateRelay(req) => {
                let mk =
                    |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
                port += 2;
                let res = RelayResult {
                    ipv4: req.families.ipv4.then(|| Ok(mk("192.0.2.1", port))),
                    ipv6: req.families.ipv6.then(|| Ok(mk("[2001:db8::1]", port))),
                    reservation_token: req.even_port.filter(|r| *r).map(|_| 0x1122_3344_5566_7788),
                };
                s.handle_relay_created(now, req.allocation, req.generation, res);
            }
            Output::Transmit { to, data } => {
                assert_eq!(to, c.ft);
                return Some(data);
            }
            Output::ReleaseRelay(_) => {}
            other => panic!("unexpected output {other:?}"),
        }
    }
    None
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_exact(b).unwrap()
}

fn error_code(b: &[u8]) -> Option<u16> {
    let m = parse(b);
    m.get(ATTR_ERROR_CODE)
        .map(|v| decode_error_code(v).unwrap().code)
}

/// Gets a nonce with an unauthenticated request, as real clients do.
fn challenge(s: &mut Server, now: Instant, c: &mut Client) {
    let req = c.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(s, now, c, &req).unwrap();
    assert_eq!(error_code(&resp), Some(401));
    let m = parse(&resp);
    assert_eq!(m.get(ATTR_REALM).unwrap(), REALM.as_bytes());
    assert!(!m.has_integrity(), "a challenge is not signed");
    assert!(
        m.get(ATTR_SOFTWARE).is_none(),
        "unauthenticated answers carry no SOFTWARE"
    );
    c.nonce = m.get(ATTR_NONCE).unwrap().to_vec();
}

fn allocate(s: &mut Server, now: Instant, c: &mut Client) -> SocketAddr {
    challenge(s, now, c);
    let req = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(s, now, c, &req).unwrap();
    assert_eq!(error_code(&resp), None, "allocate failed");
    let m = parse(&resp);
    assert!(m.check_integrity(c.key().as_bytes()));
    assert!(m.check_fingerprint().unwrap());
    let tid = m.transaction_id();
    assert_eq!(
        decode_xor_address(m.get(ATTR_XOR_MAPPED_ADDRESS).unwrap(), &tid).unwrap(),
        c.ft.client
    );
    assert_eq!(m.get(ATTR_LIFETIME).unwrap(), 600u32.to_be_bytes());
    decode_xor_address(m.get(ATTR_XOR_RELAYED_ADDRESS).unwrap(), &tid).unwrap()
}

fn peer_attr(w: &mut MessageWriter<'_>, peer: &str) {
    w.xor_address(ATTR_XOR_PEER_ADDRESS, peer.parse().unwrap())
        .unwrap();
}

fn new_server(env: Env) -> (Server, Instant) {
    let t0 = Instant::now();
    (Server::new(env.cfg, env.rt, t0, UNIX0), t0)
}

#[test]
fn binding_reflects_address() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let req = c.request(METHOD_BINDING, false, |_| {});
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    let m = parse(&resp);
    assert_eq!(m.class(), Class::Success);
    assert_eq!(
        decode_xor_address(m.get(ATTR_XOR_MAPPED_ADDRESS).unwrap(), &m.transaction_id()).unwrap(),
        c.ft.client
    );
    assert!(m.check_fingerprint().unwrap());
    // CHANGE-REQUEST is not served by a single-address server: 420 listing it.
    let req = c.request(METHOD_BINDING, false, |w| {
        w.attr_u32(ATTR_CHANGE_REQUEST, 6).unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    assert_eq!(error_code(&resp), Some(420));
    assert_eq!(
        parse(&resp).get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        [0x00, 0x03]
    );
}

#[test]
fn full_relay_cycle_with_channels_and_indications() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let relay = allocate(&mut s, t0, &mut c);
    assert_eq!(relay, "192.0.2.1:50002".parse().unwrap());
    assert_eq!(s.stats.allocations, 1);

    // Without a permission, peer data is dropped.
    let peer: SocketAddr = "198.51.100.7:9000".parse().unwrap();
    let mut buf = vec![0u8; 64];
    buf[4..9].copy_from_slice(b"hello");
    assert!(s.handle_peer_packet(t0, relay, peer, &mut buf, 5).is_none());
    assert_eq!(s.stats.dropped[DropReason::NoPermission as usize], 1);

    // CreatePermission, then a Send indication goes out and peer data comes back as Data.
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "198.51.100.7:1");
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    assert_eq!(error_code(&resp), None);
    let mut b = vec![0u8; 256];
    let mut w = MessageWriter::new(
        &mut b,
        MessageType::new(METHOD_SEND, Class::Indication),
        [9; 12],
    )
    .unwrap();
    w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).unwrap();
    w.attr(ATTR_DATA, b"ping").unwrap();
    let n = w.finish();
    let t = s.handle_client_packet(t0, c.ft, &b[..n]).unwrap();
    assert_eq!(t.dest, Dest::Peer { relay, peer });
    assert_eq!(t.data, b"ping");

    let t = s.handle_peer_packet(t0, relay, peer, &mut buf, 5).unwrap();
    let m = parse(t.data);
    assert_eq!(m.typ(), MessageType::new(METHOD_DATA, Class::Indication));
    assert_eq!(m.get(ATTR_DATA).unwrap(), b"hello");
    assert_eq!(
        decode_xor_address(m.get(ATTR_XOR_PEER_ADDRESS).unwrap(), &m.transaction_id()).unwrap(),
        peer
    );

    // ChannelBind, then ChannelData both ways without STUN framing.
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4001 << 16).unwrap();
        peer_attr(w, "198.51.100.7:9000");
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
    assert_eq!(s.stats.channels, 1);
    let cd = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
    let t = s.handle_client_packet(t0, c.ft, &cd).unwrap();
    assert_eq!(t.dest, Dest::Peer { relay, peer });
    assert_eq!(t.data, b"abc");
    let t = s.handle_peer_packet(t0, relay, peer, &mut buf, 5).unwrap();
    assert_eq!(
        t.data,
        [0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']
    );

    // ChannelData on an unbound channel is dropped.
    let cd = [0x40, 0x02, 0x00, 0x01, b'x', 0, 0, 0];
    assert!(s.handle_client_packet(t0, c.ft, &cd).is_none());
    assert_eq!(s.stats.dropped[DropReason::NoChannel as usize], 1);

    // Rebinding the number to another peer, or the peer to another number: 400.
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4001 << 16).unwrap();
        peer_attr(w, "198.51.100.8:9000");
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(400)
    );
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4002 << 16).unwrap();
        peer_attr(w, "198.51.100.7:9000");
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(400)
    );
    // Out-of-range channel numbers: 400.
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x3FFF << 16).unwrap();
        peer_attr(w, "198.51.100.7:9000");
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(400)
    );

    // Over TCP, ChannelData to the client is padded to 4 bytes.
    let mut ct = Client::new("203.0.113.10:4001", "bob", "hunter2");
    ct.ft.transport = Transport::Tcp;
    let relay2 = allocate(&mut s, t0, &mut ct);
    let req = ct.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4000 << 16).unwrap();
        peer_attr(w, "198.51.100.7:9000");
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &ct, &req).unwrap()), None);
    let t = s.handle_peer_packet(t0, relay2, peer, &mut buf, 5).unwrap();
    assert_eq!(t.data.len(), 12);
    assert_eq!(&t.data[..4], [0x40, 0x00, 0x00, 0x05]);
}

#[test]
fn timeouts_with_virtual_clock() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let relay = allocate(&mut s, t0, &mut c);
    let peer: SocketAddr = "198.51.100.7:9000".parse().unwrap();
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4001 << 16).unwrap();
        w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).unwrap();
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
    let mut buf = vec![0u8; 64];

    // Permission lapses at 300 s (channel still bound): peer data dropped.
    let t299 = t0 + Duration::from_secs(299);
    s.handle_timeout(t299);
    assert!(s
        .handle_peer_packet(t299, relay, peer, &mut buf, 1)
        .is_some());
    let t300 = t0 + Duration::from_secs(300);
    assert!(s.poll_timeout().unwrap() <= t300);
    s.handle_timeout(t300);
    assert_eq!(s.stats.permissions, 0);
    assert!(s
        .handle_peer_packet(t300, relay, peer, &mut buf, 1)
        .is_none());

    // The nonce is stale after 600 s: 438 with a new nonce; the new nonce works.
    let t601 = t0 + Duration::from_secs(601);
    let req = c.request(METHOD_REFRESH, true, |w| {
        w.attr_u32(ATTR_LIFETIME, 600).unwrap();
    });
    s.handle_timeout(t601);
    // The allocation (600 s) has expired by now.
    assert_eq!(s.stats.allocations, 0);
    assert_eq!(s.stats.allocations_expired, 1);
    assert_eq!(s.stats.channels, 0);
    let resp = exchange(&mut s, t601, &c, &req).unwrap();
    assert_eq!(error_code(&resp), Some(438));
    c.nonce = parse(&resp).get(ATTR_NONCE).unwrap().to_vec();
    let req = c.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t601, &c, &req).unwrap()),
        Some(437)
    );
}

#[test]
fn channel_refresh_keeps_it_alive_and_cooldown_blocks_reuse() {
    let (mut s, t0) = new_server(config(|cfg| cfg.nonce_lifetime = Duration::from_secs(3600)));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let relay = allocate(&mut s, t0, &mut c);
    let bind = |c: &mut Client, peer: &str| {
        c.request(METHOD_CHANNEL_BIND, true, |w| {
            w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4001 << 16).unwrap();
            peer_attr(w, peer);
        })
    };
    let req = bind(&mut c, "198.51.100.7:9000");
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
    // Keep the allocation alive with refreshes.
    let t500 = t0 + Duration::from_secs(500);
    let req = c.request(METHOD_REFRESH, true, |w| {
        w.attr_u32(ATTR_LIFETIME, 3600).map(|_| ()).unwrap();
    });
    let resp = exchange(&mut s, t500, &c, &req).unwrap();
    assert_eq!(
        parse(&resp).get(ATTR_LIFETIME).unwrap(),
        3600u32.to_be_bytes()
    );
    // Channel lapses at 600 s.
    let t600 = t0 + Duration::from_secs(600);
    s.handle_timeout(t600);
    assert_eq!(s.stats.channels, 0);
    let cd = [0x40, 0x01, 0x00, 0x01, b'x', 0, 0, 0];
    assert!(s.handle_client_packet(t600, c.ft, &cd).is_none());
    // During the 5-minute cool-down the number cannot go to another peer.
    let t700 = t0 + Duration::from_secs(700);
    s.handle_timeout(t700);
    let req = bind(&mut c, "198.51.100.8:9000");
    assert_eq!(
        error_code(&exchange(&mut s, t700, &c, &req).unwrap()),
        Some(400)
    );
    // After it, it can.
    let t901 = t0 + Duration::from_secs(901);
    s.handle_timeout(t901);
    let req = bind(&mut c, "198.51.100.8:9000");
    assert_eq!(error_code(&exchange(&mut s, t901, &c, &req).unwrap()), None);
    assert_eq!(s.stats.channels, 1);
    let mut buf = vec![0u8; 16];
    assert!(s
        .handle_peer_packet(
            t901,
            relay,
            "198.51.100.8:9000".parse().unwrap(),
            &mut buf,
            1
        )
        .is_some());
}

#[test]
fn retransmissions_get_identical_answers() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    let tid = [42u8; 12];
    let req = c.request_with_tid(METHOD_ALLOCATE, tid, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let first = exchange(&mut s, t0, &c, &req).unwrap();
    let again = exchange(&mut s, t0 + Duration::from_millis(500), &c, &req).unwrap();
    assert_eq!(first, again);
    assert_eq!(s.allocation_count(), 1);
    // A new transaction on the same 5-tuple: 437.
    let req2 = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req2).unwrap()),
        Some(437)
    );
    // Refresh with lifetime 0 deletes; its retransmission gets the same success.
    let del = c.request(METHOD_REFRESH, true, |w| {
        w.attr_u32(ATTR_LIFETIME, 0).map(|_| ()).unwrap();
    });
    let r1 = exchange(&mut s, t0, &c, &del).unwrap();
    assert_eq!(error_code(&r1), None);
    assert_eq!(parse(&r1).get(ATTR_LIFETIME).unwrap(), [0, 0, 0, 0]);
    assert_eq!(s.allocation_count(), 0);
    let r2 = exchange(&mut s, t0, &c, &del).unwrap();
    assert_eq!(r1, r2);
    // And the 5-tuple can allocate again.
    let req3 = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req3).unwrap()), None);
}

/// Adds the attributes of one test case to a request.
type AddAttrs = Box<dyn Fn(&mut MessageWriter<'_>)>;

#[test]
fn allocate_error_codes() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    let cases: Vec<(u16, AddAttrs)> = vec![
        (400, Box::new(|_| {})),
        (
            442,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[99, 0, 0, 0]).unwrap();
            }),
        ),
        // RFC 6062: a TCP relay needs a TCP/TLS client connection.
        (
            400,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[6, 0, 0, 0]).unwrap();
            }),
        ),
        (
            440,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
                w.attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[0x07, 0, 0, 0])
                    .unwrap();
            }),
        ),
        (
            400,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
                w.attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[0x01, 0, 0, 0])
                    .unwrap();
                w.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[0x02, 0, 0, 0])
                    .unwrap();
            }),
        ),
        (
            400,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
                w.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[0x01, 0, 0, 0])
                    .unwrap();
            }),
        ),
        (
            400,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
                w.attr(ATTR_EVEN_PORT, &[0x80]).unwrap();
                w.attr(ATTR_RESERVATION_TOKEN, &[1; 8]).unwrap();
            }),
        ),
        (
            420,
            Box::new(|w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
                w.attr(0x7777, &[1, 2, 3, 4]).unwrap();
            }),
        ),
    ];
    for (want, f) in cases {
        let req = c.request(METHOD_ALLOCATE, true, |w| f(w));
        let resp = exchange(&mut s, t0, &c, &req).unwrap();
        assert_eq!(error_code(&resp), Some(want));
        // Errors after authentication are signed.
        assert!(parse(&resp).check_integrity(c.key().as_bytes()));
    }
    // Wrong password: 401, unsigned.
    let mut bad = Client::new("203.0.113.9:4001", "alice", "wrong");
    challenge(&mut s, t0, &mut bad);
    let req = bad.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &bad, &req).unwrap();
    assert_eq!(error_code(&resp), Some(401));
    assert!(!parse(&resp).has_integrity());
    assert_eq!(s.stats.auth_failures, 1);
    // Integrity present but NONCE missing: 400.
    let mut buf = vec![0u8; 256];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_ALLOCATE, Class::Request),
        [1; 12],
    )
    .unwrap();
    w.attr(ATTR_USERNAME, b"alice").unwrap();
    w.attr(ATTR_REALM, REALM.as_bytes()).unwrap();
    w.integrity(&c.key()).unwrap();
    let n = w.finish();
    let resp = exchange(&mut s, t0, &c, &buf[..n]).unwrap();
    assert_eq!(error_code(&resp), Some(400));
}

#[test]
fn other_users_requests_get_441_and_families_443() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut c);
    let mut b = Client::new("203.0.113.9:4000", "bob", "hunter2");
    b.nonce = c.nonce.clone();
    let req = b.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &b, &req).unwrap()),
        Some(441)
    );
    // An IPv6 peer on an IPv4-only allocation: 443.
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "[2001:db8::9]:1");
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(443)
    );
}

#[test]
fn peer_policy_refuses_loopback_unless_danger_allowed() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut c);
    for p in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "0.0.0.0:9",
        "224.0.0.1:9",
        "169.254.0.1:9",
    ] {
        let req = c.request(METHOD_CREATE_PERMISSION, true, |w| peer_attr(w, p));
        assert_eq!(
            error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
            Some(403),
            "{p}"
        );
    }
    let (mut s, t0) = new_server(config(|cfg| {
        cfg.peer_policy = PeerPolicy::new(vec![], vec![], vec!["127.0.0.0/8".parse().unwrap()]);
    }));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut c);
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "127.0.0.1:9");
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
}

#[test]
fn quotas_and_drain() {
    let mut cfg = config(|_| {});
    cfg.rt = Arc::new(Runtime::new(AllocationQuota::new(0, 1), Arc::default()));
    let (mut s, t0) = new_server(cfg.clone());
    let mut c1 = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut c1);
    let mut c2 = Client::new("203.0.113.9:4001", "alice", "secret");
    challenge(&mut s, t0, &mut c2);
    let req = c2.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c2, &req).unwrap()),
        Some(486)
    );
    // Deleting the first frees the quota.
    let del = c1.request(METHOD_REFRESH, true, |w| {
        w.attr_u32(ATTR_LIFETIME, 0).map(|_| ()).unwrap();
    });
    exchange(&mut s, t0, &c1, &del).unwrap();
    let req = c2.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c2, &req).unwrap()), None);
    // Draining: no new allocations (508), existing ones keep working.
    cfg.start_draining();
    let mut c3 = Client::new("203.0.113.9:4002", "bob", "hunter2");
    challenge(&mut s, t0, &mut c3);
    let req = c3.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c3, &req).unwrap()),
        Some(508)
    );
    let req = c2.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(error_code(&exchange(&mut s, t0, &c2, &req).unwrap()), None);
}

/// An alternate node of `region` with the usual listeners: UDP and TCP on 3478, TLS on 443,
/// DTLS on 5349, each on `ips`.
fn alt_node(region: &str, ips: &[&str], domain: Option<&str>) -> AlternateNode {
    let on = |port: u16| -> Vec<std::net::SocketAddr> {
        ips.iter()
            .map(|ip| std::net::SocketAddr::new(ip.parse().unwrap(), port))
            .collect()
    };
    AlternateNode {
        region: region.into(),
        listeners: [on(3478), on(3478), on(443), on(5349)],
        tls_domain: domain.map(Into::into),
    }
}

fn alternates_of(resp: &[u8]) -> Vec<std::net::SocketAddr> {
    let m = parse(resp);
    m.get_all(ATTR_ALTERNATE_SERVER)
        .map(|v| decode_address(v).unwrap())
        .collect()
}

/// A draining node with an alternate (RFC 8489 §10): an unauthenticated Allocate gets 300 with
/// ALTERNATE-SERVER of the client's family first (then the other family), unsigned; an
/// authenticated one gets it signed, with a fresh nonce for the alternate; over TLS,
/// ALTERNATE-DOMAIN and the TLS listener; without an alternate, 508 as before.
#[test]
fn a_draining_or_full_node_redirects_allocations_to_its_alternate() {
    let env = config(|_| {});
    let b = || Alternates {
        region: "eu".into(),
        tls_domain: Some("turn-b.example.com".into()),
        nodes: vec![alt_node(
            "eu",
            &["2001:db8::7", "192.0.2.7"],
            Some("turn-b.example.com"),
        )],
    };
    env.set_alternates(b());
    let rt = env.rt.clone();
    let (mut s, t0) = new_server(env);
    let mut live = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut live);
    rt.start_draining();
    let mut c = Client::new("203.0.113.9:4001", "bob", "hunter2");
    let req = c.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert!(!parse(&resp).has_integrity());
    assert!(parse(&resp).get(ATTR_NONCE).is_none());
    assert_eq!(
        alternates_of(&resp),
        [
            "192.0.2.7:3478".parse().unwrap(),
            "[2001:db8::7]:3478".parse().unwrap()
        ]
    );
    // Authenticated (the client had a nonce): signed, with a nonce to go on with.
    let mut d = Client::new("203.0.113.9:4002", "bob", "hunter2");
    rt.set_alternates(Alternates::default());
    challenge(&mut s, t0, &mut d);
    rt.set_alternates(b());
    let req = d.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &d, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert!(parse(&resp).has_integrity());
    assert_eq!(parse(&resp).get(ATTR_REALM).unwrap(), REALM.as_bytes());
    // Its nonce is portable: good from another address (the client's address at the
    // alternate, a node with the same nonce key, may differ), where a bound one is stale.
    let mut elsewhere = Client::new("198.51.100.77:5000", "bob", "hunter2");
    elsewhere.nonce = d.nonce.clone();
    let req = elsewhere.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &elsewhere, &req).unwrap()),
        Some(438)
    );
    elsewhere.nonce = parse(&resp).get(ATTR_NONCE).unwrap().to_vec();
    let req = elsewhere.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &elsewhere, &req).unwrap()),
        Some(300),
        "authenticated with the portable nonce (and redirected, the node still drains)"
    );
    // Portable only for an Allocate: a Refresh with it (a replay from elsewhere of a
    // client's later request) is stale.
    let bound = std::mem::replace(&mut live.nonce, elsewhere.nonce.clone());
    let req = live.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &live, &req).unwrap()),
        Some(438)
    );
    live.nonce = bound;
    // TLS before authentication: the alternate's TLS listener, only because its certificate
    // names this node's domain; no ALTERNATE-DOMAIN in an unsigned 300.
    let mut t = Client::new("203.0.113.9:4003", "bob", "hunter2");
    t.ft.transport = Transport::Tls;
    let req = t.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &t, &req).unwrap();
    assert_eq!(
        alternates_of(&resp),
        [
            "192.0.2.7:443".parse().unwrap(),
            "[2001:db8::7]:443".parse().unwrap()
        ]
    );
    assert_eq!(parse(&resp).get(ATTR_ALTERNATE_DOMAIN), None);
    // Another certificate name: not before authentication (challenged); after it, a signed
    // 300 with ALTERNATE-DOMAIN.
    rt.set_alternates(Alternates {
        tls_domain: Some("turn-a.example.com".into()),
        ..b()
    });
    let req = t.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &t, &req).unwrap();
    assert_eq!(error_code(&resp), Some(401));
    t.nonce = parse(&resp).get(ATTR_NONCE).unwrap().to_vec();
    let req = t.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &t, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert!(parse(&resp).has_integrity());
    assert_eq!(
        parse(&resp).get(ATTR_ALTERNATE_DOMAIN).unwrap(),
        b"turn-b.example.com"
    );
    // The live allocation keeps working.
    let req = live.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &live, &req).unwrap()),
        None
    );
    // No alternate of the client's family: no redirect (the challenge, then 508).
    rt.set_alternates(Alternates {
        region: "eu".into(),
        tls_domain: None,
        nodes: vec![alt_node("eu", &["2001:db8::7"], None)],
    });
    let req = c.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(401)
    );
}

/// A client is only named a listener of the transport it uses: a TCP client is not sent to a
/// node that listens for TCP nowhere (UDP only), a DTLS client gets the DTLS listener; a TLS
/// client is never named a plain port.
#[test]
fn a_redirect_names_a_listener_of_the_clients_transport() {
    let env = config(|_| {});
    let mut udp_only = alt_node("eu", &["192.0.2.8"], None);
    udp_only.listeners[Transport::Tcp as usize].clear();
    udp_only.listeners[Transport::Tls as usize].clear();
    let full = alt_node("eu", &["192.0.2.9"], Some("turn-c.example.com"));
    env.set_alternates(Alternates {
        region: "eu".into(),
        tls_domain: Some("turn-c.example.com".into()),
        nodes: vec![udp_only.clone(), full],
    });
    env.start_draining();
    let (mut s, t0) = new_server(env);
    // Before authentication a TLS or DTLS client only goes to a node whose certificate names
    // this node's domain (the second), and the unsigned 300 carries no ALTERNATE-DOMAIN.
    let cases = [
        (Transport::Udp, "192.0.2.8:3478", None),
        (Transport::Tcp, "192.0.2.9:3478", None),
        (Transport::Tls, "192.0.2.9:443", None),
        (Transport::Dtls, "192.0.2.9:5349", None),
    ];
    for (i, (transport, want, domain)) in cases.into_iter().enumerate() {
        let mut c = Client::new(&format!("203.0.113.9:{}", 4100 + i), "bob", "hunter2");
        c.ft.transport = transport;
        let req = c.request(METHOD_ALLOCATE, false, |w| {
            w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        });
        let resp = exchange(&mut s, t0, &c, &req).unwrap();
        assert_eq!(error_code(&resp), Some(300), "{transport:?}");
        assert_eq!(
            alternates_of(&resp),
            [want.parse::<std::net::SocketAddr>().unwrap()],
            "{transport:?}"
        );
        assert_eq!(
            parse(&resp).get(ATTR_ALTERNATE_DOMAIN),
            domain,
            "{transport:?}"
        );
    }
}

/// Data residency: before authentication the tenant is unknown, so a client is only sent to a
/// node of this node's region (otherwise it is challenged); after authentication, only to a
/// region its tenant may use, and with none, 508 rather than a node elsewhere. Static users
/// and unrestricted tenants may go anywhere.
#[test]
fn a_redirect_never_leaves_the_tenants_allowed_regions() {
    let env = config(|_| {});
    let mut d = directory_snapshot(true, Limits::default());
    d.snap
        .tenant_regions
        .insert("ten_1".into(), vec!["eu".into()]);
    env.directory.install(d);
    // This node is in "eu"; the only other node is in "us".
    env.set_alternates(Alternates {
        region: "eu".into(),
        tls_domain: None,
        nodes: vec![alt_node("us", &["198.51.100.1"], None)],
    });
    env.start_draining();
    let rt = env.rt.clone();
    let (mut s, t0) = new_server(env);
    // Unauthenticated: no node of "eu" to send it to, so the challenge.
    let mut carol = Client::new("203.0.113.9:4200", "carol", "pw");
    challenge(&mut s, t0, &mut carol);
    // Authenticated, the tenant allows only "eu": 508, not the "us" node.
    let req = carol.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &carol, &req).unwrap();
    assert_eq!(error_code(&resp), Some(508));
    assert!(alternates_of(&resp).is_empty());
    // A static user may go to "us" (signed 300).
    let mut bob = Client::new("203.0.113.9:4201", "bob", "hunter2");
    challenge(&mut s, t0, &mut bob);
    let req = bob.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &bob, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert_eq!(
        alternates_of(&resp),
        ["198.51.100.1:3478".parse::<std::net::SocketAddr>().unwrap()]
    );
    // With an "eu" node after the "us" one: the tenant goes to "eu", an unauthenticated
    // client is redirected to "eu" at once.
    rt.set_alternates(Alternates {
        region: "eu".into(),
        tls_domain: None,
        nodes: vec![
            alt_node("us", &["198.51.100.1"], None),
            alt_node("eu", &["192.0.2.7"], None),
        ],
    });
    let req = carol.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &carol, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert_eq!(
        alternates_of(&resp),
        ["192.0.2.7:3478".parse::<std::net::SocketAddr>().unwrap()]
    );
    let mut fresh = Client::new("203.0.113.9:4202", "carol", "pw");
    let req = fresh.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &fresh, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
    assert_eq!(
        alternates_of(&resp),
        ["192.0.2.7:3478".parse::<std::net::SocketAddr>().unwrap()]
    );
}

#[test]
fn a_full_node_redirects_allocations_to_its_alternate() {
    let env = Env {
        rt: Arc::new(Runtime::new(AllocationQuota::new(1, 0), Arc::default())),
        ..config(|_| {})
    };
    env.set_alternates(Alternates {
        region: "eu".into(),
        tls_domain: None,
        nodes: vec![alt_node("eu", &["192.0.2.7"], None)],
    });
    let (mut s, t0) = new_server(env);
    let mut first = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut first);
    let mut c = Client::new("203.0.113.9:4001", "bob", "hunter2");
    let req = c.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    assert_eq!(error_code(&resp), Some(300));
}

#[test]
fn shared_secret_credentials_and_expiry() {
    let (mut s, t0) = new_server(config(|_| {}));
    let user = format!("{}:carol", UNIX0 + 3600);
    let pass = Credentials::shared_secret_password(b"north", &user);
    let mut c = Client::new("203.0.113.9:4000", &user, &pass);
    allocate(&mut s, t0, &mut c);
    let user = format!("{}:dave", UNIX0 - 1);
    let pass = Credentials::shared_secret_password(b"north", &user);
    let mut d = Client::new("203.0.113.9:4001", &user, &pass);
    challenge(&mut s, t0, &mut d);
    let req = d.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &d, &req).unwrap()),
        Some(401)
    );
}

#[test]
fn dual_allocation_even_port_and_reservation() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    let req = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        w.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[0x02, 0, 0, 0])
            .unwrap();
        w.attr(ATTR_EVEN_PORT, &[0x80]).unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    let m = parse(&resp);
    let relays: Vec<_> = m
        .get_all(ATTR_XOR_RELAYED_ADDRESS)
        .map(|v| decode_xor_address(v, &m.transaction_id()).unwrap())
        .collect();
    assert_eq!(relays.len(), 2);
    assert!(relays[0].is_ipv4() && relays[1].is_ipv6());
    assert_eq!(
        m.get(ATTR_RESERVATION_TOKEN).unwrap(),
        0x1122_3344_5566_7788u64.to_be_bytes()
    );
    // IPv6 peers are now fine.
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "[2001:db8::9]:1");
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
}

#[test]
fn relay_failures_map_to_440_and_508() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    for (err, want) in [
        (RelayError::FamilyUnsupported, 440),
        (RelayError::Exhausted, 508),
        (RelayError::BadToken, 508),
    ] {
        let req = c.request(METHOD_ALLOCATE, true, |w| {
            w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        });
        assert!(s.handle_client_packet(t0, c.ft, &req).is_none());
        let Some(Output::CreateRelay(r)) = s.poll_output() else {
            panic!("no relay request")
        };
        s.handle_relay_created(
            t0,
            r.allocation,
            r.generation,
            RelayResult {
                ipv4: Some(Err(err)),
                ipv6: None,
                reservation_token: None,
            },
        );
        let Some(Output::Transmit { data, .. }) = s.poll_output() else {
            panic!("no response")
        };
        assert_eq!(error_code(&data), Some(want));
        assert_eq!(s.allocation_count(), 0);
    }
}

#[test]
fn malformed_input_is_dropped_and_counted() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate(&mut s, t0, &mut c);
    let good = c.request(METHOD_BINDING, false, |_| {});
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        good[..10].to_vec(),
        good[..good.len() - 1].to_vec(),
        vec![0xFF; 40],
        vec![0x40, 0x01, 0xFF, 0xFF, 1, 2],
    ];
    let mut bad_len = good.clone();
    bad_len[3] = bad_len[3].wrapping_add(4);
    inputs.push(bad_len);
    let mut bad_fp = good.clone();
    let n = bad_fp.len();
    bad_fp[n - 1] ^= 0xFF;
    inputs.push(bad_fp);
    let mut bad_attr = good.clone();
    bad_attr[22] = 0xFF; // FINGERPRINT's length runs past the end
    inputs.push(bad_attr);
    for i in &inputs {
        assert!(s.handle_client_packet(t0, c.ft, i).is_none(), "{i:?}");
    }
    assert_eq!(
        s.stats.dropped[DropReason::Malformed as usize],
        inputs.len() as u64
    );
    // Still serving.
    assert!(s.handle_client_packet(t0, c.ft, &good).is_some());
}

#[test]
fn unauthenticated_answers_stay_within_the_sources_byte_budget() {
    let (mut s, t0) = new_server(config(|cfg| {
        cfg.unauth_bytes_burst = 300;
        cfg.unauth_bytes_per_sec = 1;
    }));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let (mut bytes_in, mut bytes_out, mut answered) = (0, 0, 0);
    for _ in 0..20 {
        let req = c.request(METHOD_ALLOCATE, false, |w| {
            w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        });
        bytes_in += req.len();
        if let Some(t) = s.handle_client_packet(t0, c.ft, &req) {
            bytes_out += t.data.len();
            answered += 1;
        }
    }
    assert!(
        answered >= 2,
        "the surplus lets the first challenges through"
    );
    assert!(answered < 20, "then the budget holds them back");
    assert!(
        bytes_out <= bytes_in + 300,
        "{bytes_out} bytes out for {bytes_in} in"
    );
    assert_eq!(
        s.stats.dropped[DropReason::RateLimited as usize],
        20 - answered as u64
    );
    // Bindings come out of the same budget.
    let binding = {
        let mut b = [0u8; 20];
        let w = MessageWriter::new(
            &mut b,
            MessageType::new(METHOD_BINDING, Class::Request),
            [7; 12],
        )
        .unwrap();
        let n = w.finish();
        b[..n].to_vec()
    };
    let mut binding_answers = 0;
    for _ in 0..100 {
        if s.handle_client_packet(t0, c.ft, &binding).is_some() {
            binding_answers += 1;
        }
    }
    assert!(binding_answers < 100);
    // Another source is unaffected.
    let mut d = Client::new("203.0.113.10:4000", "alice", "secret");
    challenge(&mut s, t0, &mut d);
}

#[test]
fn connection_close_removes_tcp_allocation() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    c.ft.transport = Transport::Tcp;
    let relay = allocate(&mut s, t0, &mut c);
    s.handle_connection_closed(t0, c.ft);
    assert_eq!(s.allocation_count(), 0);
    let mut released = false;
    while let Some(o) = s.poll_output() {
        if o == Output::ReleaseRelay(relay) {
            released = true;
        }
    }
    assert!(released);
}

/// The nonce's security feature bits (RFC 8489 §9.2) as base64-decoded bits.
fn nonce_features(nonce: &[u8]) -> u8 {
    use base64::Engine;
    assert!(nonce.starts_with(b"obMatJos2"));
    base64::engine::general_purpose::STANDARD
        .decode(&nonce[9..13])
        .unwrap()[0]
}

#[test]
fn nonce_feature_bits_agree_with_the_challenge_and_the_credentials() {
    // Static users with the control plane's credentials in use: "password algorithms" is set
    // and every challenge, however small the request, carries PASSWORD-ALGORITHMS; "username
    // anonymity" is not set, because ephemeral usernames cannot be found by their hash.
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    let small = c.request(METHOD_ALLOCATE, false, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &small).unwrap();
    let m = parse(&resp);
    assert_eq!(
        m.get(ATTR_PASSWORD_ALGORITHMS).unwrap(),
        [0, 1, 0, 0, 0, 2, 0, 0]
    );
    assert_eq!(nonce_features(m.get(ATTR_NONCE).unwrap()), 0x80);
    // Shared secrets without the control plane: still no anonymity (an `expiry:user` name is
    // not a finite list to hash).
    let (mut s, t0) = new_server(config(|cfg| cfg.directory_credentials = false));
    let resp = exchange(&mut s, t0, &c, &small).unwrap();
    assert_eq!(nonce_features(parse(&resp).get(ATTR_NONCE).unwrap()), 0x80);
    // Static users alone: both bits, and USERHASH finds them.
    let mut creds = Credentials::new();
    creds.add_user("alice", UserSecret::Password("secret".into()));
    let mut cfg = ServerConfig::new(REALM, creds.for_realm(REALM), [5u8; 32]);
    cfg.directory_credentials = false;
    let (mut s, t0) = new_server(cfg.into());
    let resp = exchange(&mut s, t0, &c, &small).unwrap();
    let m = parse(&resp);
    assert_eq!(nonce_features(m.get(ATTR_NONCE).unwrap()), 0xC0);
    assert!(m.get(ATTR_PASSWORD_ALGORITHMS).is_some());
}

#[test]
fn rfc8489_sha256_password_algorithm_userhash_and_integrity_sha256() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    let key = long_term_key_sha256(b"alice", REALM.as_bytes(), b"secret");
    let mut buf = vec![0u8; 512];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_ALLOCATE, Class::Request),
        [77; 12],
    )
    .unwrap();
    w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    w.attr(ATTR_USERHASH, &userhash(b"alice", REALM.as_bytes()))
        .unwrap();
    w.attr(ATTR_REALM, REALM.as_bytes()).unwrap();
    w.attr(ATTR_NONCE, &c.nonce).unwrap();
    w.attr(ATTR_PASSWORD_ALGORITHMS, &[0, 1, 0, 0, 0, 2, 0, 0])
        .unwrap();
    w.attr(ATTR_PASSWORD_ALGORITHM, &[0, 2, 0, 0]).unwrap();
    w.integrity_sha256(&key).unwrap();
    let n = w.finish();
    let resp = exchange(&mut s, t0, &c, &buf[..n]).unwrap();
    let m = parse(&resp);
    assert_eq!(error_code(&resp), None);
    assert!(m.has_integrity_sha256());
    assert!(m.check_integrity(key.as_bytes()));
    // A tampered PASSWORD-ALGORITHMS list (bid-down attempt) is refused with 400.
    let mut c2 = Client::new("203.0.113.9:4001", "alice", "secret");
    challenge(&mut s, t0, &mut c2);
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_ALLOCATE, Class::Request),
        [78; 12],
    )
    .unwrap();
    w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    w.attr(ATTR_USERNAME, b"alice").unwrap();
    w.attr(ATTR_REALM, REALM.as_bytes()).unwrap();
    w.attr(ATTR_NONCE, &c2.nonce).unwrap();
    w.attr(ATTR_PASSWORD_ALGORITHMS, &[0, 1, 0, 0]).unwrap();
    w.attr(ATTR_PASSWORD_ALGORITHM, &[0, 1, 0, 0]).unwrap();
    w.integrity(&c2.key()).unwrap();
    let n = w.finish();
    let c2ft = Client::new("203.0.113.9:4001", "alice", "secret");
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c2ft, &buf[..n]).unwrap()),
        Some(400)
    );
}

#[test]
fn dual_allocation_with_draft_attribute_number() {
    // coturn 4.x sends ADDITIONAL-ADDRESS-FAMILY as 0x8032 (its draft number).
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    challenge(&mut s, t0, &mut c);
    let req = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        w.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT, &[0x02, 0, 0, 0])
            .unwrap();
    });
    let resp = exchange(&mut s, t0, &c, &req).unwrap();
    assert_eq!(parse(&resp).get_all(ATTR_XOR_RELAYED_ADDRESS).count(), 2);
}

/// Allocates a TCP relay (RFC 6062) for a client on TCP.
fn allocate_tcp(s: &mut Server, now: Instant, c: &mut Client) {
    c.ft.transport = Transport::Tcp;
    challenge(s, now, c);
    let req = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[6, 0, 0, 0]).unwrap();
    });
    assert!(s.handle_client_packet(now, c.ft, &req).is_none());
    let Some(Output::CreateRelay(r)) = s.poll_output() else {
        panic!("no relay request")
    };
    assert_eq!(r.transport, RelayTransport::Tcp);
    let relay: SocketAddr = "192.0.2.1:50100".parse().unwrap();
    s.handle_relay_created(
        now,
        r.allocation,
        r.generation,
        RelayResult {
            ipv4: Some(Ok(relay)),
            ipv6: None,
            reservation_token: None,
        },
    );
    let Some(Output::Transmit { data, .. }) = s.poll_output() else {
        panic!("no response")
    };
    assert_eq!(error_code(&data), None);
}

#[test]
fn rfc6062_connect_bind_and_timeouts() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate_tcp(&mut s, t0, &mut c);
    let peer: SocketAddr = "198.51.100.7:80".parse().unwrap();
    // Channels and EVEN-PORT do not apply to TCP relays.
    let req = c.request(METHOD_CHANNEL_BIND, true, |w| {
        w.attr_u32(ATTR_CHANNEL_NUMBER, 0x4001 << 16).unwrap();
        w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(400)
    );

    // Connect -> the driver connects -> success with CONNECTION-ID.
    let connect = |c: &mut Client| {
        c.request(METHOD_CONNECT, true, |w| {
            w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).unwrap();
        })
    };
    let req = connect(&mut c);
    assert!(s.handle_client_packet(t0, c.ft, &req).is_none());
    let Some(Output::ConnectPeer {
        connection,
        relay,
        peer: p,
    }) = s.poll_output()
    else {
        panic!("no connect")
    };
    assert_eq!((relay, p), ("192.0.2.1:50100".parse().unwrap(), peer));
    s.handle_peer_connect_result(t0, connection, true);
    let Some(Output::Transmit { data, .. }) = s.poll_output() else {
        panic!("no response")
    };
    assert_eq!(
        parse(&data).get(ATTR_CONNECTION_ID).unwrap(),
        connection.to_be_bytes()
    );
    // A second Connect to the same peer: 446.
    let req = connect(&mut c);
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(446)
    );

    // ConnectionBind on the control connection: 400. On a data connection by another user: 441.
    let bind = |c: &mut Client, cid: u32| {
        c.request(METHOD_CONNECTION_BIND, true, |w| {
            w.attr_u32(ATTR_CONNECTION_ID, cid).unwrap();
        })
    };
    let req = bind(&mut c, connection);
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(400)
    );
    let mut other = Client::new("203.0.113.9:4001", "bob", "hunter2");
    other.ft.transport = Transport::Tcp;
    other.nonce = c.nonce.clone();
    other.ft.client = "203.0.113.9:4001".parse().unwrap();
    let mut data_conn = Client::new("203.0.113.9:4002", "alice", "secret");
    data_conn.ft.transport = Transport::Tcp;
    data_conn.nonce = c.nonce.clone();
    // (Nonces are bound to the IP, so reuse works from the same host.)
    let req = bind(&mut other, connection);
    assert_eq!(
        error_code(&exchange(&mut s, t0, &other, &req).unwrap()),
        Some(441)
    );
    // The right user on a new connection: success, then the driver splices.
    let req = bind(&mut data_conn, connection);
    let resp = s
        .handle_client_packet(t0, data_conn.ft, &req)
        .unwrap()
        .data
        .to_vec();
    assert_eq!(error_code(&resp), None);
    // A static user is not metered per account; the serial names the allocation.
    let out = s.poll_output();
    assert!(
        matches!(&out, Some(Output::SpliceData { connection: c, data, account: None, allocation })
            if *c == connection && *data == data_conn.ft && *allocation != 0),
        "{out:?}"
    );
    // Binding the same id twice: 400.
    let mut again = Client::new("203.0.113.9:4003", "alice", "secret");
    again.ft.transport = Transport::Tcp;
    again.nonce = c.nonce.clone();
    let req = bind(&mut again, connection);
    assert_eq!(
        error_code(&exchange(&mut s, t0, &again, &req).unwrap()),
        Some(400)
    );

    // Incoming peer connection without a permission: refused.
    let relay: SocketAddr = "192.0.2.1:50100".parse().unwrap();
    let p2: SocketAddr = "198.51.100.8:5555".parse().unwrap();
    assert!(s.handle_incoming_peer_connection(t0, relay, p2).is_none());
    // With one: ConnectionAttempt on the control connection.
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        w.xor_address(ATTR_XOR_PEER_ADDRESS, p2)
            .map(|_| ())
            .unwrap();
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
    let cid2 = s.handle_incoming_peer_connection(t0, relay, p2).unwrap();
    let Some(Output::Transmit { to, data }) = s.poll_output() else {
        panic!("no ConnectionAttempt")
    };
    assert_eq!(to, c.ft);
    let m = parse(&data);
    assert_eq!(
        m.typ(),
        MessageType::new(METHOD_CONNECTION_ATTEMPT, Class::Indication)
    );
    assert_eq!(m.get(ATTR_CONNECTION_ID).unwrap(), cid2.to_be_bytes());
    assert_eq!(
        decode_xor_address(m.get(ATTR_XOR_PEER_ADDRESS).unwrap(), &m.transaction_id()).unwrap(),
        p2
    );
    // No ConnectionBind within 30 s: the peer connection is closed; the bound one is not.
    s.handle_timeout(t0 + Duration::from_secs(31));
    let mut closed = vec![];
    while let Some(o) = s.poll_output() {
        if let Output::ClosePeerConnection(id) = o {
            closed.push(id);
        }
    }
    assert_eq!(closed, vec![cid2]);
}

#[test]
fn rfc6062_connect_failure_is_447_and_tcp_needs_stream_client() {
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    allocate_tcp(&mut s, t0, &mut c);
    let req = c.request(METHOD_CONNECT, true, |w| {
        w.xor_address(ATTR_XOR_PEER_ADDRESS, "198.51.100.7:81".parse().unwrap())
            .unwrap();
    });
    assert!(s.handle_client_packet(t0, c.ft, &req).is_none());
    let Some(Output::ConnectPeer { connection, .. }) = s.poll_output() else {
        panic!("no connect")
    };
    s.handle_peer_connect_result(t0, connection, false);
    let Some(Output::Transmit { data, .. }) = s.poll_output() else {
        panic!("no response")
    };
    assert_eq!(error_code(&data), Some(447));
    // A loopback peer is refused by policy (403) before any connection is attempted.
    let req = c.request(METHOD_CONNECT, true, |w| {
        w.xor_address(ATTR_XOR_PEER_ADDRESS, "127.0.0.1:80".parse().unwrap())
            .unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(403)
    );
    // EVEN-PORT with a TCP relay: 400.
    let mut d = Client::new("203.0.113.9:4009", "bob", "hunter2");
    d.ft.transport = Transport::Tcp;
    challenge(&mut s, t0, &mut d);
    let req = d.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[6, 0, 0, 0]).unwrap();
        w.attr(ATTR_EVEN_PORT, &[0x80]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &d, &req).unwrap()),
        Some(400)
    );
}

#[test]
fn challenges_over_tcp_are_not_rate_limited() {
    let (mut s, t0) = new_server(config(|cfg| {
        cfg.unauth_bytes_burst = 2;
        cfg.unauth_bytes_per_sec = 1;
    }));
    let mut c = Client::new("203.0.113.9:4000", "alice", "secret");
    c.ft.transport = Transport::Tcp;
    for _ in 0..10 {
        let req = c.request(METHOD_ALLOCATE, false, |w| {
            w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        });
        assert!(s.handle_client_packet(t0, c.ft, &req).is_some());
    }
}

#[test]
fn rfc5780_change_request_response_port_and_other_address() {
    let (mut s, t0) = new_server(config(|cfg| {
        cfg.rfc5780 = Some(Rfc5780 {
            primary_ip: "192.0.2.1".parse().unwrap(),
            alternate_ip: "192.0.2.2".parse().unwrap(),
            primary_port: 3478,
            alternate_port: 3479,
        });
    }));
    let c = Client::new("203.0.113.9:4000", "alice", "secret");
    let attr_addr = |m: &Message<'_>, t: u16| decode_address(m.get(t).unwrap()).unwrap();
    for (flags, origin) in [
        (0u8, "192.0.2.1:3478"),
        (0x04, "192.0.2.2:3478"),
        (0x02, "192.0.2.1:3479"),
        (0x06, "192.0.2.2:3479"),
    ] {
        let mut buf = vec![0u8; 128];
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(METHOD_BINDING, Class::Request),
            [flags; 12],
        )
        .unwrap();
        w.attr(ATTR_CHANGE_REQUEST, &[0, 0, 0, flags]).unwrap();
        let n = w.finish();
        let t = s.handle_client_packet(t0, c.ft, &buf[..n]).unwrap();
        let origin: SocketAddr = origin.parse().unwrap();
        let Dest::Client(to) = t.dest else {
            panic!("not to the client")
        };
        assert_eq!((to.client, to.server), (c.ft.client, origin));
        let m = parse(t.data);
        assert_eq!(attr_addr(&m, ATTR_RESPONSE_ORIGIN), origin);
        assert_eq!(
            attr_addr(&m, ATTR_OTHER_ADDRESS),
            "192.0.2.2:3479".parse().unwrap()
        );
        assert_eq!(
            decode_xor_address(m.get(ATTR_XOR_MAPPED_ADDRESS).unwrap(), &m.transaction_id())
                .unwrap(),
            c.ft.client
        );
    }
    // RESPONSE-PORT sends the answer to another port of the client.
    let mut buf = vec![0u8; 128];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_BINDING, Class::Request),
        [9; 12],
    )
    .unwrap();
    w.attr(ATTR_RESPONSE_PORT, &[0x15, 0xb3, 0, 0]).unwrap();
    let n = w.finish();
    let t = s.handle_client_packet(t0, c.ft, &buf[..n]).unwrap();
    let Dest::Client(to) = t.dest else {
        panic!("not to the client")
    };
    assert_eq!(to.client, "203.0.113.9:5555".parse().unwrap());
    // Over TCP, CHANGE-REQUEST is not served (RFC 5780 is UDP only): 420.
    let mut tcp = Client::new("203.0.113.9:4001", "alice", "secret");
    tcp.ft.transport = Transport::Tcp;
    let req = tcp.request(METHOD_BINDING, false, |w| {
        w.attr(ATTR_CHANGE_REQUEST, &[0, 0, 0, 6]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &tcp, &req).unwrap()),
        Some(420)
    );
}

/// A directory with one stored credential ("carol", `cred_1` of `ten_1`) and one tenant
/// secret; more stored users can be added before it is installed.
struct TestDirectory {
    snap: Snapshot,
    /// (username, password, credential id, tenant id, enabled).
    users: Vec<(&'static str, &'static str, &'static str, &'static str, bool)>,
}

impl std::ops::Deref for TestDirectory {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

impl std::ops::DerefMut for TestDirectory {
    fn deref_mut(&mut self) -> &mut Snapshot {
        &mut self.snap
    }
}

fn directory_snapshot(enabled: bool, limits: Limits) -> TestDirectory {
    let mut s = Snapshot::default();
    s.tenant_secrets
        .insert("ten_1".into(), vec![b"tenant-secret".to_vec()]);
    s.credential_limits.insert("cred_1".into(), limits);
    TestDirectory {
        snap: s,
        users: vec![("carol", "pw", "cred_1", "ten_1", enabled)],
    }
}

/// Publishes a test directory: its snapshot, and its stored users as the whole credential
/// table.
trait Install {
    fn install(&self, d: TestDirectory);
}

impl Install for Directory {
    fn install(&self, d: TestDirectory) {
        let mut table = CredentialTable::new();
        for (user, pw, id, tenant, enabled) in d.users {
            let md5 = long_term_key(user.as_bytes(), REALM.as_bytes(), pw.as_bytes());
            let sha = long_term_key_sha256(user.as_bytes(), REALM.as_bytes(), pw.as_bytes());
            table.upsert(&CredentialRecord {
                id,
                tenant_id: tenant,
                username: user,
                key_md5: md5.as_bytes().try_into().expect("an MD5 key is 16 bytes"),
                key_sha256: sha
                    .as_bytes()
                    .try_into()
                    .expect("a SHA-256 key is 32 bytes"),
                enabled,
                expires_at: None,
            });
        }
        self.replace_credentials(table);
        self.publish(d.snap);
    }
}

#[test]
fn stored_credentials_are_metered_disabled_and_disconnected() {
    let cfg = config(|_| {});
    cfg.directory
        .install(directory_snapshot(true, Limits::default()));
    let (mut s, t0) = new_server(cfg.clone());
    let mut c = Client::new("203.0.113.5:4000", "carol", "pw");
    let relay = allocate(&mut s, t0, &mut c);
    let ev = s.poll_accounting(t0);
    assert!(
        matches!(&ev[..], [AccountingEvent::Started { account, username, .. }]
            if &*account.tenant_id == "ten_1" && username == "carol"),
        "{ev:?}"
    );
    // Relay 5 bytes each way through a permission.
    let req = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "198.51.100.7:9000");
    });
    assert_eq!(error_code(&exchange(&mut s, t0, &c, &req).unwrap()), None);
    let mut buf = vec![0u8; 2048];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_SEND, Class::Indication),
        [9; 12],
    )
    .unwrap();
    peer_attr(&mut w, "198.51.100.7:9000");
    w.attr(ATTR_DATA, b"hello").unwrap();
    let n = w.finish();
    assert!(s.handle_client_packet(t0, c.ft, &buf[..n]).is_some());
    let peer: SocketAddr = "198.51.100.7:9000".parse().unwrap();
    let mut pbuf = [0u8; 64];
    pbuf[PEER_HEADROOM..PEER_HEADROOM + 5].copy_from_slice(b"world");
    let back = s
        .handle_peer_packet(t0, relay, peer, &mut pbuf, 5)
        .unwrap()
        .data
        .len();
    let ev = s.poll_accounting(t0 + Duration::from_secs(1));
    let [AccountingEvent::Usage { delta, .. }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(delta.bytes, [n as u64, 5, 5, back as u64]);
    assert_eq!(delta.packets, [1, 1, 1, 1]);
    assert!(s.poll_accounting(t0).is_empty(), "reported once");

    // Disabled: the next request is refused, the live allocation stays until disconnected.
    cfg.directory
        .install(directory_snapshot(false, Limits::default()));
    let req = c.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(401)
    );
    assert_eq!(s.allocation_count(), 1);
    cfg.directory
        .disconnect(Disconnect::Credential("cred_1".into()));
    s.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(s.allocation_count(), 0);
    let ev = s.poll_accounting(t0 + Duration::from_secs(2));
    // The refused Refresh is reported for the credential's tenant, then the end.
    assert!(
        matches!(&ev[..], [AccountingEvent::AuthFailed { tenants, .. }, AccountingEvent::Ended { total, peers: 1, .. }]
            if total.bytes[1] == 5 && tenants.len() == 1),
        "{ev:?}"
    );

    // Re-enabled but refused by a quota action: 486.
    cfg.directory.install(directory_snapshot(
        true,
        Limits {
            refuse: true,
            ..Default::default()
        },
    ));
    let mut c2 = Client::new("203.0.113.5:4001", "carol", "pw");
    challenge(&mut s, t0, &mut c2);
    let req = c2.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c2, &req).unwrap()),
        Some(486)
    );

    // At most one concurrent allocation for the credential.
    cfg.directory.install(directory_snapshot(
        true,
        Limits {
            max_allocations: Some(1),
            ..Default::default()
        },
    ));
    allocate(&mut s, t0, &mut c2);
    let mut c3 = Client::new("203.0.113.5:4002", "carol", "pw");
    challenge(&mut s, t0, &mut c3);
    let req = c3.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c3, &req).unwrap()),
        Some(486)
    );
    // Shutdown reports the end of what is still live.
    s.close_all(t0);
    let ev = s.poll_accounting(t0);
    assert!(ev
        .iter()
        .any(|e| matches!(e, AccountingEvent::Ended { .. })));
    assert_eq!(cfg.quota.scope_count("c:cred_1"), 0);
}

#[test]
fn ephemeral_credentials_and_revocation() {
    let cfg = config(|_| {});
    cfg.directory
        .install(directory_snapshot(true, Limits::default()));
    let (mut s, t0) = new_server(cfg.clone());
    let user = format!("{}:ten_1:dave", UNIX0 + 60);
    let pw = Credentials::shared_secret_password(b"tenant-secret", &user);
    let mut c = Client::new("203.0.113.6:4000", &user, &pw);
    allocate(&mut s, t0, &mut c);
    let ev = s.poll_accounting(t0);
    assert!(
        matches!(&ev[..], [AccountingEvent::Started { account, .. }]
            if account.user_id.as_deref() == Some("dave") && account.credential_id.is_none()),
        "{ev:?}"
    );
    // A wrong password for a tenant-scoped name is refused.
    let mut bad = Client::new("203.0.113.6:4001", &user, "nope");
    challenge(&mut s, t0, &mut bad);
    let req = bad.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &bad, &req).unwrap()),
        Some(401)
    );
    // The refusal is reported for the tenant the name carries (the first 401, the challenge
    // without MESSAGE-INTEGRITY, is not a failure).
    let ev = s.poll_accounting(t0);
    assert!(
        matches!(&ev[..], [AccountingEvent::AuthFailed { tenants, username, client, .. }]
            if tenants.len() == 1 && &*tenants[0] == "ten_1" && *username == user
                && client.to_string() == "203.0.113.6:4001"),
        "{ev:?}"
    );
    // Revoking the user id refuses its next request.
    let mut snap = directory_snapshot(true, Limits::default());
    snap.revoked_users
        .insert(("ten_1".into(), "dave".into()), UNIX0 + 3600);
    cfg.directory.install(snap);
    let req = c.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(401)
    );
}

/// A suspended tenant: its stored and ephemeral credentials are refused (401, reported as a
/// refused request of the tenant) from the next request on; resumed, they work again.
#[test]
fn a_suspended_tenants_credentials_are_refused() {
    let cfg = config(|_| {});
    cfg.directory
        .install(directory_snapshot(true, Limits::default()));
    let (mut s, t0) = new_server(cfg.clone());
    let user = format!("{}:ten_1:erin", UNIX0 + 60);
    let pw = Credentials::shared_secret_password(b"tenant-secret", &user);
    let mut eph = Client::new("203.0.113.7:4000", &user, &pw);
    allocate(&mut s, t0, &mut eph);
    let mut stored = Client::new("203.0.113.7:4001", "carol", "pw");
    allocate(&mut s, t0, &mut stored);
    s.poll_accounting(t0);

    let mut d = directory_snapshot(true, Limits::default());
    d.snap.suspended_tenants.insert("ten_1".into());
    cfg.directory.install(d);
    for c in [&mut eph, &mut stored] {
        let req = c.request(METHOD_REFRESH, true, |_| {});
        let resp = exchange(&mut s, t0, c, &req).unwrap();
        assert_eq!(error_code(&resp), Some(401));
    }
    let mut fresh = Client::new("203.0.113.7:4002", "carol", "pw");
    challenge(&mut s, t0, &mut fresh);
    let req = fresh.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &fresh, &req).unwrap()),
        Some(401)
    );
    let ev = s.poll_accounting(t0);
    let reasons: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            AccountingEvent::AuthFailed {
                reason, tenants, ..
            } if &*tenants[0] == "ten_1" => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["tenant suspended"; 3], "{ev:?}");

    // Resumed: the same credentials work again.
    cfg.directory
        .install(directory_snapshot(true, Limits::default()));
    let req = stored.request(METHOD_REFRESH, true, |_| {});
    assert_eq!(
        error_code(&exchange(&mut s, t0, &stored, &req).unwrap()),
        None
    );
}

/// RFC 6062 data connections are spliced by the driver, which hands the copied bytes back: they
/// are reported as usage of the account, both legs of each way, summed per account and
/// allocation serial, once.
#[test]
fn spliced_bytes_are_reported_as_usage_of_their_account() {
    let cfg = config(|_| {});
    let (mut s, t0) = new_server(cfg);
    let a = Arc::new(Account {
        tenant_id: "ten_1".into(),
        credential_id: Some("cred_1".into()),
        user_id: None,
    });
    let b = Arc::new(Account {
        tenant_id: "ten_2".into(),
        credential_id: None,
        user_id: Some("bob".into()),
    });
    s.handle_spliced(Transport::Tcp, Some((&a, 7)), true, 100);
    s.handle_spliced(Transport::Tcp, Some((&a, 7)), true, 20);
    s.handle_spliced(Transport::Tcp, Some((&a, 7)), false, 7);
    s.handle_spliced(Transport::Tcp, Some((&b, 9)), false, 3);
    s.handle_spliced(Transport::Tcp, None, false, 1000); // a static user: statistics only
    let mut ev = s.poll_accounting(t0);
    ev.sort_by_key(|e| match e {
        AccountingEvent::Usage { account, .. } => account.tenant_id.to_string(),
        other => panic!("{other:?}"),
    });
    let [AccountingEvent::Usage {
        account: ua,
        delta: da,
        ..
    }, AccountingEvent::Usage {
        account: ub,
        delta: db,
        ..
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert!(Arc::ptr_eq(ua, &a) && Arc::ptr_eq(ub, &b));
    assert_eq!(da.bytes, [120, 120, 7, 7]);
    assert_eq!(da.packets, [2, 2, 1, 1]);
    assert_eq!(db.bytes, [0, 0, 3, 3]);
    assert!(s.poll_accounting(t0).is_empty(), "reported once");
}

#[test]
fn tenants_without_a_quota_get_the_default_allocation_cap() {
    let cfg = config(|c| c.default_tenant_max_allocations = Some(2));
    cfg.directory
        .install(directory_snapshot(true, Limits::default()));
    let (mut s, t0) = new_server(cfg.clone());
    for i in 0..2 {
        let user = format!("{}:ten_1:u{i}", UNIX0 + 600);
        let pw = Credentials::shared_secret_password(b"tenant-secret", &user);
        let mut c = Client::new(&format!("203.0.113.7:{}", 4000 + i), &user, &pw);
        allocate(&mut s, t0, &mut c);
    }
    let user = format!("{}:ten_1:u9", UNIX0 + 600);
    let pw = Credentials::shared_secret_password(b"tenant-secret", &user);
    let mut c = Client::new("203.0.113.7:4009", &user, &pw);
    challenge(&mut s, t0, &mut c);
    let req = c.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &c, &req).unwrap()),
        Some(486)
    );
    // A tenant quota of its own wins over the default.
    let mut snap = directory_snapshot(true, Limits::default());
    snap.tenant_limits.insert(
        "ten_1".into(),
        Limits {
            max_allocations: Some(5),
            ..Default::default()
        },
    );
    cfg.directory.install(snap);
    allocate(&mut s, t0, &mut c);
}

#[test]
fn one_username_in_two_tenants_authenticates_each_by_its_own_key() {
    let cfg = config(|_| {});
    let mut snap = directory_snapshot(true, Limits::default());
    snap.users
        .push(("carol", "other-pw", "cred_2", "ten_2", true));
    cfg.directory.install(snap);
    let (mut s, t0) = new_server(cfg);
    let mut a = Client::new("203.0.113.8:4000", "carol", "pw");
    allocate(&mut s, t0, &mut a);
    let mut b = Client::new("203.0.113.8:4001", "carol", "other-pw");
    allocate(&mut s, t0, &mut b);
    let tenants: Vec<_> = s
        .poll_accounting(t0)
        .into_iter()
        .filter_map(|e| match e {
            AccountingEvent::Started { account, .. } => Some(account.tenant_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(tenants, ["ten_1", "ten_2"]);
    let mut wrong = Client::new("203.0.113.8:4002", "carol", "neither");
    challenge(&mut s, t0, &mut wrong);
    let req = wrong.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, t0, &wrong, &req).unwrap()),
        Some(401)
    );
}

/// Requests of an allocation made before its credential expired, `at` seconds after `t0`.
fn after_expiry(
    s: &mut Server,
    t0: Instant,
    c: &mut Client,
    at: u64,
) -> (Option<u16>, Option<u16>) {
    let now = t0 + Duration::from_secs(at);
    let perm = c.request(METHOD_CREATE_PERMISSION, true, |w| {
        peer_attr(w, "198.51.100.7:1");
    });
    let p = error_code(&exchange(s, now, c, &perm).unwrap());
    let refresh = c.request(METHOD_REFRESH, true, |w| {
        w.attr_u32(ATTR_LIFETIME, 600).map(|_| ()).unwrap();
    });
    let r = error_code(&exchange(s, now, c, &refresh).unwrap());
    (p, r)
}

#[test]
fn calls_outlive_their_credentials_within_the_grace() {
    // A shared-secret credential valid through UNIX0 + 30.
    let user = format!("{}:dave", UNIX0 + 30);
    let pw = Credentials::shared_secret_password(b"north", &user);
    let (mut s, t0) = new_server(config(|_| {}));
    let mut c = Client::new("203.0.113.20:4000", &user, &pw);
    allocate(&mut s, t0, &mut c);
    // Two minutes after expiry the allocation still permits and refreshes (default grace 24 h).
    assert_eq!(after_expiry(&mut s, t0, &mut c, 150), (None, None));
    // A new allocation needs a valid credential.
    let mut d = Client::new("203.0.113.20:4001", &user, &pw);
    let now = t0 + Duration::from_secs(150);
    challenge(&mut s, now, &mut d);
    let req = d.request(METHOD_ALLOCATE, true, |w| {
        w.attr(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    });
    assert_eq!(
        error_code(&exchange(&mut s, now, &d, &req).unwrap()),
        Some(401)
    );

    // A grace of 100 s ends at expiry + 100 s.
    let (mut s, t0) = new_server(config(|cfg| {
        cfg.credential_grace = Duration::from_secs(100);
    }));
    let mut c = Client::new("203.0.113.20:4000", &user, &pw);
    allocate(&mut s, t0, &mut c);
    assert_eq!(after_expiry(&mut s, t0, &mut c, 120), (None, None));
    let (p, r) = after_expiry(&mut s, t0, &mut c, 140);
    assert_eq!((p, r), (Some(401), Some(401)));

    // No grace: today's behaviour, every request needs a valid credential.
    let (mut s, t0) = new_server(config(|cfg| cfg.credential_grace = Duration::ZERO));
    let mut c = Client::new("203.0.113.20:4000", &user, &pw);
    allocate(&mut s, t0, &mut c);
    assert_eq!(after_expiry(&mut s, t0, &mut c, 31), (Some(401), Some(401)));
}

#[test]
fn a_revoked_credential_gets_no_grace_and_a_refuse_quota_ends_it() {
    let env = config(|_| {});
    env.directory
        .install(directory_snapshot(true, Limits::default()));
    let (mut s, t0) = new_server(env.clone());
    let user = format!("{}:ten_1:erin", UNIX0 + 30);
    let pw = Credentials::shared_secret_password(b"tenant-secret", &user);
    let mut c = Client::new("203.0.113.21:4000", &user, &pw);
    allocate(&mut s, t0, &mut c);
    assert_eq!(after_expiry(&mut s, t0, &mut c, 60), (None, None));
    // Revoked: refused at once, grace or not.
    let mut snap = directory_snapshot(true, Limits::default());
    snap.revoked_usernames.insert(user, UNIX0 + 3600);
    env.directory.install(snap);
    assert_eq!(after_expiry(&mut s, t0, &mut c, 61), (Some(401), Some(401)));
    // Another allocation living on its grace is closed by a refuse quota within the next tick.
    env.directory
        .install(directory_snapshot(true, Limits::default()));
    let user2 = format!("{}:ten_1:fred", UNIX0 + 30);
    let pw2 = Credentials::shared_secret_password(b"tenant-secret", &user2);
    let mut c2 = Client::new("203.0.113.21:4001", &user2, &pw2);
    allocate(&mut s, t0, &mut c2);
    let mut snap = directory_snapshot(true, Limits::default());
    snap.tenant_limits.insert(
        "ten_1".into(),
        Limits {
            refuse: true,
            ..Default::default()
        },
    );
    env.directory.install(snap);
    let live = s.allocation_count();
    s.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(
        s.allocation_count(),
        live - 2,
        "both expired-credential allocations end"
    );
}
