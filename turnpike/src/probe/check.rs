//! The end-to-end check of one server URL: Binding; for TURN two allocations A and B on the same
//! server, permissions and channels for each other's relayed address, data from A through both
//! relays to B's client and back (a method that works against any public server: a relay
//! usually refuses its own addresses and the client's own address is often unreachable), then
//! Refresh with lifetime 0 for both, whatever happened before.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::client::{Client, Credentials, Relayed};
use super::conn::Conn;
use super::error::ProbeError;
use super::report::{ms, Row};
use super::tls::Trust;
use super::uri::{Scheme, Target};

/// The channel number each allocation binds (the first of RFC 8656 §12's range).
const CHANNEL: u16 = 0x4000;

/// What every check shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub trust: Trust,
    /// The longest any one step may take.
    pub step_timeout: Duration,
}

/// Probes `target` (with `credentials` for TURN) and reports it as one row.
pub(crate) async fn check(
    target: &Target,
    credentials: Option<&Credentials>,
    settings: &Settings,
) -> Row {
    let mut row = Row::new(&target.uri, target.transport.as_str());
    let mut clients = Vec::new();
    let outcome = steps(target, credentials, settings, &mut row, &mut clients).await;
    // Clean up every allocation made, even after a failure; a failed clean-up is reported when
    // nothing failed before it.
    let mut cleanup = Ok(());
    for c in &mut clients {
        if let Err(e) = c.release().await {
            cleanup = cleanup.and(Err(e));
        }
    }
    match outcome.and(cleanup) {
        Ok(()) => row,
        Err(e) => row.failed(e),
    }
}

async fn steps(
    target: &Target,
    credentials: Option<&Credentials>,
    settings: &Settings,
    row: &mut Row,
    allocated: &mut Vec<Client>,
) -> Result<(), ProbeError> {
    let server = resolve(target).await?;
    row.server = Some(server);
    let mut a = connect(target, server, credentials, settings).await?;
    let binding = a.binding().await?;
    row.binding_rtt_ms = Some(ms(binding.rtt));
    row.mapped = Some(binding.mapped);
    row.software = binding.software;
    if target.scheme == Scheme::Stun {
        return Ok(());
    }
    if credentials.is_none() {
        return Err(ProbeError::NoCredentials);
    }
    let alloc_a = a.allocate().await?;
    allocated.push(a);
    row.allocate_ms = Some(ms(alloc_a.took));
    row.relayed = Some(alloc_a.relayed);
    if row.software.is_none() {
        row.software = alloc_a.software;
    }
    let mut b = connect(target, server, credentials, settings).await?;
    let alloc_b = b.allocate().await?;
    allocated.push(b);
    let [a, b] = &mut allocated[..] else {
        unreachable!("two allocations were just pushed")
    };
    a.create_permission(alloc_b.relayed).await?;
    b.create_permission(alloc_a.relayed).await?;
    a.channel_bind(CHANNEL, alloc_b.relayed).await?;
    b.channel_bind(CHANNEL, alloc_a.relayed).await?;
    let rtt = round_trip(a, b, alloc_a.relayed, settings.step_timeout).await?;
    row.relay_rtt_ms = Some(ms(rtt));
    Ok(())
}

/// The first address of the target's host.
async fn resolve(target: &Target) -> Result<SocketAddr, ProbeError> {
    let resolve_error = |source| ProbeError::Resolve {
        host: target.host.clone(),
        source,
    };
    tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(resolve_error)?
        .next()
        .ok_or_else(|| resolve_error(std::io::ErrorKind::NotFound.into()))
}

async fn connect(
    target: &Target,
    server: SocketAddr,
    credentials: Option<&Credentials>,
    settings: &Settings,
) -> Result<Client, ProbeError> {
    let conn = Conn::open(
        target.transport,
        server,
        &target.host,
        &settings.trust,
        settings.step_timeout,
    )
    .await?;
    Ok(Client::new(
        conn,
        credentials.cloned(),
        settings.step_timeout,
    ))
}

