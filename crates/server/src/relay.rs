//! Relay sockets: port selection in the configured range, EVEN-PORT and RESERVATION-TOKEN
//! (the reserved odd port is held in a registry shared by all workers, because the request that
//! redeems the token may arrive on another worker), and the per-relay receive task.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use turnpike_proto::{RelayError, PEER_HEADROOM, PEER_TAILROOM};

use crate::worker::Worker;

/// How long a reserved port is held (RFC 8656 §7.2: about 30 s).
const RESERVATION_HOLD: Duration = Duration::from_secs(30);
/// Random ports tried before giving up with 508.
const BIND_ATTEMPTS: usize = 64;

/// Ports reserved by EVEN-PORT with the R bit, by token.
#[derive(Default)]
pub struct Reservations {
    inner: Mutex<HashMap<u64, (UdpSocket, Instant)>>,
}

impl Reservations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (UdpSocket, Instant)>> {
        // Poisoning only means a worker panicked while holding it; the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn put(&self, sock: UdpSocket, now: Instant) -> u64 {
        let mut m = self.lock();
        m.retain(|_, (_, at)| now.saturating_duration_since(*at) < RESERVATION_HOLD);
        loop {
            let token: u64 = rand::thread_rng().gen();
            if let std::collections::hash_map::Entry::Vacant(e) = m.entry(token) {
                e.insert((sock, now));
                return token;
            }
        }
    }

    pub(crate) fn take(&self, token: u64, now: Instant) -> Option<UdpSocket> {
        let mut m = self.lock();
        let (s, at) = m.remove(&token)?;
        (now.saturating_duration_since(at) < RESERVATION_HOLD).then_some(s)
    }
}

fn bind_one(ip: IpAddr, port: u16, dont_fragment: bool, buffer: usize) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    if dont_fragment {
        set_dont_fragment(&s, addr.is_ipv6());
    }
    crate::udp::size_buffers(&s, buffer);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn set_dont_fragment(s: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let (level, opt, val) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: setsockopt with a valid fd, a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            &val as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Binds a relay socket on `ip` in `[min, max]`; with `even`, an even port, and with
/// `reserve_next` also the next port (returned second).
pub(crate) fn bind_relay(
    ip: IpAddr,
    min: u16,
    max: u16,
    even: bool,
    reserve_next: bool,
    dont_fragment: bool,
    buffer: usize,
) -> Result<(UdpSocket, Option<UdpSocket>), RelayError> {
    let mut rng = rand::thread_rng();
    for _ in 0..BIND_ATTEMPTS {
        let mut port = rng.gen_range(min..=max);
        if even {
            port &= !1;
            if port < min {
                continue;
            }
        }
        let Ok(s) = bind_one(ip, port, dont_fragment, buffer) else {
            continue;
        };
        if !reserve_next {
            return Ok((s, None));
        }
        if port == u16::MAX || port + 1 > max {
            continue;
        }
        if let Ok(next) = bind_one(ip, port + 1, dont_fragment, buffer) {
            return Ok((s, Some(next)));
        }
    }
    Err(RelayError::Exhausted)
}

/// Receives peer datagrams on one relay socket until aborted.
pub(crate) async fn relay_task(w: Rc<Worker>, sock: Rc<tokio::net::UdpSocket>, relay: SocketAddr) {
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        // Drain what is queued; after a full budget, yield so other sockets get their turn.
        let mut drained = false;
        for _ in 0..64 {
            let mut buf = w.relay_buf.borrow_mut();
            let end = buf.len() - PEER_TAILROOM;
            match sock.try_recv_from(&mut buf[PEER_HEADROOM..end]) {
                Ok((n, peer)) => w.on_peer_packet(Instant::now(), relay, peer, &mut buf, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => tracing::trace!(error = %e, %relay, "relay receive error"),
            }
        }
        if !drained {
            tokio::task::yield_now().await;
        }
    }
}
