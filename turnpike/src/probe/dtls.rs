//! TURN over DTLS (RFC 8656 §3.1, RFC 7350) as a client, with `dimpl` (the sans-IO DTLS 1.2/1.3
//! implementation the server uses; its `rust-crypto` backend, no OpenSSL): one STUN message or
//! ChannelData per DTLS record. `dimpl` hands over the server's leaf certificate only, so the
//! check is that the leaf is signed directly by a trusted certificate (a private CA given with
//! `--ca`) and names the host; a chain through intermediates cannot be built (`--insecure`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use dimpl::{Config, Dtls, DtlsCertificate, Output};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::error::{ProbeError, Step};
use super::tls::Trust;

/// Largest record sent (a 1280-byte IPv6 path with headers to spare).
const MTU: usize = 1200;

/// A DTLS association over a connected UDP socket.
pub(crate) struct DtlsConn {
    sock: UdpSocket,
    dtls: Dtls,
    /// When `dimpl` wants `handle_timeout` (retransmitting a flight).
    timer: Option<Instant>,
    /// Decrypted records not yet returned.
    ready: VecDeque<Vec<u8>>,
    connected: bool,
    closed: bool,
    peer_cert: Option<Vec<u8>>,
}

impl DtlsConn {
    /// Runs the handshake on `sock` (connected to the server) and checks the certificate.
    pub(crate) async fn handshake(
        sock: UdpSocket,
        host: &str,
        trust: &Trust,
        limit: Duration,
    ) -> Result<Self, ProbeError> {
        let failed = |why: String| ProbeError::Dtls(why);
        let config = Config::builder()
            .mtu(MTU)
            .handshake_timeout(limit)
            .build()
            .map_err(|e| failed(format!("configuration: {e:?}")))?;
        // The server asks for no client certificate, but `dimpl` needs one to start.
        let own = rcgen::generate_simple_self_signed(vec!["turnpike-probe".to_string()])
            .map_err(|e| failed(format!("client certificate: {e}")))?;
        let certificate = DtlsCertificate {
            certificate: own.cert.der().to_vec(),
            private_key: own.signing_key.serialize_der(),
        };
        let mut dtls = Dtls::new_auto(Arc::new(config), certificate, Instant::now().into_std());
        dtls.set_active(true);
        let mut conn = Self {
            sock,
            dtls,
            timer: None,
            ready: VecDeque::new(),
            connected: false,
            closed: false,
            peer_cert: None,
        };
        let deadline = Instant::now() + limit;
        conn.flush(Step::Connect).await?;
        while !conn.connected {
            if !conn.wait(Step::Connect, deadline).await? {
                return Err(failed(format!("no handshake within {limit:?}")));
            }
            if conn.closed {
                return Err(failed("the server closed the association".into()));
            }
        }
        let leaf = conn
            .peer_cert
            .take()
            .ok_or_else(|| failed("the server sent no certificate".into()))?;
        trust
            .verify_leaf(&leaf, host)
            .map_err(|e| failed(format!("invalid peer certificate: {e}")))?;
        Ok(conn)
    }

    /// Sends one message or ChannelData frame as a DTLS record.
    pub(crate) async fn send(&mut self, step: Step, frame: &[u8]) -> Result<(), ProbeError> {
        self.dtls
            .send_application_data(frame)
            .map_err(|e| ProbeError::malformed(step, format!("DTLS: {e}")))?;
        self.flush(step).await
    }

    /// The next decrypted record, or `None` when `deadline` passes first.
    pub(crate) async fn recv(
        &mut self,
        step: Step,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, ProbeError> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(Some(r));
            }
            if self.closed {
                return Err(ProbeError::Closed { step });
            }
            if !self.wait(step, deadline).await? {
                return Ok(None);
            }
        }
    }

    /// Waits for a datagram or `dimpl`'s timer and feeds it in; `false` at `deadline`.
    async fn wait(&mut self, step: Step, deadline: Instant) -> Result<bool, ProbeError> {
        let wake = self.timer.map_or(deadline, |t| t.min(deadline));
        let mut buf = vec![0u8; 65_536];
        match tokio::time::timeout_at(wake, self.sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let now = Instant::now().into_std();
                let fed = self
                    .dtls
                    .handle_timeout(now)
                    .and_then(|()| self.dtls.handle_packet(&buf[..n]));
                if let Err(e) = fed {
                    return Err(ProbeError::Dtls(e.to_string()));
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ProbeError::Connect(e));
            }
            Ok(Err(e)) => return Err(ProbeError::io(step, e)),
            Err(_) if wake >= deadline => return Ok(false),
            Err(_) => {
                self.dtls
                    .handle_timeout(Instant::now().into_std())
                    .map_err(|e| ProbeError::Dtls(e.to_string()))?;
            }
        }
        self.flush(step).await?;
        Ok(true)
    }

    /// Drains `dimpl`'s output: sends its records, keeps what it decrypted and its events.
    async fn flush(&mut self, step: Step) -> Result<(), ProbeError> {
        let mut out = vec![0u8; 2048];
        let mut packets = Vec::new();
        loop {
            match self.dtls.poll_output(&mut out) {
                Output::Packet(p) => packets.push(p.to_vec()),
                Output::BufferTooSmall { needed } => out.resize(needed, 0),
                Output::Timeout(t) => {
                    self.timer = Some(Instant::from_std(t));
                    break;
                }
                Output::Connected => self.connected = true,
                Output::PeerCert(der) => self.peer_cert = Some(der.to_vec()),
                Output::ApplicationData(d) => self.ready.push_back(d.to_vec()),
                Output::CloseNotify => self.closed = true,
                _ => {}
            }
        }
        for p in packets {
            self.sock
                .send(&p)
                .await
                .map_err(|e| ProbeError::io(step, e))?;
        }
        Ok(())
    }
}
