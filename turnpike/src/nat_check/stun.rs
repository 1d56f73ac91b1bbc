//! The Binding transactions of RFC 5780 over an unconnected UDP socket (answers may come from
//! the server's other address), with RFC 8489 §6.2.1 retransmissions bounded by a time limit.
//! An answer counts only when it comes from the address the request asked it to come from
//! (RFC 5780 §4.4): a server that ignores CHANGE-REQUEST and answers from its primary address
//! must not look like an open filter.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use turnpike_stun::{
    decode_address, decode_error_code, decode_xor_address, Class, Message, MessageType,
    MessageWriter, TransactionId, ATTR_CHANGE_REQUEST, ATTR_ERROR_CODE, ATTR_MAPPED_ADDRESS,
    ATTR_OTHER_ADDRESS, ATTR_RESPONSE_PORT, ATTR_XOR_MAPPED_ADDRESS, METHOD_BINDING,
};

/// RFC 8489 §6.2.1: the initial retransmission timeout, doubled after each send.
const RTO: Duration = Duration::from_millis(500);
/// RFC 8489 §6.2.1's Rc: requests sent at most.
const MAX_SENDS: usize = 7;

/// CHANGE-REQUEST (RFC 5780 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    Port,
    IpAndPort,
}

impl Change {
    /// Where the answer to a request sent to `to` with this CHANGE-REQUEST must come from,
    /// given the server's OTHER-ADDRESS `other` (RFC 5780 §4.4, §7.2): `to` itself; the same
    /// IP and the other port; the other IP and port.
    pub(crate) fn source(self, to: SocketAddr, other: Option<SocketAddr>) -> Result<SocketAddr> {
        Ok(match (self, other) {
            (Self::None, _) => to,
            (Self::Port, Some(o)) => SocketAddr::new(to.ip(), o.port()),
            (Self::IpAndPort, Some(o)) => o,
            (_, None) => anyhow::bail!("a CHANGE-REQUEST test needs the server's OTHER-ADDRESS"),
        })
    }
}

/// Why a transaction got no answer.
#[derive(Debug)]
pub(crate) enum Silence {
    /// Nothing came back within the time limit.
    NoAnswer,
    /// The request could not even be sent: no route to the server (ENETUNREACH,
    /// EHOSTUNREACH): to the caller the same as no answer.
    NoRoute(std::io::Error),
}

/// A transaction's outcome: the accepted answer, or why there is none.
pub(crate) type Reply<T> = std::result::Result<T, Silence>;

/// A Binding success response.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub mapped: SocketAddr,
    pub other: Option<SocketAddr>,
}

fn request(tid: TransactionId, change: Change, response_port: Option<u16>) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 128];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(METHOD_BINDING, Class::Request),
        tid,
    )?;
    let flags = match change {
        Change::None => None,
        Change::Port => Some(0x02),
        Change::IpAndPort => Some(0x06),
    };
    if let Some(f) = flags {
        w.attr(ATTR_CHANGE_REQUEST, &[0, 0, 0, f])?;
    }
    if let Some(p) = response_port {
        let [a, b] = p.to_be_bytes();
        w.attr(ATTR_RESPONSE_PORT, &[a, b, 0, 0])?;
    }
    let n = w.finish();
    buf.truncate(n);
    Ok(buf)
}

fn answer(m: &Message<'_>) -> Result<Answer> {
    let tid = m.transaction_id();
    if m.class() == Class::Error {
        let why = m
            .get(ATTR_ERROR_CODE)
            .and_then(|v| decode_error_code(v).ok())
            .map(|e| format!("{} {}", e.code, e.reason))
            .unwrap_or_else(|| "an error without ERROR-CODE".into());
        anyhow::bail!("the server refused the Binding request: {why}");
    }
    let mapped = match (m.get(ATTR_XOR_MAPPED_ADDRESS), m.get(ATTR_MAPPED_ADDRESS)) {
        (Some(v), _) => decode_xor_address(v, &tid),
        (None, Some(v)) => decode_address(v),
        (None, None) => anyhow::bail!("a Binding response without XOR-MAPPED-ADDRESS"),
    }
    .map_err(|e| anyhow::anyhow!("a bad mapped address: {e}"))?;
    Ok(Answer {
        mapped,
        other: m
            .get(ATTR_OTHER_ADDRESS)
            .and_then(|v| decode_address(v).ok()),
    })
}

