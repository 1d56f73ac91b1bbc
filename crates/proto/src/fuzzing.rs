//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus-replay test, so the
//! code that is fuzzed is exactly the code that is tested. Not part of the stable API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    Credentials, FiveTuple, Output, RelayResult, Server, ServerConfig, Transport, UserSecret,
};

fn server(now: Instant) -> Server {
    let mut creds = Credentials::new();
    creds.add_user("u", UserSecret::Password("p".into()));
    creds.add_shared_secret(b"fuzz-secret".to_vec());
    let cfg = ServerConfig::new("test", creds.for_realm("test"), [7u8; 32]);
    Server::new(Arc::new(cfg), Arc::default(), now, 1_800_000_000)
}

fn five_tuple(transport: Transport) -> FiveTuple {
    FiveTuple {
        client: "192.0.2.10:40000".parse().expect("literal address"),
        server: "192.0.2.1:3478".parse().expect("literal address"),
        transport,
    }
}

/// Plays the driver for queued outputs: relay requests succeed.
fn drain(s: &mut Server, now: Instant) {
    let mut port = 50_000u16;
    while let Some(o) = s.poll_output() {
        if let Output::CreateRelay(r) = o {
            port = port.wrapping_add(2);
            let addr =
                std::net::SocketAddr::new("192.0.2.1".parse().expect("literal address"), port);
            let res = RelayResult {
                ipv4: r.families.ipv4.then_some(Ok(addr)),
                ipv6: None,
                reservation_token: None,
            };
            s.handle_relay_created(now, r.allocation, r.generation, res);
        }
    }
}

/// Fuzz target `stun_decode`: parse `data` as a STUN message with the codec, then feed it to a
/// server over UDP, as a peer datagram, and through time. Must never panic.
pub fn stun_decode(data: &[u8]) {
    if let Ok(m) = turnpike_stun::Message::parse(data) {
        let _ = m.check_fingerprint();
        let _ = m.check_integrity(b"key");
        let tid = m.transaction_id();
        for a in m.attributes() {
            let _ = turnpike_stun::decode_xor_address(a.value, &tid);
            let _ = turnpike_stun::decode_address(a.value);
            let _ = turnpike_stun::decode_error_code(a.value);
        }
    }
    // The fuzz harness is this state machine's driver: it may read the clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut s = server(now);
    let ft = five_tuple(Transport::Udp);
    let _ = s.handle_client_packet(now, ft, data);
    drain(&mut s, now);
    let _ = s.handle_client_packet(now, ft, data);
    let mut buf = vec![0u8; crate::PEER_HEADROOM + data.len() + crate::PEER_TAILROOM];
    buf[crate::PEER_HEADROOM..crate::PEER_HEADROOM + data.len()].copy_from_slice(data);
    let relay = "192.0.2.1:50002".parse().expect("literal address");
    let _ = s.handle_peer_packet(now, relay, ft.client, &mut buf, data.len());
    s.handle_timeout(now + Duration::from_secs(3600));
}

/// Fuzz target `channel_data`: split `data` as a TCP stream into frames (STUN or padded
/// ChannelData) and feed each to a server. Must never panic.
pub fn channel_data(data: &[u8]) {
    let _ = turnpike_stun::ChannelData::parse(data);
    // The fuzz harness is this state machine's driver: it may read the clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut s = server(now);
    let ft = five_tuple(Transport::Tcp);
    let mut rest = data;
    while let Ok(Some(n)) = turnpike_stun::frame_len(rest) {
        let _ = s.handle_client_packet(now, ft, &rest[..n]);
        drain(&mut s, now);
        rest = &rest[n..];
    }
    s.handle_connection_closed(now, ft);
}
