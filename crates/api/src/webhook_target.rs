//! Where webhooks may go: not into the operator's own network (SSRF). Refused: loopback,
//! private (RFC 1918), shared/CGNAT (100.64.0.0/10), link-local (with cloud metadata at
//! 169.254.169.254), unspecified, "this network", benchmarking, documentation, IETF protocol
//! assignments, multicast, reserved and broadcast IPv4; and the IPv6 counterparts: `::`, `::1`,
//! IPv4-compatible `::/96`, unique local `fc00::/7` (AWS metadata `fd00:ec2::254`), link-local
//! `fe80::/10`, site-local `fec0::/10`, multicast, discard `100::/64`, `2001::/23` (Teredo,
//! benchmarking), documentation `2001:db8::/32` and `3fff::/20`, local-use NAT64
//! `64:ff9b:1::/48`. Addresses that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded address. The operator opens
//! ranges with `danger_allow_webhook_ranges`.
//!
//! Checked twice: when the URL is set (an IP literal, or every address the name resolves to:
//! refused when none is allowed), and at each delivery, where [`GuardedResolver`] drops refused
//! addresses from what the HTTP client may connect to, so the address checked is the address
//! connected to (no DNS-rebinding window), and IP literals (which the resolver never sees) are
//! checked by [`literal_refused`]. Redirects are not followed and proxies are not used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;

/// Whether `ip` is outside the public internet (see the module documentation).
pub fn refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => refused_v4(a),
        IpAddr::V6(a) => refused_v6(a),
    }
}

fn refused_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0 // "this network", including 0.0.0.0
        || a.is_private()
        || a.is_loopback()
        || a.is_link_local() // 169.254.0.0/16: cloud metadata
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || a.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
        || a.is_multicast()
        || o[0] >= 240 // reserved, and the broadcast address
}

/// The IPv4 address an IPv6 address stands for (mapped, NAT64 well-known prefix, 6to4).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(m) = a.to_ipv4_mapped() {
        Some(m)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

fn refused_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(a) {
        return refused_v4(v4);
    }
    let s = a.segments();
    s[..6] == [0; 6] // ::/96: unspecified, loopback, IPv4-compatible
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local-use NAT64
        || s[..4] == [0x100, 0, 0, 0] // 100::/64 discard
        || (s[0] == 0x2001 && s[1] < 0x200) // 2001::/23 (Teredo, benchmarking, ...)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
}

/// Whether a webhook may be sent to `ip`: not refused, or in a range the operator opened.
pub fn allowed(ip: IpAddr, danger: &[IpNet]) -> bool {
    let canonical = ip.to_canonical();
    !refused(ip)
        || danger
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canonical))
}

const REFUSED: &str = "`webhook_url` must point to a public address: loopback, private, \
    link-local (cloud metadata), shared, multicast, documentation and other internal addresses \
    are refused (the operator can open ranges with `danger_allow_webhook_ranges`)";

/// How long a host name may take to resolve when a webhook is set.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks a webhook URL when it is set: http(s), and an IP literal that is allowed or a host
/// name of which at least one address is allowed. `Err` is the message for a 422.
pub async fn check_url(url: &str, danger: &[IpNet]) -> Result<(), String> {
    let u = Url::parse(url).map_err(|_| "`webhook_url` is not a valid URL".to_string())?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err("`webhook_url` must be an http(s) URL".into());
    }
    let port = u.port_or_known_default().unwrap_or(443);
    match u.host() {
        Some(url::Host::Ipv4(a)) if allowed(a.into(), danger) => Ok(()),
        Some(url::Host::Ipv6(a)) if allowed(a.into(), danger) => Ok(()),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Err(REFUSED.into()),
        Some(url::Host::Domain(name)) => {
            let addrs = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.to_string(), port)),
            )
            .await
            .map_err(|_| "`webhook_url`: the host name did not resolve in time".to_string())?
            .map_err(|_| "`webhook_url`: the host name does not resolve".to_string())?;
            let mut any = false;
            for a in addrs {
                if allowed(a.ip(), danger) {
                    return Ok(());
                }
                any = true;
            }
            if any {
                Err(REFUSED.into())
            } else {
                Err("`webhook_url`: the host name does not resolve".into())
            }
        }
        None => Err("`webhook_url` has no host".into()),
    }
}

/// At delivery: true when the URL's host is an IP literal that is not allowed (the resolver is
/// not consulted for literals).
pub fn literal_refused(url: &Url, danger: &[IpNet]) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => !allowed(a.into(), danger),
        Some(url::Host::Ipv6(a)) => !allowed(a.into(), danger),
        _ => false,
    }
}

/// The error a delivery fails with when every address of the host is refused.
#[derive(Debug, thiserror::Error)]
#[error("the webhook host resolves only to refused (internal) addresses")]
pub struct RefusedTarget;

/// Whether a delivery error is (or was caused by) a [`RefusedTarget`].
pub fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<RefusedTarget>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The webhook client's resolver: the system's, minus refused addresses.
pub struct GuardedResolver {
    danger: Arc<[IpNet]>,
}

impl GuardedResolver {
    pub fn new(danger: &[IpNet]) -> Self {
        Self {
            danger: danger.into(),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let danger = self.danger.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let total = addrs.len();
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allowed(a.ip(), &danger))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(RefusedTarget) as Box<dyn std::error::Error + Send + Sync>);
            }
            if kept.len() < total {
                tracing::warn!(
                    host,
                    skipped = total - kept.len(),
                    "webhook host also resolves to internal addresses; those are skipped"
                );
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test addresses are valid")
    }

    #[test]
    fn internal_addresses_are_refused() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(refused(ip(a)), "{a}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!refused(ip(a)), "{a}");
        }
    }

    #[test]
    fn danger_ranges_open_what_they_contain() {
        let danger: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("valid")];
        assert!(allowed(ip("127.0.0.1"), &danger));
        assert!(allowed(ip("::ffff:127.0.0.1"), &danger));
        assert!(!allowed(ip("::1"), &danger));
        assert!(!allowed(ip("10.0.0.1"), &danger));
        assert!(allowed(ip("8.8.8.8"), &[]));
    }

    #[tokio::test]
    async fn urls_are_checked_at_creation() {
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:7f00:1]/",
            "http://localhost:9/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(check_url(u, &[]).await.is_err(), "{u}");
        }
        assert!(check_url("https://93.184.215.14/hook", &[]).await.is_ok());
        let danger: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("valid")];
        assert!(check_url("http://127.0.0.1:9/", &danger).await.is_ok());
        assert!(check_url("http://localhost:9/", &danger).await.is_ok());
    }

    #[test]
    fn literals_are_checked_at_delivery() {
        let u = |s: &str| Url::parse(s).expect("valid");
        assert!(literal_refused(&u("http://169.254.169.254/"), &[]));
        assert!(literal_refused(&u("http://[::1]:8080/"), &[]));
        assert!(!literal_refused(&u("https://93.184.215.14/"), &[]));
        assert!(!literal_refused(&u("https://hooks.example.com/"), &[]));
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().expect("valid name");
        let err = GuardedResolver::new(&[])
            .resolve(name("localhost"))
            .await
            .err()
            .expect("localhost is refused");
        assert!(is_refused(&*err));
        let danger: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("valid")];
        let kept: Vec<SocketAddr> = GuardedResolver::new(&danger)
            .resolve(name("localhost"))
            .await
            .map_err(|e| e.to_string())
            .expect("127.0.0.1 is opened")
            .collect();
        assert!(!kept.is_empty() && kept.iter().all(|a| a.ip() == ip("127.0.0.1")));
    }
}
