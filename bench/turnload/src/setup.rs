//! Making the allocations: each over its own UDP socket or TCP/TLS connection, Allocate (401
//! challenge, then authenticated), then ChannelBind or CreatePermission towards an echo peer.
//! Several threads with blocking sockets and timeouts; every wait is bounded.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use turnpike_stun::{long_term_key, TransactionId};

use crate::req::{self, Auth, Reply, Request};
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A client's connection to the server.
pub(crate) enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    pub(crate) fn fd(&self) -> i32 {
        match self {
            Self::Udp(s) => s.as_raw_fd(),
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Tls(s) => s.sock.as_raw_fd(),
        }
    }
}

/// One allocation ready to relay.
pub(crate) struct Alloc {
    pub(crate) conn: Conn,
    pub(crate) relay: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) channel: u16,
    /// What authenticates this allocation's later requests (refreshes).
    pub(crate) session: Session,
}

/// A client's authentication state after its Allocate: the nonce is renewed on 438.
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) realm: Vec<u8>,
    pub(crate) nonce: Vec<u8>,
    pub(crate) key: turnpike_stun::Key,
}

/// How the allocations authenticate.
#[derive(Clone)]
pub(crate) enum Creds {
    /// A static user or a stored (API-minted) credential: same wire.
    Static { user: String, password: String },
    /// REST shared secret: a username `expiry:user-N` per allocation, password
    /// base64(HMAC-SHA1(secret, username)).
    Secret {
        secret: String,
        user: String,
        ttl: u64,
    },
}

impl Creds {
    fn for_alloc(&self, i: usize) -> (String, String) {
        match self {
            Self::Static { user, password } => (user.clone(), password.clone()),
            Self::Secret { secret, user, ttl } => {
                let expiry = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    + ttl;
                let name = format!("{expiry}:{user}-{i}");
                (name.clone(), rest_password(secret, &name))
            }
        }
    }
}

/// The TURN REST API password of `username` (draft-uberti-behave-turn-rest, as coturn).
pub(crate) fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Everything setup needs, shared by the threads.
pub(crate) struct Plan {
    pub(crate) server: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub(crate) creds: Creds,
    pub(crate) send_indications: bool,
    pub(crate) peers: Vec<SocketAddr>,
    pub(crate) sock_buf: usize,
    /// UDP clients bind to 127.1.0.1 + (i mod source_ips); 0: all on 127.0.0.1.
    pub(crate) source_ips: usize,
}

/// Makes `n` allocations with `threads` threads; the first failure stops the others and is
/// returned.
pub(crate) fn make_all(plan: &Plan, n: usize, threads: usize) -> Result<Vec<Alloc>, String> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let done: Mutex<Vec<(usize, Alloc)>> = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (next, failed, first_error, done) = (&next, &failed, &first_error, &done);
            s.spawn(move || {
                let mut counter = 0u32;
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    match make_one(plan, i, t as u32, &mut counter) {
                        Ok(a) => done.lock().unwrap_or_else(|p| p.into_inner()).push((i, a)),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            let mut fe = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            fe.get_or_insert(format!("allocation {i}: {e}"));
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, a)| a).collect())
}

pub(crate) fn tid(thread: u32, counter: &mut u32, i: usize) -> TransactionId {
    *counter = counter.wrapping_add(1);
    let mut t = [0u8; 12];
    t[0..4].copy_from_slice(&thread.to_be_bytes());
    t[4..8].copy_from_slice(&counter.to_be_bytes());
    t[8..12].copy_from_slice(&(i as u32).to_be_bytes());
    t
}

fn connect(plan: &Plan, i: usize) -> Result<Conn, String> {
    match plan.transport {
        Transport::Udp => {
            let ip = if plan.source_ips == 0 {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::from(0x7f01_0001 + (i % plan.source_ips) as u32)
            };
            let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
            s.connect(plan.server)
                .map_err(|e| format!("connect: {e}"))?;
            sys::set_buffers(s.as_raw_fd(), plan.sock_buf);
            Ok(Conn::Udp(s))
        }
        Transport::Tcp | Transport::Tls => {
            let s = TcpStream::connect_timeout(&plan.server, Duration::from_secs(5))
                .map_err(|e| format!("TCP connect to {}: {e}", plan.server))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            if plan.transport == Transport::Tcp {
                return Ok(Conn::Tcp(s));
            }
            let (cfg, name) = plan.tls.as_ref().ok_or("TLS without a client config")?;
            let c = ClientConnection::new(cfg.clone(), name.clone())
                .map_err(|e| format!("TLS: {e}"))?;
            Ok(Conn::Tls(Box::new(StreamOwned::new(c, s))))
        }
    }
}