/// Whether a failed send means the same as no answer: an ICMP error from an earlier datagram
/// (refused), or no route to the destination (a network without UDP, or without any route).
fn silent_send_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | NetworkUnreachable | HostUnreachable
    )
}

/// Sends `req` to `to` from `send` (retransmitting per RFC 8489) and waits on `recv` for a
/// message that `accept` takes, until `limit` passes. With `from`, datagrams from any other
/// address are ignored.
async fn transact<T>(
    send: &UdpSocket,
    recv: &UdpSocket,
    to: SocketAddr,
    from: Option<SocketAddr>,
    req: &[u8],
    limit: Duration,
    mut accept: impl FnMut(&[u8]) -> Option<Result<T>>,
) -> Result<Reply<T>> {
    let deadline = Instant::now() + limit;
    let mut rto = RTO;
    let mut buf = vec![0u8; 2048];
    let mut no_route = None;
    for _ in 0..MAX_SENDS {
        if Instant::now() >= deadline {
            break;
        }
        match send.send_to(req, to).await {
            Ok(_) => no_route = None,
            Err(e) if silent_send_error(&e) => {
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    no_route = Some(e);
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot send to {to}")),
        }
        let resend_at = (Instant::now() + rto).min(deadline);
        rto *= 2;
        loop {
            match tokio::time::timeout_at(resend_at, recv.recv_from(&mut buf)).await {
                Err(_) => break,
                // An ICMP error from an earlier datagram: keep waiting.
                Ok(Err(_)) => continue,
                Ok(Ok((n, src))) => {
                    if from.is_some_and(|f| !same_endpoint(src, f)) {
                        continue;
                    }
                    if let Some(r) = accept(&buf[..n]) {
                        return r.map(Ok);
                    }
                }
            }
        }
    }
    Ok(Err(no_route.map_or(Silence::NoAnswer, Silence::NoRoute)))
}

/// `a` and `b` are one endpoint (an IPv4-mapped IPv6 address equals its IPv4 address).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// One Binding transaction from `s` to `to`, answered from `from` (see [`Change::source`]);
/// `Err(Silence)` when no answer from there came within `limit`.
pub(crate) async fn binding(
    s: &UdpSocket,
    to: SocketAddr,
    from: SocketAddr,
    change: Change,
    limit: Duration,
) -> Result<Reply<Answer>> {
    let tid: TransactionId = rand::random();
    let req = request(tid, change, None)?;
    transact(
        s,
        s,
        to,
        Some(from),
        &req,
        limit,
        |raw| match Message::parse(raw) {
            Ok(m)
                if m.transaction_id() == tid
                    && m.method() == METHOD_BINDING
                    && matches!(m.class(), Class::Success | Class::Error) =>
            {
                Some(answer(&m))
            }
            _ => None,
        },
    )
    .await
}

/// RFC 5780 §4.5: a Binding request to our own mapped address; whether it came back (from
/// any address: our own random transaction id identifies it).
pub(crate) async fn hairpin(s: &UdpSocket, mapped: SocketAddr, limit: Duration) -> Result<bool> {
    let tid: TransactionId = rand::random();
    let req = request(tid, Change::None, None)?;
    let got = transact(
        s,
        s,
        mapped,
        None,
        &req,
        limit,
        |raw| match Message::parse(raw) {
            Ok(m) if m.transaction_id() == tid && m.class() == Class::Request => Some(Ok(())),
            _ => None,
        },
    )
    .await?;
    Ok(got.is_ok())
}

/// RFC 5780 §4.6: from `y`, a Binding request to `server` with RESPONSE-PORT `port` (x's mapped
/// port); whether `x` received the answer.
pub(crate) async fn binding_elsewhere(
    y: &UdpSocket,
    x: &UdpSocket,
    server: SocketAddr,
    port: u16,
    limit: Duration,
) -> Result<bool> {
    let tid: TransactionId = rand::random();
    let req = request(tid, Change::None, Some(port))?;
    let got = transact(
        y,
        x,
        server,
        Some(server),
        &req,
        limit,
        |raw| match Message::parse(raw) {
            Ok(m) if m.transaction_id() == tid && m.class() == Class::Success => Some(Ok(())),
            _ => None,
        },
    )
    .await?;
    Ok(got.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_stun::{decode_change_request, decode_response_port};

    #[test]
    fn requests_carry_change_request_and_response_port() {
        let tid = [7u8; 12];
        let raw = request(tid, Change::IpAndPort, Some(40000)).unwrap();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.method(), METHOD_BINDING);
        assert_eq!(m.class(), Class::Request);
        let c = decode_change_request(m.get(ATTR_CHANGE_REQUEST).unwrap()).unwrap();
        assert!(c.change_ip && c.change_port);
        assert_eq!(
            decode_response_port(m.get(ATTR_RESPONSE_PORT).unwrap()).unwrap(),
            40000
        );
        let raw = request(tid, Change::Port, None).unwrap();
        let m = Message::parse(&raw).unwrap();
        let c = decode_change_request(m.get(ATTR_CHANGE_REQUEST).unwrap()).unwrap();
        assert!(!c.change_ip && c.change_port);
        assert!(m.get(ATTR_RESPONSE_PORT).is_none());
    }

    #[test]
    fn answers_read_mapped_and_other_address() {
        let buf = binding_success(
            [9u8; 12],
            "198.51.100.6:40000".parse().unwrap(),
            Some("203.0.113.11:3479".parse().unwrap()),
        );
        let a = answer(&Message::parse(&buf).unwrap()).unwrap();
        assert_eq!(a.mapped, "198.51.100.6:40000".parse().unwrap());
        assert_eq!(a.other, Some("203.0.113.11:3479".parse().unwrap()));
    }

    #[test]
    fn answers_must_come_from_where_the_change_request_says() {
        let to: SocketAddr = "203.0.113.10:3478".parse().unwrap();
        let other: SocketAddr = "203.0.113.11:3479".parse().unwrap();
        assert_eq!(Change::None.source(to, None).unwrap(), to);
        assert_eq!(
            Change::Port.source(to, Some(other)).unwrap(),
            "203.0.113.10:3479".parse().unwrap()
        );
        assert_eq!(Change::IpAndPort.source(to, Some(other)).unwrap(), other);
        assert!(Change::Port.source(to, None).is_err());
        assert!(same_endpoint(
            "[::ffff:203.0.113.10]:3478".parse().unwrap(),
            to
        ));
    }

    /// A Binding success response with transaction `tid`, mapping `mapped`, naming `other` in
    /// OTHER-ADDRESS if given.
    fn binding_success(
        tid: TransactionId,
        mapped: SocketAddr,
        other: Option<SocketAddr>,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(METHOD_BINDING, Class::Success),
            tid,
        )
        .unwrap();
        w.xor_address(ATTR_XOR_MAPPED_ADDRESS, mapped).unwrap();
        if let Some(other) = other {
            w.address(ATTR_OTHER_ADDRESS, other).unwrap();
        }
        let n = w.finish();
        buf.truncate(n);
        buf
    }

    /// A success response to the request in `raw`, mapping `mapped`.
    fn success_to(raw: &[u8], mapped: SocketAddr) -> Vec<u8> {
        binding_success(Message::parse(raw).unwrap().transaction_id(), mapped, None)
    }

    /// RFC 5780 §4.4: a server that ignores CHANGE-REQUEST "change port" and answers from the
    /// port the request went to is not an answer (else every filter would look open); the
    /// answer from the other port is.
    #[tokio::test]
    async fn an_answer_from_the_wrong_source_is_ignored() {
        use std::sync::Arc;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let primary = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let alternate = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let to = primary.local_addr().unwrap();
        let from = Change::Port
            .source(to, Some(alternate.local_addr().unwrap()))
            .unwrap();
        let me = client.local_addr().unwrap();
        // Answers each request (a bounded number) from `answer_from`.
        let serve = |answer_from: Arc<UdpSocket>| {
            let primary = primary.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                for _ in 0..MAX_SENDS {
                    let Ok((n, peer)) = primary.recv_from(&mut buf).await else {
                        break;
                    };
                    let _ = answer_from
                        .send_to(&success_to(&buf[..n], peer), peer)
                        .await;
                }
            })
        };
        // A server that ignores "change port": its answers come from the primary port.
        let server = serve(primary.clone());
        let got = binding(&client, to, from, Change::Port, Duration::from_millis(1200))
            .await
            .unwrap();
        assert!(matches!(got, Err(Silence::NoAnswer)), "{got:?}");
        server.abort();
        let _ = server.await;

        // One that honours it.
        let server = serve(alternate.clone());
        let got = binding(&client, to, from, Change::Port, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the answer from the other port");
        assert_eq!(got.mapped, me);
        server.abort();
    }
}
