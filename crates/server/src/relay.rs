//! UDP relay sockets: port selection in the configured range, EVEN-PORT and RESERVATION-TOKEN
//! (the reserved odd port is held in a registry shared by all workers, because the request that
//! redeems the token may arrive on another worker). Their receive loop is in `receive.rs`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use turnpike_proto::RelayError;

use crate::relay_ports::{PortLease, RelayPorts};

/// How long a reserved port is held (RFC 8656 §7.2: about 30 s).
const RESERVATION_HOLD: Duration = Duration::from_secs(30);

/// A bound relay socket and the reservation of its address.
pub(crate) type LeasedSocket = (UdpSocket, PortLease);

/// Ports reserved by EVEN-PORT with the R bit, by token.
#[derive(Default)]
pub struct Reservations {
    inner: Mutex<HashMap<u64, (LeasedSocket, Instant)>>,
}

impl Reservations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (LeasedSocket, Instant)>> {
        // Poisoning only means a worker panicked while holding it; the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn put(&self, sock: LeasedSocket, now: Instant) -> u64 {
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

    pub(crate) fn take(&self, token: u64, now: Instant) -> Option<LeasedSocket> {
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

/// Binds a relay socket on `ip` in `[min, max]`, reserved in `ports`; with `even`, an even
/// port, and with `reserve_next` also the next port (returned second).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bind_relay(
    ports: &Arc<RelayPorts>,
    ip: IpAddr,
    min: u16,
    max: u16,
    even: bool,
    reserve_next: bool,
    dont_fragment: bool,
    buffer: usize,
) -> Result<(LeasedSocket, Option<LeasedSocket>), RelayError> {
    let bind = |port: u16| bind_one(ip, port, dont_fragment, buffer).ok();
    if !reserve_next {
        let (lease, s) = ports
            .reserve(ip, min, max, even, bind)
            .ok_or(RelayError::Exhausted)?;
        return Ok(((s, lease), None));
    }
    // An even port whose successor is free too.
    let (lease, (s, next)) = ports
        .reserve(ip, min, max.saturating_sub(1), true, |port| {
            let s = bind(port)?;
            let next = ports.reserve_exact(SocketAddr::new(ip, port + 1), || bind(port + 1))?;
            Some((s, next))
        })
        .ok_or(RelayError::Exhausted)?;
    let (next_lease, next_sock) = next;
    Ok(((s, lease), Some((next_sock, next_lease))))
}