/// Sends a request and waits for its answer: UDP retransmits 6 times 250 ms apart, streams wait
/// 5 s (their socket timeout).
pub(crate) fn transact(
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    req: &[u8],
    tid: &TransactionId,
) -> Result<Reply, String> {
    match conn {
        Conn::Udp(s) => {
            let mut buf = [0u8; 2048];
            for _ in 0..6 {
                s.send(req).map_err(|e| format!("send: {e}"))?;
                let deadline = Instant::now() + Duration::from_millis(250);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
                    match s.recv(&mut buf) {
                        Ok(n) => {
                            if let Some(r) = req::read_reply(&buf[..n], tid)? {
                                return Ok(r);
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            break
                        }
                        Err(e) => return Err(format!("recv: {e}")),
                    }
                }
            }
            Err("no answer after 6 tries (1.5 s)".into())
        }
        Conn::Tcp(s) => stream_transact(s, rbuf, req, tid),
        Conn::Tls(s) => stream_transact(s.as_mut(), rbuf, req, tid),
    }
}

fn stream_transact<S: Read + Write>(
    s: &mut S,
    rbuf: &mut Vec<u8>,
    req: &[u8],
    tid: &TransactionId,
) -> Result<Reply, String> {
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("flush: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tmp = [0u8; 4096];
    loop {
        while let Some(n) =
            turnpike_stun::frame_len(rbuf).map_err(|e| format!("bad stream framing: {e:?}"))?
        {
            let frame: Vec<u8> = rbuf.drain(..n).collect();
            if frame[0] >> 6 == 0 {
                if let Some(r) = req::read_reply(&frame, tid)? {
                    return Ok(r);
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no answer within 5 s".into());
        }
        match s.read(&mut tmp) {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Allocate with the 401 dance, then a channel or a permission towards this allocation's peer.
fn make_one(plan: &Plan, i: usize, thread: u32, counter: &mut u32) -> Result<Alloc, String> {
    let mut conn = connect(plan, i)?;
    let mut rbuf = Vec::new();
    let mut buf = [0u8; 1024];
    let (user, password) = plan.creds.for_alloc(i);
    let peer = plan.peers[i % plan.peers.len()];
    let t = tid(thread, counter, i);
    let n = req::write(&mut buf, t, &Request::Allocate, None)?;
    let (realm, nonce) = match transact(&mut conn, &mut rbuf, &buf[..n], &t)? {
        Reply::Challenge { realm, nonce } => (realm, nonce),
        Reply::Success { .. } => return Err("Allocate without credentials succeeded".into()),
        Reply::Error { code, reason } => return Err(format!("Allocate: {code} {reason}")),
    };
    let key = long_term_key(user.as_bytes(), &realm, password.as_bytes());
    let mut nonce = nonce;
    let mut relay = None;
    for _ in 0..3 {
        let auth = Auth {
            user: &user,
            realm: &realm,
            nonce: &nonce,
            key: &key,
        };
        let t = tid(thread, counter, i);
        let n = req::write(&mut buf, t, &Request::Allocate, Some(&auth))?;
        match transact(&mut conn, &mut rbuf, &buf[..n], &t)? {
            Reply::Success { relay: r } => {
                relay = Some(r.ok_or("Allocate success without XOR-RELAYED-ADDRESS")?);
                break;
            }
            Reply::Challenge { nonce: n2, .. } => nonce = n2, // 438 stale nonce (or 401 again)
            Reply::Error { code, reason } => return Err(format!("Allocate: {code} {reason}")),
        }
    }
    let relay = relay.ok_or("Allocate refused 3 times (wrong credentials?)")?;
    let channel = 0x4000;
    let request = if plan.send_indications {
        Request::CreatePermission { peer }
    } else {
        Request::ChannelBind { channel, peer }
    };
    for attempt in 0..3 {
        let auth = Auth {
            user: &user,
            realm: &realm,
            nonce: &nonce,
            key: &key,
        };
        let t = tid(thread, counter, i);
        let n = req::write(&mut buf, t, &request, Some(&auth))?;
        match transact(&mut conn, &mut rbuf, &buf[..n], &t)? {
            Reply::Success { .. } => break,
            Reply::Challenge { nonce: n2, .. } if attempt < 2 => nonce = n2,
            Reply::Challenge { .. } => return Err("ChannelBind/CreatePermission: 401".into()),
            Reply::Error { code, reason } => {
                return Err(format!("ChannelBind/CreatePermission: {code} {reason}"))
            }
        }
    }
    if !rbuf.is_empty() {
        return Err("unexpected bytes after setup".into());
    }
    Ok(Alloc {
        conn,
        relay,
        peer,
        channel,
        session: Session {
            user,
            realm,
            nonce,
            key,
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rest_password_is_base64_hmac_sha1_of_the_username() {
        // Computed independently: base64(HMAC-SHA1("north", "1700000000:someuser")).
        assert_eq!(
            super::rest_password("north", "1700000000:someuser"),
            "Qt6U2ka+4lekSY363Ibwtyau5VY="
        );
    }
}
