//! Which address ICE-server lists name when `public_host` is not set.
//!
//! In order: `public_host`; the listeners' own addresses when none is a wildcard; the address a
//! STUN server sees (`public_ip_stun_server`, for a VM behind 1:1 NAT; off by default); the
//! address of the default route's interface; the first non-loopback interface address;
//! loopback, with a loud warning (clients on other machines cannot reach it). The choice and
//! its reason are logged at start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use crate::config::Config;

/// The host ICE lists name (none: the listeners' own addresses) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advertised {
    pub host: Option<String>,
    /// The public IPv4 address a STUN server saw, when discovery ran.
    pub discovered: Option<IpAddr>,
    pub reason: String,
}

/// Decides (see the module doc).
pub(crate) fn detect(cfg: &Config) -> Advertised {
    if let Some(h) = &cfg.public_host {
        return Advertised {
            host: Some(h.clone()),
            discovered: None,
            reason: "key `public_host`".into(),
        };
    }
    let listeners = cfg
        .listen_udp
        .iter()
        .chain(&cfg.listen_tcp)
        .chain(&cfg.listen_tls)
        .chain(&cfg.listen_mux)
        .chain(&cfg.listen_mux_plain);
    if listeners.clone().all(|a| !a.ip().is_unspecified()) {
        return Advertised {
            host: None,
            discovered: None,
            reason: "the listeners' own addresses".into(),
        };
    }
    if let Some(server) = &cfg.public_ip_stun_server {
        match discover(server) {
            Ok(ip) => {
                return Advertised {
                    host: Some(ip.to_string()),
                    discovered: Some(ip),
                    reason: format!(
                        "the address STUN server {server} sees (key `public_ip_stun_server`)"
                    ),
                }
            }
            Err(e) => {
                tracing::warn!(%server, error = %e, "public address discovery failed (key `public_ip_stun_server`); falling back to interface addresses");
            }
        }
    }
    if let Some(ip) = default_route_address() {
        return Advertised {
            host: Some(ip.to_string()),
            discovered: None,
            reason: "the address of the default route's interface".into(),
        };
    }
    if let Some(ip) = first_interface_address() {
        return Advertised {
            host: Some(ip.to_string()),
            discovered: None,
            reason: "the first non-loopback interface address".into(),
        };
    }
    Advertised {
        host: Some(Ipv4Addr::LOCALHOST.to_string()),
        discovered: None,
        reason: "loopback: no other address on this machine".into(),
    }
}

/// When ICE lists name a detected host (not a configured `public_host`): the addresses a
/// request's `Host` header may name instead, so that a Metered-compatible ICE list names the
/// address the client reached (this machine's interface addresses and the discovered public
/// one). Empty when the host is configured or the listeners' own addresses are used.
pub(crate) fn host_header_ips(configured: bool, a: &Advertised) -> Vec<IpAddr> {
    if configured || a.host.is_none() {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    ips.extend(a.discovered);
    ips
}

/// Logs the choice once; warns when only loopback is left.
pub(crate) fn log(a: &Advertised) {
    match &a.host {
        Some(h) if h == "127.0.0.1" => tracing::warn!(
            host = %h,
            "ICE server lists name LOOPBACK: clients on other machines cannot reach this server; set public_host"
        ),
        Some(h) => {
            tracing::info!(host = %h, why = %a.reason, "ICE server lists name this host (set public_host to change it)");
        }
        None => {
            tracing::info!(why = %a.reason, "ICE server lists name the listeners' own addresses");
        }
    }
}

/// The source address the kernel would use toward the Internet (no packet is sent: a UDP
/// `connect` only picks a route), if it is a usable one.
fn default_route_address() -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // A documentation address: routed like any other when there is a default route.
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    usable(ip).then_some(ip)
}

fn first_interface_address() -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| usable(*ip))
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// Asks a STUN server (RFC 8489 Binding) which address it sees; a few tries, bounded.
fn discover(server: &str) -> std::io::Result<IpAddr> {
    use turnpike_stun::*;
    let addr: SocketAddr = server
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address for the STUN server"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(addr)?;
    let tid: TransactionId = rand::random();
    let mut req = [0u8; 28];
    let n = {
        let mut w = MessageWriter::new(
            &mut req,
            MessageType::new(METHOD_BINDING, Class::Request),
            tid,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        w.fingerprint()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        w.finish()
    };
    let mut buf = [0u8; 512];
    for wait in [500u64, 1000, 2000] {
        s.send(&req[..n])?;
        s.set_read_timeout(Some(Duration::from_millis(wait)))?;
        let Ok(got) = s.recv(&mut buf) else { continue };
        let Ok(m) = Message::parse(&buf[..got]) else {
            continue;
        };
        if m.transaction_id() != tid {
            continue;
        }
        if let Some(v) = m.get(ATTR_XOR_MAPPED_ADDRESS) {
            if let Ok(a) = decode_xor_address(v, &tid) {
                return Ok(a.ip());
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no Binding response",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_and_specific_listeners_win() {
        let mut cfg = Config {
            public_host: Some("turn.example.com".into()),
            ..Config::default()
        };
        assert_eq!(detect(&cfg).host.as_deref(), Some("turn.example.com"));
        cfg.public_host = None;
        cfg.listen_udp = vec!["127.0.0.1:3478".parse().unwrap()];
        cfg.listen_tcp = vec![];
        cfg.listen_tls = vec![];
        cfg.listen_mux = vec![];
        assert_eq!(detect(&cfg).host, None);
        // Wildcards: some address is always named.
        cfg.listen_udp = vec!["0.0.0.0:3478".parse().unwrap()];
        assert!(detect(&cfg).host.is_some());
    }
}
