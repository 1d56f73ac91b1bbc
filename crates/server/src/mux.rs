//! One TCP port for several protocols (RFC 7443 ALPN and first-byte sniffing), so TURNS, HTTPS,
//! plain STUN/TURN over TCP and plain HTTP can all share, say, port 443:
//!
//! - first byte 0x16 (TLS handshake): TLS; then ALPN `stun.turn`/`stun.nat-discovery` means
//!   TURN, `http/1.1` means HTTPS, and without ALPN the first decrypted byte decides (0-3: STUN);
//! - first byte 0-3: STUN/TURN over TCP;
//! - an ASCII letter: an HTTP request line;
//! - anything else: closed.
//!
//! HTTP connections are handed to the [`HttpService`] the binary provides.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use turnpike_proto::Transport;

use crate::worker::Worker;

/// A byte stream handed to the HTTP service. `Send`, so an HTTP upgrade (a signalling
/// WebSocket) can outlive the request that made it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Serves one HTTP connection (plain or already decrypted) from `peer`; `tls` says whether it
/// arrived over TLS.
pub type HttpService =
    Arc<dyn Fn(Box<dyn Io>, SocketAddr, bool) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// ALPN identifiers of HTTP that a shared port accepts next to RFC 7443's.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the first byte of a stream says.
fn sniff(b: u8) -> Option<Kind> {
    match b {
        0x16 => Some(Kind::Tls),
        0..=3 => Some(Kind::Stun),
        b'A'..=b'Z' => Some(Kind::Http),
        _ => None,
    }
}

enum Kind {
    Tls,
    Stun,
    Http,
}

/// Serves one accepted connection on a shared port.
pub(crate) async fn serve(
    w: Rc<Worker>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    http: Option<HttpService>,
    permit: crate::conn_limit::ConnPermit,
) {
    let mut b = [0u8; 1];
    let peeked = tokio::time::timeout(w.cfg.tls_handshake_timeout, stream.peek(&mut b)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return;
    }
    match sniff(b[0]) {
        // The connection's own path runs as a task of its own, so what sniffing and the
        // handshake needed is freed instead of kept for the connection's life.
        Some(Kind::Stun) => {
            tokio::task::spawn_local(crate::tcp::connection(
                w,
                stream,
                peer,
                local,
                Transport::Tcp,
                Vec::new(),
                permit,
            ));
        }
        Some(Kind::Http) => {
            if let Some(h) = http {
                tokio::task::spawn_local(async move {
                    h(Box::new(stream), peer, false).await;
                    drop(permit);
                });
            }
        }
        Some(Kind::Tls) => {
            let Some(acceptor) = tls else {
                return;
            };
            let handshake =
                tokio::time::timeout(w.cfg.tls_handshake_timeout, acceptor.accept(stream)).await;
            let Ok(Ok(mut s)) = handshake else {
                w.count_drop(turnpike_proto::DropReason::Malformed);
                return;
            };
            let alpn = s.get_ref().1.alpn_protocol().map(|a| a.to_vec());
            let is_turn = match alpn.as_deref() {
                Some(crate::tls::ALPN_STUN_TURN) | Some(crate::tls::ALPN_STUN_NAT_DISCOVERY) => {
                    Some(true)
                }
                Some(ALPN_HTTP11) => Some(false),
                // An ACME TLS-ALPN-01 validator: the handshake was all it needed (RFC 8737).
                Some(crate::tls::ALPN_ACME_TLS) => return,
                _ => None,
            };
            let (is_turn, initial) = match is_turn {
                Some(t) => (t, Vec::new()),
                None => {
                    // No ALPN: the first decrypted byte decides.
                    let mut first = vec![0u8; crate::tcp::READ_BASE];
                    let n =
                        match tokio::time::timeout(w.cfg.tls_handshake_timeout, s.read(&mut first))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                    first.truncate(n);
                    (first[0] <= 3, first)
                }
            };
            if is_turn {
                tokio::task::spawn_local(crate::tcp::connection(
                    w,
                    s,
                    peer,
                    local,
                    Transport::Tls,
                    initial,
                    permit,
                ));
            } else if let Some(h) = http {
                tokio::task::spawn_local(async move {
                    h(Box::new(Prefixed::new(initial, s)), peer, true).await;
                    drop(permit);
                });
            }
        }
        None => {
            w.count_drop(turnpike_proto::DropReason::Malformed);
        }
    }
}
