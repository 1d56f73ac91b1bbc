//! UDP listener sockets: binding with `SO_REUSEPORT` (one socket per worker on the same
//! address), buffer sizes, and sending from the address a client used. Their batched receive
//! loop is in `receive.rs`.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use quinn_udp::UdpSocketState;
use socket2::{Protocol, Socket, Type};

/// Binds one UDP listener socket for a worker.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = crate::sock::shared(addr, Type::DGRAM, Protocol::UDP)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Asks for large socket buffers; the kernel caps them at `net.core.*mem_max` unless we may
/// force them.
pub(crate) fn size_buffers(s: &Socket, bytes: usize) {
    if s.set_recv_buffer_size(bytes).is_err() || s.recv_buffer_size().unwrap_or(0) < bytes {
        let _ = force_buffer(s, libc::SO_RCVBUFFORCE, bytes);
    }
    if s.set_send_buffer_size(bytes).is_err() || s.send_buffer_size().unwrap_or(0) < bytes {
        let _ = force_buffer(s, libc::SO_SNDBUFFORCE, bytes);
    }
}

fn force_buffer(s: &Socket, opt: libc::c_int, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt with a valid fd, a pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One worker's socket on one UDP listening address.
pub(crate) struct UdpListener {
    pub bound: SocketAddr,
    /// Carries DTLS as well as plain STUN/TURN (RFC 7983 first-byte demultiplexing).
    pub dtls: bool,
    pub sock: tokio::net::UdpSocket,
    pub state: UdpSocketState,
}

impl UdpListener {
    pub(crate) fn new(std: UdpSocket, buffer: usize, dtls: bool) -> io::Result<Self> {
        size_buffers(&socket2::SockRef::from(&std).try_clone()?, buffer);
        let bound = std.local_addr()?;
        let state = UdpSocketState::new((&std).into())?;
        let sock = tokio::net::UdpSocket::from_std(std)?;
        Ok(Self {
            bound,
            dtls,
            sock,
            state,
        })
    }

    /// Whether this socket serves `server` (the address a client sent to).
    pub(crate) fn serves(&self, server: &SocketAddr) -> bool {
        self.bound.port() == server.port()
            && self.bound.is_ipv4() == server.is_ipv4()
            && (self.bound.ip().is_unspecified() || self.bound.ip() == server.ip())
    }

    /// Sends to a client from the address the client used (IP_PKTINFO when bound to a wildcard).
    pub(crate) fn send(&self, server: &SocketAddr, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        if let Some(src_ip) = self.source_for(server) {
            let t = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents: data,
                segment_size: None,
                src_ip: Some(src_ip),
            };
            // Straight to sendmsg: see [`send_now`].
            self.state.try_send((&self.sock).into(), &t)
        } else {
            send_now(&self.sock, data, to).map(|_| ())
        }
    }

    /// The source address a datagram to a client that reached us on `server` must name
    /// explicitly: `server`'s IP when this socket is bound to a wildcard address, else none (the
    /// bound address is the source).
    pub(crate) fn source_for(&self, server: &SocketAddr) -> Option<IpAddr> {
        self.bound.ip().is_unspecified().then_some(server.ip())
    }
}

/// Sends one datagram with a plain non-blocking `sendto`, without tokio's readiness tracking.
/// Nothing here ever awaits writability, and tokio's `try_send_to` answers `WouldBlock` without
/// trying while it has not yet seen a writable event (on a socket registered moments ago that
/// lost the first packet sent on it). A full socket buffer still gives `WouldBlock`, counted by
/// the caller as a failed send.
pub(crate) fn send_now(
    sock: &tokio::net::UdpSocket,
    data: &[u8],
    to: SocketAddr,
) -> io::Result<usize> {
    socket2::SockRef::from(sock).send_to(data, &to.into())
}