/// Sends a ping on A's channel (to B's relayed address); B's client answers it on its own
/// channel (to A's relayed address); returns the time from A's send to A's receipt. Over UDP
/// a lost ping or pong is sent again (after 500 ms, doubling), within `limit`.
async fn round_trip(
    a: &mut Client,
    b: &mut Client,
    a_relayed: SocketAddr,
    limit: Duration,
) -> Result<Duration, ProbeError> {
    let deadline = Instant::now() + limit;
    let tag: [u8; 8] = rand::random();
    let mut sent = Vec::new();
    let mut wait = Duration::from_millis(500);
    while Instant::now() < deadline {
        let seq = sent.len() as u32;
        let mut ping = b"ping".to_vec();
        ping.extend_from_slice(&tag);
        ping.extend_from_slice(&seq.to_be_bytes());
        sent.push(Instant::now());
        a.send_channel_data(CHANNEL, &ping).await?;
        let try_until = (Instant::now() + wait).min(deadline);
        wait *= 2;
        // B's client: the ping arrives from A's relayed address.
        while let Some(got) = b.recv_relayed(try_until).await? {
            let payload = match got {
                Relayed::Channel { channel, payload } if channel == CHANNEL => payload,
                Relayed::Indication { peer, payload } if peer == a_relayed => payload,
                _ => continue,
            };
            if payload.get(..12) == Some(&ping[..12]) {
                let mut pong = b"pong".to_vec();
                pong.extend_from_slice(&payload[4..]);
                b.send_channel_data(CHANNEL, &pong).await?;
                break;
            }
        }
        // A's client: any pong of this run, timed from the ping it answers.
        while let Some(got) = a.recv_relayed(try_until).await? {
            let (Relayed::Channel { payload, .. } | Relayed::Indication { payload, .. }) = got;
            if payload.len() == 16 && payload[..4] == *b"pong" && payload[4..12] == tag {
                let n = u32::from_be_bytes([payload[12], payload[13], payload[14], payload[15]]);
                if let Some(at) = sent.get(n as usize) {
                    return Ok(at.elapsed());
                }
            }
        }
    }
    Err(ProbeError::NoRelayData(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silent_dtls_server_fails_the_handshake() {
        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = quiet.local_addr().unwrap().port();
        let target =
            super::super::uri::parse(&format!("turns:127.0.0.1:{port}?transport=udp"), true)
                .unwrap()
                .remove(0);
        let settings = Settings {
            trust: Trust::new(None, false).unwrap(),
            step_timeout: Duration::from_millis(300),
        };
        let row = check(&target, None, &settings).await;
        assert_eq!(row.result, super::super::report::Verdict::Fail);
        let reason = row.reason.unwrap();
        assert!(reason.starts_with("DTLS handshake failed"), "{reason}");
        // The ClientHello was sent.
        let mut buf = [0u8; 1500];
        let n = quiet.recv(&mut buf).unwrap();
        assert_eq!(buf[0], 22, "a DTLS handshake record");
        assert!(n > 13);
    }

    #[tokio::test]
    async fn silent_udp_server_times_out() {
        // A bound socket that never answers: the Binding is retransmitted, then times out.
        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = quiet.local_addr().unwrap().port();
        let target = super::super::uri::parse(&format!("stun:127.0.0.1:{port}"), false)
            .unwrap()
            .remove(0);
        let settings = Settings {
            trust: Trust::new(None, false).unwrap(),
            step_timeout: Duration::from_millis(2000),
        };
        let row = check(&target, None, &settings).await;
        assert_eq!(row.result, super::super::report::Verdict::Fail);
        assert!(row.reason.as_deref().unwrap().contains("Binding: timeout"));
        // RFC 8489 §6.2.1: sends at 0, 500 and 1500 ms; the next (3500 ms) is past 2 s.
        quiet.set_nonblocking(true).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 1500];
        while quiet.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, 3);
    }
}
