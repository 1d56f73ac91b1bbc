//! TURN over DTLS (RFC 8656 §3.1, DTLS 1.2/1.3) with `dimpl`, a sans-IO DTLS implementation
//! (chosen because it fits this driver's design: we feed it datagrams and time and poll records
//! out, exactly as we drive `turnpike-proto`; it is pure Rust, `forbid(unsafe_code)`, maintained
//! for str0m's WebRTC stack). Its limits are ours: ECDSA certificates only (no RSA), ECDHE-ECDSA
//! AES-GCM/ChaCha20 suites.
//!
//! One DTLS association per client address on a DTLS listener. On such a listener, datagrams
//! whose first byte is 20-63 are DTLS (RFC 7983); STUN and ChannelData (0-3, 64-79) are served as
//! plain UDP, so one UDP port carries both.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dimpl::{Config, Dtls, DtlsCertificate};
use turnpike_proto::FiveTuple;

/// Most DTLS associations one worker keeps.
const MAX_SESSIONS: usize = 20_000;
/// Largest DTLS record we emit (fits a 1500-byte path with IP/UDP headers).
const MTU: usize = 1400;

/// DTLS settings and the current certificate, shared by all workers.
pub struct DtlsContext {
    config: Arc<Config>,
    cert: RwLock<DtlsCertificate>,
    /// Associations idle this long are dropped.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsContext").finish_non_exhaustive()
    }
}

impl DtlsContext {
    /// A server context with `cert` (DER certificate and PKCS#8 ECDSA key).
    pub fn new(
        cert_der: Vec<u8>,
        key_der: Vec<u8>,
        handshake_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Arc<Self>, String> {
        let config = Config::builder()
            .require_client_certificate(false)
            .use_server_cookie(true)
            .mtu(MTU)
            .handshake_timeout(handshake_timeout)
            .build()
            .map_err(|e| format!("{e:?}"))?;
        Ok(Arc::new(Self {
            config: Arc::new(config),
            cert: RwLock::new(DtlsCertificate {
                certificate: cert_der,
                private_key: key_der,
            }),
            idle_timeout,
        }))
    }

    /// Replaces the certificate for new associations.
    pub fn set_certificate(&self, cert_der: Vec<u8>, key_der: Vec<u8>) {
        *self.cert.write().unwrap_or_else(|e| e.into_inner()) = DtlsCertificate {
            certificate: cert_der,
            private_key: key_der,
        };
    }

    fn new_session(&self, now: Instant) -> Dtls {
        let cert = self.cert.read().unwrap_or_else(|e| e.into_inner()).clone();
        Dtls::new_auto(self.config.clone(), cert, now)
    }
}

/// One client's DTLS association.
pub(crate) struct Session {
    dtls: Dtls,
    deadline: Option<Instant>,
    last_seen: Instant,
    closed: bool,
}

/// What pumping an association produced.
#[derive(Default)]
pub(crate) struct Pumped {
    /// Records to send to the client.
    pub packets: Vec<Vec<u8>>,
    /// Decrypted STUN/ChannelData from the client.
    pub app_data: Vec<Vec<u8>>,
}

/// A worker's DTLS associations by 5-tuple.
#[derive(Default)]
pub(crate) struct Sessions {
    map: HashMap<FiveTuple, Session>,
    buf: Vec<u8>,
}

impl Sessions {
    fn pump(buf: &mut Vec<u8>, s: &mut Session, out: &mut Pumped) {
        if buf.len() < 2 * 65_536 {
            buf.resize(2 * 65_536, 0);
        }
        loop {
            match s.dtls.poll_output(buf) {
                dimpl::Output::Packet(p) => out.packets.push(p.to_vec()),
                dimpl::Output::ApplicationData(d) => out.app_data.push(d.to_vec()),
                dimpl::Output::Timeout(t) => {
                    s.deadline = Some(t);
                    break;
                }
                dimpl::Output::CloseNotify => s.closed = true,
                dimpl::Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                _ => {}
            }
        }
    }

    /// A datagram from the client on `ft`; `None` when it was refused (table full, bad DTLS).
    pub(crate) fn receive(
        &mut self,
        ctx: &DtlsContext,
        now: Instant,
        ft: FiveTuple,
        data: &[u8],
    ) -> Option<Pumped> {
        if !self.map.contains_key(&ft) {
            if self.map.len() >= MAX_SESSIONS {
                return None;
            }
            self.map.insert(
                ft,
                Session {
                    dtls: ctx.new_session(now),
                    deadline: None,
                    last_seen: now,
                    closed: false,
                },
            );
        }
        let s = self.map.get_mut(&ft)?;
        s.last_seen = now;
        let _ = s.dtls.handle_timeout(now);
        let mut out = Pumped::default();
        if let Err(e) = s.dtls.handle_packet(data) {
            tracing::debug!(client = %ft.client, error = ?e, "DTLS record refused");
            if !s.dtls.is_active() && s.deadline.is_none() {
                // Nothing established yet: forget the association.
                self.map.remove(&ft);
                return None;
            }
        }
        Self::pump(&mut self.buf, s, &mut out);
        Some(out)
    }

    /// Encrypts `data` for the client on `ft`; the records to send.
    pub(crate) fn send(&mut self, ft: &FiveTuple, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        let s = self.map.get_mut(ft)?;
        s.dtls.send_application_data(data).ok()?;
        let mut out = Pumped::default();
        Self::pump(&mut self.buf, s, &mut out);
        Some(out.packets)
    }

    /// Runs due retransmission timers and drops idle or closed associations. Returns records to
    /// send and the 5-tuples whose association ended.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        idle: Duration,
    ) -> (Vec<(FiveTuple, Vec<u8>)>, Vec<FiveTuple>) {
        let mut sends = Vec::new();
        let mut ended = Vec::new();
        for (ft, s) in self.map.iter_mut() {
            if s.closed || now.saturating_duration_since(s.last_seen) > idle || s.dtls.is_closed() {
                ended.push(*ft);
                continue;
            }
            if s.deadline.is_some_and(|d| d <= now) {
                if s.dtls.handle_timeout(now).is_err() {
                    ended.push(*ft);
                    continue;
                }
                let mut out = Pumped::default();
                Self::pump(&mut self.buf, s, &mut out);
                sends.extend(out.packets.into_iter().map(|p| (*ft, p)));
            }
        }
        for ft in &ended {
            self.map.remove(ft);
        }
        (sends, ended)
    }
}

/// Whether `b` starts a DTLS record (RFC 7983 §7: 20-63).
pub(crate) fn is_dtls(b: &[u8]) -> bool {
    matches!(b.first(), Some(20..=63))
}
