//! Moving data: Send indications and ChannelData from clients to peers (RFC 8656 §10.2, §12.6),
//! and peer datagrams back to clients as ChannelData or Data indications (§10.3, §12.7).
//!
//! This is the hot path: no allocation, no lock. ChannelData to a peer is the input's payload
//! slice; ChannelData to a client is written in place in headroom the driver leaves before the
//! payload. Only Data indications are built (in the reused scratch buffer).

use std::net::SocketAddr;
use std::time::Instant;

use turnpike_stun::*;

use super::Server;
use crate::error::DropReason;
use crate::five_tuple::FiveTuple;
use crate::output::{Dest, RelayTransport, Transmit, PEER_HEADROOM};
use crate::stats::Direction;

impl Server {
    /// Send indication: relay DATA to XOR-PEER-ADDRESS if a permission exists; otherwise drop
    /// silently (indications get no error responses).
    pub(super) fn handle_send_indication<'a>(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: Message<'a>,
    ) -> Option<Transmit<'a>> {
        self.stats.count(
            Direction::ClientToServer,
            ft.transport,
            msg.as_bytes().len(),
        );
        let Some(id) = self.allocations.by_five_tuple(&ft) else {
            self.stats.drop(DropReason::NoAllocation);
            return None;
        };
        let (Some(peer), Some(data)) = (msg.get(ATTR_XOR_PEER_ADDRESS), msg.get(ATTR_DATA)) else {
            self.stats.drop(DropReason::Malformed);
            return None;
        };
        let Ok(peer) = decode_xor_address(peer, &msg.transaction_id()) else {
            self.stats.drop(DropReason::Malformed);
            return None;
        };
        let a = &mut self.allocations[id];
        a.usage
            .count(Direction::ClientToServer, msg.as_bytes().len());
        let Some(relay) = a.relay_for_peer(&peer) else {
            self.stats.drop(DropReason::NoAllocation);
            return None;
        };
        if !a.has_permission(now, peer.ip()) {
            self.stats.drop(DropReason::NoPermission);
            return None;
        }
        if self.cfg.peer_policy.own.contains(peer) {
            // The server's own listener: never a peer (a permission covers an IP, any port).
            self.stats.drop(DropReason::Policy);
            return None;
        }
        let a = &mut self.allocations[id];
        if !a.throttle.as_mut().is_none_or(|t| t.take(now, data.len())) {
            self.stats.drop(DropReason::Throttled);
            return None;
        }
        Some(self.relay_to_peer(id, &ft, relay, peer, data))
    }

    /// ChannelData from a client: relay the payload to the channel's peer.
    pub(super) fn handle_channel_data<'a>(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        self.stats
            .count(Direction::ClientToServer, ft.transport, data.len());
        let Ok(cd) = ChannelData::parse(data) else {
            self.stats.drop(DropReason::Malformed);
            return None;
        };
        let Some(id) = self.allocations.by_five_tuple(&ft) else {
            self.stats.drop(DropReason::NoAllocation);
            return None;
        };
        let a = &mut self.allocations[id];
        a.usage.count(Direction::ClientToServer, data.len());
        let Some(binding) = a.channels.get(&cd.channel).filter(|c| c.is_active(now)) else {
            self.stats.drop(DropReason::NoChannel);
            return None;
        };
        let peer = binding.peer;
        if !a.has_permission(now, peer.ip()) {
            self.stats.drop(DropReason::NoPermission);
            return None;
        }
        let Some(relay) = a.relay_for_peer(&peer) else {
            self.stats.drop(DropReason::NoAllocation);
            return None;
        };
        if !a
            .throttle
            .as_mut()
            .is_none_or(|t| t.take(now, cd.payload.len()))
        {
            self.stats.drop(DropReason::Throttled);
            return None;
        }
        Some(self.relay_to_peer(id, &ft, relay, peer, cd.payload))
    }

    /// A datagram from `peer` arrived on the relay socket bound at `relay`. Its payload is
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`, and `buf` extends at least `PEER_TAILROOM`
    /// bytes past it. Returns what to send to the client, if anything.
    pub fn handle_peer_packet<'a>(
        &'a mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        buf: &'a mut [u8],
        len: usize,
    ) -> Option<Transmit<'a>> {
        let Some(id) = self.allocations.by_relay(RelayTransport::Udp, relay) else {
            self.stats.drop(DropReason::NoAllocation);
            return None;
        };
        let a = &mut self.allocations[id];
        let ft = a.five_tuple;
        self.stats.count(Direction::PeerToServer, ft.transport, len);
        a.usage.count(Direction::PeerToServer, len);
        // Only peers with a permission may reach the client (RFC 8656 §10.3).
        if !a.has_permission(now, peer.ip()) {
            self.stats.drop(DropReason::NoPermission);
            return None;
        }
        if !a.throttle.as_mut().is_none_or(|t| t.take(now, len)) {
            self.stats.drop(DropReason::Throttled);
            return None;
        }
        if let Some(num) = a.active_channel_for(now, &peer) {
            ChannelData::write_header(num, len as u16, &mut buf[..PEER_HEADROOM]);
            let mut total = PEER_HEADROOM + len;
            if ft.transport.is_stream() {
                let padded = pad4(total);
                buf[total..padded].fill(0);
                total = padded;
            }
            self.stats
                .count(Direction::ServerToClient, ft.transport, total);
            a.usage.count(Direction::ServerToClient, total);
            return Some(Transmit {
                dest: Dest::Client(ft),
                data: &buf[..total],
            });
        }
        // No channel: a Data indication (RFC 8656 §10.3) with a fresh transaction id.
        let tid = self.indication_tid();
        let payload = &buf[PEER_HEADROOM..PEER_HEADROOM + len];
        let mut w = MessageWriter::new(
            &mut self.scratch,
            MessageType::new(METHOD_DATA, Class::Indication),
            tid,
        )
        .ok()?;
        if w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).is_err()
            || w.attr(ATTR_DATA, payload).is_err()
        {
            self.stats.drop(DropReason::Malformed);
            return None;
        }
        let n = w.finish();
        self.stats.count(Direction::ServerToClient, ft.transport, n);
        self.allocations[id]
            .usage
            .count(Direction::ServerToClient, n);
        Some(Transmit {
            dest: Dest::Client(ft),
            data: &self.scratch[..n],
        })
    }

    /// Transaction ids for Data indications: unique per instance, no randomness needed (RFC
    /// 8656 §10.3 only asks that it be new).
    pub(super) fn indication_tid(&mut self) -> TransactionId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&self.next_generation.to_be_bytes());
        t[8..].copy_from_slice(b"TPdi");
        t
    }
}
