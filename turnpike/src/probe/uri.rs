//! What to probe: `stun:`/`stuns:` URIs (RFC 7064), `turn:`/`turns:` URIs with their
//! `transport` parameter (RFC 7065), and a bare `host:port` for convenience.

use super::error::ProbeError;

/// The URI scheme: Binding only (STUN) or Binding plus allocations (TURN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Stun,
    Turn,
}

/// How the client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
    Dtls,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Dtls => "dtls",
        }
    }
}

/// One server endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The URI as given (a bare `host:port` stays as it was typed).
    pub uri: String,
    pub scheme: Scheme,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

/// Default ports of RFC 7064/7065.
const PORT: u16 = 3478;
const SECURE_PORT: u16 = 5349;

/// Parses one argument. A bare `host:port` gives two targets, UDP and TCP on the same port:
/// TURN when `turn_default` (credentials were given), else STUN.
pub(crate) fn parse(arg: &str, turn_default: bool) -> Result<Vec<Target>, ProbeError> {
    let bad = |why| ProbeError::BadUri {
        uri: arg.to_string(),
        why,
    };
    let (scheme, rest) = match arg.split_once(':') {
        Some((s, rest)) if s.eq_ignore_ascii_case("stun") => ((Scheme::Stun, false), rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("stuns") => ((Scheme::Stun, true), rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("turn") => ((Scheme::Turn, false), rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("turns") => ((Scheme::Turn, true), rest),
        _ => {
            let (host, port) = host_port(arg, None).map_err(bad)?;
            let scheme = if turn_default {
                Scheme::Turn
            } else {
                Scheme::Stun
            };
            return Ok([Transport::Udp, Transport::Tcp]
                .into_iter()
                .map(|transport| Target {
                    uri: arg.to_string(),
                    scheme,
                    host: host.clone(),
                    port,
                    transport,
                })
                .collect());
        }
    };
    let (scheme, secure) = scheme;
    // RFC 7064/7065 URIs have no authority part; accept the common `turn://` slip anyway.
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let default_port = if secure { SECURE_PORT } else { PORT };
    let (host, port) = host_port(hostport, Some(default_port)).map_err(bad)?;
    let mut transport = None;
    if let Some(q) = query {
        if scheme == Scheme::Stun {
            return Err(bad("stun: URIs take no query (RFC 7064)"));
        }
        for param in q.split('&') {
            let Some(("transport", value)) = param.split_once('=') else {
                return Err(bad("the only query parameter is `transport=udp|tcp`"));
            };
            transport = Some(match value.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                // Not RFC 7065, but seen in the wild.
                "tls" => Transport::Tls,
                "dtls" => Transport::Dtls,
                _ => return Err(bad("`transport` is `udp` or `tcp`")),
            });
        }
    }
    let transport = match (secure, transport) {
        (false, None | Some(Transport::Udp)) => Transport::Udp,
        (false, Some(Transport::Tcp)) => Transport::Tcp,
        (true, None | Some(Transport::Tcp | Transport::Tls)) => Transport::Tls,
        (true, Some(Transport::Udp | Transport::Dtls)) => Transport::Dtls,
        (false, Some(t)) => t,
    };
    Ok(vec![Target {
        uri: arg.to_string(),
        scheme,
        host,
        port,
        transport,
    }])
}

/// `host[:port]` with IPv6 addresses in brackets; the port is required without a default.
fn host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed `[` in the host")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("`[...]` must hold an IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
        };
        (host, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write IPv6 addresses in brackets: `[2001:db8::1]:3478`")
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("the port is a number 1-65535")?,
        (None, Some(d)) => d,
        (None, None) => return Err("expected a URI (`turn:host:port`) or `host:port`"),
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Target {
        let mut v = parse(s, true).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn rfc7064_and_7065_forms() {
        let t = one("stun:stun.example.org");
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.transport),
            (Scheme::Stun, "stun.example.org", 3478, Transport::Udp)
        );
        assert_eq!(one("stuns:example.org").transport, Transport::Tls);
        assert_eq!(one("stuns:example.org").port, 5349);
        let t = one("turn:203.0.113.1:3479?transport=tcp");
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.transport),
            (Scheme::Turn, "203.0.113.1", 3479, Transport::Tcp)
        );
        assert_eq!(one("turn:h?transport=udp").transport, Transport::Udp);
        assert_eq!(one("turn:h").transport, Transport::Udp);
        assert_eq!(one("TURN:h:1?transport=TCP").transport, Transport::Tcp);
        let t = one("turns:[2001:db8::1]:443?transport=tcp");
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("2001:db8::1", 443, Transport::Tls)
        );
        assert_eq!(one("turns:h").port, 5349);
        assert_eq!(one("turns:h").transport, Transport::Tls);
        assert_eq!(one("turns:h:5349?transport=udp").transport, Transport::Dtls);
        assert_eq!(one("turn:h:5349?transport=dtls").transport, Transport::Dtls);
        assert_eq!(one("turn://h:1").host, "h");
        assert_eq!(one("turn:[::1]").port, 3478);
    }

    #[test]
    fn bare_host_port_is_udp_and_tcp() {
        let v = parse("127.0.0.1:3478", true).unwrap();
        assert_eq!(
            v.iter()
                .map(|t| (t.scheme, t.transport))
                .collect::<Vec<_>>(),
            [
                (Scheme::Turn, Transport::Udp),
                (Scheme::Turn, Transport::Tcp)
            ]
        );
        assert!(v
            .iter()
            .all(|t| t.port == 3478 && t.uri == "127.0.0.1:3478"));
        let v = parse("[::1]:9", false).unwrap();
        assert!(v
            .iter()
            .all(|t| t.scheme == Scheme::Stun && t.host == "::1"));
    }

    #[test]
    fn mistakes_are_named() {
        for bad in [
            "turn:h:0",
            "turn:h:x",
            "turn:h?transport=sctp",
            "turn:h?foo=bar",
            "stun:h?transport=udp",
            "turn:[nothost]:1",
            "turn:[::1",
            "turn::1",
            "2001:db8::1:3478",
            "example.org",
            "turn:",
        ] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }
}
