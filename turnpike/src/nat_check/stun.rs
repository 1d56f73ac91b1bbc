//! The Binding transactions of RFC 5780 over an unconnected UDP socket (answers may come from
//! the server's other address), with RFC 8489 §6.2.1 retransmissions bounded by a time limit.

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

/// Sends `req` to `to` from `send` (retransmitting per RFC 8489) and waits on `recv` for a
/// message `accept` takes, until `limit` passes.
async fn transact<T>(
    send: &UdpSocket,
    recv: &UdpSocket,
    to: SocketAddr,
    req: &[u8],
    limit: Duration,
    mut accept: impl FnMut(&[u8]) -> Option<Result<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + limit;
    let mut rto = RTO;
    let mut buf = vec![0u8; 2048];
    for _ in 0..MAX_SENDS {
        if Instant::now() >= deadline {
            break;
        }
        // A refused send (no route: UDP blocked) is the same as no answer.
        if let Err(e) = send.send_to(req, to).await {
            if e.kind() != std::io::ErrorKind::ConnectionRefused {
                return Err(e).with_context(|| format!("cannot send to {to}"));
            }
        }
        let resend_at = (Instant::now() + rto).min(deadline);
        rto *= 2;
        loop {
            match tokio::time::timeout_at(resend_at, recv.recv_from(&mut buf)).await {
                Err(_) => break,
                // An ICMP error from an earlier datagram: keep waiting.
                Ok(Err(_)) => continue,
                Ok(Ok((n, _from))) => {
                    if let Some(r) = accept(&buf[..n]) {
                        return r.map(Some);
                    }
                }
            }
        }
    }
    Ok(None)
}

/// One Binding transaction from `s` to `to`; `None` when no answer came within `limit`.
pub(crate) async fn binding(
    s: &UdpSocket,
    to: SocketAddr,
    change: Change,
    response_port: Option<u16>,
    limit: Duration,
) -> Result<Option<Answer>> {
    let tid: TransactionId = rand::random();
    let req = request(tid, change, response_port)?;
    transact(s, s, to, &req, limit, |raw| match Message::parse(raw) {
        Ok(m)
            if m.transaction_id() == tid
                && m.method() == METHOD_BINDING
                && matches!(m.class(), Class::Success | Class::Error) =>
        {
            Some(answer(&m))
        }
        _ => None,
    })
    .await
}

/// RFC 5780 §4.5: a Binding request to our own mapped address; whether it came back.
pub(crate) async fn hairpin(s: &UdpSocket, mapped: SocketAddr, limit: Duration) -> Result<bool> {
    let tid: TransactionId = rand::random();
    let req = request(tid, Change::None, None)?;
    let got = transact(s, s, mapped, &req, limit, |raw| match Message::parse(raw) {
        Ok(m) if m.transaction_id() == tid && m.class() == Class::Request => Some(Ok(())),
        _ => None,
    })
    .await?;
    Ok(got.is_some())
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
    let got = transact(y, x, server, &req, limit, |raw| match Message::parse(raw) {
        Ok(m) if m.transaction_id() == tid && m.class() == Class::Success => Some(Ok(())),
        _ => None,
    })
    .await?;
    Ok(got.is_some())
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
        let tid = [9u8; 12];
        let mut buf = vec![0u8; 256];
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(METHOD_BINDING, Class::Success),
            tid,
        )
        .unwrap();
        w.xor_address(
            ATTR_XOR_MAPPED_ADDRESS,
            "198.51.100.6:40000".parse().unwrap(),
        )
        .unwrap();
        w.address(ATTR_OTHER_ADDRESS, "203.0.113.11:3479".parse().unwrap())
            .unwrap();
        let n = w.finish();
        let a = answer(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!(a.mapped, "198.51.100.6:40000".parse().unwrap());
        assert_eq!(a.other, Some("203.0.113.11:3479".parse().unwrap()));
    }
}
