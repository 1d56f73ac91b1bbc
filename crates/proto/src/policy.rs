//! Which peer addresses a relay may talk to.
//!
//! By default the relay refuses peers that are loopback, private, shared (CGNAT), link-local,
//! multicast, broadcast, unspecified, documentation-only, benchmarking or otherwise special
//! (IANA's special-purpose registries), in IPv4 and IPv6. An IPv6 address that carries an IPv4
//! address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`,
//! NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) is judged by the IPv4 address too, so a
//! refused IPv4 address cannot be reached through a translator. An operator opens a range with
//! `danger_allow_peer_ranges`.
//!
//! Independently of every list, the server's own listener endpoints (IP and port) are never a
//! peer: a client must not reach the server's own STUN/TURN, TLS, DTLS or HTTP ports through
//! its relay (a nested allocation, or a request that appears to come from the server itself).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Ranges refused unless explicitly allowed with a `danger_*` option.
pub const SPECIAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// The server's own endpoints: its listener addresses, where a wildcard listener (`0.0.0.0`,
/// `::`) stands for every address of the host (`local_ips`).
#[derive(Debug, Clone, Default)]
pub struct OwnEndpoints {
    pub listeners: Vec<SocketAddr>,
    pub local_ips: Vec<IpAddr>,
}

impl OwnEndpoints {
    /// Whether `addr` reaches one of the server's own listeners.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip().to_canonical() == ip
                    || (l.ip().is_unspecified()
                        && l.is_ipv4() == ip.is_ipv4()
                        && (ip.is_loopback() || self.local_ips.contains(&ip))))
        })
    }
}

/// The peer address policy, evaluated in this order: the server's own endpoints (always
/// refused), `denied` (always refused), `danger_allowed` (allowed even if special), the
/// built-in special ranges (refused), `allowed` (when non-empty, only these are allowed). An
/// address that embeds an IPv4 address must pass for both.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub denied: Vec<IpNet>,
    pub danger_allowed: Vec<IpNet>,
    pub allowed: Vec<IpNet>,
    pub own: OwnEndpoints,
    special: Vec<IpNet>,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        Self::new(vec![], vec![], vec![])
    }
}

impl PeerPolicy {
    pub fn new(allowed: Vec<IpNet>, denied: Vec<IpNet>, danger_allowed: Vec<IpNet>) -> Self {
        Self {
            denied,
            danger_allowed,
            allowed,
            own: OwnEndpoints::default(),
            special: SPECIAL_RANGES
                .iter()
                .map(|s| {
                    s.parse()
                        .expect("SPECIAL_RANGES entries are valid CIDR literals")
                })
                .collect(),
        }
    }

    /// Whether the relay may exchange data with `ip` (any port but the server's own).
    pub fn permits(&self, ip: IpAddr) -> bool {
        // Judge IPv4-mapped IPv6 addresses as the IPv4 address they carry.
        let ip = ip.to_canonical();
        if !self.permits_one(ip) {
            return false;
        }
        match embedded_ipv4(ip) {
            Some(v4) => self.permits_one(IpAddr::V4(v4)),
            None => true,
        }
    }

    /// Whether the relay may send to `peer`: [`Self::permits`] its IP, and it is not one of the
    /// server's own endpoints.
    pub fn permits_endpoint(&self, peer: SocketAddr) -> bool {
        self.permits(peer.ip()) && !self.own.contains(peer)
    }

    fn permits_one(&self, ip: IpAddr) -> bool {
        if self.denied.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if self.danger_allowed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        if self.special.iter().any(|n| n.contains(&ip)) || is_ipv4_broadcast(ip) {
            return false;
        }
        self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(&ip))
    }
}

fn is_ipv4_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// The IPv4 address an IPv6 address carries by a translation or tunnelling convention, if any:
/// IPv4-compatible (`::/96`, deprecated), SIIT (`::ffff:0:0/96`), NAT64 well-known prefix
/// (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002::/16`, RFC 3056).
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = |a: u16, b: u16| Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
    match s {
        [0, 0, 0, 0, 0, 0, a, b] if v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST => {
            Some(low(a, b))
        }
        [0, 0, 0, 0, 0xffff, 0, a, b] => Some(low(a, b)),
        [0x64, 0xff9b, 0, 0, 0, 0, a, b] => Some(low(a, b)),
        [0x2002, a, b, ..] => Some(low(a, b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_refuse_special() {
        let p = PeerPolicy::default();
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            // Documentation ranges.
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.5",
            "2001:db8::1",
            "3fff::1",
            // IPv4 addresses refused by themselves, carried by IPv6 forms.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "::7f00:1",
            "::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            // Teredo and other IETF protocol assignments.
            "2001::1",
        ] {
            assert!(!p.permits(ip(s)), "{s} should be refused");
        }
        for s in [
            "8.8.8.8",
            "2001:4860::8888",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:0:808:808",
        ] {
            assert!(p.permits(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn danger_and_deny_lists() {
        let p = PeerPolicy::new(
            vec![],
            vec!["8.8.8.0/24".parse().unwrap()],
            vec!["127.0.0.0/8".parse().unwrap()],
        );
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(!p.permits(ip("8.8.8.8")));
        // A denied IPv4 address stays denied through NAT64.
        assert!(!p.permits(ip("64:ff9b::808:808")));
        assert!(!p.permits(ip("10.0.0.1")));
        let only = PeerPolicy::new(vec!["8.8.4.0/24".parse().unwrap()], vec![], vec![]);
        assert!(only.permits(ip("8.8.4.9")));
        assert!(!only.permits(ip("1.1.1.1")));
    }

    #[test]
    fn own_endpoints_are_never_peers() {
        let mut p = PeerPolicy::new(vec![], vec![], vec!["127.0.0.0/8".parse().unwrap()]);
        p.own = OwnEndpoints {
            listeners: vec![
                "127.0.0.1:3478".parse().unwrap(),
                "0.0.0.0:443".parse().unwrap(),
                "[::]:443".parse().unwrap(),
            ],
            local_ips: vec![ip("8.8.4.4"), ip("2001:4860::1")],
        };
        let ep = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert!(!p.permits_endpoint(ep("127.0.0.1:3478")));
        assert!(p.permits_endpoint(ep("127.0.0.1:3479")));
        assert!(p.permits_endpoint(ep("127.0.0.2:3478")));
        assert!(!p.permits_endpoint(ep("127.0.0.9:443")));
        assert!(!p.permits_endpoint(ep("8.8.4.4:443")));
        assert!(!p.permits_endpoint(ep("[2001:4860::1]:443")));
        assert!(p.permits_endpoint(ep("8.8.8.8:443")));
        assert!(!p.permits_endpoint(ep("[::ffff:127.0.0.1]:3478")));
    }
}
