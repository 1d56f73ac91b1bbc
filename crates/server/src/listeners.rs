//! The listener table: every configured listening address with its kind, bound once per worker
//! (the first worker binds the configured addresses, the others the very addresses it got, so
//! port 0 works), all with `SO_REUSEPORT`.

use std::net::SocketAddr;

use tokio_rustls::TlsAcceptor;

use crate::{DriverConfig, StartError};

/// What a listening address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// STUN/TURN over UDP.
    Udp,
    /// DTLS, and plain STUN/TURN by first byte (RFC 7983).
    Dtls,
    /// STUN/TURN over TCP.
    Tcp,
    /// TURNS (TLS).
    Tls,
    /// TURN, TURNS, HTTP and HTTPS on one TCP port.
    Mux,
    /// TURN over TCP and plain HTTP on one TCP port (no TLS), e.g. port 80.
    MuxPlain,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Dtls => "dtls",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Mux => "mux",
            Self::MuxPlain => "mux_plain",
        }
    }

    fn is_udp(self) -> bool {
        matches!(self, Self::Udp | Self::Dtls)
    }
}

/// The configured listeners, in a fixed order.
pub(crate) fn table(cfg: &DriverConfig) -> Vec<(Kind, SocketAddr)> {
    let kinds = [
        (Kind::Udp, &cfg.udp_listen),
        (Kind::Tcp, &cfg.tcp_listen),
        (Kind::Tls, &cfg.tls_listen),
        (Kind::Mux, &cfg.mux_listen),
        (Kind::MuxPlain, &cfg.mux_plain_listen),
        (Kind::Dtls, &cfg.dtls_listen),
    ];
    kinds
        .into_iter()
        .flat_map(|(k, addrs)| addrs.iter().map(move |a| (k, *a)))
        .collect()
}

/// What a shared (sniffed) listener does with HTTP.
#[derive(Clone)]
pub(crate) struct Shared {
    pub http: Option<crate::mux::HttpService>,
}

/// One worker's bound listener sockets, sorted by what drives them.
#[derive(Default)]
pub(crate) struct Bound {
    pub udp: Vec<std::net::UdpSocket>,
    pub dtls: Vec<std::net::UdpSocket>,
    /// TCP listeners with their TLS acceptor and, for shared (sniffed) ones, where their HTTP
    /// connections go.
    pub tcp: Vec<(std::net::TcpListener, Option<TlsAcceptor>, Option<Shared>)>,
}

/// Binds every listener of `table` for one worker; returns the sockets and the addresses they
/// got (the configured ones, with port 0 resolved).
pub(crate) fn bind(
    table: &[(Kind, SocketAddr)],
    tls: &Option<TlsAcceptor>,
    mux_tls: &Option<TlsAcceptor>,
    cfg: &DriverConfig,
) -> Result<(Bound, Vec<SocketAddr>), StartError> {
    let mut bound = Bound::default();
    let mut addrs = Vec::with_capacity(table.len());
    for &(kind, addr) in table {
        let err = |source| StartError::Listen {
            transport: kind.name(),
            addr,
            source,
        };
        if kind.is_udp() {
            let s = crate::udp::bind(addr).map_err(err)?;
            addrs.push(s.local_addr().map_err(err)?);
            match kind {
                Kind::Dtls => bound.dtls.push(s),
                _ => bound.udp.push(s),
            }
        } else {
            let s = crate::tcp::bind(addr).map_err(err)?;
            addrs.push(s.local_addr().map_err(err)?);
            let (acceptor, shared) = match kind {
                Kind::Tls => (tls.clone(), None),
                Kind::Mux => (
                    mux_tls.clone(),
                    Some(Shared {
                        http: cfg.http.clone(),
                    }),
                ),
                Kind::MuxPlain => (
                    None,
                    Some(Shared {
                        http: cfg.http_plain.clone(),
                    }),
                ),
                _ => (None, None),
            };
            bound.tcp.push((s, acceptor, shared));
        }
    }
    Ok((bound, addrs))
}
