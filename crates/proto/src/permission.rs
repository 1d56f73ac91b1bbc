//! CreatePermission (RFC 8656 §9.2): installs or refreshes permissions for peer IPs.

use std::net::SocketAddr;
use std::time::Instant;

use turnpike_stun::*;

use crate::allocation::AllocationId;
use crate::auth::AuthInfo;
use crate::error::TurnError;
use crate::five_tuple::FiveTuple;
use crate::server::{Reply, ResponseCtx, Server, Timer};

impl Server {
    /// Checks one XOR-PEER-ADDRESS against the allocation's families and the peer policy.
    pub(crate) fn check_peer(&self, id: AllocationId, peer: SocketAddr) -> Result<(), TurnError> {
        if self.allocations[id].relay_for_peer(&peer).is_none() {
            return Err(TurnError::PeerAddressFamilyMismatch);
        }
        if !self.cfg.peer_policy.permits(peer.ip()) {
            return Err(TurnError::Forbidden("peer address refused by policy"));
        }
        Ok(())
    }

    /// The one XOR-PEER-ADDRESS of a ChannelBind or Connect: present (400), well-formed (400), of
    /// the allocation's family (443) and allowed by policy (403).
    pub(crate) fn checked_peer(
        &self,
        id: AllocationId,
        msg: &Message<'_>,
    ) -> Result<SocketAddr, TurnError> {
        let v = msg
            .get(ATTR_XOR_PEER_ADDRESS)
            .ok_or(TurnError::BadRequest("XOR-PEER-ADDRESS missing"))?;
        let peer = decode_peer(v, msg)?;
        self.check_peer(id, peer)?;
        if self.cfg.peer_policy.own.contains(peer) {
            return Err(TurnError::Forbidden("peer is the server itself"));
        }
        Ok(peer)
    }

    /// Installs or refreshes the permission for `peer`'s IP.
    pub(crate) fn install_permission(&mut self, now: Instant, id: AllocationId, peer: SocketAddr) {
        let ip = peer.ip().to_canonical();
        let expires = now + self.cfg.permission_lifetime;
        let a = &mut self.allocations[id];
        if a.permissions.insert(ip, expires).is_none() {
            self.stats.permissions += 1;
        }
        if a.peers.len() < crate::allocation::MAX_LOGGED_PEERS {
            a.peers.insert(ip);
        }
        let generation = a.generation;
        self.timers
            .push(expires, Timer::Permission(id, generation, ip));
    }

    pub(crate) fn handle_create_permission(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &AuthInfo,
        ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&ft, auth)?;
        // 2. At least one XOR-PEER-ADDRESS; every one well-formed, of the allocation's family and
        //    allowed by policy. All or nothing: nothing is installed if one fails.
        let mut peers = Vec::new();
        for v in msg.get_all(ATTR_XOR_PEER_ADDRESS) {
            let peer = decode_peer(v, msg)?;
            self.check_peer(id, peer)?;
            peers.push(peer);
        }
        if peers.is_empty() {
            return Err(TurnError::BadRequest("XOR-PEER-ADDRESS missing"));
        }
        let a = &self.allocations[id];
        let new = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip().to_canonical()))
            .count();
        if a.permissions.len() + new > self.cfg.max_permissions_per_allocation {
            return Err(TurnError::InsufficientCapacity("too many permissions"));
        }
        // 3. Install or refresh each (lifetime 300 s).
        for p in peers {
            self.install_permission(now, id, p);
        }
        let n = self.write_success(ctx, |_| Ok(()))?;
        Ok(Reply::Written(n))
    }
}

/// Decodes one XOR-PEER-ADDRESS value (400 when malformed).
fn decode_peer(v: &[u8], msg: &Message<'_>) -> Result<SocketAddr, TurnError> {
    decode_xor_address(v, &msg.transaction_id())
        .map_err(|_| TurnError::BadRequest("XOR-PEER-ADDRESS malformed"))
}
