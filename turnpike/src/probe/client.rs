//! A STUN/TURN client over one [`Conn`], built on the `turnpike-stun` codec: transactions with
//! RFC 8489 §6.2.1 retransmission over UDP, long-term credentials as RFC 8489 §9.2 says (the
//! 401 challenge, the nonce cookie's security features, PASSWORD-ALGORITHMS with SHA-256
//! preferred, USERHASH, 438 Stale Nonce), and the TURN requests the probe needs (RFC 8656).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use tokio::time::Instant;
use turnpike_stun::{
    decode_address, decode_error_code, decode_password_algorithm, decode_xor_address, pad4,
    ChannelData, Class, Key, Message, MessageType, MessageWriter, PasswordAlgorithm, StunError,
    TransactionId, ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_ERROR_CODE, ATTR_LIFETIME,
    ATTR_MAPPED_ADDRESS, ATTR_NONCE, ATTR_PASSWORD_ALGORITHM, ATTR_PASSWORD_ALGORITHMS, ATTR_REALM,
    ATTR_REQUESTED_TRANSPORT, ATTR_SOFTWARE, ATTR_USERHASH, ATTR_USERNAME, ATTR_XOR_MAPPED_ADDRESS,
    ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS, METHOD_ALLOCATE, METHOD_BINDING,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, PROTO_UDP,
};

use super::conn::Conn;
use super::error::{ProbeError, Step};

/// RFC 8489 §6.2.1: the initial retransmission timeout over UDP (doubled after each send).
const RTO: Duration = Duration::from_millis(500);
/// RFC 8489 §9.2.5: the nonce cookie announcing security features.
const NONCE_COOKIE: &[u8] = b"obMatJos2";
/// Room for any request the probe writes.
const REQUEST_BUF: usize = 1500;
/// Challenges answered (401 once, then 438 Stale Nonce) before giving up on a request.
const CHALLENGE_ROUNDS: usize = 3;

/// A long-term credential (RFC 8489 §9.2).
#[derive(Clone)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never printed.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the server's challenge settled (RFC 8489 §9.2.5).
struct Auth {
    realm: String,
    nonce: Vec<u8>,
    key: Key,
    algorithm: PasswordAlgorithm,
    /// PASSWORD-ALGORITHMS as the server sent it, echoed in every request; `None` when the nonce
    /// announces no password-algorithm support.
    algorithms: Option<Vec<u8>>,
    userhash: bool,
}

/// The security features of a nonce (RFC 8489 §9.2.5, §18.1), when it carries the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NonceFeatures {
    pub password_algorithms: bool,
    pub username_anonymity: bool,
}

impl NonceFeatures {
    /// The features of `nonce`: `None` without the cookie (a pre-RFC 8489 server).
    pub(crate) fn of(nonce: &[u8]) -> Option<Self> {
        let bits = nonce.strip_prefix(NONCE_COOKIE)?.get(..4)?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(bits)
            .ok()?;
        Some(Self {
            password_algorithms: b[0] & 0x80 != 0,
            username_anonymity: b[0] & 0x40 != 0,
        })
    }
}

/// The algorithms listed in a PASSWORD-ALGORITHMS value (RFC 8489 §14.11).
fn offered_algorithms(v: &[u8]) -> Result<Vec<u16>, StunError> {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let params = u16::from_be_bytes([
            *rest.get(2).ok_or(StunError::BadAttributeValue)?,
            *rest.get(3).ok_or(StunError::BadAttributeValue)?,
        ]) as usize;
        let len = 4 + pad4(params);
        let one = rest.get(..4 + params).ok_or(StunError::BadAttributeValue)?;
        out.push(decode_password_algorithm(one)?);
        rest = rest.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// The server's answer to a Binding request.
#[derive(Debug, Clone)]
pub(crate) struct BindingAnswer {
    pub mapped: SocketAddr,
    pub rtt: Duration,
    pub software: Option<String>,
}

/// A granted allocation.
#[derive(Debug, Clone)]
pub(crate) struct Allocated {
    pub relayed: SocketAddr,
    /// The server's SOFTWARE attribute (some servers send it in authenticated answers only).
    pub software: Option<String>,
    /// From the first Allocate request to the success response (challenge included).
    pub took: Duration,
}

/// Application data that came through the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relayed {
    /// ChannelData on a bound channel.
    Channel { channel: u16, payload: Vec<u8> },
    /// A Data indication from `peer`.
    Indication { peer: SocketAddr, payload: Vec<u8> },
}

