//! Socket creation shared by listeners and TCP relays: IPv6 sockets are IPv6-only (so addresses
//! are never IPv4-mapped), and `SO_REUSEADDR`/`SO_REUSEPORT` let every worker bind the same
//! address (and a TCP relay's listener and outbound connections share their relayed address).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking, address-shareable socket for `addr`, not yet bound.
pub(crate) fn shared(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}
