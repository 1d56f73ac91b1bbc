//! Which peer addresses a relay may talk to.
//!
//! By default the relay refuses peers that are loopback, private, shared (CGNAT), link-local,
//! multicast, broadcast, unspecified, documentation-only or otherwise special, in IPv4 and IPv6
//! (including IPv4-mapped and NAT64 forms), so a TURN server cannot be used to reach the
//! operator's internal network. An operator opens a range with `danger_allow_peer_ranges`.

use std::net::IpAddr;

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
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "64:ff9b:1::/48",
];

/// The peer address policy, evaluated in this order: `denied` (always refused), `danger_allowed`
/// (allowed even if special), the built-in special ranges (refused), `allowed` (when non-empty,
/// only these are allowed).
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub denied: Vec<IpNet>,
    pub danger_allowed: Vec<IpNet>,
    pub allowed: Vec<IpNet>,
    special: Vec<IpNet>,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy::new(vec![], vec![], vec![])
    }
}

impl PeerPolicy {
    pub fn new(allowed: Vec<IpNet>, denied: Vec<IpNet>, danger_allowed: Vec<IpNet>) -> Self {
        PeerPolicy {
            denied,
            danger_allowed,
            allowed,
            special: SPECIAL_RANGES
                .iter()
                .map(|s| {
                    s.parse()
                        .expect("SPECIAL_RANGES entries are valid CIDR literals")
                })
                .collect(),
        }
    }

    /// Whether the relay may exchange data with `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        // Judge IPv4-mapped IPv6 addresses as the IPv4 address they carry.
        let ip = ip.to_canonical();
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
        ] {
            assert!(!p.permits(ip(s)), "{s} should be refused");
        }
        for s in ["8.8.8.8", "2001:4860::8888", "203.0.113.5"] {
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
        assert!(!p.permits(ip("10.0.0.1")));
        let only = PeerPolicy::new(vec!["203.0.113.0/24".parse().unwrap()], vec![], vec![]);
        assert!(only.permits(ip("203.0.113.9")));
        assert!(!only.permits(ip("198.51.100.1")));
    }
}