/// One STUN/TURN client.
pub(crate) struct Client {
    conn: Conn,
    credentials: Option<Credentials>,
    auth: Option<Auth>,
    /// Data that arrived while a transaction was waiting.
    inbox: VecDeque<Vec<u8>>,
    limit: Duration,
}

impl Client {
    /// A client on `conn`; every step waits at most `limit`.
    pub(crate) fn new(conn: Conn, credentials: Option<Credentials>, limit: Duration) -> Self {
        Self {
            conn,
            credentials,
            auth: None,
            inbox: VecDeque::new(),
            limit,
        }
    }

    /// A Binding request (RFC 8489 §7): the reflexive address and the round-trip time.
    pub(crate) async fn binding(&mut self) -> Result<BindingAnswer, ProbeError> {
        let step = Step::Binding;
        let started = Instant::now();
        let raw = self
            .exchange(step, METHOD_BINDING, false, |_| Ok(()))
            .await?;
        let rtt = started.elapsed();
        let m = Message::parse(&raw).map_err(|e| ProbeError::malformed(step, e))?;
        let tid = m.transaction_id();
        if m.class() == Class::Error {
            return Err(refused(step, &m));
        }
        let mapped = match (m.get(ATTR_XOR_MAPPED_ADDRESS), m.get(ATTR_MAPPED_ADDRESS)) {
            (Some(v), _) => decode_xor_address(v, &tid),
            (None, Some(v)) => decode_address(v),
            (None, None) => return Err(ProbeError::malformed(step, "no XOR-MAPPED-ADDRESS")),
        }
        .map_err(|e| ProbeError::malformed(step, e))?;
        Ok(BindingAnswer {
            mapped,
            rtt,
            software: software(&m),
        })
    }

