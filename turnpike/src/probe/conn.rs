//! One client transport to the server: a connected UDP socket (one datagram is one message), a
//! DTLS association on one (one record is one message), or a TCP or TLS stream split into STUN
//! and ChannelData frames (RFC 8656 §11.5: ChannelData padded to 4 bytes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::dtls::DtlsConn;
use super::error::{ProbeError, Step};
use super::tls::{Trust, ALPN_TURN};
use super::uri::Transport;

/// Largest datagram or frame read (a STUN message or ChannelData is at most 64 KiB + header).
const MAX_FRAME: usize = 65_536 + 4;

/// A byte stream: TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Kind {
    Udp(UdpSocket),
    Dtls(Box<DtlsConn>),
    Stream {
        io: Box<dyn Stream>,
        /// Bytes read but not yet returned as a frame.
        pending: Vec<u8>,
    },
}

/// A connection to one server address.
pub(crate) struct Conn {
    kind: Kind,
}

impl Conn {
    /// Connects to `server` over `transport` (TLS verifies the certificate for `host`).
    pub(crate) async fn open(
        transport: Transport,
        server: SocketAddr,
        host: &str,
        trust: &Trust,
        limit: Duration,
    ) -> Result<Self, ProbeError> {
        let deadline = Instant::now() + limit;
        let timeout = ProbeError::Timeout {
            step: Step::Connect,
            limit,
        };
        match transport {
            Transport::Udp | Transport::Dtls => {
                let any: SocketAddr = if server.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(any).await.map_err(ProbeError::Connect)?;
                sock.connect(server).await.map_err(ProbeError::Connect)?;
                let kind = if transport == Transport::Dtls {
                    Kind::Dtls(Box::new(
                        DtlsConn::handshake(sock, host, trust, limit).await?,
                    ))
                } else {
                    Kind::Udp(sock)
                };
                Ok(Self { kind })
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(server))
                    .await
                    .map_err(|_| timeout)?
                    .map_err(ProbeError::Connect)?;
                tcp.set_nodelay(true).map_err(ProbeError::Connect)?;
                let io: Box<dyn Stream> = if transport == Transport::Tls {
                    let config = trust.client_config(&[ALPN_TURN])?;
                    let name = ServerName::try_from(host.to_string()).map_err(|e| {
                        ProbeError::Tls(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("`{host}` is not a valid TLS server name: {e}"),
                        ))
                    })?;
                    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                    let tls = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
                        .await
                        .map_err(|_| ProbeError::Tls(std::io::ErrorKind::TimedOut.into()))?
                        .map_err(ProbeError::Tls)?;
                    Box::new(tls)
                } else {
                    Box::new(tcp)
                };
                Ok(Self {
                    kind: Kind::Stream {
                        io,
                        pending: Vec::new(),
                    },
                })
            }
        }
    }

    /// Whether messages may be lost (and requests must be retransmitted).
    pub(crate) fn is_datagram(&self) -> bool {
        matches!(self.kind, Kind::Udp(_) | Kind::Dtls(_))
    }

    /// Sends one message or ChannelData frame (already padded for streams).
    pub(crate) async fn send(&mut self, step: Step, frame: &[u8]) -> Result<(), ProbeError> {
        match &mut self.kind {
            Kind::Udp(s) => s.send(frame).await.map(drop),
            Kind::Dtls(d) => return d.send(step, frame).await,
            Kind::Stream { io, .. } => io.write_all(frame).await,
        }
        .map_err(|e| ProbeError::io(step, e))
    }

    /// The next message or frame, or `None` when `deadline` passes first.
    pub(crate) async fn recv(
        &mut self,
        step: Step,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, ProbeError> {
        match &mut self.kind {
            Kind::Udp(s) => {
                let mut buf = vec![0u8; MAX_FRAME];
                match tokio::time::timeout_at(deadline, s.recv(&mut buf)).await {
                    Err(_) => Ok(None),
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    // An ICMP port unreachable from an earlier datagram: nothing listens there.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Err(ProbeError::Connect(e))
                    }
                    Ok(Err(e)) => Err(ProbeError::io(step, e)),
                }
            }
            Kind::Dtls(d) => d.recv(step, deadline).await,
            Kind::Stream { io, pending } => loop {
                let size = turnpike_stun::frame_len(pending)
                    .map_err(|e| ProbeError::malformed(step, format!("bad stream framing: {e}")))?;
                if let Some(n) = size {
                    let rest = pending.split_off(n);
                    return Ok(Some(std::mem::replace(pending, rest)));
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
                    Err(_) => return Ok(None),
                    Ok(r) => r.map_err(|e| ProbeError::io(step, e))?,
                };
                if n == 0 {
                    return Err(ProbeError::Closed { step });
                }
                pending.extend_from_slice(&chunk[..n]);
                if pending.len() > 2 * MAX_FRAME {
                    return Err(ProbeError::malformed(step, "oversized frame"));
                }
            },
        }
    }
}
