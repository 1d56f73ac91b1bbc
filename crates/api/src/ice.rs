//! The `RTCIceServer` list a client needs to use this node: `stun:`/`turn:`/`turns:` URIs
//! (RFC 7064, RFC 7065) built from the node's public host name and its listeners.
//!
//! What it does not do: mint credentials (the caller supplies username and credential) or
//! serialize (the API layer does).

use std::net::{IpAddr, SocketAddr};

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// The listeners a node advertises.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub dtls: Vec<SocketAddr>,
}

/// How a listener's host appears in a URI: the public host name when one is configured or the
/// listener is a wildcard; otherwise its own address (IPv6 in brackets).
fn host_for(public_host: Option<&str>, addr: &SocketAddr) -> Option<String> {
    if let Some(h) = public_host {
        return Some(if h.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{h}]")
        } else {
            h.to_string()
        });
    }
    match addr.ip() {
        ip if ip.is_unspecified() => None,
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => Some(format!("[{v6}]")),
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// The node's URLs without credentials, one list per server kind (`stun:` URLs, then
/// `turn:`/`turns:` URLs), as [`ice_servers`] names them.
pub fn urls(public_host: Option<&str>, l: &Listeners) -> Vec<Vec<String>> {
    ice_servers(public_host, l, "", "", false)
        .into_iter()
        .map(|s| s.urls)
        .collect()
}

/// Builds the list: one STUN entry (no credentials) and one TURN entry carrying `username` and
/// `credential`. Wildcard listeners without a public host name are skipped (there is no address a
/// client could use). With `include_dtls`, DTLS listeners appear as `turns:…?transport=udp`
/// (RFC 7065), which browsers do not support but native clients may.
pub fn ice_servers(
    public_host: Option<&str>,
    l: &Listeners,
    username: &str,
    credential: &str,
    include_dtls: bool,
) -> Vec<IceServer> {
    let mut stun = Vec::new();
    let mut turn = Vec::new();
    for a in &l.udp {
        if let Some(h) = host_for(public_host, a) {
            push_unique(&mut stun, format!("stun:{h}:{}", a.port()));
            push_unique(&mut turn, format!("turn:{h}:{}?transport=udp", a.port()));
        }
    }
    for a in &l.tcp {
        if let Some(h) = host_for(public_host, a) {
            push_unique(&mut turn, format!("turn:{h}:{}?transport=tcp", a.port()));
        }
    }
    for a in &l.tls {
        if let Some(h) = host_for(public_host, a) {
            push_unique(&mut turn, format!("turns:{h}:{}?transport=tcp", a.port()));
        }
    }
    if include_dtls {
        for a in &l.dtls {
            if let Some(h) = host_for(public_host, a) {
                push_unique(&mut turn, format!("turns:{h}:{}?transport=udp", a.port()));
            }
        }
    }
    let mut out = Vec::new();
    if !stun.is_empty() {
        out.push(IceServer {
            urls: stun,
            username: None,
            credential: None,
        });
    }
    if !turn.is_empty() {
        out.push(IceServer {
            urls: turn,
            username: Some(username.to_string()),
            credential: Some(credential.to_string()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_host_and_dedup() {
        let l = Listeners {
            udp: vec![a("0.0.0.0:3478"), a("[::]:3478")],
            tcp: vec![a("0.0.0.0:3478"), a("[::]:3478")],
            tls: vec![a("0.0.0.0:443")],
            dtls: vec![a("0.0.0.0:443")],
        };
        let s = ice_servers(Some("turn.example.com"), &l, "u", "p", false);
        assert_eq!(s[0].urls, vec!["stun:turn.example.com:3478"]);
        assert_eq!(s[0].username, None);
        assert_eq!(
            s[1].urls,
            vec![
                "turn:turn.example.com:3478?transport=udp",
                "turn:turn.example.com:3478?transport=tcp",
                "turns:turn.example.com:443?transport=tcp",
            ]
        );
        assert_eq!(s[1].username.as_deref(), Some("u"));
        let with_dtls = ice_servers(Some("turn.example.com"), &l, "u", "p", true);
        assert!(with_dtls[1]
            .urls
            .contains(&"turns:turn.example.com:443?transport=udp".to_string()));
    }

    #[test]
    fn specific_addresses_without_public_host() {
        let l = Listeners {
            udp: vec![
                a("192.0.2.5:3478"),
                a("[2001:db8::5]:3478"),
                a("0.0.0.0:9999"),
            ],
            ..Default::default()
        };
        let s = ice_servers(None, &l, "u", "p", false);
        assert_eq!(
            s[0].urls,
            vec!["stun:192.0.2.5:3478", "stun:[2001:db8::5]:3478"]
        );
        assert_eq!(
            s[1].urls,
            vec![
                "turn:192.0.2.5:3478?transport=udp",
                "turn:[2001:db8::5]:3478?transport=udp"
            ]
        );
        let v6 = ice_servers(Some("2001:db8::9"), &l, "u", "p", false);
        assert_eq!(v6[0].urls[0], "stun:[2001:db8::9]:3478");
    }
}