    /// Allocate (RFC 8656 §7.1) for a UDP relay, answering the 401 challenge.
    pub(crate) async fn allocate(&mut self) -> Result<Allocated, ProbeError> {
        let step = Step::Allocate;
        let started = Instant::now();
        let raw = self
            .authenticated(step, METHOD_ALLOCATE, |w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[PROTO_UDP, 0, 0, 0])
                    .map(drop)
            })
            .await?;
        let took = started.elapsed();
        let m = Message::parse(&raw).map_err(|e| ProbeError::malformed(step, e))?;
        let tid = m.transaction_id();
        let relayed = m
            .get(ATTR_XOR_RELAYED_ADDRESS)
            .ok_or_else(|| ProbeError::malformed(step, "no XOR-RELAYED-ADDRESS"))
            .and_then(|v| {
                decode_xor_address(v, &tid).map_err(|e| ProbeError::malformed(step, e))
            })?;
        Ok(Allocated {
            relayed,
            software: software(&m),
            took,
        })
    }

    /// CreatePermission (RFC 8656 §9) for `peer`'s IP address.
    pub(crate) async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), ProbeError> {
        self.authenticated(Step::CreatePermission, METHOD_CREATE_PERMISSION, |w| {
            w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).map(drop)
        })
        .await
        .map(drop)
    }

    /// ChannelBind (RFC 8656 §12) of `channel` to `peer`.
    pub(crate) async fn channel_bind(
        &mut self,
        channel: u16,
        peer: SocketAddr,
    ) -> Result<(), ProbeError> {
        self.authenticated(Step::ChannelBind, METHOD_CHANNEL_BIND, |w| {
            w.attr(
                ATTR_CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            )?
            .xor_address(ATTR_XOR_PEER_ADDRESS, peer)
            .map(drop)
        })
        .await
        .map(drop)
    }

    /// Refresh with LIFETIME 0 (RFC 8656 §7.2): deletes the allocation.
    pub(crate) async fn release(&mut self) -> Result<(), ProbeError> {
        match self
            .authenticated(Step::Refresh, METHOD_REFRESH, |w| {
                w.attr_u32(ATTR_LIFETIME, 0).map(drop)
            })
            .await
        {
            // A retransmitted Refresh may find the allocation already gone (RFC 8656 §7.3).
            Err(ProbeError::Refused { code: 437, .. }) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Sends `payload` as ChannelData on `channel` (RFC 8656 §12.4), padded over streams.
    pub(crate) async fn send_channel_data(
        &mut self,
        channel: u16,
        payload: &[u8],
    ) -> Result<(), ProbeError> {
        let len = u16::try_from(payload.len())
            .map_err(|_| ProbeError::malformed(Step::Relay, "payload too large"))?;
        let padded = if self.conn.is_datagram() {
            payload.len()
        } else {
            pad4(payload.len())
        };
        let mut frame = vec![0u8; 4 + padded];
        ChannelData::write_header(channel, len, &mut frame[..4]);
        frame[4..4 + payload.len()].copy_from_slice(payload);
        self.conn.send(Step::Relay, &frame).await
    }

    /// The next data relayed to this client, or `None` at `deadline`.
    pub(crate) async fn recv_relayed(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Relayed>, ProbeError> {
        loop {
            let frame = match self.inbox.pop_front() {
                Some(f) => f,
                None => match self.conn.recv(Step::Relay, deadline).await? {
                    Some(f) => f,
                    None => return Ok(None),
                },
            };
            if let Some(r) = relayed(&frame) {
                return Ok(Some(r));
            }
        }
    }

    /// An authenticated request: the first one of a client goes without credentials and learns
    /// the realm and nonce from the 401; a 438 renews the nonce. Returns the success response.
    async fn authenticated(
        &mut self,
        step: Step,
        method: u16,
        attrs: impl Fn(&mut MessageWriter<'_>) -> Result<(), StunError>,
    ) -> Result<Vec<u8>, ProbeError> {
        for _ in 0..CHALLENGE_ROUNDS {
            let had_auth = self.auth.is_some();
            let raw = self.exchange(step, method, true, &attrs).await?;
            let m = Message::parse(&raw).map_err(|e| ProbeError::malformed(step, e))?;
            if m.class() == Class::Success {
                if let Some(auth) = &self.auth {
                    if m.has_integrity() && !m.check_integrity(auth.key.as_bytes()) {
                        return Err(ProbeError::Integrity { step });
                    }
                }
                return Ok(raw);
            }
            match error_code(&m) {
                Some(401) if !had_auth => self.learn(step, &m)?,
                Some(401) => return Err(ProbeError::WrongCredentials { step }),
                Some(438) => self.learn(step, &m)?,
                _ => return Err(refused(step, &m)),
            }
        }
        Err(ProbeError::Challenge {
            step,
            why: "the server keeps answering 401/438",
        })
    }

    /// Takes the challenge of a 401 or 438 (RFC 8489 §9.2.5).
    fn learn(&mut self, step: Step, m: &Message<'_>) -> Result<(), ProbeError> {
        let challenge = |why| ProbeError::Challenge { step, why };
        let Some(creds) = self.credentials.clone() else {
            return Err(ProbeError::NoCredentials);
        };
        let realm = m
            .get(ATTR_REALM)
            .ok_or(challenge("no REALM"))
            .and_then(|r| std::str::from_utf8(r).map_err(|_| challenge("REALM is not UTF-8")))?;
        let nonce = m.get(ATTR_NONCE).ok_or(challenge("no NONCE"))?;
        let features = NonceFeatures::of(nonce);
        let (algorithm, algorithms) = match features {
            Some(f) if f.password_algorithms => {
                let Some(list) = m.get(ATTR_PASSWORD_ALGORITHMS) else {
                    return Err(challenge(
                        "the nonce announces PASSWORD-ALGORITHMS but none came (RFC 8489 §9.2.5)",
                    ));
                };
                let offered = offered_algorithms(list)
                    .map_err(|_| challenge("malformed PASSWORD-ALGORITHMS"))?;
                let pick = [PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5]
                    .into_iter()
                    .find(|a| offered.contains(&a.number()))
                    .ok_or(challenge("no password algorithm in common (MD5, SHA-256)"))?;
                (pick, Some(list.to_vec()))
            }
            _ => (PasswordAlgorithm::Md5, None),
        };
        let (u, r, p) = (
            creds.username.as_bytes(),
            realm.as_bytes(),
            creds.password.as_bytes(),
        );
        let key = match algorithm {
            PasswordAlgorithm::Md5 => turnpike_stun::long_term_key(u, r, p),
            PasswordAlgorithm::Sha256 => turnpike_stun::long_term_key_sha256(u, r, p),
        };
        self.auth = Some(Auth {
            realm: realm.to_string(),
            nonce: nonce.to_vec(),
            key,
            algorithm,
            algorithms,
            userhash: features.is_some_and(|f| f.username_anonymity),
        });
        Ok(())
    }

    /// One transaction: writes the request (with credentials when `authenticate` and a
    /// challenge was taken), retransmits over UDP (RTO 500 ms, doubling) until `limit`, and
    /// returns the response with the same transaction id. Other traffic is kept in the inbox.
    async fn exchange(
        &mut self,
        step: Step,
        method: u16,
        authenticate: bool,
        attrs: impl Fn(&mut MessageWriter<'_>) -> Result<(), StunError>,
    ) -> Result<Vec<u8>, ProbeError> {
        let tid: TransactionId = rand::random();
        let mut buf = vec![0u8; REQUEST_BUF];
        let auth = self.auth.as_ref().filter(|_| authenticate);
        let username = self.credentials.as_ref().map(|c| c.username.as_str());
        let n = write_request(&mut buf, method, tid, auth, username, &attrs)
            .map_err(|e| ProbeError::malformed(step, format!("cannot write the request: {e}")))?;
        let request = &buf[..n];
        let deadline = Instant::now() + self.limit;
        let mut rto = RTO;
        loop {
            self.conn.send(step, request).await?;
            let resend_at = if self.conn.is_datagram() {
                (Instant::now() + rto).min(deadline)
            } else {
                deadline
            };
            rto *= 2;
            loop {
                let Some(frame) = self.conn.recv(step, resend_at).await? else {
                    break;
                };
                match Message::parse(&frame) {
                    Ok(m)
                        if m.transaction_id() == tid
                            && m.method() == method
                            && matches!(m.class(), Class::Success | Class::Error) =>
                    {
                        return Ok(frame);
                    }
                    // Relayed data for a later step; anything else is stray and dropped.
                    _ if relayed(&frame).is_some() => self.inbox.push_back(frame),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(ProbeError::Timeout {
                    step,
                    limit: self.limit,
                });
            }
        }
    }
}

/// Writes a request: `attrs`, then (with `auth`) USERNAME or USERHASH, REALM, NONCE,
/// PASSWORD-ALGORITHM(S) and MESSAGE-INTEGRITY(-SHA256), then FINGERPRINT.
fn write_request(
    buf: &mut [u8],
    method: u16,
    tid: TransactionId,
    auth: Option<&Auth>,
    username: Option<&str>,
    attrs: impl Fn(&mut MessageWriter<'_>) -> Result<(), StunError>,
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(buf, MessageType::new(method, Class::Request), tid)?;
    attrs(&mut w)?;
    if let (Some(a), Some(user)) = (auth, username) {
        if a.userhash {
            w.attr(
                ATTR_USERHASH,
                &turnpike_stun::userhash(user.as_bytes(), a.realm.as_bytes()),
            )?;
        } else {
            w.attr(ATTR_USERNAME, user.as_bytes())?;
        }
        w.attr(ATTR_REALM, a.realm.as_bytes())?;
        w.attr(ATTR_NONCE, &a.nonce)?;
        if let Some(list) = &a.algorithms {
            let n = a.algorithm.number().to_be_bytes();
            w.attr(ATTR_PASSWORD_ALGORITHM, &[n[0], n[1], 0, 0])?;
            w.attr(ATTR_PASSWORD_ALGORITHMS, list)?;
        }
        if a.algorithm == PasswordAlgorithm::Sha256 && a.algorithms.is_some() {
            w.integrity_sha256(&a.key)?;
        } else {
            w.integrity(&a.key)?;
        }
    }
    w.fingerprint()?;
    Ok(w.finish())
}

/// The SOFTWARE attribute of a message, if it is UTF-8.
fn software(m: &Message<'_>) -> Option<String> {
    m.get(ATTR_SOFTWARE)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

/// The error code of an error response.
fn error_code(m: &Message<'_>) -> Option<u16> {
    m.get(ATTR_ERROR_CODE)
        .and_then(|v| decode_error_code(v).ok())
        .map(|e| e.code)
}

/// An error response as a refusal with its code and the server's reason phrase.
fn refused(step: Step, m: &Message<'_>) -> ProbeError {
    match m.get(ATTR_ERROR_CODE).map(decode_error_code) {
        Some(Ok(e)) => ProbeError::Refused {
            step,
            code: e.code,
            reason: if e.reason.is_empty() {
                turnpike_stun::reason_phrase(e.code).to_string()
            } else {
                e.reason.to_string()
            },
        },
        _ => ProbeError::malformed(step, "error response without a valid ERROR-CODE"),
    }
}

/// ChannelData or a Data indication, decoded.
fn relayed(frame: &[u8]) -> Option<Relayed> {
    if let Ok(cd) = ChannelData::parse(frame) {
        return Some(Relayed::Channel {
            channel: cd.channel,
            payload: cd.payload.to_vec(),
        });
    }
    let m = Message::parse(frame).ok()?;
    if m.typ() != MessageType::new(METHOD_DATA, Class::Indication) {
        return None;
    }
    let peer = decode_xor_address(m.get(ATTR_XOR_PEER_ADDRESS)?, &m.transaction_id()).ok()?;
    Some(Relayed::Indication {
        peer,
        payload: m.get(ATTR_DATA)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_features() {
        // Turnpike's nonces: cookie, then "gAAA" for the password-algorithms bit alone.
        assert_eq!(
            NonceFeatures::of(b"obMatJos2gAAA0011223344556677"),
            Some(NonceFeatures {
                password_algorithms: true,
                username_anonymity: false
            })
        );
        assert_eq!(
            NonceFeatures::of(b"obMatJos2wAAAxyz"),
            Some(NonceFeatures {
                password_algorithms: true,
                username_anonymity: true
            })
        );
        assert_eq!(NonceFeatures::of(b"0f6c2d1a9b8e"), None);
        assert_eq!(NonceFeatures::of(b"obMatJos2gA"), None);
        assert_eq!(NonceFeatures::of(b"obMatJos2!!!!"), None);
    }

    #[test]
    fn password_algorithms_list() {
        assert_eq!(
            offered_algorithms(&[0, 2, 0, 0, 0, 1, 0, 0]),
            Ok(vec![2, 1])
        );
        // An algorithm with 2 bytes of parameters, padded to 4.
        assert_eq!(
            offered_algorithms(&[0, 1, 0, 2, 9, 9, 0, 0, 0, 2, 0, 0]),
            Ok(vec![1, 2])
        );
        assert!(offered_algorithms(&[0, 1, 0]).is_err());
        assert!(offered_algorithms(&[0, 1, 0, 8, 1]).is_err());
    }

    /// The request a SHA-256 challenge produces: USERHASH when asked, both algorithm
    /// attributes echoed, MESSAGE-INTEGRITY-SHA256 that checks with the SHA-256 key, FINGERPRINT.
    #[test]
    fn authenticated_request_follows_the_challenge() {
        let key = turnpike_stun::long_term_key_sha256(b"u", b"test", b"p");
        let auth = Auth {
            realm: "test".into(),
            nonce: b"obMatJos2wAAAnonce".to_vec(),
            key,
            algorithm: PasswordAlgorithm::Sha256,
            algorithms: Some(vec![0, 2, 0, 0, 0, 1, 0, 0]),
            userhash: true,
        };
        let mut buf = [0u8; REQUEST_BUF];
        let tid = [7u8; 12];
        let n = write_request(
            &mut buf,
            METHOD_ALLOCATE,
            tid,
            Some(&auth),
            Some("u"),
            |w| {
                w.attr(ATTR_REQUESTED_TRANSPORT, &[PROTO_UDP, 0, 0, 0])
                    .map(drop)
            },
        )
        .unwrap();
        let m = Message::parse_exact(&buf[..n]).unwrap();
        assert_eq!(m.get(ATTR_USERNAME), None);
        assert_eq!(
            m.get(ATTR_USERHASH),
            Some(&turnpike_stun::userhash(b"u", b"test")[..])
        );
        assert_eq!(m.get(ATTR_PASSWORD_ALGORITHM), Some(&[0, 2, 0, 0][..]));
        assert_eq!(
            m.get(ATTR_PASSWORD_ALGORITHMS),
            Some(&[0, 2, 0, 0, 0, 1, 0, 0][..])
        );
        assert!(m.has_integrity_sha256());
        assert!(m.check_integrity(key.as_bytes()));
        assert!(!m.check_integrity(turnpike_stun::long_term_key(b"u", b"test", b"p").as_bytes()));
        assert_eq!(m.check_fingerprint(), Ok(true));
    }

    #[test]
    fn md5_without_cookie_uses_message_integrity() {
        let key = turnpike_stun::long_term_key(b"u", b"test", b"p");
        let auth = Auth {
            realm: "test".into(),
            nonce: b"plainnonce".to_vec(),
            key,
            algorithm: PasswordAlgorithm::Md5,
            algorithms: None,
            userhash: false,
        };
        let mut buf = [0u8; REQUEST_BUF];
        let n = write_request(
            &mut buf,
            METHOD_REFRESH,
            [1; 12],
            Some(&auth),
            Some("u"),
            |w| w.attr_u32(ATTR_LIFETIME, 0).map(drop),
        )
        .unwrap();
        let m = Message::parse_exact(&buf[..n]).unwrap();
        assert_eq!(m.get(ATTR_USERNAME), Some(&b"u"[..]));
        assert_eq!(m.get(ATTR_PASSWORD_ALGORITHM), None);
        assert!(m.has_integrity() && !m.has_integrity_sha256());
        assert!(m.check_integrity(key.as_bytes()));
    }

    #[test]
    fn relayed_data_is_recognised() {
        let mut cd = vec![0u8; 8];
        ChannelData::write_header(0x4000, 3, &mut cd[..4]);
        cd[4..7].copy_from_slice(b"abc");
        assert_eq!(
            relayed(&cd),
            Some(Relayed::Channel {
                channel: 0x4000,
                payload: b"abc".to_vec()
            })
        );
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut buf = [0u8; 200];
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(METHOD_DATA, Class::Indication),
            [3; 12],
        )
        .unwrap();
        w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).unwrap();
        w.attr(ATTR_DATA, b"xyz").unwrap();
        let n = w.finish();
        assert_eq!(
            relayed(&buf[..n]),
            Some(Relayed::Indication {
                peer,
                payload: b"xyz".to_vec()
            })
        );
        // A Binding response is not relayed data.
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(METHOD_BINDING, Class::Success),
            [3; 12],
        )
        .unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        assert_eq!(relayed(&buf[..n]), None);
    }
}
